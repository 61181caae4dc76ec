//! The tab as a peer: its relay socket, its membership machine driven by
//! browser timers, and its answers to relayed requests. The decisions are
//! plexus-core's ([`Membership`], the relay's frames) and the engine's;
//! this module moves bytes and wakes the machine.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{Either, select};
use futures::{SinkExt as _, StreamExt as _};
use gloo_net::http::Method;
use gloo_net::websocket::Message as WsMessage;
use gloo_net::websocket::futures::WebSocket;
use gloo_timers::future::TimeoutFuture;
use plexus_core::auth::{Identity, Received};
use plexus_core::contextionary::{self, Contextionary};
use plexus_core::fanout::{FanoutLimits, Transmit, peer_timeout};
use plexus_core::membership::{Answer, CallError, Event, Membership, MembershipConfig, Request};
use plexus_core::relay::{FromTab, RelayRequest, RelayResponse, ToTab, hello_message, tab_path};
use plexus_core::schema::Schema;
use plexus_core::tab_link::{LinkAction, LinkConfig, LinkEvent, TabLink};
use plexus_core::wire::{ErrorBody, HEALTH_PATH, PEERS_VERSION_HEADER, REFUSED_ORIGIN_HEADER};
use plexus_core::{PeerName, PeerUri, Timestamp};
use plexus_graphql::{Engine, GraphQLRequest, Limits, Source, Step};
use plexus_wasm::ClientError;
use plexus_wasm::fanout::{Driver, Reply as FanoutReply, Sender};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use wasm_bindgen_futures::spawn_local;

use crate::data::{self, Data, RestError};
use crate::net::{Reply, fetch, fetch_keepalive};
use crate::store::{self, Record};

/// The options of `PlexusPeer.join(options)`; every bound has a default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerOptions {
    /// Genesis's URL (it must run with `--relay`).
    pub genesis: String,
    /// The tab's name in the network.
    pub name: String,
    /// The network's join token.
    #[serde(default)]
    pub token: Option<String>,
    /// How long each HTTP call, the relay's handshake, and the wait for the
    /// registration may take, in ms (default 10000).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Mean time between pings, in ms (default 10000).
    #[serde(default)]
    pub ping_interval_ms: Option<u32>,
    /// Local queries of one Network query sent at once (default 8).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Requests to one peer at once, across the tab's Network queries (default 8).
    #[serde(default)]
    pub max_per_peer: Option<usize>,
    /// Relayed requests answered at once; more get 503 (default 32).
    #[serde(default)]
    pub max_serving: Option<usize>,
    /// Largest answer read from a server, and largest answer this tab
    /// sends, in bytes (default 1 MiB, the relay's own bound).
    #[serde(default)]
    pub max_answer_bytes: Option<usize>,
    /// Objects this tab holds at most (default 10000).
    #[serde(default)]
    pub max_objects: Option<usize>,
    /// Reconnects of a dropped relay socket before giving up (default 10;
    /// 0 never reconnects). A reconnect that stays up for `reconnectMaxMs`
    /// forgets the earlier ones.
    #[serde(default)]
    pub reconnect_attempts: Option<u32>,
    /// The first delay before reconnecting, in ms (default 500); it doubles
    /// (with jitter) up to `reconnectMaxMs`.
    #[serde(default)]
    pub reconnect_min_ms: Option<u32>,
    /// The longest delay between reconnects, in ms (default 30000).
    #[serde(default)]
    pub reconnect_max_ms: Option<u32>,
    /// The IndexedDB database that keeps the key, schema and objects
    /// (default `plexus-peer`); `null` keeps nothing (a fresh key each time).
    #[serde(default = "default_database")]
    pub database: Option<String>,
}

fn default_database() -> Option<String> {
    Some(store::DEFAULT_DATABASE.to_owned())
}

/// Default of `timeoutMs`.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Default of `pingIntervalMs`.
pub const DEFAULT_PING_INTERVAL_MS: u32 = 10_000;
/// Default of `maxInFlight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;
/// Default of `maxPerPeer`.
pub const DEFAULT_MAX_PER_PEER: usize = 8;
/// Default of `maxServing`.
pub const DEFAULT_MAX_SERVING: usize = 32;
/// Default of `maxAnswerBytes`.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The bounds in force.
#[derive(Clone, Debug)]
struct Bounds {
    timeout_ms: u32,
    max_in_flight: usize,
    max_per_peer: usize,
    max_serving: usize,
    max_answer_bytes: usize,
}

/// Now, for the machines.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_millis(js_sys::Date::now() as u64)
}

/// `n` random bytes from the browser's `crypto.getRandomValues`.
fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    web_sys::window()
        .ok_or("no window")?
        .crypto()
        .map_err(|_| "no crypto")?
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|_| "crypto.getRandomValues failed")?;
    Ok(bytes)
}

