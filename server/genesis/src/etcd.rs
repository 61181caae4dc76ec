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
//!   (`--replica-ttl`): the set that pushes are split over.
//!
//! Every replica watches the prefix from the revision it loaded and applies
//! the changes in etcd's order; the list version is etcd's revision of the
//! last change of the list. A ping that changes nothing costs one lease
//! keep-alive message on one long-lived gRPC stream per replica: nothing is
//! written.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use futures::StreamExt as _;
use plexus_core::Timestamp;
use plexus_core::registry::SavedPeer;
use plexus_core::replica::Replicas;
use plexus_core::wire::{ChangeKind, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How many lease keep-alives may wait for the stream; past that a ping's
/// keep-alive is dropped (the peer's next ping sends another) and counted.
const KEEPALIVE_QUEUE: usize = 16 * 1024;

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
    /// When this replica last heard a peer (ms since the epoch).
    heard: AtomicU64,
    /// When any replica last heard a peer, as their keys under `replicas/`
    /// tell (ms since the epoch): what self-preservation goes by.
    cluster_heard: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Each listed peer's lease.
    leases: HashMap<PeerId, i64>,
    /// The replicas etcd lists.
    live: BTreeSet<String>,
    replicas: Replicas,
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

impl Replication {
    /// Connects to etcd (it need not be up yet: calls retry).
    pub async fn connect(config: EtcdConfig) -> anyhow::Result<Self> {
        let options = ConnectOptions::new()
            .with_timeout(config.timeout)
            .with_connect_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(2), config.timeout);
        let client = Client::connect(&config.endpoints, Some(options))
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
                leases: HashMap::new(),
                live: BTreeSet::new(),
                replicas: Replicas::new(me),
            }),
            config,
            dropped_keepalives: 0.into(),
            lease: 0.into(),
            withdrawn: false.into(),
            heard: 0.into(),
            cluster_heard: 0.into(),
        })
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

    /// Whether this replica pushes to `peer`.
    pub fn owns(&self, peer: PeerId) -> bool {
        self.lock().replicas.owns(peer)
    }

    /// How many replicas this one sees live (itself included).
    pub fn live_replicas(&self) -> usize {
        self.lock().replicas.live().len()
    }

    /// Writes a registration: the replaced one is removed first (its own
    /// revision, so that every replica sees the leave, then the join).
    pub async fn register(
        &self,
        saved: &SavedPeer,
        replaces: Option<PeerId>,
    ) -> anyhow::Result<()> {
        if let Some(old) = replaces {
            self.remove(old).await?;
        }
        let lease = self
            .client
            .lease_client()
            .grant(ttl_secs(self.config.peer_timeout), None)
            .await?
            .id();
        let record = Record {
            saved: saved.clone(),
            registered: true,
        };
        self.client
            .kv_client()
            .put(
                self.key("peers", saved.peer.id),
                serde_json::to_vec(&record)?,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        self.lock().leases.insert(saved.peer.id, lease);
        Ok(())
    }

    /// Writes a changed peer (a new schema hash) under its lease.
    pub async fn write(&self, saved: &SavedPeer) -> anyhow::Result<bool> {
        let Some(lease) = self.lease(saved.peer.id).await? else {
            return Ok(false);
        };
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
        Ok(self.client.kv_client().txn(txn).await?.succeeded())
    }

    /// The lease of `id`: the mirror's, or etcd's when the mirror has not
    /// seen the registration yet (it was just made at another replica).
    async fn lease(&self, id: PeerId) -> anyhow::Result<Option<i64>> {
        if let Some(&lease) = self.lock().leases.get(&id) {
            return Ok(Some(lease));
        }
        Ok(self.fetch(id).await?.map(|(_, lease)| lease))
    }

    /// The stored record of `id` and its lease, read from etcd.
    pub async fn fetch(&self, id: PeerId) -> anyhow::Result<Option<(SavedPeer, i64)>> {
        let response = self
            .client
            .kv_client()
            .get(self.key("peers", id), None)
            .await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(kv.value())?;
        Ok(Some((record.saved, kv.lease())))
    }

    /// Keeps the registration `id` alive (a ping): queues one keep-alive of
    /// its lease. `false` if the mirror does not hold it.
    pub fn keep_alive(&self, id: PeerId) -> bool {
        let Some(lease) = self.lock().leases.get(&id).copied() else {
            return false;
        };
        self.keep_alive_lease(lease);
        true
    }

    /// Queues one keep-alive of `lease`.
    pub fn keep_alive_lease(&self, lease: i64) {
        if self.keepalives.try_send(lease).is_err() {
            self.dropped_keepalives
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Removes the registration `id` (a leave): `false` if etcd does not
    /// hold it. Its lease is revoked after, which deletes the marker too.
    pub async fn remove(&self, id: PeerId) -> anyhow::Result<bool> {
        let Some(lease) = self.lease(id).await? else {
            return Ok(false);
        };
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
        let removed = self.client.kv_client().txn(txn).await?.succeeded();
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
            .client
            .kv_client()
            .get(
                self.config.prefix.clone(),
                Some(GetOptions::new().with_prefix()),
            )
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
                self.read_heard(kv.value());
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
        state.leases = leases;
        state.live = live.into_iter().collect();
        Ok((applied, at))
    }

    /// The live replicas changed (or may have): the peers of `listed` this
    /// replica takes over.
    pub(crate) fn takeover(&self, listed: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
        let mut state = self.lock();
        let live = state.live.clone();
        state.replicas.handle_live(live, listed)
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
                    if event.event_type() == EventType::Put {
                        self.read_heard(kv.value());
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
                                self.lock().leases.insert(id, kv.lease());
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
                            self.lock().leases.remove(&id);
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
            let mut published = 0;
            let broke = loop {
                tokio::select! {
                    _ = tick.tick() => {
                        keeper.id = lease;
                        if let Err(e) = keeper.keep_alive().await { break e.to_string(); }
                        // Tell the others when this replica last heard a peer.
                        let heard = self.heard.load(Ordering::Relaxed);
                        if heard > published {
                            match self.publish_heard(lease, heard).await {
                                Ok(()) => published = heard,
                                Err(e) => break e.to_string(),
                            }
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

    /// A peer was heard (a ping) at `now`.
    pub fn note_heard(&self, now: Timestamp) {
        self.heard.fetch_max(now.as_millis(), Ordering::Relaxed);
        self.cluster_heard
            .fetch_max(now.as_millis(), Ordering::Relaxed);
    }

    /// When any replica last heard a peer, as far as this one knows.
    pub fn cluster_heard(&self) -> Timestamp {
        Timestamp(self.cluster_heard.load(Ordering::Relaxed))
    }

    /// Self-preservation: keeps alive the leases of the peers this replica
    /// pushes to, while no replica hears anyone (the registry
    /// [is holding](plexus_core::registry::Registry::is_holding)), so that
    /// etcd evicts no one for an outage on the replicas' side.
    pub fn keep_owned_alive(&self) {
        let leases: Vec<i64> = {
            let state = self.lock();
            state
                .leases
                .iter()
                .filter(|(id, _)| state.replicas.owns(**id))
                .map(|(_, &lease)| lease)
                .collect()
        };
        for lease in leases {
            self.keep_alive_lease(lease);
        }
    }

    /// The value of a replica's key: when it last heard a peer.
    fn read_heard(&self, value: &[u8]) {
        if let Some(at) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
            self.cluster_heard.fetch_max(at, Ordering::Relaxed);
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

    /// Writes this replica's key again, with when it last heard a peer.
    async fn publish_heard(&self, lease: i64, heard: u64) -> anyhow::Result<()> {
        self.client
            .kv_client()
            .put(
                self.key("replicas", &self.me),
                heard.to_string(),
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
