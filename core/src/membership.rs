//! A peer's membership of the network: registering, pinging, following the
//! peer list genesis pushes, and leaving.
//!
//! Drive it with [`Membership::handle_start`], the `handle_*_response` calls
//! (one for every [`Request`] it emitted, success or failure, so that nothing
//! stays in flight), [`Membership::handle_peer_list`] for every
//! `PUT /p2p/genesis`, [`Membership::set_schema_hash`] when the local schema
//! changes, and [`Membership::handle_timeout`]. After every call drain
//! [`Membership::poll_transmit`] and [`Membership::poll_event`], then arm a
//! timer for [`Membership::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::auth::{
    self, AuthError, Expect, Identity, Message, PublicKey, Received, ReceivedRef, SessionKey,
};
pub use crate::client::{Answer, CallError};
use crate::client::{Call, Failover, RegistrationError};
use crate::names::{PeerName, PeerUri};
use crate::schema::Schema;
use crate::time::Timestamp;
use crate::wire::{
    Contextionary, GenesisPush, Peer, PeerDelta, PeerId, PeerListEntry, PeerPing,
    PeerRegistrationResponse, PeerUpdate,
};

/// How a peer takes part in a network.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Its name in the network.
    pub name: PeerName,
    /// Where genesis and other peers reach it.
    pub public_uri: PeerUri,
    /// Its own contextionary: it refuses a network with another one.
    /// `None` accepts whatever the network uses.
    pub contextionary: Option<Contextionary>,
    /// Mean time between pings; each one is jittered by ±10 %.
    pub ping_interval: Duration,
    /// First delay before registering again after a failure; it doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest delay between registration attempts.
    pub retry_max: Duration,
    /// Seed of the jitter, so that tests are reproducible.
    pub seed: u64,
    /// How many genesis replicas the peer was given (at least 1). Calls go
    /// to [`Membership::genesis`]; when one fails to answer, or refuses the
    /// peer, the next (see [`FailReason::EveryReplicaRefused`]).
    pub genesis_replicas: usize,
    /// The replicas' names (their URLs), in the same order, for messages
    /// only: a refusal names the replica that made it. Missing names are
    /// written `replica N`.
    pub genesis_names: Vec<String>,
    /// The peer's key pair: it signs its registration with it, so that
    /// genesis binds its name to it. `None`: a keyless peer, as the original.
    pub identity: Option<Identity>,
    /// Genesis's public key. `None`: the key that signs the answer of each
    /// registration is trusted (pinned) until the next registration.
    pub genesis_key: Option<PublicKey>,
    /// How far a signature's `created` may be from this peer's clock.
    pub max_signature_age: Duration,
    /// The most bytes of a pushed list (`--max-list-bytes`): a push that
    /// declares more is refused before its body is read.
    pub max_list_bytes: usize,
}

/// How many peers the default [`MembershipConfig::max_list_bytes`] holds
/// at the longest entries genesis accepts by default (2,048-byte URIs,
/// 128-character hashes); ~150,000 of typical ones (~330 bytes).
pub const DEFAULT_MAX_LIST_PEERS: usize = 10_000;

/// The default of [`MembershipConfig::max_list_bytes`]:
/// [`DEFAULT_MAX_LIST_PEERS`] entries at genesis's default bounds
/// ([`wire::max_list_bytes`](crate::wire::max_list_bytes)), 50,080,080 bytes.
pub fn default_max_list_bytes() -> usize {
    crate::wire::max_list_bytes(DEFAULT_MAX_LIST_PEERS, &crate::names::Limits::default())
}

impl MembershipConfig {
    /// A configuration with the defaults: ping every 10 s, retry from 500 ms up to 30 s.
    pub fn new(name: PeerName, public_uri: PeerUri, seed: u64) -> Self {
        Self {
            name,
            public_uri,
            contextionary: None,
            ping_interval: Duration::from_secs(10),
            retry_min: crate::client::RETRY_MIN,
            retry_max: crate::client::RETRY_MAX,
            seed,
            genesis_replicas: 1,
            genesis_names: Vec::new(),
            identity: None,
            genesis_key: None,
            max_signature_age: auth::DEFAULT_MAX_AGE,
            max_list_bytes: default_max_list_bytes(),
        }
    }
}

