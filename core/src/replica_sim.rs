//! A deterministic simulator of genesis replicas over a shared store (as
//! etcd is to them) and many peers, in virtual time.
//!
//! The store orders every write with a revision, binds each registration to
//! a lease whose TTL is the peer timeout (a ping keeps it alive; when it
//! runs out, the store deletes the record: an eviction), and tells every
//! live replica each change after the network's delay, as etcd's watch does.
//! Each replica is a mirror ([`Registry::mirror`]) and a [`Replica`] over it,
//! with its own lease (`replica_ttl`) and key, driven as the genesis shell
//! drives them; each peer is given every replica. A replica can be killed
//! at any instant; the properties of the end-to-end tests (no live peer
//! evicted, no push lost, the takeover within its bound) are then checked
//! on thousands of virtual seconds in milliseconds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use crate::membership::{CallError, Membership, Request};
use crate::names::PeerName;
use crate::registry::{Broadcast, Registry, RegistryConfig, SavedPeer};
use crate::replica::{Lease, LeaveStep, PingStep, Replica, Report, StoreAction};
use crate::schema::Schema;
use crate::sim::{contextionary, peer_config};
use crate::time::Timestamp;
use crate::wire::{ChangeKind, GenesisPush, PeerId, PeerListEntry, PeerPing};

/// The shape of a simulated cluster.
#[derive(Clone, Debug)]
pub struct ReplicaSimConfig {
    /// How many genesis replicas.
    pub replicas: usize,
    /// How many peers (each given every replica, in the same order).
    pub peers: usize,
    /// One-way delay of every message, the store's watch included.
    pub delay: Duration,
    /// TTL of a replica's own lease; it is kept alive, and its report
    /// written, every third of it.
    pub replica_ttl: Duration,
    /// Every replica's registry configuration (peer timeout, hold limit…).
    pub registry: RegistryConfig,
    /// Every peer's ping interval.
    pub ping_interval: Duration,
    /// Seed of everything random.
    pub seed: u64,
}

impl ReplicaSimConfig {
    /// `replicas` replicas, `peers` peers, 5 ms delay, 2 s replica TTL,
    /// 3 s peer timeout, pings every second.
    pub fn new(replicas: usize, peers: usize, seed: u64) -> Self {
        let mut registry = RegistryConfig::new(contextionary(), seed);
        registry.peer_timeout = Duration::from_secs(3);
        registry.hold_limit = Duration::from_secs(3);
        Self {
            replicas,
            peers,
            delay: Duration::from_millis(5),
            replica_ttl: Duration::from_secs(2),
            registry,
            ping_interval: Duration::from_secs(1),
            seed,
        }
    }
}

/// What the store tells every replica, in revision order.
#[derive(Clone, Debug)]
enum Change {
    Put {
        saved: SavedPeer,
        registered: bool,
        lease: Lease,
        revision: u64,
    },
    Removed {
        id: PeerId,
        kind: ChangeKind,
        revision: u64,
    },
    ReplicaPut {
        replica: usize,
        report: Report,
    },
    ReplicaGone {
        replica: usize,
    },
}

/// The shared store: records, leases, replica keys, a revision.
#[derive(Debug, Default)]
struct Store {
    revision: u64,
    records: BTreeMap<PeerId, (SavedPeer, Lease)>,
    /// Each lease's expiry and TTL.
    leases: BTreeMap<Lease, (Timestamp, Duration)>,
    next_lease: Lease,
    /// Each live replica's lease.
    replicas: BTreeMap<usize, Lease>,
    /// Peers evicted by the store (a lease that ran out).
    evicted: Vec<PeerId>,
    /// Writes (revisions taken), to count the cost of pings.
    writes: u64,
}

impl Store {
    fn grant(&mut self, ttl: Duration, now: Timestamp) -> Lease {
        self.next_lease += 1;
        self.leases.insert(self.next_lease, (now + ttl, ttl));
        self.next_lease
    }

