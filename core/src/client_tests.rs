//! Every reading of genesis's answers, and every call as it is built.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::auth::{AuthError, Authority, Expect, Identity, Message};
use crate::names::{PeerName, PeerUri};
use crate::wire::{ChangeKind, Contextionary, GenesisPush, PeerDelta, PeerListEntry};

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const AGE: Duration = auth::DEFAULT_MAX_AGE;

fn genesis() -> Identity {
    Identity::from_seed([0x9e; 32])
}

fn peer(id: u128) -> Peer {
    Peer {
        id: PeerId(uuid::Uuid::from_u128(id)),
        peer_name: PeerName::new("PeerA").expect("name"),
        peer_uri: PeerUri::new("http://127.0.0.1:8081").expect("uri"),
        last_contact_at: NOW,
        schema_hash: "h1".into(),
    }
}

fn registration_body() -> Vec<u8> {
    serde_json::to_vec(&PeerRegistrationResponse {
        peer: peer(7),
        contextionary: Contextionary {
            url: "http://c/c.bin".into(),
            hash: "sha256:ab".parse().expect("hash"),
        },
    })
    .expect("json")
}

/// Reads a reply given as header pairs, as a host hands it over.
fn read(status: u16, headers: &[(&str, String)], body: &[u8]) -> Result<Answer, CallError> {
    read_answer(
        status,
        |name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        },
        Ok(body.to_vec()),
    )
}

