//! Which genesis replica pushes to which peer.
//!
//! Replicas that share a list ([`crate::registry::Registry::mirror`]) each
//! compute every broadcast round, but a peer is pushed to by one replica
//! only: the one that wins the rendezvous hash of the peer's id over the
//! live replicas (each replica holds a lease in the store; the store's
//! changes tell every replica the same set). When a replica dies, only the
//! peers it owned move, each to the replica that scores next; those peers
//! get the whole list from their new owner, who cannot know what the dead
//! one had sent ([`Replicas::handle_live`]). A replica always counts itself
//! as live, so that when the replicas' views differ for a moment a peer is
//! pushed to twice rather than not at all.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::registry::{Broadcast, PingOutcome, Registry, SavedPeer};
use crate::time::Timestamp;
use crate::wire::PeerId;

/// The score of `replica` for `peer`: the highest score owns the peer.
/// FNV-1a over both, then a 64-bit finaliser, so that it is the same in
/// every build and on every machine.
pub fn score(replica: &str, peer: PeerId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in replica.bytes().chain([0xff]).chain(*peer.0.as_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's weak low bits.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The replica of `replicas` that owns `peer`, if there is any replica.
pub fn owner<'a>(peer: PeerId, replicas: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    replicas
        .into_iter()
        .max_by_key(|replica| (score(replica, peer), *replica))
}

/// The live replicas as one replica sees them.
#[derive(Clone, Debug)]
pub struct Replicas {
    me: String,
    live: BTreeSet<String>,
}

impl Replicas {
    /// Replica `me`, alone until the store says more.
    pub fn new(me: impl Into<String>) -> Self {
        let me = me.into();
        Self {
            live: BTreeSet::from([me.clone()]),
            me,
        }
    }

    /// This replica's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The live replicas (this one included).
    pub fn live(&self) -> &BTreeSet<String> {
        &self.live
    }

    /// Whether this replica pushes to `peer`.
    pub fn owns(&self, peer: PeerId) -> bool {
        owner(peer, self.live.iter().map(String::as_str)) == Some(self.me.as_str())
    }

    /// The store's set of live replicas changed to `live`: returns those of
    /// `peers` that this replica owns now and did not before (taken over
    /// from a replica that died or left): they must get the whole list.
    /// Peers that move to a new replica are not this one's concern: the new
    /// one pushes the whole list to them.
    pub fn handle_live(
        &mut self,
        live: impl IntoIterator<Item = String>,
        peers: impl IntoIterator<Item = PeerId>,
    ) -> Vec<PeerId> {
        let mut next: BTreeSet<String> = live.into_iter().collect();
        next.insert(self.me.clone());
        if next == self.live {
            return Vec::new();
        }
        let before = std::mem::replace(&mut self.live, next);
        peers
            .into_iter()
            .filter(|&peer| {
                self.owns(peer)
                    && owner(peer, before.iter().map(String::as_str)) != Some(self.me.as_str())
            })
            .collect()
    }
}

/// A lease of the shared store (etcd's lease id): each registration holds
/// one, whose TTL is the peer timeout; keeping it alive is a ping.
pub type Lease = i64;

/// What a replica asks of the shared store besides a call's own steps;
/// drained with [`Replica::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAction {
    /// Keep `Lease` alive (one message on the keep-alive stream, no write).
    KeepAlive(Lease),
}

/// The next step of a ping at a replica ([`Replica::ping`]): the shell does
/// what it says and hands the store's answer back, until the ping is
/// [`PingStep::Counted`] or [`PingStep::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a ping is answered only once its steps are done"]
pub enum PingStep {
    /// Answer 200: the ping counts (its keep-alive is queued, its time noted).
    Counted,
    /// Answer 404: no registration holds the id (the peer registers again).
    Unknown,
    /// Write `saved` (a new schema hash) under `lease`, only while the
    /// record still holds that lease (an evicted peer stays gone), then
    /// hand the result to [`Replica::handle_ping_written`].
    Write {
        /// The peer as it is to be stored.
        saved: SavedPeer,
        /// Its lease.
        lease: Lease,
    },
    /// The mirror does not hold the id yet (registered a moment ago at
    /// another replica): read `peers/{id}` from the store and hand it to
    /// [`Replica::handle_ping_fetched`] before the peer is told 404.
    Fetch(PeerId),
}

