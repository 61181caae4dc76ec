#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use super::*;
use crate::auth::Identity;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> RelayConfig {
    RelayConfig {
        max_tabs: 3,
        max_sockets_per_address: 3,
        max_tabs_per_address: 3,
        max_in_flight: 2,
        max_body_bytes: 100,
        max_queue_bytes: 1000,
        request_timeout: Duration::from_secs(5),
        hello_timeout: Duration::from_secs(2),
        register_timeout: Duration::from_secs(3),
        max_signature_age: Duration::from_secs(60),
    }
}

/// Client address number `n`.
fn addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

fn name(n: &str) -> PeerName {
    PeerName::new(n).unwrap()
}

#[test]
fn the_socket_of_an_https_genesis_is_wss() {
    assert_eq!(socket_url("http://g:8111"), "ws://g:8111/relay");
    assert_eq!(socket_url("https://g:8111/"), "wss://g:8111/relay");
    assert_eq!(socket_url("HTTPS://g/base"), "wss://g/base/relay");
    assert_eq!(socket_url("ftp://g"), "ftp://g/relay");
}

fn drain(relay: &mut Relay) -> Vec<Action> {
    std::iter::from_fn(|| relay.poll_action()).collect()
}

/// What a shell does with the actions: every closed socket is dropped
/// (after its last frames); returns the actions.
fn settle(relay: &mut Relay) -> Vec<Action> {
    let actions = drain(relay);
    for action in &actions {
        if let Action::Close { conn, .. } = action {
            while let Some(Outgoing::Frame(_)) = relay.poll_frame(*conn) {
                relay.handle_written(*conn);
            }
            relay.handle_closed(*conn);
        }
    }
    actions
}

/// The frames the writer of `conn` sends now, each written at once.
fn written(relay: &mut Relay, conn: u64) -> Vec<ToTab> {
    let mut frames = Vec::new();
    while let Some(Outgoing::Frame(text)) = relay.poll_frame(ConnId(conn)) {
        frames.push(serde_json::from_str(&text).unwrap());
        relay.handle_written(ConnId(conn));
    }
    frames
}

fn hello(identity: &Identity, n: &str, nonce: &str, at: Timestamp) -> String {
    let path = tab_path(&name(n));
    let signature = identity.sign(&hello_message(&path, nonce), at);
    serde_json::to_string(&FromTab::hello(name(n), signature)).unwrap()
}

fn nobody(_: &PeerName, _: &PublicKey) -> bool {
    false
}

fn connect(relay: &mut Relay, conn: u64, nonce: &str) -> bool {
    relay
        .handle_connect(ConnId(conn), addr(1), nonce.into(), T0)
        .is_ok()
}

/// Connects `conn` from `client` and says hello as `n` with `identity`;
/// returns the actions and the frames written to it.
fn join_from(
    relay: &mut Relay,
    conn: u64,
    client: IpAddr,
    identity: &Identity,
    n: &str,
) -> (Vec<Action>, Vec<ToTab>) {
    let nonce = format!("nonce-{conn}");
    relay
        .handle_connect(ConnId(conn), client, nonce.clone(), T0)
        .unwrap();
    assert_eq!(drain(relay), vec![Action::Wake { conn: ConnId(conn) }]);
    assert_eq!(
        written(relay, conn),
        vec![ToTab::Challenge {
            nonce: nonce.clone()
        }]
    );
    relay.handle_frame(ConnId(conn), &hello(identity, n, &nonce, T0), T0, nobody);
    let actions = settle(relay);
    let frames = written(relay, conn);
    (actions, frames)
}

fn join(relay: &mut Relay, conn: u64, identity: &Identity, n: &str) -> Vec<Action> {
    join_from(relay, conn, addr(1), identity, n).0
}

fn is_closed(actions: &[Action], conn: u64) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Close { conn: c, .. } if *c == ConnId(conn)))
}

fn sent_request(relay: &mut Relay, conn: u64) -> RelayRequest {
    written(relay, conn)
        .into_iter()
        .find_map(|f| match f {
            ToTab::Request(r) => Some(r),
            _ => None,
        })
        .unwrap()
}

fn response(id: u64, status: u16, body: &str) -> String {
    serde_json::to_string(&FromTab::Response(RelayResponse {
        id,
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("set-cookie".into(), "x=1".into()),
        ],
        body: body.into(),
    }))
    .unwrap()
}

