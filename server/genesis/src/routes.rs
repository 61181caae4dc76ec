//! The HTTP routes of genesis: the original API, the watch stream, health,
//! metrics and the OpenAPI document.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::Stream;
use plexus_core::auth::{self, Message, SignatureHeaders};
use plexus_core::registry::{
    CallRefused, LeaveStart, PingStart, RegisterError, RegisterStep, Registered, UnknownPeer,
};
use plexus_core::replica::{LeaveStep, PingStep};

use super::etcd::Replication;
use plexus_core::wire::{
    self, DELTAS_HEADER, PEERS_VERSION_HEADER, Peer, PeerChange, PeerId, PeerPing, PeerUpdate,
    WatchSnapshot, asks_deltas,
};
use tokio::sync::broadcast::error::RecvError;
use tower::Layer as _;

use super::metrics::{Gauges, inc};
use super::store::Committed;
use super::{Genesis, now};
use plexus_core::PeerUri;
use plexus_server::keys;
use plexus_server::outbound::OutboundError;
use plexus_server::serve::App;
use plexus_server::{AppError, JsonErrorsLayer};

const OPENAPI: &str = include_str!("openapi.json");

/// The app of genesis: its routes with their middleware as one typed
/// service (`Router::layer` would box a future per layer and request):
/// the request trace ([`plexus_server::trace_requests`]), then the relay's
/// routes (their own bounds, outside the write policy: they carry
/// genesis's own probes and pushes to tabs) or the write policy, JSON
/// errors, the ping ([`pings`]) and the body limit around the API.
pub fn app(genesis: Arc<Genesis>) -> impl App<Future: Send + 'static> {
    let limit = genesis.settings.max_body_bytes;
    let policy = genesis.settings.policy.clone();
    let router = Router::new()
        .route("/peers", get(list))
        .route("/peers/register", post(register))
        .route(plexus_core::wire::WATCH_PATH, get(watch))
        .route("/peers/{peer_id}", delete(leave))
        .route(plexus_core::wire::HEALTH_PATH, get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route(plexus_server::contextionary::PATH, get(contextionary))
        .fallback(|| async { AppError::not_found("no such route") })
        .with_state(Arc::clone(&genesis));
    // The ping reads its body itself, within the same bound.
    let api = JsonErrorsLayer.layer(pings(
        Arc::clone(&genesis),
        DefaultBodyLimit::max(limit).layer(router),
    ));
    let api = plexus_server::policy::guard_writes(
        api,
        &policy,
        &[
            PEERS_VERSION_HEADER,
            auth::SIGNATURE_INPUT,
            auth::SIGNATURE,
            auth::CONTENT_DIGEST,
            auth::SESSION_KEY_HEADER,
        ],
    );
    let relay = genesis
        .settings
        .relay
        .is_some()
        .then(|| super::relay::routes(&genesis));
    plexus_server::trace_requests(Fork {
        pick: super::relay::is_relay_path,
        chosen: relay,
        rest: api,
    })
}

/// Sends the requests whose path `pick` chooses to `chosen` (when there is
/// one), every other request to `rest`: how genesis puts the relay's
/// routes beside its API.
#[derive(Clone)]
struct Fork<A, B> {
    pick: fn(&str) -> bool,
    chosen: Option<A>,
    rest: B,
}

impl<A: App, B: App> tower::Service<Request> for Fork<A, B> {
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<A::Future, B::Future>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match &mut self.chosen {
            Some(chosen) if (self.pick)(request.uri().path()) => {
                futures::future::Either::Left(chosen.call(request))
            }
            _ => futures::future::Either::Right(self.rest.call(request)),
        }
    }
}