/// The next step of a leave at a replica ([`Replica::leave`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a leave is answered only once its steps are done"]
pub enum LeaveStep {
    /// Delete `peers/{id}` and write `left/{id}` in one transaction (the
    /// marker that tells every replica a leave from an eviction), then
    /// revoke the lease: answer 204 if the record was there, else 404.
    Remove {
        /// The registration's lease.
        lease: Lease,
    },
    /// Read `peers/{id}` from the store and hand its lease to
    /// [`Replica::handle_leave_fetched`].
    Fetch(PeerId),
    /// Answer 404.
    Unknown,
}

/// One replica's part of the shared registry, beside its mirror of the list
/// (a [`Registry::mirror`]): each peer's lease, the live replicas and who
/// pushes to whom, when the cluster last heard a peer, the pings this
/// replica answered and has not reported yet, and self-preservation's
/// keep-alives. The store's answers come in as `handle_*` calls and its
/// writes go out as steps and [`StoreAction`]s; it never reads a clock.
///
/// Drain [`Replica::poll_action`] after every call.
#[derive(Clone, Debug)]
pub struct Replica {
    replicas: Replicas,
    leases: BTreeMap<PeerId, Lease>,
    /// Pings answered since the last report: the latest time of each peer.
    contacts: BTreeMap<PeerId, Timestamp>,
    /// When this replica last answered a ping.
    heard: Timestamp,
    /// `heard` as last reported.
    reported: Timestamp,
    /// When any replica last heard a peer, as far as this one knows.
    cluster_heard: Timestamp,
    /// The last keep-alive of this replica's share while holding.
    preserved: Option<Timestamp>,
    peer_timeout: Duration,
    actions: VecDeque<StoreAction>,
}

