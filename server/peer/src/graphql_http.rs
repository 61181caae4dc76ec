//! `/v1/graphql` over HTTP, as the GraphQL-over-HTTP spec says:
//!
//! - `POST` with a JSON body `{query, variables, operationName}`
//!   (`Content-Type: application/json`, else 415), and `GET` with the same as
//!   URL parameters (`variables` as JSON text). Only queries exist, so GET
//!   runs everything POST does.
//! - The answer is `application/graphql-response+json` when the `Accept`
//!   header prefers it: a request error (parse, validation, a limit, no
//!   `data`) is then a 400. With `application/json` (also when there is no
//!   `Accept` header) every well-formed request gets a 200. An `Accept` with
//!   neither is a 406.
//! - `GET` from a browser (`Accept` preferring `text/html`) gets GraphiQL
//!   ([`super::graphiql`]: served by the peer itself).
//! - An answer past `--graphql-max-answer-bytes` is replaced by an error
//!   saying so.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{GraphQLRequest, PeerState};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What the client accepts, in the order it prefers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Media {
    GraphQLResponse,
    Json,
    Html,
}

/// The preferred answer media type of an `Accept` header (q-values honoured,
/// ties in the header's order); `None` when none is acceptable.
fn negotiate(headers: &HeaderMap, html: bool) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    let mut best: Option<(f32, Media)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        let found = match media.as_str() {
            GRAPHQL_RESPONSE => Some(Media::GraphQLResponse),
            JSON | "application/*" => Some(Media::Json),
            "*/*" => Some(Media::Json),
            "text/html" if html => Some(Media::Html),
            _ => None,
        };
        if let Some(m) = found
            && q > 0.0
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, m));
        }
    }
    best.map(|(_, m)| m)
}

/// A refused HTTP request: the GraphQL `errors` list, and the project's
/// `{"error": {"message"}}` beside it, so either kind of client reads it.
fn error_response(status: StatusCode, media: Media, message: impl Into<String>) -> Response {
    let message = message.into();
    body_response(
        status,
        media,
        &json!({ "errors": [{ "message": message }], "error": { "message": message } }),
    )
}

fn body_response(status: StatusCode, media: Media, body: &Value) -> Response {
    with_type((status, body.to_string()).into_response(), media)
}

fn with_type(mut response: Response, media: Media) -> Response {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if media == Media::GraphQLResponse {
            "application/graphql-response+json; charset=utf-8"
        } else {
            "application/json"
        }),
    );
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

fn not_acceptable() -> Response {
    let mut r = error_response(
        StatusCode::NOT_ACCEPTABLE,
        Media::Json,
        format!("the answer is {GRAPHQL_RESPONSE} or {JSON}: accept one of them"),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    r
}

/// `GET /v1/graphql`: GraphiQL for a browser, else a query from the URL.
pub async fn get(
    State(state): State<PeerState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(media) = negotiate(&headers, true) else {
        return not_acceptable();
    };
    if media == Media::Html {
        return super::graphiql::page();
    }
    let params: Vec<(String, String)> = url_params(raw.as_deref().unwrap_or_default());
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(query) = param("query") else {
        return error_response(
            StatusCode::BAD_REQUEST,
            media,
            "the query parameter is missing",
        );
    };
    let variables = match param("variables").filter(|v| !v.is_empty()) {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Some(map),
            Ok(Value::Null) => None,
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    media,
                    "variables must be a JSON object",
                );
            }
        },
    };
    let request = GraphQLRequest {
        query,
        variables,
        operation_name: param("operationName").filter(|v| !v.is_empty()),
    };
    answer(&state, request, media).await
}

fn url_params(raw: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{raw}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

/// `POST /v1/graphql`.
pub async fn post(State(state): State<PeerState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = negotiate(&headers, false) else {
        return not_acceptable();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(JSON) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            format!("the body must be {JSON}, got {content_type:?}"),
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                media,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let request = match parse_body(parsed) {
        Ok(r) => r,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, media, message),
    };
    answer(&state, request, media).await
}

/// The request of a POST body, each parameter checked.
fn parse_body(body: Value) -> Result<GraphQLRequest, String> {
    let Value::Object(mut map) = body else {
        return Err("the body must be a JSON object".into());
    };
    let query = match map.remove("query") {
        Some(Value::String(q)) => q,
        Some(_) => return Err("query must be a string".into()),
        None => return Err("the body has no query".into()),
    };
    let variables = match map.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(v)) => Some(v),
        Some(_) => return Err("variables must be an object".into()),
    };
    let operation_name = match map.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n),
        Some(_) => return Err("operationName must be a string".into()),
    };
    match map.remove("extensions") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(_) => return Err("extensions must be an object".into()),
    }
    Ok(GraphQLRequest {
        query,
        variables,
        operation_name,
    })
}

async fn answer(state: &PeerState, request: GraphQLRequest, media: Media) -> Response {
    let answer = state.db.graphql(request, state.network.clone()).await;
    let max = state.db.graphql_settings().max_answer_bytes;
    let status = if answer.request_error && media == Media::GraphQLResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let text = answer.body.to_string();
    if text.len() > max {
        let status = if media == Media::GraphQLResponse {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return error_response(
            status,
            media,
            format!(
                "the answer is {} bytes, more than this peer sends ({max}, --graphql-max-answer-bytes): ask for fewer objects or fields",
                text.len()
            ),
        );
    }
    with_type((status, text).into_response(), media)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn accept_picks_the_preferred_media_type() {
        assert_eq!(negotiate(&HeaderMap::new(), false), Some(Media::Json));
        assert_eq!(
            negotiate(
                &accept("application/graphql-response+json, application/json;q=0.9"),
                false
            ),
            Some(Media::GraphQLResponse)
        );
        assert_eq!(
            negotiate(
                &accept("application/json, application/graphql-response+json;q=0.5"),
                false
            ),
            Some(Media::Json)
        );
        assert_eq!(
            negotiate(&accept("text/html,application/xhtml+xml,*/*;q=0.8"), true),
            Some(Media::Html)
        );
        assert_eq!(negotiate(&accept("text/html"), false), None);
        assert_eq!(negotiate(&accept("text/plain"), false), None);
    }
}