/// Why the peer gave up on the network for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// Genesis names another contextionary than the peer's own.
    #[error(
        "genesis uses contextionary {theirs} ({theirs_url}), this peer uses {ours}: refusing to join"
    )]
    ContextionaryMismatch {
        /// The peer's hash.
        ours: String,
        /// Genesis's hash.
        theirs: String,
        /// Genesis's contextionary URL.
        theirs_url: String,
    },
    /// Genesis refused the join token (403).
    #[error("genesis refused the join token (403): {0}")]
    Forbidden(String),
    /// Genesis refused the registration as invalid (422).
    #[error("genesis refused the registration: {0}")]
    Refused(String),
    /// Genesis's answer to the registration is not signed by the key this
    /// peer trusts (its configured `genesis_key`), or not signed at all.
    #[error(
        "genesis's registration answer is not signed by the expected key ({0}); check genesis_key / --genesis-key, or the genesis URL"
    )]
    Unauthentic(AuthError),
    /// With several genesis replicas: each of them refused this peer since
    /// a call last succeeded (one replica's refusal only moves the peer to
    /// the next replica).
    #[error("every genesis replica refused this peer: {}", list_refusals(.0))]
    EveryReplicaRefused(Vec<Refusal>),
}

/// One replica's refusal of this peer, in [`FailReason::EveryReplicaRefused`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{replica} refused: {reason}")]
pub struct Refusal {
    /// The replica: its name from [`MembershipConfig::genesis_names`], or `replica N`.
    pub replica: String,
    /// The check that failed there.
    pub reason: Box<FailReason>,
}

fn list_refusals(refusals: &[Refusal]) -> String {
    let texts: Vec<String> = refusals.iter().map(Refusal::to_string).collect();
    texts.join("; ")
}

/// Where the peer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No network configured: the peer runs stand-alone.
    NotConfigured,
    /// Configured, not started yet.
    Idle,
    /// Trying to register; the next attempt is at `retry_at` unless one is in flight.
    Registering {
        /// Failed attempts so far.
        attempt: u32,
        /// When to try next.
        retry_at: Timestamp,
        /// A registration request is in flight.
        in_flight: bool,
    },
    /// A member of the network.
    Registered {
        /// The id genesis gave.
        id: PeerId,
        /// When to ping next.
        next_ping: Timestamp,
        /// A ping is in flight.
        in_flight: bool,
    },
    /// Gave up for good.
    Failed(FailReason),
    /// Deregistering.
    Leaving,
    /// Out of the network.
    Left,
}

/// A request the caller must send, then report with the matching `handle_*_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `POST /peers/register`.
    Register(PeerUpdate),
    /// `POST /peers/{id}/ping`.
    Ping {
        /// The peer's id.
        id: PeerId,
        /// The body.
        body: PeerPing,
    },
    /// `DELETE /peers/{id}`.
    Leave {
        /// The peer's id.
        id: PeerId,
    },
    /// `GET /peers`: the whole list, because two pings in a row told of a
    /// list version this peer has not seen (a broadcast was lost).
    FetchPeers,
    /// `GET {uri}/v1/schema` of a remote peer whose schema hash changed.
    DownloadSchema {
        /// The remote peer.
        peer: PeerName,
        /// Its URI.
        uri: PeerUri,
        /// The hash genesis announced.
        hash: String,
    },
}

/// Why a push (`PUT /p2p/genesis`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushRefused {
    /// The peer does not know genesis's key yet (not configured, and not
    /// registered yet): it cannot tell a real push from a forged one (403).
    #[error("this peer does not know genesis's key yet: it takes no unverifiable push")]
    NoKey,
    /// The push is not signed by genesis's key (403).
    #[error("the push is not signed by genesis: {0}")]
    Denied(AuthError),
    /// Signed, but not a peer list or delta (422).
    #[error("invalid peer list or delta: {0}")]
    Invalid(String),
    /// Its body is (or says it is) larger than any list can be (413).
    #[error("a pushed peer list holds at most {max} bytes (--max-list-bytes); this one has {len}")]
    TooLarge {
        /// The bytes it declared or sent.
        len: u64,
        /// The bound.
        max: usize,
    },
}

/// What a peer checks of a push (`PUT /p2p/genesis`) from its headers
/// alone, before it reads the body: genesis's signature over the method,
/// path, version and claimed `content-digest`, its age, and the declared
/// size. A push that fails costs the peer no body: an attacker without
/// genesis's key makes it read nothing. [`Membership::push_gate`] gives the
/// current one (the genesis key changes at a registration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushGate {
    key: Option<PublicKey>,
    max_age: Duration,
    max_bytes: usize,
}

