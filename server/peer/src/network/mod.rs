//! The peer in the network: a thin tokio shell around
//! [`plexus_core::membership::Membership`].
//!
//! One task ([`run_membership`]) owns the machine. After every input it
//! drains `poll_transmit()` (each [`Request`] is performed on its own task,
//! whose [`Outcome`] comes back as an input), drains `poll_event()`,
//! publishes a [`View`] for the HTTP handlers, and sleeps until
//! `poll_timeout()`, a message from a handler (`PUT /p2p/genesis`, shutdown),
//! or a change of the local schema hash. No protocol decision lives here.

pub mod calls;
pub mod resolver;
pub mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use plexus_core::Timestamp;
use plexus_core::auth::{Identity, Received};
use plexus_core::membership::{
    Event, FailReason, Membership, MembershipConfig, PushGate, PushRefused, Request, State,
};
use plexus_core::names::{PeerName, PeerUri};
use plexus_core::schema::Schema;
use plexus_core::wire::PeerId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use calls::{Genesis, Outcome, perform};

/// The current time as the core counts it.
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// A seed from the OS's randomness.
fn random_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(seed)
}

/// A message to the membership task.
#[derive(Debug)]
pub enum Input {
    /// `PUT /p2p/genesis` as it came: the core checks genesis's signature
    /// and answers whether it took the push.
    Push {
        /// The body: the whole list or a delta.
        body: Bytes,
        /// Its `x-plexus-peers-version`.
        version: Option<u64>,
        /// Its signature headers.
        signature: Received,
        /// Where the verdict goes.
        reply: oneshot::Sender<Result<(), PushRefused>>,
    },
    /// The peer is stopping: deregister.
    Shutdown,
    /// The answer of a request the task sent.
    Outcome(Outcome),
}

/// A remote peer as `GET /v1/network/peers` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteView {
    /// Its name.
    pub name: PeerName,
    /// Its id.
    pub id: PeerId,
    /// Its URI.
    pub uri: PeerUri,
    /// The schema hash genesis last announced.
    pub schema_hash: String,
    /// Whether its schema of that hash is cached here.
    pub schema_cached: bool,
}

/// The peer's view of the network, the body of `GET /v1/network/peers`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// `standalone`, `idle`, `registering`, `registered`, `failed`, `leaving` or `left`.
    pub state: &'static str,
    /// This peer's name, when in a network.
    pub name: Option<PeerName>,
    /// The id genesis gave, while registered.
    pub id: Option<PeerId>,
    /// Genesis's URL, when in a network.
    pub genesis: Option<PeerUri>,
    /// The version of the peer list this view is at, when genesis told it.
    pub list_version: Option<u64>,
    /// The other peers, by name.
    pub peers: Vec<RemoteView>,
    /// The cached schemas, for the Network planner.
    #[serde(skip)]
    pub schemas: BTreeMap<PeerName, Arc<Schema>>,
    /// What a push must pass before its body is read (the core's).
    #[serde(skip)]
    pub push_gate: PushGate,
}

impl View {
    /// The view of a stand-alone peer.
    pub fn standalone() -> Self {
        View {
            state: "standalone",
            name: None,
            id: None,
            genesis: None,
            list_version: None,
            peers: Vec::new(),
            schemas: BTreeMap::new(),
            push_gate: PushGate::closed(),
        }
    }

    /// The URI of `peer`, if it is in the view.
    pub fn uri(&self, peer: &PeerName) -> Option<&PeerUri> {
        self.peers.iter().find(|p| &p.name == peer).map(|p| &p.uri)
    }
}

fn state_name(state: &State) -> &'static str {
    match state {
        State::NotConfigured => "standalone",
        State::Idle => "idle",
        State::Registering { .. } => "registering",
        State::Registered { .. } => "registered",
        State::Failed(_) => "failed",
        State::Leaving => "leaving",
        State::Left => "left",
    }
}

/// How the peer takes part in the network, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The core machine's configuration.
    pub membership: MembershipConfig,
    /// Genesis.
    pub genesis: Genesis,
    /// The most push bodies read at once (`--max-push-bodies`).
    pub max_push_bodies: usize,
    /// The bounds of Network queries.
    pub ask: resolver::AskLimits,
}

