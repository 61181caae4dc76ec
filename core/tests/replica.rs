//! Replicas sharing one list through a store: the mirror of each replica is
//! fed the store's changes in order (as etcd's watch does), with the store's
//! revisions as versions; pushes are split by rendezvous hashing. Driven
//! with events and virtual instants.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_core::registry::{PingOutcome, Registry, RegistryConfig, SavedPeer};
use plexus_core::replica::{LeaveStep, PingStep, Replica, Replicas, Report, StoreAction, owner};
use plexus_core::wire::{ChangeKind, Contextionary, PeerId, PeerUpdate};
use plexus_core::{PeerName, PeerUri, Timestamp};

const T0: Timestamp = Timestamp(1_000_000);

fn config(seed: u64) -> RegistryConfig {
    let contextionary = Contextionary {
        url: "http://contextionary.example/c.bin".into(),
        hash: "sha256:abc".parse().expect("hash"),
    };
    let mut config = RegistryConfig::new(contextionary, seed);
    config.peer_timeout = Duration::from_secs(3);
    config.broadcast_delay = Duration::from_millis(10);
    config
}

fn update(name: &str) -> PeerUpdate {
    PeerUpdate {
        peer_name: PeerName::new(name).expect("name"),
        peer_uri: PeerUri::new(format!("http://{}.local:8080", name.to_lowercase())).expect("uri"),
    }
}

/// A store as etcd is to the replicas: an ordered log of writes and removals
/// with increasing revisions (other keys take revisions too, so gaps occur).
#[derive(Default)]
struct Store {
    revision: u64,
    log: Vec<(u64, Write)>,
}

#[derive(Clone)]
enum Write {
    Put(SavedPeer, bool),
    Remove(PeerId, ChangeKind),
}

impl Store {
    fn write(&mut self, write: Write) {
        // Another key (a replica's lease, a leave marker) took a revision too.
        self.revision += 2;
        self.log.push((self.revision, write));
    }

    /// Feeds the log from `from` on to `mirror`; returns where it stopped.
    fn feed(&self, mirror: &mut Registry, from: usize, now: Timestamp) -> usize {
        for (revision, write) in &self.log[from..] {
            match write.clone() {
                Write::Put(saved, registered) => {
                    mirror.apply_upsert(saved, registered, *revision, now)
                }
                Write::Remove(id, kind) => mirror.apply_removal(id, kind, *revision, now),
            }
        }
        self.log.len()
    }
}

/// Registers `name` through `replica` and writes the outcome to `store` as
/// the shell does: the replaced registration first, then the new one.
fn register(replica: &mut Registry, store: &mut Store, name: &str, now: Timestamp) -> PeerId {
    let probe = replica.begin_register(update(name)).with_deltas(true);
    let admission = replica.admit(probe, Ok(()), now).expect("admitted");
    if let Some(old) = admission.replaces {
        store.write(Write::Remove(old, ChangeKind::Left));
    }
    let id = admission.peer.peer.id;
    store.write(Write::Put(admission.peer, true));
    id
}

fn listing(registry: &Registry) -> Vec<(String, PeerId)> {
    registry
        .peers()
        .map(|p| (p.peer_name.to_string(), p.id))
        .collect()
}

fn events(registry: &mut Registry) -> Vec<(ChangeKind, String, u64)> {
    std::iter::from_fn(|| registry.poll_event())
        .map(|e| (e.kind, e.peer.peer_name.to_string(), e.version))
        .collect()
}

#[test]
fn two_replicas_fed_the_same_changes_list_the_same_peers_ids_and_versions() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let mut b = Registry::mirror(config(2), T0);
    register(&mut a, &mut store, "Alpha", T0);
    register(&mut b, &mut store, "Beta", T0);
    // Nothing is listed until the store reports the write.
    assert!(a.is_empty() && b.is_empty());
    store.feed(&mut a, 0, T0);
    store.feed(&mut b, 0, T0);
    assert_eq!(listing(&a), listing(&b));
    assert_eq!(listing(&a).len(), 2);
    assert_eq!(a.version(), store.revision);
    assert_eq!(b.version(), store.revision);
    let ea = events(&mut a);
    assert_eq!(ea, events(&mut b));
    assert_eq!(
        ea.iter().map(|e| e.2).collect::<Vec<_>>(),
        vec![2, 4],
        "versions are the store's revisions, gaps included"
    );
}

