//! The peer membership machine, driven with events and virtual instants.

use std::time::Duration;

use plexus_core::membership::{
    CallError, Event, FailReason, Membership, MembershipConfig, Request, State,
};
use plexus_core::schema::Schema;
use plexus_core::wire::{Contextionary, Peer, PeerId, PeerListEntry, PeerRegistrationResponse};
use plexus_core::{PeerName, PeerUri, Timestamp};

const T0: Timestamp = Timestamp(5_000_000);

fn contextionary(hash: &str) -> Contextionary {
    Contextionary {
        url: "http://c.example/c.bin".into(),
        hash: hash.parse().expect("hash"),
    }
}

fn config() -> MembershipConfig {
    let mut config = MembershipConfig::new(
        PeerName::new("PeerA").expect("name"),
        PeerUri::new("http://127.0.0.1:8081").expect("uri"),
        42,
    );
    config.contextionary = Some(contextionary("sha256:ours"));
    config
}

fn response(id: u128, hash: &str) -> PeerRegistrationResponse {
    PeerRegistrationResponse {
        peer: Peer {
            id: PeerId(uuid::Uuid::from_u128(id)),
            peer_name: PeerName::new("PeerA").expect("name"),
            peer_uri: PeerUri::new("http://127.0.0.1:8081").expect("uri"),
            last_contact_at: T0,
            schema_hash: Default::default(),
        },
        contextionary: contextionary(hash),
    }
}

fn transmits(m: &mut Membership) -> Vec<Request> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn events(m: &mut Membership) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn registered(m: &mut Membership, id: u128) {
    m.handle_start(T0);
    assert!(matches!(transmits(m).as_slice(), [Request::Register(_)]));
    m.handle_register_response(Ok(response(id, "sha256:ours")), T0);
}

fn entry(name: &str, hash: &str) -> PeerListEntry {
    PeerListEntry {
        id: PeerId(uuid::Uuid::from_u128(name.len() as u128)),
        name: PeerName::new(name).expect("name"),
        uri: PeerUri::new(format!("http://{}.local", name.to_lowercase())).expect("uri"),
        schema_hash: hash.into(),
    }
}

#[test]
fn stand_alone_peer_never_talks_to_genesis() {
    let mut m = Membership::new(None, "h".into());
    m.handle_start(T0);
    m.handle_timeout(T0 + Duration::from_secs(60));
    m.handle_shutdown(T0);
    assert_eq!(m.state(), &State::NotConfigured);
    assert!(transmits(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn registers_then_pings_with_the_schema_hash_at_a_jittered_interval() {
    let mut m = Membership::new(Some(config()), "h1".into());
    m.handle_start(T0);
    let sent = transmits(&mut m);
    let [Request::Register(update)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(update.peer_name.as_str(), "PeerA");
    m.handle_register_response(Ok(response(1, "sha256:ours")), T0);
    assert_eq!(
        events(&mut m),
        [Event::Registered(PeerId(uuid::Uuid::from_u128(1)))]
    );
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::Ping { body, .. }] if body.schema_hash == "h1"),
        "first ping at once: {sent:?}"
    );
    assert_eq!(
        m.poll_timeout(),
        None,
        "nothing more while the ping is in flight"
    );
    m.handle_ping_response(Ok(None), T0);
    let next = m.poll_timeout().expect("next ping");
    let phase = next.saturating_since(T0);
    assert!(
        phase >= Duration::from_secs(1) && phase <= Duration::from_secs(10),
        "random phase: {phase:?}"
    );
    m.handle_timeout(next - Duration::from_millis(1));
    assert!(transmits(&mut m).is_empty(), "not before it is due");
    m.handle_timeout(next);
    assert!(matches!(
        transmits(&mut m).as_slice(),
        [Request::Ping { .. }]
    ));
    m.handle_ping_response(Ok(None), next);
    let gap = m.poll_timeout().expect("next ping").saturating_since(next);
    assert!(
        gap >= Duration::from_secs(9) && gap <= Duration::from_secs(11),
        "interval ±10 %: {gap:?}"
    );
}

#[test]
fn jitter_spreads_pings_of_peers_with_different_seeds() {
    let gaps: std::collections::BTreeSet<u64> = (0..20)
        .map(|seed| {
            let mut config = config();
            config.seed = seed;
            let mut m = Membership::new(Some(config), "h".into());
            registered(&mut m, 1);
            let _ = transmits(&mut m);
            m.handle_ping_response(Ok(None), T0);
            m.poll_timeout().expect("next").as_millis()
        })
        .collect();
    assert!(gaps.len() > 15, "pings must not be in step: {gaps:?}");
}

#[test]
fn a_404_on_ping_registers_again_at_once() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_ping_response(Err(CallError::NotFound), T0 + Duration::from_secs(10));
    assert!(matches!(
        transmits(&mut m).as_slice(),
        [Request::Register(_)]
    ));
    m.handle_register_response(Ok(response(2, "sha256:ours")), T0 + Duration::from_secs(10));
    assert_eq!(m.id(), Some(PeerId(uuid::Uuid::from_u128(2))));
}

