//! The genesis registry: who is in the network, and who must be told.
//!
//! Drive it with `begin_register`/`complete_register`, `handle_ping`,
//! `handle_leave` and `handle_timeout(now)`. After every call, drain
//! [`Registry::poll_transmit`] (broadcasts to send) and [`Registry::poll_event`]
//! (list changes, for the watch stream and metrics), then arm a timer for
//! [`Registry::poll_timeout`]. The registry never reads a clock.
//!
//! # Eviction and self-preservation
//!
//! A peer is evicted once `now >= last contact + peer timeout`. But when the
//! registry has heard from *no* peer at all for half a peer timeout, the
//! silence is more likely genesis's own network than every peer dying at
//! once, so evictions are held. The hold ends on the first contact from any
//! peer, which gives every peer a fresh full timeout from that moment, or
//! after `hold_limit`, when evictions resume: a network that really died is
//! still emptied. The rule needs no rate estimate, so it cannot stick after
//! a real scale-down (a live peer keeps the registry hearing), and a network
//! of two or three peers still evicts a dead one while another pings.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{
    self, AuthError, Authority, Expect, Identity, Message, PublicKey, Received, ReceivedRef,
    SessionKey, SignatureHeaders,
};
use crate::contacts::Contacts;
use crate::names::PeerName;
use crate::time::Timestamp;
use crate::wire::{
    ChangeKind, Contextionary, PUSH_PATH, Peer, PeerChange, PeerDelta, PeerId, PeerListEntry,
    PeerRegistrationResponse, PeerUpdate, REGISTER_PATH, SchemaHash, leave_path, with_ping_path,
};

/// How a registry behaves.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// A peer silent for this long is evicted.
    pub peer_timeout: Duration,
    /// The longest evictions are held while no peer at all is heard.
    pub hold_limit: Duration,
    /// Changes within this window after a first one go out in one broadcast round.
    pub broadcast_delay: Duration,
    /// While a round is being sent, the next one waits for it (reported with
    /// [`Registry::handle_round_sent`]) at most this long: under a burst of
    /// changes, rounds then follow the pace at which peers take them instead
    /// of multiplying, and one slow peer delays the next round by no more.
    pub round_wait: Duration,
    /// The network's contextionary, handed to every registering peer.
    pub contextionary: Contextionary,
    /// Seed of the generator of peer ids, so that tests are reproducible.
    /// A server must draw it from the operating system at every start: a
    /// restarted genesis with the same seed would hand out the old ids again,
    /// and a peer pinging with its old id would not learn it must register.
    pub seed: u64,
    /// The secret that writes keyed registrations' ids and derives their
    /// session keys. A server sets it from its own key
    /// ([`Authority::of`]), so that names stay bound across a restart.
    pub authority: Authority,
    /// Refuse registrations that prove no key (original clients).
    pub require_keys: bool,
    /// How far a signature's `created` may be from genesis's clock.
    pub max_signature_age: Duration,
}

impl RegistryConfig {
    /// A configuration with the defaults: 30 s timeout, hold limit of one
    /// timeout, 10 ms broadcast coalescing window, rounds wait for the
    /// previous one at most 250 ms.
    pub fn new(contextionary: Contextionary, seed: u64) -> Self {
        Self {
            peer_timeout: Duration::from_secs(30),
            hold_limit: Duration::from_secs(30),
            broadcast_delay: Duration::from_millis(10),
            round_wait: Duration::from_millis(250),
            contextionary,
            seed,
            authority: Authority::new(Sha256::digest(seed.to_le_bytes()).into()),
            require_keys: false,
            max_signature_age: auth::DEFAULT_MAX_AGE,
        }
    }

    /// Checks the signature of a `POST /peers/register` with `body`:
    /// `Ok(None)` when it carries none (an original client), the key it
    /// proves, or why it is refused (403). Needs no registry state, so a
    /// shell checks it before it takes the registry's lock.
    pub fn authenticate_register(
        &self,
        received: &Received,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<PublicKey>, AuthError> {
        if received.is_unsigned() {
            return Ok(None);
        }
        let message = Message::request("POST", REGISTER_PATH, body);
        auth::verify(
            received,
            &message,
            Expect::AnyKey,
            now,
            self.max_signature_age,
        )
        .map(|verified| verified.key)
    }

    /// A replica's check of a ping's signature (before [`Registry::ping_outcome`]):
    /// as [`Registry::handle_signed_ping`] checks it, whether or not the
    /// mirror holds the id yet (it may have been registered a moment ago at
    /// another replica). It needs no registry: a replica runs it before the
    /// registry's lock.
    pub fn check_signed_ping<'r>(
        &self,
        id: PeerId,
        received: impl Into<ReceivedRef<'r>>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), CallRefused> {
        self.check_ping(id, received, body, now)
            .keyed
            .map(drop)
            .map_err(CallRefused::Denied)
    }