#[test]
fn a_name_registered_again_at_another_replica_replaces_the_old_id_everywhere() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let mut b = Registry::mirror(config(2), T0);
    let first = register(&mut a, &mut store, "Alpha", T0);
    let mut fed = store.feed(&mut a, 0, T0);
    store.feed(&mut b, 0, T0);
    let second = register(&mut b, &mut store, "Alpha", T0);
    assert_ne!(first, second);
    store.feed(&mut a, fed, T0);
    fed = store.feed(&mut b, fed, T0);
    assert_eq!(listing(&a), vec![("Alpha".to_string(), second)]);
    assert_eq!(listing(&a), listing(&b));
    let kinds: Vec<ChangeKind> = events(&mut a).into_iter().map(|e| e.0).collect();
    assert_eq!(
        kinds,
        vec![ChangeKind::Joined, ChangeKind::Left, ChangeKind::Joined]
    );
    assert_eq!(fed, store.log.len());
}

#[test]
fn a_mirror_never_evicts_by_itself_the_store_does() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let id = register(&mut a, &mut store, "Alpha", T0);
    store.feed(&mut a, 0, T0);
    let _ = events(&mut a);
    let late = T0 + Duration::from_secs(3600);
    a.handle_timeout(late);
    assert_eq!(a.len(), 1, "a silent peer stays until its lease runs out");
    // The round of the join is all that is left to do; then nothing.
    while a.poll_transmit().is_some() {}
    a.handle_round_sent(a.version(), late);
    assert_eq!(a.poll_timeout(), None);
    store.write(Write::Remove(id, ChangeKind::Evicted));
    store.feed(&mut a, 1, late);
    assert!(a.is_empty());
    assert_eq!(
        events(&mut a),
        vec![(ChangeKind::Evicted, "Alpha".to_string(), store.revision)]
    );
}

#[test]
fn a_ping_that_changes_nothing_only_keeps_the_lease_alive() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let id = register(&mut a, &mut store, "Alpha", T0);
    store.feed(&mut a, 0, T0);
    let _ = events(&mut a);
    assert_eq!(a.ping_outcome(id, ""), Ok(PingOutcome::KeepAlive));
    let Ok(PingOutcome::Write(saved)) = a.ping_outcome(id, "sha256:new") else {
        panic!("a new schema hash is written");
    };
    assert!(saved.deltas, "the write keeps the peer's choice of deltas");
    assert_eq!(&*saved.peer.schema_hash, "sha256:new");
    // Asking changes nothing: the mirror still has the old hash.
    assert_eq!(&*a.peer(id).expect("listed").schema_hash, "");
    store.write(Write::Put(saved.clone(), false));
    store.feed(&mut a, 1, T0);
    assert_eq!(
        events(&mut a),
        vec![(ChangeKind::Updated, "Alpha".to_string(), store.revision)]
    );
    // The same write again (a second replica's ping raced) is no change.
    store.write(Write::Put(saved, false));
    store.feed(&mut a, 2, T0);
    assert!(events(&mut a).is_empty());
    assert!(a.ping_outcome(PeerId(uuid::Uuid::nil()), "").is_err());
}

#[test]
fn a_joined_peer_gets_the_whole_list_and_the_others_a_delta() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let first = register(&mut a, &mut store, "Alpha", T0);
    let fed = store.feed(&mut a, 0, T0);
    a.handle_timeout(T0 + Duration::from_millis(10));
    let round: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(round.len(), 1);
    a.handle_round_sent(round[0].version, T0);
    let second = register(&mut a, &mut store, "Beta", T0);
    store.feed(&mut a, fed, T0);
    a.handle_timeout(T0 + Duration::from_millis(30));
    let round: BTreeMap<PeerId, bool> = std::iter::from_fn(|| a.poll_transmit())
        .map(|b| (b.to, b.delta.is_some()))
        .collect();
    assert_eq!(round, BTreeMap::from([(first, true), (second, false)]));
}

#[test]
fn peers_taken_over_get_the_whole_list_in_the_next_round() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let ids: Vec<PeerId> = ["A1", "B2", "C3"]
        .iter()
        .map(|n| register(&mut a, &mut store, n, T0))
        .collect();
    store.feed(&mut a, 0, T0);
    a.handle_timeout(T0 + Duration::from_millis(10));
    let version = a.poll_transmit().expect("a round").version;
    while a.poll_transmit().is_some() {}
    a.handle_round_sent(version, T0);
    a.push_whole_list([ids[1]], T0 + Duration::from_secs(1));
    a.handle_timeout(T0 + Duration::from_secs(2));
    let round: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    let to_taken = round.iter().find(|b| b.to == ids[1]).expect("pushed");
    assert!(to_taken.delta.is_none(), "the whole list, not a delta");
    assert_eq!(to_taken.list.len(), 3);
    assert_eq!(
        to_taken.version, version,
        "no change: the same version again"
    );
}