    fn keep_alive(&mut self, lease: Lease, now: Timestamp) {
        if let Some((expiry, ttl)) = self.leases.get_mut(&lease) {
            *expiry = (*expiry).max(now + *ttl);
        }
    }

    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.writes += 1;
        self.revision
    }

    /// The earliest lease expiry.
    fn next_expiry(&self) -> Option<Timestamp> {
        self.leases.values().map(|(at, _)| *at).min()
    }

    /// Runs out every lease due at `now`: their records and keys go.
    fn expire(&mut self, now: Timestamp) -> Vec<Change> {
        let due: Vec<Lease> = self
            .leases
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(lease, _)| *lease)
            .collect();
        let mut changes = Vec::new();
        for lease in due {
            self.leases.remove(&lease);
            let ids: Vec<PeerId> = self
                .records
                .iter()
                .filter(|(_, (_, l))| *l == lease)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.records.remove(&id);
                self.evicted.push(id);
                let revision = self.bump();
                changes.push(Change::Removed {
                    id,
                    kind: ChangeKind::Evicted,
                    revision,
                });
            }
            let gone: Vec<usize> = self
                .replicas
                .iter()
                .filter(|(_, l)| **l == lease)
                .map(|(r, _)| *r)
                .collect();
            for replica in gone {
                self.replicas.remove(&replica);
                self.bump();
                changes.push(Change::ReplicaGone { replica });
            }
        }
        changes
    }
}

/// Messages and events counted since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Pings answered 200.
    pub pings: u64,
    /// Writes to the store while the pings were answered (every kind).
    pub store_writes: u64,
    /// Broadcasts sent by the replicas.
    pub broadcasts: u64,
}

#[derive(Debug)]
enum Event {
    /// A peer's request arrives at a replica.
    Request {
        peer: usize,
        replica: usize,
        request: Request,
    },
    /// An answer arrives back at a peer.
    Answer { peer: usize, answer: Answer },
    /// A broadcast arrives at a peer.
    Push { peer: usize, broadcast: Broadcast },
    /// The store's change arrives at a replica.
    Watch { replica: usize, change: Change },
    /// A peer's timer.
    PeerTimer(usize),
    /// A replica's tick, every third of its TTL: its lease and its report.
    ReplicaTick(usize),
    /// A replica's registry or self-preservation is due.
    ReplicaTimer(usize),
}

#[derive(Debug)]
enum Answer {
    Register(Result<crate::wire::PeerRegistrationResponse, CallError>),
    Ping(Result<Option<u64>, CallError>),
    Leave,
    Peers(Result<(Vec<PeerListEntry>, Option<u64>), CallError>),
    Schema(PeerName, String),
}

struct SimReplica {
    name: String,
    mirror: Registry,
    replica: Replica,
    alive: bool,
    live: BTreeSet<String>,
    /// The [`Event::ReplicaTimer`] pending, if any.
    armed: Option<Timestamp>,
}

/// The simulated cluster.
pub struct ReplicaSim {
    config: ReplicaSimConfig,
    now: Timestamp,
    store: Store,
    replicas: Vec<SimReplica>,
    peers: Vec<(Membership, bool)>,
    names: BTreeMap<PeerName, usize>,
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    /// When each peer last received a push, and the version it carried.
    pushed: BTreeMap<usize, (Timestamp, u64)>,
    /// Counters.
    pub stats: ReplicaStats,
}

impl ReplicaSim {
    /// A cluster whose replicas are up and whose peers start at `Timestamp(0)`.
    pub fn new(config: ReplicaSimConfig) -> Self {
        let now = Timestamp(0);
        let mut sim = Self {
            now,
            store: Store::default(),
            replicas: Vec::new(),
            peers: Vec::new(),
            names: BTreeMap::new(),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            pushed: BTreeMap::new(),
            stats: ReplicaStats::default(),
            config,
        };
        for r in 0..sim.config.replicas {
            let name = format!("replica-{r}");
            let mut registry = sim.config.registry.clone();
            registry.seed = sim.config.seed.wrapping_add(1000 + r as u64);
            let lease = sim.store.grant(sim.config.replica_ttl, now);
            sim.store.replicas.insert(r, lease);
            sim.replicas.push(SimReplica {
                replica: Replica::new(name.clone(), registry.peer_timeout),
                mirror: Registry::mirror(registry, now),
                name,
                alive: true,
                live: BTreeSet::new(),
                armed: None,
            });
        }
        let names: Vec<String> = sim.replicas.iter().map(|r| r.name.clone()).collect();
        for r in 0..sim.replicas.len() {
            for (other, name) in names.iter().enumerate() {
                if other != r {
                    sim.replicas[r].live.insert(name.clone());
                }
            }
            let live = sim.replicas[r].live.clone();
            let SimReplica {
                replica, mirror, ..
            } = &mut sim.replicas[r];
            let _ = replica.handle_live(live, mirror, now);
            sim.at(now, Event::ReplicaTick(r));
        }
        for i in 0..sim.config.peers {
            sim.add_peer(i);
        }
        sim
    }

    /// The name of peer `i`.
    pub fn name(i: usize) -> PeerName {
        PeerName::new(format!("Peer{i}")).unwrap_or_else(|_| unreachable!("valid name"))
    }