/// Genesis's headers of an answer: its signature of `body` (and `version`).
fn signed(body: &[u8], version: Option<u64>, by: &Identity) -> Vec<(&'static str, String)> {
    let message = Message::response(body).with_version(version);
    let signature = by.sign(&message, NOW);
    let mut headers: Vec<(&'static str, String)> = signature
        .pairs()
        .iter()
        .map(|(n, v)| (*n, (*v).to_owned()))
        .collect();
    if let Some(version) = version {
        headers.push((PEERS_VERSION_HEADER, version.to_string()));
    }
    headers
}

fn session() -> SessionKey {
    Authority::of(&genesis()).session_key(PeerId(uuid::Uuid::from_u128(7)))
}

// ---- statuses ----

#[test]
fn each_status_means_one_call_error() {
    let body = br#"{"error": {"message": "cannot reach you"}}"#;
    let cases: [(u16, CallError); 7] = [
        (400, CallError::Unreachable("cannot reach you".into())),
        (403, CallError::Forbidden("cannot reach you".into())),
        (404, CallError::NotFound),
        (409, CallError::Invalid("cannot reach you".into())),
        (422, CallError::Invalid("cannot reach you".into())),
        (500, CallError::Transport("cannot reach you".into())),
        (503, CallError::Transport("cannot reach you".into())),
    ];
    for (status, expected) in cases {
        assert_eq!(read(status, &[], body), Err(expected), "{status}");
    }
    // A body that is not genesis's error body: the status names it.
    assert_eq!(
        read(502, &[], b"<html>bad gateway</html>"),
        Err(CallError::Transport("HTTP 502".into()))
    );
    // A redirect is no success (the clients follow none).
    assert!(matches!(read(302, &[], b""), Err(CallError::Transport(_))));
    for status in [200, 201, 204] {
        assert!(read(status, &[], b"").is_ok(), "{status}");
    }
}

#[test]
fn a_body_that_could_not_be_read_fails_a_success_but_not_a_refusal() {
    let header = |_: &str| None;
    assert_eq!(
        read_answer(200, header, Err("over --max-list-bytes".into())),
        Err(CallError::Transport("over --max-list-bytes".into()))
    );
    assert_eq!(
        read_answer(403, header, Err("cut off".into())),
        Err(CallError::Forbidden("HTTP 403".into()))
    );
}

// ---- headers ----

#[test]
fn the_version_header_is_a_number_or_nothing() {
    assert_eq!(read_version(Some("42")), Some(42));
    assert_eq!(read_version(Some(" 42 ")), Some(42));
    for bad in ["", "x", "-1", "1.5", "0x10", "18446744073709551616"] {
        assert_eq!(read_version(Some(bad)), None, "{bad:?}");
    }
    assert_eq!(read_version(None), None);
    let answer = read(200, &[(PEERS_VERSION_HEADER, "7".into())], b"").expect("ok");
    assert_eq!(answer.version, Some(7));
    let answer = read(200, &[(PEERS_VERSION_HEADER, "seven".into())], b"").expect("ok");
    assert_eq!(answer.version, None);
}

#[test]
fn a_success_keeps_its_signature_and_session_key() {
    let body = registration_body();
    let mut headers = signed(&body, None, &genesis());
    headers.push((SESSION_KEY_HEADER, session().to_string()));
    let answer = read(200, &headers, &body).expect("ok");
    assert_eq!(answer.body, body);
    assert!(!answer.signature.is_unsigned());
    assert_eq!(answer.session_key, Some(session().to_string()));
}

// ---- registration ----

fn registration_answer(body: &[u8], by: &Identity, session_key: Option<String>) -> Answer {
    let mut headers = signed(body, None, by);
    if let Some(key) = session_key {
        headers.push((SESSION_KEY_HEADER, key));
    }
    read(200, &headers, body).expect("a success")
}

#[test]
fn a_registration_is_taken_signed_with_its_session_key() {
    let answer = registration_answer(
        &registration_body(),
        &genesis(),
        Some(session().to_string()),
    );
    let registered = answer
        .registration(Expect::AnyKey, true, NOW, AGE)
        .expect("taken");
    assert_eq!(registered.response.peer, peer(7));
    assert_eq!(registered.key, Some(genesis().public()));
    assert_eq!(registered.session, Some(session()));
    // Under the configured key too.
    let key = genesis().public();
    assert!(
        answer
            .registration(Expect::Key(&key), true, NOW, AGE)
            .is_ok()
    );
    // A keyless registration keeps no session key, even when one came.
    let keyless = answer
        .registration(Expect::AnyKey, false, NOW, AGE)
        .expect("taken");
    assert_eq!(keyless.session, None);
}

#[test]
fn a_registration_signed_by_another_key_is_unauthentic() {
    let answer = registration_answer(
        &registration_body(),
        &Identity::from_seed([1; 32]),
        Some(session().to_string()),
    );
    let key = genesis().public();
    assert!(matches!(
        answer.registration(Expect::Key(&key), true, NOW, AGE),
        Err(RegistrationError::Unauthentic(AuthError::WrongKey(_)))
    ));
}

#[test]
fn an_unsigned_or_altered_or_stale_registration_is_unauthentic() {
    let body = registration_body();
    let unsigned = read(200, &[(SESSION_KEY_HEADER, session().to_string())], &body).expect("ok");
    assert_eq!(
        unsigned.registration(Expect::AnyKey, true, NOW, AGE),
        Err(RegistrationError::Unauthentic(AuthError::Missing))
    );
    let mut altered = registration_answer(&body, &genesis(), Some(session().to_string()));
    altered.body = registration_body().repeat(1);
    altered.body.push(b' ');
    assert_eq!(
        altered.registration(Expect::AnyKey, true, NOW, AGE),
        Err(RegistrationError::Unauthentic(AuthError::Digest))
    );
    let answer = registration_answer(&body, &genesis(), Some(session().to_string()));
    let later = NOW + AGE + Duration::from_secs(1);
    assert!(matches!(
        answer.registration(Expect::AnyKey, true, later, AGE),
        Err(RegistrationError::Unauthentic(AuthError::Stale { .. }))
    ));
}

#[test]
fn a_keyed_registration_without_a_valid_session_key_is_not_taken() {
    for session_key in [None, Some("not hex".to_owned()), Some("ab".repeat(31))] {
        let answer = registration_answer(&registration_body(), &genesis(), session_key.clone());
        assert_eq!(
            answer.registration(Expect::AnyKey, true, NOW, AGE),
            Err(RegistrationError::NoSessionKey),
            "{session_key:?}"
        );
        // A keyless peer needs none.
        assert!(answer.registration(Expect::AnyKey, false, NOW, AGE).is_ok());
    }
}

#[test]
fn a_signed_registration_that_is_not_one_is_invalid() {
    let body = br#"{"peer": 1}"#;
    let answer = registration_answer(body, &genesis(), Some(session().to_string()));
    assert!(matches!(
        answer.registration(Expect::AnyKey, true, NOW, AGE),
        Err(RegistrationError::Invalid(_))
    ));
}

// ---- ping ----

#[test]
fn a_pings_version_counts_only_under_genesiss_signature() {
    let key = genesis().public();
    let answer = read(200, &signed(b"", Some(9), &genesis()), b"").expect("ok");
    assert_eq!(answer.signed_version(&key, NOW, AGE), Some(9));
    // Signed by another key.
    let other = read(
        200,
        &signed(b"", Some(9), &Identity::from_seed([1; 32])),
        b"",
    )
    .expect("ok");
    assert_eq!(other.signed_version(&key, NOW, AGE), None);
    // A version header changed on the way: the signature covers it.
    let mut headers = signed(b"", Some(9), &genesis());
    headers.retain(|(n, _)| *n != PEERS_VERSION_HEADER);
    headers.push((PEERS_VERSION_HEADER, "10".into()));
    let moved = read(200, &headers, b"").expect("ok");
    assert_eq!(moved.signed_version(&key, NOW, AGE), None);
    // A bad version header: no version to count.
    headers.retain(|(n, _)| *n != PEERS_VERSION_HEADER);
    headers.push((PEERS_VERSION_HEADER, "nine".into()));
    let bad = read(200, &headers, b"").expect("ok");
    assert_eq!(bad.signed_version(&key, NOW, AGE), None);
    // Unsigned (a keyless peer's answer).
    let unsigned = read(200, &[(PEERS_VERSION_HEADER, "9".into())], b"").expect("ok");
    assert_eq!(unsigned.version, Some(9));
    assert_eq!(unsigned.signed_version(&key, NOW, AGE), None);
}

// ---- peer list ----

#[test]
fn a_peer_list_is_taken_under_genesiss_key_or_read_unchecked() {
    let key = genesis().public();
    let body = serde_json::to_vec(&[peer(1), peer(2)]).expect("json");
    let answer = read(200, &signed(&body, Some(4), &genesis()), &body).expect("ok");
    assert_eq!(
        answer.peer_list(&key, NOW, AGE),
        Ok((vec![peer(1), peer(2)], Some(4)))
    );
    let forged = read(
        200,
        &signed(&body, Some(4), &Identity::from_seed([1; 32])),
        &body,
    )
    .expect("ok");
    assert!(matches!(
        forged.peer_list(&key, NOW, AGE),
        Err(CallError::Forbidden(_))
    ));
    // A dashboard reads what came, signed or not.
    assert_eq!(forged.listed_peers(), Ok((vec![peer(1), peer(2)], Some(4))));
    let unsigned = read(200, &[], &body).expect("ok");
    assert_eq!(unsigned.listed_peers(), Ok((vec![peer(1), peer(2)], None)));
    let garbage = read(200, &signed(b"{}", Some(4), &genesis()), b"{}").expect("ok");
    assert!(matches!(
        garbage.peer_list(&key, NOW, AGE),
        Err(CallError::Transport(_))
    ));
}

// ---- pushes: whole lists and deltas ----

#[test]
fn a_push_is_a_whole_list_or_a_delta() {
    let entry = PeerListEntry {
        id: PeerId(uuid::Uuid::from_u128(1)),
        name: PeerName::new("PeerB").expect("name"),
        uri: PeerUri::new("http://b").expect("uri"),
        schema_hash: "h".into(),
    };
    let full: GenesisPush = serde_json::from_value(
        json!([{"id": entry.id, "name": "PeerB", "uri": "http://b", "schemaHash": "h"}]),
    )
    .expect("a list");
    assert_eq!(full, GenesisPush::Full(vec![entry.clone()]));
    let delta: GenesisPush = serde_json::from_value(
        json!({"from": 3, "to": 4, "upserts": [entry], "removed": [uuid::Uuid::from_u128(2)]}),
    )
    .expect("a delta");
    assert_eq!(
        delta,
        GenesisPush::Delta(PeerDelta {
            from: 3,
            to: 4,
            upserts: vec![entry],
            removed: vec![PeerId(uuid::Uuid::from_u128(2))],
        })
    );
    assert!(crate::wire::asks_deltas(Some(b"1")));
    assert!(crate::wire::asks_deltas(Some(b"true")));
    for no in [None, Some(&b"0"[..]), Some(b"yes"), Some(b"")] {
        assert!(!crate::wire::asks_deltas(no), "{no:?}");
    }
}

// ---- calls ----

fn header<'c>(call: &'c Call, name: &str) -> Option<&'c str> {
    call.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
}