#[test]
fn a_tab_that_proves_its_key_is_welcomed_and_answers_requests() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    let (actions, frames) = join_from(&mut relay, 1, addr(1), &tab, "TabA");
    assert_eq!(
        frames,
        vec![ToTab::Welcome {
            name: name("TabA"),
            path: "/relay/TabA".into()
        }]
    );
    assert!(
        matches!(&actions[..], [Action::Wake { .. }, Action::Joined { key, .. }] if *key == tab.public())
    );
    assert_eq!(relay.names().collect::<Vec<_>>(), vec![&name("TabA")]);

    let id = relay
        .begin_request(
            "TabA",
            "POST",
            "/v1/graphql",
            &[("Content-Type", "application/json"), ("Cookie", "secret")],
            b"{}",
            T0,
        )
        .unwrap();
    assert_eq!(drain(&mut relay), vec![Action::Wake { conn: ConnId(1) }]);
    let request = sent_request(&mut relay, 1);
    assert_eq!(request.id, id);
    assert_eq!(request.path, "/v1/graphql");
    // Only the listed headers travel, in lower case.
    assert_eq!(
        request.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
    assert_eq!(relay.queued_bytes(), 0);
    relay.handle_frame(ConnId(1), &response(id, 200, "{\"data\":1}"), T0, nobody);
    let done = drain(&mut relay);
    let [
        Action::Complete {
            id: got,
            result: Ok(answer),
        },
    ] = done.as_slice()
    else {
        panic!("{done:?}")
    };
    assert_eq!(*got, id);
    assert_eq!(answer.body, "{\"data\":1}");
    assert_eq!(
        answer.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
    assert_eq!(relay.in_flight(), 0);
}

#[test]
fn a_hello_signed_for_another_nonce_name_or_time_is_refused() {
    let tab = Identity::from_seed([1; 32]);
    // Replayed from another connection (another nonce).
    let mut relay = Relay::new(config());
    assert!(connect(&mut relay, 1, "fresh"));
    relay.handle_frame(ConnId(1), &hello(&tab, "TabA", "old", T0), T0, nobody);
    assert!(is_closed(&settle(&mut relay), 1));
    assert_eq!(relay.names().count(), 0);

    // Signed for TabB, claiming TabA.
    assert!(connect(&mut relay, 2, "n"));
    let path = tab_path(&name("TabB"));
    let signature = tab.sign(&hello_message(&path, "n"), T0);
    let forged = serde_json::to_string(&FromTab::hello(name("TabA"), signature)).unwrap();
    relay.handle_frame(ConnId(2), &forged, T0, nobody);
    assert!(is_closed(&settle(&mut relay), 2));

    // Too old.
    assert!(connect(&mut relay, 3, "n"));
    let stale = hello(&tab, "TabA", "n", T0 - Duration::from_secs(120));
    relay.handle_frame(ConnId(3), &stale, T0, nobody);
    assert!(is_closed(&settle(&mut relay), 3));
    assert_eq!(relay.names().count(), 0);
    assert!(relay.is_empty());
}

#[test]
fn a_refused_socket_writes_its_refusal_then_closes_and_keeps_its_slot_until_gone() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    assert!(connect(&mut relay, 1, "fresh"));
    drain(&mut relay);
    // The challenge is still queued when the refusal comes: it is dropped.
    relay.handle_frame(ConnId(1), "not json", T0, nobody);
    assert!(is_closed(&drain(&mut relay), 1));
    let Some(Outgoing::Frame(last)) = relay.poll_frame(ConnId(1)) else {
        panic!("no refusal");
    };
    assert!(matches!(
        serde_json::from_str(&last).unwrap(),
        ToTab::Refused { .. }
    ));
    relay.handle_written(ConnId(1));
    assert_eq!(relay.poll_frame(ConnId(1)), Some(Outgoing::Close));
    // Frames that still arrive are ignored; the socket still counts.
    relay.handle_frame(ConnId(1), &hello(&tab, "TabA", "fresh", T0), T0, nobody);
    assert_eq!(relay.names().count(), 0);
    assert_eq!(relay.len(), 1);
    relay.handle_closed(ConnId(1));
    assert!(relay.is_empty());
    assert_eq!(relay.poll_frame(ConnId(1)), None);
}