#[test]
fn a_peer_without_a_contextionary_learns_the_networks_from_its_registration() {
    // A tab holds none of its own: it joins any network and fetches the
    // one genesis names.
    let mut config = config();
    config.contextionary = None;
    let mut m = Membership::new(Some(config), "h".into());
    assert_eq!(m.network_contextionary(), None);
    registered(&mut m, 1);
    assert!(matches!(m.state(), State::Registered { .. }));
    assert_eq!(
        m.network_contextionary(),
        Some(&contextionary("sha256:ours"))
    );
    // A peer that refuses the network's contextionary records none.
    let mut m = Membership::new(Some(self::config()), "h".into());
    m.handle_start(T0);
    let _ = transmits(&mut m);
    m.handle_register_response(Ok(response(1, "sha256:theirs")), T0);
    assert_eq!(m.network_contextionary(), None);
}

#[test]
fn contextionary_mismatch_leaves_then_fails_for_good_with_the_reason() {
    let mut m = Membership::new(Some(config()), "h".into());
    m.handle_start(T0);
    let _ = transmits(&mut m);
    m.handle_register_response(Ok(response(1, "sha256:theirs")), T0);
    // Genesis registered the peer before it could refuse: it leaves first,
    // and fails only once the leave is answered (whatever the answer).
    assert_eq!(m.state(), &State::Leaving);
    assert_eq!(
        transmits(&mut m),
        [Request::Leave {
            id: PeerId(uuid::Uuid::from_u128(1))
        }]
    );
    assert!(events(&mut m).is_empty(), "no failure before the leave");
    // A shutdown meanwhile sends no second leave.
    m.handle_shutdown(T0);
    assert!(transmits(&mut m).is_empty());
    m.handle_leave_response(Err(CallError::Transport("timed out".into())), T0);
    let State::Failed(reason) = m.state().clone() else {
        panic!("{:?}", m.state())
    };
    assert!(matches!(reason, FailReason::ContextionaryMismatch { .. }));
    assert!(reason.to_string().contains("sha256:theirs"));
    assert_eq!(events(&mut m), [Event::Failed(reason)]);
    m.handle_timeout(T0 + Duration::from_secs(100));
    assert!(
        transmits(&mut m).is_empty(),
        "a failed peer sends nothing more"
    );
}

#[test]
fn a_plain_shutdown_still_ends_in_left() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 3);
    let _ = transmits(&mut m);
    let _ = events(&mut m);
    m.handle_shutdown(T0);
    assert_eq!(
        transmits(&mut m),
        [Request::Leave {
            id: PeerId(uuid::Uuid::from_u128(3))
        }]
    );
    m.handle_leave_response(Ok(()), T0);
    assert_eq!(m.state(), &State::Left);
    assert_eq!(events(&mut m), [Event::Left]);
}

#[test]
fn refused_registration_backs_off_exponentially_then_retries() {
    let mut m = Membership::new(Some(config()), "h".into());
    m.handle_start(T0);
    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        assert!(matches!(
            transmits(&mut m).as_slice(),
            [Request::Register(_)]
        ));
        m.handle_register_response(Err(CallError::Transport("connection refused".into())), now);
        let next = m.poll_timeout().expect("retry");
        delays.push(next.saturating_since(now));
        now = next;
        m.handle_timeout(now);
    }
    assert!(
        delays
            .iter()
            .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_secs(30))
    );
    assert!(
        delays[6] + delays[7] > delays[0] + delays[1],
        "backs off: {delays:?}"
    );
}

#[test]
fn a_changed_schema_hash_triggers_exactly_one_download() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_peer_list(
        vec![
            entry("PeerA", "h"),
            entry("PeerB", "b1"),
            entry("PeerC", ""),
        ],
        None,
        T0,
    );
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::DownloadSchema { peer, hash, .. }] if peer.as_str() == "PeerB" && hash == "b1"),
        "{sent:?}"
    );
    assert_eq!(m.view().len(), 2, "own entry is not part of the view");
    // The same list again while the download is in flight: nothing new.
    m.handle_peer_list(vec![entry("PeerB", "b1"), entry("PeerC", "")], None, T0);
    assert!(transmits(&mut m).is_empty());
    let b = PeerName::new("PeerB").expect("name");
    m.handle_schema_response(&b, "b1", Ok(Schema::default()), T0);
    assert!(m.view()[&b].is_cached());
    m.handle_peer_list(vec![entry("PeerB", "b1"), entry("PeerC", "")], None, T0);
    assert!(transmits(&mut m).is_empty(), "cached: no download");
    m.handle_peer_list(vec![entry("PeerB", "b2"), entry("PeerC", "")], None, T0);
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::DownloadSchema { hash, .. }] if hash == "b2"),
        "{sent:?}"
    );
    assert_eq!(
        m.schemas().len(),
        1,
        "the old schema stays usable meanwhile"
    );
}