/// A fresh random object id.
pub(crate) fn new_id() -> Result<uuid::Uuid, String> {
    Ok(uuid::Builder::from_random_bytes(random::<16>()?).into_uuid())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Why joining failed.
#[derive(Debug)]
pub(crate) enum JoinError {
    /// A bad option.
    Invalid(String),
    /// The relay or genesis refused, or did not answer.
    Refused(String),
    /// Genesis refuses writes from the page's origin `.1` (genesis `.0`).
    Origin(String, String),
}

impl From<JoinError> for ClientError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Invalid(m) => ClientError::invalid(m),
            JoinError::Refused(reason) => ClientError::Network {
                url: "join".into(),
                reason,
            },
            JoinError::Origin(genesis, origin) => ClientError::RefusedOrigin { genesis, origin },
        }
    }
}

/// Told once genesis registered the tab, or why it will not.
type Registered = oneshot::Sender<Result<(), JoinError>>;

/// One tab peer.
pub(crate) struct Tab {
    genesis: PeerUri,
    name: PeerName,
    uri: String,
    token: Option<String>,
    bounds: Bounds,
    identity: Identity,
    database: Option<String>,
    membership: RefCell<Membership>,
    /// When to open the relay socket again (plexus-core decides).
    link: RefCell<TabLink>,
    /// Counts the sockets: only the current one's end is a drop.
    socket_generation: Cell<u64>,
    data: RefCell<Data>,
    wake: mpsc::UnboundedSender<()>,
    /// Frames to the socket; `None` once it is closed.
    out: RefCell<Option<mpsc::UnboundedSender<String>>>,
    serving: Cell<usize>,
    registered: RefCell<Option<Registered>>,
    /// Whether a registration that got no answer made the tab ask genesis
    /// if it refuses the page's origin ([`Tab::check_origin`]).
    origin_checked: Cell<bool>,
    /// A contextionary is being fetched: a registration meanwhile (a
    /// rejoin) starts no second download.
    fetching_contextionary: Cell<bool>,
    left: RefCell<Option<oneshot::Sender<()>>>,
    stopped: Cell<bool>,
    /// The fan-out of the tab's Network queries (`maxInFlight`, `maxPerPeer`).
    fanout: Driver,
}