fn ids(n: u128) -> Vec<PeerId> {
    (0..n)
        .map(|i| PeerId(uuid::Uuid::from_u128(i * 7919 + 13)))
        .collect()
}

#[test]
fn rendezvous_splits_peers_evenly_and_a_dead_replica_moves_only_its_own() {
    let peers = ids(3000);
    let three = ["r-a", "r-b", "r-c"];
    let mut counts = BTreeMap::new();
    for &peer in &peers {
        *counts
            .entry(owner(peer, three).expect("owner"))
            .or_insert(0) += 1;
    }
    for (replica, count) in &counts {
        assert!(
            (800..1200).contains(count),
            "{replica} owns {count} of 3000"
        );
    }
    for &peer in &peers {
        let before = owner(peer, three).expect("owner");
        let after = owner(peer, ["r-a", "r-c"]).expect("owner");
        if before != "r-b" {
            assert_eq!(before, after, "a peer of a live replica stays with it");
        }
    }
}

#[test]
fn when_a_replica_dies_the_survivors_take_over_exactly_its_peers() {
    let peers = ids(500);
    let all = || ["r-a", "r-b", "r-c"].map(String::from);
    let mut a = Replicas::new("r-a");
    let mut c = Replicas::new("r-c");
    // Alone, a replica owns every peer; it learns of the others.
    assert!(peers.iter().all(|&p| a.owns(p)));
    assert_eq!(a.handle_live(all(), peers.clone()), Vec::<PeerId>::new());
    assert!(c.handle_live(all(), peers.clone()).is_empty());
    let of_b: Vec<PeerId> = peers
        .iter()
        .copied()
        .filter(|&p| owner(p, ["r-a", "r-b", "r-c"]) == Some("r-b"))
        .collect();
    assert!(!of_b.is_empty());
    let survivors = || ["r-a", "r-c"].map(String::from);
    let mut taken = a.handle_live(survivors(), peers.clone());
    taken.extend(c.handle_live(survivors(), peers.clone()));
    taken.sort();
    assert_eq!(taken, of_b, "every peer of the dead one, once");
    // Every peer has exactly one pusher among the survivors.
    assert!(peers.iter().all(|&p| a.owns(p) != c.owns(p)));
    // The same set again takes nothing over.
    assert!(a.handle_live(survivors(), peers.clone()).is_empty());
    // A replica that the store lost sight of still counts itself live.
    assert!(a.live().contains("r-a"));
    let _ = a.handle_live(["r-c".to_string()], peers.clone());
    assert!(a.live().contains("r-a") && a.me() == "r-a");
}

#[test]
fn a_replica_that_loads_the_list_at_start_pushes_nothing_for_it() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    for name in ["A1", "B2"] {
        register(&mut a, &mut store, name, T0);
    }
    store.feed(&mut a, 0, T0);
    let saved: Vec<SavedPeer> = a
        .peers()
        .map(|p| SavedPeer {
            peer: p.clone(),
            deltas: true,
        })
        .collect();
    let mut b = Registry::mirror_restore(config(2), saved, store.revision, T0);
    assert_eq!(listing(&a), listing(&b));
    assert_eq!(b.version(), store.revision);
    assert!(b.is_mirror());
    b.handle_timeout(T0 + Duration::from_secs(60));
    assert!(b.poll_transmit().is_none(), "no round for loaded peers");
    assert!(b.poll_event().is_none());
    assert_eq!(b.len(), 2, "and no eviction");
}