#[test]
fn a_failed_download_is_retried_after_a_ping_interval() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_ping_response(Ok(None), T0);
    m.handle_peer_list(vec![entry("PeerB", "b1")], None, T0);
    let _ = transmits(&mut m);
    let b = PeerName::new("PeerB").expect("name");
    m.handle_schema_response(&b, "b1", Err(CallError::Transport("timeout".into())), T0);
    assert!(transmits(&mut m).is_empty());
    m.handle_timeout(T0 + Duration::from_secs(10));
    let sent = transmits(&mut m);
    assert!(
        sent.iter()
            .any(|r| matches!(r, Request::DownloadSchema { .. })),
        "{sent:?}"
    );
}

#[test]
fn a_local_schema_change_is_pinged_at_once() {
    let mut m = Membership::new(Some(config()), "h1".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_ping_response(Ok(None), T0);
    m.set_schema_hash("h2".into(), T0 + Duration::from_secs(1));
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::Ping { body, .. }] if body.schema_hash == "h2"),
        "{sent:?}"
    );
}

#[test]
fn a_schema_change_during_a_ping_in_flight_is_pinged_when_it_is_answered() {
    let mut m = Membership::new(Some(config()), "h1".into());
    registered(&mut m, 1);
    // Registration is followed by a ping at once, to tell genesis the hash.
    let due = T0;
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::Ping { body, .. }] if body.schema_hash == "h1"),
        "{sent:?}"
    );
    // The schema changes while that ping is in flight: nothing more goes yet.
    m.set_schema_hash("h2".into(), due + Duration::from_millis(1));
    assert!(transmits(&mut m).is_empty());
    // Genesis answers the ping that carried h1: h2 goes at once.
    m.handle_ping_response(Ok(None), due + Duration::from_millis(2));
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::Ping { body, .. }] if body.schema_hash == "h2"),
        "{sent:?}"
    );
    // Once genesis has h2, pings are back on their interval.
    m.handle_ping_response(Ok(None), due + Duration::from_millis(3));
    assert!(transmits(&mut m).is_empty());
    assert!(m.poll_timeout().expect("next ping") > due + Duration::from_secs(1));
}

#[test]
fn shutdown_deregisters_when_registered() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 7);
    let _ = transmits(&mut m);
    m.handle_shutdown(T0);
    assert_eq!(
        transmits(&mut m),
        [Request::Leave {
            id: PeerId(uuid::Uuid::from_u128(7))
        }]
    );
    m.handle_leave_response(Ok(()), T0);
    assert_eq!(m.state(), &State::Left);
    let mut unregistered = Membership::new(Some(config()), "h".into());
    unregistered.handle_shutdown(T0);
    assert!(transmits(&mut unregistered).is_empty());
    assert_eq!(unregistered.state(), &State::Left);
}

#[test]
fn a_version_gap_told_by_two_pings_fetches_the_whole_list_once() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_peer_list(vec![entry("PeerB", "")], Some(4), T0);
    m.handle_ping_response(Ok(Some(4)), T0);
    m.handle_timeout(m.poll_timeout().expect("ping"));
    let _ = transmits(&mut m);
    // Version 5's broadcast was lost. One ping telling of it may just have
    // overtaken the broadcast: wait for a second one.
    m.handle_ping_response(Ok(Some(5)), T0 + Duration::from_secs(10));
    assert!(transmits(&mut m).is_empty());
    m.handle_timeout(m.poll_timeout().expect("ping"));
    let _ = transmits(&mut m);
    m.handle_ping_response(Ok(Some(5)), T0 + Duration::from_secs(20));
    assert_eq!(transmits(&mut m), [Request::FetchPeers]);
    m.handle_peers_response(
        Ok((vec![entry("PeerB", ""), entry("PeerC", "")], Some(5))),
        T0 + Duration::from_secs(20),
    );
    assert_eq!(m.list_version(), Some(5));
    assert_eq!(m.view().len(), 2);
    m.handle_timeout(m.poll_timeout().expect("ping"));
    let _ = transmits(&mut m);
    m.handle_ping_response(Ok(Some(5)), T0 + Duration::from_secs(30));
    assert!(
        transmits(&mut m).is_empty(),
        "in step again: nothing to fetch"
    );
}

fn delta(
    from: u64,
    to: u64,
    upserts: Vec<PeerListEntry>,
    removed: Vec<PeerId>,
) -> plexus_core::wire::GenesisPush {
    plexus_core::wire::GenesisPush::Delta(plexus_core::wire::PeerDelta {
        from,
        to,
        upserts,
        removed,
    })
}

#[test]
fn a_delta_applies_on_top_of_its_version_and_a_gap_fetches_the_list() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    let b = entry("PeerB", "");
    let c = entry("PeerCC", "");
    m.handle_genesis_push(
        plexus_core::wire::GenesisPush::Full(vec![b.clone()]),
        Some(3),
        T0,
    );
    m.handle_genesis_push(delta(3, 5, vec![c.clone()], vec![b.id]), Some(5), T0);
    assert_eq!(
        m.view().keys().map(PeerName::as_str).collect::<Vec<_>>(),
        ["PeerCC"]
    );
    assert_eq!(m.list_version(), Some(5));
    assert!(transmits(&mut m).is_empty());
    // Round 5→6 was lost: 6→7 does not apply.
    m.handle_genesis_push(delta(6, 7, vec![b], vec![]), Some(7), T0);
    assert_eq!(transmits(&mut m), [Request::FetchPeers]);
    assert_eq!(m.view().len(), 1, "nothing guessed");
    m.handle_genesis_push(delta(7, 8, vec![], vec![]), Some(8), T0);
    assert!(transmits(&mut m).is_empty(), "one fetch at a time");
}