#[test]
fn a_second_key_cannot_take_a_connected_name_but_the_same_key_takes_over() {
    let mut relay = Relay::new(config());
    let first = Identity::from_seed([1; 32]);
    let thief = Identity::from_seed([2; 32]);
    join(&mut relay, 1, &first, "TabA");
    let id = relay
        .begin_request("TabA", "GET", "/v1/schema", &[], b"", T0)
        .unwrap();
    drain(&mut relay);

    let actions = join(&mut relay, 2, &thief, "TabA");
    assert!(is_closed(&actions, 2));
    assert!(!is_closed(&actions, 1));
    // The thief cannot answer the first tab's request either.
    relay.handle_frame(ConnId(2), &response(id, 200, "stolen"), T0, nobody);
    assert!(drain(&mut relay).is_empty());
    assert_eq!(relay.in_flight(), 1);

    // A reload: the same key on a new socket replaces the old one, whose
    // request fails at once.
    let actions = join(&mut relay, 3, &first, "TabA");
    assert!(is_closed(&actions, 1));
    assert!(actions.contains(&Action::Complete {
        id,
        result: Err(RelayError::Gone)
    }));
    let id = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    assert_eq!(drain(&mut relay), vec![Action::Wake { conn: ConnId(3) }]);
    assert_eq!(sent_request(&mut relay, 3).id, id);
    relay.handle_frame(ConnId(3), &response(id, 200, ""), T0, nobody);
    assert!(matches!(
        &drain(&mut relay)[0],
        Action::Complete { result: Ok(_), .. }
    ));
}

#[test]
fn a_name_genesis_holds_for_another_key_is_refused() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    assert!(connect(&mut relay, 1, "n"));
    let mut asked = None;
    relay.handle_frame(ConnId(1), &hello(&tab, "TabA", "n", T0), T0, |n, k| {
        asked = Some((n.clone(), *k));
        true
    });
    assert_eq!(asked, Some((name("TabA"), tab.public())));
    assert!(is_closed(&drain(&mut relay), 1));
    assert_eq!(relay.names().count(), 0);
}

#[test]
fn bounds_sockets_per_relay_and_per_address_and_tabs_per_address() {
    let mut relay = Relay::new(RelayConfig {
        max_tabs: 5,
        max_sockets_per_address: 3,
        max_tabs_per_address: 2,
        ..config()
    });
    for conn in 1..=3 {
        assert!(connect(&mut relay, conn, "n"));
    }
    // A fourth socket from the same address is refused before it is kept.
    assert_eq!(
        relay.handle_connect(ConnId(4), addr(1), "n".into(), T0),
        Err(ConnectRefused::TooManyFromAddress { max: 3 })
    );
    assert_eq!(ConnectRefused::TooManyFromAddress { max: 3 }.status(), 429);
    assert_eq!(relay.len(), 3);
    // Others still get in, up to the relay's bound.
    relay
        .handle_connect(ConnId(5), addr(2), "n".into(), T0)
        .unwrap();
    relay
        .handle_connect(ConnId(6), addr(3), "n".into(), T0)
        .unwrap();
    let full = relay
        .handle_connect(ConnId(7), addr(4), "n".into(), T0)
        .unwrap_err();
    assert_eq!(full, ConnectRefused::Full { max: 5 });
    assert_eq!(full.status(), 503);
    // A closed socket gives its slot back, to its address too.
    relay.handle_closed(ConnId(1));
    relay
        .handle_connect(ConnId(8), addr(1), "n".into(), T0)
        .unwrap();
    relay.handle_closed(ConnId(8));
    relay.handle_closed(ConnId(2));
    relay.handle_closed(ConnId(3));
    drain(&mut relay);

    // Two tabs from one address; a third, with yet another key, is refused.
    let keys: Vec<Identity> = (1..=3).map(|i| Identity::from_seed([i; 32])).collect();
    assert!(!is_closed(&join(&mut relay, 10, &keys[0], "TabA"), 10));
    assert!(!is_closed(&join(&mut relay, 11, &keys[1], "TabB"), 11));
    let actions = join(&mut relay, 12, &keys[2], "TabC");
    assert!(is_closed(&actions, 12));
    assert_eq!(relay.names().count(), 2);
    // A reload of one of them from the same address still takes over.
    let actions = join(&mut relay, 13, &keys[0], "TabA");
    assert!(is_closed(&actions, 10));
    assert!(!is_closed(&actions, 13));
    assert_eq!(relay.names().count(), 2);
}

