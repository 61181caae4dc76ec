//! A deterministic simulator of one genesis registry and many peers in
//! virtual time, with message delay and loss.
//!
//! It plays the role of the tokio shells: it carries every request and
//! broadcast between the machines, answers them as the servers would, and
//! counts messages and bytes, so that whole-network properties are tested
//! and benchmarks can count the cost of a change for thousands of peers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use crate::membership::{CallError, Membership, MembershipConfig, Request};
use crate::names::{PeerName, PeerUri};
use crate::registry::{Broadcast, Registry, RegistryConfig};
use crate::schema::Schema;
use crate::time::Timestamp;
use crate::wire::{Contextionary, GenesisPush, PeerListEntry, PeerPing};

/// The shape of a simulated network.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many peers.
    pub peers: usize,
    /// One-way delay of every message.
    pub delay: Duration,
    /// Probability that a message is lost, from 0 to 1.
    pub loss: f64,
    /// How long a request waits for its answer before the sender gives up.
    pub rpc_timeout: Duration,
    /// The registry's configuration.
    pub registry: RegistryConfig,
    /// Every peer's ping interval.
    pub ping_interval: Duration,
    /// Seed of everything random.
    pub seed: u64,
    /// Whether peers ask for delta broadcasts (Plexus) or take the whole
    /// list every time (the original protocol).
    pub deltas: bool,
}

impl SimConfig {
    /// `peers` peers, 5 ms delay, no loss, 30 s peer timeout, 10 s pings.
    pub fn new(peers: usize, seed: u64) -> Self {
        Self {
            peers,
            delay: Duration::from_millis(5),
            loss: 0.0,
            rpc_timeout: Duration::from_secs(2),
            registry: RegistryConfig::new(contextionary(), seed),
            ping_interval: Duration::from_secs(10),
            seed,
            deltas: true,
        }
    }
}

/// The contextionary every simulated node uses.
pub fn contextionary() -> Contextionary {
    Contextionary {
        url: "http://contextionary.invalid/c.bin".into(),
        hash: crate::wire::ContextionaryHash {
            algorithm: "sha256".into(),
            value: "sim".into(),
        },
    }
}

/// The membership configuration of simulated peer `i` (`Peer{i}` at
/// `http://peer{i}.sim`), shared by both simulators.
pub(crate) fn peer_config(i: usize, seed: u64, ping_interval: Duration) -> MembershipConfig {
    let name = PeerName::new(format!("Peer{i}")).unwrap_or_else(|_| unreachable!("valid name"));
    let uri =
        PeerUri::new(format!("http://peer{i}.sim")).unwrap_or_else(|_| unreachable!("valid uri"));
    let mut config = MembershipConfig::new(name, uri, seed.wrapping_add(i as u64 + 1));
    config.ping_interval = ping_interval;
    config.contextionary = Some(contextionary());
    config
}

/// Messages and bytes sent, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests and answers of registrations.
    pub registrations: u64,
    /// Pings sent.
    pub pings: u64,
    /// Broadcasts sent by genesis.
    pub broadcasts: u64,
    /// Bytes of broadcast bodies sent by genesis.
    pub broadcast_bytes: u64,
    /// Whole-list fetches (`GET /peers`) after a lost broadcast.
    pub fetches: u64,
    /// Bytes of whole-list fetch answers.
    pub fetch_bytes: u64,
    /// Messages lost.
    pub lost: u64,
}

/// One delivery scheduled in virtual time.
#[derive(Debug)]
enum Delivery {
    /// A request from a peer arrives at genesis (or at another peer, for schemas).
    Request(usize, Request),
    /// The answer to a request arrives back at the peer.
    Answer(usize, Answer),
    /// A broadcast arrives at a peer.
    Broadcast(usize, Broadcast),
}

