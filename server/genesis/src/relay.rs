//! `plexus-genesis --relay`: browser tabs as peers.
//!
//! A tab opens a WebSocket to `GET /relay`, proves the key that holds its
//! name, and is then reachable at `{genesis}/relay/{name}`: every HTTP
//! request to that URI travels over the socket and the tab answers it. All
//! decisions (the proof, who answers for a name, ids, bounds, timeouts) are
//! [`plexus_core::relay::Relay`]'s; this module only moves frames and wakes
//! the callers. See `docs/genesis.md` ("Relay").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use plexus_core::PeerName;
use plexus_core::auth::{Authority, PublicKey};
use plexus_core::relay::{
    Action, ConnId, Outgoing, Relay, RelayConfig, RelayError, RelayResponse, SOCKET_PATH,
};
use plexus_core::wire::PeerChange;
use plexus_server::{AppError, JsonErrorsLayer};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{Notify, oneshot};
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;
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

    /// Relay sockets open at once, those still to prove a key included
    /// (further upgrades get 503). Each also counts as a connection
    /// (--max-connections).
    #[arg(long, env = "PLEXUS_RELAY_MAX_TABS", default_value_t = 1024)]
    pub relay_max_tabs: usize,

    /// Relay sockets open at once from one client address (IPv6: per /64),
    /// in any state (further upgrades get 429).
    #[arg(
        long,
        env = "PLEXUS_RELAY_MAX_SOCKETS_PER_ADDRESS",
        default_value_t = 16
    )]
    pub relay_max_sockets_per_address: usize,

    /// Tabs (sockets that proved a key) at once from one client address;
    /// a further hello is refused.
    #[arg(long, env = "PLEXUS_RELAY_MAX_TABS_PER_ADDRESS", default_value_t = 8)]
    pub relay_max_tabs_per_address: usize,

    /// Requests in flight per tab (more get 503).
    #[arg(long, env = "PLEXUS_RELAY_MAX_IN_FLIGHT", default_value_t = 32)]
    pub relay_max_in_flight: usize,

    /// Largest body of a relayed request (413) or of a tab's answer (502).
    #[arg(long, env = "PLEXUS_RELAY_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub relay_max_body_bytes: usize,

    /// Bytes of frames waiting to be written to one tab (JSON: a body byte
    /// may take six); a request that does not fit gets 503, and a tab whose
    /// queue stays full for --relay-timeout is dropped.
    #[arg(long, env = "PLEXUS_RELAY_MAX_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub relay_max_queue_bytes: usize,

    /// How long a relayed request waits for the tab's answer (504 after).
    #[arg(long, env = "PLEXUS_RELAY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub relay_timeout: Duration,

    /// How long a new socket may take to prove its key (then it is closed).
    #[arg(long, env = "PLEXUS_RELAY_HELLO_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub relay_hello_timeout: Duration,

    /// How long a tab that proved its key may take to be registered under
    /// its name and key before it loses its socket.
    #[arg(long, env = "PLEXUS_RELAY_REGISTER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub relay_register_timeout: Duration,
}

impl RelayArgs {
    /// The relay's bounds, `None` without `--relay`; the hello's signature
    /// window is genesis's `--signature-max-age`.
    pub fn config(&self, max_signature_age: Duration) -> Option<RelayConfig> {
        self.relay.then(|| RelayConfig {
            max_tabs: self.relay_max_tabs.max(1),
            max_sockets_per_address: self.relay_max_sockets_per_address.max(1),
            max_tabs_per_address: self.relay_max_tabs_per_address.max(1),
            max_in_flight: self.relay_max_in_flight.max(1),
            max_body_bytes: self.relay_max_body_bytes,
            max_queue_bytes: self.relay_max_queue_bytes,
            request_timeout: self.relay_timeout,
            hello_timeout: self.relay_hello_timeout,
            register_timeout: self.relay_register_timeout,
            max_signature_age,
        })
    }
}

/// How the relay reaches the two tasks of one socket.
#[derive(Default)]
struct Signals {
    /// The writer has frames to take ([`Relay::poll_frame`]).
    wake: Notify,
    /// The relay closes the socket: the reader stops.
    stop: Notify,
}