impl PushGate {
    /// The gate of a peer that takes no push (stand-alone, or no key yet).
    pub fn closed() -> Self {
        Self {
            key: None,
            max_age: auth::DEFAULT_MAX_AGE,
            max_bytes: 0,
        }
    }

    /// Whether it knows genesis's key (else it refuses every push).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The most bytes of a push body this gate lets through.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether a push with these headers may have its body read:
    /// `declared` is its `content-length` (`None`: not given; the reader
    /// then stops at [`PushGate::max_bytes`]).
    pub fn check<'r>(
        &self,
        version: Option<u64>,
        signature: impl Into<ReceivedRef<'r>>,
        declared: Option<u64>,
        now: Timestamp,
    ) -> Result<(), PushRefused> {
        if let Some(len) = declared.filter(|&len| len > self.max_bytes as u64) {
            return Err(PushRefused::TooLarge {
                len,
                max: self.max_bytes,
            });
        }
        let key = self.key.ok_or(PushRefused::NoKey)?;
        // What genesis signs: `Message::push`; its body is checked later.
        auth::verify_before_body(
            signature,
            Message::push(version, &[]).subject,
            version,
            Expect::Key(&key),
            now,
            self.max_age,
        )
        .map_err(PushRefused::Denied)?;
        Ok(())
    }
}

/// Something the caller may want to show or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Registered with this id.
    Registered(PeerId),
    /// Gave up for good (the binary exits with this message).
    Failed(FailReason),
    /// The view of the network changed.
    ViewChanged,
    /// Left the network.
    Left,
}

/// A remote peer as this peer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePeer {
    /// Its id.
    pub id: PeerId,
    /// Its URI.
    pub uri: PeerUri,
    /// The schema hash genesis last announced.
    pub schema_hash: String,
    /// Its schema, once downloaded, with the hash it had then.
    pub schema: Option<(String, Schema)>,
    /// The hash of a download in flight.
    downloading: Option<String>,
}

impl RemotePeer {
    /// Whether the cached schema is the announced one.
    pub fn is_cached(&self) -> bool {
        self.schema
            .as_ref()
            .is_some_and(|(hash, _)| *hash == self.schema_hash)
    }
}

/// The peer membership state machine.
#[derive(Debug)]
pub struct Membership {
    config: Option<MembershipConfig>,
    rng: fastrand::Rng,
    state: State,
    schema_hash: String,
    /// The hash the last ping carried: if the schema changed while that ping
    /// was in flight, the next ping goes as soon as it is answered.
    pinged_hash: String,
    view: BTreeMap<PeerName, RemotePeer>,
    /// The list version of the view, when genesis told it.
    list_version: Option<u64>,
    /// Genesis's key: configured, or pinned at the last registration.
    genesis_key: Option<PublicKey>,
    /// The session key of the current keyed registration.
    session: Option<SessionKey>,
    /// A version that the last ping answered and the view lacks.
    stale_seen: Option<u64>,
    /// A `FetchPeers` is in flight.
    fetching: bool,
    /// Whether the pings since the last registration have their random phase.
    phased: bool,
    /// When failed schema downloads are tried again.
    download_retry_at: Option<Timestamp>,
    /// Why the peer gives up once its leave is answered (it leaves first).
    pending_failure: Option<FailReason>,
    transmits: VecDeque<Request>,
    events: VecDeque<Event>,
    /// The genesis replica that calls go to ([`Failover`]'s rule).
    failover: Failover,
    /// The replicas that refused this peer since a call last succeeded,
    /// and why: when every replica has, the peer gives up.
    refusals: BTreeMap<usize, FailReason>,
    /// The contextionary genesis named at the last registration taken.
    network_contextionary: Option<Contextionary>,
}

impl Membership {
    /// A machine for a peer with `config`, or a stand-alone one with `None`.
    pub fn new(config: Option<MembershipConfig>, schema_hash: String) -> Self {
        let seed = config.as_ref().map_or(0, |c| c.seed);
        let genesis_key = config.as_ref().and_then(|c| c.genesis_key);
        let config_replicas = config.as_ref().map_or(1, |c| c.genesis_replicas);
        Self {
            state: if config.is_some() {
                State::Idle
            } else {
                State::NotConfigured
            },
            config,
            rng: fastrand::Rng::with_seed(seed),
            schema_hash,
            pinged_hash: String::new(),
            view: BTreeMap::new(),
            list_version: None,
            genesis_key,
            session: None,
            stale_seen: None,
            fetching: false,
            phased: false,
            download_retry_at: None,
            pending_failure: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            failover: Failover::new(config_replicas),
            refusals: BTreeMap::new(),
            network_contextionary: None,
        }
    }