#[test]
fn bounds_in_flight_and_body_sizes() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    let big = vec![b'x'; 101];
    assert_eq!(
        relay.begin_request("TabA", "POST", "/v1/graphql", &[], &big, T0),
        Err(RelayError::RequestTooLarge {
            size: 101,
            max: 100
        })
    );
    assert_eq!(
        relay
            .begin_request("TabA", "POST", "/v1/graphql", &[], &[0xff, 0xfe], T0)
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        relay
            .begin_request("TabA", "GET", "//evil", &[], b"", T0)
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        relay.begin_request("Nobody", "GET", "/p2p/ping", &[], b"", T0),
        Err(RelayError::NoTab("Nobody".into()))
    );
    let a = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    let busy = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap_err();
    assert_eq!(busy.status(), 503);
    drain(&mut relay);
    // An answer that is too large fails with 502, and frees its slot.
    relay.handle_frame(ConnId(1), &response(a, 200, &"y".repeat(101)), T0, nobody);
    let done = drain(&mut relay);
    assert_eq!(
        done,
        vec![Action::Complete {
            id: a,
            result: Err(RelayError::ResponseTooLarge { max: 100 })
        }]
    );
    assert!(
        relay
            .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
            .is_ok()
    );
    // A frame far beyond the body bound closes the socket.
    relay.handle_frame(ConnId(1), &"z".repeat(10_000), T0, nobody);
    assert!(is_closed(&drain(&mut relay), 1));
}

