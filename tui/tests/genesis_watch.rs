//! The genesis watcher against a fake genesis on loopback: the watch stream,
//! the fall-back to polling when it ends, and "disconnected" when genesis goes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use plexus_core::wire::{ChangeKind, PeerChange};
use plexus_tui::model::Source;
use plexus_tui::net::watch_genesis;
use plexus_tui::update::Message;
use serde_json::json;

/// Serves `/peers/watch` (a snapshot and one change, then closes) and
/// `/peers`, until `stop` is set; then refuses connections.
fn fake_genesis(stop: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return; // the listener is dropped: connections are refused
            }
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let peers = three_peers();
            let response = if request_line.starts_with("GET /peers/watch") {
                let snapshot = json!({"version": 1, "peers": &peers[..2]});
                let change = PeerChange {
                    version: 2,
                    kind: ChangeKind::Joined,
                    peer: peers[2].clone(),
                };
                let body = format!(
                    ": hello\n\nevent: snapshot\nid: 1\ndata: {snapshot}\n\nevent: change\nid: 2\ndata: {}\n\n",
                    serde_json::to_string(&change).unwrap()
                );
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = serde_json::to_string(&peers).unwrap();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-plexus-peers-version: 2\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[tokio::test]
async fn follows_the_stream_then_polls_then_reports_genesis_away() {
    let stop = Arc::new(AtomicBool::new(false));
    let url = fake_genesis(stop.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(watch_genesis(reqwest::Client::new(), url.clone(), tx));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
    };

    match next().await {
        Message::Snapshot {
            version,
            peers,
            source,
        } => {
            assert_eq!((version, peers.len(), source), (1, 2, Source::Watch));
        }
        other => panic!("expected the watch snapshot, got {other:?}"),
    }
    match next().await {
        Message::Change(change) => {
            assert_eq!((change.version, change.kind), (2, ChangeKind::Joined))
        }
        other => panic!("expected a change, got {other:?}"),
    }
    // The stream ended: the watcher polls GET /peers.
    match next().await {
        Message::Snapshot {
            version,
            peers,
            source,
        } => {
            assert_eq!((version, peers.len(), source), (2, 3, Source::Poll));
        }
        other => panic!("expected a polled snapshot, got {other:?}"),
    }
    // Genesis goes away: the next connection wakes the fake up, which stops.
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(url.trim_start_matches("http://"));
    let mut saw_disconnected = false;
    for _ in 0..10 {
        if let Message::Disconnected(reason) = next().await {
            assert!(!reason.is_empty());
            saw_disconnected = true;
            break;
        }
    }
    assert!(saw_disconnected, "genesis away is reported");
    task.abort();
}

#[tokio::test]
async fn with_replicas_a_dead_one_is_left_for_the_next() {
    // The first replica refuses connections; the second serves the stream.
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let live = fake_genesis(Arc::new(AtomicBool::new(false)));
    assert_eq!(
        plexus_tui::net::replicas(&format!("{dead}/, {live}")),
        vec![dead.clone(), live.clone()]
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(watch_genesis(
        reqwest::Client::new(),
        format!("{dead},{live}"),
        tx,
    ));
    // The failed connection is reported, then the other replica's stream follows.
    let mut snapshot = None;
    for _ in 0..5 {
        let message = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Message::Snapshot { source, .. } = message {
            snapshot = Some(source);
            break;
        }
    }
    assert_eq!(
        snapshot,
        Some(Source::Watch),
        "the live replica's watch stream"
    );
    task.abort();
}