#[test]
fn a_registration_is_signed_by_the_peer_and_asks_for_deltas() {
    let identity = Identity::from_seed([0xa1; 32]);
    let update = PeerUpdate {
        peer_name: PeerName::new("PeerA").expect("name"),
        peer_uri: PeerUri::new("http://127.0.0.1:8081").expect("uri"),
    };
    let call = Call::register(&update, Some(&identity), NOW);
    assert_eq!((call.method, call.path.as_str()), ("POST", REGISTER_PATH));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&call.body).expect("json"),
        json!({"peerName": "PeerA", "peerUri": "http://127.0.0.1:8081"})
    );
    assert_eq!(header(&call, "content-type"), Some("application/json"));
    assert!(crate::wire::asks_deltas(
        header(&call, DELTAS_HEADER).map(str::as_bytes)
    ));
    let received = Received::from_headers(|n| header(&call, n));
    let verified = auth::verify(
        &received,
        &Message::request("POST", REGISTER_PATH, &call.body),
        Expect::AnyKey,
        NOW,
        AGE,
    )
    .expect("signed by the peer");
    assert_eq!(verified.key, Some(identity.public()));
    // A keyless peer's is not signed, as the original's.
    let keyless = Call::register(&update, None, NOW);
    assert!(keyless.signature().is_none());
    assert!(Received::from_headers(|n| header(&keyless, n)).is_unsigned());
}