    fn add_peer(&mut self, i: usize) {
        let mut config = peer_config(i, self.config.seed, self.config.ping_interval);
        let name = config.name.clone();
        config.genesis_replicas = self.config.replicas;
        config.retry_max = Duration::from_secs(2);
        let mut membership = Membership::new(Some(config), format!("hash-{i}"));
        membership.handle_start(self.now);
        self.names.insert(name, i);
        self.peers.push((membership, true));
        self.drain_peer(i);
    }

    /// Virtual now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Peer `i`'s membership machine.
    pub fn membership(&self, i: usize) -> &Membership {
        &self.peers[i].0
    }

    /// The mirror of replica `r`.
    pub fn mirror(&self, r: usize) -> &Registry {
        &self.replicas[r].mirror
    }

    /// The peers the store evicted (their leases ran out), in order.
    pub fn evicted(&self) -> &[PeerId] {
        &self.store.evicted
    }

    /// How many records the store holds.
    pub fn stored(&self) -> usize {
        self.store.records.len()
    }

    /// The store's writes so far.
    pub fn store_writes(&self) -> u64 {
        self.store.writes
    }

    /// When peer `i` last got a push, and its version.
    pub fn last_push(&self, i: usize) -> Option<(Timestamp, u64)> {
        self.pushed.get(&i).copied()
    }

    /// Replica `r` dies at once (`kill -9`): it answers nothing, keeps
    /// nothing alive, pushes nothing; its lease runs out in the store.
    pub fn kill_replica(&mut self, r: usize) {
        self.replicas[r].alive = false;
    }

    /// A new peer joins; returns its index.
    pub fn join(&mut self) -> usize {
        let i = self.peers.len();
        self.add_peer(i);
        i
    }

    /// Peer `i` dies at once, without leaving.
    pub fn kill_peer(&mut self, i: usize) {
        self.peers[i].1 = false;
    }

