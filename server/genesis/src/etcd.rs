//! Replicas on etcd: the peer list lives in etcd, and any number of
//! genesis processes serve it ([`plexus_core::registry::Registry::mirror`]).
//!
//! Keys, under `--etcd-prefix` (default `/plexus/`):
//! - `peers/{id}`: a registration, as JSON (the peer, its choice of deltas,
//!   and whether the write was a registration), bound to the peer's own
//!   lease, whose TTL is the peer timeout: eviction is etcd's expiry of it.
//!   A keyed registration's name is bound to its key by the id itself (a MAC
//!   under genesis's secret), so the binding travels with the record, and
//!   every replica checks it alike when all are given the same `--key-file`.
//! - `left/{id}`: written in the same transaction that deletes `peers/{id}`
//!   on a leave, bound to the same lease (revoked right after): a deletion
//!   with it is a leave, without it an eviction.
//! - `replicas/{replica}`: one per live replica, bound to its lease
//!   (`--replica-ttl`): the set that pushes are split over. Its value tells
//!   when the replica last heard a peer and, in batches, the pings it
//!   answered since its last write, so that every replica's
//!   `last_contact_at` advances without a write per ping.
//! - `genesis-key`: the network's signing key, written once by the first
//!   replica that starts (a put-if-absent transaction) and loaded by the
//!   others, so that replicas agree on one key with nothing to copy.
//!
//! A member of the cluster that does not answer is left out of the client's
//! endpoints (and put back once it answers), and a call that could not reach
//! a member is tried again within `--etcd-timeout`: a replica starts and
//! serves whenever the cluster has a quorum, whichever member is down.
//!
//! Every replica watches the prefix from the revision it loaded and applies
//! the changes in etcd's order; the list version is etcd's revision of the
//! last change of the list. A ping that changes nothing costs one lease
//! keep-alive message on one long-lived gRPC stream per replica: nothing is
//! written.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt as _;
use plexus_core::Timestamp;
use plexus_core::auth::Identity;
use plexus_core::registry::{Broadcast, Registry, SavedPeer};
use plexus_core::replica::{Lease, Replica, Report, StoreAction};
use plexus_core::wire::{ChangeKind, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How many lease keep-alives may wait for the stream; past that a ping's
/// keep-alive is dropped (the peer's next ping sends another) and counted.
const KEEPALIVE_QUEUE: usize = 16 * 1024;

/// The most pings one write of a replica's key reports (about 51 bytes
/// each: well under etcd's default request limit of 1.5 MiB); the rest go
/// with the next write.
const CONTACTS_PER_WRITE: usize = 16 * 1024;

/// How often the members of the cluster are checked (a TCP connect), so
/// that one that does not answer is left out of the client's endpoints.
const MEMBER_CHECK: Duration = Duration::from_secs(1);

/// The pause between two tries of a call that could not reach a member.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How long a replica that starts keeps trying to reach etcd.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// The key of the network's signing key, under the prefix.
const KEY_KEY: &str = "genesis-key";

/// A peer as stored in etcd.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    saved: SavedPeer,
    /// The write was a registration (the peer gets the whole list), not a
    /// changed schema hash.
    #[serde(default)]
    registered: bool,
}

/// How a replica reaches etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// The etcd members' client URLs.
    pub endpoints: Vec<String>,
    /// The prefix of every key.
    pub prefix: String,
    /// TTL of this replica's own lease: a replica silent this long loses its share of pushes.
    pub replica_ttl: Duration,
    /// Timeout of each etcd call.
    pub timeout: Duration,
    /// The peer timeout: TTL of each registration's lease.
    pub peer_timeout: Duration,
}

/// One change of the list as etcd reports it, for the mirror.
#[derive(Debug)]
pub(crate) enum Applied {
    /// `peers/{id}` was written at `revision`.
    Put {
        /// The record.
        saved: SavedPeer,
        /// A registration.
        registered: bool,
        /// etcd's revision.
        revision: u64,
    },
    /// `peers/{id}` was deleted at `revision`.
    Removed {
        /// The peer.
        id: PeerId,
        /// A leave or an eviction.
        kind: ChangeKind,
        /// etcd's revision.
        revision: u64,
    },
    /// Another replica's key: when it last heard a peer, and the pings it
    /// answered since its previous write.
    Report(Report),
}