impl Replica {
    /// Replica `me` of a network whose peers time out after `peer_timeout`.
    pub fn new(me: impl Into<String>, peer_timeout: Duration) -> Self {
        Self {
            replicas: Replicas::new(me),
            leases: BTreeMap::new(),
            contacts: BTreeMap::new(),
            heard: Timestamp(0),
            reported: Timestamp(0),
            cluster_heard: Timestamp(0),
            preserved: None,
            peer_timeout,
            actions: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// The live replicas as this one sees them, and who owns which peer.
    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// Whether this replica pushes to `peer`.
    pub fn owns(&self, peer: PeerId) -> bool {
        self.replicas.owns(peer)
    }

    /// The lease of `peer`, as the store's changes told it.
    pub fn lease(&self, peer: PeerId) -> Option<Lease> {
        self.leases.get(&peer).copied()
    }

    /// When any replica last heard a peer, as far as this one knows: what
    /// self-preservation goes by ([`Registry::note_heard`]).
    pub fn cluster_heard(&self) -> Timestamp {
        self.cluster_heard
    }

    /// Of a round of broadcasts, those this replica sends: to the peers it owns.
    pub fn own_share(&self, round: Vec<Broadcast>) -> Vec<Broadcast> {
        round.into_iter().filter(|b| self.owns(b.to)).collect()
    }

    // ---- the calls ----

    /// A ping of `id` with `schema_hash`, its signature checked, at `now`.
    /// A ping that changes nothing is counted at once: a keep-alive of its
    /// lease and its time in the mirror, no write. A new schema hash is
    /// written first; an id the mirror or this replica does not know is
    /// read from the store first.
    pub fn ping(
        &mut self,
        mirror: &mut Registry,
        id: PeerId,
        schema_hash: &str,
        now: Timestamp,
    ) -> PingStep {
        let lease = self.lease(id);
        match (mirror.ping_outcome(id, schema_hash), lease) {
            (Ok(PingOutcome::KeepAlive), Some(lease)) => self.counted(mirror, id, lease, now),
            (Ok(PingOutcome::Write(saved)), Some(lease)) => PingStep::Write { saved, lease },
            _ => PingStep::Fetch(id),
        }
    }

    /// The store's record of `id` and its lease (`None`: not there), read
    /// for [`PingStep::Fetch`].
    pub fn handle_ping_fetched(
        &mut self,
        mirror: &mut Registry,
        id: PeerId,
        fetched: Option<(SavedPeer, Lease)>,
        schema_hash: &str,
        now: Timestamp,
    ) -> PingStep {
        let Some((mut saved, lease)) = fetched else {
            return PingStep::Unknown;
        };
        if *saved.peer.schema_hash != *schema_hash {
            saved.peer.schema_hash = schema_hash.into();
            return PingStep::Write { saved, lease };
        }
        self.counted(mirror, id, lease, now)
    }

    /// The result of a [`PingStep::Write`]: `false` when the record no
    /// longer held that lease (evicted meanwhile): 404.
    pub fn handle_ping_written(
        &mut self,
        mirror: &mut Registry,
        id: PeerId,
        lease: Lease,
        written: bool,
        now: Timestamp,
    ) -> PingStep {
        if written {
            self.counted(mirror, id, lease, now)
        } else {
            PingStep::Unknown
        }
    }

    /// A leave of `id`, its signature checked.
    pub fn leave(&mut self, id: PeerId) -> LeaveStep {
        match self.lease(id) {
            Some(lease) => LeaveStep::Remove { lease },
            None => LeaveStep::Fetch(id),
        }
    }

    /// The lease of the store's record of `id` (`None`: not there), read
    /// for [`LeaveStep::Fetch`].
    pub fn handle_leave_fetched(&mut self, lease: Option<Lease>) -> LeaveStep {
        match lease {
            Some(lease) => LeaveStep::Remove { lease },
            None => LeaveStep::Unknown,
        }
    }

    fn counted(
        &mut self,
        mirror: &mut Registry,
        id: PeerId,
        lease: Lease,
        now: Timestamp,
    ) -> PingStep {
        self.actions.push_back(StoreAction::KeepAlive(lease));
        mirror.note_contact(id, now);
        let at = self.contacts.entry(id).or_insert(now);
        *at = (*at).max(now);
        self.heard = self.heard.max(now);
        self.cluster_heard = self.cluster_heard.max(now);
        mirror.note_heard(self.cluster_heard);
        PingStep::Counted
    }

    // ---- the store's changes ----

    /// `peers/{id}` was written with `lease`.
    pub fn handle_put(&mut self, id: PeerId, lease: Lease) {
        self.leases.insert(id, lease);
    }

    /// `peers/{id}` was deleted (a leave or an eviction).
    pub fn handle_removed(&mut self, id: PeerId) {
        self.leases.remove(&id);
        self.contacts.remove(&id);
    }

    /// The whole prefix was read: these leases are all there is.
    pub fn handle_loaded(&mut self, leases: impl IntoIterator<Item = (PeerId, Lease)>) {
        self.leases = leases.into_iter().collect();
    }

    /// The store's set of live replicas (their keys) is `live`: the peers
    /// of `mirror` this replica takes over get the whole list in the next
    /// round (see [`Replicas::handle_live`]); returns how many.
    pub fn handle_live(
        &mut self,
        live: impl IntoIterator<Item = String>,
        mirror: &mut Registry,
        now: Timestamp,
    ) -> usize {
        let peers: Vec<PeerId> = mirror.peers().map(|p| p.id).collect();
        let taken = self.replicas.handle_live(live, peers);
        let count = taken.len();
        if count > 0 {
            mirror.push_whole_list(taken, now);
        }
        count
    }

    /// Another replica's key said it heard a peer at `heard`, and answered
    /// these pings: the mirror's `last_contact_at` advances, and the
    /// cluster is not deaf.
    pub fn handle_report(&mut self, report: Report, mirror: &mut Registry) {
        if let Some(heard) = report.heard {
            self.cluster_heard = self.cluster_heard.max(heard);
            mirror.note_heard(self.cluster_heard);
        }
        for (id, at) in report.contacts {
            mirror.note_contact(id, at);
        }
    }

    /// This replica's report to write to its own key, if it has anything
    /// new: when it last heard a peer, and up to `max` of the pings it
    /// answered since the last report (the rest wait for the next). One
    /// write per report, however many pings: call it every third of the
    /// replica's TTL.
    pub fn take_report(&mut self, max: usize) -> Option<Report> {
        if self.heard <= self.reported && self.contacts.is_empty() {
            return None;
        }
        self.reported = self.heard;
        let ids: Vec<PeerId> = self.contacts.keys().take(max).copied().collect();
        let contacts = ids
            .into_iter()
            .filter_map(|id| Some((id, self.contacts.remove(&id)?)))
            .collect();
        Some(Report {
            heard: Some(self.heard),
            contacts,
        })
    }

    // ---- time ----

    /// Self-preservation across replicas: while `mirror` holds evictions
    /// (no replica heard any peer for half a peer timeout), keep the leases
    /// of the peers this replica pushes to alive, every third of a peer
    /// timeout, so that the store evicts no one for a cut on the replicas'
    /// side; after the mirror's hold limit, let them run out. Returns how
    /// many keep-alives it queued (0: none due).
    pub fn handle_timeout(&mut self, mirror: &mut Registry, now: Timestamp) -> usize {
        mirror.note_heard(self.cluster_heard);
        if !mirror.is_holding(now) {
            self.preserved = None;
            return 0;
        }
        if self
            .preserved
            .is_some_and(|at| now < at + self.peer_timeout / 3)
        {
            return 0;
        }
        self.preserved = Some(now);
        let owned: Vec<Lease> = self
            .leases
            .iter()
            .filter(|(id, _)| self.replicas.owns(**id))
            .map(|(_, &lease)| lease)
            .collect();
        let count = owned.len();
        self.actions
            .extend(owned.into_iter().map(StoreAction::KeepAlive));
        count
    }

    /// When [`Replica::handle_timeout`] must next be called: the next
    /// keep-alive of this replica's share while holding.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.preserved.map(|at| at + self.peer_timeout / 3)
    }

    /// The next action for the store. New ones appear after a counted ping
    /// and after [`Replica::handle_timeout`].
    #[must_use]
    pub fn poll_action(&mut self) -> Option<StoreAction> {
        self.actions.pop_front()
    }
}

/// What a replica writes to its own key in the store: when it last heard a
/// peer, and the pings it answered since its previous report.
///
/// As text: the first line is `heard` in ms since the epoch (empty: never),
/// then one line `{id} {ms}` per ping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// When the replica last heard a peer.
    pub heard: Option<Timestamp>,
    /// The latest ping of each peer since the previous report.
    pub contacts: Vec<(PeerId, Timestamp)>,
}

impl Report {
    /// The value to store.
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(16 + self.contacts.len() * 52);
        if let Some(heard) = self.heard {
            let _ = write!(text, "{}", heard.as_millis());
        }
        for (id, at) in &self.contacts {
            let _ = write!(text, "\n{id} {}", at.as_millis());
        }
        text
    }

    /// A stored value, as any replica (or anyone who can write the store)
    /// wrote it: unreadable lines are skipped.
    pub fn decode(value: &[u8]) -> Self {
        let text = String::from_utf8_lossy(value);
        let mut lines = text.lines();
        let heard = lines
            .next()
            .and_then(|line| line.trim().parse().ok())
            .map(Timestamp);
        let contacts = lines
            .filter_map(|line| {
                let (id, at) = line.split_once(' ')?;
                Some((id.parse().ok()?, Timestamp(at.trim().parse().ok()?)))
            })
            .collect();
        Self { heard, contacts }
    }
}