struct Inner {
    relay: Relay,
    sockets: HashMap<ConnId, Arc<Signals>>,
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

/// Whether `path` is one of the relay's: its socket's ([`SOCKET_PATH`])
/// or a relayed call's, under it.
pub fn is_relay_path(path: &str) -> bool {
    path.strip_prefix(SOCKET_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The relay's routes (`GET /relay` and `/relay/{name}/...`), with their
/// own body limit, CORS and rate limit (per client address and tab);
/// empty without a relay configuration. Spawns the relay's timer (call
/// inside a tokio runtime).
pub fn routes(genesis: &Arc<Genesis>) -> Router {
    let Some(config) = genesis.settings.relay.clone() else {
        return Router::new();
    };
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
    // Subscribed before any tab can connect: every removal from then on reaches it.
    let changes = genesis.changes.subscribe();
    tokio::spawn(Arc::clone(&hub).timer(changes));
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers(Any);
    let router = Router::new()
        .route(SOCKET_PATH, get(connect).layer(JsonErrorsLayer))
        .route(&format!("{SOCKET_PATH}/{{name}}/{{*path}}"), any(forward))
        .with_state(hub);
    // Every relayed call costs a tab work: limited per client address and
    // tab, so that genesis's own pushes (one per tab and round) pass.
    let policy = &genesis.settings.policy;
    match plexus_server::policy::rate_limit(router.clone(), policy, ClientAndTab) {
        Some(governed) => Router::new().fallback_service(governed),
        None => router,
    }
    .layer(cors)
}

/// The relay's rate-limit key: the client's address and the tab's name.
#[derive(Debug, Clone, Copy)]
struct ClientAndTab;

impl KeyExtractor for ClientAndTab {
    type Key = (IpAddr, String);

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        let tab = request
            .uri()
            .path()
            .strip_prefix(SOCKET_PATH)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        Ok((plexus_server::policy::request_client_key(), tab.to_owned()))
    }
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
            .peer_named(name)
            .is_some_and(|p| Authority::is_keyed(p.id) && !authority.holds(p.id, key))
    }

    /// Whether the registry lists `name` under `key`.
    fn registered(&self, name: &PeerName, key: &PublicKey) -> bool {
        let registry = self.genesis.lock();
        let authority = &registry.config().authority;
        registry
            .peer_named(name)
            .is_some_and(|p| Authority::is_keyed(p.id) && authority.holds(p.id, key))
    }

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
                Action::Wake { conn } => {
                    if let Some(signals) = inner.sockets.get(&conn) {
                        signals.wake.notify_one();
                    }
                }
                Action::Close { conn, reason } => {
                    tracing::info!(conn = conn.0, %reason, "relay: closing a tab's socket");
                    if let Some(signals) = inner.sockets.get(&conn) {
                        signals.stop.notify_one();
                        signals.wake.notify_one();
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

    /// Expires hellos, registrations, full queues and requests when the
    /// relay says.
    async fn timer(self: Arc<Self>, mut changes: broadcast::Receiver<PeerChange>) {
        let stopped = self.genesis.stopped();
        tokio::pin!(stopped);
        loop {
            let sleep = {
                let mut inner = self.lock();
                let now = now();
                inner
                    .relay
                    .handle_timeout(now, |name, key| self.registered(name, key));
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
                change = changes.recv() => self.handle_change(change),
                () = &mut stopped => return,
            }
        }
    }

    /// A change of genesis's list: the relay confirms a tab registered, or
    /// drops one evicted or gone ([`Relay::handle_list_changed`]); after
    /// missed changes every tab is checked.
    fn handle_change(&self, change: Result<PeerChange, RecvError>) {
        let name = match &change {
            Ok(change) => Some(&change.peer.peer_name),
            // Closed cannot happen: the hub holds genesis, which holds the sender.
            Err(RecvError::Closed) => return,
            Err(RecvError::Lagged(missed)) => {
                tracing::info!(missed, "relay: missed list changes; checking every tab");
                None
            }
        };
        let mut inner = self.lock();
        inner
            .relay
            .handle_list_changed(name, |name, key| self.registered(name, key));
        self.drain(&mut inner);
    }

    /// Writes what the relay has for `conn` until it says close (or the
    /// socket fails).
    async fn write(
        &self,
        conn: ConnId,
        signals: &Signals,
        mut sink: SplitSink<WebSocket, WsMessage>,
    ) {
        loop {
            let next = self.lock().relay.poll_frame(conn);
            match next {
                Some(Outgoing::Frame(text)) => {
                    if sink.send(WsMessage::Text(text.into())).await.is_err() {
                        return;
                    }
                    self.lock().relay.handle_written(conn);
                }
                Some(Outgoing::Close) => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    return;
                }
                None => signals.wake.notified().await,
            }
        }
    }

    /// Reads `conn`'s frames into the relay until the tab closes, the
    /// socket fails, or the relay closes it (`true`).
    async fn read(
        &self,
        conn: ConnId,
        signals: &Signals,
        mut stream: SplitStream<WebSocket>,
    ) -> bool {
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                () = signals.stop.notified() => return true,
            };
            let text = match message {
                Some(Ok(WsMessage::Text(text))) => text,
                // Only text frames are in the protocol: anything else breaks it.
                Some(Ok(WsMessage::Binary(_))) => "binary".into(),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => return false,
            };
            let mut inner = self.lock();
            inner
                .relay
                .handle_frame(conn, text.as_str(), now(), |name, key| {
                    self.held_by_other(name, key)
                });
            self.perform(&mut inner);
        }
    }
}