    /// Checks the signature of `POST /peers/{id}/ping` with its raw `body`:
    /// a keyed registration's ping must carry its session's signature, a
    /// keyless one needs none. Needs no registry state (the session key
    /// derives from the id), so a shell checks it before it takes the
    /// registry's lock and hands the check to [`Registry::handle_checked_ping`],
    /// which refuses an unknown id first (404), then a refused signature (403).
    pub fn check_ping<'r>(
        &self,
        id: PeerId,
        received: impl Into<ReceivedRef<'r>>,
        body: &[u8],
        now: Timestamp,
    ) -> PingCheck {
        // A keyless id's ping needs no signature: its message is not made.
        let keyed = if Authority::is_keyed(id) {
            with_ping_path(id, |path| {
                let message = Message::request("POST", path, body);
                self.verify_session(id, &message, received.into(), now)
            })
        } else {
            Ok(None)
        };
        PingCheck { id, keyed }
    }

    /// 403 for a keyed id whose call does not carry its session's
    /// signature; a keyless id needs none (`None`). The session key derives
    /// from the id alone, so this needs no record of the peer.
    fn verify_session(
        &self,
        id: PeerId,
        message: &Message<'_>,
        received: ReceivedRef<'_>,
        now: Timestamp,
    ) -> Result<Option<SessionKey>, AuthError> {
        if !Authority::is_keyed(id) {
            return Ok(None);
        }
        let key = self.authority.session_key(id);
        auth::verify(
            received,
            message,
            Expect::Session(&key),
            now,
            self.max_signature_age,
        )?;
        Ok(Some(key))
    }
}

/// The signature check of one ping, made by [`RegistryConfig::check_ping`]
/// (outside the registry's lock) for [`Registry::handle_checked_ping`].
#[derive(Debug)]
#[must_use = "a ping counts only when its check is handed to the registry"]
pub struct PingCheck {
    id: PeerId,
    /// The session key of a keyed registration, `None` for a keyless one,
    /// or why its signature was refused.
    keyed: Result<Option<SessionKey>, AuthError>,
}

/// A request to probe a registering peer, made by [`Registry::begin_register`].
///
/// The caller sends `GET {url}` and hands the probe back with the result to
/// [`Registry::complete_register`]; only then is the peer admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the registration completes only when the probe is handed back"]
pub struct Probe {
    /// The URL to probe: `{peerUri}/p2p/ping`.
    pub url: String,
    update: PeerUpdate,
    deltas: bool,
    key: Option<PublicKey>,
}

impl Probe {
    /// The peer asked to be told of changes as deltas (it sent [`crate::wire::DELTAS_HEADER`]).
    pub fn with_deltas(mut self, deltas: bool) -> Self {
        self.deltas = deltas;
        self
    }

    /// The registration proved possession of `key` (see
    /// [`Registry::authenticate_register`]): the name is bound to it.
    pub fn with_key(mut self, key: Option<PublicKey>) -> Self {
        self.key = key;
        self
    }

    /// The registration this probe is for.
    pub fn update(&self) -> &PeerUpdate {
        &self.update
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Genesis could not reach `GET {peerUri}/p2p/ping` (answered 400).
    #[error("genesis cannot reach {url}: {reason}")]
    Unreachable {
        /// The probed URL.
        url: String,
        /// What the probe saw.
        reason: String,
    },
    /// The name is held by a key and the registration does not prove it (403).
    #[error(
        "the name {0} is registered by a peer that owns it (a key): only that key can register it again"
    )]
    NameHeld(PeerName),
    /// Genesis runs with `--require-keys` and the registration proves no key (403).
    #[error("this genesis only admits peers that sign their registration with a key")]
    KeyRequired,
}

/// Why a ping or a leave was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallRefused {
    /// The id is not registered (404).
    #[error(transparent)]
    Unknown(#[from] UnknownPeer),
    /// The registration is keyed and the call does not carry its session's
    /// signature (403).
    #[error("not allowed for a registration that a key owns: {0}")]
    Denied(AuthError),
}

/// The id is not registered (answered 404: the peer must register again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown peer {0}; register again")]
pub struct UnknownPeer(pub PeerId);

/// A broadcast to send: `PUT {url}` with [`Broadcast::body`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// The peer to tell.
    pub to: PeerId,
    /// Its `/p2p/genesis` URL.
    pub url: String,
    /// The list version this round carries.
    pub version: u64,
    /// The whole list, shared by every broadcast of the round.
    pub list: Arc<[PeerListEntry]>,
    /// The changes of the round, for a peer that asked for deltas and
    /// already had the list before it; shared by the round.
    pub delta: Option<Arc<PeerDelta>>,
}

impl Broadcast {
    /// The JSON body to send: the delta when there is one, else the whole list.
    pub fn body(&self) -> Result<Vec<u8>, serde_json::Error> {
        match &self.delta {
            Some(delta) => serde_json::to_vec(&**delta),
            None => serde_json::to_vec(&*self.list),
        }
    }
}

/// A peer as a restarted genesis needs it: with its choice of deltas, so
/// that it still gets deltas rather than whole lists after the restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPeer {
    /// The peer.
    #[serde(flatten)]
    pub peer: Peer,
    /// It registered with `x-plexus-deltas: 1`. Absent in older saves: no.
    #[serde(default)]
    pub deltas: bool,
}

/// The distinct schema hashes of the registered peers, each held once.
///
/// Hashes no peer holds any more are dropped whenever the pool has doubled
/// since the last sweep, so a stream of made-up hashes cannot grow it.
#[derive(Debug, Default)]
struct Hashes {
    pool: BTreeSet<SchemaHash>,
    sweep_at: usize,
}

impl Hashes {
    fn intern(&mut self, text: &str) -> SchemaHash {
        if let Some(hash) = self.pool.get(text) {
            return hash.clone();
        }
        if self.pool.len() >= self.sweep_at {
            self.pool.retain(SchemaHash::is_shared);
            self.sweep_at = (self.pool.len() * 2).max(16);
        }
        let hash = SchemaHash::from(text);
        self.pool.insert(hash.clone());
        hash
    }
}