    /// Whether every live, registered peer's view is replica `r`'s list less itself.
    pub fn converged(&self, r: usize) -> bool {
        let listed: Vec<PeerName> = self.replicas[r]
            .mirror
            .peers()
            .map(|p| p.peer_name.clone())
            .collect();
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, (m, alive))| *alive && m.id().is_some())
            .all(|(i, (m, _))| {
                let own = Self::name(i);
                let expected: Vec<&PeerName> = listed.iter().filter(|n| **n != own).collect();
                m.view().keys().collect::<Vec<_>>() == expected
            })
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            let next_event = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_expiry = self.store.next_expiry();
            let Some(next) = [next_event, next_expiry].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_expiry == Some(next) {
                let changes = self.store.expire(self.now);
                self.publish(changes);
                continue;
            }
            if let Some(Reverse((_, key))) = self.queue.pop()
                && let Some(event) = self.events.remove(&key)
            {
                self.handle(event);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        self.run_until(self.now + span);
    }

    // ---- internals ----

    fn at(&mut self, when: Timestamp, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((when, self.seq)));
    }

    fn later(&mut self, event: Event) {
        self.at(self.now + self.config.delay, event);
    }

    /// Sends the store's changes to every live replica (the watch).
    fn publish(&mut self, changes: Vec<Change>) {
        for change in changes {
            for r in 0..self.replicas.len() {
                if self.replicas[r].alive {
                    self.later(Event::Watch {
                        replica: r,
                        change: change.clone(),
                    });
                }
            }
        }
    }

    fn drain_peer(&mut self, i: usize) {
        let replica = self.peers[i].0.genesis();
        while let Some(request) = self.peers[i].0.poll_transmit() {
            self.later(Event::Request {
                peer: i,
                replica,
                request,
            });
        }
        while self.peers[i].0.poll_event().is_some() {}
        if let Some(t) = self.peers[i].0.poll_timeout() {
            self.at(t, Event::PeerTimer(i));
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::PeerTimer(i) => {
                if self.peers[i].1 {
                    self.peers[i].0.handle_timeout(now);
                    self.drain_peer(i);
                }
            }
            Event::Answer { peer, answer } => {
                if !self.peers[peer].1 {
                    return;
                }
                let m = &mut self.peers[peer].0;
                match answer {
                    Answer::Register(r) => m.handle_register_response(r, now),
                    Answer::Ping(r) => m.handle_ping_response(r, now),
                    Answer::Leave => m.handle_leave_response(Ok(()), now),
                    Answer::Peers(r) => m.handle_peers_response(r, now),
                    Answer::Schema(name, hash) => {
                        m.handle_schema_response(&name, &hash, Ok(Schema::default()), now)
                    }
                }
                self.drain_peer(peer);
            }
            Event::Push { peer, broadcast } => {
                if !self.peers[peer].1 {
                    return;
                }
                self.pushed.insert(peer, (now, broadcast.version));
                let push = match broadcast.delta {
                    Some(delta) => GenesisPush::Delta((*delta).clone()),
                    None => GenesisPush::Full(broadcast.list.to_vec()),
                };
                self.peers[peer]
                    .0
                    .handle_genesis_push(push, Some(broadcast.version), now);
                self.drain_peer(peer);
            }
            Event::Request {
                peer,
                replica,
                request,
            } => {
                let answer = self.serve(peer, replica, request);
                if let Some(answer) = answer
                    && self.peers[peer].1
                {
                    self.later(Event::Answer { peer, answer });
                }
            }
            Event::Watch { replica, change } => {
                if self.replicas[replica].alive {
                    self.apply(replica, change);
                    self.drain_replica(replica);
                }
            }
            Event::ReplicaTimer(r) => {
                if self.replicas[r].armed == Some(now) {
                    self.replicas[r].armed = None;
                }
                if self.replicas[r].alive {
                    self.drain_replica(r);
                }
            }
            Event::ReplicaTick(r) => {
                if !self.replicas[r].alive {
                    return;
                }
                // Its own lease and its report, every third of its TTL.
                if let Some(&lease) = self.store.replicas.get(&r) {
                    self.store.keep_alive(lease, now);
                }
                if let Some(report) = self.replicas[r].replica.take_report(16 * 1024) {
                    self.store.bump();
                    self.publish(vec![Change::ReplicaPut { replica: r, report }]);
                }
                self.drain_replica(r);
                self.at(now + self.config.replica_ttl / 3, Event::ReplicaTick(r));
            }
        }
    }

    /// A change from the store at replica `r`, as the genesis shell applies it.
    fn apply(&mut self, r: usize, change: Change) {
        let now = self.now;
        let name = |k: usize| format!("replica-{k}");
        let me = &mut self.replicas[r];
        let live_changed = match change {
            Change::Put {
                saved,
                registered,
                lease,
                revision,
            } => {
                me.replica.handle_put(saved.peer.id, lease);
                me.mirror.apply_upsert(saved, registered, revision, now);
                false
            }
            Change::Removed { id, kind, revision } => {
                me.replica.handle_removed(id);
                me.mirror.apply_removal(id, kind, revision, now);
                false
            }
            Change::ReplicaPut { replica, report } => {
                if replica != r {
                    me.replica.handle_report(report, &mut me.mirror);
                }
                me.live.insert(name(replica))
            }
            Change::ReplicaGone { replica } => me.live.remove(&name(replica)),
        };
        if live_changed {
            let live = me.live.clone();
            let _ = me.replica.handle_live(live, &mut me.mirror, now);
        }
    }

    /// Replica `r`'s registry timeout, self-preservation and broadcasts.
    fn drain_replica(&mut self, r: usize) {
        let now = self.now;
        let me = &mut self.replicas[r];
        let _ = me.replica.handle_timeout(&mut me.mirror, now);
        me.mirror.handle_timeout(now);
        while me.mirror.poll_event().is_some() {}
        let round: Vec<Broadcast> = std::iter::from_fn(|| me.mirror.poll_transmit()).collect();
        if let Some(first) = round.first() {
            me.mirror.handle_round_sent(first.version, now);
        }
        let mine = me.replica.own_share(round);
        let actions: Vec<StoreAction> = std::iter::from_fn(|| me.replica.poll_action()).collect();
        let next = [me.mirror.poll_timeout(), me.replica.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        for action in actions {
            match action {
                StoreAction::KeepAlive(lease) => self.store.keep_alive(lease, now),
            }
        }
        for broadcast in mine {
            self.stats.broadcasts += 1;
            let target = broadcast
                .list
                .iter()
                .find(|e| e.id == broadcast.to)
                .and_then(|e| self.names.get(&e.name).copied());
            if let Some(peer) = target {
                self.later(Event::Push { peer, broadcast });
            }
        }
        if let Some(next) = next.filter(|t| *t > now)
            && self.replicas[r].armed.is_none_or(|armed| next < armed)
        {
            self.replicas[r].armed = Some(next);
            self.at(next, Event::ReplicaTimer(r));
        }
    }

    /// Replica `r` answers a request, as the genesis shell does.
    fn serve(&mut self, peer: usize, r: usize, request: Request) -> Option<Answer> {
        let now = self.now;
        let down = || CallError::Transport("connection refused".into());
        if let Request::DownloadSchema {
            peer: name, hash, ..
        } = request
        {
            return Some(Answer::Schema(name, hash));
        }
        if !self.replicas[r].alive {
            return Some(match request {
                Request::Register(_) => Answer::Register(Err(down())),
                Request::Ping { .. } => Answer::Ping(Err(down())),
                Request::FetchPeers => Answer::Peers(Err(down())),
                _ => Answer::Leave,
            });
        }
        let answer = match request {
            Request::Register(update) => {
                let reachable = self
                    .names
                    .get(&update.peer_name)
                    .is_some_and(|&j| self.peers[j].1);
                let me = &mut self.replicas[r];
                let probe = me.mirror.begin_register(update).with_deltas(true);
                let reached = if reachable {
                    Ok(())
                } else {
                    Err("down".into())
                };
                match me.mirror.admit(probe, reached, now) {
                    Err(e) => Answer::Register(Err(CallError::Unreachable(e.to_string()))),
                    Ok(admission) => {
                        let mut changes = Vec::new();
                        if let Some(old) = admission.replaces
                            && let Some((_, lease)) = self.store.records.remove(&old)
                        {
                            self.store.leases.remove(&lease);
                            let revision = self.store.bump();
                            changes.push(Change::Removed {
                                id: old,
                                kind: ChangeKind::Left,
                                revision,
                            });
                        }
                        let lease = self.store.grant(self.config.registry.peer_timeout, now);
                        let id = admission.peer.peer.id;
                        self.store
                            .records
                            .insert(id, (admission.peer.clone(), lease));
                        let revision = self.store.bump();
                        self.replicas[r].replica.handle_put(id, lease);
                        changes.push(Change::Put {
                            saved: admission.peer,
                            registered: true,
                            lease,
                            revision,
                        });
                        self.publish(changes);
                        Answer::Register(Ok(admission.response))
                    }
                }
            }
            Request::Ping {
                id,
                body: PeerPing { schema_hash },
            } => {
                let me = &mut self.replicas[r];
                let mut step = me.replica.ping(&mut me.mirror, id, &schema_hash, now);
                let counted = loop {
                    step = match step {
                        PingStep::Counted => break true,
                        PingStep::Unknown => break false,
                        PingStep::Write { saved, lease } => {
                            let written = self
                                .store
                                .records
                                .get(&id)
                                .is_some_and(|(_, l)| *l == lease);
                            if written {
                                self.store.records.insert(id, (saved.clone(), lease));
                                let revision = self.store.bump();
                                self.publish(vec![Change::Put {
                                    saved,
                                    registered: false,
                                    lease,
                                    revision,
                                }]);
                            }
                            let me = &mut self.replicas[r];
                            me.replica
                                .handle_ping_written(&mut me.mirror, id, lease, written, now)
                        }
                        PingStep::Fetch(id) => {
                            let fetched = self.store.records.get(&id).cloned();
                            let me = &mut self.replicas[r];
                            me.replica.handle_ping_fetched(
                                &mut me.mirror,
                                id,
                                fetched,
                                &schema_hash,
                                now,
                            )
                        }
                    };
                };
                if counted {
                    self.stats.pings += 1;
                    Answer::Ping(Ok(Some(self.replicas[r].mirror.version())))
                } else {
                    Answer::Ping(Err(CallError::NotFound))
                }
            }
            Request::Leave { id } => {
                let mut step = self.replicas[r].replica.leave(id);
                loop {
                    step = match step {
                        LeaveStep::Remove { lease } => {
                            if self.store.records.remove(&id).is_some() {
                                self.store.leases.remove(&lease);
                                let revision = self.store.bump();
                                self.publish(vec![Change::Removed {
                                    id,
                                    kind: ChangeKind::Left,
                                    revision,
                                }]);
                            }
                            break;
                        }
                        LeaveStep::Unknown => break,
                        LeaveStep::Fetch(id) => {
                            let lease = self.store.records.get(&id).map(|(_, l)| *l);
                            self.replicas[r].replica.handle_leave_fetched(lease)
                        }
                    };
                }
                Answer::Leave
            }
            Request::FetchPeers => {
                let mirror = &self.replicas[r].mirror;
                let list = mirror.peers().map(crate::wire::Peer::to_entry).collect();
                Answer::Peers(Ok((list, Some(mirror.version()))))
            }
            Request::DownloadSchema { .. } => return None,
        };
        self.drain_replica(r);
        let _ = peer;
        Some(answer)
    }
}
