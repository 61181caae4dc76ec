//! The routes of the network layer: the p2p endpoints genesis calls
//! (`GET /p2p/ping`, `PUT /p2p/genesis`) and the peer's view of the network
//! (`GET /v1/network/peers`).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, put};
use axum::{Json, Router};
use plexus_core::client::read_version;
use plexus_core::membership::PushRefused;
use plexus_core::wire::PEERS_VERSION_HEADER;
use plexus_server::keys;
use tokio::sync::oneshot;

use super::{Input, NetworkHandle, View};
use plexus_server::AppError;

/// How long a push that came before genesis's key waits for it (the
/// registration's answer, in flight).
const KEY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
    Json(handle.view())
}

/// `PUT /p2p/genesis`: the whole peer list or a delta, with its version in
/// a header, taken only when genesis signed it (403 otherwise, and the
/// peer's view stays as it was).
///
/// Its headers are judged first ([`plexus_core::membership::PushGate`]):
/// an unsigned push, one signed by another key, for another version, too
/// old, or declaring more than `--max-list-bytes`, is refused before a byte
/// of its body is read. Then at most `--max-push-bodies` bodies are read at
/// once, each up to `--max-list-bytes`.
async fn peer_list(
    State(handle): State<NetworkHandle>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, AppError> {
    let version = read_version(
        headers
            .get(PEERS_VERSION_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let signature = keys::received(&headers);
    let mut views = handle.watch_view();
    let mut gate = views.borrow_and_update().push_gate;
    // Genesis pushes the list its registration answer changed: the push may
    // come before the peer has read that answer, and with it genesis's key.
    // Wait for the key a little (no body is read meanwhile).
    let until = tokio::time::Instant::now() + KEY_WAIT;
    while !gate.has_key() && matches!(views.borrow().state, "idle" | "registering") {
        match tokio::time::timeout_at(until, views.changed()).await {
            Ok(Ok(())) => gate = views.borrow_and_update().push_gate,
            _ => break,
        }
    }
    if let Err(refused) = gate.check(version, &signature, declared, super::now()) {
        tracing::warn!(%refused, "refused a push before its body");
        return Err(refusal(refused));
    }
    let leaving = || {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this peer is leaving the network",
        )
    };
    // Held until the verdict: a body read stays in memory until then.
    let _permit = handle.push_bodies.acquire().await.map_err(|_| leaving())?;
    let body = read_at_most(body, gate.max_bytes(), declared).await?;
    let (reply, verdict) = oneshot::channel();
    let input = Input::Push {
        body,
        version,
        signature,
        reply,
    };
    if !handle.send(input).await {
        return Err(leaving());
    }
    verdict.await.map_err(|_| leaving())?.map_err(refusal)?;
    Ok(StatusCode::OK)
}

/// The answer to a refused push.
fn refusal(refused: PushRefused) -> AppError {
    let status = match refused {
        PushRefused::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PushRefused::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::FORBIDDEN,
    };
    AppError::new(status, refused.to_string())
}

/// The body, refused (413) as soon as it passes `max` bytes.
async fn read_at_most(body: Body, max: usize, declared: Option<u64>) -> Result<Bytes, AppError> {
    use futures::StreamExt as _;
    let too_large = |len: usize| {
        refusal(PushRefused::TooLarge {
            len: len as u64,
            max,
        })
    };
    // Room for what it declared, up to 1 MiB at first: it grows as bytes come.
    let room = declared.map_or(0, |d| {
        usize::try_from(d).unwrap_or(max).min(max).min(1 << 20)
    });
    let mut read = Vec::with_capacity(room);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("could not read the body: {e}"),
            )
        })?;
        if read.len() + chunk.len() > max {
            return Err(too_large(read.len() + chunk.len()));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}