    /// The genesis replica (an index into the list the peer was given) that
    /// the next call goes to.
    pub fn genesis(&self) -> usize {
        self.failover.current()
    }

    /// A call got no answer (transport failure or 5xx): move to the next
    /// replica ([`Failover::fail_over`]). Whether to call it at once.
    fn fail_over(&mut self) -> bool {
        self.failover.fail_over()
    }

    /// A call got an answer from the current replica.
    fn answered(&mut self) {
        self.failover.answered();
    }

    /// A call succeeded: no replica refuses this peer any more.
    fn accepted(&mut self) {
        self.failover.answered();
        self.refusals.clear();
    }

    /// The current replica refused this peer for `reason`. With one
    /// replica, the peer gives up. With several, it moves to the next one,
    /// and gives up only once every replica has refused it since a call
    /// last succeeded, with every replica's reason. `Some(at_once)`: not
    /// given up; whether to call the next replica at once (as for a
    /// replica that does not answer, [`Membership::fail_over`]).
    fn refused(&mut self, reason: FailReason) -> Option<bool> {
        let replicas = self.failover.replicas();
        if replicas == 1 {
            self.fail(reason);
            return None;
        }
        self.refusals.insert(self.failover.current(), reason);
        if self.refusals.len() >= replicas {
            let names = self
                .config
                .as_ref()
                .map(|c| c.genesis_names.clone())
                .unwrap_or_default();
            let refusals = std::mem::take(&mut self.refusals)
                .into_iter()
                .map(|(replica, reason)| Refusal {
                    replica: names
                        .get(replica)
                        .cloned()
                        .unwrap_or_else(|| format!("replica {}", replica + 1)),
                    reason: Box::new(reason),
                })
                .collect();
            self.fail(FailReason::EveryReplicaRefused(refusals));
            return None;
        }
        Some(self.fail_over())
    }

    /// The current replica refused the registration (attempt `attempt`)
    /// for `reason`: try the next one, or give up ([`Membership::refused`]).
    fn registration_refused(&mut self, reason: FailReason, attempt: u32, now: Timestamp) {
        let Some(at_once) = self.refused(reason) else {
            return;
        };
        let delay = if at_once {
            Duration::ZERO
        } else {
            self.backoff(attempt)
        };
        self.state = State::Registering {
            attempt: attempt.saturating_add(1),
            retry_at: now + delay,
            in_flight: false,
        };
        self.handle_timeout(now);
    }

    // ---- getters ----