#[test]
fn only_final_statuses_pass_and_204_and_304_carry_no_body() {
    let mut relay = Relay::new(RelayConfig {
        max_in_flight: 10,
        ..config()
    });
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    for (status, ok, body) in [
        (100, false, ""),
        (101, false, ""),
        (199, false, ""),
        (200, true, "x"),
        (204, true, ""),
        (304, true, ""),
        (404, true, "x"),
        (599, true, "x"),
        (600, false, ""),
        (0, false, ""),
    ] {
        let id = relay
            .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
            .unwrap();
        written(&mut relay, 1);
        drain(&mut relay);
        relay.handle_frame(ConnId(1), &response(id, status, "x"), T0, nobody);
        match &drain(&mut relay)[..] {
            [Action::Complete { result: Ok(r), .. }] if ok => {
                assert_eq!((r.status, r.body.as_str()), (status, body));
            }
            [Action::Complete { result: Err(e), .. }] if !ok => {
                assert_eq!(*e, RelayError::BadStatus(status));
                assert_eq!(e.status(), 502);
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    assert!(!status_has_body(204) && !status_has_body(304) && status_has_body(200));
}

#[test]
fn the_send_queue_is_bounded_in_bytes_and_a_tab_that_never_reads_is_dropped() {
    let mut relay = Relay::new(RelayConfig {
        max_in_flight: 100,
        max_queue_bytes: 500,
        ..config()
    });
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    // The tab reads nothing: the first frame goes to its writer and stays.
    let body = [1u8; 40];
    let first = relay
        .begin_request("TabA", "POST", "/v1/graphql", &[], &body, T0)
        .unwrap();
    let Some(Outgoing::Frame(writing)) = relay.poll_frame(ConnId(1)) else {
        panic!("no frame")
    };
    // JSON turns each \x01 into six bytes: the frame is counted as sent.
    assert!(writing.len() > 300, "{}", writing.len());
    assert_eq!(relay.queued_bytes(), writing.len());
    assert_eq!(relay.poll_frame(ConnId(1)), None);
    // The next frame does not fit beside it: 503, and no id is spent.
    let full = relay
        .begin_request("TabA", "POST", "/v1/graphql", &[], &body, T0)
        .unwrap_err();
    assert_eq!(full.status(), 503);
    assert!(matches!(full, RelayError::QueueFull { max: 500, .. }));
    // Small ones still fit, and leave the queue when their callers go.
    let small = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    assert!(relay.queued_bytes() > writing.len());
    relay.cancel(small);
    assert_eq!(relay.queued_bytes(), writing.len());
    drain(&mut relay);
    // The queue stayed full for the request timeout: the tab is dropped.
    let at = T0 + Duration::from_secs(5);
    assert_eq!(relay.poll_timeout(), Some(T0 + Duration::from_secs(3)));
    relay.handle_timeout(T0 + Duration::from_secs(3), |_, _| true);
    assert!(drain(&mut relay).is_empty());
    assert_eq!(relay.poll_timeout(), Some(at));
    relay.handle_timeout(at, |_, _| true);
    let actions = drain(&mut relay);
    assert!(is_closed(&actions, 1), "{actions:?}");
    assert!(actions.contains(&Action::Complete {
        id: first,
        result: Err(RelayError::Gone)
    }));
    assert_eq!(relay.names().count(), 0);
    // The frame in the writer's hands is the last that counts.
    relay.handle_written(ConnId(1));
    assert_eq!(relay.queued_bytes(), 0);
}

#[test]
fn progress_clears_a_full_queue_and_expired_requests_leave_the_queue() {
    let mut relay = Relay::new(RelayConfig {
        max_in_flight: 100,
        max_queue_bytes: 500,
        ..config()
    });
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    let body = [1u8; 40];
    relay
        .begin_request("TabA", "POST", "/v1/graphql", &[], &body, T0)
        .unwrap();
    let queued = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    assert!(matches!(
        relay.poll_frame(ConnId(1)),
        Some(Outgoing::Frame(_))
    ));
    let later = T0 + Duration::from_secs(1);
    assert!(
        relay
            .begin_request("TabA", "POST", "/v1/graphql", &[], &body, later)
            .is_err()
    );
    // The writer wrote its frame: the queue is no longer stuck.
    relay.handle_written(ConnId(1));
    relay.handle_timeout(T0 + Duration::from_secs(3), |_, _| true);
    drain(&mut relay);
    // The queued request expires: its frame goes with it, unsent.
    relay.handle_timeout(T0 + Duration::from_secs(5), |_, _| true);
    let actions = drain(&mut relay);
    assert!(!is_closed(&actions, 1));
    assert!(actions.contains(&Action::Complete {
        id: queued,
        result: Err(RelayError::Timeout(Duration::from_secs(5)))
    }));
    assert_eq!(relay.queued_bytes(), 0);
    assert_eq!(relay.poll_frame(ConnId(1)), None);
}

#[test]
fn a_reservation_holds_its_declared_bytes_before_the_body_is_read() {
    let mut relay = Relay::new(RelayConfig {
        max_in_flight: 100,
        max_queue_bytes: 500,
        ..config()
    });
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    // Declared over the body bound: 413 before anything is read.
    assert_eq!(
        relay.reserve("TabA", "/v1/graphql", 101, T0),
        Err(RelayError::RequestTooLarge {
            size: 101,
            max: 100
        })
    );
    // Bodies of 90 declared bytes take their room at once, up to the
    // queue's bound.
    let a = relay.reserve("TabA", "/v1/graphql", 90, T0).unwrap();
    let b = relay.reserve("TabA", "/v1/graphql", 90, T0).unwrap();
    assert_eq!(relay.queued_bytes(), 180);
    let _c = relay.reserve("TabA", "/v1/graphql", 90, T0).unwrap();
    let _d = relay.reserve("TabA", "/v1/graphql", 90, T0).unwrap();
    let _e = relay.reserve("TabA", "/v1/graphql", 90, T0).unwrap();
    assert!(matches!(
        relay.reserve("TabA", "/v1/graphql", 90, T0),
        Err(RelayError::QueueFull { .. })
    ));
    // A caller that goes before its body is read gives its room back.
    relay.cancel(b);
    assert_eq!(relay.queued_bytes(), 360);
    // The body comes: its frame replaces its reservation.
    relay
        .send_request(a, "POST", "/v1/graphql", &[], &[b'x'; 90], T0)
        .unwrap();
    assert_eq!(drain(&mut relay), vec![Action::Wake { conn: ConnId(1) }]);
    let request = sent_request(&mut relay, 1);
    assert_eq!((request.id, request.body.len()), (a, 90));
    assert_eq!(relay.queued_bytes(), 270);
    // A cancelled request cannot be sent.
    assert_eq!(
        relay.send_request(b, "POST", "/v1/graphql", &[], b"", T0),
        Err(RelayError::Gone)
    );
    // Reservations expire like requests, and give their room back.
    relay.handle_timeout(T0 + Duration::from_secs(3), |_, _| true);
    relay.handle_timeout(T0 + Duration::from_secs(5), |_, _| true);
    assert_eq!(relay.queued_bytes(), 0);
    assert_eq!(relay.in_flight(), 0);
}

#[test]
fn requests_hellos_and_registrations_time_out() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    let late = Identity::from_seed([2; 32]);
    join(&mut relay, 1, &tab, "TabA");
    join(&mut relay, 3, &late, "TabB");
    let id = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    assert!(connect(&mut relay, 2, "silent"));
    drain(&mut relay);
    assert_eq!(relay.poll_timeout(), Some(T0 + Duration::from_secs(2)));

    let registered = |n: &PeerName, k: &PublicKey| n.as_str() == "TabA" && *k == tab.public();
    relay.handle_timeout(T0 + Duration::from_secs(2), registered);
    assert!(is_closed(&settle(&mut relay), 2));
    // At its registration deadline TabA is registered, TabB (its key) not.
    assert_eq!(relay.poll_timeout(), Some(T0 + Duration::from_secs(3)));
    relay.handle_timeout(T0 + Duration::from_secs(3), registered);
    let actions = settle(&mut relay);
    assert!(is_closed(&actions, 3) && !is_closed(&actions, 1));
    assert_eq!(relay.names().collect::<Vec<_>>(), vec![&name("TabA")]);
    assert_eq!(relay.poll_timeout(), Some(T0 + Duration::from_secs(5)));
    relay.handle_timeout(T0 + Duration::from_millis(4_999), registered);
    assert!(drain(&mut relay).is_empty());
    relay.handle_timeout(T0 + Duration::from_secs(5), registered);
    let done = drain(&mut relay);
    assert_eq!(
        done,
        vec![Action::Complete {
            id,
            result: Err(RelayError::Timeout(Duration::from_secs(5)))
        }]
    );
    assert_eq!(RelayError::Timeout(Duration::ZERO).status(), 504);
    // A late answer is dropped.
    relay.handle_frame(ConnId(1), &response(id, 200, ""), T0, nobody);
    assert!(drain(&mut relay).is_empty());
    assert_eq!(relay.poll_timeout(), None);
}

#[test]
fn a_dropped_socket_fails_its_requests_at_once_and_frees_the_name() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    let a = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    let b = relay
        .begin_request("TabA", "GET", "/v1/schema", &[], b"", T0)
        .unwrap();
    drain(&mut relay);
    relay.handle_closed(ConnId(1));
    assert_eq!(
        drain(&mut relay),
        vec![
            Action::Complete {
                id: a,
                result: Err(RelayError::Gone)
            },
            Action::Complete {
                id: b,
                result: Err(RelayError::Gone)
            },
        ]
    );
    assert_eq!(relay.in_flight(), 0);
    assert!(relay.is_empty());
    assert_eq!(relay.queued_bytes(), 0);
    assert_eq!(
        relay.begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0),
        Err(RelayError::NoTab("TabA".into()))
    );
    // Another key may now take the name at the relay.
    let other = Identity::from_seed([2; 32]);
    let actions = join(&mut relay, 2, &other, "TabA");
    assert!(!is_closed(&actions, 2));
}

