//! Limits everywhere, against real processes on loopback: bounded URIs and
//! hashes (amplification), rate limits, half-open connections, redirects,
//! denied addresses, CORS from another origin, a slow watcher, and a peer
//! that leaves when genesis has another contextionary.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

mod fault_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use fault_common::{metric, real_peer_with};
use futures::StreamExt;
use serde_json::{Value, json};
use support::{Proc, genesis, poll, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What a sink heard: probes, pushes and the bytes pushed.
#[derive(Default)]
struct Heard {
    probes: AtomicU64,
    pushes: AtomicU64,
    pushed_bytes: AtomicU64,
    hits: AtomicU64,
}

/// An HTTP server playing any number of peers (any path ending in
/// `/p2p/ping` or `/p2p/genesis`), counting what genesis sends it.
async fn sink() -> (String, Arc<Heard>) {
    let heard = Arc::new(Heard::default());
    let app = Router::new()
        .route(
            "/{*rest}",
            any(
                |State(heard): State<Arc<Heard>>, uri: axum::http::Uri, body: Bytes| async move {
                    heard.hits.fetch_add(1, Ordering::SeqCst);
                    if uri.path().ends_with("/p2p/genesis") {
                        heard.pushes.fetch_add(1, Ordering::SeqCst);
                        heard
                            .pushed_bytes
                            .fetch_add(body.len() as u64, Ordering::SeqCst);
                    } else if uri.path().ends_with("/p2p/ping") {
                        heard.probes.fetch_add(1, Ordering::SeqCst);
                    }
                    StatusCode::OK
                },
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::clone(&heard));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}

/// A server whose every answer is `302 Location: {to}` (a redirect chain
/// when `to` is another such server), counting its hits.
async fn redirector(to: String) -> (String, Arc<Heard>) {
    let heard = Arc::new(Heard::default());
    let app = Router::new()
        .fallback(
            |State((heard, to)): State<(Arc<Heard>, String)>, uri: axum::http::Uri| async move {
                heard.hits.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::FOUND,
                    [(axum::http::header::LOCATION, format!("{to}{}", uri.path()))],
                )
            },
        )
        .with_state((Arc::clone(&heard), to));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}

async fn register(
    client: &reqwest::Client,
    genesis: &Proc,
    name: &str,
    uri: &str,
) -> (u16, Value, usize) {
    let body = json!({"peerName": name, "peerUri": uri}).to_string();
    let sent = body.len();
    let response = client
        .post(genesis.at("/peers/register"))
        .header("content-type", "application/json")
        .header("x-plexus-deltas", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null), sent)
}

async fn ping(client: &reqwest::Client, genesis: &Proc, id: &str, hash: &str) -> (u16, usize) {
    let body = json!({ "schemaHash": hash }).to_string();
    let sent = body.len();
    let response = client
        .post(genesis.at(&format!("/peers/{id}/ping")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), sent)
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn oversized_uris_and_hashes_are_refused_so_genesis_pushes_little_per_attacker_byte() {
    let client = client();
    let g = genesis(&["--rate-limit", "0"]);
    let (sink_url, heard) = sink().await;
    // Ten listeners, so that every accepted change is pushed ten times.
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, body, _) = register(
            &client,
            &g,
            &format!("Peer{i}"),
            &format!("{sink_url}/p{i}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["peer"]["id"].as_str().unwrap().to_owned());
    }
    // Wait for the joins' pushes to settle, then count only the attack's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = heard.pushed_bytes.load(Ordering::SeqCst);
    let mut sent = 0;
    // What the issue measured: ~64 KB URIs and hashes (within the 64 KiB body limit).
    for i in 0..20 {
        let uri = format!("{sink_url}/{}{i}", "a".repeat(60 * 1024));
        let (status, body, bytes) = register(&client, &g, &format!("Big{i}"), &uri).await;
        sent += bytes;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains("--max-uri-bytes"), "{body}");
        let (status, bytes) = ping(
            &client,
            &g,
            &ids[i % ids.len()],
            &format!("{i}{}", "h".repeat(60 * 1024)),
        )
        .await;
        sent += bytes;
        assert_eq!(status, 422);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pushed = heard.pushed_bytes.load(Ordering::SeqCst) - before;
    println!("oversized: attacker sent {sent} bytes, genesis pushed {pushed} bytes");
    assert_eq!(pushed, 0, "refused changes are never pushed");
    // At the bounds, an accepted change is pushed once per listener: the
    // ratio is the fan-out, no more (the issue measured ~750× with 64 KB).
    let before = heard.pushed_bytes.load(Ordering::SeqCst);
    let mut sent = 0;
    for i in 0..20 {
        let hash = format!("{i:0>128}");
        let (status, bytes) = ping(&client, &g, &ids[0], &hash).await;
        assert_eq!(status, 200);
        sent += bytes;
    }
    let (status, bytes) = ping(&client, &g, &ids[0], &"x".repeat(129)).await;
    assert_eq!(status, 422);
    sent += bytes;
    poll(Duration::from_secs(5), "pushes settle", || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = heard.pushed_bytes.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (heard.pushed_bytes.load(Ordering::SeqCst) == now).then_some(())
    })
    .await;
    let pushed = heard.pushed_bytes.load(Ordering::SeqCst) - before;
    let ratio = pushed as f64 / sent as f64;
    println!(
        "bounded hashes: attacker sent {sent} bytes, genesis pushed {pushed} bytes ({ratio:.1}x with 10 listeners)"
    );
    assert!(ratio <= 10.0 * 3.0, "ratio {ratio}");
}

