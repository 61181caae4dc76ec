//! A call of [`plexus_core::client`] sent with reqwest, and its answer
//! handed back to the core: the only HTTP glue of every native client of
//! genesis (the peer, the bench's tab, the dashboard). It decides nothing.

use plexus_core::client::{Answer, Call, CallError, read_answer};

use crate::error_chain;
use crate::outbound::read_at_most;

/// The request of `call` to the genesis at `base` (its URL, no trailing
/// slash), ready for a timeout and `send()`.
pub fn request(client: &reqwest::Client, base: &str, call: Call) -> reqwest::RequestBuilder {
    let method = call.method.parse().unwrap_or(reqwest::Method::GET);
    let mut request = client.request(method, format!("{base}{}", call.path));
    for (name, value) in call.headers() {
        request = request.header(name, value);
    }
    if call.body.is_empty() {
        request
    } else {
        request.body(call.body)
    }
}

/// Sends `request` and reads its answer as the core does, with at most
/// `max` bytes of body (`flag` names the setting of `max`).
pub async fn send(
    request: reqwest::RequestBuilder,
    max: usize,
    flag: &'static str,
) -> Result<Answer, CallError> {
    let response = request
        .send()
        .await
        .map_err(|e| CallError::Transport(error_chain(&e)))?;
    answer(response, max, flag).await
}

/// Reads `response` as the core does, with at most `max` bytes of body.
pub async fn answer(
    response: reqwest::Response,
    max: usize,
    flag: &'static str,
) -> Result<Answer, CallError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_at_most(response, max, flag)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string());
    read_answer(
        status,
        |name| headers.get(name).and_then(|v| v.to_str().ok()),
        body,
    )
}
