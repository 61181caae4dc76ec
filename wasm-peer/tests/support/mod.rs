//! What the browser test files of the tab peer share: the servers' URLs
//! they are given at compile time, and GraphQL over HTTP.
#![allow(dead_code)]

use gloo_net::http::Request;
use serde_json::{Value as Json, json};

/// The compile-time value of `name`, set by `script` (which starts the
/// servers it names).
pub fn env(value: Option<&'static str>, name: &str, script: &str) -> &'static str {
    value.unwrap_or_else(|| panic!("{name} is not set: run these tests through {script}"))
}

/// Sends `query` to the GraphQL endpoint of the peer at `url`.
pub async fn post_graphql(url: &str, query: &str) -> Json {
    Request::post(&format!("{url}/v1/graphql"))
        .json(&json!({ "query": query }))
        .expect("a request")
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON")
}
