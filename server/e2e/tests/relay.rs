//! `plexus-genesis --relay` end to end: a Rust client over WebSocket acts as
//! a browser tab (its answers come from an in-process peer router, as a
//! tab's come from its engine), next to a real genesis and a real native peer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::{SinkExt as _, StreamExt as _};
use plexus_bench::tab::{Tab, hello, ping, register};
use plexus_core::auth::Identity;
use plexus_core::client::CallError;
use plexus_core::relay::{FromTab, RelayResponse, ToTab};
use plexus_peer::{PeerDb, PeerState, router};
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message as Ws;
use tower::ServiceExt as _;

/// Joins as `name` with `db`'s router; the tab and the probe genesis made.
async fn join(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    key: &Identity,
    db: &Arc<PeerDb>,
) -> Tab {
    let app = router(PeerState::standalone(db.clone()));
    plexus_bench::tab::join(client, genesis, name, key, app, &db.schema_hash())
        .await
        .unwrap()
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
    let mut tab = join(&client, &genesis.url, "TabA", &key, &db).await;
    // Genesis probed the tab over its socket before it registered it.
    let probe = tab.requests.recv().await.unwrap();
    assert_eq!(
        (probe.method.as_str(), probe.path.as_str()),
        ("GET", "/p2p/ping")
    );
    // join() pinged once; pings go on as a tab's do.
    assert_eq!(
        ping(
            &client,
            &genesis.url,
            tab.id,
            &tab.session,
            &db.schema_hash()
        )
        .await
        .map(|version| version.is_some()),
        Ok(true),
        "a keyed ping is answered with the list version"
    );
    let entry = poll(Duration::from_secs(5), "genesis lists TabA", || async {
        listed(&get(&client, &genesis.at("/peers")).await?, "TabA")
    })
    .await;
    assert_eq!(entry["peerUri"], format!("{}/relay/TabA", genesis.url));
    assert_eq!(entry["schema_hash"], db.schema_hash());

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
    let (_socket, refused) = hello(&genesis.url, "TabA", &thief).await.unwrap();
    assert!(matches!(refused, ToTab::Refused { .. }), "{refused:?}");
    assert_eq!(
        register(&client, &genesis.url, "TabA", &thief)
            .await
            .unwrap()
            .err()
            .map(|refused| matches!(refused, CallError::Forbidden(_))),
        Some(true)
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
    let (mut socket, welcome) = hello(&genesis.url, "Silent", &key).await.unwrap();
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
    let (mut socket, welcome) = hello(&genesis.url, "Slow", &key).await.unwrap();
    assert!(matches!(welcome, ToTab::Welcome { .. }));
    // A second socket is one tab too many: refused before its upgrade.
    let other = Identity::from_seed([11; 32]);
    let Err(refused) = hello(&genesis.url, "Other", &other).await else {
        panic!("a second socket was admitted");
    };
    assert!(refused.to_string().contains("503"), "{refused}");

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
        let url = genesis.at("/relay/Slow/p2p/ping?probe=%41");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    });
    let Some(Ok(Ws::Text(text))) = socket.next().await else {
        panic!("no request")
    };
    let ToTab::Request(request) = serde_json::from_str(&text).unwrap() else {
        panic!("{text}")
    };
    // The path below /relay/{name} reaches the tab as sent, with its query.
    assert_eq!(request.path, "/p2p/ping?probe=%41");
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

#[tokio::test]
async fn an_idle_relay_costs_no_cpu() {
    let genesis = genesis(&["--relay"]);
    let key = Identity::from_seed([11; 32]);
    let (_socket, welcome) = hello(&genesis.url, "Idle", &key).await.unwrap();
    assert!(matches!(welcome, ToTab::Welcome { .. }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = genesis.child.id();
    let before = plexus_bench::cpu_ticks(pid).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = plexus_bench::cpu_ticks(pid).unwrap() - before;
    // A timer that woke itself spun a whole core: ~200 ticks in 2 s.
    assert!(used < 50, "{used} ticks of CPU in 2 s of idling");
}