#[test]
fn a_mirror_holds_only_when_no_replica_has_heard_a_peer() {
    let mut store = Store::default();
    let mut a = Registry::mirror(config(1), T0);
    let mut b = Registry::mirror(config(2), T0);
    register(&mut a, &mut store, "Alpha", T0);
    store.feed(&mut a, 0, T0);
    store.feed(&mut b, 0, T0);
    let timeout = a.config().peer_timeout;
    // Every ping goes to B; A learns of them from B's word in the store.
    let mut now = T0;
    for _ in 0..10 {
        now = now + timeout / 4;
        b.note_heard(now);
        a.note_heard(now);
        assert!(
            !a.is_holding(now) && !b.is_holding(now),
            "the cluster hears its peers"
        );
    }
    // Then no replica hears anyone: past half a timeout both hold (they
    // keep their shares' leases alive) for at most the hold limit.
    let silent_from = now;
    let holding = silent_from + timeout / 2;
    assert!(!a.is_holding(holding - Duration::from_millis(1)));
    assert!(a.is_holding(holding) && b.is_holding(holding));
    let limit = a.config().hold_limit;
    assert!(a.is_holding(holding + limit - Duration::from_millis(1)));
    assert!(
        !a.is_holding(holding + limit),
        "a dead network is let go after the limit"
    );
    // A word that some replica heard a peer ends the hold.
    a.note_heard(holding + Duration::from_secs(1));
    assert!(!a.is_holding(holding + Duration::from_secs(1)));
}

#[test]
fn pings_answered_at_any_replica_advance_last_contact_in_every_mirror_without_a_write() {
    let mut store = Store::default();
    let (mut a, mut b) = (
        Registry::mirror(config(1), T0),
        Registry::mirror(config(2), T0),
    );
    let id = register(&mut a, &mut store, "PeerA", T0);
    let fed = store.feed(&mut a, 0, T0);
    store.feed(&mut b, 0, T0);
    let _ = (events(&mut a), events(&mut b));
    // The join's own round goes out first.
    a.handle_timeout(T0 + Duration::from_millis(100));
    while a.poll_transmit().is_some() {}
    a.handle_round_sent(a.version(), T0 + Duration::from_millis(100));
    let registered_at = a.peer(id).expect("listed").last_contact_at;
    let (version, log) = (a.version(), store.log.len());
    // A ping at A: A's mirror notes it at once; B learns it from A's batch.
    let t1 = T0 + Duration::from_secs(1);
    a.note_contact(id, t1);
    assert_eq!(a.peer(id).expect("listed").last_contact_at, t1);
    assert_eq!(b.peer(id).expect("listed").last_contact_at, registered_at);
    b.note_contact(id, t1);
    assert_eq!(b.peer(id).expect("listed").last_contact_at, t1);
    // A late batch never moves it back; an unknown id changes nothing.
    b.note_contact(id, T0);
    assert_eq!(b.peer(id).expect("listed").last_contact_at, t1);
    b.note_contact(PeerId(uuid::Uuid::from_u128(99)), t1);
    // No version, no change, no push, no write to the store.
    assert_eq!((a.version(), b.version()), (version, version));
    assert!(events(&mut a).is_empty() && events(&mut b).is_empty());
    a.handle_timeout(t1 + Duration::from_secs(1));
    assert!(a.poll_transmit().is_none());
    assert_eq!((store.log.len(), fed), (log, log));
}

// ---- the replica machine: each decision of a replica, in virtual time ----

/// A mirror holding `names` as the store wrote them, and a replica that saw
/// each write with lease 100 + its index.
fn replica_of(names: &[&str]) -> (Registry, Replica, Vec<PeerId>) {
    let mut store = Store::default();
    let mut mirror = Registry::mirror(config(1), T0);
    let ids: Vec<PeerId> = names
        .iter()
        .map(|name| register(&mut mirror, &mut store, name, T0))
        .collect();
    store.feed(&mut mirror, 0, T0);
    let _ = events(&mut mirror);
    let mut replica = Replica::new("r-a", Duration::from_secs(3));
    for (i, id) in ids.iter().enumerate() {
        replica.handle_put(*id, 100 + i as i64);
    }
    (mirror, replica, ids)
}

fn actions(replica: &mut Replica) -> Vec<StoreAction> {
    std::iter::from_fn(|| replica.poll_action()).collect()
}

#[test]
fn a_ping_that_changes_nothing_is_one_keep_alive_and_its_time_no_write() {
    let (mut mirror, mut replica, ids) = replica_of(&["Alpha"]);
    let t = T0 + Duration::from_secs(1);
    assert_eq!(replica.ping(&mut mirror, ids[0], "", t), PingStep::Counted);
    assert_eq!(actions(&mut replica), [StoreAction::KeepAlive(100)]);
    assert_eq!(mirror.peer(ids[0]).expect("listed").last_contact_at, t);
    assert!(events(&mut mirror).is_empty(), "no change of the list");
}

