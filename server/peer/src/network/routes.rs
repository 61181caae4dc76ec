//! The routes of the network layer: the p2p endpoints genesis calls
//! (`GET /p2p/ping`, `PUT /p2p/genesis`) and the peer's view of the network
//! (`GET /v1/network/peers`).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use plexus_core::membership::PushRefused;
use plexus_core::wire::PEERS_VERSION_HEADER;
use plexus_server::keys;
use tokio::sync::oneshot;

use super::{Input, NetworkHandle, View};
use plexus_server::AppError;

/// The routes of a peer in a network.
pub fn routes(handle: NetworkHandle) -> Router {
    // A whole list is larger than the API's body limit: its own cap.
    let list = put(peer_list).layer(DefaultBodyLimit::max(handle.max_list_bytes));
    Router::new()
        .route("/p2p/ping", get(ping))
        .route("/p2p/genesis", list)
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

/// `PUT /p2p/genesis`: the whole peer list or a delta (at most
/// `--max-list-bytes`), with its version in a header, taken only when genesis signed it (403 otherwise, and the
/// peer's view stays as it was).
async fn peer_list(
    State(handle): State<NetworkHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, AppError> {
    let version = headers
        .get(PEERS_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (reply, verdict) = oneshot::channel();
    let input = Input::Push {
        body,
        version,
        signature: keys::received(&headers),
        reply,
    };
    let leaving = || {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this peer is leaving the network",
        )
    };
    if !handle.send(input).await {
        return Err(leaving());
    }
    match verdict.await.map_err(|_| leaving())? {
        Ok(()) => Ok(StatusCode::OK),
        Err(refused @ PushRefused::Invalid(_)) => Err(AppError::unprocessable(refused.to_string())),
        Err(refused) => Err(AppError::new(StatusCode::FORBIDDEN, refused.to_string())),
    }
}