#[test]
fn protocol_breaches_close_the_socket() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    assert!(connect(&mut relay, 1, "n"));
    relay.handle_frame(ConnId(1), &response(1, 200, ""), T0, nobody);
    assert!(is_closed(&settle(&mut relay), 1));

    assert!(connect(&mut relay, 2, "n"));
    relay.handle_frame(ConnId(2), "not json", T0, nobody);
    assert!(is_closed(&settle(&mut relay), 2));

    join(&mut relay, 3, &tab, "TabA");
    relay.handle_frame(ConnId(3), &hello(&tab, "TabA", "nonce-3", T0), T0, nobody);
    assert!(is_closed(&settle(&mut relay), 3));
    assert!(relay.is_empty());
}

#[test]
fn frames_have_the_documented_shape() {
    let frame = ToTab::Request(RelayRequest {
        id: 7,
        method: "GET".into(),
        path: "/p2p/ping".into(),
        headers: vec![],
        body: String::new(),
    });
    assert_eq!(
        serde_json::to_value(&frame).unwrap(),
        serde_json::json!({"type": "request", "id": 7, "method": "GET", "path": "/p2p/ping", "headers": [], "body": ""})
    );
    let hello: FromTab = serde_json::from_str(
        r#"{"type":"hello","name":"TabA","signatureInput":"i","signature":"s","contentDigest":"d"}"#,
    )
    .unwrap();
    assert!(matches!(hello, FromTab::Hello { name: n, .. } if n.as_str() == "TabA"));
    assert_eq!(
        tab_uri("http://127.0.0.1:8111/", &name("TabA")),
        "http://127.0.0.1:8111/relay/TabA"
    );
}