/// Where a replica's signing key came from ([`Replication::agree_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// This replica wrote it to etcd: it is the network's key from now on.
    Created,
    /// Loaded from etcd, where another replica (or an earlier start) wrote it.
    Loaded,
}

/// A replica's link to etcd.
pub struct Replication {
    client: Client,
    config: EtcdConfig,
    me: String,
    keepalives: mpsc::Sender<i64>,
    keepalive_rx: Mutex<Option<mpsc::Receiver<i64>>>,
    state: Mutex<State>,
    /// Keep-alives dropped because the queue was full.
    pub dropped_keepalives: std::sync::atomic::AtomicU64,
    /// This replica's own lease, once announced (0: none yet).
    lease: std::sync::atomic::AtomicI64,
    /// Set by [`Replication::withdraw`]: the replica is not announced again.
    withdrawn: std::sync::atomic::AtomicBool,
    /// The members the client sends calls to (those that answered last).
    members: tokio::sync::Mutex<BTreeSet<String>>,
}

#[derive(Debug)]
struct State {
    /// The replicas etcd lists.
    live: BTreeSet<String>,
    /// The decisions: leases, ownership, reports, self-preservation.
    replica: Replica,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("config", &self.config)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn ttl_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

fn revision(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or(0)
}

/// Whether `error` says the call did not reach a member (it may be tried
/// again, at another).
fn unreachable(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => status.code() == tonic::Code::Unavailable,
        _ => false,
    }
}

/// Whether the member at `url` accepts a TCP connection within `timeout`.
async fn answers(url: &str, timeout: Duration) -> bool {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await,
        Ok(Ok(_))
    )
}

