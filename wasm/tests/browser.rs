//! Headless-Chromium tests of the exported API against a real genesis and
//! real peers on loopback. `scripts/wasm-test.sh` starts them and passes
//! their addresses at compile time:
//!
//! - `PLEXUS_TEST_GENESIS`: the genesis URL;
//! - `PLEXUS_TEST_PEER_A`, `PLEXUS_TEST_PEER_B`: the URLs of the live peers
//!   `PeerA` (one City, Amsterdam) and `PeerB` (one City, Berlin);
//! - `PLEXUS_TEST_DEAD_PEER`: the name of a peer (same schema) that
//!   registered and was then killed.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use gloo_net::http::Request;
use gloo_timers::future::TimeoutFuture;
use plexus_wasm::{ClientOptionsArg, QueryOptionsArg};
use plexus_wasm::{NetworkClient, schema_hash, validate_query};
use serde_json::{Value as Json, json};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn env(value: Option<&'static str>, name: &str) -> &'static str {
    value.unwrap_or_else(|| {
        panic!("{name} is not set: run these tests through scripts/wasm-test.sh")
    })
}

fn genesis() -> &'static str {
    env(option_env!("PLEXUS_TEST_GENESIS"), "PLEXUS_TEST_GENESIS")
}

fn client() -> NetworkClient {
    let options = to_js(&json!({"timeoutMs": 3000}));
    NetworkClient::new(
        genesis(),
        Some(options.unchecked_into::<ClientOptionsArg>()),
    )
    .expect("a client")
}

/// A plain JavaScript value, as a page would pass it (objects, not `Map`s).
fn to_js(value: &Json) -> JsValue {
    use serde::Serialize;
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("to JS")
}

fn from_js(value: JsValue) -> Json {
    serde_wasm_bindgen::from_value(value).expect("from JS")
}

async fn resolve(promise: js_sys::Promise) -> Json {
    from_js(JsFuture::from(promise).await.expect("the promise resolves"))
}

/// The `kind` of a thrown or rejected `PlexusError`.
fn kind_of(error: &JsValue) -> String {
    assert!(
        error.is_instance_of::<js_sys::Error>(),
        "{error:?} is an Error"
    );
    js_sys::Reflect::get(error, &"kind".into())
        .expect("a kind")
        .as_string()
        .expect("a string kind")
}

const BOTH: &str =
    "{ Network { Get { PeerA { Things { City { name } } } PeerB { Things { City { name } } } } } }";

fn cities(response: &Json, peer: &str) -> Json {
    response["data"]["Network"]["Get"][peer]["Things"]["City"].clone()
}

#[wasm_bindgen_test]
async fn peers_are_listed_with_their_uris_and_schema_hashes() {
    let peers = resolve(client().peers()).await;
    let peers = peers.as_array().expect("an array");
    for (name, uri) in [
        (
            "PeerA",
            env(option_env!("PLEXUS_TEST_PEER_A"), "PLEXUS_TEST_PEER_A"),
        ),
        (
            "PeerB",
            env(option_env!("PLEXUS_TEST_PEER_B"), "PLEXUS_TEST_PEER_B"),
        ),
    ] {
        let peer = peers
            .iter()
            .find(|p| p["peerName"] == name)
            .unwrap_or_else(|| panic!("{name} in {peers:?}"));
        assert_eq!(peer["peerUri"].as_str(), Some(uri.trim_end_matches('/')));
        assert_eq!(peer["id"].as_str().map(str::len), Some(36), "{peer}");
        assert!(
            peer["last_contact_at"].as_u64().is_some_and(|t| t > 0),
            "{peer}"
        );
    }
}

#[wasm_bindgen_test]
async fn the_schema_of_a_peer_hashes_to_what_genesis_lists() {
    let client = client();
    let peers = resolve(client.peers()).await;
    let listed = peers
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["peerName"] == "PeerA"))
        .map(|p| p["schema_hash"].clone())
        .expect("PeerA listed");
    let schema = resolve(client.schema("PeerA".into())).await;
    assert_eq!(schema["things"]["classes"][0]["class"], "City", "{schema}");
    let hash = schema_hash(to_js(&schema)).expect("a hash");
    assert_eq!(Json::String(hash.clone()), listed);
    assert_eq!(
        schema_hash(JsValue::from_str(&schema.to_string())).expect("a hash"),
        hash
    );

    let unknown = JsFuture::from(client.schema("Nobody".into()))
        .await
        .expect_err("unknown peer");
    assert_eq!(kind_of(&unknown), "unknown-peer");
}