/// The genesis registry state machine.
#[derive(Debug)]
pub struct Registry {
    config: RegistryConfig,
    rng: fastrand::Rng,
    /// Every peer by id: a hash map, since it is only ever looked up (lists
    /// go in name order, through `by_name`), and a ping looks up its peer
    /// (a B-tree search of 1,000 ids took about 280 instructions more).
    peers: HashMap<PeerId, Peer, foldhash::fast::RandomState>,
    by_name: BTreeMap<PeerName, PeerId>,
    /// (last contact, id) of every peer: the earliest deadline is the first.
    by_contact: Contacts,
    version: u64,
    /// Last contact from any peer.
    last_heard: Timestamp,
    /// After a hold, deadlines count from here.
    resumed_at: Timestamp,
    broadcast_due: Option<Timestamp>,
    /// When the round being sent started, and its version, until the caller reports it sent.
    round_started: Option<(Timestamp, u64)>,
    /// Peers that asked for deltas.
    wants_deltas: BTreeSet<PeerId>,
    /// The version the last round carried.
    round_version: u64,
    /// Peers changed since the last round; at the round, those still listed
    /// are upserted and the others removed. Ids only: no copy of an entry
    /// waits. `true` marks a peer admitted since the last round (its first
    /// broadcast is the whole list): one map, not two sets, saves memory.
    round_changes: BTreeMap<PeerId, bool>,
    /// One copy of each distinct schema hash.
    hashes: Hashes,
    transmits: VecDeque<Broadcast>,
    events: VecDeque<PeerChange>,
    /// A replica's mirror of a shared store ([`Registry::mirror`]): the
    /// store evicts, the registry never does, and versions come from it.
    mirror: bool,
    /// The last [`Registry::ping_answer`]: (version, second, signature).
    stamp: Option<(u64, u64, Arc<SignatureHeaders>)>,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: RegistryConfig, now: Timestamp) -> Self {
        Self::restore(config, Vec::new(), 0, now)
    }

    /// A registry holding `peers` at list `version`, as saved before a restart.
    ///
    /// Every restored peer gets a full timeout from `now`: genesis could not
    /// hear anyone while it was down. A restored peer that asked for deltas
    /// gets deltas from the saved version on; if its view was elsewhere, it
    /// sees the gap and fetches the list.
    pub fn restore(
        config: RegistryConfig,
        peers: Vec<SavedPeer>,
        version: u64,
        now: Timestamp,
    ) -> Self {
        let rng = fastrand::Rng::with_seed(config.seed);
        let mut registry = Self {
            config,
            rng,
            peers: HashMap::default(),
            by_name: BTreeMap::new(),
            by_contact: Contacts::default(),
            version,
            last_heard: now,
            resumed_at: now,
            broadcast_due: None,
            round_started: None,
            wants_deltas: BTreeSet::new(),
            round_version: version,
            round_changes: BTreeMap::new(),
            hashes: Hashes::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            mirror: false,
            stamp: None,
        };
        for SavedPeer { mut peer, deltas } in peers {
            peer.schema_hash = registry.hashes.intern(&peer.schema_hash);
            if let Some(old) = registry.by_name.get(&peer.peer_name).copied() {
                registry.remove(old);
            }
            if deltas {
                registry.wants_deltas.insert(peer.id);
            }
            registry.insert(peer);
        }
        registry
    }

    // ---- getters ----

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The list version: it grows by one on every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The registered peers, ordered by name.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.by_name.values().filter_map(|id| self.peers.get(id))
    }

    /// The peer with `id`.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    /// The peer registered as `name`.
    pub fn peer_named(&self, name: &PeerName) -> Option<&Peer> {
        self.by_name.get(name).and_then(|id| self.peers.get(id))
    }

    /// Whether the peer with `id` asked for deltas (to save it with [`SavedPeer`]).
    pub fn wants_deltas(&self, id: PeerId) -> bool {
        self.wants_deltas.contains(&id)
    }

    /// How many peers are registered.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is registered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether evictions are held at `now` because no peer at all has been heard.
    pub fn is_holding(&self, now: Timestamp) -> bool {
        let (start, end) = self.hold_window();
        !self.peers.is_empty() && start <= now && now < end
    }

    // ---- handle_* ----

    /// First step of `POST /peers/register`: the caller must probe the peer.
    pub fn begin_register(&self, update: PeerUpdate) -> Probe {
        Probe {
            url: update.peer_uri.join("/p2p/ping"),
            update,
            deltas: false,
            key: None,
        }
    }

    /// Checks the signature of a `POST /peers/register` with `body`
    /// (see [`RegistryConfig::authenticate_register`]).
    pub fn authenticate_register(
        &self,
        received: &Received,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<PublicKey>, AuthError> {
        self.config.authenticate_register(received, body, now)
    }

    /// Whether the registration of `probe` may go on: a name that a key
    /// holds only with that key, and no keyless one with `require_keys`.
    /// [`Registry::complete_register`] checks it again; a shell checks it
    /// before the probe too, so that a refused registration costs no probe.
    pub fn check_register(&self, probe: &Probe) -> Result<(), RegisterError> {
        if probe.key.is_none() && self.config.require_keys {
            return Err(RegisterError::KeyRequired);
        }
        match self.by_name.get(&probe.update.peer_name) {
            Some(&old) if Authority::is_keyed(old) => match &probe.key {
                Some(key) if self.config.authority.holds(old, key) => Ok(()),
                _ => Err(RegisterError::NameHeld(probe.update.peer_name.clone())),
            },
            _ => Ok(()),
        }
    }

    /// `POST /peers/{id}/ping` with the `check` of its signature
    /// ([`RegistryConfig::check_ping`], made outside the registry's lock)
    /// and its schema hash. One genesis counts it at once
    /// ([`Registry::handle_checked_ping`]: 404 for an unknown id first, then
    /// 403 for a refused signature); a replica's mirror refuses a bad
    /// signature (403) and leaves the rest to the replica machine, since the
    /// id may be in the store and not yet in the mirror.
    pub fn ping(
        &mut self,
        check: PingCheck,
        schema_hash: &str,
        now: Timestamp,
    ) -> Result<PingStart, CallRefused> {
        if self.mirror {
            let session = check.keyed.map_err(CallRefused::Denied)?;
            return Ok(PingStart::AtStore {
                keyed: session.is_some(),
            });
        }
        let keyed = self.handle_checked_ping(check, schema_hash, now)?;
        Ok(PingStart::Counted { keyed })
    }

    /// `DELETE /peers/{id}` with the signature headers `received`: 403
    /// without the session key's signature of a keyed registration; then
    /// one genesis removes the peer at once (404 when it does not know
    /// it), and a replica's mirror leaves it to the store
    /// ([`LeaveStart::AtStore`]).
    pub fn leave(
        &mut self,
        id: PeerId,
        received: &Received,
        now: Timestamp,
    ) -> Result<LeaveStart, CallRefused> {
        if self.mirror {
            self.check_signed_leave(id, received, now)?;
            return Ok(LeaveStart::AtStore);
        }
        self.handle_signed_leave(id, received, now)?;
        Ok(LeaveStart::Removed)
    }

    /// First step of `POST /peers/register` of `update` (signed by `key`,
    /// asking for deltas or not): the probe to make, or the refusal that
    /// needs none ([`Registry::check_register`]: a key required, a name
    /// held by another key). Hand the probe's result to
    /// [`Registry::handle_probed`].
    pub fn register(
        &self,
        update: PeerUpdate,
        key: Option<PublicKey>,
        deltas: bool,
    ) -> Result<Probe, RegisterError> {
        let probe = self
            .begin_register(update)
            .with_deltas(deltas)
            .with_key(key);
        self.check_register(&probe)?;
        Ok(probe)
    }

    /// Second step: the probe reached the peer (`Ok`) or not. One genesis
    /// registers it at once ([`Registry::complete_register`],
    /// [`RegisterStep::Reply`]); a replica's mirror admits it, to be
    /// written to the store first ([`Registry::admit`],
    /// [`RegisterStep::Write`]). Either way the checks are redone, since
    /// the list may have changed during the probe.
    pub fn handle_probed(
        &mut self,
        probe: Probe,
        reached: Result<(), String>,
        now: Timestamp,
    ) -> Result<RegisterStep, RegisterError> {
        if self.mirror {
            let admission = self.admit(probe, reached, now)?;
            let reply = Registered {
                session: self.session_key(admission.peer.peer.id),
                response: admission.response.clone(),
            };
            return Ok(RegisterStep::Write {
                admission: Box::new(admission),
                reply,
            });
        }
        let response = self.complete_register(probe, reached, now)?;
        Ok(RegisterStep::Reply(Registered {
            session: self.session_key(response.peer.id),
            response,
        }))
    }

    /// The session key of the keyed registration `id`, to hand to the peer
    /// in the registration's answer ([`auth::SESSION_KEY_HEADER`]); `None`
    /// for a keyless one.
    pub fn session_key(&self, id: PeerId) -> Option<SessionKey> {
        Authority::is_keyed(id).then(|| self.config.authority.session_key(id))
    }

    /// `POST /peers/{id}/ping` with its raw `body` and signature headers: a
    /// keyed registration's ping must carry its session's signature, a
    /// keyless one needs none (the original behaviour). `true` for a keyed
    /// one: its answer carries the signed list version
    /// ([`Registry::ping_answer`]).
    pub fn handle_signed_ping(
        &mut self,
        id: PeerId,
        schema_hash: &str,
        received: &Received,
        body: &[u8],
        now: Timestamp,
    ) -> Result<bool, CallRefused> {
        let check = self.config.check_ping(id, received, body, now);
        self.handle_checked_ping(check, schema_hash, now)
    }

    /// [`Registry::handle_signed_ping`] with its signature checked before
    /// (by [`RegistryConfig::check_ping`] of this registry's configuration):
    /// 404 for an unknown id, 403 for a refused signature, else the ping
    /// counts. `true` for a keyed registration.
    pub fn handle_checked_ping(
        &mut self,
        check: PingCheck,
        schema_hash: &str,
        now: Timestamp,
    ) -> Result<bool, CallRefused> {
        let PingCheck { id, keyed } = check;
        // An unknown id is told so, signed or not; the peer is looked up
        // once on the way that counts (each lookup hashes the id).
        let session = match keyed {
            Ok(session) => session,
            Err(_) if !self.peers.contains_key(&id) => return Err(UnknownPeer(id).into()),
            Err(denied) => return Err(CallRefused::Denied(denied)),
        };
        self.handle_ping(id, schema_hash, now)?;
        Ok(session.is_some())
    }

    /// `DELETE /peers/{id}` with its signature headers: like
    /// [`Registry::handle_signed_ping`].
    pub fn handle_signed_leave(
        &mut self,
        id: PeerId,
        received: &Received,
        now: Timestamp,
    ) -> Result<Peer, CallRefused> {
        let path = leave_path(id);
        let _ = self.check_session(id, &Message::request("DELETE", &path, b""), received, now)?;
        Ok(self.handle_leave(id, now)?)
    }

    /// The signature headers of a ping's answer (a `200` with an empty body
    /// and the list version): genesis's Ed25519 signature of the version,
    /// so that the peer can trust it and fetch the list when it is behind.
    /// One signature per version and second of `created`, shared by every
    /// answer in it: a signed ping costs genesis one HMAC check, no signing.
    pub fn ping_answer(&mut self, identity: &Identity, now: Timestamp) -> Arc<SignatureHeaders> {
        let second = now.as_millis() / 1000;
        match &self.stamp {
            Some((version, at, stamp)) if *version == self.version && *at == second => {
                Arc::clone(stamp)
            }
            _ => {
                let message = Message::response(b"").with_version(Some(self.version));
                let stamp = Arc::new(identity.sign(&message, now));
                self.stamp = Some((self.version, second, Arc::clone(&stamp)));
                stamp
            }
        }
    }

    /// 404 for an unknown id (first: a peer of a genesis that forgot it
    /// must learn to register again), 403 for a keyed one without its
    /// session's signature.
    fn check_session(
        &self,
        id: PeerId,
        message: &Message<'_>,
        received: &Received,
        now: Timestamp,
    ) -> Result<Option<SessionKey>, CallRefused> {
        if !self.peers.contains_key(&id) {
            return Err(UnknownPeer(id).into());
        }
        self.verify_session(id, message, received, now)
    }

    /// [`RegistryConfig::verify_session`], as a refusal of the call.
    fn verify_session(
        &self,
        id: PeerId,
        message: &Message<'_>,
        received: &Received,
        now: Timestamp,
    ) -> Result<Option<SessionKey>, CallRefused> {
        self.config
            .verify_session(id, message, received.into(), now)
            .map_err(CallRefused::Denied)
    }

    /// The refusals `complete_register` and `admit` share: the checks of
    /// [`Registry::check_register`], then a probe that did not reach the peer.
    fn check_admissible(
        &self,
        probe: &Probe,
        reached: Result<(), String>,
    ) -> Result<(), RegisterError> {
        self.check_register(probe)?;
        reached.map_err(|reason| RegisterError::Unreachable {
            url: probe.url.clone(),
            reason,
        })
    }

    /// Second step: admits the peer if the probe reached it (`Ok`), or refuses.
    ///
    /// A name that is already registered is replaced: the new registration
    /// gets a new id and the old id is forgotten. A name a key holds is only
    /// registered again with that key ([`Registry::check_register`]); and
    /// when the key registers it again at the same URI (a restarted peer, or
    /// a registration replayed within the signature window), the
    /// registration keeps its id, so that the peer's pings still count.
    pub fn complete_register(
        &mut self,
        probe: Probe,
        reached: Result<(), String>,
        now: Timestamp,
    ) -> Result<PeerRegistrationResponse, RegisterError> {
        self.check_admissible(&probe, reached)?;
        self.heard(now);
        if let Some(key) = &probe.key
            && let Some(&old) = self.by_name.get(&probe.update.peer_name)
            && self.config.authority.holds(old, key)
            && let Some(peer) = self.peers.get_mut(&old)
            && peer.peer_uri == probe.update.peer_uri
        {
            let from = peer.last_contact_at;
            peer.last_contact_at = from.max(now);
            let peer = peer.clone();
            if from < now {
                self.by_contact.set(old, now);
            }
            if probe.deltas {
                self.wants_deltas.insert(old);
            } else {
                self.wants_deltas.remove(&old);
            }
            // It gets the whole list once, like any peer that registers.
            self.changed(ChangeKind::Joined, peer.clone(), now);
            self.round_changes.insert(old, true);
            return Ok(PeerRegistrationResponse {
                peer,
                contextionary: self.config.contextionary.clone(),
            });
        }
        if let Some(old) = self.by_name.get(&probe.update.peer_name).copied()
            && let Some(peer) = self.remove(old)
        {
            self.changed(ChangeKind::Left, peer, now);
        }
        let id = self.new_id(probe.key.as_ref());
        let peer = Peer {
            id,
            peer_name: probe.update.peer_name,
            peer_uri: probe.update.peer_uri,
            last_contact_at: now,
            schema_hash: self.hashes.intern(""),
        };
        self.insert(peer.clone());
        if probe.deltas {
            self.wants_deltas.insert(peer.id);
        }
        self.changed(ChangeKind::Joined, peer.clone(), now);
        self.round_changes.insert(peer.id, true);
        Ok(PeerRegistrationResponse {
            peer,
            contextionary: self.config.contextionary.clone(),
        })
    }

    /// `POST /peers/{id}/ping`: refreshes the peer's last contact and schema hash.
    pub fn handle_ping(
        &mut self,
        id: PeerId,
        schema_hash: &str,
        now: Timestamp,
    ) -> Result<(), UnknownPeer> {
        let peer = self.peers.get_mut(&id).ok_or(UnknownPeer(id))?;
        let from = peer.last_contact_at;
        peer.last_contact_at = from.max(now);
        let updated = (peer.schema_hash != schema_hash).then(|| {
            peer.schema_hash = self.hashes.intern(schema_hash);
            peer.clone()
        });
        if from < now {
            self.by_contact.set(id, now);
        }
        self.heard(now);
        if let Some(peer) = updated {
            self.changed(ChangeKind::Updated, peer, now);
        }
        Ok(())
    }

    /// `DELETE /peers/{id}`: the peer leaves the network.
    pub fn handle_leave(&mut self, id: PeerId, now: Timestamp) -> Result<Peer, UnknownPeer> {
        let peer = self.remove(id).ok_or(UnknownPeer(id))?;
        self.changed(ChangeKind::Left, peer.clone(), now);
        Ok(peer)
    }

    /// Evicts silent peers and starts a due broadcast round.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if !self.mirror && !self.is_holding(now) {
            while let Some((_, id)) = self.by_contact.first() {
                if self.earliest_deadline().is_none_or(|d| d > now) {
                    break;
                }
                match self.remove(id) {
                    Some(peer) => self.changed(ChangeKind::Evicted, peer, now),
                    // The front is always a peer's place; were it not, it
                    // goes, so that the loop ends.
                    None => self.by_contact.remove(id),
                }
            }
        }
        if self.next_round().is_some_and(|at| at <= now) {
            self.broadcast_due = None;
            self.round_started = Some((now, self.version));
            self.start_round();
        }
    }

    /// Every broadcast of the round of `version` was sent (or failed): the
    /// next round need not wait for it any longer. A report about an older
    /// round, overtaken after `round_wait`, changes nothing.
    pub fn handle_round_sent(&mut self, version: u64, _now: Timestamp) {
        if self.round_started.is_some_and(|(_, v)| v == version) {
            self.round_started = None;
        }
    }

    /// Whether `broadcast`, not sent yet, is no longer worth sending: a whole
    /// list that a newer round overtook (after `round_wait`) carries a newer
    /// whole list to the same peer. A delta is never superseded, since the
    /// next one builds on it.
    #[must_use]
    pub fn is_superseded(&self, broadcast: &Broadcast) -> bool {
        broadcast.delta.is_none() && broadcast.version < self.round_version
    }

    // ---- poll_* ----

    /// The next broadcast to send. New ones appear after [`Registry::handle_timeout`].
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Broadcast> {
        self.transmits.pop_front()
    }

    /// The next change of the list. New ones appear after any `handle_*` or
    /// `complete_register` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PeerChange> {
        self.events.pop_front()
    }

    /// When [`Registry::handle_timeout`] must next be called: the earlier of
    /// the next broadcast round and the next eviction (past any hold).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let eviction = self
            .earliest_deadline()
            .filter(|_| !self.mirror)
            .map(|deadline| {
                let (start, end) = self.hold_window();
                if start <= deadline && deadline < end {
                    end
                } else {
                    deadline
                }
            });
        match (eviction, self.next_round()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    fn hold_window(&self) -> (Timestamp, Timestamp) {
        let start = self.last_heard + self.config.peer_timeout / 2;
        (start, start + self.config.hold_limit)
    }

    /// Queues one broadcast per peer: the delta of the round to peers that
    /// asked for deltas and had the previous list, the whole list to the others.
    fn start_round(&mut self) {
        let list: Arc<[PeerListEntry]> = self.peers().map(Peer::to_entry).collect();
        let mut delta = PeerDelta {
            from: self.round_version,
            to: self.version,
            upserts: Vec::new(),
            removed: Vec::new(),
        };
        let changes = std::mem::take(&mut self.round_changes);
        for &id in changes.keys() {
            match self.peers.get(&id) {
                Some(peer) => delta.upserts.push(peer.to_entry()),
                None => delta.removed.push(id),
            }
        }
        let delta = Arc::new(delta);
        self.round_version = self.version;
        for id in self.by_name.values() {
            let Some(peer) = self.peers.get(id) else {
                continue;
            };
            let fresh = changes.get(id).copied().unwrap_or(false);
            let gets_delta = self.wants_deltas.contains(id) && !fresh;
            self.transmits.push_back(Broadcast {
                to: peer.id,
                url: peer.peer_uri.join(PUSH_PATH),
                version: self.version,
                list: Arc::clone(&list),
                delta: gets_delta.then(|| Arc::clone(&delta)),
            });
        }
    }

    /// When the next round may start: once changes are due, and the round
    /// being sent is done or has been waited for long enough.
    fn next_round(&self) -> Option<Timestamp> {
        let due = self.broadcast_due?;
        Some(match self.round_started {
            Some((started, _)) => due.max(started + self.config.round_wait),
            None => due,
        })
    }

    fn earliest_deadline(&self) -> Option<Timestamp> {
        let (contact, _) = self.by_contact.first()?;
        Some(contact.max(self.resumed_at) + self.config.peer_timeout)
    }

    fn heard(&mut self, now: Timestamp) {
        if self.is_holding(now) && self.earliest_deadline().is_some_and(|d| d <= now) {
            // Evictions were held while the registry was deaf: everyone gets
            // a full timeout from now to be heard again.
            self.resumed_at = now;
        }
        self.last_heard = self.last_heard.max(now);
    }

    fn insert(&mut self, peer: Peer) {
        self.by_name.insert(peer.peer_name.clone(), peer.id);
        let (id, at) = (peer.id, peer.last_contact_at);
        self.peers.insert(id, peer);
        self.by_contact.set(id, at);
    }

    fn remove(&mut self, id: PeerId) -> Option<Peer> {
        let peer = self.peers.remove(&id)?;
        self.wants_deltas.remove(&id);
        self.by_name.remove(&peer.peer_name);
        self.by_contact.remove(id);
        Some(peer)
    }

    /// A fresh id, never one in use (a restored registry may share its seed
    /// with the one that saved): keyed when the registration proved `key`.
    fn new_id(&mut self, key: Option<&PublicKey>) -> PeerId {
        loop {
            let random = self.rng.u128(..);
            let id = match key {
                Some(key) => self.config.authority.keyed_id(random, key),
                None => PeerId(uuid::Builder::from_random_bytes(random.to_le_bytes()).into_uuid()),
            };
            if !self.peers.contains_key(&id) {
                return id;
            }
        }
    }

    fn changed(&mut self, kind: ChangeKind, peer: Peer, now: Timestamp) {
        let version = self.version + 1;
        self.changed_at(kind, peer, version, now);
    }

    fn changed_at(&mut self, kind: ChangeKind, peer: Peer, version: u64, now: Timestamp) {
        self.version = version;
        self.round_changes.entry(peer.id).or_insert(false);
        self.events.push_back(PeerChange {
            version: self.version,
            kind,
            peer,
        });
        if self.broadcast_due.is_none() {
            self.broadcast_due = Some(now + self.config.broadcast_delay);
        }
    }
}