impl Tab {
    /// Joins: loads what the tab kept, opens the relay socket and proves
    /// its key, then registers through genesis and waits until registered.
    pub(crate) async fn join(options: PeerOptions) -> Result<Rc<Tab>, JoinError> {
        let genesis = plexus_wasm::pure::parse_base_url(&options.genesis, "genesis URL")
            .map_err(|e| JoinError::Invalid(e.to_string()))?;
        let name =
            PeerName::new(&options.name).map_err(|e| JoinError::Invalid(format!("name: {e}")))?;
        let bounds = Bounds {
            timeout_ms: options.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1),
            max_in_flight: options
                .max_in_flight
                .unwrap_or(DEFAULT_MAX_IN_FLIGHT)
                .max(1),
            max_per_peer: options.max_per_peer.unwrap_or(DEFAULT_MAX_PER_PEER).max(1),
            max_serving: options.max_serving.unwrap_or(DEFAULT_MAX_SERVING).max(1),
            max_answer_bytes: options.max_answer_bytes.unwrap_or(DEFAULT_MAX_ANSWER_BYTES),
        };
        let database = options.database.filter(|d| !d.is_empty());
        let key = store::key(genesis.as_str(), name.as_str());
        let record = match &database {
            Some(db) => store::load(db, &key).await.map_err(JoinError::Refused)?,
            None => None,
        };
        let (seed, saved) = match record {
            Some(record) => (
                unhex(&record.seed)
                    .ok_or_else(|| JoinError::Refused("the saved key is damaged".into()))?,
                record.saved,
            ),
            None => (
                random::<32>().map_err(JoinError::Refused)?,
                Default::default(),
            ),
        };
        let identity = Identity::from_seed(seed);
        let data = Data::new(
            name.clone(),
            saved,
            Limits::default(),
            options.max_objects.unwrap_or(data::DEFAULT_MAX_OBJECTS),
        )
        .map_err(|e| JoinError::Refused(e.message))?;
        let socket = hello(genesis.as_str(), &name, &identity, bounds.timeout_ms).await?;
        let uri = plexus_core::relay::tab_uri(genesis.as_str(), &name);
        let public_uri =
            PeerUri::new(uri.clone()).map_err(|e| JoinError::Invalid(e.to_string()))?;
        let mut config = MembershipConfig::new(
            name.clone(),
            public_uri,
            u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
        );
        config.identity = Some(identity.clone());
        config.ping_interval = Duration::from_millis(u64::from(
            options
                .ping_interval_ms
                .unwrap_or(DEFAULT_PING_INTERVAL_MS)
                .max(100),
        ));
        let hash = data.schema().hash();
        let mut link = LinkConfig::new(u64::from_le_bytes(
            seed[8..16].try_into().unwrap_or_default(),
        ));
        if let Some(attempts) = options.reconnect_attempts {
            link.max_attempts = attempts;
        }
        if let Some(ms) = options.reconnect_min_ms {
            link.retry_min = Duration::from_millis(u64::from(ms.max(1)));
        }
        if let Some(ms) = options.reconnect_max_ms {
            link.retry_max = Duration::from_millis(u64::from(ms.max(1)));
        }
        link.retry_max = link.retry_max.max(link.retry_min);
        let (wake, wakes) = mpsc::unbounded();
        let (out, outgoing) = mpsc::unbounded();
        let (registered, is_registered) = oneshot::channel();
        let fanout = Driver::new(FanoutLimits {
            per_query: bounds.max_in_flight,
            per_peer: bounds.max_per_peer,
        });
        let tab = Rc::new(Tab {
            genesis,
            name,
            uri,
            token: options.token.filter(|t| !t.is_empty()),
            bounds,
            identity,
            database,
            membership: RefCell::new(Membership::new(Some(config), hash)),
            link: RefCell::new(TabLink::new(link, now())),
            socket_generation: Cell::new(0),
            data: RefCell::new(data),
            wake,
            out: RefCell::new(Some(out)),
            serving: Cell::new(0),
            registered: RefCell::new(Some(registered)),
            origin_checked: Cell::new(false),
            fetching_contextionary: Cell::new(false),
            left: RefCell::new(None),
            stopped: Cell::new(false),
            fanout,
        });
        spawn_local(tab.clone().socket(socket, outgoing, 0));
        spawn_local(tab.clone().timer(wakes));
        // Saved at once: a reload keeps the key even before the first write.
        tab.save().await.map_err(JoinError::Refused)?;
        tab.membership.borrow_mut().handle_start(now());
        tab.pump(true);
        let timeout = TimeoutFuture::new(tab.bounds.timeout_ms);
        let outcome = match select(is_registered, timeout).await {
            Either::Left((Ok(Ok(())), _)) => Ok(()),
            Either::Left((Ok(Err(e)), _)) => Err(e),
            Either::Left((Err(_), _)) => Err(JoinError::Refused(
                "stopped before it registered".to_owned(),
            )),
            Either::Right(_) => Err(JoinError::Refused(format!(
                "genesis did not register it within {} ms",
                tab.bounds.timeout_ms
            ))),
        };
        if let Err(e) = outcome {
            tab.close();
            return Err(e);
        }
        Ok(tab)
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The URI genesis lists for it.
    pub(crate) fn uri(&self) -> &str {
        &self.uri
    }

    /// The hash of its schema.
    pub(crate) fn schema_hash(&self) -> String {
        self.data.borrow().schema().hash()
    }

    /// Its schema.
    pub(crate) fn schema(&self) -> Schema {
        Schema::clone(self.data.borrow().schema())
    }

    /// Its public key.
    pub(crate) fn public_key(&self) -> String {
        self.identity.public().to_string()
    }

    /// The genesis URL.
    pub(crate) fn genesis(&self) -> &str {
        self.genesis.as_str()
    }

    /// Whether it has stopped (left, or closed).
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Whether its relay socket is up (the relay welcomed it).
    pub(crate) fn is_connected(&self) -> bool {
        !self.stopped.get() && self.link.borrow().is_connected()
    }

    /// The other peers it sees: name, URI and announced schema hash.
    pub(crate) fn view(&self) -> Vec<Json> {
        self.membership
            .borrow()
            .view()
            .iter()
            .map(|(name, p)| {
                json!({"peerName": name.as_str(), "peerUri": p.uri.as_str(), "schemaHash": p.schema_hash})
            })
            .collect()
    }

    async fn save(&self) -> Result<(), String> {
        let Some(db) = &self.database else {
            return Ok(());
        };
        let record = Record {
            seed: hex(&self.identity.seed()),
            saved: self.data.borrow().saved(),
        };
        store::save(
            db,
            &store::key(self.genesis.as_str(), self.name.as_str()),
            &record,
        )
        .await
    }

    /// `POST /v1/schema/{kind}`, then saved; the next ping tells genesis.
    pub(crate) async fn create_class(&self, kind: &str, class: &str) -> Result<Json, RestError> {
        let class = self.data.borrow_mut().create_class(kind, class)?;
        self.after_write().await?;
        Ok(serde_json::to_value(class).unwrap_or(Json::Null))
    }