#[derive(Debug)]
enum Answer {
    Register(Result<crate::wire::PeerRegistrationResponse, CallError>),
    Ping(Result<Option<u64>, CallError>),
    Leave,
    Peers(Result<(Vec<PeerListEntry>, Option<u64>), CallError>),
    Schema(PeerName, String, Result<Schema, CallError>),
}

struct SimPeer {
    membership: Membership,
    alive: bool,
}

/// The simulated network.
pub struct Sim {
    config: SimConfig,
    now: Timestamp,
    rng: fastrand::Rng,
    /// `None` while genesis is down.
    registry: Option<Registry>,
    peers: Vec<SimPeer>,
    names: BTreeMap<PeerName, usize>,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    deliveries: BTreeMap<usize, Delivery>,
    timers: BinaryHeap<Reverse<(Timestamp, usize)>>,
    seq: u64,
    /// Counters since the start, or since [`Sim::reset_stats`].
    pub stats: Stats,
}

impl Sim {
    /// A network with genesis up and every peer started at `Timestamp(0)`.
    pub fn new(config: SimConfig) -> Self {
        let now = Timestamp(0);
        let rng = fastrand::Rng::with_seed(config.seed);
        let mut sim = Self {
            registry: Some(Registry::new(config.registry.clone(), now)),
            config,
            now,
            rng,
            peers: Vec::new(),
            names: BTreeMap::new(),
            queue: BinaryHeap::new(),
            deliveries: BTreeMap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            stats: Stats::default(),
        };
        for i in 0..sim.config.peers {
            sim.add_peer(i);
        }
        sim
    }

    fn add_peer(&mut self, i: usize) {
        let config = peer_config(i, self.config.seed, self.config.ping_interval);
        let name = config.name.clone();
        let mut membership = Membership::new(Some(config), format!("hash-{i}-0"));
        membership.handle_start(self.now);
        self.names.insert(name, i);
        self.peers.push(SimPeer {
            membership,
            alive: true,
        });
        self.drain_peer(i);
    }

    /// The name of peer `i`.
    pub fn name(i: usize) -> PeerName {
        PeerName::new(format!("Peer{i}")).unwrap_or_else(|_| unreachable!("valid name"))
    }

    /// Virtual now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The registry, while genesis is up.
    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// Peer `i`'s membership machine.
    pub fn membership(&self, i: usize) -> &Membership {
        &self.peers[i].membership
    }

    /// Whether peer `i` runs.
    pub fn is_alive(&self, i: usize) -> bool {
        self.peers[i].alive
    }

    /// Zeroes the counters.
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// Peer `i` dies at once, without leaving (`kill -9`).
    pub fn kill(&mut self, i: usize) {
        self.peers[i].alive = false;
    }

    /// Peer `i` stops gracefully: it deregisters.
    pub fn stop(&mut self, i: usize) {
        self.peers[i].membership.handle_shutdown(self.now);
        self.drain_peer(i);
    }

    /// A new peer joins the running network; returns its index.
    pub fn join(&mut self) -> usize {
        let i = self.peers.len();
        self.add_peer(i);
        i
    }

    /// Peer `i` changes its schema.
    pub fn change_schema(&mut self, i: usize, hash: &str) {
        self.peers[i]
            .membership
            .set_schema_hash(hash.to_owned(), self.now);
        self.drain_peer(i);
    }

    /// Genesis crashes, losing its memory (no `--state`), and comes back at once.
    pub fn restart_genesis(&mut self) {
        // A restarted genesis draws new ids: it must not hand out the old ones again.
        self.config.registry.seed = self.rng.u64(..);
        self.registry = Some(Registry::new(self.config.registry.clone(), self.now));
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            let next_delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let next_registry = self.registry.as_ref().and_then(Registry::poll_timeout);
            let Some(next) = [next_delivery, next_timer, next_registry]
                .into_iter()
                .flatten()
                .min()
            else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                if let Some(Reverse((_, _, key))) = self.queue.pop()
                    && let Some(delivery) = self.deliveries.remove(&key)
                {
                    self.deliver(delivery);
                }
            } else if next_timer == Some(next) {
                if let Some(Reverse((_, i))) = self.timers.pop()
                    && self.peers[i].alive
                {
                    self.peers[i].membership.handle_timeout(self.now);
                    self.drain_peer(i);
                }
            } else if let Some(registry) = &mut self.registry {
                registry.handle_timeout(self.now);
                self.drain_registry();
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        self.run_until(self.now + span);
    }

