#![allow(clippy::unwrap_used)]

use super::*;
use crate::auth::Identity;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> RelayConfig {
    RelayConfig {
        max_tabs: 3,
        max_in_flight: 2,
        max_body_bytes: 100,
        request_timeout: Duration::from_secs(5),
        hello_timeout: Duration::from_secs(2),
        max_signature_age: Duration::from_secs(60),
    }
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

fn hello(identity: &Identity, n: &str, nonce: &str, at: Timestamp) -> String {
    let path = tab_path(&name(n));
    let signature = identity.sign(&hello_message(&path, nonce), at);
    serde_json::to_string(&FromTab::hello(name(n), signature)).unwrap()
}

fn nobody(_: &PeerName, _: &PublicKey) -> bool {
    false
}

/// Connects `conn` and says hello as `n` with `identity`; returns the actions.
fn join(relay: &mut Relay, conn: u64, identity: &Identity, n: &str) -> Vec<Action> {
    let nonce = format!("nonce-{conn}");
    assert!(relay.handle_connect(ConnId(conn), nonce.clone(), T0));
    let challenge = drain(relay);
    assert_eq!(
        challenge,
        vec![Action::Send {
            conn: ConnId(conn),
            frame: ToTab::Challenge {
                nonce: nonce.clone()
            }
        }]
    );
    relay.handle_frame(ConnId(conn), &hello(identity, n, &nonce, T0), T0, nobody);
    drain(relay)
}

fn is_closed(actions: &[Action], conn: u64) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Close { conn: c, .. } if *c == ConnId(conn)))
}

fn sent_request(actions: &[Action]) -> RelayRequest {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send {
                frame: ToTab::Request(r),
                ..
            } => Some(r.clone()),
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
    let actions = join(&mut relay, 1, &tab, "TabA");
    assert_eq!(
        actions[0],
        Action::Send {
            conn: ConnId(1),
            frame: ToTab::Welcome {
                name: name("TabA"),
                path: "/relay/TabA".into()
            }
        }
    );
    assert!(matches!(&actions[1], Action::Joined { key, .. } if *key == tab.public()));
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
    let request = sent_request(&drain(&mut relay));
    assert_eq!(request.id, id);
    assert_eq!(request.path, "/v1/graphql");
    // Only the listed headers travel, in lower case.
    assert_eq!(
        request.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
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
    assert!(relay.handle_connect(ConnId(1), "fresh".into(), T0));
    relay.handle_frame(ConnId(1), &hello(&tab, "TabA", "old", T0), T0, nobody);
    assert!(is_closed(&drain(&mut relay), 1));
    assert_eq!(relay.names().count(), 0);

    // Signed for TabB, claiming TabA.
    assert!(relay.handle_connect(ConnId(2), "n".into(), T0));
    let path = tab_path(&name("TabB"));
    let signature = tab.sign(&hello_message(&path, "n"), T0);
    let forged = serde_json::to_string(&FromTab::hello(name("TabA"), signature)).unwrap();
    relay.handle_frame(ConnId(2), &forged, T0, nobody);
    assert!(is_closed(&drain(&mut relay), 2));

    // Too old.
    assert!(relay.handle_connect(ConnId(3), "n".into(), T0));
    let stale = hello(&tab, "TabA", "n", T0 - Duration::from_secs(120));
    relay.handle_frame(ConnId(3), &stale, T0, nobody);
    assert!(is_closed(&drain(&mut relay), 3));
    assert_eq!(relay.names().count(), 0);
    assert!(relay.is_empty());
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
    let request = drain(&mut relay);
    assert!(matches!(&request[0], Action::Send { conn, .. } if *conn == ConnId(3)));
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
    assert!(relay.handle_connect(ConnId(1), "n".into(), T0));
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
fn bounds_tabs_in_flight_and_body_sizes() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    assert!(relay.handle_connect(ConnId(2), "a".into(), T0));
    assert!(relay.handle_connect(ConnId(3), "b".into(), T0));
    drain(&mut relay);
    // The fourth connection is one too many.
    assert!(!relay.handle_connect(ConnId(4), "c".into(), T0));
    assert!(is_closed(&drain(&mut relay), 4));
    assert_eq!(relay.len(), 3);

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
fn requests_and_hellos_time_out() {
    let mut relay = Relay::new(config());
    let tab = Identity::from_seed([1; 32]);
    join(&mut relay, 1, &tab, "TabA");
    let id = relay
        .begin_request("TabA", "GET", "/p2p/ping", &[], b"", T0)
        .unwrap();
    assert!(relay.handle_connect(ConnId(2), "silent".into(), T0));
    drain(&mut relay);
    assert_eq!(relay.poll_timeout(), Some(T0 + Duration::from_secs(2)));

    relay.handle_timeout(T0 + Duration::from_secs(2));
    assert!(is_closed(&drain(&mut relay), 2));
    assert_eq!(relay.poll_timeout(), Some(T0 + Duration::from_secs(5)));
    relay.handle_timeout(T0 + Duration::from_millis(4_999));
    assert!(drain(&mut relay).is_empty());
    relay.handle_timeout(T0 + Duration::from_secs(5));
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
    assert!(relay.handle_connect(ConnId(1), "n".into(), T0));
    relay.handle_frame(ConnId(1), &response(1, 200, ""), T0, nobody);
    assert!(is_closed(&drain(&mut relay), 1));

    assert!(relay.handle_connect(ConnId(2), "n".into(), T0));
    relay.handle_frame(ConnId(2), "not json", T0, nobody);
    assert!(is_closed(&drain(&mut relay), 2));

    join(&mut relay, 3, &tab, "TabA");
    relay.handle_frame(ConnId(3), &hello(&tab, "TabA", "nonce-3", T0), T0, nobody);
    assert!(is_closed(&drain(&mut relay), 3));
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