/// The default of `--max-list-bytes`: a peer list from genesis (a push, or
/// the answer to a registration, a ping or `GET /peers`) of at most
/// [`plexus_core::membership::DEFAULT_MAX_LIST_PEERS`] peers at the longest
/// entries genesis takes by default (50,080,080 bytes).
pub fn default_max_list_bytes() -> usize {
    plexus_core::membership::default_max_list_bytes()
}

/// The default of `--max-push-bodies`: genesis pushes one list at a time
/// (a replica each, with replicas), so two bodies at once leave room for a
/// fail-over and bound a replay's memory to twice `--max-list-bytes`.
pub const DEFAULT_MAX_PUSH_BODIES: usize = 2;

impl Settings {
    /// Settings from the resolved configuration, with the URI the peer is
    /// reachable at and its key pair.
    pub fn new(
        config: &crate::config::NetworkSettings,
        public_uri: PeerUri,
        identity: Identity,
    ) -> Self {
        let mut membership = MembershipConfig::new(config.name.clone(), public_uri, random_seed());
        membership.contextionary = Some(config.contextionary.clone());
        membership.ping_interval = config.ping_interval;
        membership.genesis_replicas = config.genesis.len();
        membership.genesis_names = config.genesis.iter().map(ToString::to_string).collect();
        membership.identity = Some(identity);
        membership.genesis_key = config.genesis_key;
        membership.max_signature_age = config.signature_max_age;
        Settings {
            membership,
            genesis: Genesis {
                bases: config.genesis.clone(),
                token: config.join_token.clone(),
                max_list_bytes: default_max_list_bytes(),
            },
            max_push_bodies: DEFAULT_MAX_PUSH_BODIES,
            ask: resolver::AskLimits {
                queries: resolver::DEFAULT_MAX_QUERIES,
                fanout: plexus_core::fanout::FanoutLimits::default(),
                default_timeout: config.query_timeout,
                max_timeout: resolver::DEFAULT_MAX_TIMEOUT,
            },
        }
    }

    /// Bounds every peer list from genesis, pushed or answered, by `max` bytes.
    pub fn set_max_list_bytes(&mut self, max: usize) {
        self.genesis.max_list_bytes = max;
        self.membership.max_list_bytes = max;
    }
}

/// What the HTTP handlers share with the membership task.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    inputs: mpsc::Sender<Input>,
    view: watch::Receiver<Arc<View>>,
    /// The last view the engine was rebuilt for: a schema is shown as
    /// cached only once a query can name its peer.
    applied: watch::Receiver<Arc<View>>,
    /// The guarded client of calls to other peers (Network queries).
    pub peers: Peers,
    /// This peer's own name: a Network query may name it too.
    pub name: PeerName,
    /// The fan-out of Network queries.
    pub asker: resolver::Asker,
    /// One permit per push body being read (`--max-push-bodies`).
    pub push_bodies: Arc<tokio::sync::Semaphore>,
}

impl NetworkHandle {
    /// The current view, for `GET /v1/network/peers`: a peer's schema
    /// counts as cached once the engine holds it, so a query naming the
    /// peer is planned the moment the view shows it cached.
    pub fn view(&self) -> View {
        let mut view = View::clone(&self.view.borrow());
        let applied = self.applied.borrow();
        for peer in &mut view.peers {
            peer.schema_cached &= match (
                view.schemas.get(&peer.name),
                applied.schemas.get(&peer.name),
            ) {
                (Some(live), Some(built)) => Arc::ptr_eq(live, built),
                _ => false,
            };
        }
        view
    }

    /// A receiver of the view, for waiting on changes.
    pub fn watch_view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Hands `input` to the membership task; `false` when it has stopped.
    pub async fn send(&self, input: Input) -> bool {
        self.inputs.send(input).await.is_ok()
    }
}

/// How the peer calls other peers: through the outbound guard, with a bound
/// on schema downloads at once.
#[derive(Clone, Debug)]
pub struct Peers {
    /// The guarded client, its deny list and its answer cap.
    pub outbound: plexus_server::outbound::Outbound,
    /// One permit per schema download in flight (`--max-schema-downloads`).
    pub downloads: Arc<tokio::sync::Semaphore>,
}

