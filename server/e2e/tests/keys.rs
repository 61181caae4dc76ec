//! Owned names and signed pushes, attacked with real `plexus-genesis` and
//! `plexus-peer` processes on loopback: forged, replayed and altered pushes,
//! name hijacks, foreign leaves and forged pings are refused, and the
//! victim's view and registration stay as they were; a client that sends no
//! key keeps the original behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, put};
use plexus_core::Timestamp;
use plexus_core::auth::{Identity, Message, SESSION_KEY_HEADER, SignatureHeaders};
use plexus_core::wire::{PEERS_VERSION_HEADER, Peer, PeerListEntry};
use serde_json::{Value, json};
use support::{Proc, genesis, genesis_command, peer, poll, respawn, spawn_on_free_port, view_of};

const LIMIT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(u64::try_from(ms).unwrap())
}

fn with_signature(
    mut request: reqwest::RequestBuilder,
    signature: Option<&SignatureHeaders>,
) -> reqwest::RequestBuilder {
    for (name, value) in signature.iter().flat_map(|s| s.pairs()) {
        request = request.header(name, value);
    }
    request
}

/// `PUT {peer}/p2p/genesis` with `body`, a version header and maybe a signature.
async fn push(
    peer: &Proc,
    body: &[u8],
    version: u64,
    signature: Option<&SignatureHeaders>,
) -> (u16, Value) {
    let request = client()
        .put(peer.at("/p2p/genesis"))
        .header("content-type", "application/json")
        .header(PEERS_VERSION_HEADER, version)
        .body(body.to_vec());
    let response = with_signature(request, signature).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The peer's view: `(listVersion, [(name, id, uri)])`.
async fn view(peer: &Proc) -> (Value, Vec<(String, String, String)>) {
    let view = support::get(&client(), &peer.at("/v1/network/peers"))
        .await
        .unwrap();
    let peers = view["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("id"), text("uri"))
        })
        .collect();
    (view["listVersion"].clone(), peers)
}