    /// `POST /v1/{kind}`, then saved.
    pub(crate) async fn add_object(&self, kind: &str, object: &str) -> Result<Json, RestError> {
        let id = new_id().map_err(|e| RestError {
            status: 500,
            message: e,
        })?;
        let created = self
            .data
            .borrow_mut()
            .add_object(kind, object, id, now().as_millis())?;
        self.after_write().await?;
        Ok(serde_json::to_value(created).unwrap_or(Json::Null))
    }

    async fn after_write(&self) -> Result<(), RestError> {
        let hash = self.schema_hash();
        self.membership.borrow_mut().set_schema_hash(hash, now());
        self.pump_transmits();
        self.save().await.map_err(|e| RestError {
            status: 500,
            message: format!("kept in memory, but not saved: {e}"),
        })
    }

    /// Runs `request` on this tab's engine: `Local` from its objects,
    /// `Network` through the peers genesis lists: planned by the engine,
    /// asked through the core's fan-out (the tab's own part on its own
    /// engine), merged by the core, then run with the answers in hand.
    pub(crate) async fn query(&self, request: GraphQLRequest) -> plexus_graphql::Answer {
        let (engine, source) = {
            let data = self.data.borrow();
            (data.engine(), data.source())
        };
        let plan = match engine.begin(&request, source.clone()).await {
            Step::Answer(answer) => return answer,
            Step::Network(plan) => plan,
        };
        let timeout = Duration::from_millis(u64::from(self.bounds.timeout_ms));
        let outcomes = self
            .fanout
            .ask(
                plan.asks(),
                peer_timeout(plan.timeout, timeout, timeout),
                self.sender(engine.clone(), source.clone()),
            )
            .await;
        let merged = plexus_core::network::merge(&plan, outcomes);
        engine.execute(request, source, Some(merged)).await
    }

    /// How the fan-out's transmits of one query go: `fetch` to the peers
    /// genesis lists (within the query's deadline and `maxAnswerBytes`),
    /// the tab's own part on `engine` over `source`.
    fn sender(&self, engine: Arc<Engine>, source: Arc<dyn Source>) -> Sender {
        // extend, not collect: collecting into a BTree sorts first, and every
        // sort instantiated costs the tab module's size budget (wasm/build.sh).
        let mut peers: BTreeMap<PeerName, PeerUri> = BTreeMap::new();
        peers.extend(
            self.membership
                .borrow()
                .view()
                .iter()
                .map(|(name, p)| (name.clone(), p.uri.clone())),
        );
        let own = self.name.clone();
        let bearer = self.token.as_deref().map(plexus_core::client::bearer);
        let max_answer_bytes = self.bounds.max_answer_bytes;
        Rc::new(move |transmit: Transmit| {
            let (engine, source, bearer) = (engine.clone(), source.clone(), bearer.clone());
            let uri = peers.get(&transmit.peer).cloned();
            let own = transmit.peer == own;
            Box::pin(async move {
                if own {
                    let answer = engine
                        .execute(GraphQLRequest::new(transmit.query), source, None)
                        .await;
                    return FanoutReply::Own(answer.body);
                }
                let Some(uri) = uri else {
                    return FanoutReply::Failed("it left the network".to_owned());
                };
                let left = transmit.deadline.saturating_since(now());
                let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
                let mut headers: Vec<(&str, &str)> = vec![
                    ("accept", "application/json"),
                    ("content-type", "application/json"),
                ];
                if let Some(bearer) = &bearer {
                    headers.push(("authorization", bearer));
                }
                let url = uri.join("/v1/graphql");
                let body = transmit.body().into_bytes();
                match fetch(
                    Method::POST,
                    &url,
                    &headers,
                    Some(body),
                    ms,
                    max_answer_bytes,
                )
                .await
                {
                    Ok(reply) => FanoutReply::Http {
                        status: reply.status,
                        body: String::from_utf8_lossy(&reply.body).into_owned(),
                    },
                    // Out of time: the fan-out's own deadline says so.
                    Err(reason) if reason.starts_with("no answer within") => FanoutReply::Expired,
                    Err(reason) => FanoutReply::Failed(reason),
                }
            })
        })
    }

    /// Leaves the network (`DELETE /peers/{id}`), then closes.
    pub(crate) async fn leave(self: &Rc<Self>) {
        if self.stopped.get() {
            return;
        }
        let (left, is_left) = oneshot::channel();
        *self.left.borrow_mut() = Some(left);
        self.membership.borrow_mut().handle_shutdown(now());
        self.pump(true);
        let _ = select(is_left, TimeoutFuture::new(self.bounds.timeout_ms)).await;
        self.close();
    }