/// The members of `endpoints` that answer now.
async fn answering(endpoints: &[String], timeout: Duration) -> BTreeSet<String> {
    let checks = endpoints
        .iter()
        .map(|url| async move { answers(url, timeout).await.then(|| url.clone()) });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

impl Replication {
    /// Connects to etcd through the members that answer now (all of them
    /// when none does: calls retry); the others are added once they answer.
    pub async fn connect(config: EtcdConfig) -> anyhow::Result<Self> {
        let options = ConnectOptions::new()
            .with_timeout(config.timeout)
            .with_connect_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(2), config.timeout);
        let check = config.timeout.min(MEMBER_CHECK);
        let mut members = answering(&config.endpoints, check).await;
        if members.is_empty() {
            members = config.endpoints.iter().cloned().collect();
        }
        let first: Vec<&String> = members.iter().collect();
        let client = Client::connect(&first, Some(options))
            .await
            .with_context(|| format!("cannot connect to etcd at {:?}", config.endpoints))?;
        let me = uuid::Uuid::new_v4().to_string();
        let (keepalives, rx) = mpsc::channel(KEEPALIVE_QUEUE);
        Ok(Self {
            client,
            me: me.clone(),
            keepalives,
            keepalive_rx: Mutex::new(Some(rx)),
            state: Mutex::new(State {
                live: BTreeSet::new(),
                replica: Replica::new(me, config.peer_timeout),
            }),
            config,
            dropped_keepalives: 0.into(),
            lease: 0.into(),
            withdrawn: false.into(),
            members: tokio::sync::Mutex::new(members),
        })
    }

    /// Checks the members every second for as long as the process runs:
    /// one that stopped answering leaves the client's endpoints (calls no
    /// longer go to it), one that answers again comes back. When none
    /// answers, the endpoints stay as they are.
    pub(crate) async fn watch_members(self: Arc<Self>) {
        let check = self.config.timeout.min(MEMBER_CHECK);
        loop {
            tokio::time::sleep(MEMBER_CHECK).await;
            let up = answering(&self.config.endpoints, check).await;
            if up.is_empty() {
                continue;
            }
            let mut members = self.members.lock().await;
            for url in up.difference(&members) {
                match self.client.add_endpoint(url).await {
                    Ok(()) => tracing::info!(member = %url, "an etcd member answers again"),
                    Err(e) => {
                        tracing::warn!(member = %url, error = %e, "cannot add an etcd member")
                    }
                }
            }
            for url in members.difference(&up) {
                match self.client.remove_endpoint(url).await {
                    Ok(()) => {
                        tracing::warn!(member = %url, "an etcd member does not answer: calls go to the others")
                    }
                    Err(e) => {
                        tracing::warn!(member = %url, error = %e, "cannot remove an etcd member")
                    }
                }
            }
            *members = up;
        }
    }

    /// Runs `call` until it reaches a member, for at most `patience`.
    async fn retrying<T, F, Fut>(
        &self,
        patience: Duration,
        mut call: F,
    ) -> Result<T, etcd_client::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + patience;
        loop {
            match call().await {
                Err(e) if unreachable(&e) && Instant::now() + RETRY_PAUSE < deadline => {
                    tracing::debug!(error = %e, "an etcd call did not reach a member; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// The network's signing key: the one in etcd, written there first
    /// (a put-if-absent transaction) by whichever replica starts first, so
    /// that every replica of the prefix agrees on it with nothing to copy.
    /// `given` (from `--key-file`) becomes the network's key when etcd holds
    /// none yet; a `given` key that differs from the network's is refused.
    pub async fn agree_key(
        &self,
        given: Option<Identity>,
    ) -> anyhow::Result<(Identity, KeySource)> {
        let candidate = given
            .clone()
            .unwrap_or_else(plexus_server::keys::random_identity);
        let key = format!("{}{KEY_KEY}", self.config.prefix);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                STANDARD.encode(candidate.seed()),
                None,
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = self
            .retrying(START_PATIENCE, || {
                let mut kv = self.client.kv_client();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .with_context(|| format!("cannot read the network's key ({key}) from etcd"))?;
        if response.succeeded() {
            return Ok((candidate, KeySource::Created));
        }
        let stored = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .with_context(|| format!("etcd answered no value for {key}"))?;
        let seed: [u8; 32] = STANDARD
            .decode(String::from_utf8_lossy(&stored).trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| {
                format!("{key} in etcd does not hold a key (the base64 of a 32-byte Ed25519 seed)")
            })?;
        let stored = Identity::from_seed(seed);
        if let Some(given) = given
            && given.public() != stored.public()
        {
            anyhow::bail!(
                "this replica's key ({}, from --key-file) differs from the network's key ({}) that etcd holds at {key}: \
                 give every replica of this --etcd-prefix the same --key-file, or none (then they share the one in etcd)",
                given.public(),
                stored.public()
            );
        }
        Ok((stored, KeySource::Loaded))
    }

    /// This replica's id (its key under `replicas/`).
    pub fn me(&self) -> &str {
        &self.me
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}{kind}/{id}", self.config.prefix)
    }

    /// Runs one decision of the replica machine over `mirror` (locked by
    /// the caller: the registry's lock is always taken before this one),
    /// then does what it asked of etcd besides (keep-alives).
    pub fn run<T>(
        &self,
        mirror: &mut Registry,
        decide: impl FnOnce(&mut Replica, &mut Registry) -> T,
    ) -> T {
        let (out, actions) = {
            let mut state = self.lock();
            let out = decide(&mut state.replica, mirror);
            let actions: Vec<StoreAction> =
                std::iter::from_fn(|| state.replica.poll_action()).collect();
            (out, actions)
        };
        for action in actions {
            match action {
                StoreAction::KeepAlive(lease) => self.keep_alive_lease(lease),
            }
        }
        out
    }

    /// Of a round of broadcasts, those this replica sends.
    pub fn own_share(&self, round: Vec<Broadcast>) -> Vec<Broadcast> {
        self.lock().replica.own_share(round)
    }

    /// How many replicas this one sees live (itself included).
    pub fn live_replicas(&self) -> usize {
        self.lock().replica.replicas().live().len()
    }

    /// Writes a registration: the replaced one is removed first (its own
    /// revision, so that every replica sees the leave, then the join).
    pub async fn register(
        &self,
        saved: &SavedPeer,
        replaces: Option<PeerId>,
    ) -> anyhow::Result<()> {
        if let Some(old) = replaces
            && let Some(lease) = self.lease(old).await?
        {
            self.remove(old, lease).await?;
        }
        let ttl = ttl_secs(self.config.peer_timeout);
        let lease = self
            .retrying(self.config.timeout, || {
                let mut leases = self.client.lease_client();
                async move { leases.grant(ttl, None).await }
            })
            .await?
            .id();
        let record = Record {
            saved: saved.clone(),
            registered: true,
        };
        let (key, value) = (
            self.key("peers", saved.peer.id),
            serde_json::to_vec(&record)?,
        );
        self.retrying(self.config.timeout, || {
            let mut kv = self.client.kv_client();
            let (key, value) = (key.clone(), value.clone());
            async move {
                kv.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await?;
        self.lock().replica.handle_put(saved.peer.id, lease);
        Ok(())
    }

    /// Writes a changed peer (a new schema hash) under its lease, only
    /// while the record still holds that lease: `false` if it does not.
    pub async fn write(&self, saved: &SavedPeer, lease: Lease) -> anyhow::Result<bool> {
        let record = Record {
            saved: saved.clone(),
            registered: false,
        };
        let key = self.key("peers", saved.peer.id);
        // Only while the registration still exists: an evicted one stays gone.
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(
                key,
                serde_json::to_vec(&record)?,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(self.txn(txn).await?.succeeded())
    }

    /// One transaction, tried again while it reaches no member.
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, etcd_client::Error> {
        self.retrying(self.config.timeout, || {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// The lease of `id`: the mirror's, or etcd's when the mirror has not
    /// seen the registration yet (it was just made at another replica).
    async fn lease(&self, id: PeerId) -> anyhow::Result<Option<Lease>> {
        if let Some(lease) = self.lock().replica.lease(id) {
            return Ok(Some(lease));
        }
        Ok(self.fetch(id).await?.map(|(_, lease)| lease))
    }

    /// The stored record of `id` and its lease, read from etcd.
    pub async fn fetch(&self, id: PeerId) -> anyhow::Result<Option<(SavedPeer, i64)>> {
        let key = self.key("peers", id);
        let response = self
            .retrying(self.config.timeout, || {
                let mut kv = self.client.kv_client();
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(kv.value())?;
        Ok(Some((record.saved, kv.lease())))
    }

    /// Queues one keep-alive of `lease`.
    pub fn keep_alive_lease(&self, lease: i64) {
        if self.keepalives.try_send(lease).is_err() {
            self.dropped_keepalives
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Removes the registration `id` (a leave) with a `left/` marker under
    /// its lease: `false` if etcd does not hold it. The lease is revoked
    /// after, which deletes the marker too.
    pub async fn remove(&self, id: PeerId, lease: Lease) -> anyhow::Result<bool> {
        let key = self.key("peers", id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Greater, 0)])
            .and_then([
                TxnOp::delete(key, None),
                TxnOp::put(
                    self.key("left", id),
                    "",
                    Some(PutOptions::new().with_lease(lease)),
                ),
            ]);
        let removed = self.txn(txn).await?.succeeded();
        if removed {
            let mut lease_client = self.client.lease_client();
            tokio::spawn(async move {
                if let Err(e) = lease_client.revoke(lease).await {
                    tracing::debug!(lease, error = %e, "cannot revoke a left peer's lease: it runs out");
                }
            });
        }
        Ok(removed)
    }

    /// Reads everything under the prefix: the list as upserts, the ids the
    /// mirror holds that etcd does not (to evict), and the revision read at.
    pub(crate) async fn load(
        &self,
        listed: impl FnOnce() -> Vec<PeerId>,
    ) -> anyhow::Result<(Vec<Applied>, u64)> {
        let response = self
            .retrying(START_PATIENCE, || {
                let mut kv = self.client.kv_client();
                let prefix = self.config.prefix.clone();
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let at = revision(response.header().map_or(0, |h| h.revision()));
        let mut applied = Vec::new();
        let mut leases = HashMap::new();
        let mut live = Vec::new();
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some(rest) = key.strip_prefix(&self.config.prefix) else {
                continue;
            };
            if let Some(replica) = rest.strip_prefix("replicas/") {
                applied.push(Applied::Report(Report::decode(kv.value())));
                live.push(replica.to_string());
            } else if rest.starts_with("peers/") {
                match serde_json::from_slice::<Record>(kv.value()) {
                    Ok(record) => {
                        leases.insert(record.saved.peer.id, kv.lease());
                        applied.push(Applied::Put {
                            saved: record.saved,
                            registered: false,
                            revision: at,
                        });
                    }
                    Err(e) => tracing::warn!(key = %key, error = %e, "unreadable record in etcd"),
                }
            }
        }
        for id in listed() {
            if !leases.contains_key(&id) {
                applied.push(Applied::Removed {
                    id,
                    kind: ChangeKind::Evicted,
                    revision: at,
                });
            }
        }
        let mut state = self.lock();
        state.replica.handle_loaded(leases);
        state.live = live.into_iter().collect();
        Ok((applied, at))
    }

    /// The live replicas changed (or may have): the peers of `mirror` this
    /// replica takes over get the whole list in the next round; returns
    /// how many.
    pub(crate) fn takeover(&self, mirror: &mut Registry, now: Timestamp) -> usize {
        let mut state = self.lock();
        let live = state.live.clone();
        state.replica.handle_live(live, mirror, now)
    }

    /// Watches the prefix from `from`; each batch of changes goes to
    /// `apply`. Returns (with the next revision to watch from) when the
    /// stream breaks, or `None` when etcd compacted past it (load again).
    pub(crate) async fn watch(
        &self,
        from: u64,
        mut apply: impl FnMut(Vec<Applied>, bool),
    ) -> anyhow::Result<Option<u64>> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(from).unwrap_or(i64::MAX));
        let mut stream = self
            .client
            .watch_client()
            .watch(self.config.prefix.clone(), Some(options))
            .await?;
        let mut next = from;
        while let Some(response) = stream.next().await {
            let response = response?;
            if response.compact_revision() > 0 {
                tracing::warn!(
                    compacted = response.compact_revision(),
                    "etcd compacted past this replica's watch: loading the list again"
                );
                return Ok(None);
            }
            if response.canceled() {
                break;
            }
            let events = response.events();
            // A deletion of `peers/{id}` in the same revision as a put of
            // `left/{id}` is a leave.
            let left: BTreeSet<(String, i64)> = events
                .iter()
                .filter(|e| e.event_type() == EventType::Put)
                .filter_map(|e| e.kv())
                .filter_map(|kv| {
                    let key = String::from_utf8_lossy(kv.key());
                    let id = key
                        .strip_prefix(&self.config.prefix)?
                        .strip_prefix("left/")?;
                    Some((id.to_string(), kv.mod_revision()))
                })
                .collect();
            let mut applied = Vec::new();
            let mut replicas_changed = false;
            for event in events {
                let Some(kv) = event.kv() else { continue };
                next = next.max(revision(kv.mod_revision()) + 1);
                let key = String::from_utf8_lossy(kv.key());
                let Some(rest) = key.strip_prefix(&self.config.prefix) else {
                    continue;
                };
                if let Some(replica) = rest.strip_prefix("replicas/") {
                    if event.event_type() == EventType::Put && replica != self.me {
                        applied.push(Applied::Report(Report::decode(kv.value())));
                    }
                    let mut state = self.lock();
                    let changed = match event.event_type() {
                        EventType::Put => state.live.insert(replica.to_string()),
                        EventType::Delete => state.live.remove(replica),
                    };
                    // A put of a known replica only tells when it heard a peer.
                    replicas_changed |= changed;
                } else if let Some(id) = rest.strip_prefix("peers/") {
                    let Ok(id) = id.parse::<PeerId>() else {
                        continue;
                    };
                    match event.event_type() {
                        EventType::Put => match serde_json::from_slice::<Record>(kv.value()) {
                            Ok(record) => {
                                self.lock().replica.handle_put(id, kv.lease());
                                applied.push(Applied::Put {
                                    saved: record.saved,
                                    registered: record.registered,
                                    revision: revision(kv.mod_revision()),
                                });
                            }
                            Err(e) => {
                                tracing::warn!(key = %key, error = %e, "unreadable record in etcd")
                            }
                        },
                        EventType::Delete => {
                            self.lock().replica.handle_removed(id);
                            let kind = if left.contains(&(id.to_string(), kv.mod_revision())) {
                                ChangeKind::Left
                            } else {
                                ChangeKind::Evicted
                            };
                            applied.push(Applied::Removed {
                                id,
                                kind,
                                revision: revision(kv.mod_revision()),
                            });
                        }
                    }
                }
            }
            apply(applied, replicas_changed);
        }
        Ok(Some(next))
    }

    /// Registers this replica under `replicas/` with its lease, and keeps
    /// that lease and the peers' (queued by [`Replication::keep_alive`])
    /// alive on one stream, for as long as the process runs. A lost stream
    /// is opened again; a lost replica lease is granted and written again.
    pub(crate) async fn keep_alive_loop(self: Arc<Self>) {
        let Some(mut rx) = self
            .keepalive_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let interval = (self.config.replica_ttl / 3).max(Duration::from_millis(100));
        loop {
            if self.withdrawn.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let (mut keeper, mut responses, lease) = match self.announce().await {
                Ok(opened) => opened,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot announce this replica in etcd; retrying");
                    tokio::time::sleep(interval).await;
                    continue;
                }
            };
            let mut tick = tokio::time::interval(interval);
            let broke = loop {
                tokio::select! {
                    _ = tick.tick() => {
                        keeper.id = lease;
                        if let Err(e) = keeper.keep_alive().await { break e.to_string(); }
                        // Tell the others when this replica last heard a
                        // peer, and the pings it answered since: one write
                        // per tick, whatever the number of pings.
                        let report = self.lock().replica.take_report(CONTACTS_PER_WRITE);
                        if let Some(report) = report
                            && let Err(e) = self.publish(lease, &report).await
                        {
                            break e.to_string();
                        }
                    }
                    Some(peer_lease) = rx.recv() => {
                        keeper.id = peer_lease;
                        if let Err(e) = keeper.keep_alive().await { break e.to_string(); }
                    }
                    message = responses.message() => match message {
                        Ok(Some(response)) if response.id() == lease && response.ttl() <= 0 => {
                            break "this replica's lease ran out".to_string();
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break "the keep-alive stream ended".to_string(),
                        Err(e) => break e.to_string(),
                    }
                }
            };
            tracing::warn!(reason = %broke, "etcd keep-alive stream lost; opening it again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// On a graceful stop: revokes this replica's lease, so that etcd drops
    /// its key at once and the other replicas take over its share of the
    /// pushes now rather than after `--replica-ttl`. Bounded by the etcd
    /// call timeout; a replica that cannot reach etcd just lets it run out.
    pub async fn withdraw(&self) {
        self.withdrawn
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let lease = self.lease.swap(0, std::sync::atomic::Ordering::SeqCst);
        if lease == 0 {
            return;
        }
        let mut leases = self.client.lease_client();
        match tokio::time::timeout(self.config.timeout, leases.revoke(lease)).await {
            Ok(Ok(_)) => tracing::info!(replica = %self.me, "this replica left etcd"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot revoke this replica's lease: it runs out")
            }
            Err(_) => tracing::warn!(
                "etcd did not answer the revoke of this replica's lease: it runs out"
            ),
        }
    }

    /// Writes this replica's key again with its report: when it last heard
    /// a peer and the pings it answered since the last write.
    async fn publish(&self, lease: i64, report: &Report) -> anyhow::Result<()> {
        let value = report.encode();
        self.client
            .kv_client()
            .put(
                self.key("replicas", &self.me),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok(())
    }

    /// Grants this replica's lease, writes its key, and opens the keep-alive stream.
    async fn announce(&self) -> anyhow::Result<(LeaseKeeper, LeaseKeepAliveStream, i64)> {
        let mut leases = self.client.lease_client();
        let lease = leases
            .grant(ttl_secs(self.config.replica_ttl), None)
            .await?
            .id();
        self.client
            .kv_client()
            .put(
                self.key("replicas", &self.me),
                "",
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        let (keeper, responses) = leases.keep_alive(lease).await?;
        self.lease.store(lease, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(replica = %self.me, lease, "this replica is announced in etcd");
        Ok((keeper, responses, lease))
    }
}
