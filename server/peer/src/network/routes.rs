//! The routes of the network layer: the p2p endpoints genesis calls
//! (`GET /p2p/ping`, `PUT /p2p/genesis`) and the peer's view of the network
//! (`GET /v1/network/peers`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use plexus_core::wire::{GenesisPush, PEERS_VERSION_HEADER};

use super::{Input, NetworkHandle, View};
use plexus_server::AppError;

/// The routes of a peer in a network.
pub fn routes(handle: NetworkHandle) -> Router {
    Router::new()
        .route("/p2p/ping", get(ping))
        .route("/p2p/genesis", put(peer_list))
        .route("/v1/network/peers", get(view))
        .with_state(handle)
}

/// The same routes for a stand-alone peer: it answers pings, refuses peer
/// lists (404: it is in no network) and shows an empty view.
pub fn standalone_routes() -> Router {
    Router::new().route("/p2p/ping", get(ping)).route(
        "/v1/network/peers",
        get(|| async { Json(View::standalone()) }),
    )
}

async fn ping() -> StatusCode {
    StatusCode::OK
}

async fn view(State(handle): State<NetworkHandle>) -> Json<View> {
    Json(View::clone(&handle.view()))
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    plexus_server::bearer(headers)
        .is_some_and(|given| plexus_server::constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// `PUT /p2p/genesis`: the whole peer list, with its version in a header.
async fn peer_list(
    State(handle): State<NetworkHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    if let Some(token) = &handle.join_token
        && !authorized(&headers, token)
    {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "the network's join token is missing or wrong",
        ));
    }
    // serde_json does not check the UTF-8 of a field it skips: check it all first.
    let text = std::str::from_utf8(&body)
        .map_err(|e| AppError::bad_request(format!("body is not UTF-8: {e}")))?;
    let push: GenesisPush = serde_json::from_str(text)
        .map_err(|e| AppError::unprocessable(format!("invalid peer list or delta: {e}")))?;
    let version = headers
        .get(PEERS_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if handle.send(Input::Push(push, version)).await {
        Ok(StatusCode::OK)
    } else {
        Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this peer is leaving the network",
        ))
    }
}

#[cfg(test)]
mod tests {
    use plexus_core::wire::AUTHORIZATION;

    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "s3cret"));
        headers.insert(AUTHORIZATION, "Bearer s3cret".parse().expect("header"));
        assert!(authorized(&headers, "s3cret"));
        assert!(!authorized(&headers, "s3cre"));
        headers.insert(AUTHORIZATION, "bearer s3cret".parse().expect("header"));
        assert!(
            authorized(&headers, "s3cret"),
            "the scheme is case-insensitive"
        );
        headers.insert(AUTHORIZATION, "Basic s3cret".parse().expect("header"));
        assert!(!authorized(&headers, "s3cret"));
    }
}