    /// Where the peer stands.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The id genesis gave, while registered.
    pub fn id(&self) -> Option<PeerId> {
        match self.state {
            State::Registered { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The contextionary the network uses (its URL and hash), as genesis
    /// named it in the registration this peer took: the one to fetch for a
    /// peer that holds none of its own (a tab).
    pub fn network_contextionary(&self) -> Option<&Contextionary> {
        self.network_contextionary.as_ref()
    }

    /// The other peers of the network, by name.
    pub fn view(&self) -> &BTreeMap<PeerName, RemotePeer> {
        &self.view
    }

    /// The cached schema of every remote peer that has one, for the Network planner.
    pub fn schemas(&self) -> BTreeMap<PeerName, &Schema> {
        // extend, not collect: collecting into a BTree sorts first, and every
        // sort instantiated costs the tab module's size budget (wasm/build.sh).
        let mut schemas = BTreeMap::new();
        schemas.extend(
            self.view
                .iter()
                .filter_map(|(name, peer)| peer.schema.as_ref().map(|(_, s)| (name.clone(), s))),
        );
        schemas
    }

    /// The genesis key this peer trusts: configured, or pinned at the last
    /// registration.
    pub fn genesis_key(&self) -> Option<PublicKey> {
        self.genesis_key
    }

    /// What a push must pass before its body is read: genesis's key as
    /// [`Membership::genesis_key`] says, the configured signature age and
    /// list size. Changes when a registration pins another key.
    pub fn push_gate(&self) -> PushGate {
        match &self.config {
            Some(config) => PushGate {
                key: self.genesis_key,
                max_age: config.max_signature_age,
                max_bytes: config.max_list_bytes,
            },
            None => PushGate::closed(),
        }
    }

    /// The call to genesis that `request` is, signed as it must be: a
    /// registration with the peer's key, pings and leave with the session
    /// key genesis handed out (a keyless peer's are not signed). `None` for
    /// [`Request::DownloadSchema`], a call of another peer's API.
    #[must_use]
    pub fn call(&self, request: &Request, now: Timestamp) -> Option<Call> {
        let identity = self.config.as_ref().and_then(|c| c.identity.as_ref());
        let session = self.session.as_ref();
        Some(match request {
            Request::Register(update) => Call::register(update, identity, now),
            Request::Ping { id, body } => Call::ping(*id, body, session, now),
            Request::Leave { id } => Call::leave(*id, session, now),
            Request::FetchPeers => Call::peers(),
            Request::DownloadSchema { .. } => return None,
        })
    }

    // ---- handle_* ----

    /// The signed answer to [`Request::Register`]: its signature must be
    /// genesis's (the configured key, or else any key, which this peer then
    /// pins), and a keyed registration's answer carries the session key.
    pub fn handle_register_answer(&mut self, result: Result<Answer, CallError>, now: Timestamp) {
        let State::Registering { attempt, .. } = self.state else {
            return;
        };
        let Some(config) = &self.config else { return };
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => return self.handle_register_response(Err(e), now),
        };
        let expect = match &config.genesis_key {
            Some(key) => Expect::Key(key),
            None => Expect::AnyKey,
        };
        let keyed = config.identity.is_some();
        match answer.registration(expect, keyed, now, config.max_signature_age) {
            Ok(registered) => {
                self.genesis_key = registered.key;
                self.session = registered.session;
                self.handle_register_response(Ok(registered.response), now);
            }
            Err(RegistrationError::Unauthentic(e)) => {
                self.registration_refused(FailReason::Unauthentic(e), attempt, now)
            }
            // A replica that answered wrongly: as one that did not answer.
            Err(e) => {
                let error = CallError::Transport(e.to_string());
                self.handle_register_response(Err(error), now);
            }
        }
    }

    /// The answer to [`Request::Ping`]: the list version it carries counts
    /// only under genesis's signature (the key this peer pinned).
    pub fn handle_ping_answer(&mut self, result: Result<Answer, CallError>, now: Timestamp) {
        let result = result.map(|answer| {
            let key = self.genesis_key.as_ref()?;
            let max_age = self.config.as_ref()?.max_signature_age;
            answer.signed_version(key, now, max_age)
        });
        self.handle_ping_response(result, now);
    }

    /// The answer to [`Request::FetchPeers`]: `[Peer]`, taken only when
    /// signed by genesis's key with its version.
    pub fn handle_peers_answer(&mut self, result: Result<Answer, CallError>, now: Timestamp) {
        let verified = result.and_then(|answer| {
            let key = self.genesis_key.ok_or_else(|| {
                CallError::Forbidden("no genesis key to check the list with".into())
            })?;
            let max_age = self
                .config
                .as_ref()
                .map_or(auth::DEFAULT_MAX_AGE, |c| c.max_signature_age);
            let (peers, version) = answer.peer_list(&key, now, max_age)?;
            Ok((peers.iter().map(Peer::to_entry).collect(), version))
        });
        self.handle_peers_response(verified, now);
    }

    /// A push (`PUT /p2p/genesis`) as it came: taken only when signed by
    /// genesis's key over its body and version. A refused push changes
    /// nothing: the view stays as it was.
    pub fn handle_signed_push(
        &mut self,
        body: &[u8],
        version: Option<u64>,
        signature: &Received,
        now: Timestamp,
    ) -> Result<(), PushRefused> {
        self.push_gate()
            .check(version, signature, Some(body.len() as u64), now)?;
        auth::check_digest(signature, body).map_err(PushRefused::Denied)?;
        // serde_json does not check the UTF-8 of a field it skips: check it all first.
        let text = std::str::from_utf8(body).map_err(|e| PushRefused::Invalid(e.to_string()))?;
        let push: GenesisPush =
            serde_json::from_str(text).map_err(|e| PushRefused::Invalid(e.to_string()))?;
        self.handle_genesis_push(push, version, now);
        Ok(())
    }

    /// Starts: registers at once (does nothing when stand-alone).
    pub fn handle_start(&mut self, now: Timestamp) {
        if self.state == State::Idle {
            self.state = State::Registering {
                attempt: 0,
                retry_at: now,
                in_flight: false,
            };
            self.handle_timeout(now);
        }
    }

    /// The answer to [`Request::Register`].
    pub fn handle_register_response(
        &mut self,
        result: Result<PeerRegistrationResponse, CallError>,
        now: Timestamp,
    ) {
        let State::Registering { attempt, .. } = self.state else {
            return;
        };
        let Some(config) = &self.config else { return };
        match result {
            Ok(response) => {
                self.failover.answered();
                self.refusals.clear();
                if let Some(ours) = &config.contextionary
                    && ours.hash != response.contextionary.hash
                {
                    // Genesis registered this peer before it could refuse:
                    // leave first, so that genesis broadcasts no ghost until
                    // it evicts it; the failure comes with the leave's answer.
                    self.pending_failure = Some(FailReason::ContextionaryMismatch {
                        ours: ours.hash.to_string(),
                        theirs: response.contextionary.hash.to_string(),
                        theirs_url: response.contextionary.url,
                    });
                    self.state = State::Leaving;
                    self.transmits.push_back(Request::Leave {
                        id: response.peer.id,
                    });
                    return;
                }
                let id = response.peer.id;
                self.network_contextionary = Some(response.contextionary);
                self.phased = false;
                self.list_version = None;
                // Ping at once so that genesis learns the schema hash.
                self.state = State::Registered {
                    id,
                    next_ping: now,
                    in_flight: false,
                };
                self.events.push_back(Event::Registered(id));
                self.handle_timeout(now);
            }
            Err(CallError::Forbidden(message)) => {
                self.registration_refused(FailReason::Forbidden(message), attempt, now)
            }
            Err(CallError::Invalid(message)) => {
                self.registration_refused(FailReason::Refused(message), attempt, now)
            }
            Err(CallError::Unreachable(_) | CallError::NotFound | CallError::Transport(_)) => {
                if matches!(result, Err(CallError::Transport(_))) {
                    let _ = self.fail_over();
                } else {
                    self.answered();
                }
                let delay = self.backoff(attempt);
                self.state = State::Registering {
                    attempt: attempt.saturating_add(1),
                    retry_at: now + delay,
                    in_flight: false,
                };
            }
        }
    }

    /// The answer to [`Request::Ping`], with the list version genesis told in
    /// it, if any. A 404 means genesis forgot this peer (it restarted, or
    /// evicted it): register again at once. A version the view lacks, told by
    /// two pings in a row, means a broadcast was lost: fetch the whole list.
    pub fn handle_ping_response(&mut self, result: Result<Option<u64>, CallError>, now: Timestamp) {
        let State::Registered { id, .. } = self.state else {
            return;
        };
        match result {
            Err(CallError::NotFound) => {
                self.state = State::Registering {
                    attempt: 0,
                    retry_at: now,
                    in_flight: false,
                };
                self.handle_timeout(now);
            }
            Err(CallError::Forbidden(message)) => {
                // Another replica may hold the same registration and take
                // the ping: only every replica's refusal ends the membership.
                let Some(at_once) = self.refused(FailReason::Forbidden(message)) else {
                    return;
                };
                self.state = State::Registered {
                    id,
                    next_ping: if at_once {
                        now
                    } else {
                        now + self.next_interval()
                    },
                    in_flight: false,
                };
                self.handle_timeout(now);
            }
            // Success, or genesis unreachable for now: keep pinging on schedule,
            // unless genesis heard an outdated schema hash.
            ok_or_transport => {
                let outdated = ok_or_transport.is_ok() && self.pinged_hash != self.schema_hash;
                // A replica that does not answer: the next one holds the
                // same registration, so ping it (at once) rather than register.
                let retry_now = match &ok_or_transport {
                    Err(_) => self.fail_over(),
                    Ok(_) => {
                        self.accepted();
                        false
                    }
                };
                if let Ok(Some(version)) = ok_or_transport {
                    self.check_version(version);
                }
                let next_ping = if outdated || retry_now {
                    now
                } else {
                    now + self.next_interval()
                };
                self.state = State::Registered {
                    id,
                    next_ping,
                    in_flight: false,
                };
                self.handle_timeout(now);
            }
        }
    }

    /// The local schema changed: genesis hears of it with the next ping, sent now.
    pub fn set_schema_hash(&mut self, hash: String, now: Timestamp) {
        if hash == self.schema_hash {
            return;
        }
        self.schema_hash = hash;
        if let State::Registered { next_ping, .. } = &mut self.state {
            *next_ping = now;
            self.handle_timeout(now);
        }
    }

    /// The answer to [`Request::FetchPeers`]: the list and its version.
    pub fn handle_peers_response(
        &mut self,
        result: Result<(Vec<PeerListEntry>, Option<u64>), CallError>,
        now: Timestamp,
    ) {
        self.fetching = false;
        match result {
            Ok((list, version)) => {
                self.answered();
                self.handle_peer_list(list, version, now);
            }
            Err(CallError::Transport(_)) => {
                let _ = self.fail_over();
            }
            Err(_) => {}
        }
    }

    /// A push from genesis (`PUT /p2p/genesis`): the whole list, or a delta.
    /// A delta that does not start at this peer's list version means a round
    /// was missed: the peer fetches the whole list rather than guess.
    pub fn handle_genesis_push(&mut self, push: GenesisPush, version: Option<u64>, now: Timestamp) {
        // Rounds may overtake each other: one older than the view is ignored.
        // (A restarted genesis counts versions from 0 again, but the peer
        // forgets its version when it registers again.)
        let older = |v: u64| self.list_version.is_some_and(|current| v < current);
        match push {
            GenesisPush::Full(_) if version.is_some_and(older) => {}
            GenesisPush::Delta(delta) if older(delta.to) || self.list_version == Some(delta.to) => {
            }
            GenesisPush::Full(list) => self.handle_peer_list(list, version, now),
            GenesisPush::Delta(delta) if self.list_version == Some(delta.from) => {
                self.apply_delta(delta, now)
            }
            GenesisPush::Delta(_) => {
                if !self.fetching {
                    self.fetching = true;
                    self.transmits.push_back(Request::FetchPeers);
                }
            }
        }
    }

    fn apply_delta(&mut self, delta: PeerDelta, now: Timestamp) {
        // extend, not collect: collecting into a BTree sorts first, and every
        // sort instantiated costs the tab module's size budget (wasm/build.sh).
        let mut entries: BTreeMap<PeerName, PeerListEntry> = BTreeMap::new();
        entries.extend(
            self.view
                .iter()
                .filter(|(_, p)| !delta.removed.contains(&p.id))
                .map(|(name, p)| {
                    let entry = PeerListEntry {
                        id: p.id,
                        name: name.clone(),
                        uri: p.uri.clone(),
                        schema_hash: p.schema_hash.as_str().into(),
                    };
                    (name.clone(), entry)
                }),
        );
        for entry in delta.upserts {
            entries.insert(entry.name.clone(), entry);
        }
        self.handle_peer_list(entries.into_values().collect(), Some(delta.to), now);
    }

    /// A peer list pushed by genesis (`PUT /p2p/genesis`), with its version
    /// when genesis told it. Emits one [`Request::DownloadSchema`] for each
    /// remote peer whose schema hash is new to this peer and not already
    /// being downloaded.
    pub fn handle_peer_list(
        &mut self,
        list: Vec<PeerListEntry>,
        version: Option<u64>,
        now: Timestamp,
    ) {
        self.list_version = version;
        self.stale_seen = None;
        let own = self.config.as_ref().map(|c| c.name.clone());
        let mut next = BTreeMap::new();
        for entry in list {
            if Some(&entry.name) == own.as_ref() {
                continue;
            }
            let (schema, downloading) = match self.view.remove(&entry.name) {
                Some(old) => (old.schema, old.downloading),
                None => (None, None),
            };
            next.insert(
                entry.name,
                RemotePeer {
                    id: entry.id,
                    uri: entry.uri,
                    schema_hash: entry.schema_hash.to_string(),
                    schema,
                    downloading,
                },
            );
        }
        let changed = next != self.view;
        self.view = next;
        self.request_downloads(now);
        if changed {
            self.events.push_back(Event::ViewChanged);
        }
    }

    /// The answer to the [`Request::DownloadSchema`] that asked for `hash`.
    /// A failed download is tried again after one ping interval.
    pub fn handle_schema_response(
        &mut self,
        peer: &PeerName,
        hash: &str,
        result: Result<Schema, CallError>,
        now: Timestamp,
    ) {
        let Some(remote) = self.view.get_mut(peer) else {
            return;
        };
        if remote.downloading.as_deref() == Some(hash) {
            remote.downloading = None;
        }
        match result {
            Ok(schema) => {
                // Cached under the hash it was asked for: if the peer changed
                // again since, that hash differs from the announced one and the
                // newer schema is asked for once.
                remote.schema = Some((hash.to_owned(), schema));
                self.events.push_back(Event::ViewChanged);
            }
            Err(_) => {
                let retry = now
                    + self
                        .config
                        .as_ref()
                        .map_or(Duration::from_secs(10), |c| c.ping_interval);
                self.download_retry_at =
                    Some(self.download_retry_at.map_or(retry, |t| t.min(retry)));
            }
        }
        self.request_downloads(now);
    }

    /// The peer is stopping: deregister if registered.
    pub fn handle_shutdown(&mut self, _now: Timestamp) {
        match self.state {
            State::Registered { id, .. } => {
                self.state = State::Leaving;
                self.transmits.push_back(Request::Leave { id });
            }
            State::Leaving | State::NotConfigured => {}
            _ => {
                self.state = State::Left;
                self.events.push_back(Event::Left);
            }
        }
    }

    /// The answer to [`Request::Leave`], whatever it was: the peer is out
    /// ([`Event::Left`]), or, when it left because it gave up on the network
    /// (another contextionary), failed ([`Event::Failed`]).
    pub fn handle_leave_response(&mut self, _result: Result<(), CallError>, _now: Timestamp) {
        if self.state == State::Leaving {
            match self.pending_failure.take() {
                Some(reason) => self.fail(reason),
                None => {
                    self.state = State::Left;
                    self.events.push_back(Event::Left);
                }
            }
        }
    }

    /// Sends what is due at `now`: a registration attempt, a ping, a retried download.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match &mut self.state {
            State::Registering {
                retry_at,
                in_flight,
                ..
            } if !*in_flight && *retry_at <= now => {
                *in_flight = true;
                if let Some(config) = &self.config {
                    self.transmits.push_back(Request::Register(PeerUpdate {
                        peer_name: config.name.clone(),
                        peer_uri: config.public_uri.clone(),
                    }));
                }
            }
            State::Registered {
                id,
                next_ping,
                in_flight,
            } if !*in_flight && *next_ping <= now => {
                *in_flight = true;
                self.pinged_hash.clone_from(&self.schema_hash);
                self.transmits.push_back(Request::Ping {
                    id: *id,
                    body: PeerPing {
                        schema_hash: self.schema_hash.clone(),
                    },
                });
            }
            _ => {}
        }
        if self.download_retry_at.is_some_and(|t| t <= now) {
            self.download_retry_at = None;
            self.request_downloads(now);
        }
    }

