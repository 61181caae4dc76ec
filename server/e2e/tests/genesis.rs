//! `plexus-genesis` as a real process on loopback, with in-test fake peers.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use futures::StreamExt;
use plexus_core::wire::{GenesisPush, Peer, PeerDelta, PeerListEntry, PeerRegistrationResponse};
use serde_json::{Value, json};

mod support;

use support::{Proc, genesis_command, spawn};

// ---------- the genesis process ----------

/// Starts `plexus-genesis` with `args` (and its default broadcast delay).
fn start(args: &[&str]) -> Proc {
    let mut command = genesis_command("127.0.0.1:0");
    command.args(args);
    spawn(command)
}

// ---------- fake peers ----------

#[derive(Debug, Clone)]
struct Received {
    version: u64,
    auth: Option<String>,
    /// The whole list (empty when a delta came).
    entries: Vec<PeerListEntry>,
    delta: Option<PeerDelta>,
}

impl Received {
    fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.name.to_string()).collect()
    }
}

#[derive(Default)]
struct Log {
    pings: AtomicUsize,
    lists: Mutex<Vec<Received>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// Answers the probe, never answers `PUT /p2p/genesis`.
    HangOnGenesis,
}

struct FakePeer {
    url: String,
    log: Arc<Log>,
}

impl FakePeer {
    async fn start(mode: Mode) -> Self {
        let log = Arc::new(Log::default());
        let app = Router::new()
            .route(
                "/p2p/ping",
                get(|State((log, _)): State<(Arc<Log>, Mode)>| async move {
                    log.pings.fetch_add(1, Ordering::SeqCst);
                    StatusCode::OK
                }),
            )
            .route(
                "/p2p/genesis",
                put(
                    |State((log, mode)): State<(Arc<Log>, Mode)>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        if mode == Mode::HangOnGenesis {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let version = headers
                            .get("x-plexus-peers-version")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let (entries, delta) = match serde_json::from_slice(&body).unwrap() {
                            GenesisPush::Full(entries) => (entries, None),
                            GenesisPush::Delta(delta) => (Vec::new(), Some(delta)),
                        };
                        log.lists.lock().unwrap().push(Received {
                            version,
                            auth,
                            entries,
                            delta,
                        });
                        StatusCode::OK
                    },
                ),
            )
            .with_state((Arc::clone(&log), mode));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, log }
    }

    fn last(&self) -> Option<Received> {
        self.log
            .lists
            .lock()
            .unwrap()
            .iter()
            .max_by_key(|r| r.version)
            .cloned()
    }
}

// ---------- helpers ----------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn register(g: &Proc, name: &str, uri: &str) -> reqwest::Response {
    client()
        .post(g.at("/peers/register"))
        .json(&json!({"peerName": name, "peerUri": uri}))
        .send()
        .await
        .unwrap()
}

async fn register_ok(g: &Proc, name: &str, uri: &str) -> Peer {
    let response = register(g, name, uri).await;
    assert_eq!(
        response.status(),
        200,
        "{name}: {}",
        response.text().await.unwrap()
    );
    response
        .json::<PeerRegistrationResponse>()
        .await
        .unwrap()
        .peer
}