/// A registration a replica admitted ([`Registry::admit`]): it writes it to
/// the shared store, and the list changes when the store's change comes
/// back ([`Registry::apply_upsert`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The peer as it is to be stored (its new id, or the id a key keeps).
    pub peer: SavedPeer,
    /// The registration of the same name that the new one replaces: the
    /// replica removes it from the store first.
    pub replaces: Option<PeerId>,
    /// The answer to the registering peer.
    pub response: PeerRegistrationResponse,
}

/// What a registration does after its probe ([`Registry::handle_probed`]):
/// the same flow in one genesis and at a replica, the store deciding only
/// whether a write comes first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the peer is answered only when the step is done"]
pub enum RegisterStep {
    /// A replica: write `admission` to the shared store (removing the
    /// registration it replaces there first); once written, answer
    /// `reply`. The list changes when the store reports the write
    /// ([`Registry::apply_upsert`]). A failed write is answered 503.
    Write {
        /// What to write.
        admission: Box<Admission>,
        /// The answer once it is written.
        reply: Registered,
    },
    /// One genesis: the list has changed (publish it); answer `reply`.
    Reply(Registered),
}

/// Where a leave stands once its signature is checked ([`Registry::leave`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a leave at a replica is done only by its replica machine"]
pub enum LeaveStart {
    /// One genesis: the peer is removed (publish the change; answer 204).
    Removed,
    /// A replica: the store holds the registration; drive
    /// [`crate::replica::Replica::leave`] to remove it there.
    AtStore,
}

