//! The tab's outgoing HTTP: calls to genesis (with their headers, for the
//! signatures), schema and contextionary downloads and Local queries to
//! other peers, each through `fetch` with a timeout that aborts it and a
//! bound on the answer.

use std::pin::pin;

use futures::future::{Either, select};
use gloo_net::http::{Method, RequestBuilder};
use gloo_timers::future::TimeoutFuture;

/// What a server answered.
pub(crate) struct Reply {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The headers the tab reads (lower-case names), when present.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, as it came.
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The value of header `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The response headers a tab reads from genesis (it exposes them to pages).
const READ_HEADERS: &[&str] = &[
    plexus_core::wire::PEERS_VERSION_HEADER,
    plexus_core::auth::SIGNATURE_INPUT,
    plexus_core::auth::SIGNATURE,
    plexus_core::auth::CONTENT_DIGEST,
    plexus_core::auth::SESSION_KEY_HEADER,
    plexus_core::wire::REFUSED_ORIGIN_HEADER,
];

/// Sends `method url` with `headers` (its content type among them) and
/// `body`, and reads the answer within `timeout_ms`; an answer longer than
/// `max_bytes` is an error.
pub(crate) async fn fetch(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    timeout_ms: u32,
    max_bytes: usize,
) -> Result<Reply, String> {
    let controller = web_sys::AbortController::new().ok();
    let signal = controller.as_ref().map(web_sys::AbortController::signal);
    let mut builder = RequestBuilder::new(url)
        .method(method)
        .abort_signal(signal.as_ref());
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = match body {
        Some(body) => {
            let text = String::from_utf8(body).map_err(|e| e.to_string())?;
            builder.body(text)
        }
        None => builder.build(),
    }
    .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if length.is_some_and(|n| n > max_bytes) {
            return Err(format!("the answer is larger than {max_bytes} bytes"));
        }
        let headers = READ_HEADERS
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), response.headers().get(name)?)))
            .collect();
        let body = response.binary().await.map_err(|e| e.to_string())?;
        if body.len() > max_bytes {
            return Err(format!("the answer is larger than {max_bytes} bytes"));
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    match select(pin!(exchange), TimeoutFuture::new(timeout_ms)).await {
        Either::Left((reply, _)) => reply,
        Either::Right(((), _)) => {
            if let Some(controller) = controller {
                controller.abort();
            }
            Err(format!("no answer within {timeout_ms} ms"))
        }
    }
}

/// Sends a request that outlives the page (`fetch` with `keepalive`), for
/// the leave on `pagehide`; does not wait for the answer.
pub(crate) fn fetch_keepalive(method: &str, url: &str, headers: &[(&str, &str)]) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    // `keepalive`: the request outlives the page (what sendBeacon uses).
    let _ = js_sys::Reflect::set(&init, &"keepalive".into(), &true.into());
    if let Ok(h) = web_sys::Headers::new() {
        for (name, value) in headers {
            let _ = h.append(name, value);
        }
        init.set_headers(&h);
    }
    let _ = window.fetch_with_str_and_init(url, &init);
}
