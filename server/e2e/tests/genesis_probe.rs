//! Genesis's registration probe against a peer that closes idle
//! keep-alive connections, and the ping body's shape (issue 20's smaller
//! defects), end to end with a real `plexus-genesis` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request (head and `content-length` body) into `buf`; `None`
/// when the connection ends first.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let head = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head + length);
    Some(())
}

/// An HTTP/1.1 server that answers every request 200 and keeps each
/// connection alive, but closes it once it has been idle for 10-300 ms (a
/// different bound each time), as many servers and proxies do. Counts the
/// connections it accepted.
async fn closing_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let mut seed = count.fetch_add(1, Ordering::Relaxed) as u64 * 2_654_435_761 + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let idle = Duration::from_millis(10 + (seed >> 33) % 291);
                    match tokio::time::timeout(idle, read_request(&mut stream, &mut buf)).await {
                        Ok(Some(())) => {}
                        // Idle too long, or the client left: close.
                        _ => return,
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_survives_a_pooled_connection_the_peer_just_closed() {
    let (server, accepted) = closing_server().await;
    // Pushes go to every registered peer (all this server): few rounds.
    let genesis = genesis(&[
        "--rate-limit",
        "0",
        "--broadcast-delay",
        "500ms",
        "--peer-timeout",
        "60s",
    ]);
    let client = reqwest::Client::new();
    const REGISTRATIONS: usize = 240;
    let failures: Vec<String> = futures::future::join_all((0..4).map(|lane| {
        let (client, url) = (client.clone(), genesis.at("/peers/register"));
        async move {
            let mut failures = Vec::new();
            for i in 0..REGISTRATIONS / 4 {
                let body = json!({"peerName": format!("P{lane}x{i}"), "peerUri": format!("http://{server}/p{lane}")});
                let (status, answer) = post(&client, &url, body).await;
                if status != 200 {
                    failures.push(format!("{status} {answer}"));
                }
                // Gaps of 0-250 ms: some probes go out as an idle
                // connection is being closed.
                let gap = (i * 37 + lane * 11) % 250;
                tokio::time::sleep(Duration::from_millis(gap as u64)).await;
            }
            failures
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    println!(
        "{REGISTRATIONS} registrations over {} connections",
        accepted.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_body_must_be_an_object() {
    let (server, _) = closing_server().await;
    let genesis = genesis(&[]);
    let client = reqwest::Client::new();
    let (status, answer) = post(
        &client,
        &genesis.at("/peers/register"),
        json!({"peerName": "PeerA", "peerUri": format!("http://{server}")}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["peer"]["id"].as_str().unwrap().to_owned();
    let ping = genesis.at(&format!("/peers/{id}/ping"));
    for body in ["[]", r#"["h"]"#, "1", "null"] {
        let response = client
            .post(&ping)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{error}");
    }
    // A registration body that is an array does not fit either.
    let response = client
        .post(genesis.at("/peers/register"))
        .header("content-type", "application/json")
        .body(format!(r#"["PeerB", "http://{server}"]"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    for body in ["", "{}", r#"{"schemaHash": "h1"}"#] {
        let response = client.post(&ping).body(body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{body:?}");
    }
}