#[test]
fn a_round_older_than_the_view_is_ignored_until_the_peer_registers_again() {
    use plexus_core::wire::GenesisPush;
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    let (b, c) = (entry("PeerB", ""), entry("PeerCC", ""));
    m.handle_genesis_push(GenesisPush::Full(vec![b.clone(), c.clone()]), Some(6), T0);
    // Rounds 4→5 and 5 arrive late: neither changes the view nor fetches.
    m.handle_genesis_push(delta(4, 5, vec![], vec![c.id]), Some(5), T0);
    m.handle_genesis_push(GenesisPush::Full(vec![b.clone()]), Some(5), T0);
    assert_eq!(m.view().len(), 2);
    assert_eq!(m.list_version(), Some(6));
    assert!(transmits(&mut m).is_empty());
    // Genesis restarted and counts from 0 again: after registering anew, low versions apply.
    m.handle_ping_response(Err(CallError::NotFound), T0);
    let _ = transmits(&mut m);
    m.handle_register_response(Ok(response(2, "sha256:ours")), T0);
    m.handle_genesis_push(GenesisPush::Full(vec![b]), Some(1), T0);
    assert_eq!(m.list_version(), Some(1));
    assert_eq!(m.view().len(), 1);
}

#[test]
fn a_replica_that_fails_is_left_for_the_next_with_the_same_registration() {
    let mut cfg = config();
    cfg.genesis_replicas = 3;
    let mut m = Membership::new(Some(cfg), "h".into());
    registered(&mut m, 1);
    assert_eq!(m.genesis(), 0);
    let _ = transmits(&mut m);
    let t = T0 + Duration::from_secs(10);
    m.handle_ping_response(Err(CallError::Transport("refused".into())), t);
    // The next replica is pinged at once, with the same id: no registration.
    assert_eq!(m.genesis(), 1);
    let sent = transmits(&mut m);
    assert!(
        matches!(sent.as_slice(), [Request::Ping { id, .. }] if *id == PeerId(uuid::Uuid::from_u128(1))),
        "{sent:?}"
    );
    // It answers: the peer stays with it, on the usual schedule.
    m.handle_ping_response(Ok(None), t);
    assert_eq!(m.genesis(), 1);
    assert!(transmits(&mut m).is_empty());
    assert_eq!(m.id(), Some(PeerId(uuid::Uuid::from_u128(1))));
    // It does not hold the registration (404): register again, there.
    m.handle_ping_response(Err(CallError::NotFound), t);
    assert!(matches!(
        transmits(&mut m).as_slice(),
        [Request::Register(_)]
    ));
    assert_eq!(m.genesis(), 1);
}

