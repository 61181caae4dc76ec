//! One HTTP request through the global `fetch`, with a timeout that aborts it.

use std::pin::pin;

use futures::future::{Either, select};
use gloo_net::http::{Method, RequestBuilder};
use gloo_timers::future::TimeoutFuture;
use serde_json::Value as Json;

use crate::error::ClientError;

/// What a server answered: its status and its body as text.
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The body.
    pub(crate) text: String,
}

/// Sends `method url` with `headers` (the bearer token among them, when
/// there is one) and `body` as JSON, and reads the whole answer, within
/// `timeout_ms`.
pub(crate) async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Json>,
    timeout_ms: u32,
) -> Result<Answer, ClientError> {
    let network = |e: gloo_net::Error| ClientError::Network {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let controller = web_sys::AbortController::new().ok();
    let signal = controller.as_ref().map(web_sys::AbortController::signal);
    let mut builder = RequestBuilder::new(url)
        .method(method)
        .abort_signal(signal.as_ref());
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = match body {
        Some(body) => builder.json(body),
        None => builder.build(),
    }
    .map_err(network)?;
    let exchange = async {
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let text = response.text().await.map_err(network)?;
        Ok(Answer { status, text })
    };
    match select(pin!(exchange), TimeoutFuture::new(timeout_ms)).await {
        Either::Left((answer, _)) => answer,
        Either::Right(((), _)) => {
            if let Some(controller) = controller {
                controller.abort();
            }
            Err(ClientError::Timeout {
                url: url.to_owned(),
                ms: timeout_ms,
            })
        }
    }
}

/// The headers of a request with the join token `token`, if any (the
/// `Authorization` header [`plexus_core::client::bearer`] makes), as
/// [`send`] takes them.
pub(crate) fn token_headers(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| {
            (
                plexus_core::wire::AUTHORIZATION,
                plexus_core::client::bearer(t),
            )
        })
        .into_iter()
        .collect()
}

/// Borrows owned headers as [`send`] takes them.
pub(crate) fn borrowed<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}
