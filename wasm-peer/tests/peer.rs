//! Headless-Chromium tests of `PlexusPeer` against a real
//! `plexus-genesis --relay` and a real native `plexus-peer` on loopback.
//! `scripts/wasm-test.sh` starts them and passes their addresses at
//! compile time:
//!
//! - `PLEXUS_TEST_RELAY_GENESIS`: the URL of a genesis with `--relay`;
//! - `PLEXUS_TEST_NATIVE_PEER`: the URL of the native peer `Native` (one
//!   City, Amsterdam) registered there;
//! - `PLEXUS_TEST_CLOSED_GENESIS`: the URL of a genesis with `--relay` whose
//!   `--cors-origin` is another origin than the test page's;
//! - `PLEXUS_TEST_HANGING_PEER`: the name of a peer registered at the relay
//!   genesis (one City class) that never answers a query.
//! - `PLEXUS_TEST_TLS_GENESIS`: the `https` URL of a genesis with `--relay`
//!   on TLS (`--tls-cert`, `--tls-key`), whose certificate Chromium trusts
//!   only through the runner's flags (`--ignore-certificate-errors-spki-list`
//!   with the certificate's key).
#![cfg(target_arch = "wasm32")]

use futures::{SinkExt as _, StreamExt as _};
use gloo_net::http::Request;
use gloo_net::websocket::Message as WsMessage;
use gloo_net::websocket::futures::WebSocket;
use gloo_timers::future::TimeoutFuture;
use plexus_core::PeerName;
use plexus_core::auth::Identity;
use plexus_core::relay::{FromTab, ToTab, hello_message, tab_path};
use plexus_wasm_peer::{PeerOptionsArg, PlexusPeer, store};
use serde_json::{Value as Json, json};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod support;

use support::post_graphql;

fn env(value: Option<&'static str>, name: &str) -> &'static str {
    support::env(value, name, "scripts/wasm-test.sh")
}

fn genesis() -> &'static str {
    env(
        option_env!("PLEXUS_TEST_RELAY_GENESIS"),
        "PLEXUS_TEST_RELAY_GENESIS",
    )
}

fn native() -> &'static str {
    env(
        option_env!("PLEXUS_TEST_NATIVE_PEER"),
        "PLEXUS_TEST_NATIVE_PEER",
    )
}

fn closed_genesis() -> &'static str {
    env(
        option_env!("PLEXUS_TEST_CLOSED_GENESIS"),
        "PLEXUS_TEST_CLOSED_GENESIS",
    )
}

fn hanging() -> &'static str {
    env(
        option_env!("PLEXUS_TEST_HANGING_PEER"),
        "PLEXUS_TEST_HANGING_PEER",
    )
}

fn tls_genesis() -> &'static str {
    env(
        option_env!("PLEXUS_TEST_TLS_GENESIS"),
        "PLEXUS_TEST_TLS_GENESIS",
    )
}

fn to_js(value: &Json) -> JsValue {
    plexus_wasm::to_js(value).expect("to JS")
}

async fn resolve(promise: js_sys::Promise) -> Json {
    let value = JsFuture::from(promise).await.expect("the promise resolves");
    plexus_wasm::from_js(Some(value), "the answer").expect("from JS")
}

const CITY: &str = r#"{"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]}"#;

/// Joins as `name`; `database` null keeps nothing (a fresh key).
async fn join_with(name: &str, database: Json) -> Result<PlexusPeer, JsValue> {
    join_with_options(name, database, json!({})).await
}

/// Joins as `name` with `more` options besides the tests' own.
async fn join_with_options(name: &str, database: Json, more: Json) -> Result<PlexusPeer, JsValue> {
    let mut options = json!({
        "genesis": genesis(),
        "name": name,
        "timeoutMs": 5000,
        "pingIntervalMs": 500,
        "database": database,
    });
    if let (Some(options), Some(more)) = (options.as_object_mut(), more.as_object()) {
        options.extend(more.clone());
    }
    PlexusPeer::join(to_js(&options).unchecked_into::<PeerOptionsArg>()).await
}

async fn join(name: &str) -> PlexusPeer {
    join_with(name, Json::Null).await.expect("the tab joins")
}