/// Where a ping stands once it is checked ([`Registry::ping`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a ping at a replica counts only once its replica machine says so"]
pub enum PingStart {
    /// One genesis: the ping counted (publish a changed schema hash;
    /// answer 200, with the signed version for a keyed peer).
    Counted {
        /// The registration is keyed: its answer carries the signed version.
        keyed: bool,
    },
    /// A replica: the signature holds; drive
    /// [`crate::replica::Replica::ping`] with the store (404 if it says unknown).
    AtStore {
        /// As in [`PingStart::Counted`].
        keyed: bool,
    },
}

/// The answer to a registration: the signed body and, for a keyed
/// registration, its session key ([`auth::SESSION_KEY_HEADER`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The body.
    pub response: PeerRegistrationResponse,
    /// The session key of a keyed registration.
    pub session: Option<SessionKey>,
}

/// What a replica does with a ping ([`Registry::ping_outcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    /// Nothing changed: only keep the registration's lease alive.
    KeepAlive,
    /// The schema hash changed: write the peer, then keep its lease alive.
    Write(SavedPeer),
}

/// Replicas: several genesis processes share one list kept in a store
/// (etcd) that orders changes (its revision is the list version) and
/// evicts (a lease per registration). Each replica holds a mirror of that
/// list, fed by the store's changes in order; calls that change the list
/// are decided here, written to the store by the shell, and applied when
/// the store reports them, so that every replica applies the same changes
/// in the same order, with the same versions.
impl Registry {
    /// An empty mirror of a shared list: it never evicts (the store does)
    /// and takes its versions from the store.
    pub fn mirror(config: RegistryConfig, now: Timestamp) -> Self {
        let mut registry = Self::new(config, now);
        registry.mirror = true;
        registry
    }