/// `POST /peers/{peer_id}/ping`, answered before the router: genesis's
/// hottest call (every peer, every few seconds), on which the router would
/// spend thousands of instructions (its path parameters, matched path,
/// original URI and boxed handler: BENCHMARKS.md). It is the one route the
/// router does not hold; another method gets 405. Every other request goes
/// to `rest`.
fn pings<R>(genesis: Arc<Genesis>, mut rest: R) -> impl App<Future: Send + 'static>
where
    R: App<Future: Send + 'static>,
{
    use futures::FutureExt as _;
    use futures::future::{Either, ready};
    tower::service_fn(move |request: Request| {
        // What can be answered at once is: the future that reads the body
        // holds just what the ping needs (a future is moved whole by the
        // layers, then boxed by `serve`).
        let refused = match wire::ping_path_id(request.uri().path()).map(str::parse::<PeerId>) {
            None => return Either::Right(rest.call(request)),
            Some(Ok(id)) if request.method() == axum::http::Method::POST => {
                let (parts, body) = request.into_parts();
                let ping = ping(Arc::clone(&genesis), id, parts.headers, body);
                return Either::Left(Either::Left(ping.map(Ok)));
            }
            Some(Ok(_)) => {
                let mut refused = AppError::new(StatusCode::METHOD_NOT_ALLOWED, "a ping is a POST")
                    .into_response();
                refused
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                refused
            }
            Some(Err(e)) => {
                AppError::bad_request(format!("invalid peer id in the path: {e}")).into_response()
            }
        };
        Either::Left(Either::Right(ready(Ok(refused))))
    })
}

/// Parses a JSON body: 400 when it is not JSON, 422 when it does not fit
/// (a bad name or URI, a field of the wrong type).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    // serde_json does not check the UTF-8 of a field it skips: check it all first.
    let text = std::str::from_utf8(body)
        .map_err(|e| AppError::bad_request(format!("body is not UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => AppError::unprocessable(format!("invalid body: {e}")),
        _ => AppError::bad_request(format!("malformed JSON body: {e}")),
    })
}

/// 403 unless the request carries the join token (when one is set).
fn authorize(genesis: &Genesis, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(token) = &genesis.settings.join_token else {
        return Ok(());
    };
    let given = plexus_server::bearer(headers).unwrap_or_default();
    if plexus_server::constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "missing or wrong join token",
        ))
    }
}

/// Refuses a peer URI that is too long (422), points into a denied range
/// (422) or does not resolve (400, "unreachable"); resolving is bounded
/// like the probe that follows.
async fn check_uri(genesis: &Genesis, uri: &PeerUri) -> Result<(), AppError> {
    genesis
        .settings
        .limits
        .check_uri(uri)
        .map_err(|e| AppError::unprocessable(e.to_string()))?;
    let timeout = genesis.settings.probe_timeout;
    match tokio::time::timeout(timeout, genesis.settings.guard.check_uri(uri)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(refusal @ OutboundError::Denied { .. })) => {
            Err(AppError::unprocessable(format!("peer URI {refusal}")))
        }
        Ok(Err(_)) | Err(_) => Err(AppError::bad_request(format!(
            "genesis cannot reach {uri}: it is unreachable"
        ))),
    }
}

/// Waits for the store to commit, if there is one.
async fn committed(committed: Option<Committed>) -> Result<(), AppError> {
    match committed {
        None => Ok(()),
        Some(rx) => match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppError::internal(e)),
            Err(e) => Err(AppError::internal(e)),
        },
    }
}

/// `POST /peers/register`.
async fn register(
    State(genesis): State<Arc<Genesis>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = register_inner(&genesis, &headers, &body).await;
    if result.is_err() {
        inc(&genesis.metrics.registrations_refused);
    }
    result.into_response()
}