#[test]
fn pings_and_leaves_are_signed_with_the_session_key() {
    let id = PeerId(uuid::Uuid::from_u128(7));
    let ping = PeerPing {
        schema_hash: "h1".into(),
    };
    let call = Call::ping(id, &ping, Some(&session()), NOW);
    assert_eq!((call.method, call.path.clone()), ("POST", ping_path(id)));
    assert_eq!(call.body, br#"{"schemaHash":"h1"}"#);
    let received = Received::from_headers(|n| header(&call, n));
    let message = Message::request("POST", &call.path, &call.body);
    assert!(auth::verify(&received, &message, Expect::Session(&session()), NOW, AGE).is_ok());
    let leave = Call::leave(id, Some(&session()), NOW);
    assert_eq!(
        (leave.method, leave.path.clone()),
        ("DELETE", leave_path(id))
    );
    assert!(leave.body.is_empty() && header(&leave, "content-type").is_none());
    let received = Received::from_headers(|n| header(&leave, n));
    let message = Message::request("DELETE", &leave.path, b"");
    assert!(auth::verify(&received, &message, Expect::Session(&session()), NOW, AGE).is_ok());
    assert!(Call::ping(id, &ping, None, NOW).signature().is_none());
}

#[test]
fn reads_are_open_and_the_token_goes_to_every_call() {
    let peers = Call::peers();
    assert_eq!((peers.method, peers.path.as_str()), ("GET", PEERS_PATH));
    assert_eq!(peers.headers().count(), 0);
    let watch = Call::watch().with_token(Some("s3cret"));
    assert_eq!((watch.method, watch.path.as_str()), ("GET", WATCH_PATH));
    assert_eq!(header(&watch, "accept"), Some("text/event-stream"));
    assert_eq!(header(&watch, AUTHORIZATION), Some("Bearer s3cret"));
    assert!(header(&Call::peers().with_token(None), AUTHORIZATION).is_none());
}

// ---- the watch stream ----

#[test]
fn watch_events_are_a_snapshot_changes_or_skipped() {
    let snapshot = json!({"version": 3, "peers": [peer(1)]}).to_string();
    assert_eq!(
        WatchEvent::read("snapshot", &snapshot),
        Ok(Some(WatchEvent::Snapshot(WatchSnapshot {
            version: 3,
            peers: vec![peer(1)],
        })))
    );
    let change = PeerChange {
        version: 4,
        kind: ChangeKind::Left,
        peer: peer(1),
    };
    let text = serde_json::to_string(&change).expect("json");
    assert_eq!(
        WatchEvent::read("change", &text),
        Ok(Some(WatchEvent::Change(change)))
    );
    assert_eq!(WatchEvent::read("message", "anything"), Ok(None));
    assert!(matches!(
        WatchEvent::read("snapshot", "{\"version\": \"3\"}"),
        Err(WatchError {
            event: "snapshot",
            ..
        })
    ));
    assert!(matches!(
        WatchEvent::read("change", "[]"),
        Err(WatchError {
            event: "change",
            ..
        })
    ));
}

// ---- failover ----

#[test]
fn one_replica_never_moves() {
    let mut failover = Failover::new(1);
    assert!(!failover.fail_over());
    assert_eq!(failover.current(), 0);
    assert_eq!(Failover::new(0).replicas(), 1);
}

#[test]
fn replicas_are_tried_at_once_until_each_failed_since_the_last_answer() {
    let mut failover = Failover::new(3);
    assert!(failover.fail_over());
    assert_eq!(failover.current(), 1);
    assert!(failover.fail_over());
    assert_eq!(failover.current(), 2);
    // Every replica failed in a row: the backoff applies.
    assert!(!failover.fail_over());
    assert_eq!(failover.current(), 0);
    assert!(!failover.fail_over());
    // An answer starts the count again.
    failover.answered();
    assert!(failover.fail_over());
    assert!(failover.fail_over());
    assert!(!failover.fail_over());
}

// ---- a remote peer's schema ----

#[test]
fn a_downloaded_schema_is_taken_only_when_it_validates() {
    let read = |body: serde_json::Value| {
        read_schema(&Answer {
            body: body.to_string().into_bytes(),
            ..Answer::default()
        })
    };
    let city = json!({"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]});
    let schema = read(json!({"things": {"classes": [city]}, "actions": {"classes": []}}))
        .expect("a valid schema");
    assert_eq!(schema.classes().count(), 1);
    assert!(matches!(
        read(json!({"things": {"classes": [city, city]}, "actions": {"classes": []}})),
        Err(CallError::Invalid(_))
    ));
    assert!(matches!(read(json!([1, 2])), Err(CallError::Transport(_))));
}