#[wasm_bindgen_test]
async fn a_join_is_seen_on_the_watch_stream() {
    let events: Rc<RefCell<Vec<Json>>> = Rc::default();
    let sink = events.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        sink.borrow_mut().push(from_js(event))
    });
    let handle = client()
        .watch(
            callback
                .as_ref()
                .unchecked_ref::<js_sys::Function>()
                .clone(),
        )
        .expect("watching");
    assert!(
        wait_for(&events, |e| e["type"] == "snapshot").await,
        "a snapshot first: {:?}",
        events.borrow()
    );
    {
        let events = events.borrow();
        let snapshot = &events[0];
        assert_eq!(
            snapshot["type"], "snapshot",
            "the first event is the snapshot: {events:?}"
        );
        assert!(
            snapshot["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["peerName"] == "PeerA")),
            "{snapshot}"
        );
    }

    // Another name for PeerA's address joins: genesis probes it, admits it, and tells watchers.
    let name = format!("Watched{}", (js_sys::Math::random() * 1e9) as u64);
    let uri = env(option_env!("PLEXUS_TEST_PEER_A"), "PLEXUS_TEST_PEER_A");
    let response = Request::post(&format!("{}/peers/register", genesis()))
        .json(&json!({"peerName": name, "peerUri": uri}))
        .expect("a request")
        .send()
        .await
        .expect("genesis answers");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let registered: Json = response.json().await.expect("a registration");

    let joined = |e: &Json| {
        e["type"] == "change" && e["kind"] == "joined" && e["peer"]["peerName"] == name.as_str()
    };
    let seen = wait_for(&events, joined).await;
    handle.stop();
    assert!(handle.stopped());
    let _ = Request::delete(&format!(
        "{}/peers/{}",
        genesis(),
        registered["peer"]["id"].as_str().unwrap_or("")
    ))
    .send()
    .await;
    assert!(seen, "a joined change for {name}: {:?}", events.borrow());
    let events = events.borrow();
    let change = events.iter().find(|e| joined(e)).expect("seen");
    assert!(
        change["version"]
            .as_u64()
            .is_some_and(|v| v > events[0]["version"].as_u64().unwrap_or(u64::MAX))
    );
    assert_eq!(
        change["peer"]["peerUri"].as_str(),
        Some(uri.trim_end_matches('/'))
    );
    drop(callback);
}

/// Waits up to 10 s for an event that matches.
async fn wait_for(events: &Rc<RefCell<Vec<Json>>>, matches: impl Fn(&Json) -> bool) -> bool {
    for _ in 0..100 {
        if events.borrow().iter().any(&matches) {
            return true;
        }
        TimeoutFuture::new(100).await;
    }
    false
}

#[wasm_bindgen_test]
async fn a_network_query_is_planned_here_sent_to_each_peer_and_merged() {
    let response = resolve(client().query(BOTH.into(), None)).await;
    assert!(response.get("errors").is_none(), "{response}");
    assert_eq!(
        cities(&response, "PeerA"),
        json!([{"name": "Amsterdam"}]),
        "{response}"
    );
    assert_eq!(
        cities(&response, "PeerB"),
        json!([{"name": "Berlin"}]),
        "{response}"
    );

    // Aliases, variables and an operation name take the same path.
    let q =
        "query Q($n: Int) { Network { Get { b: PeerB { Things { City(limit: $n) { name } } } } } }";
    let options = to_js(&json!({"variables": {"n": 1}, "operationName": "Q"}));
    let response =
        resolve(client().query(q.into(), Some(options.unchecked_into::<QueryOptionsArg>()))).await;
    assert_eq!(
        response["data"]["Network"]["Get"]["b"]["Things"]["City"],
        json!([{"name": "Berlin"}]),
        "{response}"
    );
}

