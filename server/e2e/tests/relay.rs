//! `plexus-genesis --relay` end to end: a Rust client over WebSocket acts as
//! a browser tab (its answers come from an in-process peer router, as a
//! tab's come from its engine), next to a real genesis and a real native peer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use futures::{SinkExt as _, StreamExt as _};
use plexus_core::auth::{self, Identity, Message, SessionKey};
use plexus_core::relay::{FromTab, RelayRequest, RelayResponse, ToTab, hello_message, tab_path};
use plexus_core::wire::{PeerId, ping_path};
use plexus_core::{PeerName, Timestamp};
use plexus_peer::{PeerDb, PeerState, router};
use serde_json::{Value, json};
use support::*;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use tower::ServiceExt as _;

fn now() -> Timestamp {
    plexus_genesis::now()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the relay socket and says hello as `name` with `identity`; the
/// socket and the relay's last frame (welcome or refused).
async fn hello(genesis: &str, name: &str, identity: &Identity) -> (Socket, ToTab) {
    let url = format!("{}/relay", genesis.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let Some(Ok(Ws::Text(text))) = socket.next().await else {
        panic!("no challenge")
    };
    let nonce = match serde_json::from_str(&text).unwrap() {
        ToTab::Challenge { nonce } => nonce,
        other => return (socket, other),
    };
    let name = PeerName::new(name).unwrap();
    let path = tab_path(&name);
    let signature = identity.sign(&hello_message(&path, &nonce), now());
    let frame = serde_json::to_string(&FromTab::hello(name, signature)).unwrap();
    socket.send(Ws::Text(frame.into())).await.unwrap();
    let Some(Ok(Ws::Text(text))) = socket.next().await else {
        panic!("no answer to the hello")
    };
    (socket, serde_json::from_str(&text).unwrap())
}

/// A tab: its socket answered by a peer router over `db`, pushes counted.
struct Tab {
    id: PeerId,
    session: SessionKey,
    stop: tokio::sync::oneshot::Sender<()>,
    requests: mpsc::UnboundedReceiver<RelayRequest>,
}

/// Answers `request` with the peer's router (pushes and pings: 200).
async fn answer(app: &axum::Router, request: &RelayRequest) -> RelayResponse {
    if request.path.starts_with("/p2p/") {
        return RelayResponse {
            id: request.id,
            status: 200,
            headers: vec![],
            body: String::new(),
        };
    }
    let mut builder = axum::http::Request::builder()
        .method(request.method.as_str())
        .uri(&request.path);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(request.body.clone())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    RelayResponse {
        id: request.id,
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// Serves `socket` with `db` until told to stop; then drops the socket.
fn serve(
    mut socket: Socket,
    db: Arc<PeerDb>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    mpsc::UnboundedReceiver<RelayRequest>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let (seen, requests) = mpsc::unbounded_channel();
    let app = router(PeerState::standalone(db));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                frame = socket.next() => {
                    let Some(Ok(Ws::Text(text))) = frame else { return };
                    let Ok(ToTab::Request(request)) = serde_json::from_str(&text) else { continue };
                    let _ = seen.send(request.clone());
                    let response = answer(&app, &request).await;
                    let frame = serde_json::to_string(&FromTab::Response(response)).unwrap();
                    if socket.send(Ws::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (stop, requests)
}

/// Registers `name` at `{genesis}/relay/{name}`, signed with `identity`.
async fn register(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    identity: &Identity,
) -> Result<(PeerId, SessionKey), u16> {
    let body = serde_json::to_vec(&json!({
        "peerName": name,
        "peerUri": format!("{genesis}/relay/{name}"),
    }))
    .unwrap();
    let signature = identity.sign(&Message::request("POST", "/peers/register", &body), now());
    let mut request = client
        .post(format!("{genesis}/peers/register"))
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in signature.pairs() {
        request = request.header(n, v);
    }
    let response = request.send().await.unwrap();
    if !response.status().is_success() {
        return Err(response.status().as_u16());
    }
    let session: SessionKey = response.headers()[auth::SESSION_KEY_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    let id = answer["peer"]["id"].as_str().unwrap().parse().unwrap();
    Ok((id, session))
}

async fn ping(client: &reqwest::Client, genesis: &str, tab: &Tab, hash: &str) -> u16 {
    let body = serde_json::to_vec(&json!({ "schemaHash": hash })).unwrap();
    let path = ping_path(tab.id);
    let signature = tab
        .session
        .sign(&Message::request("POST", &path, &body), now());
    let mut request = client
        .post(format!("{genesis}{path}"))
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in signature.pairs() {
        request = request.header(n, v);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Joins as `name`: socket, hello, registration; returns when registered.
async fn join(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    identity: &Identity,
    db: Arc<PeerDb>,
) -> Tab {
    let (socket, welcome) = hello(genesis, name, identity).await;
    assert!(matches!(welcome, ToTab::Welcome { .. }), "{welcome:?}");
    let (stop, requests) = serve(socket, db);
    let (id, session) = register(client, genesis, name, identity).await.unwrap();
    Tab {
        id,
        session,
        stop,
        requests,
    }
}

fn listed(peers: &Value, name: &str) -> Option<Value> {
    peers
        .as_array()?
        .iter()
        .find(|p| p["peerName"] == name)
        .cloned()
}

async fn tab_db(dir: &std::path::Path) -> Arc<PeerDb> {
    let db = Arc::new(PeerDb::open(dir).unwrap());
    let app = router(PeerState::standalone(db.clone()));
    for (path, body) in [
        (
            "/v1/schema/things",
            json!({"class": "Note", "properties": [{"name": "text", "dataType": ["string"]}]}),
        ),
        (
            "/v1/things",
            json!({"class": "Note", "schema": {"text": "written in a tab"}}),
        ),
    ] {
        let request = axum::http::Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(app.clone().oneshot(request).await.unwrap().status(), 200);
    }
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_joins_through_the_relay_and_answers_a_native_peers_network_query() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let genesis = genesis(&["--relay", "--peer-timeout", "3s"]);
    let native = peer(&genesis, "PeerA", &dir.path().join("a"), &[]);
    add_class(&client, &native.url, "City").await;

    let db = tab_db(&dir.path().join("tab")).await;
    let key = Identity::from_seed([7; 32]);
    let started = Instant::now();
    let mut tab = join(&client, &genesis.url, "TabA", &key, db.clone()).await;
    // Genesis probed the tab over its socket before it registered it.
    let probe = tab.requests.recv().await.unwrap();
    assert_eq!(
        (probe.method.as_str(), probe.path.as_str()),
        ("GET", "/p2p/ping")
    );
    assert_eq!(
        ping(&client, &genesis.url, &tab, &db.schema_hash()).await,
        200
    );
    let entry = poll(Duration::from_secs(5), "genesis lists TabA", || async {
        listed(&get(&client, &genesis.at("/peers")).await?, "TabA")
    })
    .await;
    eprintln!("join to listed: {:?}", started.elapsed());
    assert_eq!(entry["peerUri"], format!("{}/relay/TabA", genesis.url));
    assert_eq!(entry["schemaHash"], db.schema_hash());

    // The native peer sees the tab, downloads its schema over the relay and
    // queries it like any other peer.
    wait_cached(&client, &native.url, &["TabA"], Duration::from_secs(10)).await;
    let answer = graphql(
        &client,
        &native.url,
        "{ Network { Get { TabA { Things { Note { text } } } } } }",
    )
    .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(
        answer["data"]["Network"]["Get"]["TabA"]["Things"]["Note"][0]["text"],
        "written in a tab"
    );
    let mut paths = Vec::new();
    while let Ok(request) = tab.requests.try_recv() {
        paths.push(format!("{} {}", request.method, request.path));
    }
    assert!(paths.contains(&"PUT /p2p/genesis".to_owned()), "{paths:?}");
    assert!(paths.contains(&"GET /v1/schema".to_owned()), "{paths:?}");
    assert!(paths.contains(&"POST /v1/graphql".to_owned()), "{paths:?}");

    // A second key can neither take the socket for TabA nor register TabA.
    let thief = Identity::from_seed([8; 32]);
    let (_socket, refused) = hello(&genesis.url, "TabA", &thief).await;
    assert!(matches!(refused, ToTab::Refused { .. }), "{refused:?}");
    assert_eq!(
        register(&client, &genesis.url, "TabA", &thief).await.err(),
        Some(403)
    );
    let again = graphql(
        &client,
        &native.url,
        "{ Network { Get { TabA { Things { Note { text } } } } } }",
    )
    .await;
    assert_eq!(
        again["data"]["Network"]["Get"]["TabA"]["Things"]["Note"][0]["text"],
        "written in a tab"
    );

    // The tab goes away: its URI fails at once, and genesis evicts it.
    let _ = tab.stop.send(());
    poll(Duration::from_secs(2), "the relay forgets TabA", || async {
        let response = client
            .get(genesis.at("/relay/TabA/p2p/ping"))
            .send()
            .await
            .ok()?;
        (response.status() == 502).then_some(())
    })
    .await;
    poll(Duration::from_secs(8), "genesis evicts TabA", || async {
        listed(&get(&client, &genesis.at("/peers")).await?, "TabA")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_fails_its_requests_in_flight_at_once() {
    let client = reqwest::Client::new();
    let genesis = genesis(&["--relay", "--relay-timeout", "30s"]);
    let key = Identity::from_seed([9; 32]);
    let (mut socket, welcome) = hello(&genesis.url, "Silent", &key).await;
    assert!(matches!(welcome, ToTab::Welcome { .. }));
    let url = genesis.at("/relay/Silent/v1/schema");
    let pending = tokio::spawn({
        let client = client.clone();
        async move {
            let started = Instant::now();
            let status = client.get(url).send().await.unwrap().status().as_u16();
            (status, started.elapsed())
        }
    });
    // The request reaches the tab, which never answers, then closes.
    let Some(Ok(Ws::Text(text))) = socket.next().await else {
        panic!("no request")
    };
    assert!(matches!(
        serde_json::from_str(&text).unwrap(),
        ToTab::Request(_)
    ));
    socket.close(None).await.unwrap();
    let (status, took) = pending.await.unwrap();
    assert_eq!(status, 502);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_bounds_in_flight_and_body_sizes() {
    let client = reqwest::Client::new();
    let genesis = genesis(&[
        "--relay",
        "--relay-max-in-flight",
        "1",
        "--relay-max-body-bytes",
        "1000",
        "--relay-max-tabs",
        "1",
    ]);
    let key = Identity::from_seed([10; 32]);
    let (mut socket, welcome) = hello(&genesis.url, "Slow", &key).await;
    assert!(matches!(welcome, ToTab::Welcome { .. }));
    // A second socket is one tab too many.
    let other = Identity::from_seed([11; 32]);
    let (_full, refused) = hello(&genesis.url, "Other", &other).await;
    assert!(matches!(refused, ToTab::Refused { .. }), "{refused:?}");

    let big = "x".repeat(2000);
    let response = client
        .post(genesis.at("/relay/Slow/v1/graphql"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let first = tokio::spawn({
        let client = client.clone();
        let url = genesis.at("/relay/Slow/p2p/ping");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    });
    let Some(Ok(Ws::Text(text))) = socket.next().await else {
        panic!("no request")
    };
    let ToTab::Request(request) = serde_json::from_str(&text).unwrap() else {
        panic!("{text}")
    };
    let busy = client
        .get(genesis.at("/relay/Slow/p2p/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    let body: Value = busy.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    let frame = FromTab::Response(RelayResponse {
        id: request.id,
        status: 200,
        headers: vec![],
        body: String::new(),
    });
    socket
        .send(Ws::Text(serde_json::to_string(&frame).unwrap().into()))
        .await
        .unwrap();
    assert_eq!(first.await.unwrap(), 200);
}