#[test]
fn a_new_schema_hash_is_written_under_the_lease_before_the_ping_counts() {
    let (mut mirror, mut replica, ids) = replica_of(&["Alpha"]);
    let step = replica.ping(&mut mirror, ids[0], "sha256:new", T0);
    let PingStep::Write { saved, lease } = step else {
        panic!("{step:?}");
    };
    assert_eq!((lease, &*saved.peer.schema_hash), (100, "sha256:new"));
    assert!(actions(&mut replica).is_empty(), "nothing before the write");
    assert_eq!(
        replica.handle_ping_written(&mut mirror, ids[0], lease, true, T0),
        PingStep::Counted
    );
    assert_eq!(actions(&mut replica), [StoreAction::KeepAlive(100)]);
    // The record lost its lease meanwhile (evicted): the peer registers again.
    assert_eq!(
        replica.handle_ping_written(&mut mirror, ids[0], lease, false, T0),
        PingStep::Unknown
    );
    assert!(actions(&mut replica).is_empty());
}

#[test]
fn an_id_the_mirror_does_not_know_is_read_from_the_store_before_a_404() {
    let (mut mirror, mut replica, _) = replica_of(&[]);
    let id = PeerId(uuid::Uuid::from_u128(7));
    assert_eq!(replica.ping(&mut mirror, id, "h", T0), PingStep::Fetch(id));
    assert_eq!(
        replica.handle_ping_fetched(&mut mirror, id, None, "h", T0),
        PingStep::Unknown
    );
    // Registered a moment ago at another replica: it counts, with its lease.
    let saved = SavedPeer {
        peer: plexus_core::wire::Peer {
            id,
            peer_name: PeerName::new("Fresh").expect("name"),
            peer_uri: PeerUri::new("http://fresh.local:1").expect("uri"),
            last_contact_at: T0,
            schema_hash: "h".into(),
        },
        deltas: true,
    };
    assert_eq!(
        replica.handle_ping_fetched(&mut mirror, id, Some((saved.clone(), 9)), "h", T0),
        PingStep::Counted
    );
    assert_eq!(actions(&mut replica), [StoreAction::KeepAlive(9)]);
    // With another hash it is written first.
    let step = replica.handle_ping_fetched(&mut mirror, id, Some((saved, 9)), "h2", T0);
    assert!(matches!(step, PingStep::Write { lease: 9, .. }), "{step:?}");
}

#[test]
fn a_leave_removes_the_record_with_its_marker_and_reads_an_unknown_lease_first() {
    let (_, mut replica, ids) = replica_of(&["Alpha"]);
    assert_eq!(replica.leave(ids[0]), LeaveStep::Remove { lease: 100 });
    let other = PeerId(uuid::Uuid::from_u128(8));
    assert_eq!(replica.leave(other), LeaveStep::Fetch(other));
    assert_eq!(replica.handle_leave_fetched(None), LeaveStep::Unknown);
    assert_eq!(
        replica.handle_leave_fetched(Some(5)),
        LeaveStep::Remove { lease: 5 }
    );
    // Once the store reports the removal, the lease is forgotten.
    replica.handle_removed(ids[0]);
    assert_eq!(replica.leave(ids[0]), LeaveStep::Fetch(ids[0]));
}

#[test]
fn pings_are_reported_in_batches_and_advance_the_other_mirrors() {
    let (mut mirror_a, mut a, ids) = replica_of(&["Alpha", "Beta", "Gamma"]);
    let saved: Vec<SavedPeer> = mirror_a
        .peers()
        .map(|p| SavedPeer {
            peer: p.clone(),
            deltas: true,
        })
        .collect();
    let mut mirror_b = Registry::mirror_restore(config(2), saved, mirror_a.version(), T0);
    let mut b = Replica::new("r-b", Duration::from_secs(3));
    assert_eq!(a.take_report(10), None, "nothing heard: nothing written");
    let t1 = T0 + Duration::from_secs(1);
    for (i, id) in ids.iter().enumerate() {
        let _ = a.ping(&mut mirror_a, *id, "", t1 + Duration::from_millis(i as u64));
    }
    // Many pings, one write each time, bounded in size.
    let first = a.take_report(2).expect("a report");
    assert_eq!(first.contacts.len(), 2);
    let second = a.take_report(2).expect("the rest");
    assert_eq!(second.contacts.len(), 1);
    assert_eq!(a.take_report(2), None, "nothing new");
    for report in [first, second] {
        let decoded = Report::decode(report.encode().as_bytes());
        assert_eq!(decoded, report, "the stored text reads back");
        b.handle_report(decoded, &mut mirror_b);
    }
    for (i, id) in ids.iter().enumerate() {
        let at = t1 + Duration::from_millis(i as u64);
        assert_eq!(mirror_b.peer(*id).expect("listed").last_contact_at, at);
    }
    assert_eq!(b.cluster_heard(), t1 + Duration::from_millis(2));
    // A hostile or garbled value changes nothing it cannot read.
    let garbled = Report::decode(b"not a number\nxyz 12\n");
    assert_eq!(garbled, Report::default());
}