#[tokio::test]
async fn write_calls_over_the_rate_get_429_with_retry_after_and_reads_do_not() {
    let client = client();
    let g = genesis(&["--rate-limit", "1", "--rate-burst", "3"]);
    let unknown = uuid::Uuid::new_v4();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let response = client
            .post(g.at(&format!("/peers/{unknown}/ping")))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            refused = Some(response);
        }
    }
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let refused = refused.unwrap();
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = refused.json().await.unwrap();
    assert!(message(&body).contains("--rate-limit"), "{body}");
    // Reads are not limited.
    for _ in 0..20 {
        let response = client.get(g.at("/peers")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // After Retry-After, writes go through again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let response = client
        .post(g.at(&format!("/peers/{unknown}/ping")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The peer: REST writes are limited, GraphQL queries (reads) are not.
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(support::bin("plexus-peer"));
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--rate-limit",
            "1",
            "--rate-burst",
            "2",
        ])
        .arg("--data")
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    let peer = spawn(command);
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = json!({"class": format!("C{i}")});
        let response = client
            .post(peer.at("/v1/schema/things"))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    for _ in 0..20 {
        let response = client
            .post(peer.at("/v1/graphql"))
            .json(&json!({"query": "{ Local { Get { Things { C0 { uuid } } } } }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// Opens `n` connections to `addr` that each send an unfinished request line.
async fn half_open(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /peers HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    held
}

/// Whether the server closed (or refused) `stream` within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 503 before the close, or a 408
        }
    }
}

async fn starvation(server: &Proc, path: &str) {
    let addr = server.url.trim_start_matches("http://").to_owned();
    let client = client();
    let mut held = half_open(&addr, 300).await;
    // A normal client is still answered, and quickly.
    let start = Instant::now();
    let response = client.get(server.at(path)).send().await.unwrap();
    let took = start.elapsed();
    assert_eq!(response.status(), 200);
    println!("{path} answered in {took:?} beside 300 half-open connections");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Over the cap (400), new connections are refused at once.
    let mut over = half_open(&addr, 150).await;
    let mut refused = 0;
    for stream in &mut over {
        if closed_within(stream, Duration::from_millis(300)).await {
            refused += 1;
        }
    }
    assert!(
        refused >= 45,
        "only {refused} of 150 connections over the cap were closed"
    );
    // The half-open ones are closed after the header-read timeout (2 s).
    let mut closed = 0;
    for stream in held.iter_mut().take(20) {
        if closed_within(stream, Duration::from_secs(4)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 20,
        "half-open connections outlived the header-read timeout"
    );
}

#[tokio::test]
async fn half_open_connections_neither_starve_genesis_nor_a_peer() {
    let limits = ["--header-read-timeout", "2s", "--max-connections", "400"];
    let g = genesis(&limits);
    starvation(&g, "/healthz").await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(support::bin("plexus-peer"));
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(limits)
        .arg("--data")
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    let peer = spawn(command);
    starvation(&peer, "/v1/schema").await;
}

#[tokio::test]
async fn redirects_are_never_followed_by_genesis_or_a_peer() {
    let client = client();
    let (target, target_heard) = sink().await;
    let (second, second_heard) = redirector(target.clone()).await;
    let (first, first_heard) = redirector(second).await;
    // Genesis's probe: the answer is the 302, named; nothing further is asked.
    let keys = tempfile::tempdir().unwrap();
    let (key, key_file) = support::genesis_key(keys.path());
    let g = genesis(&["--key-file", &key_file]);
    let (status, body, _) = register(&client, &g, "Redirected", &first).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("answered 302"), "{body}");
    assert_eq!(first_heard.hits.load(Ordering::SeqCst), 1);
    assert_eq!(second_heard.hits.load(Ordering::SeqCst), 0);
    assert_eq!(target_heard.hits.load(Ordering::SeqCst), 0);

    // A peer told of a peer at the redirector asks it for its schema once
    // and does not follow.
    let dir = tempfile::tempdir().unwrap();
    let peer = real_peer_with(&g.url, "PeerA", dir.path(), "10s", &[]);
    poll(Duration::from_secs(10), "PeerA registered", || async {
        let view = support::get(&client, &peer.at("/v1/network/peers")).await?;
        (view["state"] == "registered").then_some(())
    })
    .await;
    let push =
        json!([{"id": uuid::Uuid::new_v4(), "name": "Redir", "uri": first, "schemaHash": "h1"}]);
    assert_eq!(support::signed_push(&peer, &key, &push).await, 200);
    poll(
        Duration::from_secs(5),
        "the peer asked the redirector",
        || async { (first_heard.hits.load(Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(second_heard.hits.load(Ordering::SeqCst), 0);
    assert_eq!(target_heard.hits.load(Ordering::SeqCst), 0);
    let seen = support::view_of(&client, &peer.url, "Redir").await.unwrap();
    assert_eq!(seen["schemaCached"], false);
}

#[tokio::test]
async fn metadata_and_denied_addresses_are_refused() {
    let client = client();
    let keys = tempfile::tempdir().unwrap();
    let (key, key_file) = support::genesis_key(keys.path());
    let g = genesis(&["--key-file", &key_file]);
    for uri in [
        "http://169.254.169.254/latest/meta-data",
        "http://100.100.100.200",
        "http://168.63.129.16:80",
        "http://[fd00:ec2::254]",
        "http://[::ffff:169.254.169.254]",
    ] {
        let (status, body, _) = register(&client, &g, "Meta", uri).await;
        assert_eq!(status, 422, "{uri}: {body}");
        assert!(message(&body).contains("denied range"), "{uri}: {body}");
    }
    // An unreachable peer is told only "unreachable", whether the port is
    // closed or the name does not resolve: no port scanner's oracle.
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    for uri in [closed.as_str(), "http://no-such-host.invalid:80"] {
        let (status, body, _) = register(&client, &g, "Gone", uri).await;
        assert_eq!(status, 400, "{uri}: {body}");
        assert!(message(&body).contains("unreachable"), "{uri}: {body}");
        assert!(!message(&body).to_lowercase().contains("refused"), "{body}");
    }

    // The peer: an address denied with --deny-cidr is never called, while a
    // peer whose --allow-cidr exempts it does call it (the control).
    let (sink_url, heard) = sink().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let guarded = real_peer_with(
        &g.url,
        "Guarded",
        dirs[0].path(),
        "10s",
        &["--deny-cidr", "127.0.0.1/32"],
    );
    let allowed = real_peer_with(
        &g.url,
        "Allowed",
        dirs[1].path(),
        "10s",
        &["--deny-cidr", "127.0.0.0/8", "--allow-cidr", "127.0.0.1/32"],
    );
    let push =
        json!([{"id": uuid::Uuid::new_v4(), "name": "Sink", "uri": sink_url, "schemaHash": "h1"}]);
    for peer in [&guarded, &allowed] {
        poll(Duration::from_secs(10), "registered", || async {
            let view = support::get(&client, &peer.at("/v1/network/peers")).await?;
            (view["state"] == "registered").then_some(())
        })
        .await;
    }
    assert_eq!(support::signed_push(&guarded, &key, &push).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        heard.hits.load(Ordering::SeqCst),
        0,
        "a denied address was called"
    );
    assert_eq!(support::signed_push(&allowed, &key, &push).await, 200);
    poll(
        Duration::from_secs(5),
        "the allowed peer calls the sink",
        || async { (heard.hits.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn another_origin_may_read_a_peer_but_only_a_named_one_may_write() {
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(support::bin("plexus-peer"));
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cors-origin",
            "http://app.example",
        ])
        .arg("--data")
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    let peer = spawn(command);
    let preflight = |origin: &'static str, method: &'static str, path: &str| {
        client
            .request(reqwest::Method::OPTIONS, peer.at(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
    };
    // A preflight of a write from another origin is not allowed.
    let response = preflight("http://evil.example", "POST", "/v1/schema/things")
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // A write sent anyway (a simple POST needs no preflight) is refused and changes nothing.
    let response = client
        .post(peer.at("/v1/schema/things"))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"class": "Evil"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(message(&body).contains("--cors-origin"), "{body}");
    let schema = support::get(&client, &peer.at("/v1/schema")).await.unwrap();
    assert!(!schema.to_string().contains("Evil"), "{schema}");
    // A read from that origin is allowed: a GraphQL query is a read.
    let response = preflight("http://evil.example", "POST", "/v1/graphql")
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://evil.example"
    );
    let response = client
        .post(peer.at("/v1/graphql"))
        .header("origin", "http://evil.example")
        .json(&json!({"query": "{ Local { Get { Things { City { uuid } } } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://evil.example"
    );
    // The named origin may write.
    let response = preflight("http://app.example", "POST", "/v1/schema/things")
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let response = client
        .post(peer.at("/v1/schema/things"))
        .header("origin", "http://app.example")
        .json(&json!({"class": "City"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_watcher_that_never_reads_costs_bounded_memory_and_its_stream_ends() {
    let client = client();
    let g = genesis(&[
        "--rate-limit",
        "0",
        "--watch-buffer",
        "64",
        "--idle-timeout",
        "3s",
    ]);
    let (sink_url, _heard) = sink().await;
    // Twenty peers at 2,048-byte URIs (the bound): large entries.
    let mut ids = Vec::new();
    for i in 0..20 {
        let path = format!("/{i}{}", "u".repeat(2048));
        let uri = format!("{sink_url}{path}");
        let uri = &uri[..2048];
        let (status, body, _) = register(&client, &g, &format!("Peer{i}"), uri).await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["peer"]["id"].as_str().unwrap().to_owned());
    }
    // The watcher: a raw connection that asks for the stream and never reads.
    let addr = g.url.trim_start_matches("http://").to_owned();
    let mut watcher = TcpStream::connect(&addr).await.unwrap();
    watcher
        .write_all(b"GET /peers/watch HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let pid = g.child.id();
    let churn = |round: usize| {
        let client = client.clone();
        let g_url = g.url.clone();
        let ids = ids.clone();
        async move {
            let pings = ids.iter().enumerate().map(|(i, id)| {
                let client = client.clone();
                let url = format!("{g_url}/peers/{id}/ping");
                async move {
                    for k in 0..50 {
                        let hash = format!("{round}-{i}-{k}-{}", "h".repeat(100));
                        let response = client
                            .post(&url)
                            .json(&json!({ "schemaHash": hash }))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200);
                    }
                }
            });
            futures::future::join_all(pings).await;
        }
    };
    // Warm up (allocator, buffers), then measure across many more changes.
    churn(0).await;
    let before = rss_kib(pid);
    for round in 1..=4 {
        churn(round).await;
    }
    let after = rss_kib(pid);
    let changes = 4 * 20 * 50;
    println!(
        "genesis VmRSS {before} KiB before, {after} KiB after {changes} changes of ~2.3 KB with a watcher that never reads"
    );
    // Unbounded, the changes alone would hold ~9 MB; the buffer holds 64.
    assert!(after < before + 6 * 1024, "{before} KiB -> {after} KiB");
    // The stream is ended: the connection closes (reading it now drains
    // what was buffered, then meets the end).
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, watcher.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    assert!(ended, "the slow watcher's stream was not ended");
    // A watcher that reads still gets the snapshot and the changes.
    let response = client.get(g.at("/peers/watch")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = metric(&client, &g, "plexus_genesis_watchers_ended_total").await;
}

#[tokio::test]
async fn a_peer_refused_for_another_contextionary_leaves_before_it_exits() {
    let client = client();
    let g = genesis(&[
        "--peer-timeout",
        "60s",
        "--contextionary-hash",
        "sha256:theirs",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut command = support::peer_command(&g.url, "PeerA", 0, dir.path());
    command.stdout(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the peer did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    // It registered (genesis cannot refuse first), then left: genesis lists
    // no ghost, long before its 60 s timeout would evict it.
    assert_eq!(
        metric(&client, &g, "plexus_genesis_registrations_total").await,
        1
    );
    assert_eq!(metric(&client, &g, "plexus_genesis_leaves_total").await, 1);
    let peers = support::get(&client, &g.at("/peers")).await.unwrap();
    assert_eq!(peers, json!([]));
}

/// A fake genesis whose every answer is `200` and a body that never ends,
/// counting the registrations it is sent and the bytes it streams.
async fn endless_genesis() -> (String, Arc<Heard>) {
    let heard = Arc::new(Heard::default());
    let app = Router::new()
        .fallback(|State(heard): State<Arc<Heard>>| async move {
            heard.hits.fetch_add(1, Ordering::SeqCst);
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let body = futures::stream::repeat(chunk).map(move |chunk| {
                heard
                    .pushed_bytes
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(chunk)
            });
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(body),
            )
        })
        .with_state(Arc::clone(&heard));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}

#[tokio::test]
async fn a_peer_reads_at_most_max_list_bytes_of_genesis_and_of_a_push() {
    // Genesis's answers: an endless registration answer is cut at the cap
    // and the peer tries again, instead of reading until its call times out.
    let (url, heard) = endless_genesis().await;
    let dir = tempfile::tempdir().unwrap();
    let cap: u64 = 1024 * 1024;
    let mut command = support::peer_command(&url, "PeerA", 0, dir.path());
    command.args(["--max-list-bytes", &cap.to_string()]);
    let _peer = spawn(command);
    poll(Duration::from_secs(20), "a second registration", || {
        let tries = heard.hits.load(Ordering::SeqCst);
        async move { (tries >= 2).then_some(()) }
    })
    .await;
    let tries = heard.hits.load(Ordering::SeqCst);
    let streamed = heard.pushed_bytes.load(Ordering::SeqCst);
    // The cap, plus what the sockets' buffers hold, per answer: without the
    // cap one answer alone streams gigabytes in its 5 s.
    assert!(
        streamed / tries < cap + 16 * 1024 * 1024,
        "{streamed} bytes streamed over {tries} answers"
    );

    // Pushes: an unsigned list is refused (403) before its body is read,
    // one declaring more than `--max-list-bytes` gets 413 unread
    // (tests/peer_bounds.rs: 40 of 64 MiB cost the peer no memory).
    let g = genesis(&[]);
    let dir = tempfile::tempdir().unwrap();
    let peer = support::peer(&g, "PeerB", dir.path(), &["--max-list-bytes", "4000000"]);
    let client = client();
    let push = |size: usize| {
        client
            .put(peer.at("/p2p/genesis"))
            .header("content-type", "application/json")
            .header("x-plexus-peers-version", "1")
            .body(vec![b' '; size])
            .send()
    };
    let under = push(3_000_000).await.unwrap().status().as_u16();
    assert_eq!(under, 403, "a list under the cap is refused unsigned");
    let over = push(5_000_000).await.map(|r| r.status().as_u16());
    assert!(
        matches!(over, Ok(413) | Err(_)),
        "a list over the cap: {over:?}"
    );
}
