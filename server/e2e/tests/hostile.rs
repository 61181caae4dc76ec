//! Hostile input over HTTP: a scripted pass over every endpoint of a real
//! `plexus-genesis` and a real `plexus-peer` (the routes of
//! `server/genesis/src/routes.rs`, `server/peer/src/api.rs` and
//! `server/peer/src/network/routes.rs`) with malformed, oversized, wrongly
//! typed, deeply nested and non-UTF-8 bodies, odd paths and SSRF peer URIs.
//!
//! Each request must get a 4xx with a JSON `{"error": {"message"}}` body
//! (`POST /v1/graphql` may instead answer 200 with `errors`), the server must
//! answer its health check afterwards, and nothing stored may change.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

mod fault_common;

use std::time::Duration;

use fault_common::*;
use serde_json::{Value, json};
use support::{Proc, add_class, add_thing, genesis, get, poll};

/// One hostile request.
struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn case(method: &'static str, path: impl Into<String>, body: impl Into<Vec<u8>>) -> Case {
    Case {
        method,
        path: path.into(),
        content_type: Some("application/json"),
        body: body.into(),
    }
}

fn nested(depth: usize) -> Vec<u8> {
    let mut body = "[".repeat(depth);
    body.push_str(&"]".repeat(depth));
    body.into_bytes()
}

fn nested_object(depth: usize) -> Vec<u8> {
    let mut body = r#"{"a":"#.repeat(depth);
    body.push('1');
    body.push_str(&"}".repeat(depth));
    body.into_bytes()
}

/// Bodies that are wrong for every JSON endpoint.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", b"".to_vec()),
        ("truncated", br#"{"peerName": "#.to_vec()),
        ("not json", b"hello".to_vec()),
        ("null", b"null".to_vec()),
        ("a number", b"1e999999".to_vec()),
        ("a string", br#""x""#.to_vec()),
        ("nested arrays", nested(100_000)),
        ("nested objects", nested_object(50_000)),
        (
            "non-UTF-8",
            // In every field an endpoint reads: serde_json does not check
            // the UTF-8 of fields it skips (see docs/operations.md).
            b"{\"peerName\": \"\xff\xfe\", \"peerUri\": \"\xff\", \"class\": \"\xc3\x28\", \"schemaHash\": \"\xff\", \"query\": \"\xff\", \"name\": \"\xff\"}"
                .to_vec(),
        ),
        ("non-UTF-8 in an unknown field", b"{\"other\": \"\xff\"}".to_vec()),
        ("NUL bytes", b"{\"a\": \"\0\"}\0\0".to_vec()),
        ("oversized", {
            let mut b = br#"{"x": ""#.to_vec();
            b.extend(std::iter::repeat_n(b'a', 1 << 21));
            b.extend(br#""}"#);
            b
        }),
    ]
}

fn odd_paths(prefix: &str) -> Vec<String> {
    vec![
        format!("{prefix}/..%2f..%2fetc%2fpasswd"),
        format!("{prefix}/..%2f.."),
        format!("{prefix}/%ff%fe"),
        format!("{prefix}/%00"),
        format!("{prefix}/{}", "a".repeat(16_000)),
        format!("{prefix}/{}", "%41".repeat(4_000)),
    ]
}

/// Genesis's default `--max-body-bytes`, the smallest body cap of the two servers.
const SMALLEST_BODY_CAP: usize = 64 * 1024;

struct Outcome {
    status: u16,
    body: Vec<u8>,
    content_type: String,
}

/// The answer to `case`; `None` when the server closed the connection while
/// a body over its cap was still being sent.
async fn send(client: &reqwest::Client, base: &str, case: &Case) -> Option<Outcome> {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("{base}{}", case.path))
        .timeout(Duration::from_secs(10))
        .body(case.body.clone());
    if let Some(ct) = case.content_type {
        request = request.header("content-type", ct);
    }
    let response = match request.send().await {
        Ok(response) => response,
        // A server refuses a body over its cap (413) before it has read it
        // and then closes the connection; a client still sending may see the
        // reset instead of the answer (the TCP race of an early answer). The
        // server's health and state are checked after every case all the same.
        Err(e) if case.body.len() > SMALLEST_BODY_CAP => {
            eprintln!(
                "{} {}: closed while sending an oversized body: {e}",
                case.method,
                short(&case.path)
            );
            return None;
        }
        Err(e) => panic!("{} {}: no answer: {e}", case.method, short(&case.path)),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.bytes().await.unwrap_or_default().to_vec();
    Some(Outcome {
        status,
        body,
        content_type,
    })
}

fn short(text: &str) -> String {
    if text.len() > 80 {
        format!("{}… ({} bytes)", &text[..80], text.len())
    } else {
        text.to_owned()
    }
}

/// Asserts the project's error shape: 4xx, JSON, `{"error": {"message": "…"}}`.
fn assert_json_error(what: &str, outcome: &Outcome) {
    let text = String::from_utf8_lossy(&outcome.body);
    assert!(
        (400..500).contains(&outcome.status) && outcome.status != 429,
        "{what}: status {} {}",
        outcome.status,
        short(&text)
    );
    assert!(
        outcome.content_type.starts_with("application/json"),
        "{what}: content-type {:?}, body {}",
        outcome.content_type,
        short(&text)
    );
    let body: Value = serde_json::from_slice(&outcome.body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {}", short(&text)));
    assert!(
        body["error"]["message"].is_string(),
        "{what}: no error.message in {}",
        short(&text)
    );
}

/// What genesis stores: its list without the contact times, and its version.
async fn genesis_state(client: &reqwest::Client, genesis: &Proc) -> (Value, String) {
    let response = client.get(genesis.at("/peers")).send().await.unwrap();
    let version = response
        .headers()
        .get("x-plexus-peers-version")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut list: Value = response.json().await.unwrap();
    for peer in list.as_array_mut().unwrap() {
        peer.as_object_mut().unwrap().remove("last_contact_at");
    }
    (list, version)
}

/// What a peer stores: schema, objects, and its view of the network.
async fn peer_state(client: &reqwest::Client, peer: &Proc) -> Value {
    let mut state = serde_json::Map::new();
    for path in [
        "/v1/schema",
        "/v1/things",
        "/v1/actions",
        "/v1/network/peers",
    ] {
        state.insert(path.to_owned(), get(client, &peer.at(path)).await.unwrap());
    }
    Value::Object(state)
}

async fn healthy(client: &reqwest::Client, genesis: &Proc, peer: &Proc, after: &str) {
    let health = client.get(genesis.at("/healthz")).send().await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status() == 200),
        "genesis health check after {after}: {health:?}"
    );
    let ping = client.get(peer.at("/p2p/ping")).send().await;
    assert!(
        ping.as_ref().is_ok_and(|r| r.status() == 200),
        "peer health check after {after}: {ping:?}"
    );
}