/// A socket the relay counts, from its admission (before the upgrade) to
/// its drop, which frees its slot whatever happened in between.
struct Slot {
    hub: Arc<Hub>,
    conn: ConnId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        inner.sockets.remove(&self.conn);
        inner.relay.handle_closed(self.conn);
        self.hub.perform(&mut inner);
    }
}

impl Slot {
    /// One tab's socket, from its challenge to its close.
    async fn serve(self, socket: WebSocket) {
        let (hub, conn) = (&self.hub, self.conn);
        let Some(signals) = hub.lock().sockets.get(&conn).cloned() else {
            return;
        };
        let (sink, stream) = socket.split();
        let writer = hub.write(conn, &signals, sink);
        tokio::pin!(writer);
        tokio::select! {
            () = &mut writer => {}
            closed_by_relay = hub.read(conn, &signals, stream) => {
                // A refused tab gets its last frame and a close, within a
                // bound: one that does not read is not waited for.
                if closed_by_relay {
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
                }
            }
        }
        // Dropping the halves closes the socket; dropping `self` frees the slot.
    }
}

/// How long a socket the relay closes may take to be sent its last frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// `GET /relay`: a tab's WebSocket. The relay admits the socket before the
/// upgrade, so that one over a bound costs no upgrade (503 when the relay
/// is full, 429 when the client's address has its share).
async fn connect(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    let client = plexus_server::policy::request_client_key();
    let conn = ConnId(hub.next_conn.fetch_add(1, Ordering::Relaxed));
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let (admitted, max) = {
        let mut inner = hub.lock();
        let admitted = inner.relay.handle_connect(conn, client, nonce, now());
        if admitted.is_ok() {
            inner.sockets.insert(conn, Arc::default());
        }
        hub.perform(&mut inner);
        (admitted, inner.relay.config().max_body_bytes + 4096)
    };
    tracing::debug!(conn = conn.0, %client, ok = admitted.is_ok(), "relay: a socket asks to be admitted");
    if let Err(refused) = admitted {
        let status =
            StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return AppError::new(status, refused.to_string()).into_response();
    }
    let slot = Slot { hub, conn };
    // Small buffers: a socket costs little until it carries frames.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| slot.serve(socket))
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
async fn forward(State(hub): State<Arc<Hub>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // The name and the path as sent (not percent-decoded), below `/relay/{name}`.
    let Some((name, rest)) = parts
        .uri
        .path()
        .strip_prefix(plexus_core::relay::SOCKET_PATH)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.find('/').map(|at| p.split_at(at)))
    else {
        return refusal(&RelayError::BadPath(parts.uri.path().to_owned()));
    };
    let mut path = rest.to_owned();
    if let Some(query) = parts.uri.query() {
        path = format!("{path}?{query}");
    }
    // The request holds its place (and its declared body's bytes in the
    // tab's queue) before its body is read: bodies are read only for
    // requests that may be sent.
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let (reserved, max) = {
        let mut inner = hub.lock();
        let reserved = inner.relay.reserve(name, &path, declared, now());
        (reserved, inner.relay.config().max_body_bytes)
    };
    let id = match reserved {
        Ok(id) => id,
        Err(e) => return refusal(&e),
    };
    let _cancel = Cancel(&hub, id);
    let body = match axum::body::to_bytes(body, max).await {
        Ok(body) => body,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                refusal(&RelayError::RequestTooLarge {
                    size: max.saturating_add(1),
                    max,
                })
            } else {
                AppError::bad_request(format!("cannot read the request body: {e}")).into_response()
            };
        }
    };
    let pairs: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let (tx, rx) = oneshot::channel();
    {
        let mut inner = hub.lock();
        let sent = inner
            .relay
            .send_request(id, parts.method.as_str(), &path, &pairs, &body, now());
        match sent {
            Ok(()) => {
                inner.waiters.insert(id, tx);
                hub.perform(&mut inner);
            }
            Err(e) => return refusal(&e),
        }
    }
    // The frame holds the body now: do not keep a second copy while waiting.
    drop(body);
    match rx.await {
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
    // 204 and 304 go out without a body and without a content-length.
    let body = if plexus_core::relay::status_has_body(answer.status) {
        Body::from(answer.body)
    } else {
        Body::empty()
    };
    let mut response = Response::new(body);
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