#[test]
fn while_the_cluster_hears_no_one_a_replica_keeps_its_own_share_alive_up_to_the_hold_limit() {
    let names: Vec<String> = (0..40).map(|i| format!("P{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (mut mirror, mut replica, ids) = replica_of(&names);
    let _ = replica.handle_live(["r-a".to_string(), "r-b".to_string()], &mut mirror, T0);
    let owned = ids.iter().filter(|&&id| replica.owns(id)).count();
    assert!(0 < owned && owned < ids.len(), "{owned}");
    let timeout = Duration::from_secs(3);
    // The cluster hears peers: nothing to keep alive.
    let _ = replica.ping(&mut mirror, ids[0], "", T0);
    let _ = actions(&mut replica);
    assert_eq!(replica.handle_timeout(&mut mirror, T0 + timeout / 4), 0);
    // Silence from T0 on: from half a timeout, the own share, every third.
    let hold = T0 + timeout / 2;
    assert_eq!(
        replica.handle_timeout(&mut mirror, hold - Duration::from_millis(1)),
        0
    );
    assert_eq!(replica.handle_timeout(&mut mirror, hold), owned);
    let kept = actions(&mut replica);
    assert_eq!(kept.len(), owned);
    assert!(kept.iter().all(|StoreAction::KeepAlive(lease)| {
        let i = (lease - 100) as usize;
        replica.owns(ids[i])
    }));
    assert_eq!(
        replica.handle_timeout(&mut mirror, hold + Duration::from_millis(500)),
        0
    );
    assert_eq!(replica.poll_timeout(), Some(hold + timeout / 3));
    assert_eq!(
        replica.handle_timeout(&mut mirror, hold + timeout / 3),
        owned
    );
    // Past the hold limit, the leases run out: a dead network is emptied.
    let limit = mirror.config().hold_limit;
    assert_eq!(replica.handle_timeout(&mut mirror, hold + limit), 0);
    assert_eq!(replica.poll_timeout(), None);
}

#[test]
fn a_replica_sends_only_its_share_of_a_round_and_takes_over_a_dead_ones_peers() {
    let names: Vec<String> = (0..40).map(|i| format!("P{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (mut mirror, mut replica, ids) = replica_of(&names);
    let live = || ["r-a", "r-b"].map(String::from);
    assert_eq!(replica.handle_live(live(), &mut mirror, T0), 0);
    // A change: the round has every peer, this replica sends its share.
    let _ = replica.ping(&mut mirror, ids[0], "sha256:x", T0);
    let mut saved = SavedPeer {
        peer: mirror.peer(ids[0]).expect("listed").clone(),
        deltas: true,
    };
    saved.peer.schema_hash = "sha256:x".into();
    mirror.apply_upsert(saved, false, 10_000, T0);
    mirror.handle_timeout(T0 + Duration::from_secs(1));
    let round: Vec<_> = std::iter::from_fn(|| mirror.poll_transmit()).collect();
    assert_eq!(round.len(), ids.len());
    let mine = replica.own_share(round);
    assert!(
        mine.iter()
            .all(|b| owner(b.to, ["r-a", "r-b"]) == Some("r-a"))
    );
    assert!(!mine.is_empty() && mine.len() < ids.len());
    // r-b dies: r-a takes over its peers, and they get the whole list.
    let t = T0 + Duration::from_secs(2);
    let taken = replica.handle_live(["r-a".to_string()], &mut mirror, t);
    assert_eq!(taken, ids.len() - mine.len());
    mirror.handle_round_sent(10_000, t);
    mirror.handle_timeout(t + Duration::from_secs(1));
    let next: Vec<_> = std::iter::from_fn(|| mirror.poll_transmit()).collect();
    let whole = next.iter().filter(|b| b.delta.is_none()).count();
    assert_eq!(whole, taken, "the taken-over peers get the whole list");
    assert_eq!(
        replica.own_share(next).len(),
        ids.len(),
        "and all are its own now"
    );
}
