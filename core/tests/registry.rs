//! The genesis registry, driven with events and virtual instants.

use std::time::Duration;

use plexus_core::registry::{Registry, RegistryConfig, SavedPeer};
use plexus_core::wire::{ChangeKind, Contextionary, PeerId, PeerUpdate};
use plexus_core::{PeerName, PeerUri, Timestamp};

const T0: Timestamp = Timestamp(1_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> RegistryConfig {
    let contextionary = Contextionary {
        url: "http://contextionary.example/c.bin".into(),
        hash: "sha256:abc".parse().expect("hash"),
    };
    let mut config = RegistryConfig::new(contextionary, 7);
    config.peer_timeout = Duration::from_secs(30);
    config.hold_limit = Duration::from_secs(30);
    config.broadcast_delay = ms(10);
    config
}

fn update(name: &str) -> PeerUpdate {
    PeerUpdate {
        peer_name: PeerName::new(name).expect("name"),
        peer_uri: PeerUri::new(format!("http://{}.local:8080", name.to_lowercase())).expect("uri"),
    }
}

fn join(registry: &mut Registry, name: &str, now: Timestamp) -> PeerId {
    let probe = registry.begin_register(update(name));
    registry
        .complete_register(probe, Ok(()), now)
        .expect("admitted")
        .peer
        .id
}

fn names(registry: &Registry) -> Vec<String> {
    registry.peers().map(|p| p.peer_name.to_string()).collect()
}

fn drain(
    registry: &mut Registry,
) -> (
    Vec<plexus_core::registry::Broadcast>,
    Vec<(ChangeKind, String)>,
) {
    let broadcasts: Vec<_> = std::iter::from_fn(|| registry.poll_transmit()).collect();
    // As a shell does once every broadcast of the round is sent.
    if let Some(b) = broadcasts.first() {
        registry.handle_round_sent(b.version, T0);
    }
    let events = std::iter::from_fn(|| registry.poll_event())
        .map(|e| (e.kind, e.peer.peer_name.to_string()))
        .collect();
    (broadcasts, events)
}

#[test]
fn registration_probes_first_and_admits_a_reachable_peer() {
    let mut registry = Registry::new(config(), T0);
    let probe = registry.begin_register(update("PeerA"));
    assert_eq!(probe.url, "http://peera.local:8080/p2p/ping");
    assert!(
        registry.is_empty(),
        "nothing is admitted before the probe answers"
    );
    let response = registry
        .complete_register(probe, Ok(()), T0)
        .expect("admitted");
    assert_eq!(response.peer.peer_name.as_str(), "PeerA");
    assert_eq!(response.peer.last_contact_at, T0);
    assert_eq!(response.contextionary, config().contextionary);
    assert_eq!(names(&registry), ["PeerA"]);
    assert_eq!(registry.version(), 1);
}

#[test]
fn unreachable_peer_is_refused_and_nothing_changes() {
    let mut registry = Registry::new(config(), T0);
    let probe = registry.begin_register(update("PeerA"));
    let err = registry
        .complete_register(probe, Err("connection refused".into()), T0)
        .expect_err("refused");
    assert!(err.to_string().contains("connection refused"));
    assert!(registry.is_empty());
    assert_eq!(registry.version(), 0);
    assert_eq!(registry.poll_timeout(), None);
    assert_eq!(drain(&mut registry).1, []);
}

#[test]
fn registering_a_name_again_replaces_it_with_a_new_id() {
    let mut registry = Registry::new(config(), T0);
    let old = join(&mut registry, "PeerA", T0);
    let new = join(&mut registry, "PeerA", T0 + ms(5));
    assert_ne!(old, new);
    assert_eq!(names(&registry), ["PeerA"]);
    assert!(
        registry.handle_ping(old, "h", T0 + ms(6)).is_err(),
        "old id answers 404"
    );
    registry
        .handle_ping(new, "h", T0 + ms(6))
        .expect("new id is known");
}

#[test]
fn ping_of_unknown_id_is_an_error_and_changes_nothing() {
    let mut registry = Registry::new(config(), T0);
    join(&mut registry, "PeerA", T0);
    let _ = drain(&mut registry);
    let version = registry.version();
    let stranger = PeerId(uuid::Uuid::nil());
    assert_eq!(
        registry.handle_ping(stranger, "h", T0).map_err(|e| e.0),
        Err(stranger)
    );
    assert_eq!(registry.version(), version);
}

#[test]
fn ping_updates_contact_and_a_changed_hash_is_a_change() {
    let mut registry = Registry::new(config(), T0);
    let a = join(&mut registry, "PeerA", T0);
    registry.handle_ping(a, "h1", T0 + ms(100)).expect("known");
    let peer = registry.peer(a).expect("listed");
    assert_eq!(
        (peer.last_contact_at, peer.schema_hash.as_str()),
        (T0 + ms(100), "h1")
    );
    assert_eq!(registry.version(), 2);
    registry.handle_ping(a, "h1", T0 + ms(200)).expect("known");
    assert_eq!(registry.version(), 2, "same hash: not a change of the list");
    let (_, events) = drain(&mut registry);
    assert_eq!(
        events,
        [
            (ChangeKind::Joined, "PeerA".into()),
            (ChangeKind::Updated, "PeerA".into())
        ]
    );
}

#[test]
fn eviction_happens_exactly_at_the_timeout_and_not_before() {
    let mut registry = Registry::new(config(), T0);
    join(&mut registry, "PeerA", T0);
    let b = join(&mut registry, "PeerB", T0);
    // B stays alive by pinging; A goes silent.
    let mut now = T0;
    while now < T0 + Duration::from_secs(25) {
        now = now + Duration::from_secs(5);
        registry.handle_timeout(now);
        registry.handle_ping(b, "", now).expect("B");
    }
    let deadline = T0 + Duration::from_secs(30);
    registry.handle_timeout(deadline - ms(1));
    assert_eq!(
        names(&registry),
        ["PeerA", "PeerB"],
        "not before the timeout"
    );
    assert_eq!(registry.poll_timeout(), Some(deadline));
    registry.handle_timeout(deadline);
    assert_eq!(names(&registry), ["PeerB"], "evicted at the timeout");
    let (_, events) = drain(&mut registry);
    assert!(events.contains(&(ChangeKind::Evicted, "PeerA".into())));
}

/// The eviction order follows the pings, whatever their order: the next
/// deadline is always the least recently heard peer's (after pings that
/// share an instant, a leave of the front, a peer pinged again and again).
#[test]
fn the_next_deadline_is_always_the_least_recently_heard_peers() {
    let timeout = Duration::from_secs(30);
    // No hold of evictions in silence (tested apart): the deadlines alone.
    let mut config = config();
    config.hold_limit = Duration::ZERO;
    let mut registry = Registry::new(config, T0);
    let ids: Vec<PeerId> = ["PeerA", "PeerB", "PeerC", "PeerD"]
        .iter()
        .map(|name| join(&mut registry, name, T0))
        .collect();
    let mut heard = vec![T0; ids.len()];
    let mut now = T0;
    // Each step: which peers ping (several at one instant), which leaves.
    let steps: [(&[usize], Option<usize>); 7] = [
        (&[1, 2, 1], None),
        (&[0, 3], None),
        (&[1], Some(2)),
        (&[3, 3, 3], None),
        (&[], Some(1)),
        (&[3], None),
        (&[0], None),
    ];
    let mut gone = vec![false; ids.len()];
    for (pings, leave) in steps {
        now = now + ms(700);
        for &p in pings {
            registry.handle_ping(ids[p], "", now).expect("known");
            heard[p] = now;
        }
        if let Some(p) = leave {
            registry.handle_leave(ids[p], now).expect("known");
            gone[p] = true;
        }
        // The round a leave starts goes out first.
        now = now + ms(10);
        registry.handle_timeout(now);
        drain(&mut registry);
        let earliest = (0..ids.len()).filter(|&p| !gone[p]).map(|p| heard[p]).min();
        assert_eq!(
            registry.poll_timeout(),
            earliest.map(|at| at + timeout),
            "after {pings:?}, {leave:?}"
        );
    }
    // Evicted one by one, each at its own deadline.
    let mut order: Vec<usize> = (0..ids.len()).filter(|&p| !gone[p]).collect();
    order.sort_by_key(|&p| heard[p]);
    for p in order {
        let deadline = heard[p] + timeout;
        registry.handle_timeout(deadline - ms(1));
        assert!(
            registry.peer(ids[p]).is_some(),
            "evicted before its deadline"
        );
        registry.handle_timeout(deadline);
        assert!(
            registry.peer(ids[p]).is_none(),
            "not evicted at its deadline"
        );
    }
    assert_eq!(registry.len(), 0);
}

#[test]
fn leave_removes_the_peer_and_then_its_id_is_unknown() {
    let mut registry = Registry::new(config(), T0);
    let a = join(&mut registry, "PeerA", T0);
    let left = registry.handle_leave(a, T0 + ms(1)).expect("known");
    assert_eq!(left.peer_name.as_str(), "PeerA");
    assert!(registry.is_empty());
    assert!(registry.handle_leave(a, T0 + ms(2)).is_err());
    assert!(registry.handle_ping(a, "", T0 + ms(2)).is_err());
}

#[test]
fn changes_together_go_out_in_one_broadcast_round() {
    let mut registry = Registry::new(config(), T0);
    join(&mut registry, "PeerA", T0);
    join(&mut registry, "PeerB", T0 + ms(3));
    join(&mut registry, "PeerC", T0 + ms(6));
    assert_eq!(registry.poll_timeout(), Some(T0 + ms(10)));
    registry.handle_timeout(T0 + ms(9));
    assert!(
        registry.poll_transmit().is_none(),
        "the round waits for the window"
    );
    registry.handle_timeout(T0 + ms(10));
    let (broadcasts, _) = drain(&mut registry);
    assert_eq!(broadcasts.len(), 3, "one broadcast per peer, one round");
    for b in &broadcasts {
        assert_eq!(b.version, 3);
        let listed: Vec<&str> = b.list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(listed, ["PeerA", "PeerB", "PeerC"]);
        assert!(b.url.ends_with("/p2p/genesis"));
    }
    registry.handle_timeout(T0 + ms(20));
    assert!(registry.poll_transmit().is_none(), "no change, no round");
}

#[test]
fn a_leaving_peer_is_not_told_and_the_others_are() {
    let mut registry = Registry::new(config(), T0);
    let a = join(&mut registry, "PeerA", T0);
    join(&mut registry, "PeerB", T0);
    registry.handle_timeout(T0 + ms(10));
    let _ = drain(&mut registry);
    registry.handle_leave(a, T0 + ms(20)).expect("known");
    registry.handle_timeout(T0 + ms(30));
    let (broadcasts, _) = drain(&mut registry);
    assert_eq!(broadcasts.len(), 1);
    assert!(broadcasts[0].url.starts_with("http://peerb.local"));
    assert_eq!(broadcasts[0].list.len(), 1);
}

#[test]
fn total_silence_holds_evictions_then_contact_gives_everyone_a_fresh_timeout() {
    let mut registry = Registry::new(config(), T0);
    let ids: Vec<PeerId> = ["PeerA", "PeerB", "PeerC"]
        .iter()
        .enumerate()
        .map(|(i, n)| join(&mut registry, n, T0 + Duration::from_secs(i as u64 * 5)))
        .collect();
    // Genesis's own network fails after T0+10s: nobody is heard. A's deadline
    // (T0+30s) falls inside the hold, which starts 15 s after the last contact.
    let outage_end = T0 + Duration::from_secs(40);
    registry.handle_timeout(T0 + Duration::from_secs(30));
    registry.handle_timeout(T0 + Duration::from_secs(39));
    assert_eq!(
        registry.len(),
        3,
        "no eviction while the registry hears no one"
    );
    assert!(registry.is_holding(T0 + Duration::from_secs(39)));
    // The network comes back: B pings first. A and C have a full timeout to follow.
    registry.handle_ping(ids[1], "", outage_end).expect("B");
    registry.handle_timeout(outage_end + Duration::from_secs(29));
    assert_eq!(registry.len(), 3);
    registry
        .handle_ping(ids[0], "", outage_end + Duration::from_secs(29))
        .expect("A");
    registry
        .handle_ping(ids[1], "", outage_end + Duration::from_secs(29))
        .expect("B");
    // C really died: it goes once its fresh timeout is over.
    registry.handle_timeout(outage_end + Duration::from_secs(30));
    let left: Vec<String> = names(&registry);
    assert_eq!(left, ["PeerA", "PeerB"]);
}

#[test]
fn the_hold_does_not_stick_a_dead_network_is_emptied_after_the_limit() {
    let mut registry = Registry::new(config(), T0);
    join(&mut registry, "PeerA", T0);
    join(&mut registry, "PeerB", T0);
    // Hold starts at T0+15s and lasts 30 s.
    registry.handle_timeout(T0 + Duration::from_secs(44));
    assert_eq!(registry.len(), 2);
    assert_eq!(registry.poll_timeout(), Some(T0 + Duration::from_secs(45)));
    registry.handle_timeout(T0 + Duration::from_secs(45));
    assert!(registry.is_empty());
}

#[test]
fn a_real_scale_down_evicts_on_time_while_one_peer_still_pings() {
    let mut registry = Registry::new(config(), T0);
    let ids: Vec<PeerId> = (0..10)
        .map(|i| join(&mut registry, &format!("Peer{i}"), T0))
        .collect();
    let survivor = ids[0];
    let mut now = T0;
    for _ in 0..6 {
        now = now + Duration::from_secs(5);
        registry.handle_ping(survivor, "", now).expect("alive");
        registry.handle_timeout(now);
    }
    assert_eq!(now, T0 + Duration::from_secs(30));
    assert_eq!(
        names(&registry),
        ["Peer0"],
        "nine dead peers evicted at their timeout"
    );
}

#[test]
fn restored_peers_get_a_fresh_timeout_and_keep_their_ids() {
    let mut before = Registry::new(config(), T0);
    let a = join(&mut before, "PeerA", T0);
    let saved = saved(&before);
    let restart = T0 + Duration::from_secs(100);
    let mut after = Registry::restore(config(), saved, before.version(), restart);
    assert_eq!(after.version(), 1);
    after.handle_timeout(restart + Duration::from_secs(29));
    after
        .handle_ping(a, "h", restart + Duration::from_secs(29))
        .expect("same id after restart");
}

fn saved(registry: &Registry) -> Vec<SavedPeer> {
    registry
        .peers()
        .map(|p| SavedPeer {
            peer: p.clone(),
            deltas: registry.wants_deltas(p.id),
        })
        .collect()
}

fn join_with_deltas(registry: &mut Registry, name: &str, now: Timestamp) -> PeerId {
    let probe = registry.begin_register(update(name)).with_deltas(true);
    registry
        .complete_register(probe, Ok(()), now)
        .expect("admitted")
        .peer
        .id
}

#[test]
fn peers_that_asked_for_deltas_get_only_the_changes_after_their_first_list() {
    let mut registry = Registry::new(config(), T0);
    let a = join_with_deltas(&mut registry, "PeerA", T0);
    let b = join(&mut registry, "PeerB", T0);
    registry.handle_timeout(T0 + ms(10));
    let (first, _) = drain(&mut registry);
    assert!(
        first.iter().all(|x| x.delta.is_none()),
        "a fresh peer gets the whole list"
    );
    let c = join_with_deltas(&mut registry, "PeerC", T0 + ms(20));
    registry.handle_leave(b, T0 + ms(21)).expect("known");
    registry.handle_timeout(T0 + ms(30));
    let (round, _) = drain(&mut registry);
    let to_a = round.iter().find(|x| x.to == a).expect("A told");
    let delta = to_a.delta.as_ref().expect("A gets a delta");
    assert_eq!((delta.from, delta.to), (2, 4));
    assert_eq!(delta.upserts.iter().map(|e| e.id).collect::<Vec<_>>(), [c]);
    assert_eq!(delta.removed, [b]);
    let to_c = round.iter().find(|x| x.to == c).expect("C told");
    assert!(to_c.delta.is_none(), "C joined this round: whole list");
    let body: serde_json::Value =
        serde_json::from_slice(&to_a.body().expect("json")).expect("parse");
    assert_eq!(body["from"], 2);
    let full: serde_json::Value =
        serde_json::from_slice(&to_c.body().expect("json")).expect("parse");
    assert_eq!(
        full.as_array().map(Vec::len),
        Some(2),
        "the original body: the whole list"
    );
}

#[test]
fn a_round_waits_for_the_previous_one_to_be_sent_but_not_forever() {
    let mut registry = Registry::new(config(), T0);
    join(&mut registry, "PeerA", T0);
    registry.handle_timeout(T0 + ms(10));
    let first: Vec<_> = std::iter::from_fn(|| registry.poll_transmit()).collect();
    assert_eq!(first.len(), 1);
    // The first round is still being sent: a burst of joins coalesces.
    for (i, name) in ["PeerB", "PeerC", "PeerD"].iter().enumerate() {
        join(&mut registry, name, T0 + ms(20 + i as u64 * 30));
        registry.handle_timeout(T0 + ms(30 + i as u64 * 30));
        assert!(
            registry.poll_transmit().is_none(),
            "no round while one is in flight"
        );
    }
    assert_eq!(
        registry.poll_timeout(),
        Some(T0 + ms(10) + config().round_wait)
    );
    registry.handle_round_sent(0, T0 + ms(100));
    assert!(
        registry.poll_timeout() > Some(T0 + ms(30)),
        "a report about another round changes nothing"
    );
    registry.handle_round_sent(first[0].version, T0 + ms(100));
    assert_eq!(
        registry.poll_timeout(),
        Some(T0 + ms(30)),
        "sent: the due round may go at once"
    );
    registry.handle_timeout(T0 + ms(100));
    let second: Vec<_> = std::iter::from_fn(|| registry.poll_transmit()).collect();
    assert_eq!(second.len(), 4, "one round carries the whole burst");
    assert!(second.iter().all(|b| b.version == 4));
    // A round never reported sent holds the next one for round_wait only.
    join(&mut registry, "PeerE", T0 + ms(110));
    registry.handle_timeout(T0 + ms(100) + config().round_wait - ms(1));
    assert!(registry.poll_transmit().is_none());
    registry.handle_timeout(T0 + ms(100) + config().round_wait);
    assert_eq!(std::iter::from_fn(|| registry.poll_transmit()).count(), 5);
}

#[test]
fn a_newer_round_supersedes_unsent_whole_lists_but_never_deltas() {
    let mut registry = Registry::new(config(), T0);
    join_with_deltas(&mut registry, "PeerA", T0);
    registry.handle_timeout(T0 + ms(10));
    let _ = drain(&mut registry);
    join(&mut registry, "PeerB", T0 + ms(20));
    registry.handle_timeout(T0 + ms(30));
    let first: Vec<_> = std::iter::from_fn(|| registry.poll_transmit()).collect();
    assert!(
        first.iter().all(|b| !registry.is_superseded(b)),
        "{first:?}"
    );
    // The first round is never reported sent: after round_wait, the next one goes.
    join(&mut registry, "PeerC", T0 + ms(40));
    registry.handle_timeout(T0 + ms(30) + config().round_wait);
    let second: Vec<_> = std::iter::from_fn(|| registry.poll_transmit()).collect();
    assert_eq!(second.len(), 3);
    let (deltas, lists): (Vec<_>, Vec<_>) = first.iter().partition(|b| b.delta.is_some());
    assert_eq!((deltas.len(), lists.len()), (1, 1), "A a delta, B a list");
    assert!(lists.iter().all(|b| registry.is_superseded(b)));
    assert!(deltas.iter().all(|b| !registry.is_superseded(b)));
    assert!(second.iter().all(|b| !registry.is_superseded(b)));
}

#[test]
fn a_restored_peer_keeps_its_choice_of_deltas() {
    let mut before = Registry::new(config(), T0);
    let a = join_with_deltas(&mut before, "PeerA", T0);
    let b = join(&mut before, "PeerB", T0);
    before.handle_timeout(T0 + ms(10));
    let _ = drain(&mut before);
    let saved = saved(&before);
    assert_eq!(
        saved.iter().map(|s| s.deltas).collect::<Vec<_>>(),
        [true, false]
    );
    // The saved form is the peer's JSON with one more field; older saves lack it.
    let json = serde_json::to_value(&saved[0]).expect("json");
    assert_eq!(json["peerName"], "PeerA");
    assert_eq!(json["deltas"], true);
    let mut old = json.clone();
    old.as_object_mut().expect("object").remove("deltas");
    let old: SavedPeer = serde_json::from_value(old).expect("old save");
    assert!(!old.deltas);

    let restart = T0 + Duration::from_secs(100);
    let mut after = Registry::restore(config(), saved, before.version(), restart);
    join(&mut after, "PeerC", restart);
    after.handle_timeout(restart + ms(10));
    let (round, _) = drain(&mut after);
    let to_a = round.iter().find(|x| x.to == a).expect("A told");
    let delta = to_a
        .delta
        .as_ref()
        .unwrap_or_else(|| panic!("A still gets deltas: {round:?}"));
    assert_eq!((delta.from, delta.to), (2, 3));
    assert!(
        round
            .iter()
            .find(|x| x.to == b)
            .expect("B told")
            .delta
            .is_none()
    );
}

#[test]
fn peers_with_the_same_schema_share_one_copy_of_its_hash() {
    let mut registry = Registry::new(config(), T0);
    let a = join(&mut registry, "PeerA", T0);
    let b = join(&mut registry, "PeerB", T0);
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    registry.handle_ping(a, hash, T0 + ms(1)).expect("known");
    // Another allocation of the same text, as each ping body is.
    let copy = String::from(hash);
    registry.handle_ping(b, &copy, T0 + ms(2)).expect("known");
    let held = |id| registry.peer(id).expect("listed").schema_hash.as_ptr();
    assert_eq!(registry.peer(a).expect("listed").schema_hash, hash);
    assert_eq!(held(a), held(b), "one allocation for both");
    // A different hash is its own value, and the others keep theirs.
    registry.handle_ping(b, "other", T0 + ms(3)).expect("known");
    assert_eq!(registry.peer(b).expect("listed").schema_hash, "other");
    assert_eq!(registry.peer(a).expect("listed").schema_hash, hash);
}

// ---- owned names: keyed registrations ----

mod keys {
    use super::*;
    use plexus_core::auth::{
        self, Authority, Expect, Identity, Message, Received, ReceivedRef, SESSION_KEY_HEADER,
        SessionKey, SignatureHeaders,
    };
    use plexus_core::registry::{CallRefused, RegisterError, UnknownPeer};
    use plexus_core::wire::{REGISTER_PATH, leave_path, ping_path};

    fn body(update: &PeerUpdate) -> Vec<u8> {
        serde_json::to_vec(update).expect("json")
    }

    /// Registers `update` as a peer holding `identity` would: signed, checked, probed.
    fn register_keyed(
        registry: &mut Registry,
        update: PeerUpdate,
        identity: Option<&Identity>,
        now: Timestamp,
    ) -> Result<PeerId, RegisterError> {
        let body = body(&update);
        let received = identity
            .map(|i| Received::from(&i.sign(&Message::request("POST", REGISTER_PATH, &body), now)))
            .unwrap_or_default();
        let key = registry
            .authenticate_register(&received, &body, now)
            .expect("a valid signature or none");
        let probe = registry.begin_register(update).with_key(key);
        registry.check_register(&probe)?;
        registry
            .complete_register(probe, Ok(()), now)
            .map(|r| r.peer.id)
    }

    fn signed_ping(
        registry: &mut Registry,
        id: PeerId,
        key: Option<&SessionKey>,
        now: Timestamp,
    ) -> Result<(), CallRefused> {
        let body = br#"{"schemaHash":"h1"}"#;
        let path = ping_path(id);
        let received = key
            .map(|k| Received::from(&k.sign(&Message::request("POST", &path, body), now)))
            .unwrap_or_default();
        registry
            .handle_signed_ping(id, "h1", &received, body, now)
            .map(|_| ())
    }

    fn signed_leave(
        registry: &mut Registry,
        id: PeerId,
        key: Option<&SessionKey>,
        now: Timestamp,
    ) -> Result<(), CallRefused> {
        let path = leave_path(id);
        let received = key
            .map(|k| Received::from(&k.sign(&Message::request("DELETE", &path, b""), now)))
            .unwrap_or_default();
        registry.handle_signed_leave(id, &received, now).map(|_| ())
    }

    fn alice() -> Identity {
        Identity::from_seed([0xa1; 32])
    }

    fn mallory() -> Identity {
        Identity::from_seed([0x66; 32])
    }

    #[test]
    fn a_keyed_registration_binds_its_name_against_hijacks() {
        let mut registry = Registry::new(config(), T0);
        let id =
            register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0).expect("admitted");
        assert!(Authority::is_keyed(id));
        assert!(registry.session_key(id).is_some());
        let version = registry.version();
        let _ = drain(&mut registry);

        // Without a key, and with another key, at another URI: refused, nothing changes.
        let mut hijack = update("PeerA");
        hijack.peer_uri = PeerUri::new("http://attacker.local:666").expect("uri");
        for identity in [None, Some(mallory())] {
            let refused =
                register_keyed(&mut registry, hijack.clone(), identity.as_ref(), T0 + ms(5));
            assert_eq!(
                refused,
                Err(RegisterError::NameHeld(
                    PeerName::new("PeerA").expect("name")
                ))
            );
            // complete_register checks it again, for a shell that skipped the check.
            let probe = registry
                .begin_register(hijack.clone())
                .with_key(identity.map(|i| i.public()));
            assert!(matches!(
                registry.complete_register(probe, Ok(()), T0 + ms(5)),
                Err(RegisterError::NameHeld(_))
            ));
        }
        assert_eq!(registry.version(), version);
        let peer = registry.peer(id).expect("still registered");
        assert_eq!(peer.peer_uri, update("PeerA").peer_uri);
        let (broadcasts, events) = drain(&mut registry);
        assert!(broadcasts.is_empty() && events.is_empty());
    }

    #[test]
    fn the_same_key_at_the_same_uri_keeps_its_id_and_a_new_uri_gets_a_new_one() {
        let mut registry = Registry::new(config(), T0);
        let id =
            register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0).expect("admitted");
        let _ = drain(&mut registry);
        let again = register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0 + ms(100))
            .expect("its own key");
        assert_eq!(
            again, id,
            "a replayed or repeated registration does not unseat the peer"
        );
        assert_eq!(
            registry.peer(id).map(|p| p.last_contact_at),
            Some(T0 + ms(100))
        );
        let (_, events) = drain(&mut registry);
        assert_eq!(events, [(ChangeKind::Joined, "PeerA".to_owned())]);

        let mut moved = update("PeerA");
        moved.peer_uri = PeerUri::new("http://elsewhere.local:1").expect("uri");
        let new_id =
            register_keyed(&mut registry, moved, Some(&alice()), T0 + ms(200)).expect("moved");
        assert_ne!(new_id, id);
        assert!(registry.peer(id).is_none());
        assert!(registry.config().authority.holds(new_id, &alice().public()));
    }

    #[test]
    fn a_ping_checked_before_the_lock_is_refused_as_a_signed_ping_is() {
        let mut registry = Registry::new(config(), T0);
        let id =
            register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0).expect("admitted");
        let plain = join(&mut registry, "PeerB", T0);
        let session = registry.session_key(id).expect("keyed");
        let _ = drain(&mut registry);
        let later = T0 + ms(1_000);
        let body = br#"{"schemaHash":"h2"}"#;
        let signed = |id: PeerId, now: Timestamp| {
            Received::from(&session.sign(&Message::request("POST", &ping_path(id), body), now))
        };
        // The check needs only the configuration (a shell makes it without
        // the registry's lock), borrowing the headers it was given.
        let config = registry.config().clone();
        let check = |received: &Received, id: PeerId| {
            config.check_ping(id, ReceivedRef::from(received), body, later)
        };

        // No signature, or a signature of another path: 403, nothing counted.
        for received in [Received::default(), signed(plain, later)] {
            assert!(matches!(
                registry.handle_checked_ping(check(&received, id), "h2", later),
                Err(CallRefused::Denied(_))
            ));
        }
        assert_eq!(registry.peer(id).map(|p| p.last_contact_at), Some(T0));
        // An unknown id is a 404 before its signature is looked at.
        let unknown = Authority::new([9; 32]).keyed_id(1, &alice().public());
        assert_eq!(
            registry.handle_checked_ping(check(&Received::default(), unknown), "h2", later),
            Err(CallRefused::Unknown(UnknownPeer(unknown)))
        );
        // A keyless id needs no signature; a keyed one counts with its own.
        assert_eq!(
            registry.handle_checked_ping(check(&Received::default(), plain), "h2", later),
            Ok(false)
        );
        assert_eq!(
            registry.handle_checked_ping(check(&signed(id, later), id), "h2", later),
            Ok(true)
        );
        let peer = registry.peer(id).expect("still there");
        assert_eq!(peer.schema_hash, "h2");
        assert_eq!(peer.last_contact_at, later);
    }

    #[test]
    fn pings_and_leaves_of_a_keyed_registration_need_its_session_signature() {
        let mut registry = Registry::new(config(), T0);
        let id =
            register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0).expect("admitted");
        let other =
            register_keyed(&mut registry, update("PeerB"), Some(&mallory()), T0).expect("admitted");
        let session = registry.session_key(id).expect("keyed");
        let foreign = registry.session_key(other).expect("keyed");
        let _ = drain(&mut registry);
        let later = T0 + ms(1_000);

        for key in [None, Some(&foreign)] {
            assert!(matches!(
                signed_ping(&mut registry, id, key, later),
                Err(CallRefused::Denied(_))
            ));
            assert!(matches!(
                signed_leave(&mut registry, id, key, later),
                Err(CallRefused::Denied(_))
            ));
        }
        // Its own signature, but made for the other peer's path.
        let moved = Received::from(
            &session.sign(&Message::request("POST", &ping_path(other), b"{}"), later),
        );
        assert!(matches!(
            registry.handle_signed_ping(id, "", &moved, b"{}", later),
            Err(CallRefused::Denied(_))
        ));
        // Its own signature, fresh: counted.
        let fresh_at = T0 + Duration::from_secs(61);
        assert_eq!(
            signed_ping(&mut registry, id, Some(&session), fresh_at),
            Ok(())
        );
        // Its own signature, older than the window: refused.
        let old = T0 - Duration::from_secs(120);
        let stale =
            Received::from(&session.sign(&Message::request("POST", &ping_path(id), b"{}"), old));
        assert!(matches!(
            registry.handle_signed_ping(id, "", &stale, b"{}", fresh_at),
            Err(CallRefused::Denied(auth::AuthError::Stale { .. }))
        ));
        let peer = registry.peer(id).expect("still there");
        assert_eq!(peer.schema_hash, "h1", "only the valid ping counted");
        assert_eq!(peer.last_contact_at, fresh_at);

        // The answer of a ping carries the list version under genesis's
        // key: one signature per version and second, shared by every answer.
        let genesis = Identity::from_seed([0x47; 32]);
        let answer = registry.ping_answer(&genesis, later);
        let message = Message::response(b"").with_version(Some(registry.version()));
        let check = |answer: &SignatureHeaders, key: &Identity, message: &Message<'_>| {
            auth::verify(
                &Received::from(answer),
                message,
                Expect::Key(&key.public()),
                later,
                auth::DEFAULT_MAX_AGE,
            )
        };
        assert!(check(&answer, &genesis, &message).is_ok());
        assert!(check(&answer, &Identity::from_seed([0x48; 32]), &message).is_err());
        assert!(
            std::sync::Arc::ptr_eq(&answer, &registry.ping_answer(&genesis, later)),
            "the same version in the same second: the same signature"
        );
        let next_second = registry.ping_answer(&genesis, later + Duration::from_secs(1));
        assert!(!std::sync::Arc::ptr_eq(&answer, &next_second));
        registry.handle_ping(id, "h2", later).expect("known");
        let changed = registry.ping_answer(&genesis, later);
        let message = Message::response(b"").with_version(Some(registry.version()));
        assert!(check(&changed, &genesis, &message).is_ok());
        assert!(
            check(&answer, &genesis, &message).is_err(),
            "an old version's signature does not cover the new version"
        );

        assert_eq!(
            signed_leave(&mut registry, id, Some(&session), later),
            Ok(())
        );
        assert_eq!(names(&registry), ["PeerB"]);
        // The name is free again: another key may take it.
        assert!(register_keyed(&mut registry, update("PeerA"), Some(&mallory()), later).is_ok());
    }

    #[test]
    fn an_unknown_id_answers_404_before_any_signature_check() {
        let mut registry = Registry::new(config(), T0);
        let ghost = registry.config().authority.keyed_id(42, &alice().public());
        assert!(matches!(
            signed_ping(&mut registry, ghost, None, T0),
            Err(CallRefused::Unknown(_))
        ));
        assert!(matches!(
            signed_leave(&mut registry, ghost, None, T0),
            Err(CallRefused::Unknown(_))
        ));
    }

    #[test]
    fn keyless_names_keep_the_original_behaviour_and_a_key_may_claim_them() {
        let mut registry = Registry::new(config(), T0);
        let plain = register_keyed(&mut registry, update("PeerA"), None, T0).expect("admitted");
        assert!(!Authority::is_keyed(plain));
        assert!(registry.session_key(plain).is_none());
        assert_eq!(signed_ping(&mut registry, plain, None, T0 + ms(1)), Ok(()));
        let replaced =
            register_keyed(&mut registry, update("PeerA"), None, T0 + ms(2)).expect("replaced");
        assert_ne!(replaced, plain);
        let claimed = register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0 + ms(3))
            .expect("claimed");
        assert!(Authority::is_keyed(claimed));
        assert!(register_keyed(&mut registry, update("PeerA"), None, T0 + ms(4)).is_err());
    }

    #[test]
    fn require_keys_refuses_keyless_registrations() {
        let mut config = config();
        config.require_keys = true;
        let mut registry = Registry::new(config, T0);
        assert_eq!(
            register_keyed(&mut registry, update("PeerA"), None, T0),
            Err(RegisterError::KeyRequired)
        );
        assert!(registry.is_empty());
        assert!(register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0).is_ok());
    }

    #[test]
    fn a_bad_registration_signature_is_refused_and_none_is_keyless() {
        let registry = Registry::new(config(), T0);
        let update = update("PeerA");
        let signed = alice().sign(&Message::request("POST", REGISTER_PATH, &body(&update)), T0);
        let mut other = update.clone();
        other.peer_uri = PeerUri::new("http://attacker.local:1").expect("uri");
        assert!(
            registry
                .authenticate_register(&(&signed).into(), &body(&other), T0)
                .is_err()
        );
        assert_eq!(
            registry.authenticate_register(&Received::default(), &body(&update), T0),
            Ok(None)
        );
        assert_eq!(
            registry.authenticate_register(&(&signed).into(), &body(&update), T0),
            Ok(Some(alice().public()))
        );
        assert_eq!(SESSION_KEY_HEADER, "x-plexus-session-key");
    }

    #[test]
    fn a_name_stays_bound_across_a_restart_with_the_same_authority() {
        let mut registry = Registry::new(config(), T0);
        let id =
            register_keyed(&mut registry, update("PeerA"), Some(&alice()), T0).expect("admitted");
        let session = registry.session_key(id).expect("keyed");
        let saved = saved(&registry);
        let mut restarted = Registry::restore(config(), saved, registry.version(), T0 + ms(10));
        assert!(
            register_keyed(
                &mut restarted,
                update("PeerA"),
                Some(&mallory()),
                T0 + ms(20)
            )
            .is_err()
        );
        assert_eq!(restarted.session_key(id).as_ref(), Some(&session));
        assert_eq!(
            signed_ping(&mut restarted, id, Some(&session), T0 + ms(30)),
            Ok(())
        );
    }
}