#[tokio::test]
async fn every_endpoint_refuses_hostile_input_with_a_json_4xx_and_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    // No pooled connections: a server may close a connection after refusing
    // a body it did not read, and that must not fail the next request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // The rate limit off: every hostile body must reach its handler, not a 429.
    let unlimited = ["--rate-limit", "0"];
    let genesis = genesis(&["--peer-timeout", "60s", unlimited[0], unlimited[1]]);
    let peer = real_peer_with(
        &genesis.url,
        "PeerA",
        &dir.path().join("a"),
        "10s",
        &unlimited,
    );
    add_class(&client, &peer.url, "City").await;
    add_thing(&client, &peer.url, "City", "Amsterdam", 905).await;
    let thing_id: String = {
        let things = get(&client, &peer.at("/v1/things")).await.unwrap();
        let list = things
            .as_array()
            .or_else(|| things["things"].as_array())
            .unwrap_or_else(|| panic!("{things}"));
        list[0]["id"].as_str().unwrap().to_owned()
    };
    // Genesis lists PeerA with its current schema hash before the pass starts.
    let schema: plexus_core::schema::Schema =
        serde_json::from_value(get(&client, &peer.at("/v1/schema")).await.unwrap()).unwrap();
    let hash = schema.hash();
    let peer_id = poll(Duration::from_secs(15), "PeerA registered", || async {
        let (list, _) = genesis_state(&client, &genesis).await;
        let a = list.as_array()?.first()?.clone();
        (a["schema_hash"].as_str()? == hash).then(|| a["id"].as_str().map(str::to_owned))?
    })
    .await;
    // Both ends settled (no broadcast or schema download still in flight).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let genesis_before = genesis_state(&client, &genesis).await;
    let peer_before = peer_state(&client, &peer).await;

    let unknown = "00000000-0000-4000-8000-000000000000";
    let mut genesis_cases: Vec<Case> = Vec::new();
    // Every JSON endpoint of genesis, with every bad body.
    for (path, method) in [
        ("/peers/register".to_owned(), "POST"),
        (format!("/peers/{peer_id}/ping"), "POST"),
    ] {
        for (_, body) in bad_bodies() {
            if path.ends_with("/ping") && body.is_empty() {
                continue; // an empty ping body is allowed (schemaHash "")
            }
            genesis_cases.push(case(method, path.clone(), body));
        }
    }
    // Wrong types, missing fields, huge numbers, hostile names.
    for body in [
        json!({}),
        json!({"peerName": 1, "peerUri": 2}),
        json!({"peerName": "PeerX"}),
        json!({"peerUri": "http://127.0.0.1:1"}),
        json!({"peerName": ["PeerX"], "peerUri": {"a": 1}}),
        json!({"peerName": 1e300, "peerUri": u64::MAX}),
        json!({"peerName": "", "peerUri": "http://127.0.0.1:1"}),
        json!({"peerName": "peer-x", "peerUri": "http://127.0.0.1:1"}),
        json!({"peerName": "1Peer", "peerUri": "http://127.0.0.1:1"}),
        json!({"peerName": "P".repeat(64), "peerUri": "http://127.0.0.1:1"}),
        json!({"peerName": "Pé", "peerUri": "http://127.0.0.1:1"}),
        json!({"peerName": "Peer\u{0}", "peerUri": "http://127.0.0.1:1"}),
    ] {
        genesis_cases.push(case("POST", "/peers/register", body.to_string()));
    }
    genesis_cases.push(case(
        "POST",
        "/peers/register",
        br#"{"peerName": "PeerX", "peerUri": "http://127.0.0.1:1", "x": 123456789012345678901234567890}"#.to_vec(),
    ));
    // SSRF: no request may leave genesis for these; all are refused.
    for uri in [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:80",
        "http://[fe80::1]:80",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://0.0.0.0:80",
        "http://[::]:80",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_GET%20/",
        "ftp://127.0.0.1/",
        "javascript:alert(1)",
        "dict://127.0.0.1:11211/",
        "http://user:pass@127.0.0.1:1",
        "http://user@127.0.0.1:1",
        "http://:pass@127.0.0.1:1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:1/?q=1",
        "http://127.0.0.1:1/#frag",
        "http://",
        "//127.0.0.1:1",
        "127.0.0.1:1",
        "",
    ] {
        let body = json!({"peerName": "PeerX", "peerUri": uri}).to_string();
        genesis_cases.push(case("POST", "/peers/register", body));
    }
    // Pings: wrong types, bad and unknown ids.
    for body in [
        json!({"schemaHash": 5}),
        json!({"schemaHash": null, "x": [1]}),
        json!({"schemaHash": ["a"]}),
        json!({"schemaHash": f64::MAX}),
    ] {
        genesis_cases.push(case(
            "POST",
            format!("/peers/{peer_id}/ping"),
            body.to_string(),
        ));
    }
    for id in ["not-a-uuid", unknown, "%00", "..%2f..", &"f".repeat(10_000)] {
        genesis_cases.push(case(
            "POST",
            format!("/peers/{id}/ping"),
            br#"{"schemaHash":""}"#.to_vec(),
        ));
        genesis_cases.push(case("DELETE", format!("/peers/{id}"), b"".to_vec()));
    }
    // Wrong content type, wrong methods, odd and unknown paths.
    genesis_cases.push(Case {
        content_type: Some("text/plain"),
        ..case(
            "POST",
            "/peers/register",
            br#"{"peerName":"PeerX","peerUri":"http://127.0.0.1:1"}"#.to_vec(),
        )
    });
    genesis_cases.push(Case {
        content_type: None,
        ..case(
            "POST",
            "/peers/register",
            br#"{"peerName":"PeerX","peerUri":"http://127.0.0.1:1"}"#.to_vec(),
        )
    });
    for (method, path) in [
        ("PUT", "/peers"),
        ("DELETE", "/peers"),
        ("GET", "/peers/register"),
        ("POST", "/healthz"),
        ("DELETE", "/metrics"),
        ("POST", "/openapi.json"),
        ("POST", "/peers/watch"),
        ("PATCH", "/peers/register"),
    ] {
        genesis_cases.push(case(method, path, b"{}".to_vec()));
    }
    for path in odd_paths("/peers") {
        genesis_cases.push(case("GET", path.clone(), b"".to_vec()));
        genesis_cases.push(case("DELETE", path, b"".to_vec()));
    }
    for path in odd_paths("") {
        genesis_cases.push(case("GET", path, b"".to_vec()));
    }

    let mut peer_cases: Vec<Case> = Vec::new();
    for path in [
        "/v1/schema/things",
        "/v1/schema/actions",
        "/v1/schema/things/City/properties",
        "/v1/things",
        "/v1/actions",
    ] {
        for (_, body) in bad_bodies() {
            peer_cases.push(case("POST", path, body));
        }
    }
    for (_, body) in bad_bodies() {
        peer_cases.push(case("PUT", format!("/v1/things/{thing_id}"), body.clone()));
        peer_cases.push(case("PUT", "/p2p/genesis", body));
    }
    // Wrong types and invalid values.
    for body in [
        json!({"class": 1}),
        json!({"class": "city", "properties": []}),
        json!({"class": "1City", "properties": []}),
        json!({"class": "City", "properties": []}), // already there
        json!({"class": "Town", "properties": [{"name": "x", "dataType": ["nope"]}]}),
        json!({"class": "Town", "properties": [{"name": "x", "dataType": "string"}]}),
        json!({"class": "Town", "properties": [{"name": 5, "dataType": ["string"]}]}),
        json!({"class": "Town", "properties": [{"name": "x", "dataType": ["Nowhere"]}]}),
        json!({"class": "T".repeat(10_000), "properties": []}),
    ] {
        peer_cases.push(case("POST", "/v1/schema/things", body.to_string()));
    }
    for body in [
        json!({"name": "name", "dataType": ["string"]}), // already there
        json!({"name": 1, "dataType": ["int"]}),
        json!({"name": "x", "dataType": ["nope"]}),
    ] {
        peer_cases.push(case(
            "POST",
            "/v1/schema/things/City/properties",
            body.to_string(),
        ));
    }
    peer_cases.push(case(
        "POST",
        "/v1/schema/things/Nowhere/properties",
        json!({"name": "x", "dataType": ["int"]}).to_string(),
    ));
    for body in [
        json!({"class": "City", "schema": {"size": "many"}}),
        json!({"class": "City", "schema": {"size": 1.5}}),
        json!({"class": "City", "schema": {"size": 1e300}}),
        json!({"class": "City", "schema": {"name": 5}}),
        json!({"class": "City", "schema": {"name": {"a": {"b": [1]}}}}),
        json!({"class": "City", "schema": {"unknown": 1}}),
        json!({"class": "Nowhere", "schema": {}}),
        json!({"class": 5, "schema": []}),
        json!({"class": "City", "schema": "x"}),
        json!({"class": "City", "id": "not-a-uuid", "schema": {}}),
    ] {
        peer_cases.push(case("POST", "/v1/things", body.to_string()));
        peer_cases.push(case(
            "PUT",
            format!("/v1/things/{thing_id}"),
            body.to_string(),
        ));
    }
    peer_cases.push(case(
        "POST",
        "/v1/things",
        br#"{"class": "City", "schema": {"size": 123456789012345678901234567890}}"#.to_vec(),
    ));
    peer_cases.push(case(
        "POST",
        "/v1/things",
        br#"{"class": "City", "schema": {"size": -1e99999}}"#.to_vec(),
    ));
    // Peer lists: wrong shapes, hostile URIs and names, inconsistent deltas.
    for body in [
        json!({}),
        json!([{"id": "x", "name": "PeerB", "uri": "http://127.0.0.1:1", "schemaHash": ""}]),
        json!([{"id": unknown, "name": "peer-b", "uri": "http://127.0.0.1:1", "schemaHash": ""}]),
        json!([{"id": unknown, "name": "PeerB", "uri": "file:///etc/passwd", "schemaHash": ""}]),
        json!([{"id": unknown, "name": "PeerB", "uri": "gopher://127.0.0.1/", "schemaHash": ""}]),
        json!([{"id": unknown, "name": "PeerB", "uri": 5, "schemaHash": ""}]),
        json!({"from": "a", "to": 2, "upserts": [], "removed": []}),
        json!({"from": 1, "to": 2, "upserts": [{"id": 1}], "removed": []}),
        json!({"from": 1, "to": 2, "upserts": [], "removed": ["not-a-uuid"]}),
        json!({"from": -1, "to": 2, "upserts": [], "removed": []}),
    ] {
        peer_cases.push(case("PUT", "/p2p/genesis", body.to_string()));
    }
    // Bad ids, unknown kinds, unknown classes.
    for id in ["not-a-uuid", "%00", "..%2f..", &"f".repeat(10_000)] {
        for method in ["GET", "DELETE"] {
            peer_cases.push(case(method, format!("/v1/things/{id}"), b"".to_vec()));
        }
    }
    for method in ["GET", "DELETE"] {
        peer_cases.push(case(method, format!("/v1/things/{unknown}"), b"".to_vec()));
    }
    peer_cases.push(case(
        "PUT",
        format!("/v1/things/{unknown}"),
        json!({"class": "City", "schema": {"name": "x"}}).to_string(),
    ));
    for (method, path) in [
        ("GET", "/v1/widgets"),
        ("POST", "/v1/widgets"),
        ("POST", "/v1/schema/widgets"),
        ("DELETE", "/v1/schema/things/Nowhere"),
        ("DELETE", "/v1/schema/widgets/City"),
        ("PUT", "/v1/graphql"),
        ("POST", "/p2p/ping"),
        ("GET", "/p2p/genesis"),
        ("DELETE", "/v1/network/peers"),
        ("PATCH", "/v1/schema"),
    ] {
        peer_cases.push(case(method, path, b"{}".to_vec()));
    }
    for path in odd_paths("/v1/things")
        .into_iter()
        .chain(odd_paths("/v1/schema/things"))
        .chain(odd_paths(""))
    {
        peer_cases.push(case("GET", path.clone(), b"".to_vec()));
        peer_cases.push(case("DELETE", path, b"".to_vec()));
    }
    // GraphQL: bad bodies are 4xx; bad queries may be 200 with `errors`.
    let mut graphql_cases: Vec<Case> = Vec::new();
    for (_, body) in bad_bodies() {
        peer_cases.push(case("POST", "/v1/graphql", body));
    }
    for body in [
        json!({}),
        json!({"query": 5}),
        json!({"query": ["{ Local }"]}),
        json!({"query": "{ Local { Get { Things { City { name } } } } }", "variables": 5}),
    ] {
        peer_cases.push(case("POST", "/v1/graphql", body.to_string()));
    }
    for query in [
        "{".repeat(100_000),
        format!(
            "{}{}",
            "{ Local { Get { Things { City { name ".repeat(2_000),
            "}".repeat(10_000)
        ),
        "{ Local { Get { Things { City(limit: 99999999999999999999999) { name } } } } }".to_owned(),
        "{ Local { Get { Things { City(limit: -1) { name } } } } }".to_owned(),
        "mutation { Local { Get { Things { City { name } } } } }".to_owned(),
        "{ Network { Get { Nobody { Things { City { name } } } } } }".to_owned(),
        "\u{0}\u{ffff}".to_owned(),
    ] {
        graphql_cases.push(case(
            "POST",
            "/v1/graphql",
            json!({"query": query}).to_string(),
        ));
    }

    let (mut count, mut max) = (0, Duration::ZERO);
    for (server, base, cases) in [
        ("genesis", &genesis.url, &genesis_cases),
        ("peer", &peer.url, &peer_cases),
    ] {
        for c in cases {
            let started = std::time::Instant::now();
            let outcome = send(&client, base, c).await;
            max = max.max(started.elapsed());
            let what = format!(
                "{server} {} {} {}",
                c.method,
                short(&c.path),
                short(&String::from_utf8_lossy(&c.body))
            );
            if let Some(outcome) = outcome {
                assert_json_error(&what, &outcome);
            }
            healthy(&client, &genesis, &peer, &what).await;
            count += 1;
        }
    }
    for c in &graphql_cases {
        let what = format!("peer graphql {}", short(&String::from_utf8_lossy(&c.body)));
        let Some(outcome) = send(&client, &peer.url, c).await else {
            healthy(&client, &genesis, &peer, &what).await;
            count += 1;
            continue;
        };
        if outcome.status == 200 {
            let body: Value = serde_json::from_slice(&outcome.body).unwrap();
            assert!(
                body["errors"].as_array().is_some_and(|e| !e.is_empty()),
                "{what}: {body}"
            );
        } else {
            assert_json_error(&what, &outcome);
        }
        healthy(&client, &genesis, &peer, &what).await;
        count += 1;
    }
    eprintln!("{count} hostile requests, slowest answer {max:?}");

    // Nothing stored changed, on either server.
    assert_eq!(genesis_state(&client, &genesis).await, genesis_before);
    assert_eq!(peer_state(&client, &peer).await, peer_before);
    assert_eq!(
        metric(&client, &genesis, "plexus_genesis_registrations_total").await,
        1
    );
}