    /// The page goes away: the leave goes out as a request that outlives
    /// the page (a signed `DELETE`, which `sendBeacon` cannot send), then
    /// the socket closes.
    pub(crate) fn leave_on_pagehide(&self) {
        if self.stopped.get() {
            return;
        }
        let mut membership = self.membership.borrow_mut();
        membership.handle_shutdown(now());
        while let Some(request) = membership.poll_transmit() {
            if let Request::Leave { .. } = request {
                let Some(call) = membership.call(&request, now()) else {
                    continue;
                };
                let call = call.with_token(self.token.as_deref());
                let headers: Vec<(&str, &str)> = call.headers().collect();
                fetch_keepalive(call.method, &self.genesis.join(&call.path), &headers);
            }
        }
        drop(membership);
        self.close();
    }

    /// Stops without leaving: the socket closes and the timers stop.
    pub(crate) fn close(&self) {
        self.stopped.set(true);
        self.link.borrow_mut().handle_stop();
        self.out.borrow_mut().take();
        self.wake.close_channel();
    }

    /// Performs what the link machine asks (a reconnect) and tells its
    /// events on the console.
    fn drive_link(self: &Rc<Self>) {
        loop {
            let action = self.link.borrow_mut().poll_action();
            match action {
                Some(LinkAction::Connect) => spawn_local(self.clone().reconnect()),
                None => break,
            }
        }
        loop {
            let event = self.link.borrow_mut().poll_event();
            let Some(event) = event else { break };
            let text = match event {
                LinkEvent::Retrying { attempts, retry_at } => format!(
                    "plexus: {}'s relay socket is down; reconnect {} in {} ms",
                    self.name,
                    attempts + 1,
                    retry_at.saturating_since(now()).as_millis()
                ),
                LinkEvent::Reconnected { attempts } => format!(
                    "plexus: {} is connected to the relay again (reconnect {attempts})",
                    self.name
                ),
                LinkEvent::GaveUp { attempts } => format!(
                    "plexus: {} gives up on the relay after {attempts} reconnects (reconnectAttempts); join again to be reachable",
                    self.name
                ),
            };
            web_sys::console::info_1(&text.into());
        }
    }

    /// Opens a new relay socket and proves the key again; the link machine
    /// hears how it went.
    async fn reconnect(self: Rc<Self>) {
        let result = hello(
            self.genesis.as_str(),
            &self.name,
            &self.identity,
            self.bounds.timeout_ms,
        )
        .await;
        if self.stopped.get() {
            return; // the new socket, if any, closes as it drops
        }
        match result {
            Ok(socket) => {
                let generation = self.socket_generation.get() + 1;
                self.socket_generation.set(generation);
                let (out, outgoing) = mpsc::unbounded();
                *self.out.borrow_mut() = Some(out);
                self.link.borrow_mut().handle_welcomed(now());
                spawn_local(self.clone().socket(socket, outgoing, generation));
            }
            Err(e) => {
                let reason = ClientError::from(e);
                web_sys::console::warn_1(
                    &format!("plexus: reconnecting {} failed: {reason}", self.name).into(),
                );
                self.link.borrow_mut().handle_failed(now());
            }
        }
        self.drive_link();
        let _ = self.wake.unbounded_send(());
    }