impl Peers {
    /// Calls to other peers through `outbound`, at most `max_downloads`
    /// schema downloads at once.
    pub fn new(outbound: plexus_server::outbound::Outbound, max_downloads: usize) -> Self {
        Self {
            outbound,
            downloads: Arc::new(tokio::sync::Semaphore::new(max_downloads.max(1))),
        }
    }
}

/// Builds the client of calls to genesis (a configured URL, not one from
/// the network): short connect timeout, no redirects, `trust`'s roots
/// besides the system's.
pub fn http_client(trust: &plexus_server::outbound::Trust) -> reqwest::Result<reqwest::Client> {
    plexus_server::outbound::client_builder(trust)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

/// The membership task, not yet running, and the handle to it.
pub struct Task {
    membership: Membership,
    genesis: Genesis,
    http: reqwest::Client,
    peers: Peers,
    inputs_tx: mpsc::Sender<Input>,
    inputs: mpsc::Receiver<Input>,
    view: watch::Sender<Arc<View>>,
    schema: watch::Receiver<String>,
    name: PeerName,
    /// Each cached remote schema once as an `Arc`, by peer, with its hash.
    shared: BTreeMap<PeerName, (String, Arc<Schema>)>,
}

/// Prepares the membership task for `settings`, following the schema of
/// `local`; it calls genesis with `http` and other peers through `peers`.
pub fn start(
    settings: Settings,
    local: Arc<crate::PeerDb>,
    http: reqwest::Client,
    peers: Peers,
) -> (Task, NetworkHandle) {
    let schema = local.subscribe_schema();
    let hash = schema.borrow().clone();
    let membership = Membership::new(Some(settings.membership.clone()), hash);
    let (inputs_tx, inputs) = mpsc::channel(256);
    let (view, view_rx) = watch::channel(Arc::new(View::standalone()));
    let (applied_tx, applied) = watch::channel(Arc::new(View::standalone()));
    let handle = NetworkHandle {
        inputs: inputs_tx.clone(),
        view: view_rx.clone(),
        applied,
        peers: peers.clone(),
        name: settings.membership.name.clone(),
        asker: resolver::Asker::start(
            settings.ask,
            peers.clone(),
            view_rx.clone(),
            settings.membership.name.clone(),
            local.clone(),
        ),
        push_bodies: Arc::new(tokio::sync::Semaphore::new(settings.max_push_bodies.max(1))),
    };
    // The engine follows the remote schemas the view holds; the view is
    // shown once the engine has them.
    if tokio::runtime::Handle::try_current().is_ok() {
        let (mut views, name) = (handle.watch_view(), handle.name.clone());
        tokio::spawn(async move {
            loop {
                let view = views.borrow_and_update().clone();
                local.set_network(name.clone(), view.schemas.clone()).await;
                applied_tx.send_replace(view);
                if views.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    let mut task = Task {
        name: settings.membership.name.clone(),
        shared: BTreeMap::new(),
        membership,
        genesis: settings.genesis,
        http,
        peers,
        inputs_tx,
        inputs,
        view,
        schema,
    };
    task.publish();
    (task, handle)
}

/// Why the membership task stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Stopped {
    /// The peer left the network (after a shutdown).
    #[error("left the network")]
    Left,
    /// The peer gave up on the network for good.
    #[error(transparent)]
    Failed(#[from] FailReason),
}

impl Task {
    /// Runs the membership machine until the peer has left the network or
    /// has given up on it: registers at once, then follows every input.
    pub async fn run(mut self) -> Stopped {
        self.membership.handle_start(now());
        let mut schema_open = true;
        loop {
            if let Some(stopped) = self.drain() {
                return stopped;
            }
            let sleep = match self.membership.poll_timeout() {
                Some(at) => at.saturating_since(now()),
                // Nothing due: wake up now and then anyway, to stay robust.
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    // Never happens: the task holds a sender itself.
                    None => return Stopped::Left,
                },
                changed = self.schema.changed(), if schema_open => match changed {
                    Ok(()) => {
                        let hash = self.schema.borrow_and_update().clone();
                        self.membership.set_schema_hash(hash, now());
                    }
                    Err(_) => schema_open = false,
                },
                () = tokio::time::sleep(sleep) => self.membership.handle_timeout(now()),
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = now();
        let m = &mut self.membership;
        match input {
            Input::Push {
                body,
                version,
                signature,
                reply,
            } => {
                let verdict = m.handle_signed_push(&body, version, &signature, now);
                if let Err(refused) = &verdict {
                    tracing::warn!(%refused, "refused a push");
                }
                let _ = reply.send(verdict);
            }
            Input::Shutdown => m.handle_shutdown(now),
            Input::Outcome(outcome) => match outcome {
                Outcome::Register(r) => m.handle_register_answer(r, now),
                Outcome::Ping(r) => m.handle_ping_answer(r, now),
                Outcome::Leave(r) => m.handle_leave_response(r, now),
                Outcome::Peers(r) => m.handle_peers_answer(r, now),
                Outcome::Schema { peer, hash, result } => {
                    m.handle_schema_response(&peer, &hash, result, now)
                }
            },
        }
    }

    /// Performs every pending request, acts on every event, publishes the view.
    fn drain(&mut self) -> Option<Stopped> {
        while let Some(request) = self.membership.poll_transmit() {
            log_request(&request);
            let (http, peers, genesis, back) = (
                self.http.clone(),
                self.peers.clone(),
                self.genesis.clone(),
                self.inputs_tx.clone(),
            );
            // The core builds and signs the call; the task only sends it.
            let call = self.membership.call(&request, now());
            let replica = self.membership.genesis();
            tokio::spawn(async move {
                let outcome = perform(&http, &peers, &genesis, replica, request, call).await;
                let _ = back.send(Input::Outcome(outcome)).await;
            });
        }
        let mut stopped = None;
        while let Some(event) = self.membership.poll_event() {
            match event {
                Event::Registered(id) => {
                    tracing::info!(%id, genesis = %self.genesis.base(self.membership.genesis()), "registered")
                }
                Event::ViewChanged => tracing::debug!("view of the network changed"),
                Event::Left => {
                    tracing::info!("left the network");
                    stopped = Some(Stopped::Left);
                }
                Event::Failed(reason) => {
                    tracing::error!(%reason, "giving up on the network");
                    stopped = Some(Stopped::Failed(reason));
                }
            }
        }
        self.publish();
        stopped
    }

    fn publish(&mut self) {
        let m = &self.membership;
        let peers = m
            .view()
            .iter()
            .map(|(name, p)| RemoteView {
                name: name.clone(),
                id: p.id,
                uri: p.uri.clone(),
                schema_hash: p.schema_hash.clone(),
                schema_cached: p.is_cached(),
            })
            .collect();
        let mut shared = BTreeMap::new();
        for (name, peer) in m.view() {
            let Some((hash, schema)) = &peer.schema else {
                continue;
            };
            // Keep the Arc of a schema that did not change: no copy per publish.
            let arc = match self.shared.remove(name) {
                Some((old, arc)) if old == *hash => arc,
                _ => Arc::new(schema.clone()),
            };
            shared.insert(name.clone(), (hash.clone(), arc));
        }
        self.shared = shared;
        let view = View {
            state: state_name(m.state()),
            name: Some(self.name.clone()),
            id: m.id(),
            genesis: Some(self.genesis.base(m.genesis()).clone()),
            list_version: m.list_version(),
            peers,
            schemas: self
                .shared
                .iter()
                .map(|(name, (_, arc))| (name.clone(), arc.clone()))
                .collect(),
            push_gate: m.push_gate(),
        };
        self.view.send_replace(Arc::new(view));
    }
}

fn log_request(request: &Request) {
    match request {
        Request::Register(update) => tracing::debug!(name = %update.peer_name, "registering"),
        Request::Ping { id, body } => tracing::trace!(%id, hash = %body.schema_hash, "pinging"),
        Request::Leave { id } => tracing::info!(%id, "deregistering"),
        Request::FetchPeers => tracing::debug!("fetching the peer list"),
        Request::DownloadSchema { peer, hash, .. } => {
            tracing::debug!(%peer, %hash, "downloading schema")
        }
    }
}