/// Registers with `x-plexus-deltas: 1`.
async fn register_deltas(g: &Proc, name: &str, uri: &str) -> Peer {
    let response = client()
        .post(g.at("/peers/register"))
        .header("x-plexus-deltas", "1")
        .json(&json!({"peerName": name, "peerUri": uri}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .json::<PeerRegistrationResponse>()
        .await
        .unwrap()
        .peer
}

async fn list(g: &Proc) -> (u64, Vec<Peer>) {
    let response = client().get(g.at("/peers")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let version = response.headers()["x-plexus-peers-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (version, response.json().await.unwrap())
}

async fn error_message(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error body");
    body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned()
}

fn closed_port_uri() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_journey() {
    let g = start(&[]);
    let peer = FakePeer::start(Mode::Normal).await;
    let (v0, empty) = list(&g).await;
    assert!(empty.is_empty());

    let response = register(&g, "PeerA", &peer.url).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["contextionary"]["hash"]["algorithm"], "sha256");
    let a: PeerRegistrationResponse = serde_json::from_value(body).unwrap();
    assert_eq!(
        peer.log.pings.load(Ordering::SeqCst),
        1,
        "genesis probed the peer once"
    );

    let (v1, peers) = list(&g).await;
    assert!(v1 > v0);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_name.as_str(), "PeerA");
    assert_eq!(peers[0].id, a.peer.id);

    let ping = |body: Value| {
        let url = g.at(&format!("/peers/{}/ping", a.peer.id));
        async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(ping(json!({"schemaHash": "h1"})).await, 200);
    let (v2, peers) = list(&g).await;
    assert_eq!(peers[0].schema_hash, "h1");
    assert!(v2 > v1, "a changed schema hash is a change of the list");
    assert_eq!(ping(json!({"schemaHash": "h1"})).await, 200);
    assert_eq!(list(&g).await.0, v2, "the same hash changes nothing");

    let leave = client()
        .delete(g.at(&format!("/peers/{}", a.peer.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(leave.status(), 204);
    assert!(list(&g).await.1.is_empty());
    assert_eq!(ping(json!({"schemaHash": "h1"})).await, 404);
    let again = client()
        .delete(g.at(&format!("/peers/{}", a.peer.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    assert!(error_message(again).await.contains("register again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peer_is_refused_with_400() {
    let g = start(&["--probe-timeout", "500ms"]);
    let response = register(&g, "Gone", &closed_port_uri()).await;
    assert_eq!(response.status(), 400);
    assert!(error_message(response).await.contains("cannot reach"));
    assert!(list(&g).await.1.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_reaches_every_peer_with_the_right_list() {
    let g = start(&[]);
    let peers = [
        FakePeer::start(Mode::Normal).await,
        FakePeer::start(Mode::Normal).await,
        FakePeer::start(Mode::Normal).await,
    ];
    let names = ["Alpha", "Beta", "Gamma"];
    let mut ids = Vec::new();
    for (name, peer) in names.iter().zip(&peers) {
        ids.push(register_ok(&g, name, &peer.url).await.id);
    }
    let everyone_has = |version: u64, names: &[&str]| {
        peers.iter().all(|p| {
            p.last()
                .is_some_and(|r| r.version == version && r.names() == names)
        })
    };
    let (version, _) = list(&g).await;
    eventually(
        Duration::from_secs(3),
        "the full list at every peer",
        || everyone_has(version, &names),
    )
    .await;
    let gamma = peers[2].last().unwrap();
    assert_eq!(gamma.entries[2].uri.as_str(), peers[2].url);
    assert_eq!(gamma.entries[0].id, ids[0]);

    // A changed schema hash is pushed to everyone.
    let status = client()
        .post(g.at(&format!("/peers/{}/ping", ids[1])))
        .json(&json!({"schemaHash": "beta2"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let (version, _) = list(&g).await;
    eventually(Duration::from_secs(3), "the new hash at every peer", || {
        everyone_has(version, &names)
            && peers
                .iter()
                .all(|p| p.last().unwrap().entries[1].schema_hash == "beta2")
    })
    .await;

    // A leave is pushed to those who remain.
    let status = client()
        .delete(g.at(&format!("/peers/{}", ids[0])))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let (version, _) = list(&g).await;
    eventually(Duration::from_secs(3), "the list without Alpha", || {
        peers[1..].iter().all(|p| {
            p.last()
                .is_some_and(|r| r.version == version && r.names() == ["Beta", "Gamma"])
        })
    })
    .await;
    // Bursts are coalesced: far fewer rounds than peers times changes.
    let received: usize = peers
        .iter()
        .map(|p| p.log.lists.lock().unwrap().len())
        .sum();
    assert!(received <= 3 * 5, "{received} broadcasts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_evicted_after_the_timeout_while_a_live_one_stays() {
    let g = start(&["--peer-timeout", "1s"]);
    let dead = FakePeer::start(Mode::Normal).await;
    let live = FakePeer::start(Mode::Normal).await;
    let registered = Instant::now();
    register_ok(&g, "Dead", &dead.url).await;
    let live_id = register_ok(&g, "Live", &live.url).await.id;
    let pinger = {
        let url = g.at(&format!("/peers/{live_id}/ping"));
        tokio::spawn(async move {
            loop {
                let _ = client()
                    .post(&url)
                    .json(&json!({"schemaHash": ""}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let mut evicted_after = None;
    while registered.elapsed() < Duration::from_secs(4) {
        let (_, peers) = list(&g).await;
        if peers.iter().all(|p| p.peer_name.as_str() != "Dead") {
            evicted_after = Some(registered.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pinger.abort();
    let after = evicted_after.expect("Dead was evicted");
    assert!(
        after >= Duration::from_millis(950),
        "evicted too early: {after:?}"
    );
    // The exact instant (last contact + timeout) is core's, tested in
    // virtual time (core/tests/registry.rs); here the wiring, with room for
    // a loaded machine's scheduling (1.6 s and 1.96 s were seen under load).
    assert!(
        after <= Duration::from_millis(2500),
        "evicted too late: {after:?}"
    );
    let (version, peers) = list(&g).await;
    assert_eq!(peers.len(), 1);
    eventually(
        Duration::from_secs(2),
        "the eviction pushed to Live",
        || {
            live.last()
                .is_some_and(|r| r.version == version && r.names() == ["Live"])
        },
    )
    .await;
    let metrics = client()
        .get(g.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("plexus_genesis_evictions_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_peer_does_not_delay_broadcasts_to_the_others() {
    let g = start(&["--broadcast-timeout", "5s"]);
    let hung = FakePeer::start(Mode::HangOnGenesis).await;
    let fast = FakePeer::start(Mode::Normal).await;
    register_ok(&g, "Hung", &hung.url).await;
    // The round announcing Hung is now stuck at Hung for 5 s.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    register_ok(&g, "Fast", &fast.url).await;
    let (version, _) = list(&g).await;
    eventually(Duration::from_secs(1), "the list at Fast", || {
        fast.last()
            .is_some_and(|r| r.version == version && r.names() == ["Fast", "Hung"])
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
    // And the following round too.
    let start = Instant::now();
    let other = FakePeer::start(Mode::Normal).await;
    register_ok(&g, "Other", &other.url).await;
    let (version, _) = list(&g).await;
    eventually(Duration::from_secs(1), "the next list at Fast", || {
        fast.last().is_some_and(|r| r.version == version)
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_token_is_required_and_broadcasts_are_signed_instead() {
    let g = start(&["--join-token", "s3cret"]);
    let peer = FakePeer::start(Mode::Normal).await;
    let body = json!({"peerName": "Tok", "peerUri": peer.url});
    let post = |token: Option<&str>| {
        let mut request = client().post(g.at("/peers/register")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    };
    let refused = post(None).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(error_message(refused).await.contains("join token"));
    assert_eq!(post(Some("wrong")).send().await.unwrap().status(), 403);
    assert_eq!(
        peer.log.pings.load(Ordering::SeqCst),
        0,
        "no probe without the token"
    );
    let ok = post(Some("s3cret")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let id = ok.json::<PeerRegistrationResponse>().await.unwrap().peer.id;

    let ping = g.at(&format!("/peers/{id}/ping"));
    assert_eq!(
        client()
            .post(&ping)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let pinged = client()
        .post(&ping)
        .bearer_auth("s3cret")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(pinged.status(), 200);

    eventually(Duration::from_secs(3), "a broadcast", || {
        peer.last().is_some()
    })
    .await;
    // Pushes are authenticated by genesis's signature: the token is not
    // handed to every URI that registered.
    assert_eq!(peer.last().unwrap().auth, None);

    let leave = g.at(&format!("/peers/{id}"));
    assert_eq!(client().delete(&leave).send().await.unwrap().status(), 403);
    assert_eq!(
        client()
            .delete(&leave)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    // Reading the list needs no token.
    assert_eq!(
        client().get(g.at("/peers")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_targets_are_refused_with_422_before_any_request() {
    let g = start(&[]);
    for uri in [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]:8080",
        "http://[::ffff:169.254.169.254]",
        "http://0.0.0.0:8080",
    ] {
        let response = register(&g, "Meta", uri).await;
        assert_eq!(response.status(), 422, "{uri}");
        assert!(
            error_message(response).await.contains("denied range"),
            "{uri}"
        );
    }
    for uri in ["ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://h"] {
        assert_eq!(register(&g, "Scheme", uri).await.status(), 422, "{uri}");
    }

    // Loopback is allowed by default, so only this genesis denies it.
    let g = start(&["--deny-cidr", "127.0.0.0/8", "--deny-cidr", "::1/128"]);
    let peer = FakePeer::start(Mode::Normal).await;
    assert_eq!(register(&g, "Local", &peer.url).await.status(), 422);
    let by_name = peer.url.replace("127.0.0.1", "localhost");
    assert_eq!(
        register(&g, "Local", &by_name).await.status(),
        422,
        "{by_name}"
    );
    assert_eq!(
        peer.log.pings.load(Ordering::SeqCst),
        0,
        "the denied peer was never contacted"
    );
    // Link-local stays denied when the operator adds ranges.
    assert_eq!(
        register(&g, "Meta", "http://169.254.169.254")
            .await
            .status(),
        422
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_bodies_get_json_errors() {
    let g = start(&["--max-body-bytes", "1024"]);
    let c = client();
    let big =
        json!({"peerName": "Big", "peerUri": format!("http://127.0.0.1/{}", "x".repeat(4096))});
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (c.post(g.at("/peers/register")).json(&big), 413),
        (c.post(g.at("/peers/register")).body("{not json"), 400),
        (
            c.post(g.at("/peers/register"))
                .json(&json!({"peerName": 3, "peerUri": "http://h"})),
            422,
        ),
        (
            c.post(g.at("/peers/register"))
                .json(&json!({"peerName": "bad-name", "peerUri": "http://h"})),
            422,
        ),
        (
            c.post(g.at("/peers/register"))
                .json(&json!({"peerName": "A"})),
            422,
        ),
        (c.post(g.at("/peers/register")).json(&json!([1, 2])), 422),
        (c.post(g.at("/peers/not-a-uuid/ping")).json(&json!({})), 400),
        (c.delete(g.at("/peers/not-a-uuid")), 400),
        (
            c.post(g.at("/peers/00000000-0000-0000-0000-000000000000/ping"))
                .json(&json!({"schemaHash": 7})),
            422,
        ),
        (
            c.post(g.at("/peers/00000000-0000-0000-0000-000000000000/ping"))
                .json(&json!({})),
            404,
        ),
        (c.get(g.at("/no/such/route")), 404),
    ];
    for (request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert!(!error_message(response).await.is_empty());
    }
    // Still serving.
    assert_eq!(c.get(g.at("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_broadcasting_exits_zero_promptly() {
    let mut g = start(&["--broadcast-timeout", "60s"]);
    let hung = FakePeer::start(Mode::HangOnGenesis).await;
    let normal = FakePeer::start(Mode::Normal).await;
    register_ok(&g, "Hung", &hung.url).await;
    register_ok(&g, "Normal", &normal.url).await;
    // A watcher holds a connection open too.
    let watch = client().get(g.at("/peers/watch")).send().await.unwrap();
    assert_eq!(watch.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    g.terminate();
    let status =
        tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(5))).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    drop(watch);
}

/// Reads server-sent events from a response: (event, data) pairs.
fn sse_events(response: reqwest::Response) -> impl futures::Stream<Item = (String, Value)> {
    futures::stream::unfold(
        (response, String::new()),
        |(mut response, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut event = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Some((
                        (event, serde_json::from_str(&data).unwrap()),
                        (response, buffer),
                    ));
                }
                let chunk = response.chunk().await.ok()??;
                buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_delivers_a_join_within_100ms() {
    let g = start(&[]);
    let first = FakePeer::start(Mode::Normal).await;
    register_ok(&g, "First", &first.url).await;
    let response = client().get(g.at("/peers/watch")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = Box::pin(sse_events(response));
    let (kind, snapshot) = events.next().await.unwrap();
    assert_eq!(kind, "snapshot");
    assert_eq!(snapshot["version"], 1);
    assert_eq!(snapshot["peers"][0]["peerName"], "First");

    let second = FakePeer::start(Mode::Normal).await;
    // Built before the clock starts: a client's TLS set-up is not genesis's time.
    let registrar = client();
    let start = Instant::now();
    let registering = tokio::spawn({
        let url = g.at("/peers/register");
        let uri = second.url.clone();
        async move {
            registrar
                .post(url)
                .json(&json!({"peerName": "Second", "peerUri": uri}))
                .send()
                .await
        }
    });
    let (kind, change) = tokio::time::timeout(Duration::from_millis(100), events.next())
        .await
        .expect("a change within 100 ms")
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(kind, "change");
    assert_eq!(change["version"], 2);
    assert_eq!(change["kind"], "joined");
    assert_eq!(change["peer"]["peerName"], "Second");
    assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    registering.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("genesis.redb");
    let state = state.to_str().unwrap();
    let peer = FakePeer::start(Mode::Normal).await;
    let mut g = start(&["--state", state]);
    let a = register_deltas(&g, "Kept", &peer.url).await;
    let b = register_ok(&g, "Gone", &peer.url).await;
    let status = client()
        .post(g.at(&format!("/peers/{}/ping", a.id)))
        .json(&json!({"schemaHash": "k1"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert_eq!(
        client()
            .delete(g.at(&format!("/peers/{}", b.id)))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let (version, before) = list(&g).await;
    g.terminate();
    assert!(
        tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(5)))
            .unwrap()
            .success()
    );
    drop(g);

    let g = start(&["--state", state]);
    let (restored_version, after) = list(&g).await;
    assert_eq!(restored_version, version);
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id, &after[0].schema_hash),
        (before[0].id, &before[0].schema_hash)
    );
    // Kept asked for deltas before the restart, and still gets them.
    let other = FakePeer::start(Mode::Normal).await;
    register_ok(&g, "Newcomer", &other.url).await;
    eventually(Duration::from_secs(3), "a delta at Kept", || {
        peer.last().and_then(|r| r.delta).is_some_and(|d| {
            d.from == version && d.upserts.iter().any(|e| e.name.as_str() == "Newcomer")
        })
    })
    .await;
    let status = client()
        .post(g.at(&format!("/peers/{}/ping", a.id)))
        .json(&json!({"schemaHash": "k1"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the old id still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_state_a_restart_forgets_and_pings_get_404() {
    let peer = FakePeer::start(Mode::Normal).await;
    let g = start(&[]);
    let a = register_ok(&g, "Volatile", &peer.url).await;
    drop(g);
    let g = start(&[]);
    let status = client()
        .post(g.at(&format!("/peers/{}/ping", a.id)))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_asks_for_deltas_gets_the_list_once_then_deltas() {
    let g = start(&[]);
    let d = FakePeer::start(Mode::Normal).await;
    let f = FakePeer::start(Mode::Normal).await;
    register_deltas(&g, "Delta", &d.url).await;
    let (v1, _) = list(&g).await;
    eventually(Duration::from_secs(3), "the whole list first", || {
        d.last()
            .is_some_and(|r| r.version == v1 && r.names() == ["Delta"] && r.delta.is_none())
    })
    .await;

    let full = register_ok(&g, "Full", &f.url).await;
    let (v2, _) = list(&g).await;
    eventually(
        Duration::from_secs(3),
        "a delta at Delta, the list at Full",
        || {
            let at_d = d.last().and_then(|r| r.delta).is_some_and(|delta| {
                (delta.from, delta.to) == (v1, v2)
                    && delta
                        .upserts
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        == ["Full"]
                    && delta.removed.is_empty()
            });
            let at_f = f
                .last()
                .is_some_and(|r| r.version == v2 && r.names() == ["Delta", "Full"]);
            at_d && at_f
        },
    )
    .await;

    let status = client()
        .delete(g.at(&format!("/peers/{}", full.id)))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let (v3, _) = list(&g).await;
    eventually(Duration::from_secs(3), "a removal delta", || {
        d.last()
            .and_then(|r| r.delta)
            .is_some_and(|delta| (delta.from, delta.to) == (v2, v3) && delta.removed == [full.id])
    })
    .await;
}

/// Every request is traced (tower-http's lines) when `RUST_LOG` asks for
/// `tower_http` at debug, pings too; the default log has no line per
/// request (that the layer is then left out shows in the ping benchmark).
#[tokio::test]
async fn requests_are_traced_only_when_rust_log_asks() {
    let dir = tempfile::tempdir().unwrap();
    let mut logged = Vec::new();
    for (name, filter) in [("debug", "info,tower_http=debug"), ("default", "info")] {
        let path = dir.path().join(name);
        let mut command = genesis_command("127.0.0.1:0");
        command
            .env("RUST_LOG", filter)
            .stderr(std::fs::File::create(&path).unwrap());
        let mut g = support::try_spawn_logging(command).expect("genesis starts");
        let c = reqwest::Client::new();
        let ping = format!("/peers/{}/ping", uuid::Uuid::nil());
        assert_eq!(c.get(g.at("/healthz")).send().await.unwrap().status(), 200);
        assert_eq!(c.post(g.at(&ping)).send().await.unwrap().status(), 404);
        g.kill9();
        logged.push(std::fs::read_to_string(&path).unwrap());
    }
    let lines = |log: &str| log.matches("finished processing request").count();
    assert_eq!(lines(&logged[0]), 2, "{}", logged[0]);
    assert_eq!(lines(&logged[1]), 0, "{}", logged[1]);
}