/// A tab with a City class and the cities `names`.
async fn tab_with_cities(name: &str, names: &[&str]) -> PlexusPeer {
    let peer = join(name).await;
    resolve(peer.create_class("things".into(), JsValue::from_str(CITY))).await;
    for city in names {
        let object = json!({"class": "City", "schema": {"name": city}});
        resolve(peer.add_object("things".into(), to_js(&object))).await;
    }
    peer
}

async fn listed() -> Vec<Json> {
    let response = Request::get(&format!("{}/peers", genesis()))
        .send()
        .await
        .expect("genesis answers");
    let peers: Json = response.json().await.expect("JSON");
    peers.as_array().cloned().unwrap_or_default()
}

async fn listing(name: &str) -> Option<Json> {
    listed().await.into_iter().find(|p| p["peerName"] == name)
}

/// Waits up to `ms` for `check` to hold.
async fn eventually<F, Fut>(ms: u32, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut waited = 0;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if waited >= ms => panic!("{what} not within {ms} ms: {e}"),
            Err(_) => {}
        }
        TimeoutFuture::new(100).await;
        waited += 100;
    }
}

#[wasm_bindgen_test]
async fn a_tab_joins_and_genesis_lists_it_with_its_schema_hash() {
    let mut peer = join("TabJoin").await;
    let uri = format!("{}/relay/TabJoin", genesis());
    assert_eq!(peer.uri(), uri);
    let listed = listing("TabJoin").await.expect("genesis lists TabJoin");
    assert_eq!(listed["peerUri"], uri.as_str());
    resolve(peer.create_class("things".into(), JsValue::from_str(CITY))).await;
    let hash = peer.schema_hash();
    eventually(5000, "the new schema hash at genesis", || {
        let hash = hash.clone();
        async move {
            let seen = listing("TabJoin").await.map(|p| p["schema_hash"].clone());
            (seen == Some(Json::String(hash)))
                .then_some(())
                .ok_or(format!("{seen:?}"))
        }
    })
    .await;
    // The tab answers genesis's relay for its name.
    let schema: Json = Request::get(&format!("{uri}/v1/schema"))
        .send()
        .await
        .expect("the relay answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(schema["things"]["classes"][0]["class"], "City", "{schema}");
    JsFuture::from(peer.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn a_tab_joins_an_https_genesis_over_wss() {
    let genesis = tls_genesis();
    assert!(genesis.starts_with("https://"), "{genesis}");
    let socket = plexus_core::relay::socket_url(genesis);
    assert!(socket.starts_with("wss://"), "{socket}");
    let options = json!({
        "genesis": genesis,
        "name": "TabWss",
        "timeoutMs": 5000,
        "pingIntervalMs": 500,
        "database": null,
    });
    let mut peer = PlexusPeer::join(to_js(&options).unchecked_into::<PeerOptionsArg>())
        .await
        .unwrap_or_else(|e| panic!("the tab joins {genesis}: {e:?}"));
    assert_eq!(peer.genesis_url(), genesis);
    // The relay's socket (the tab's own) answers over TLS with a challenge.
    let mut probe = WebSocket::open(&socket).expect("a wss socket");
    assert!(
        matches!(relay_frame(&mut probe).await, ToTab::Challenge { .. }),
        "no challenge on {socket}"
    );
    drop(probe);
    let uri = format!("{genesis}/relay/TabWss");
    assert_eq!(peer.uri(), uri);
    let peers: Json = Request::get(&format!("{genesis}/peers"))
        .send()
        .await
        .expect("genesis answers over HTTPS")
        .json()
        .await
        .expect("JSON");
    let listed = peers
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["peerName"] == "TabWss"))
        .unwrap_or_else(|| panic!("genesis lists TabWss: {peers}"));
    assert_eq!(listed["peerUri"], uri.as_str());
    // A request to the tab's HTTPS URI reaches it through its wss socket.
    resolve(peer.create_class("things".into(), JsValue::from_str(CITY))).await;
    let schema: Json = Request::get(&format!("{uri}/v1/schema"))
        .send()
        .await
        .expect("the relay answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(schema["things"]["classes"][0]["class"], "City", "{schema}");
    JsFuture::from(peer.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn writes_are_checked_as_the_rest_api_checks_them() {
    let mut peer = join("TabChecks").await;
    let error = JsFuture::from(peer.create_class("places".into(), JsValue::from_str(CITY)))
        .await
        .expect_err("no such kind");
    assert_eq!(
        js_sys::Reflect::get(&error, &"status".into())
            .ok()
            .and_then(|s| s.as_f64()),
        Some(404.0)
    );
    resolve(peer.create_class("things".into(), JsValue::from_str(CITY))).await;
    let wrong = json!({"class": "City", "schema": {"name": 7}});
    let error = JsFuture::from(peer.add_object("things".into(), to_js(&wrong)))
        .await
        .expect_err("a number is no string");
    assert_eq!(
        js_sys::Reflect::get(&error, &"status".into())
            .ok()
            .and_then(|s| s.as_f64()),
        Some(422.0)
    );
    let message = js_sys::Reflect::get(&error, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    assert!(
        message.contains("property \"name\" expects string"),
        "{message}"
    );
    JsFuture::from(peer.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn the_native_peer_network_query_returns_the_tab_objects() {
    let mut peer = tab_with_cities("TabCities", &["Rotterdam", "Delft"]).await;
    let query = "{ Network { Get { TabCities { Things { City { name } } } } } }";
    eventually(
        15_000,
        "the native peer's Network query of the tab",
        || async move {
            let answer = post_graphql(native(), query).await;
            let cities = &answer["data"]["Network"]["Get"]["TabCities"]["Things"]["City"];
            let mut names: Vec<&str> = cities
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
                .unwrap_or_default();
            names.sort_unstable();
            (names == ["Delft", "Rotterdam"])
                .then_some(())
                .ok_or(answer.to_string())
        },
    )
    .await;
    JsFuture::from(peer.leave()).await.expect("left");
}

const FETCH_CITY: &str = r#"Fetch { Things(where: {class: {name: "City", certainty: 0.6}}) { className beacon certainty } }"#;

/// The class names and beacons of a Fetch's `Things`.
fn fetched(things: &Json) -> Vec<(String, String)> {
    things
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| (i["className"].to_string(), i["beacon"].to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn a_tab_answers_a_network_fetch_by_meaning() {
    // A Town asked for as a City: the tab fetches the contextionary genesis
    // names (and keeps it), and answers Fetch with it, Local and Network.
    let database = "plexus-test-fetch";
    let mut peer = join_with("TabTowns", json!(database))
        .await
        .expect("the tab joins");
    let town = r#"{"class": "Town", "properties": [{"name": "name", "dataType": ["string"]}]}"#;
    resolve(peer.create_class("things".into(), JsValue::from_str(town))).await;
    let gouda = json!({"class": "Town", "schema": {"name": "Gouda"}});
    let created = resolve(peer.add_object("things".into(), to_js(&gouda))).await;
    let beacon = format!(
        "\"weaviate://TabTowns/things/{}\"",
        created["id"].as_str().expect("an id")
    );
    let local = format!("{{ Local {{ {FETCH_CITY} }} }}");
    let peer_ref = &peer;
    eventually(10_000, "the tab's own Local Fetch", || {
        let local = local.clone();
        let beacon = beacon.clone();
        async move {
            let answer = resolve(peer_ref.query(local, JsValue::UNDEFINED)).await;
            let found = fetched(&answer["data"]["Local"]["Fetch"]["Things"]);
            (found == [("\"Town\"".to_owned(), beacon)])
                .then_some(())
                .ok_or(answer.to_string())
        }
    })
    .await;
    let network = format!("{{ Network(networkTimeout: 3000) {{ {FETCH_CITY} }} }}");
    eventually(
        15_000,
        "the native peer's Network Fetch of the tab's Town",
        || {
            let network = network.clone();
            let beacon = beacon.clone();
            async move {
                let answer = post_graphql(native(), &network).await;
                let found = fetched(&answer["data"]["Network"]["Fetch"]["Things"]);
                found
                    .contains(&("\"Town\"".to_owned(), beacon))
                    .then_some(())
                    .ok_or(answer.to_string())
            }
        },
    )
    .await;
    // It keeps what it fetched, under its hash, for the next join.
    let file = Request::get(&format!("{}/contextionary", genesis()))
        .send()
        .await
        .expect("genesis answers")
        .binary()
        .await
        .expect("the file");
    let hash = plexus_core::contextionary::hash_of(&file).to_string();
    let kept = store::load_bytes(database, &store::contextionary_key(&hash))
        .await
        .expect("IndexedDB answers");
    assert!(kept.as_deref() == Some(&file[..]), "the tab kept the file");
    JsFuture::from(peer.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn the_tab_network_query_reaches_the_native_peer() {
    let mut peer = tab_with_cities("TabAsker", &["Leiden"]).await;
    let query = "{ Network { Get { Native { Things { City { name } } } TabAsker { Things { City { name } } } } } }";
    let mut last = Json::Null;
    for _ in 0..150 {
        last = resolve(peer.query(query.into(), JsValue::UNDEFINED)).await;
        if last["data"]["Network"]["Get"]["Native"]["Things"]["City"]
            == json!([{"name": "Amsterdam"}])
        {
            break;
        }
        TimeoutFuture::new(100).await;
    }
    let get = &last["data"]["Network"]["Get"];
    assert_eq!(
        get["Native"]["Things"]["City"],
        json!([{"name": "Amsterdam"}]),
        "{last}"
    );
    assert_eq!(
        get["TabAsker"]["Things"]["City"],
        json!([{"name": "Leiden"}]),
        "{last}"
    );
    let local = resolve(peer.query(
        "{ Local { Get { Things { City { name } } } } }".into(),
        JsValue::UNDEFINED,
    ))
    .await;
    assert_eq!(
        local["data"]["Local"]["Get"]["Things"]["City"],
        json!([{"name": "Leiden"}])
    );
    JsFuture::from(peer.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn a_tab_of_an_origin_genesis_refuses_is_told_so() {
    let origin = js_sys::Reflect::get(&js_sys::global(), &"location".into())
        .and_then(|location| js_sys::Reflect::get(&location, &"origin".into()))
        .ok()
        .and_then(|o| o.as_string())
        .expect("the page's origin");
    let timeout_ms = 20_000.0;
    let started = js_sys::Date::now();
    let refused = join_with_options(
        "TabRefused",
        Json::Null,
        json!({ "genesis": closed_genesis(), "timeoutMs": timeout_ms }),
    )
    .await;
    let waited = js_sys::Date::now() - started;
    let error = refused
        .err()
        .expect("genesis does not let this origin register");
    let message = js_sys::Reflect::get(&error, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("origin {origin}")) && message.contains("--cors-origin"),
        "{message}"
    );
    // Genesis answered (the browser hid it): not "join: no answer (...)".
    assert!(message.starts_with("genesis "), "{message}");
    // Told at once, not after the wait for a registration.
    assert!(
        waited < timeout_ms / 2.0,
        "rejected after {waited} ms: {message}"
    );
}

#[wasm_bindgen_test]
async fn a_second_tab_cannot_answer_for_the_first_ones_name() {
    let mut first = tab_with_cities("TabOwner", &["Gouda"]).await;
    let refused = join_with("TabOwner", Json::Null).await;
    let error = refused.err().expect("a second key may not take TabOwner");
    let message = js_sys::Reflect::get(&error, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    assert!(message.contains("refused"), "{message}");
    // The first still answers for its name.
    let answer = post_graphql(
        &format!("{}/relay/TabOwner", genesis()),
        "{ Local { Get { Things { City { name } } } } }",
    )
    .await;
    assert_eq!(
        answer["data"]["Local"]["Get"]["Things"]["City"],
        json!([{"name": "Gouda"}]),
        "{answer}"
    );
    assert_eq!(
        listing("TabOwner").await.map(|p| p["peerUri"].clone()),
        Some(json!(first.uri()))
    );
    JsFuture::from(first.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn leave_removes_the_tab() {
    let mut peer = join("TabLeaver").await;
    assert!(listing("TabLeaver").await.is_some());
    JsFuture::from(peer.leave()).await.expect("left");
    assert!(peer.stopped());
    assert_eq!(listing("TabLeaver").await, None, "genesis still lists it");
    let status = Request::get(&format!("{}/relay/TabLeaver/v1/schema", genesis()))
        .send()
        .await
        .expect("the relay answers")
        .status();
    assert_eq!(status, 502, "no tab answers for TabLeaver any more");
}

#[wasm_bindgen_test]
async fn closing_the_page_leaves() {
    let peer = join("TabClosed").await;
    assert!(listing("TabClosed").await.is_some());
    // What a browser fires when the tab is closed or navigated away.
    let event = web_sys::Event::new("pagehide").expect("an event");
    web_sys::window()
        .expect("a window")
        .dispatch_event(&event)
        .expect("dispatched");
    eventually(5_000, "genesis no longer lists TabClosed", || async {
        match listing("TabClosed").await {
            None => Ok(()),
            Some(entry) => Err(format!("still listed: {entry}")),
        }
    })
    .await;
    drop(peer);
}

#[wasm_bindgen_test]
async fn a_reload_keeps_the_key_schema_and_objects_and_rejoins() {
    let stamp = js_sys::Date::now() as u64;
    let database = json!(format!("plexus-test-{stamp}"));
    let mut before = join_with("TabReload", database.clone())
        .await
        .expect("joins");
    resolve(before.create_class("things".into(), JsValue::from_str(CITY))).await;
    let object = json!({"class": "City", "schema": {"name": "Haarlem"}});
    resolve(before.add_object("things".into(), to_js(&object))).await;
    let (key, hash) = (before.public_key(), before.schema_hash());
    // The page goes away without leaving; genesis still holds the name for its key.
    before.close();
    let mut after = join_with("TabReload", database)
        .await
        .expect("rejoins under its name");
    assert_eq!(after.public_key(), key, "the same key");
    assert_eq!(after.schema_hash(), hash, "the same schema");
    let local = resolve(after.query(
        "{ Local { Get { Things { City { name } } } } }".into(),
        JsValue::UNDEFINED,
    ))
    .await;
    assert_eq!(
        local["data"]["Local"]["Get"]["Things"]["City"],
        json!([{"name": "Haarlem"}])
    );
    assert!(listing("TabReload").await.is_some());
    // Another key may not take the name it holds.
    assert!(join_with("TabReload", Json::Null).await.is_err());
    JsFuture::from(after.leave()).await.expect("left");
}

/// The next frame the relay sends on `socket`.
async fn relay_frame(socket: &mut WebSocket) -> ToTab {
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                return serde_json::from_str(&text).expect("a frame");
            }
            Some(Ok(WsMessage::Bytes(_))) => {}
            other => panic!("the relay socket ended: {other:?}"),
        }
    }
}

/// The names of the cities the native peer's Network query gets from `tab`.
async fn cities_via_native(tab: &str) -> Result<(), String> {
    let query = format!("{{ Network {{ Get {{ {tab} {{ Things {{ City {{ name }} }} }} }} }} }}");
    let answer = post_graphql(native(), &query).await;
    let cities = &answer["data"]["Network"]["Get"][tab]["Things"]["City"];
    (cities == &json!([{"name": "Zwolle"}]))
        .then_some(())
        .ok_or(answer.to_string())
}

#[wasm_bindgen_test]
async fn a_dropped_relay_socket_reconnects_and_the_tab_answers_again() {
    let stamp = js_sys::Date::now() as u64;
    let db = format!("plexus-test-drop-{stamp}");
    let mut peer = join_with_options(
        "TabDrop",
        json!(db),
        json!({"reconnectMinMs": 100, "reconnectMaxMs": 1000, "reconnectAttempts": 5}),
    )
    .await
    .expect("joins");
    resolve(peer.create_class("things".into(), JsValue::from_str(CITY))).await;
    let object = json!({"class": "City", "schema": {"name": "Zwolle"}});
    resolve(peer.add_object("things".into(), to_js(&object))).await;
    eventually(15_000, "the native peer's query of TabDrop", || {
        cities_via_native("TabDrop")
    })
    .await;
    assert!(peer.connected());
    let id = listing("TabDrop").await.expect("listed")["id"].clone();

    // The relay closes the tab's socket: another socket proves the same key
    // (the seed the tab keeps in IndexedDB) and takes the name over.
    let record = store::load(&db, &store::key(&peer.genesis_url(), "TabDrop"))
        .await
        .expect("IndexedDB")
        .expect("the tab's record");
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&record.seed[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let identity = Identity::from_seed(seed.try_into().expect("32 bytes"));
    let name = PeerName::new("TabDrop").expect("a name");
    let url = plexus_core::relay::socket_url(genesis());
    let mut thief = WebSocket::open(&url).expect("a socket");
    let ToTab::Challenge { nonce } = relay_frame(&mut thief).await else {
        panic!("no challenge");
    };
    let now = plexus_core::Timestamp::from_millis(js_sys::Date::now() as u64);
    let signature = identity.sign(&hello_message(&tab_path(&name), &nonce), now);
    let hello = serde_json::to_string(&FromTab::hello(name, signature)).expect("JSON");
    thief.send(WsMessage::Text(hello)).await.expect("sent");
    assert!(
        matches!(relay_frame(&mut thief).await, ToTab::Welcome { .. }),
        "the same key takes the name over"
    );
    // The tab notices its socket closed, reconnects, proves its key again
    // and takes the name back: the relay tells the other socket so.
    let next = {
        let frame = Box::pin(relay_frame(&mut thief));
        match futures::future::select(frame, TimeoutFuture::new(10_000)).await {
            futures::future::Either::Left((frame, _)) => Some(frame),
            futures::future::Either::Right(_) => None,
        }
    };
    match next {
        Some(ToTab::Refused { message }) => assert!(message.contains("replaced"), "{message}"),
        Some(other) => panic!("unexpected frame {other:?}"),
        None => panic!("the tab did not reconnect within 10 s"),
    }
    drop(thief);
    let tab = &peer;
    eventually(5000, "the relay's welcome to the tab", || async move {
        tab.connected()
            .then_some(())
            .ok_or_else(|| "not connected".to_owned())
    })
    .await;

    // And the network reaches it again, under the registration it kept.
    eventually(15_000, "the native peer's query of TabDrop again", || {
        cities_via_native("TabDrop")
    })
    .await;
    assert_eq!(
        listing("TabDrop").await.expect("listed")["id"],
        id,
        "the same registration"
    );
    JsFuture::from(peer.leave()).await.expect("left");
}

#[wasm_bindgen_test]
async fn a_peer_that_never_answers_times_out_beside_the_others_data() {
    let mut peer = tab_with_cities("TabHangAsker", &["Leiden"]).await;
    let hanging = hanging();
    let path = json!(["Network", "Get", hanging]);
    // The tab's timeoutMs is 5000; networkTimeout asks for less.
    let network_timeout = 800.0;
    let query = format!(
        "{{ Network(networkTimeout: {network_timeout}) {{ Get {{ TabHangAsker {{ Things {{ City {{ name }} }} }} {hanging} {{ Things {{ City {{ name }} }} }} }} }} }}"
    );
    // Until the tab has the hanging peer's schema from genesis's list, the
    // planner does not know it: wait for the fan-out's own error.
    let (mut last, mut waited) = (Json::Null, 0.0);
    for _ in 0..100 {
        let started = js_sys::Date::now();
        // Bounded here too: a query that hangs with the peer fails the test.
        let answer = Box::pin(resolve(peer.query(query.clone(), JsValue::UNDEFINED)));
        last = match futures::future::select(answer, TimeoutFuture::new(10_000)).await {
            futures::future::Either::Left((answer, _)) => answer,
            futures::future::Either::Right(_) => panic!("no answer within 10 s"),
        };
        waited = js_sys::Date::now() - started;
        let timed_out = last["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|e| {
                e["path"] == path
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no answer within"))
            })
        });
        if timed_out {
            break;
        }
        TimeoutFuture::new(200).await;
    }
    let errors: Vec<&Json> = last["errors"]
        .as_array()
        .map(|errors| errors.iter().filter(|e| e["path"] == path).collect())
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "one error at {hanging}'s path: {last}");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no answer within"), "{last}");
    assert_eq!(
        last["data"]["Network"]["Get"]["TabHangAsker"]["Things"]["City"],
        json!([{"name": "Leiden"}]),
        "{last}"
    );
    assert!(
        waited >= network_timeout - 100.0 && waited < network_timeout + 1000.0,
        "answered after {waited} ms, networkTimeout {network_timeout} ms: {last}"
    );
    JsFuture::from(peer.leave()).await.expect("left");
}
