//! `plexus-genesis --relay`: browser tabs as peers.
//!
//! A tab opens a WebSocket to `GET /relay`, proves the key that holds its
//! name, and is then reachable at `{genesis}/relay/{name}`: every HTTP
//! request to that URI travels over the socket and the tab answers it. All
//! decisions (the proof, who answers for a name, ids, bounds, timeouts) are
//! [`plexus_core::relay::Relay`]'s; this module only moves frames and wakes
//! the callers. See `docs/genesis.md` ("Relay").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::{SinkExt as _, StreamExt as _};
use plexus_core::PeerName;
use plexus_core::auth::{Authority, PublicKey};
use plexus_core::relay::{Action, ConnId, Relay, RelayConfig, RelayError, RelayResponse};
use plexus_server::AppError;
use tokio::sync::{Notify, mpsc, oneshot};
use tower_http::cors::{Any, CorsLayer};

use super::{Genesis, now};
use plexus_core::time::parse_duration;

/// The relay's flags (all off unless `--relay`).
#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    /// Serve browser tabs as peers: a WebSocket endpoint at `/relay`, and
    /// each connected tab's HTTP at `/relay/{name}/...`.
    #[arg(long, env = "PLEXUS_RELAY")]
    pub relay: bool,

    /// Tabs connected at most (further sockets are refused).
    #[arg(long, env = "PLEXUS_RELAY_MAX_TABS", default_value_t = 1024)]
    pub relay_max_tabs: usize,

    /// Requests in flight per tab (more get 503).
    #[arg(long, env = "PLEXUS_RELAY_MAX_IN_FLIGHT", default_value_t = 32)]
    pub relay_max_in_flight: usize,

    /// Largest body of a relayed request (413) or of a tab's answer (502).
    #[arg(long, env = "PLEXUS_RELAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub relay_max_body_bytes: usize,

    /// How long a relayed request waits for the tab's answer (504 after).
    #[arg(long, env = "PLEXUS_RELAY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub relay_timeout: Duration,

    /// How long a new socket may take to prove its key.
    #[arg(long, env = "PLEXUS_RELAY_HELLO_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub relay_hello_timeout: Duration,
}

impl RelayArgs {
    /// The relay's bounds, `None` without `--relay`; the hello's signature
    /// window is genesis's `--signature-max-age`.
    pub fn config(&self, max_signature_age: Duration) -> Option<RelayConfig> {
        self.relay.then(|| RelayConfig {
            max_tabs: self.relay_max_tabs.max(1),
            max_in_flight: self.relay_max_in_flight.max(1),
            max_body_bytes: self.relay_max_body_bytes,
            request_timeout: self.relay_timeout,
            hello_timeout: self.relay_hello_timeout,
            max_signature_age,
        })
    }
}

/// What the writer task of one socket sends.
enum Out {
    Frame(String),
    Close,
}

struct Inner {
    relay: Relay,
    sockets: HashMap<ConnId, mpsc::Sender<Out>>,
    waiters: HashMap<u64, oneshot::Sender<Result<RelayResponse, RelayError>>>,
}

/// The relay of one genesis.
pub struct Hub {
    genesis: Arc<Genesis>,
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
    wake: Notify,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub(..)")
    }
}