#[wasm_bindgen_test]
async fn an_invalid_query_is_answered_with_errors_and_nothing_sent() {
    let q = "{ Network { Get { PeerZ { Things { City { name } } } } } }";
    let response = resolve(client().query(q.into(), None)).await;
    assert_eq!(response["data"], Json::Null, "{response}");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("PeerZ")),
        "{response}"
    );

    let schemas = json!({"PeerA": {"things": {"classes": [{"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]}]}}});
    let errors = from_js(validate_query(q, to_js(&schemas), None).expect("validated"));
    assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
    let errors = from_js(validate_query(BOTH, to_js(&schemas), None).expect("validated"));
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown peer")),
        "{errors}"
    );
    let fine = "{ Network { Get { PeerA { Things { City { name } } } } } }";
    assert_eq!(
        from_js(validate_query(fine, to_js(&schemas), None).expect("validated")),
        json!([])
    );
    let thrown = validate_query(fine, to_js(&json!([1])), None).expect_err("bad schemas");
    assert_eq!(kind_of(&thrown), "invalid-input");
}

#[wasm_bindgen_test]
async fn a_dead_peer_is_a_per_peer_error_beside_the_data_of_the_others() {
    let dead = env(
        option_env!("PLEXUS_TEST_DEAD_PEER"),
        "PLEXUS_TEST_DEAD_PEER",
    );
    let q = format!(
        "{{ Network {{ Get {{ PeerA {{ Things {{ City {{ name }} }} }} {dead} {{ Things {{ City {{ name }} }} }} }} }} }}"
    );
    let response = resolve(client().query(q, None)).await;
    assert_eq!(
        cities(&response, "PeerA"),
        json!([{"name": "Amsterdam"}]),
        "{response}"
    );
    assert_eq!(
        response["data"]["Network"]["Get"][dead],
        Json::Null,
        "{response}"
    );
    let errors = response["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{response}");
    assert_eq!(errors[0]["path"], json!(["Network", "Get", dead]));
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(dead)),
        "{response}"
    );
}

#[wasm_bindgen_test]
async fn a_network_fetch_asks_every_listed_peer_and_the_dead_one_is_an_error_at_the_list() {
    let dead = env(
        option_env!("PLEXUS_TEST_DEAD_PEER"),
        "PLEXUS_TEST_DEAD_PEER",
    );
    let q = r#"{ Network(networkTimeout: 2000) { Fetch { Things(where: {class: {name: "City", certainty: 0.9}}) { className beacon certainty } } } }"#;
    let response = resolve(client().query(q.into(), None)).await;
    let found = response["data"]["Network"]["Fetch"]["Things"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {response}"))
        .clone();
    let beacons: Vec<&str> = found.iter().filter_map(|f| f["beacon"].as_str()).collect();
    // All at certainty 1, so ranked by beacon (another test may register a
    // second name for PeerA's address: it answers PeerA's beacons too).
    let mut sorted = beacons.clone();
    sorted.sort();
    assert_eq!(beacons, sorted, "{response}");
    let mut peers: Vec<&str> = beacons
        .iter()
        .filter_map(|b| b.strip_prefix("weaviate://")?.split('/').next())
        .collect();
    peers.dedup();
    assert_eq!(peers, ["PeerA", "PeerB"], "{response}");
    let errors = response["errors"]
        .as_array()
        .expect("an error for the dead peer");
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == json!(["Network", "Fetch", "Things"])
                && e["message"].as_str().is_some_and(|m| m.contains(dead))),
        "{response}"
    );
}

#[wasm_bindgen_test]
async fn a_query_via_a_peer_is_sent_there_as_it_is() {
    // PeerA plans it: it learns PeerB's schema from genesis's broadcasts, so give it a moment.
    let q = "{ Network { Get { PeerB { Things { City { name } } } } } }";
    let mut response = Json::Null;
    for _ in 0..20 {
        let options = to_js(&json!({"via": "PeerA"}));
        response =
            resolve(client().query(q.into(), Some(options.unchecked_into::<QueryOptionsArg>())))
                .await;
        if response.get("errors").is_none() {
            break;
        }
        TimeoutFuture::new(250).await;
    }
    assert!(response.get("errors").is_none(), "{response}");
    assert_eq!(
        cities(&response, "PeerB"),
        json!([{"name": "Berlin"}]),
        "{response}"
    );

    let by_url =
        to_js(&json!({"via": env(option_env!("PLEXUS_TEST_PEER_B"), "PLEXUS_TEST_PEER_B")}));
    let local = "{ Local { Get { Things { City { name } } } } }";
    let response = resolve(client().query(
        local.into(),
        Some(by_url.unchecked_into::<QueryOptionsArg>()),
    ))
    .await;
    assert_eq!(
        response["data"]["Local"]["Get"]["Things"]["City"],
        json!([{"name": "Berlin"}]),
        "{response}"
    );

    let rejected = JsFuture::from(client().query(
        BOTH.into(),
        Some(to_js(&json!({"via": "Nobody"})).unchecked_into::<QueryOptionsArg>()),
    ))
    .await
    .expect_err("unknown via");
    assert_eq!(kind_of(&rejected), "unknown-peer");
}

#[wasm_bindgen_test]
fn bad_arguments_throw_errors_with_a_kind() {
    let thrown = NetworkClient::new("not a url", None)
        .err()
        .expect("refused");
    assert_eq!(kind_of(&thrown), "invalid-input");
    let thrown = NetworkClient::new(
        "http://h",
        Some(to_js(&json!({"tokn": "x"})).unchecked_into::<ClientOptionsArg>()),
    )
    .err()
    .expect("refused");
    assert_eq!(kind_of(&thrown), "invalid-input");
    let message = js_sys::Reflect::get(&thrown, &"message".into()).expect("message");
    assert!(
        message.as_string().is_some_and(|m| m.contains("tokn")),
        "{message:?}"
    );
    assert_eq!(
        kind_of(&schema_hash(JsValue::from_str("{")).expect_err("not JSON")),
        "invalid-input"
    );
}

#[wasm_bindgen_test]
async fn an_unreachable_genesis_rejects_with_kind_network() {
    let client = NetworkClient::new("http://127.0.0.1:9", None).expect("a client");
    let rejected = JsFuture::from(client.peers())
        .await
        .expect_err("nobody listens on port 9");
    assert_eq!(kind_of(&rejected), "network");
}