    /// The names in the registry, sorted.
    pub fn registry_names(&self) -> Vec<PeerName> {
        self.registry.as_ref().map_or_else(Vec::new, |r| {
            r.peers().map(|p| p.peer_name.clone()).collect()
        })
    }

    /// Whether every live, registered peer's view is the registry's list less itself.
    pub fn converged(&self) -> bool {
        let listed = self.registry_names();
        self.peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.alive && p.membership.id().is_some())
            .all(|(i, p)| {
                let own = Self::name(i);
                let expected: Vec<&PeerName> = listed.iter().filter(|n| **n != own).collect();
                p.membership.view().keys().collect::<Vec<_>>() == expected
            })
    }

    fn schedule(&mut self, delivery: Delivery, lossy: bool) {
        if lossy && self.config.loss > 0.0 && self.rng.f64() < self.config.loss {
            self.stats.lost += 1;
            return;
        }
        let key = self.seq as usize;
        self.seq += 1;
        self.deliveries.insert(key, delivery);
        self.queue
            .push(Reverse((self.now + self.config.delay, self.seq, key)));
    }

    /// An answer that takes the way back, or times out when lost.
    fn answer(&mut self, i: usize, answer: Answer) {
        if self.config.loss > 0.0 && self.rng.f64() < self.config.loss {
            self.stats.lost += 1;
            let timeout = match answer {
                Answer::Register(_) => {
                    Answer::Register(Err(CallError::Transport("timeout".into())))
                }
                Answer::Ping(_) => Answer::Ping(Err(CallError::Transport("timeout".into()))),
                Answer::Leave => Answer::Leave,
                Answer::Peers(_) => Answer::Peers(Err(CallError::Transport("timeout".into()))),
                Answer::Schema(n, h, _) => {
                    Answer::Schema(n, h, Err(CallError::Transport("timeout".into())))
                }
            };
            let key = self.seq as usize;
            self.seq += 1;
            self.deliveries.insert(key, Delivery::Answer(i, timeout));
            self.queue
                .push(Reverse((self.now + self.config.rpc_timeout, self.seq, key)));
            return;
        }
        self.schedule(Delivery::Answer(i, answer), false);
    }

    fn drain_peer(&mut self, i: usize) {
        while let Some(request) = self.peers[i].membership.poll_transmit() {
            match request {
                Request::Ping { .. } => self.stats.pings += 1,
                Request::Register(_) => self.stats.registrations += 1,
                _ => {}
            }
            self.schedule(Delivery::Request(i, request), false);
        }
        while self.peers[i].membership.poll_event().is_some() {}
        if let Some(t) = self.peers[i].membership.poll_timeout() {
            self.timers.push(Reverse((t, i)));
        }
    }

    fn drain_registry(&mut self) {
        let Some(registry) = &mut self.registry else {
            return;
        };
        let mut broadcasts = Vec::new();
        while let Some(b) = registry.poll_transmit() {
            broadcasts.push(b);
        }
        while registry.poll_event().is_some() {}
        // The simulated network takes a round at once.
        if let Some(b) = broadcasts.first() {
            registry.handle_round_sent(b.version, self.now);
        }
        // Bodies are shared by a round: size each distinct one once.
        let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
        for b in broadcasts {
            let shared = match &b.delta {
                Some(delta) => Arc::as_ptr(delta) as *const () as usize,
                None => Arc::as_ptr(&b.list) as *const () as usize,
            };
            let bytes = *sizes
                .entry(shared)
                .or_insert_with(|| b.body().map_or(0, |v| v.len() as u64));
            self.stats.broadcasts += 1;
            self.stats.broadcast_bytes += bytes;
            let target = b
                .list
                .iter()
                .find(|e| e.id == b.to)
                .and_then(|e| self.names.get(&e.name).copied());
            let Some(target) = target else { continue };
            self.schedule(Delivery::Broadcast(target, b), true);
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Request(from, request) => self.serve(from, request),
            Delivery::Answer(i, answer) => {
                if !self.peers[i].alive {
                    return;
                }
                let now = self.now;
                let m = &mut self.peers[i].membership;
                match answer {
                    Answer::Register(r) => m.handle_register_response(r, now),
                    Answer::Ping(r) => m.handle_ping_response(r, now),
                    Answer::Leave => m.handle_leave_response(Ok(()), now),
                    Answer::Peers(r) => m.handle_peers_response(r, now),
                    Answer::Schema(name, hash, r) => m.handle_schema_response(&name, &hash, r, now),
                }
                self.drain_peer(i);
            }
            Delivery::Broadcast(i, b) => {
                if self.peers[i].alive {
                    let push = match b.delta {
                        Some(delta) => GenesisPush::Delta((*delta).clone()),
                        None => GenesisPush::Full(b.list.to_vec()),
                    };
                    self.peers[i]
                        .membership
                        .handle_genesis_push(push, Some(b.version), self.now);
                    self.drain_peer(i);
                }
            }
        }
    }

    /// Genesis (or a remote peer) handles a request, as the servers do.
    fn serve(&mut self, from: usize, request: Request) {
        let now = self.now;
        let down = || CallError::Transport("connection refused".into());
        let answer = match request {
            Request::DownloadSchema { peer, hash, .. } => {
                let alive = self.names.get(&peer).is_some_and(|&j| self.peers[j].alive);
                let result = if alive {
                    Ok(Schema::default())
                } else {
                    Err(down())
                };
                Answer::Schema(peer, hash, result)
            }
            _ if self.registry.is_none() => match request {
                Request::Register(_) => Answer::Register(Err(down())),
                Request::Ping { .. } => Answer::Ping(Err(down())),
                Request::FetchPeers => Answer::Peers(Err(down())),
                _ => Answer::Leave,
            },
            Request::Register(update) => {
                let reachable = self
                    .names
                    .get(&update.peer_name)
                    .is_some_and(|&j| self.peers[j].alive);
                let Some(registry) = &mut self.registry else {
                    return;
                };
                let probe = registry
                    .begin_register(update)
                    .with_deltas(self.config.deltas);
                let result = registry.complete_register(
                    probe,
                    if reachable {
                        Ok(())
                    } else {
                        Err("down".into())
                    },
                    now,
                );
                Answer::Register(result.map_err(|e| CallError::Unreachable(e.to_string())))
            }
            Request::Ping {
                id,
                body: PeerPing { schema_hash },
            } => {
                let Some(registry) = &mut self.registry else {
                    return;
                };
                let result = registry
                    .handle_ping(id, &schema_hash, now)
                    .map(|()| Some(registry.version()));
                Answer::Ping(result.map_err(|_| CallError::NotFound))
            }
            Request::Leave { id } => {
                if let Some(registry) = &mut self.registry {
                    let _ = registry.handle_leave(id, now);
                }
                Answer::Leave
            }
            Request::FetchPeers => {
                let Some(registry) = &self.registry else {
                    return;
                };
                let list: Vec<PeerListEntry> =
                    registry.peers().map(crate::wire::Peer::to_entry).collect();
                self.stats.fetches += 1;
                self.stats.fetch_bytes += serde_json::to_vec(&list).map_or(0, |v| v.len() as u64);
                Answer::Peers(Ok((list, Some(registry.version()))))
            }
        };
        self.drain_registry();
        if self.peers[from].alive {
            self.answer(from, answer);
        }
    }
}