/// The relay's routes (`GET /relay` and `/relay/{name}/...`), with their
/// own body limit and CORS; empty without a relay configuration. Spawns the
/// relay's timer (call inside a tokio runtime).
pub fn routes(genesis: &Arc<Genesis>) -> Router {
    let Some(config) = genesis.settings.relay.clone() else {
        return Router::new();
    };
    let limit = config.max_body_bytes;
    let hub = Arc::new(Hub {
        genesis: Arc::clone(genesis),
        inner: Mutex::new(Inner {
            relay: Relay::new(config),
            sockets: HashMap::new(),
            waiters: HashMap::new(),
        }),
        next_conn: AtomicU64::new(1),
        wake: Notify::new(),
    });
    tokio::spawn(Arc::clone(&hub).timer());
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers(Any);
    Router::new()
        .route("/relay", get(connect))
        .route("/relay/{name}/{*path}", any(forward))
        .layer(DefaultBodyLimit::max(limit))
        .layer(cors)
        .with_state(hub)
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the registry holds `name` for another key than `key`.
    fn held_by_other(&self, name: &PeerName, key: &PublicKey) -> bool {
        let registry = self.genesis.lock();
        let authority = &registry.config().authority;
        registry
            .peers()
            .find(|p| &p.peer_name == name)
            .is_some_and(|p| Authority::is_keyed(p.id) && !authority.holds(p.id, key))
    }

    /// Performs what the relay asks.
    /// Performs the relay's actions, then wakes the timer: they may have
    /// changed its next deadline.
    fn perform(&self, inner: &mut Inner) {
        self.drain(inner);
        self.wake.notify_one();
    }

    /// Performs the relay's actions (the timer's own step: it must not
    /// wake itself, or it would spin).
    fn drain(&self, inner: &mut Inner) {
        while let Some(action) = inner.relay.poll_action() {
            match action {
                Action::Send { conn, frame } => {
                    let Ok(text) = serde_json::to_string(&frame) else {
                        continue;
                    };
                    let full = inner
                        .sockets
                        .get(&conn)
                        .is_some_and(|tx| tx.try_send(Out::Frame(text)).is_err());
                    if full {
                        // A tab that does not read its socket is dropped.
                        tracing::warn!(conn = conn.0, "relay: a tab does not keep up; closing");
                        if let Some(tx) = inner.sockets.remove(&conn) {
                            let _ = tx.try_send(Out::Close);
                        }
                        inner.relay.handle_closed(conn);
                    }
                }
                Action::Close { conn, reason } => {
                    tracing::info!(conn = conn.0, %reason, "relay: closing a tab's socket");
                    if let Some(tx) = inner.sockets.remove(&conn) {
                        let _ = tx.try_send(Out::Close);
                    }
                }
                Action::Complete { id, result } => {
                    if let Some(waiter) = inner.waiters.remove(&id) {
                        let _ = waiter.send(result);
                    }
                }
                Action::Joined { conn, name, key } => {
                    tracing::info!(conn = conn.0, %name, %key, "relay: a tab answers for its name");
                }
            }
        }
    }

    /// Expires hellos and requests when the relay says.
    async fn timer(self: Arc<Self>) {
        let stopped = self.genesis.stopped();
        tokio::pin!(stopped);
        loop {
            let sleep = {
                let mut inner = self.lock();
                let now = now();
                inner.relay.handle_timeout(now);
                self.drain(&mut inner);
                inner
                    .relay
                    .poll_timeout()
                    .map_or(Duration::from_secs(1), |at| at.saturating_since(now))
                    .min(Duration::from_secs(1))
            };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                () = &mut stopped => return,
            }
        }
    }

    /// One tab's socket, from its challenge to its close.
    async fn serve(self: Arc<Self>, socket: WebSocket) {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (mut sink, mut stream) = socket.split();
        let capacity = {
            let inner = self.lock();
            inner.relay.config().max_in_flight + 8
        };
        let (tx, mut rx) = mpsc::channel::<Out>(capacity);
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let message = match out {
                    Out::Frame(text) => WsMessage::Text(text.into()),
                    Out::Close => WsMessage::Close(None),
                };
                let close = matches!(message, WsMessage::Close(_));
                if sink.send(message).await.is_err() || close {
                    break;
                }
            }
        });
        {
            let mut inner = self.lock();
            inner.sockets.insert(conn, tx);
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            inner.relay.handle_connect(conn, nonce, now());
            self.perform(&mut inner);
        }
        while let Some(Ok(message)) = stream.next().await {
            let text = match message {
                WsMessage::Text(text) => text,
                // Only text frames are in the protocol: anything else breaks it.
                WsMessage::Binary(_) => "binary".into(),
                WsMessage::Close(_) => break,
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            };
            let mut inner = self.lock();
            if !inner.sockets.contains_key(&conn) {
                break;
            }
            inner
                .relay
                .handle_frame(conn, text.as_str(), now(), |name, key| {
                    self.held_by_other(name, key)
                });
            self.perform(&mut inner);
            if !inner.sockets.contains_key(&conn) {
                break;
            }
        }
        {
            let mut inner = self.lock();
            inner.sockets.remove(&conn);
            inner.relay.handle_closed(conn);
            self.perform(&mut inner);
        }
        // The writer ends once its sender is gone and its queue is sent.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }
}

/// `GET /relay`: a tab's WebSocket.
async fn connect(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    let max = hub.lock().relay.config().max_body_bytes + 4096;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| hub.serve(socket))
}

/// Forgets a relayed request whose caller went away.
struct Cancel<'a>(&'a Hub, u64);

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.waiters.remove(&self.1);
        inner.relay.cancel(self.1);
    }
}

/// `/relay/{name}/{path}`: an HTTP request for a tab, over its socket.
async fn forward(
    State(hub): State<Arc<Hub>>,
    Path((name, _)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The path as sent (not percent-decoded), below `/relay/{name}`.
    let Some(rest) = uri
        .path()
        .strip_prefix(&format!("{}/{name}", plexus_core::relay::SOCKET_PATH))
    else {
        return refusal(&RelayError::BadPath(uri.path().to_owned()));
    };
    let mut path = rest.to_owned();
    if let Some(query) = uri.query() {
        path = format!("{path}?{query}");
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let (tx, rx) = oneshot::channel();
    let id = {
        let mut inner = hub.lock();
        let begun = inner
            .relay
            .begin_request(&name, method.as_str(), &path, &pairs, &body, now());
        match begun {
            Ok(id) => {
                inner.waiters.insert(id, tx);
                hub.perform(&mut inner);
                id
            }
            Err(e) => return refusal(&e),
        }
    };
    let _cancel = Cancel(&hub, id);
    let result = rx.await;
    match result {
        Ok(Ok(answer)) => answer_of(answer),
        Ok(Err(e)) => refusal(&e),
        Err(_) => refusal(&RelayError::Gone),
    }
}

fn refusal(error: &RelayError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    AppError::new(status, error.to_string()).into_response()
}

fn answer_of(answer: RelayResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