    /// Sends what the machine asks, takes its events, and (with `wake`)
    /// re-arms the timer.
    fn pump(self: &Rc<Self>, wake: bool) {
        self.pump_transmits_rc();
        let mut view_changed = false;
        loop {
            let event = self.membership.borrow_mut().poll_event();
            match event {
                None => break,
                Some(Event::Registered(_)) => {
                    if let Some(tx) = self.registered.borrow_mut().take() {
                        let _ = tx.send(Ok(()));
                    }
                    spawn_local(self.clone().fetch_contextionary());
                }
                Some(Event::Failed(reason)) => {
                    if let Some(tx) = self.registered.borrow_mut().take() {
                        let _ = tx.send(Err(JoinError::Refused(reason.to_string())));
                    }
                    if let Some(tx) = self.left.borrow_mut().take() {
                        let _ = tx.send(());
                    }
                }
                Some(Event::ViewChanged) => view_changed = true,
                Some(Event::Left) => {
                    if let Some(tx) = self.left.borrow_mut().take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
        if view_changed {
            // extend, not collect: collecting into a BTree sorts first, and every
            // sort instantiated costs the tab module's size budget (wasm/build.sh).
            let mut remotes: BTreeMap<PeerName, Arc<Schema>> = BTreeMap::new();
            remotes.extend(
                self.membership
                    .borrow()
                    .schemas()
                    .into_iter()
                    .map(|(name, schema)| (name, Arc::new(schema.clone()))),
            );
            self.data.borrow_mut().set_remotes(remotes);
        }
        if wake {
            let _ = self.wake.unbounded_send(());
        }
    }

    fn pump_transmits(&self) {
        // Called with &self: the timer picks the transmits up when woken.
        let _ = self.wake.unbounded_send(());
    }

    fn pump_transmits_rc(self: &Rc<Self>) {
        loop {
            let request = self.membership.borrow_mut().poll_transmit();
            match request {
                Some(request) => spawn_local(self.clone().perform(request)),
                None => break,
            }
        }
    }

    /// Once registered: the contextionary genesis named (its URL and
    /// hash), from IndexedDB when this browser fetched it before, else
    /// downloaded (at most [`contextionary::DEFAULT_MAX_BYTES`]) and kept;
    /// its hash must be the one genesis named. The engine then answers
    /// Fetch and Introspect; until then (or when it fails, which is logged)
    /// they answer that the tab has no contextionary, and the rest works.
    async fn fetch_contextionary(self: Rc<Self>) {
        let Some(named) = self.membership.borrow().network_contextionary().cloned() else {
            return;
        };
        if self.data.borrow().contextionary().map(Contextionary::hash) == Some(&named.hash)
            || self.fetching_contextionary.replace(true)
        {
            return;
        }
        let contextionary = self.load_contextionary(&named).await;
        self.fetching_contextionary.set(false);
        let contextionary = match contextionary {
            Ok(contextionary) => contextionary,
            Err(reason) => {
                web_sys::console::warn_1(
                    &format!(
                        "plexus tab: no contextionary from {} ({reason}): Fetch and Introspect stay off",
                        named.url
                    )
                    .into(),
                );
                return;
            }
        };
        if let Err(e) = self.data.borrow_mut().set_contextionary(contextionary) {
            web_sys::console::warn_1(&format!("plexus tab: {}", e.message).into());
        }
    }

    /// The contextionary `named`, from IndexedDB or downloaded and then
    /// kept there; its hash must be the one genesis named.
    async fn load_contextionary(
        &self,
        named: &plexus_core::wire::Contextionary,
    ) -> Result<Arc<Contextionary>, String> {
        let key = store::contextionary_key(&named.hash.to_string());
        let kept = match &self.database {
            Some(db) => store::load_bytes(db, &key).await.ok().flatten(),
            None => None,
        };
        let cached = kept.is_some();
        let bytes = match kept {
            Some(bytes) => Ok(bytes),
            None => fetch(
                Method::GET,
                &named.url,
                &[],
                None,
                self.bounds.timeout_ms,
                usize::try_from(contextionary::DEFAULT_MAX_BYTES).unwrap_or(usize::MAX),
            )
            .await
            .and_then(|reply| match reply.status {
                200 => Ok(reply.body),
                status => Err(format!("answered {status}")),
            }),
        };
        let parsed = Contextionary::parse(bytes?).map_err(|e| e.to_string())?;
        if parsed.hash() != &named.hash {
            return Err(format!("its hash is {}, not {}", parsed.hash(), named.hash));
        }
        if !cached && let Some(db) = &self.database {
            let _ = store::save_bytes(db, &key, parsed.bytes()).await;
        }
        Ok(Arc::new(parsed))
    }

    /// Sends one request of the machine and hands it the answer.
    async fn perform(self: Rc<Self>, request: Request) {
        // The call is core's (method, path, headers, body, signature), as
        // every host sends it; a schema download is a GET of another peer.
        let call = self.membership.borrow().call(&request, now());
        let call = call.map(|c| c.with_token(self.token.as_deref()));
        let mut headers: Vec<(&str, &str)> = vec![("accept", "application/json")];
        let (method, url, body) = match (&request, &call) {
            (Request::DownloadSchema { uri, .. }, _) => (Method::GET, uri.join("/v1/schema"), None),
            (_, Some(call)) => {
                headers.extend(call.headers());
                let body = (!call.body.is_empty()).then(|| call.body.clone());
                (method_of(call.method), self.genesis.join(&call.path), body)
            }
            // Never: the core builds a call for every request to genesis.
            (_, None) => return,
        };
        let reply = fetch(
            method,
            &url,
            &headers,
            body,
            self.bounds.timeout_ms,
            self.bounds.max_answer_bytes,
        )
        .await;
        if matches!(request, Request::Register(_)) && reply.is_err() {
            spawn_local(self.clone().check_origin());
        }
        let now = now();
        {
            let mut m = self.membership.borrow_mut();
            match request {
                Request::Register(_) => m.handle_register_answer(answer_of(reply), now),
                Request::Ping { .. } => m.handle_ping_answer(answer_of(reply), now),
                Request::Leave { .. } => m.handle_leave_response(answer_of(reply).map(|_| ()), now),
                Request::FetchPeers => m.handle_peers_answer(answer_of(reply), now),
                Request::DownloadSchema { peer, hash, .. } => {
                    let schema =
                        answer_of(reply).and_then(|a| plexus_core::client::read_schema(&a));
                    m.handle_schema_response(&peer, &hash, schema, now);
                }
            }
        }
        self.pump(true);
    }

    /// After a registration that failed without an answer, while joining:
    /// a browser does not tell a page that CORS refused its write, so the
    /// tab asks genesis a read (which every origin may make) and, when its
    /// answer carries [`REFUSED_ORIGIN_HEADER`], fails the join saying
    /// which origin to start genesis with. Once per join.
    async fn check_origin(self: Rc<Self>) {
        if self.registered.borrow().is_none() || self.origin_checked.replace(true) {
            return;
        }
        let url = self.genesis.join(HEALTH_PATH);
        let reply = fetch(
            Method::GET,
            &url,
            &[("accept", "application/json")],
            None,
            self.bounds.timeout_ms,
            self.bounds.max_answer_bytes,
        )
        .await;
        let Some(origin) = reply
            .ok()
            .and_then(|r| r.header(REFUSED_ORIGIN_HEADER).map(str::to_owned))
        else {
            return;
        };
        if let Some(tx) = self.registered.borrow_mut().take() {
            let _ = tx.send(Err(JoinError::Origin(self.genesis.to_string(), origin)));
        }
    }

    /// Wakes the machine when it asks, or when woken; ends when closed.
    async fn timer(self: Rc<Self>, mut wakes: mpsc::UnboundedReceiver<()>) {
        loop {
            if self.stopped.get() {
                return;
            }
            let now_ = now();
            let due = [
                self.membership.borrow().poll_timeout(),
                self.link.borrow().poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let delay = due
                .map_or(60_000, |at| at.saturating_since(now_).as_millis())
                .min(60_000);
            let delay = u32::try_from(delay).unwrap_or(60_000);
            if let Either::Right((None, _)) = select(TimeoutFuture::new(delay), wakes.next()).await
            {
                return;
            }
            self.membership.borrow_mut().handle_timeout(now());
            self.link.borrow_mut().handle_timeout(now());
            self.drive_link();
            self.pump(false);
        }
    }

    /// Reads relayed requests and writes answers until closed; then, if it
    /// is still the tab's socket, tells the link machine it dropped.
    async fn socket(
        self: Rc<Self>,
        mut socket: WebSocket,
        mut outgoing: mpsc::UnboundedReceiver<String>,
        generation: u64,
    ) {
        loop {
            match select(socket.next(), outgoing.next()).await {
                Either::Left((Some(Ok(WsMessage::Text(text))), _)) => {
                    match serde_json::from_str::<ToTab>(&text) {
                        Ok(ToTab::Request(request)) => self.serve(request),
                        Ok(ToTab::Refused { message }) => {
                            web_sys::console::warn_1(
                                &format!("plexus: the relay closed {}: {message}", self.name)
                                    .into(),
                            );
                        }
                        _ => {}
                    }
                }
                Either::Left((Some(Ok(WsMessage::Bytes(_))), _)) => {}
                Either::Left((_, _)) => break,
                Either::Right((Some(text), _)) => {
                    if socket.send(WsMessage::Text(text)).await.is_err() {
                        break;
                    }
                }
                Either::Right((None, _)) => break,
            }
        }
        drop(socket);
        if self.socket_generation.get() != generation || self.stopped.get() {
            return;
        }
        self.out.borrow_mut().take();
        self.link.borrow_mut().handle_closed(now());
        self.drive_link();
        let _ = self.wake.unbounded_send(());
    }

    /// Answers one relayed request (503 past `maxServing` at once).
    fn serve(self: &Rc<Self>, request: RelayRequest) {
        if self.serving.get() >= self.bounds.max_serving {
            let busy = error(
                request.id,
                503,
                &format!(
                    "this tab already answers {} requests (maxServing)",
                    self.bounds.max_serving
                ),
            );
            self.send(&busy);
            return;
        }
        self.serving.set(self.serving.get() + 1);
        let tab = self.clone();
        spawn_local(async move {
            let response = tab.answer(request).await;
            tab.serving.set(tab.serving.get() - 1);
            tab.send(&response);
        });
    }

    fn send(&self, response: &RelayResponse) {
        let Ok(frame) = serde_json::to_string(&FromTab::Response(response.clone())) else {
            return;
        };
        if let Some(out) = &*self.out.borrow() {
            let _ = out.unbounded_send(frame);
        }
    }

    async fn answer(self: &Rc<Self>, request: RelayRequest) -> RelayResponse {
        let id = request.id;
        let path = request.path.split('?').next().unwrap_or_default();
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        match (request.method.as_str(), path) {
            ("GET" | "HEAD", "/p2p/ping") => ok(id, String::new()),
            ("PUT", "/p2p/genesis") => {
                let version = plexus_core::client::read_version(header(PEERS_VERSION_HEADER));
                let signature = Received::from_headers(header);
                let verdict = self.membership.borrow_mut().handle_signed_push(
                    request.body.as_bytes(),
                    version,
                    &signature,
                    now(),
                );
                self.pump(true);
                match verdict {
                    Ok(()) => ok(id, String::new()),
                    Err(refused @ plexus_core::membership::PushRefused::Invalid(_)) => {
                        error(id, 422, &refused.to_string())
                    }
                    Err(refused) => error(id, 403, &refused.to_string()),
                }
            }
            ("GET", "/v1/schema") => {
                let schema = self.schema();
                json_answer(id, 200, &serde_json::to_value(schema).unwrap_or(Json::Null))
            }
            ("POST", "/v1/graphql") => {
                let graphql: GraphQLRequest = match serde_json::from_str(&request.body) {
                    Ok(r) => r,
                    Err(e) => {
                        return error(id, 400, &format!("the body is not a GraphQL request: {e}"));
                    }
                };
                let strict = header("accept")
                    .is_some_and(|a| a.contains("application/graphql-response+json"));
                let answer = self.query(graphql).await;
                let text = answer.body.to_string();
                let status = if answer.request_error && strict {
                    400
                } else {
                    200
                };
                if text.len() > self.bounds.max_answer_bytes {
                    return error(
                        id,
                        if strict { 400 } else { 200 },
                        &format!(
                            "the answer is {} bytes, more than this tab sends ({}, maxAnswerBytes): ask for fewer objects or fields",
                            text.len(),
                            self.bounds.max_answer_bytes
                        ),
                    );
                }
                RelayResponse {
                    id,
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: text,
                }
            }
            (_, "/p2p/ping" | "/p2p/genesis" | "/v1/schema" | "/v1/graphql") => {
                error(id, 405, "method not allowed")
            }
            _ => error(id, 404, "no such route on a browser tab peer"),
        }
    }
}

fn ok(id: u64, body: String) -> RelayResponse {
    RelayResponse {
        id,
        status: 200,
        headers: vec![],
        body,
    }
}

fn json_answer(id: u64, status: u16, body: &Json) -> RelayResponse {
    RelayResponse {
        id,
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

fn error(id: u64, status: u16, message: &str) -> RelayResponse {
    json_answer(
        id,
        status,
        &serde_json::to_value(ErrorBody::new(message)).unwrap_or(Json::Null),
    )
}

/// A genesis answer as the machine takes it, read by the core
/// ([`plexus_core::client::read_answer`]).
fn answer_of(reply: Result<Reply, String>) -> Result<Answer, CallError> {
    let reply = reply.map_err(CallError::Transport)?;
    let body = Ok(reply.body.clone());
    plexus_core::client::read_answer(reply.status, |n| reply.header(n), body)
}

/// Opens the relay socket and proves the key; the socket once welcomed.
async fn hello(
    genesis: &str,
    name: &PeerName,
    identity: &Identity,
    timeout_ms: u32,
) -> Result<WebSocket, JoinError> {
    let url = plexus_core::relay::socket_url(genesis);
    let mut socket =
        WebSocket::open(&url).map_err(|e| JoinError::Refused(format!("{url}: {e}")))?;
    let handshake = async {
        let nonce = match next_frame(&mut socket).await? {
            ToTab::Challenge { nonce } => nonce,
            ToTab::Refused { message } => {
                return Err(format!("the relay refused {name}: {message}"));
            }
            other => return Err(format!("unexpected frame {other:?}")),
        };
        let signature = identity.sign(&hello_message(&tab_path(name), &nonce), now());
        let frame = serde_json::to_string(&FromTab::hello(name.clone(), signature))
            .map_err(|e| e.to_string())?;
        socket
            .send(WsMessage::Text(frame))
            .await
            .map_err(|e| e.to_string())?;
        match next_frame(&mut socket).await? {
            ToTab::Welcome { .. } => Ok(()),
            ToTab::Refused { message } => Err(format!("the relay refused {name}: {message}")),
            other => Err(format!("unexpected frame {other:?}")),
        }
    };
    let outcome = match select(pin!(handshake), TimeoutFuture::new(timeout_ms)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(format!(
            "the relay at {url} did not welcome {name} within {timeout_ms} ms (does genesis run with --relay?)"
        )),
    };
    outcome.map(|()| socket).map_err(JoinError::Refused)
}

async fn next_frame(socket: &mut WebSocket) -> Result<ToTab, String> {
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                return serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"));
            }
            Some(Ok(WsMessage::Bytes(_))) => {}
            Some(Err(e)) => return Err(format!("the relay socket failed: {e}")),
            None => return Err("the relay closed the socket".into()),
        }
    }
}

/// The fetch method of a call's method ([`plexus_core::client::Call::method`]).
fn method_of(method: &str) -> Method {
    match method {
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        _ => Method::GET,
    }
}