#[test]
fn a_registered_tab_that_genesis_evicts_or_that_leaves_loses_its_socket_and_slot() {
    let mut relay = Relay::new(config());
    let ids: Vec<Identity> = (1..=4).map(|n| Identity::from_seed([n; 32])).collect();
    join(&mut relay, 1, &ids[0], "TabA");
    join(&mut relay, 2, &ids[1], "TabB");
    join(&mut relay, 3, &ids[2], "TabC");
    // TabA and TabB register (the list changes for them): confirmed at
    // once, before their deadline. TabC registers later, at its deadline.
    let mut listed = vec!["TabA", "TabB"];
    relay.handle_list_changed(Some(&name("TabA")), lists(&listed));
    relay.handle_list_changed(Some(&name("TabB")), lists(&listed));
    assert!(drain(&mut relay).is_empty());
    listed.push("TabC");
    relay.handle_timeout(T0 + Duration::from_secs(3), lists(&listed));
    assert!(settle(&mut relay).is_empty());
    // Every slot is taken.
    assert!(!connect(&mut relay, 4, "full"));
    let ping = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    drain(&mut relay);

    // Genesis evicts TabA (silent pings): its socket is refused and closed,
    // its request fails, its name and its slot are free; the others stay.
    listed.retain(|n| *n != "TabA");
    relay.handle_list_changed(Some(&name("TabA")), lists(&listed));
    let actions = drain(&mut relay);
    assert!(
        is_closed(&actions, 1) && !is_closed(&actions, 2),
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Complete {
        id: ping,
        result: Err(RelayError::Gone)
    }));
    match written(&mut relay, 1).as_slice() {
        [ToTab::Refused { message }] => assert!(message.contains("no longer registered")),
        other => panic!("{other:?}"),
    }
    assert_eq!(relay.poll_frame(ConnId(1)), Some(Outgoing::Close));
    relay.handle_closed(ConnId(1));
    assert_eq!(relay.names().count(), 2);
    assert!(matches!(
        relay.begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0),
        Err(RelayError::NoTab(_))
    ));
    // Its slot is free: a new tab fits.
    join(&mut relay, 4, &ids[3], "TabD");
    assert_eq!(relay.len(), 3);

    // A change after which the name is listed again under the tab's key
    // (a new registration came first) keeps the socket; so does one of a
    // name no tab holds, and one of a tab not yet registered (TabD: left
    // to its deadline).
    relay.handle_list_changed(Some(&name("TabB")), lists(&listed));
    relay.handle_list_changed(Some(&name("Nobody")), lists(&listed));
    relay.handle_list_changed(Some(&name("TabD")), lists(&listed));
    assert!(drain(&mut relay).is_empty());

    // Missed changes (None): every tab is checked; TabC left.
    listed.retain(|n| *n != "TabC");
    relay.handle_list_changed(None, lists(&listed));
    let actions = settle(&mut relay);
    assert!(is_closed(&actions, 3), "{actions:?}");
    assert!(
        !is_closed(&actions, 2) && !is_closed(&actions, 4),
        "{actions:?}"
    );
    let mut names: Vec<&PeerName> = relay.names().collect();
    names.sort();
    assert_eq!(names, vec![&name("TabB"), &name("TabD")]);
}

/// A registry that lists `names` (under whatever key asks).
fn lists<'a>(names: &'a [&'a str]) -> impl FnMut(&PeerName, &PublicKey) -> bool + 'a {
    move |n, _| names.contains(&n.as_str())
}