    // ---- poll_* ----

    /// The next request to send. New ones appear after any `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Request> {
        self.transmits.pop_front()
    }

    /// The next event. New ones appear after any `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Membership::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let own = match self.state {
            State::Registering {
                retry_at,
                in_flight: false,
                ..
            } => Some(retry_at),
            State::Registered {
                next_ping,
                in_flight: false,
                ..
            } => Some(next_ping),
            _ => None,
        };
        match (own, self.download_retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    fn check_version(&mut self, version: u64) {
        if self.list_version == Some(version) {
            self.stale_seen = None;
        } else if self.stale_seen == Some(version) && !self.fetching {
            self.fetching = true;
            self.stale_seen = None;
            self.transmits.push_back(Request::FetchPeers);
        } else {
            self.stale_seen = Some(version);
        }
    }

    /// The list version of the view, when genesis told it.
    pub fn list_version(&self) -> Option<u64> {
        self.list_version
    }

    fn fail(&mut self, reason: FailReason) {
        self.state = State::Failed(reason.clone());
        self.events.push_back(Event::Failed(reason));
    }

    fn request_downloads(&mut self, now: Timestamp) {
        if self.download_retry_at.is_some_and(|t| t > now) {
            return;
        }
        for (name, remote) in &mut self.view {
            let wanted = !remote.schema_hash.is_empty() && !remote.is_cached();
            if wanted && remote.downloading.as_ref() != Some(&remote.schema_hash) {
                remote.downloading = Some(remote.schema_hash.clone());
                self.transmits.push_back(Request::DownloadSchema {
                    peer: name.clone(),
                    uri: remote.uri.clone(),
                    hash: remote.schema_hash.clone(),
                });
            }
        }
    }

    /// The time to the next ping: a random phase within one interval after
    /// the first ping of a registration, so that peers started (or sent back
    /// by a restarted genesis) together do not ping in step; then the interval ±10 %.
    fn next_interval(&mut self) -> Duration {
        let interval = self
            .config
            .as_ref()
            .map_or(Duration::from_secs(10), |c| c.ping_interval);
        if self.phased {
            interval.mul_f64(0.9 + 0.2 * self.rng.f64())
        } else {
            self.phased = true;
            interval.mul_f64(0.1 + 0.9 * self.rng.f64())
        }
    }

    /// The delay before registration attempt `attempt` ([`crate::time::backoff`]).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let Some(config) = &self.config else {
            return Duration::ZERO;
        };
        crate::time::backoff(config.retry_min, config.retry_max, attempt, self.rng.f64())
    }
}