/// Genesis's list, as `GET /peers` gives it.
async fn genesis_list(g: &Proc) -> Vec<Peer> {
    client()
        .get(g.at("/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn registered(g: &Proc, name: &str) -> Peer {
    poll(LIMIT, &format!("genesis lists {name}"), || async {
        genesis_list(g)
            .await
            .into_iter()
            .find(|p| p.peer_name.as_str() == name)
    })
    .await
}

/// The pushes a [`Sink`] got: each one's `signature-input` and body.
type Pushes = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A fake original peer: answers the probe and records every push.
struct Sink {
    url: String,
    pushes: Pushes,
    pings: Arc<Mutex<usize>>,
}

impl Sink {
    async fn start() -> Self {
        type Shared = (Pushes, Arc<Mutex<usize>>);
        let shared: Shared = Default::default();
        let app = Router::new()
            .route(
                "/p2p/ping",
                get(|State((_, pings)): State<Shared>| async move {
                    *pings.lock().unwrap() += 1;
                }),
            )
            .route(
                "/p2p/genesis",
                put(
                    |State((pushes, _)): State<Shared>,
                     headers: axum::http::HeaderMap,
                     body: Bytes| async move {
                        let signature = headers
                            .get("signature-input")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        pushes.lock().unwrap().push((signature, body));
                    },
                ),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            pushes: shared.0,
            pings: shared.1,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_too_new_pushes_are_refused_and_the_view_stays() {
    let dir = tempfile::tempdir().unwrap();
    // Genesis's key is known to the test, to make pushes as genesis made them.
    let key_file = dir.path().join("genesis.key");
    let (genesis_key, _) = plexus_server::keys::load_or_create(&key_file).unwrap();
    let g = genesis(&["--key-file", key_file.to_str().unwrap()]);
    let a = peer(&g, "PeerA", &dir.path().join("a"), &[]);
    let _b = peer(&g, "PeerB", &dir.path().join("b"), &[]);
    // Settled: A has B's schema hash, at genesis's list version.
    poll(LIMIT, "A's view settles", || async {
        let b = view_of(&client(), &a.url, "PeerB").await?;
        let health = support::get(&client(), &g.at("/healthz")).await?;
        let settled = b["schemaHash"] != "" && view(&a).await.0 == health["version"];
        settled.then_some(())
    })
    .await;
    let before = view(&a).await;
    let version = before.0.as_u64().expect("a list version");

    let b = registered(&g, "PeerB").await;
    let forged: Vec<PeerListEntry> = vec![PeerListEntry {
        uri: plexus_core::PeerUri::new("http://127.0.0.1:9").unwrap(),
        ..b.to_entry()
    }];
    let forged = serde_json::to_vec(&forged).unwrap();
    let mallory = Identity::from_seed([0x66; 32]);

    // Unsigned, with the huge version of the issue.
    let (status, body) = push(&a, &forged, u64::MAX, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{body}"
    );
    // Signed by another key.
    let signed = mallory.sign(&Message::push(Some(u64::MAX), &forged), now());
    assert_eq!(push(&a, &forged, u64::MAX, Some(&signed)).await.0, 403);
    // Genesis's own signature over version+1, sent with a huge version.
    let real = genesis_key.sign(&Message::push(Some(version + 1), &forged), now());
    assert_eq!(push(&a, &forged, u64::MAX, Some(&real)).await.0, 403);
    // Genesis's own push, replayed two minutes later.
    let old = genesis_key.sign(
        &Message::push(Some(version + 1), &forged),
        Timestamp::from_millis(now().as_millis() - 120_000),
    );
    let (status, body) = push(&a, &forged, version + 1, Some(&old)).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too old"),
        "{body}"
    );
    // A positive control: the list as genesis has it, signed as genesis signs.
    let list: Vec<PeerListEntry> = genesis_list(&g).await.iter().map(Peer::to_entry).collect();
    let list = serde_json::to_vec(&list).unwrap();
    let genuine = genesis_key.sign(&Message::push(Some(version), &list), now());
    assert_eq!(push(&a, &list, version, Some(&genuine)).await.0, 200);

    assert_eq!(view(&a).await, before, "the view is what it was");
    // Not poisoned: a real change still reaches A.
    let _c = peer(&g, "PeerC", &dir.path().join("c"), &[]);
    let c = client();
    poll(LIMIT, "A sees C", || view_of(&c, &a.url, "PeerC")).await;
    let after = view(&a).await;
    assert!(after.0.as_u64().unwrap() > version);
    assert!(
        after
            .1
            .iter()
            .any(|(name, _, uri)| name == "PeerB" && *uri == b.peer_uri.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_hijack_foreign_leave_and_forged_ping_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(&[]);
    let a = peer(&g, "PeerA", &dir.path().join("a"), &[]);
    let victim = registered(&g, "PeerA").await;
    let sink = Sink::start().await;
    let hijack = json!({"peerName": "PeerA", "peerUri": sink.url});
    let body = serde_json::to_vec(&hijack).unwrap();

    // A plain client, then one that signs with its own key.
    let plain = client()
        .post(g.at("/peers/register"))
        .header("content-type", "application/json")
        .body(body.clone());
    let mallory = Identity::from_seed([0x66; 32]);
    let signature = mallory.sign(&Message::request("POST", "/peers/register", &body), now());
    let signed = with_signature(
        client()
            .post(g.at("/peers/register"))
            .header("content-type", "application/json")
            .body(body.clone()),
        Some(&signature),
    );
    for request in [plain, signed] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("owns it"),
            "{error}"
        );
    }
    assert_eq!(
        *sink.pings.lock().unwrap(),
        0,
        "no probe for a refused name"
    );

    // A leave and pings of the victim's (public) id, unsigned and with a made-up session key.
    let id = victim.id;
    let leave = client()
        .delete(g.at(&format!("/peers/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(leave.status(), 403);
    let ping_path = format!("/peers/{id}/ping");
    let evil = br#"{"schemaHash":"evil"}"#;
    let fake_session = mallory.sign(&Message::request("POST", &ping_path, evil), now());
    for signature in [None, Some(&fake_session)] {
        let request = client().post(g.at(&ping_path)).body(evil.to_vec());
        let response = with_signature(request, signature).send().await.unwrap();
        assert_eq!(response.status(), 403);
    }

    // Intact, and still so after a few of its own pings (500 ms apart).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let now_listed = registered(&g, "PeerA").await;
    assert_eq!(
        (now_listed.id, &now_listed.peer_uri),
        (victim.id, &victim.peer_uri)
    );
    assert_ne!(now_listed.schema_hash, "evil");
    assert!(
        now_listed.last_contact_at > victim.last_contact_at,
        "its own pings count"
    );
    let view = support::get(&client(), &a.at("/v1/network/peers"))
        .await
        .unwrap();
    assert_eq!(view["state"], "registered");
    assert_eq!(view["id"], json!(victim.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_key_keeps_the_original_journey_unless_keys_are_required() {
    let g = genesis(&[]);
    let sink = Sink::start().await;
    let c = client();
    let (status, answer) = support::post(
        &c,
        &g.at("/peers/register"),
        json!({"peerName": "Orig", "peerUri": sink.url}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["peer"]["id"].as_str().unwrap().to_owned();
    assert!(
        !support::get(&c, &g.at("/peers"))
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
    let ping = c
        .post(g.at(&format!("/peers/{id}/ping")))
        .json(&json!({"schemaHash": "h1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert!(ping.headers().get(PEERS_VERSION_HEADER).is_some());
    assert!(ping.headers().get(SESSION_KEY_HEADER).is_none());
    poll(LIMIT, "a push with the hash", || async {
        let pushes = sink.pushes.lock().unwrap();
        pushes
            .iter()
            .any(|(signature, body)| {
                signature.is_some() && body[0]["name"] == "Orig" && body[0]["schemaHash"] == "h1"
            })
            .then_some(())
    })
    .await;
    let leave = c
        .delete(g.at(&format!("/peers/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(leave.status(), 204);

    // With --require-keys, the same client is refused, a Plexus peer is not.
    let strict = genesis(&["--require-keys"]);
    let (status, answer) = support::post(
        &c,
        &strict.at("/peers/register"),
        json!({"peerName": "Orig", "peerUri": sink.url}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let dir = tempfile::tempdir().unwrap();
    let _a = peer(&strict, "PeerA", dir.path(), &[]);
    registered(&strict, "PeerA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_persist_names_stay_bound_across_restarts_and_a_wrong_genesis_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("genesis-state");
    std::fs::create_dir_all(&state).unwrap();
    let genesis_on = |port: u16| {
        let mut command = genesis_command(&format!("127.0.0.1:{port}"));
        command
            .arg("--state")
            .arg(&state)
            .args(["--broadcast-delay", "5ms"]);
        command
    };
    let (mut g, port) = spawn_on_free_port(genesis_on);
    let data = dir.path().join("a");
    let mut a = peer(&g, "PeerA", &data, &[]);
    let first = registered(&g, "PeerA").await;

    // The peer's key: made on first start, owner-only.
    let key_file = data.join("peer.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read(&key_file).unwrap();
    let genesis_key_file = state.join("genesis.key");
    let mode = std::fs::metadata(&genesis_key_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "genesis keeps its key in its state folder");
    let health = support::get(&client(), &g.at("/healthz")).await.unwrap();
    let genesis_key = health["key"].as_str().unwrap().to_owned();

    // Killed without leaving, started again (at another port): the name is
    // bound, and only the same key gets it back.
    a.kill9();
    let mut a = peer(&g, "PeerA", &data, &[]);
    poll(LIMIT, "A registered again", || async {
        let now = genesis_list(&g)
            .await
            .into_iter()
            .find(|p| p.peer_name.as_str() == "PeerA")?;
        (now.peer_uri.to_string() == a.url).then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&key_file).unwrap(), key, "the key was reused");

    // Genesis restarted on its --state: the binding survives, and A's pings still count.
    let id = registered(&g, "PeerA").await.id;
    assert_ne!(id, first.id);
    g.kill9();
    g = respawn(|| genesis_on(port));
    let health = support::get(&client(), &g.at("/healthz")).await.unwrap();
    assert_eq!(health["key"], genesis_key.as_str(), "the same genesis key");
    let hijack = json!({"peerName": "PeerA", "peerUri": g.url});
    let (status, _) = support::post(&client(), &g.at("/peers/register"), hijack).await;
    assert_eq!(status, 403);
    let before = registered(&g, "PeerA").await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = registered(&g, "PeerA").await;
    assert_eq!(after.id, id);
    assert!(after.last_contact_at > before.last_contact_at);

    // A peer told another genesis key refuses this genesis and exits non-zero.
    let other = Identity::from_seed([0x44; 32]).public().to_string();
    let mut wrong = peer(
        &g,
        "PeerZ",
        &dir.path().join("z"),
        &["--genesis-key", &other],
    );
    let status = wrong.wait_exit(LIMIT).expect("it gives up");
    assert!(!status.success());
    // Told the right one, it joins.
    let _right = peer(
        &g,
        "PeerY",
        &dir.path().join("y"),
        &["--genesis-key", &genesis_key],
    );
    registered(&g, "PeerY").await;
    a.terminate();
    assert!(a.wait_exit(LIMIT).is_some());
}