async fn register_inner(
    genesis: &Genesis,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AppError> {
    authorize(genesis, headers)?;
    // A signed registration proves a key, which then holds the name.
    let key = genesis
        .settings
        .registry
        .authenticate_register(&keys::received(headers), body, now())
        .map_err(forbidden)?;
    let update: PeerUpdate = parse(body)?;
    check_uri(genesis, &update.peer_uri).await?;
    // A peer that sends `x-plexus-deltas: 1` is told of later changes as deltas.
    let deltas = asks_deltas(headers.get(DELTAS_HEADER).map(HeaderValue::as_bytes));
    // The core decides each step (a name held by another key is refused
    // before any probe); the shell probes, writes and answers.
    let probe = genesis
        .lock()
        .register(update, key, deltas)
        .map_err(register_error)?;
    let reached = genesis.probe(&probe.url).await;
    let (step, saved) = {
        let mut registry = genesis.lock();
        let step = registry.handle_probed(probe, reached, now());
        (step, genesis.publish(&mut registry, true))
    };
    committed(saved).await?;
    let Registered { response, session } = match step.map_err(register_error)? {
        RegisterStep::Reply(reply) => reply,
        RegisterStep::Write { admission, reply } => {
            let store = genesis
                .replication()
                .ok_or_else(|| AppError::internal("a write step without a shared store"))?;
            store
                .register(&admission.peer, admission.replaces)
                .await
                .map_err(etcd_unavailable)?;
            reply
        }
    };
    inc(&genesis.metrics.registrations);
    // Signed by genesis, so that a peer can pin its key; a keyed
    // registration gets its session key.
    let body = serde_json::to_vec(&response).map_err(AppError::internal)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let signature = genesis
        .settings
        .identity
        .sign(&Message::response(&body), now());
    keys::insert(&mut headers, &signature);
    if let Some(session) = session
        && let Ok(value) = HeaderValue::from_str(&session.to_string())
    {
        headers.insert(HeaderName::from_static(auth::SESSION_KEY_HEADER), value);
    }
    Ok((headers, body).into_response())
}

/// 400 when genesis cannot reach the peer, 403 when the name is held by
/// another key or a key is required.
fn register_error(e: RegisterError) -> AppError {
    match e {
        RegisterError::Unreachable { .. } => AppError::bad_request(e.to_string()),
        _ => forbidden(e),
    }
}

/// 403 for a refused signature or name.
fn forbidden(e: impl std::fmt::Display) -> AppError {
    AppError::new(StatusCode::FORBIDDEN, e.to_string())
}

/// 404 for an unknown peer, 403 for a keyed one without its signature.
fn call_refused(e: CallRefused) -> AppError {
    match e {
        CallRefused::Unknown(unknown) => AppError::not_found(unknown.to_string()),
        denied => forbidden(denied),
    }
}

/// `POST /peers/{peerId}/ping` ([`pings`]). An empty body counts as no
/// schema hash. The request is taken whole, so that its headers are read
/// where they are.
async fn ping(
    genesis: Arc<Genesis>,
    id: PeerId,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let limit = genesis.settings.max_body_bytes;
    let answer = match plexus_server::read_body(body, limit).await {
        Ok(body) => ping_inner(genesis, id, headers, body).await,
        Err(e) => Err(e),
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

async fn ping_inner(
    genesis: Arc<Genesis>,
    id: PeerId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    authorize(&genesis, &headers)?;
    let ping: PeerPing = if body.iter().all(u8::is_ascii_whitespace) {
        PeerPing::default()
    } else {
        parse(&body)?
    };
    genesis
        .settings
        .limits
        .check_schema_hash(&ping.schema_hash)
        .map_err(|e| AppError::unprocessable(e.to_string()))?;
    // The signature is checked before the registry's lock (it needs no
    // registry state), so that the lock is held for the registry's part
    // only; its headers are read only for a keyed id.
    let at = now();
    let check = genesis
        .settings
        .registry
        .check_ping(id, keys::Unread(&headers), &body, at);
    let (start, stamp, saved, version) = {
        let mut registry = genesis.lock();
        let start = registry.ping(check, &ping.schema_hash, at);
        // With the list version signed for a keyed peer: it fetches the
        // list when it sees it is behind.
        let stamp = matches!(start, Ok(PingStart::Counted { keyed: true }))
            .then(|| registry.ping_answer(&genesis.settings.identity, at));
        let saved = genesis.publish(&mut registry, true);
        (start, stamp, saved, registry.version())
    };
    let start = start.map_err(|refused| {
        if matches!(refused, CallRefused::Unknown(_)) {
            inc(&genesis.metrics.pings_unknown);
        }
        call_refused(refused)
    })?;
    committed(saved).await?;
    let (version, stamp) = match start {
        PingStart::Counted { .. } => (version, stamp),
        PingStart::AtStore { keyed } => {
            let store = genesis
                .replication()
                .ok_or_else(|| AppError::internal("a store step without a shared store"))?;
            // Boxed: the store's calls make a future of kilobytes, which every
            // ping would otherwise carry and move.
            if !Box::pin(replica_ping(&genesis, store, id, &ping.schema_hash)).await? {
                inc(&genesis.metrics.pings_unknown);
                return Err(AppError::not_found(UnknownPeer(id).to_string()));
            }
            let mut registry = genesis.lock();
            let stamp = keyed.then(|| registry.ping_answer(&genesis.settings.identity, now()));
            (registry.version(), stamp)
        }
    };
    inc(&genesis.metrics.pings);
    Ok(ping_answer(&genesis, version, stamp))
}

/// A ping's answer: `200` with the list version, and for a keyed peer
/// genesis's shared signature of it (its header values made once per
/// signature), written straight into the response's headers (a map's first
/// insert makes room for 6: the version and a signature's three fit).
fn ping_answer(genesis: &Genesis, version: u64, stamp: Option<Arc<SignatureHeaders>>) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    let (name, value) = version_header(version);
    headers.insert(name, value);
    if let Some(stamp) = stamp {
        genesis.ping_stamp.insert(headers, &stamp);
    }
    response
}

/// `DELETE /peers/{peerId}`.
async fn leave(
    State(genesis): State<Arc<Genesis>>,
    Path(id): Path<PeerId>,
    headers: HeaderMap,
) -> Result<StatusCode, AppError> {
    authorize(&genesis, &headers)?;
    let received = keys::received(&headers);
    let (start, saved) = {
        let mut registry = genesis.lock();
        let start = registry.leave(id, &received, now());
        (start, genesis.publish(&mut registry, true))
    };
    committed(saved).await?;
    match start.map_err(call_refused)? {
        LeaveStart::Removed => Ok(StatusCode::NO_CONTENT),
        LeaveStart::AtStore => {
            let store = genesis
                .replication()
                .ok_or_else(|| AppError::internal("a store step without a shared store"))?;
            if replica_leave(&genesis, store, id).await? {
                Ok(StatusCode::NO_CONTENT)
            } else {
                Err(AppError::not_found(UnknownPeer(id).to_string()))
            }
        }
    }
}

/// A leave at a replica, as [`plexus_core::replica::Replica::leave`]
/// decides it: the shell only does each step's etcd call. `false`: the
/// store does not hold `id` (404).
async fn replica_leave(
    genesis: &Genesis,
    replication: &Replication,
    id: PeerId,
) -> Result<bool, AppError> {
    let mut step = replication.run(&mut genesis.lock(), |replica, _| replica.leave(id));
    loop {
        step = match step {
            LeaveStep::Remove { lease } => {
                return replication
                    .remove(id, lease)
                    .await
                    .map_err(etcd_unavailable);
            }
            LeaveStep::Unknown => return Ok(false),
            LeaveStep::Fetch(id) => {
                let fetched = replication.fetch(id).await.map_err(etcd_unavailable)?;
                let lease = fetched.map(|(_, lease)| lease);
                replication.run(&mut genesis.lock(), |replica, _| {
                    replica.handle_leave_fetched(lease)
                })
            }
        };
    }
}

/// 503 for a call to etcd that failed: the replica cannot serve it now;
/// the peer retries, here or at another replica.
fn etcd_unavailable(e: anyhow::Error) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the shared registry (etcd) is unavailable: {e:#}"),
    )
}

/// A ping at a replica, as [`plexus_core::replica::Replica::ping`] decides
/// it: the shell only does each step's etcd call and hands the answer back.
/// `false`: unknown (404).
async fn replica_ping(
    genesis: &Genesis,
    replication: &Replication,
    id: PeerId,
    schema_hash: &str,
) -> Result<bool, AppError> {
    let mut step = replication.run(&mut genesis.lock(), |replica, mirror| {
        replica.ping(mirror, id, schema_hash, now())
    });
    loop {
        step = match step {
            PingStep::Counted => return Ok(true),
            PingStep::Unknown => return Ok(false),
            PingStep::Write { saved, lease } => {
                let written = replication
                    .write(&saved, lease)
                    .await
                    .map_err(etcd_unavailable)?;
                replication.run(&mut genesis.lock(), |replica, mirror| {
                    replica.handle_ping_written(mirror, id, lease, written, now())
                })
            }
            PingStep::Fetch(id) => {
                let fetched = replication.fetch(id).await.map_err(etcd_unavailable)?;
                replication.run(&mut genesis.lock(), |replica, mirror| {
                    replica.handle_ping_fetched(mirror, id, fetched, schema_hash, now())
                })
            }
        };
    }
}

fn version_header(version: u64) -> (HeaderName, HeaderValue) {
    // Checked once, at compile time (`from_static` checks at run time
    // otherwise, on every answer).
    static NAME: HeaderName = HeaderName::from_static(PEERS_VERSION_HEADER);
    (NAME.clone(), version_value(version))
}

/// The header value of `version`, made once per version and worker thread
/// and shared by its answers until the version changes: one made anew is
/// an allocation per ping, and one shared by the threads a lock and a
/// count that both write.
fn version_value(version: u64) -> HeaderValue {
    thread_local! {
        static MADE: std::cell::RefCell<Option<(u64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    MADE.with_borrow_mut(|made| match made {
        Some((made, value)) if *made == version => value.clone(),
        _ => {
            let value = HeaderValue::from(version);
            *made = Some((version, value.clone()));
            value
        }
    })
}

/// `GET /peers`: the original `[Peer]` array, the list version in a
/// header, and genesis's signature over both.
async fn list(State(genesis): State<Arc<Genesis>>) -> Result<Response, AppError> {
    let (body, version) = {
        let registry = genesis.lock();
        let peers: Vec<&Peer> = registry.peers().collect();
        (
            serde_json::to_vec(&peers).map_err(AppError::internal)?,
            registry.version(),
        )
    };
    let message = Message::response(&body).with_version(Some(version));
    let signature = genesis.settings.identity.sign(&message, now());
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (name, value) = version_header(version);
    headers.insert(name, value);
    keys::insert(&mut headers, &signature);
    Ok((headers, body).into_response())
}

enum WatchState {
    Start,
    Live { version: u64 },
}

fn snapshot_event(genesis: &Genesis) -> (Event, u64, tokio::sync::broadcast::Receiver<PeerChange>) {
    let registry = genesis.lock();
    // Subscribing under the lock: every change after the snapshot is received.
    let rx = genesis.changes.subscribe();
    let snapshot = WatchSnapshot {
        version: registry.version(),
        peers: registry.peers().cloned().collect(),
    };
    drop(registry);
    let event = Event::default()
        .event("snapshot")
        .id(snapshot.version.to_string())
        .json_data(&snapshot)
        .unwrap_or_else(|_| Event::default().event("snapshot"));
    (event, snapshot.version, rx)
}

/// `GET /peers/watch`: server-sent events, a `snapshot` and then `change`s.
async fn watch(
    State(genesis): State<Arc<Genesis>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stopped = genesis.stopped();
    let stream = futures::stream::unfold(
        (
            genesis,
            WatchState::Start,
            None::<tokio::sync::broadcast::Receiver<PeerChange>>,
        ),
        |(genesis, state, rx)| async move {
            match (state, rx) {
                (WatchState::Live { version }, Some(mut rx)) => loop {
                    match rx.recv().await {
                        Ok(change) if change.version <= version => continue,
                        Ok(change) => {
                            let event = Event::default()
                                .event("change")
                                .id(change.version.to_string())
                                .json_data(&change)
                                .unwrap_or_else(|_| Event::default().event("change"));
                            let version = change.version;
                            return Some((
                                Ok(event),
                                (genesis, WatchState::Live { version }, Some(rx)),
                            ));
                        }
                        // Fell more than --watch-buffer changes behind:
                        // end the stream rather than hold changes for it;
                        // the client starts again from a snapshot.
                        Err(RecvError::Lagged(missed)) => {
                            inc(&genesis.metrics.watchers_ended);
                            tracing::info!(missed, "a watcher fell behind: its stream is ended");
                            return None;
                        }
                        Err(RecvError::Closed) => return None,
                    }
                },
                _ => {
                    let (event, version, rx) = snapshot_event(&genesis);
                    Some((Ok(event), (genesis, WatchState::Live { version }, Some(rx))))
                }
            }
        },
    );
    Sse::new(futures::StreamExt::take_until(stream, stopped)).keep_alive(KeepAlive::default())
}

/// `GET /healthz`.
async fn healthz(State(genesis): State<Arc<Genesis>>) -> impl IntoResponse {
    let mut health = {
        let registry = genesis.lock();
        serde_json::json!({"status": "ok", "peers": registry.len(), "version": registry.version(),
                           "key": genesis.settings.identity.public().to_string()})
    };
    // With --etcd: this replica's id and how many replicas etcd lists.
    if let Some(replication) = genesis.replication() {
        health["replica"] = replication.me().into();
        health["replicas"] = replication.live_replicas().into();
    }
    Json(health)
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(genesis): State<Arc<Genesis>>) -> impl IntoResponse {
    let gauges = {
        let registry = genesis.lock();
        Gauges {
            peers: registry.len(),
            version: registry.version(),
            holding: registry.is_holding(now()),
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        genesis.metrics.render(gauges),
    )
}

/// `GET /contextionary`: the network's contextionary file, when genesis serves one.
async fn contextionary(State(genesis): State<Arc<Genesis>>, headers: HeaderMap) -> Response {
    match &genesis.settings.contextionary_file {
        Some(file) => file.response(&headers),
        None => plexus_server::contextionary::not_served(),
    }
}

/// `GET /openapi.json`.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_version_value_follows_the_version() {
        for version in [7, 7, 8, 7, u64::MAX] {
            assert_eq!(version_value(version), version.to_string().as_str());
        }
    }

    /// The layers move a request's future whole until `serve` boxes it,
    /// and every request pays for the largest (its allocation, its moves):
    /// the store's calls, awaited in the ping, once made it 5 KB
    /// (BENCHMARKS.md, session 10). The store's paths are boxed to keep it
    /// small.
    #[tokio::test]
    async fn a_requests_future_stays_small() {
        let settings = crate::Settings::new(wire::Contextionary {
            url: "http://c.example/c.bin".into(),
            hash: "sha256:abc".parse().unwrap(),
        });
        let mut app = app(Genesis::start(settings, None).unwrap());
        let id = "6b8a5c6e-0000-4000-8000-000000000000".parse().unwrap();
        let ping = wire::with_ping_path(id, |path| axum::http::Request::post(path))
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let future = tower::Service::call(&mut app, ping);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1024, "a request's future takes {size} bytes");
    }
}