    /// A mirror holding `peers` at `version`, as a replica loads them at
    /// start: they are not changes, so nothing is pushed for them (a peer
    /// this replica owns already has the list, or finds its gap itself).
    pub fn mirror_restore(
        config: RegistryConfig,
        peers: Vec<SavedPeer>,
        version: u64,
        now: Timestamp,
    ) -> Self {
        let mut registry = Self::restore(config, peers, version, now);
        registry.mirror = true;
        registry
    }

    /// A replica's mirror learns that some replica heard a peer at `at`
    /// (its own pings, or another replica's word in the shared store): the
    /// mirror is not deaf, and [`Registry::is_holding`] says so. Only the
    /// whole cluster hearing no one makes it hold.
    pub fn note_heard(&mut self, at: Timestamp) {
        self.heard(at);
    }

    /// Some replica answered a ping of `id` at `at` (this one, or another
    /// that reported it through the store, in a batch): the peer's
    /// `last_contact_at` advances to it, never back. It changes no version
    /// and pushes nothing; an id the mirror does not hold is ignored.
    pub fn note_contact(&mut self, id: PeerId, at: Timestamp) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if at <= peer.last_contact_at {
            return;
        }
        peer.last_contact_at = at;
        self.by_contact.set(id, at);
    }

    /// Whether this registry mirrors a shared list.
    pub fn is_mirror(&self) -> bool {
        self.mirror
    }

    /// A replica's `complete_register`: the same checks, and the peer to
    /// write with its id, but the list does not change until the store
    /// reports the write. A key registering its name again at the same URI
    /// keeps its id, as in [`Registry::complete_register`].
    pub fn admit(
        &mut self,
        probe: Probe,
        reached: Result<(), String>,
        now: Timestamp,
    ) -> Result<Admission, RegisterError> {
        self.check_admissible(&probe, reached)?;
        let old = self.by_name.get(&probe.update.peer_name).copied();
        let kept = old.filter(|&old| {
            probe.key.as_ref().is_some_and(|key| {
                self.config.authority.holds(old, key)
                    && self
                        .peers
                        .get(&old)
                        .is_some_and(|p| p.peer_uri == probe.update.peer_uri)
            })
        });
        let id = match kept {
            Some(id) => id,
            None => self.new_id(probe.key.as_ref()),
        };
        let peer = Peer {
            id,
            peer_name: probe.update.peer_name,
            peer_uri: probe.update.peer_uri,
            last_contact_at: now,
            schema_hash: self.hashes.intern(""),
        };
        Ok(Admission {
            replaces: old.filter(|_| kept.is_none()),
            response: PeerRegistrationResponse {
                peer: peer.clone(),
                contextionary: self.config.contextionary.clone(),
            },
            peer: SavedPeer {
                peer,
                deltas: probe.deltas,
            },
        })
    }

    /// A replica's check of a leave's signature, as [`Registry::handle_signed_leave`] checks it.
    pub fn check_signed_leave(
        &self,
        id: PeerId,
        received: &Received,
        now: Timestamp,
    ) -> Result<(), CallRefused> {
        let path = leave_path(id);
        self.verify_session(id, &Message::request("DELETE", &path, b""), received, now)
            .map(drop)
    }

    /// A replica's `handle_ping`: whether the ping changes the stored peer.
    pub fn ping_outcome(&self, id: PeerId, schema_hash: &str) -> Result<PingOutcome, UnknownPeer> {
        let peer = self.peers.get(&id).ok_or(UnknownPeer(id))?;
        if *peer.schema_hash == *schema_hash {
            return Ok(PingOutcome::KeepAlive);
        }
        let mut peer = peer.clone();
        peer.schema_hash = SchemaHash::from(schema_hash);
        Ok(PingOutcome::Write(SavedPeer {
            deltas: self.wants_deltas.contains(&id),
            peer,
        }))
    }

    /// The store wrote `saved` at `version`. `registered` tells a
    /// registration (the peer is told the whole list, even if its id was
    /// kept) from a later write (a changed schema hash). A registration of a
    /// name held by another id replaces it, as it does in one genesis. A
    /// write that changes nothing in the list changes no version.
    pub fn apply_upsert(
        &mut self,
        saved: SavedPeer,
        registered: bool,
        version: u64,
        now: Timestamp,
    ) {
        let SavedPeer { mut peer, deltas } = saved;
        peer.schema_hash = self.hashes.intern(&peer.schema_hash);
        if deltas {
            self.wants_deltas.insert(peer.id);
        } else {
            self.wants_deltas.remove(&peer.id);
        }
        if let Some(current) = self.peers.get_mut(&peer.id) {
            let changed =
                current.schema_hash != peer.schema_hash || current.peer_uri != peer.peer_uri;
            if !changed && !registered {
                return;
            }
            current.schema_hash = peer.schema_hash;
            current.peer_uri = peer.peer_uri;
            let current = current.clone();
            let kind = if registered {
                self.round_changes.insert(current.id, true);
                ChangeKind::Joined
            } else {
                ChangeKind::Updated
            };
            self.changed_at(kind, current, version.max(self.version), now);
            return;
        }
        if let Some(old) = self.by_name.get(&peer.peer_name).copied()
            && let Some(gone) = self.remove(old)
        {
            self.changed_at(ChangeKind::Left, gone, version.max(self.version), now);
        }
        let id = peer.id;
        self.insert(peer.clone());
        self.changed_at(ChangeKind::Joined, peer, version.max(self.version), now);
        self.round_changes.insert(id, true);
    }

    /// The store removed the peer `id` at `version`: it left, or its lease
    /// ran out (evicted). An id the mirror does not hold changes nothing.
    pub fn apply_removal(&mut self, id: PeerId, kind: ChangeKind, version: u64, now: Timestamp) {
        if let Some(peer) = self.remove(id) {
            self.changed_at(kind, peer, version.max(self.version), now);
        }
    }

    /// These peers get the whole list in the next round (a replica took
    /// them over from one that died, and cannot know what it had sent).
    pub fn push_whole_list(&mut self, ids: impl IntoIterator<Item = PeerId>, now: Timestamp) {
        let mut any = false;
        for id in ids {
            if self.peers.contains_key(&id) {
                self.round_changes.insert(id, true);
                any = true;
            }
        }
        if any && self.broadcast_due.is_none() {
            self.broadcast_due = Some(now + self.config.broadcast_delay);
        }
    }
}