#[test]
fn when_every_replica_fails_pings_keep_their_schedule() {
    let mut cfg = config();
    cfg.genesis_replicas = 2;
    let mut m = Membership::new(Some(cfg), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    let t = T0 + Duration::from_secs(10);
    m.handle_ping_response(Err(CallError::Transport("down".into())), t);
    assert_eq!(transmits(&mut m).len(), 1, "the other replica at once");
    m.handle_ping_response(Err(CallError::Transport("down".into())), t);
    assert_eq!(m.genesis(), 0, "round the list");
    assert!(
        transmits(&mut m).is_empty(),
        "then the usual interval, not a spin"
    );
    let next = m.poll_timeout().expect("a next ping");
    assert!(next > t + Duration::from_secs(5), "{next:?}");
    // A registration that gets no answer moves on too.
    let mut cfg = config();
    cfg.genesis_replicas = 2;
    let mut fresh = Membership::new(Some(cfg), "h".into());
    fresh.handle_start(T0);
    let _ = transmits(&mut fresh);
    fresh.handle_register_response(Err(CallError::Transport("down".into())), T0);
    assert_eq!(fresh.genesis(), 1);
}

/// A peer given `n` replicas, named `http://gN`.
fn replicated(n: usize) -> Membership {
    let mut cfg = config();
    cfg.genesis_replicas = n;
    cfg.genesis_names = (0..n).map(|i| format!("http://g{i}")).collect();
    Membership::new(Some(cfg), "h".into())
}

#[test]
fn one_replica_refusing_a_registration_moves_the_peer_on_and_only_all_refusing_ends_it() {
    let mut m = replicated(3);
    m.handle_start(T0);
    let _ = transmits(&mut m);
    m.handle_register_response(Err(CallError::Forbidden("wrong token".into())), T0);
    assert!(
        matches!(m.state(), State::Registering { .. }),
        "{:?}",
        m.state()
    );
    assert_eq!(m.genesis(), 1);
    assert!(
        matches!(transmits(&mut m).as_slice(), [Request::Register(_)]),
        "the next replica is asked at once"
    );
    m.handle_register_response(Err(CallError::Invalid("bad name".into())), T0);
    assert_eq!(m.genesis(), 2);
    assert!(matches!(
        transmits(&mut m).as_slice(),
        [Request::Register(_)]
    ));
    assert!(
        events(&mut m).is_empty(),
        "no failure while a replica is left"
    );
    // The last one refuses too: every replica agrees, the peer gives up,
    // and the reason names each replica and its check.
    m.handle_register_response(
        Err(CallError::Forbidden("the signature does not verify".into())),
        T0,
    );
    let State::Failed(reason) = m.state().clone() else {
        panic!("{:?}", m.state());
    };
    let FailReason::EveryReplicaRefused(refusals) = &reason else {
        panic!("{reason:?}");
    };
    assert_eq!(refusals.len(), 3);
    let text = reason.to_string();
    for needle in [
        "http://g0 refused: genesis refused the join token (403): wrong token",
        "http://g1 refused: genesis refused the registration: bad name",
        "http://g2 refused: genesis refused the join token (403): the signature does not verify",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    assert_eq!(events(&mut m), [Event::Failed(reason)]);
}

#[test]
fn a_ping_refused_by_one_replica_goes_to_the_next_with_the_same_registration() {
    let mut m = replicated(2);
    registered(&mut m, 1);
    let _ = (transmits(&mut m), events(&mut m));
    let t = T0 + Duration::from_secs(10);
    m.handle_ping_response(
        Err(CallError::Forbidden("the signature does not verify".into())),
        t,
    );
    assert_eq!(m.genesis(), 1);
    assert!(
        matches!(transmits(&mut m).as_slice(), [Request::Ping { id, .. }] if *id == PeerId(uuid::Uuid::from_u128(1))),
        "the other replica is pinged at once, same id"
    );
    // It takes the ping: refusals are forgotten, so that a later refusal
    // there is again only one replica's.
    m.handle_ping_response(Ok(None), t);
    assert_eq!(m.id(), Some(PeerId(uuid::Uuid::from_u128(1))));
    m.handle_ping_response(Err(CallError::Forbidden("refused".into())), t);
    assert_eq!(m.genesis(), 0);
    assert!(
        matches!(m.state(), State::Registered { .. }),
        "{:?}",
        m.state()
    );
    assert!(events(&mut m).is_empty());
}

#[test]
fn a_peer_refused_by_one_replica_while_the_other_is_down_never_gives_up() {
    let mut m = replicated(2);
    registered(&mut m, 1);
    let _ = (transmits(&mut m), events(&mut m));
    let mut t = T0;
    for _ in 0..20 {
        let answer = if m.genesis() == 0 {
            Err(CallError::Forbidden("the signature does not verify".into()))
        } else {
            Err(CallError::Transport("connection refused".into()))
        };
        m.handle_ping_response(answer, t);
        let mut sent = transmits(&mut m);
        if sent.is_empty() {
            t = m.poll_timeout().expect("a next ping");
            m.handle_timeout(t);
            sent = transmits(&mut m);
        }
        assert!(
            matches!(sent.as_slice(), [Request::Ping { .. }]),
            "{sent:?}"
        );
    }
    assert!(
        matches!(m.state(), State::Registered { .. }),
        "{:?}",
        m.state()
    );
    assert!(events(&mut m).is_empty());
    assert!(
        t > T0 + Duration::from_secs(60),
        "on the usual schedule, not a spin: {t:?}"
    );
}

#[test]
fn a_single_genesis_that_refuses_ends_the_membership_at_once() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_ping_response(Err(CallError::Forbidden("wrong token".into())), T0);
    assert_eq!(
        m.state(),
        &State::Failed(FailReason::Forbidden("wrong token".into()))
    );
}

#[test]
fn a_single_genesis_never_moves() {
    let mut m = Membership::new(Some(config()), "h".into());
    registered(&mut m, 1);
    let _ = transmits(&mut m);
    m.handle_ping_response(Err(CallError::Transport("down".into())), T0);
    assert_eq!(m.genesis(), 0);
    assert!(transmits(&mut m).is_empty());
}

// ---- keys: a peer that owns its name and trusts only genesis's signature ----

mod keys {
    use super::*;
    use plexus_core::auth::{AuthError, Authority, Identity, Message, Received};
    use plexus_core::membership::{Answer, PushRefused};
    use plexus_core::registry::{Registry, RegistryConfig};
    use plexus_core::wire::{GenesisPush, PeerUpdate};

    /// A genesis: the core registry and genesis's key pair, answering as the server does.
    struct Genesis {
        registry: Registry,
        identity: Identity,
    }

    impl Genesis {
        fn new() -> Self {
            let identity = Identity::from_seed([0x9e; 32]);
            let mut config = RegistryConfig::new(contextionary("sha256:ours"), 1);
            config.authority = Authority::of(&identity);
            Self {
                registry: Registry::new(config, T0),
                identity,
            }
        }

        fn register(&mut self, update: &PeerUpdate, signature: Received, now: Timestamp) -> Answer {
            let body = serde_json::to_vec(update).expect("json");
            let key = self
                .registry
                .authenticate_register(&signature, &body, now)
                .expect("signed by the peer");
            let probe = self.registry.begin_register(update.clone()).with_key(key);
            let response = self
                .registry
                .complete_register(probe, Ok(()), now)
                .expect("admitted");
            let body = serde_json::to_vec(&response).expect("json");
            Answer {
                signature: (&self.identity.sign(&Message::response(&body), now)).into(),
                session_key: self
                    .registry
                    .session_key(response.peer.id)
                    .map(|k| k.to_string()),
                body,
                version: None,
            }
        }

        fn push(
            &self,
            list: &[PeerListEntry],
            version: u64,
            now: Timestamp,
        ) -> (Vec<u8>, Received) {
            let body = serde_json::to_vec(list).expect("json");
            let signature = self
                .identity
                .sign(&Message::push(Some(version), &body), now);
            (body, (&signature).into())
        }
    }

    fn keyed_config() -> MembershipConfig {
        let mut config = config();
        config.identity = Some(Identity::from_seed([0xa1; 32]));
        config
    }

    /// Starts `m` and registers it with `genesis`, as the peer shell does.
    fn join(m: &mut Membership, genesis: &mut Genesis, now: Timestamp) {
        m.handle_start(now);
        let request = only(m);
        let Request::Register(update) = &request else {
            panic!("expected a registration");
        };
        let call = m.call(&request, now).expect("a call to genesis");
        let signature = call.signature().map(Received::from);
        let answer = genesis.register(update, signature.unwrap_or_default(), now);
        m.handle_register_answer(Ok(answer), now);
    }

    fn only(m: &mut Membership) -> Request {
        let mut requests = transmits(m);
        assert_eq!(requests.len(), 1, "one request: {requests:?}");
        requests.remove(0)
    }

    fn view_names(m: &Membership) -> Vec<String> {
        m.view().keys().map(ToString::to_string).collect()
    }

    #[test]
    fn a_keyed_registration_answered_without_its_session_key_is_tried_again() {
        let mut genesis = Genesis::new();
        let mut m = Membership::new(Some(keyed_config()), "h1".into());
        m.handle_start(T0);
        let request = only(&mut m);
        let Request::Register(update) = &request else {
            panic!("expected a registration");
        };
        let call = m.call(&request, T0).expect("a call to genesis");
        let signature = call.signature().map(Received::from).unwrap_or_default();
        let mut answer = genesis.register(update, signature, T0);
        answer.session_key = None;
        m.handle_register_answer(Ok(answer), T0);
        // Its pings could not be signed: not registered, registering again
        // after the backoff, as after an answer that does not parse.
        assert!(
            matches!(m.state(), State::Registering { attempt: 1, .. }),
            "{:?}",
            m.state()
        );
        assert_eq!(m.id(), None);
        assert!(events(&mut m).is_empty());
    }

    #[test]
    fn a_keyed_peer_registers_pings_and_leaves_under_its_keys() {
        let mut genesis = Genesis::new();
        let mut m = Membership::new(Some(keyed_config()), "h1".into());
        join(&mut m, &mut genesis, T0);
        let id = m.id().expect("registered");
        assert!(
            Authority::is_keyed(id),
            "genesis bound the name to the peer's key"
        );
        assert_eq!(m.genesis_key(), Some(genesis.identity.public()), "pinned");

        // Its ping is signed with the session key and genesis takes it.
        let ping = only(&mut m);
        let Request::Ping { body, .. } = &ping else {
            panic!("expected a ping");
        };
        // The bytes signed are the bytes the call sends.
        let call = m.call(&ping, T0).expect("a call to genesis");
        let bytes = call.body.clone();
        let signature = Received::from(call.signature().expect("signed"));
        let keyed = genesis
            .registry
            .handle_signed_ping(id, &body.schema_hash, &signature, &bytes, T0)
            .expect("taken");
        assert!(keyed, "a keyed ping is answered with the signed version");
        assert_eq!(
            genesis.registry.peer(id).map(|p| p.schema_hash.to_string()),
            Some("h1".into())
        );

        // So is its leave.
        let answer = Answer {
            signature: genesis
                .registry
                .ping_answer(&genesis.identity, T0)
                .as_ref()
                .into(),
            version: Some(genesis.registry.version()),
            ..Answer::default()
        };
        m.handle_ping_answer(Ok(answer), T0);
        m.handle_shutdown(T0);
        let leave = only(&mut m);
        let Request::Leave { .. } = &leave else {
            panic!("expected a leave");
        };
        let call = m.call(&leave, T0).expect("a call to genesis");
        let signature = Received::from(call.signature().expect("signed"));
        assert!(
            genesis
                .registry
                .handle_signed_leave(id, &signature, T0)
                .is_ok()
        );
        assert!(genesis.registry.is_empty());
    }

    #[test]
    fn forged_unsigned_and_altered_pushes_are_refused_and_the_view_stays() {
        let mut genesis = Genesis::new();
        let mut m = Membership::new(Some(keyed_config()), "h1".into());
        join(&mut m, &mut genesis, T0);
        let _ = transmits(&mut m);
        let real = [entry("PeerB", "")];
        let (body, signature) = genesis.push(&real, 3, T0);
        assert_eq!(m.handle_signed_push(&body, Some(3), &signature, T0), Ok(()));
        assert_eq!(
            (view_names(&m), m.list_version()),
            (vec!["PeerB".to_owned()], Some(3))
        );
        let uri_before = m.view().values().next().map(|p| p.uri.clone());

        let mut evil = entry("PeerB", "");
        evil.uri = PeerUri::new("http://attacker.local:6666").expect("uri");
        let forged_list = [evil];
        let mallory = Identity::from_seed([0x66; 32]);
        let forged_body = serde_json::to_vec(&forged_list).expect("json");
        let huge = Some(u64::MAX);
        let forged = Received::from(&mallory.sign(&Message::push(huge, &forged_body), T0));
        assert!(matches!(
            m.handle_signed_push(&forged_body, huge, &forged, T0),
            Err(PushRefused::Denied(AuthError::WrongKey(_)))
        ));
        assert_eq!(
            m.handle_signed_push(&forged_body, huge, &Received::default(), T0),
            Err(PushRefused::Denied(AuthError::Missing))
        );
        // Genesis's own signature, on another body or another version.
        assert!(
            m.handle_signed_push(&forged_body, Some(3), &signature, T0)
                .is_err()
        );
        assert!(m.handle_signed_push(&body, huge, &signature, T0).is_err());
        // Genesis's own push, replayed after the window.
        let late = T0 + Duration::from_secs(61);
        assert!(matches!(
            m.handle_signed_push(&body, Some(3), &signature, late),
            Err(PushRefused::Denied(AuthError::Stale { .. }))
        ));
        assert_eq!(
            m.list_version(),
            Some(3),
            "no forged version poisoned the view"
        );
        assert_eq!(m.view().values().next().map(|p| p.uri.clone()), uri_before);

        // The next real push still applies.
        let (body, signature) = genesis.push(&[entry("PeerB", ""), entry("PeerC", "")], 4, late);
        assert_eq!(
            m.handle_signed_push(&body, Some(4), &signature, late),
            Ok(())
        );
        assert_eq!(view_names(&m), ["PeerB", "PeerC"]);
    }

    #[test]
    fn a_push_is_judged_by_its_headers_before_its_body_is_read() {
        let mut genesis = Genesis::new();
        let mut m = Membership::new(Some(keyed_config()), "h1".into());
        assert_eq!(
            m.push_gate()
                .check(Some(1), &Received::default(), Some(10), T0),
            Err(PushRefused::NoKey),
            "no key yet: nothing is read"
        );
        join(&mut m, &mut genesis, T0);
        let gate = m.push_gate();
        assert_eq!(
            gate.max_bytes(),
            plexus_core::membership::default_max_list_bytes()
        );
        assert_eq!(gate.max_bytes(), 50_080_080, "as docs/peer.md says");
        let (body, signature) = genesis.push(&[entry("PeerB", "")], 3, T0);
        let len = Some(body.len() as u64);
        assert_eq!(gate.check(Some(3), &signature, len, T0), Ok(()));
        // Genesis's headers pass whatever body follows (the digest is
        // checked once it is read), and a chunked one (no length) too.
        assert_eq!(gate.check(Some(3), &signature, None, T0), Ok(()));
        // Unsigned, another key, another version, stale, or too large:
        // refused from the headers alone.
        assert_eq!(
            gate.check(Some(3), &Received::default(), Some(1 << 20), T0),
            Err(PushRefused::Denied(AuthError::Missing))
        );
        let mallory = Identity::from_seed([0x66; 32]);
        let forged = Received::from(&mallory.sign(&Message::push(Some(3), &body), T0));
        assert!(matches!(
            gate.check(Some(3), &forged, len, T0),
            Err(PushRefused::Denied(AuthError::WrongKey(_)))
        ));
        // Mallory names genesis's key: the signature does not verify.
        let mut borrowed = forged.clone();
        borrowed.signature_input = signature.signature_input.clone();
        assert_eq!(
            gate.check(Some(3), &borrowed, len, T0),
            Err(PushRefused::Denied(AuthError::BadSignature))
        );
        // Genesis's signature with another claimed digest.
        let mut other_digest = signature.clone();
        other_digest.content_digest = Some(plexus_core::auth::content_digest(b"[]"));
        assert_eq!(
            gate.check(Some(3), &other_digest, len, T0),
            Err(PushRefused::Denied(AuthError::BadSignature))
        );
        assert_eq!(
            gate.check(Some(4), &signature, len, T0),
            Err(PushRefused::Denied(AuthError::BadSignature))
        );
        assert!(matches!(
            gate.check(Some(3), &signature, len, T0 + Duration::from_secs(61)),
            Err(PushRefused::Denied(AuthError::Stale { .. }))
        ));
        let max = gate.max_bytes();
        assert_eq!(
            gate.check(Some(3), &signature, Some(max as u64 + 1), T0),
            Err(PushRefused::TooLarge {
                len: max as u64 + 1,
                max
            })
        );
        // The body that follows genesis's headers must be the one it signed.
        assert_eq!(
            m.handle_signed_push(b"[]", Some(3), &signature, T0),
            Err(PushRefused::Denied(AuthError::Digest))
        );
        assert_eq!(m.handle_signed_push(&body, Some(3), &signature, T0), Ok(()));
        assert_eq!(view_names(&m), ["PeerB"]);
    }

    #[test]
    fn without_a_known_genesis_key_no_push_is_taken() {
        let genesis = Genesis::new();
        let mut m = Membership::new(Some(keyed_config()), "h1".into());
        let (body, signature) = genesis.push(&[entry("PeerB", "")], 1, T0);
        assert_eq!(
            m.handle_signed_push(&body, Some(1), &signature, T0),
            Err(PushRefused::NoKey)
        );
        // A configured key needs no registration first.
        let mut config = keyed_config();
        config.genesis_key = Some(genesis.identity.public());
        let mut m = Membership::new(Some(config), "h1".into());
        assert_eq!(m.handle_signed_push(&body, Some(1), &signature, T0), Ok(()));
        assert_eq!(view_names(&m), ["PeerB"]);
    }

    #[test]
    fn a_configured_genesis_key_refuses_a_registration_answer_of_another_key() {
        let mut impostor = Genesis::new();
        impostor.identity = Identity::from_seed([0x66; 32]);
        let mut config = keyed_config();
        config.genesis_key = Some(Genesis::new().identity.public());
        let mut m = Membership::new(Some(config), "h1".into());
        join(&mut m, &mut impostor, T0);
        assert!(matches!(
            m.state(),
            State::Failed(FailReason::Unauthentic(_))
        ));
        assert!(matches!(
            events(&mut m).as_slice(),
            [Event::Failed(FailReason::Unauthentic(_))]
        ));
    }

    #[test]
    fn only_a_signed_newer_version_on_pings_fetches_the_list_and_only_a_signed_list_is_taken() {
        let mut genesis = Genesis::new();
        let mut m = Membership::new(Some(keyed_config()), "h1".into());
        join(&mut m, &mut genesis, T0);
        let id = m.id().expect("registered");
        let (body, signature) = genesis.push(&[entry("PeerB", "")], 1, T0);
        m.handle_signed_push(&body, Some(1), &signature, T0)
            .expect("taken");
        let mut now = T0;
        let mut ping = |m: &mut Membership, answer: Answer| {
            // The first ping went at registration; later ones when due.
            if let Some(at) = m.poll_timeout() {
                now = at;
                m.handle_timeout(now);
            }
            let _ = transmits(m);
            m.handle_ping_answer(Ok(answer), now);
            transmits(m)
        };
        // Unsigned (or forged) versions never make it fetch.
        for _ in 0..3 {
            let unsigned = Answer {
                version: Some(u64::MAX),
                ..Answer::default()
            };
            assert!(ping(&mut m, unsigned).is_empty());
        }
        // A version signed with genesis's key does, at the second ping that tells it.
        for _ in 0..3 {
            genesis.registry.handle_ping(id, "h1", T0).expect("known");
        }
        let signed = |genesis: &mut Genesis| Answer {
            signature: genesis
                .registry
                .ping_answer(&genesis.identity, T0)
                .as_ref()
                .into(),
            version: Some(genesis.registry.version()),
            ..Answer::default()
        };
        assert!(ping(&mut m, signed(&mut genesis)).is_empty());
        assert_eq!(ping(&mut m, signed(&mut genesis)), [Request::FetchPeers]);

        // A forged list is not taken, the real one is.
        let peers: Vec<Peer> = vec![Peer {
            id: PeerId(uuid::Uuid::from_u128(9)),
            peer_name: PeerName::new("PeerD").expect("name"),
            peer_uri: PeerUri::new("http://peerd.local").expect("uri"),
            last_contact_at: T0,
            schema_hash: Default::default(),
        }];
        let body = serde_json::to_vec(&peers).expect("json");
        let version = Some(genesis.registry.version());
        let message = Message::response(&body).with_version(version);
        let forged = Answer {
            signature: (&Identity::from_seed([0x66; 32]).sign(&message, T0)).into(),
            body: body.clone(),
            version,
            ..Answer::default()
        };
        m.handle_peers_answer(Ok(forged), T0);
        assert_eq!(view_names(&m), ["PeerB"]);
        assert!(ping(&mut m, signed(&mut genesis)).is_empty());
        assert_eq!(
            ping(&mut m, signed(&mut genesis)),
            [Request::FetchPeers],
            "fetches again"
        );
        let real = Answer {
            signature: (&genesis.identity.sign(&message, T0)).into(),
            body,
            version,
            ..Answer::default()
        };
        m.handle_peers_answer(Ok(real), T0);
        assert_eq!(view_names(&m), ["PeerD"]);
        assert_eq!(m.list_version(), version);
    }

    #[test]
    fn a_keyless_peer_signs_nothing() {
        let mut m = Membership::new(Some(config()), "h1".into());
        m.handle_start(T0);
        let requests = transmits(&mut m);
        let call = m.call(&requests[0], T0).expect("a call to genesis");
        assert_eq!(call.signature(), None);
        let _ = GenesisPush::Full(Vec::new());
    }
}
