//! The relay under attack, end to end (issue 20): a real `plexus-genesis
//! --relay` on loopback, and clients that open sockets from many loopback
//! addresses (127.0.0.0/8 is all loopback on Linux), never prove a key,
//! prove throw-away keys, never read their sockets, or flood a tab. Each
//! test is bounded in sockets and time, with memory ceilings read from
//! `/proc/PID/status` where memory was the weakness.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use plexus_core::PeerName;
use plexus_core::auth::Identity;
use plexus_core::relay::{FromTab, RelayResponse, ToTab, hello_message, tab_path};
use serde_json::Value;
use support::*;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message as Ws};

type Socket = WebSocketStream<TcpStream>;

/// A value of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn addr_of(genesis: &Proc) -> SocketAddr {
    genesis
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("host:port")
}

/// Opens `/relay` from the loopback address `source`: the socket, or the
/// HTTP status genesis refused the upgrade with (0: no answer at all).
async fn open_from(genesis: SocketAddr, source: Ipv4Addr) -> Result<Socket, u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let Ok(stream) = socket.connect(genesis).await else {
        return Err(0);
    };
    match tokio_tungstenite::client_async(format!("ws://{genesis}/relay"), stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// The next text frame, within `limit`.
async fn next_frame(socket: &mut Socket, limit: Duration) -> Option<ToTab> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Ws::Text(text)))) => return serde_json::from_str(&text).ok(),
            Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Says hello as `name` with `key` on a fresh socket: the relay's answer.
async fn say_hello(socket: &mut Socket, name: &str, key: &Identity) -> Option<ToTab> {
    let Some(ToTab::Challenge { nonce }) = next_frame(socket, Duration::from_secs(5)).await else {
        return None;
    };
    let name = PeerName::new(name).unwrap();
    let signature = key.sign(
        &hello_message(&tab_path(&name), &nonce),
        plexus_genesis::now(),
    );
    let frame = serde_json::to_string(&FromTab::hello(name, signature)).unwrap();
    socket.send(Ws::Text(frame.into())).await.ok()?;
    next_frame(socket, Duration::from_secs(5)).await
}

/// Keeps `socket` alive as an attacker would (a WebSocket ping every
/// `every`, reading whatever comes) until genesis closes it; how long that
/// took, or `None` if it was still open after `limit`.
async fn pinged_until_closed(
    mut socket: Socket,
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    while started.elapsed() < limit {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Ws::Close(_)) | Err(_)) | None => return Some(started.elapsed()),
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                if socket.send(Ws::Ping(Vec::new().into())).await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sockets_count_as_connections() {
    let genesis = genesis(&[
        "--relay",
        "--max-connections",
        "16",
        "--relay-hello-timeout",
        "30s",
    ]);
    let at = addr_of(&genesis);
    let mut sockets = Vec::new();
    for i in 0..16u8 {
        sockets.push(
            open_from(at, Ipv4Addr::new(127, 0, 3, i + 1))
                .await
                .unwrap(),
        );
    }
    // Sixteen upgraded sockets hold every connection: one more is refused.
    let mut refused = TcpStream::connect(at).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_string(&mut refused, &mut answer),
    )
    .await
    .expect("genesis answers at once")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("--max-connections 16"), "{answer}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // A socket that closes gives its connection back.
    sockets.pop().unwrap().close(None).await.unwrap();
    poll(
        Duration::from_secs(3),
        "a connection is free again",
        || async {
            let response = client.get(genesis.at("/healthz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sockets_stay_within_the_caps_and_are_closed_unproven() {
    // The defaults, but for a hello timeout that outlasts the attempts.
    let genesis = genesis(&["--relay", "--relay-hello-timeout", "20s"]);
    let at = addr_of(&genesis);
    let pid = genesis.child.id();
    let before = status_kib(pid, "VmRSS");
    const ADDRESSES: u8 = 40;
    const PER_ADDRESS: usize = 50;
    let started = Instant::now();
    let attempts = futures::stream::iter(
        (0..ADDRESSES).flat_map(|a| (0..PER_ADDRESS).map(move |_| Ipv4Addr::new(127, 0, 4, a + 1))),
    )
    .map(|source| async move {
        match open_from(at, source).await {
            // Held and pinged until genesis closes it.
            Ok(socket) => Ok(tokio::spawn(pinged_until_closed(
                socket,
                Duration::from_secs(1),
                Duration::from_secs(30),
            ))),
            Err(status) => Err(status),
        }
    })
    .buffer_unordered(64)
    .collect::<Vec<_>>()
    .await;
    let opened = started.elapsed();
    assert!(
        opened < Duration::from_secs(18),
        "the attempts took {opened:?}: the hello timeout may have freed slots"
    );
    let peak = status_kib(pid, "VmHWM");
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    let mut held = Vec::new();
    for attempt in attempts {
        match attempt {
            Ok(task) => held.push(task),
            Err(status) => *refused.entry(status).or_default() += 1,
        }
    }
    // 16 sockets per address (--relay-max-sockets-per-address), the others
    // refused with 429 before any upgrade.
    assert_eq!(held.len(), 16 * usize::from(ADDRESSES), "{refused:?}");
    assert_eq!(
        refused.get(&429),
        Some(&(usize::from(ADDRESSES) * PER_ADDRESS - held.len())),
        "{refused:?}"
    );
    // Every held socket is closed once its hello timeout (20 s) is over,
    // however it pings.
    for task in held {
        let took = task.await.unwrap().expect("a socket still open after 30 s");
        assert!(
            took > Duration::from_secs(19) && took < Duration::from_secs(23),
            "closed after {took:?}"
        );
    }
    let grown = peak.saturating_sub(before);
    println!(
        "2,000 attempts in {opened:?}: VmRSS {before} KiB before, VmHWM {peak} KiB (+{grown} KiB)"
    );
    assert!(grown < 64 * 1024, "genesis grew by {grown} KiB");
}

/// An attacker's socket at the byte level: the upgrade, then a masked
/// WebSocket ping every 100 ms whatever genesis sends (a close frame is
/// ignored), until genesis drops the connection: how long that took
/// (`Ok(None)`: still open after `limit`), or the status of a refused upgrade.
async fn raw_pinger(
    at: SocketAddr,
    source: Ipv4Addr,
    limit: Duration,
) -> Result<Option<Duration>, u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut stream = socket.connect(at).await.unwrap();
    let upgrade = format!(
        "GET /relay HTTP/1.1\r\nhost: {at}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return Err(0);
        }
        head.push(byte[0]);
    }
    let status: u16 = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(status);
    }
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        // FIN + ping, masked, empty payload.
        if stream.write_all(&[0x89, 0x80, 1, 2, 3, 4]).await.is_err() {
            return Ok(Some(started.elapsed()));
        }
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Ok(Some(started.elapsed()));
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_socket_is_closed_at_once_while_it_pings() {
    let genesis = genesis(&["--relay", "--relay-max-tabs", "1"]);
    let at = addr_of(&genesis);
    let _held = open_from(at, Ipv4Addr::new(127, 0, 7, 1)).await.unwrap();
    // The relay is full: the socket is refused (before its upgrade, 503),
    // or, if upgraded, dropped at once however it pings.
    match raw_pinger(at, Ipv4Addr::new(127, 0, 7, 2), Duration::from_secs(5)).await {
        Err(status) => assert_eq!(status, 503),
        Ok(took) => {
            let took = took.expect("the refused socket stayed open");
            assert!(took < Duration::from_millis(1500), "closed after {took:?}");
        }
    }
    // A socket refused for a bad frame is closed at once too.
    drop(_held);
    let mut socket = poll(Duration::from_secs(3), "a free slot", || async {
        open_from(at, Ipv4Addr::new(127, 0, 7, 3)).await.ok()
    })
    .await;
    assert!(matches!(
        next_frame(&mut socket, Duration::from_secs(5)).await,
        Some(ToTab::Challenge { .. })
    ));
    socket.send(Ws::Text("not a frame".into())).await.unwrap();
    let took = pinged_until_closed(socket, Duration::from_millis(100), Duration::from_secs(5))
        .await
        .expect("the refused socket stayed open");
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throw_away_keys_cannot_hold_the_tab_slots() {
    // The defaults (--relay-register-timeout 10s), but for fewer slots.
    let genesis = genesis(&["--relay", "--relay-max-tabs", "32"]);
    let at = addr_of(&genesis);
    let attacker = Ipv4Addr::new(127, 0, 5, 1);
    let started = Instant::now();
    // One address proves twelve throw-away keys: eight tabs
    // (--relay-max-tabs-per-address), the others refused.
    let hellos = futures::future::join_all((0..12u8).map(|i| async move {
        let mut socket = open_from(at, attacker).await.unwrap();
        let key = Identity::from_seed([100 + i; 32]);
        let answer = say_hello(&mut socket, &format!("Junk{i}"), &key).await;
        (socket, answer)
    }))
    .await;
    let mut welcomed = Vec::new();
    let mut refused = 0;
    for (socket, answer) in hellos {
        match answer {
            Some(ToTab::Welcome { .. }) => welcomed.push(socket),
            Some(ToTab::Refused { message }) => {
                assert!(
                    message.contains("--relay-max-tabs-per-address"),
                    "{message}"
                );
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((welcomed.len(), refused), (8, 4));
    // A real tab from another address joins beside them and registers.
    let client = reqwest::Client::new();
    let _tab = registered_tab(&client, &genesis, "Real", 7).await;
    // The throw-away tabs never registered: they lose their slots.
    for mut socket in welcomed {
        let last = next_frame(&mut socket, Duration::from_secs(14)).await;
        assert!(
            matches!(&last, Some(ToTab::Refused { message }) if message.contains("--relay-register-timeout")),
            "{last:?}"
        );
    }
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(10) && took < Duration::from_secs(13),
        "{took:?}"
    );
    // The real one keeps its socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ping = client
        .get(genesis.at("/relay/Real/p2p/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_that_never_read_cost_bounded_memory() {
    // The defaults (--relay-max-queue-bytes 8 MiB), but for a short
    // relay timeout and no rate limit (the load comes from one address).
    let genesis = genesis(&["--relay", "--rate-limit", "0", "--relay-timeout", "2s"]);
    let at = addr_of(&genesis);
    let pid = genesis.child.id();
    // Eight tabs that say hello, then never read their sockets again.
    let mut tabs = Vec::new();
    for i in 0..8u8 {
        let mut socket = open_from(at, Ipv4Addr::new(127, 0, 6, i + 1))
            .await
            .unwrap();
        let key = Identity::from_seed([50 + i; 32]);
        let welcome = say_hello(&mut socket, &format!("Deaf{i}"), &key).await;
        assert!(
            matches!(welcome, Some(ToTab::Welcome { .. })),
            "{welcome:?}"
        );
        tabs.push(socket);
    }
    let before = status_kib(pid, "VmRSS");
    // 1 MiB of \x01 per POST: six bytes each in a JSON frame.
    let body = vec![1u8; 1024 * 1024];
    let client = reqwest::Client::new();
    let round = |round: usize| {
        let client = client.clone();
        let body = body.clone();
        let genesis = genesis.url.clone();
        async move {
            let statuses: Vec<u16> = futures::stream::iter(0..256)
                .map(|i| {
                    let (client, body) = (client.clone(), body.clone());
                    let url = format!("{genesis}/relay/Deaf{}/v1/graphql", i % 8);
                    async move {
                        // Refused before its body was read, the request
                        // may not even get to send it all (0).
                        let Ok(response) = client.post(url).body(body).send().await else {
                            return 0;
                        };
                        let status = response.status().as_u16();
                        let answer: Value = response.json().await.unwrap();
                        assert!(answer["error"]["message"].is_string(), "{answer}");
                        status
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            let mut counts = std::collections::BTreeMap::<u16, usize>::new();
            for status in statuses {
                *counts.entry(status).or_default() += 1;
            }
            println!("round {round}: {counts:?}");
            counts
        }
    };
    let first = round(1).await;
    // The queues are full: most requests were refused at once (503, or
    // the connection closed on an unread body).
    // Tabs whose queues stayed full for --relay-timeout are dropped (502
    // after that); few requests ever waited for their 504.
    assert!(
        first.keys().all(|s| [0, 502, 503, 504].contains(s)),
        "{first:?}"
    );
    assert!(first.get(&504).copied().unwrap_or(0) <= 64, "{first:?}");
    let peak = status_kib(pid, "VmHWM");
    let grown = peak.saturating_sub(before);
    println!("VmRSS {before} KiB before, VmHWM {peak} KiB after 256 POSTs (+{grown} KiB)");
    assert!(grown < 256 * 1024, "genesis grew by {grown} KiB");
    // Tabs whose queues stayed full (--relay-timeout) are dropped.
    for socket in &mut tabs {
        let _ = socket; // never read: genesis closes them on its side
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gone = client
        .get(genesis.at("/relay/Deaf0/p2p/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 502, "a deaf tab is still relayed to");
    // Nothing is left behind: another round of the same does not grow the peak.
    drop(tabs);
    let second = round(2).await;
    // No tab any more: 502 (or a connection closed on the unread body).
    assert_eq!(
        second.get(&502).copied().unwrap_or(0) + second.get(&0).copied().unwrap_or(0),
        256,
        "{second:?}"
    );
    let again = status_kib(pid, "VmHWM");
    assert!(
        again <= peak + 16 * 1024,
        "peak grew from {peak} to {again} KiB"
    );
}

/// A tab that answers every request with `status` and a body.
async fn answering_tab(
    genesis: &Proc,
    name: &str,
    seed: u8,
    status: u16,
) -> tokio::task::JoinHandle<()> {
    let mut socket = open_from(addr_of(genesis), Ipv4Addr::LOCALHOST)
        .await
        .unwrap();
    let key = Identity::from_seed([seed; 32]);
    let welcome = say_hello(&mut socket, name, &key).await;
    assert!(
        matches!(welcome, Some(ToTab::Welcome { .. })),
        "{welcome:?}"
    );
    tokio::spawn(async move {
        while let Some(frame) = next_frame(&mut socket, Duration::from_secs(30)).await {
            if let ToTab::Request(request) = frame {
                let answer = FromTab::Response(RelayResponse {
                    id: request.id,
                    status,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: "a body".into(),
                });
                let text = serde_json::to_string(&answer).unwrap();
                if socket.send(Ws::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_passes_final_statuses_only_and_answers_its_errors_as_json() {
    let genesis = genesis(&["--relay", "--relay-max-body-bytes", "1000"]);
    let client = reqwest::Client::new();
    let mut tabs = Vec::new();
    for (i, status) in [101u16, 100, 204, 304, 201].into_iter().enumerate() {
        let name = format!("Tab{status}");
        tabs.push(answering_tab(&genesis, &name, 20 + u8::try_from(i).unwrap(), status).await);
    }
    for status in [101, 100] {
        let response = client
            .get(genesis.at(&format!("/relay/Tab{status}/p2p/ping")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "a tab's {status}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid status"),
            "{body}"
        );
    }
    for status in [204, 304] {
        let response = client
            .get(genesis.at(&format!("/relay/Tab{status}/p2p/ping")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert!(
            response.headers().get("content-length").is_none(),
            "{status} with {:?}",
            response.headers()
        );
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let created = client
        .get(genesis.at("/relay/Tab201/p2p/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.text().await.unwrap(), "a body");
    // The relay's own refusals are the documented JSON error: a body over
    // the bound (declared, or not), an upgrade without its headers.
    let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(vec![b'x'; 1500])]);
    for body in [
        reqwest::Body::from(vec![b'x'; 1500]),
        reqwest::Body::wrap_stream(chunks),
    ] {
        let response = client
            .post(genesis.at("/relay/Tab201/v1/graphql"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--relay-max-body-bytes"),
            "{answer}"
        );
    }
    let plain = client.get(genesis.at("/relay")).send().await.unwrap();
    assert!(plain.status().is_client_error());
    let answer: Value = plain.json().await.unwrap();
    assert!(answer["error"]["message"].is_string(), "{answer}");
    for tab in tabs {
        tab.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_calls_are_rate_limited_per_address_and_tab() {
    let genesis = genesis(&["--relay", "--rate-limit", "1", "--rate-burst", "5"]);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = client
            .get(genesis.at("/relay/Nobody/p2p/ping"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some());
            let body: Value = response.json().await.unwrap();
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("--rate-limit"),
                "{body}"
            );
        }
    }
    assert_eq!(statuses[..5], [502; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another tab has its own budget (genesis pushes to every tab).
    let other = client
        .get(genesis.at("/relay/Other/p2p/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 502);
}

/// A tab that says hello and then counts the requests it is sent, never
/// answering them.
async fn silent_tab(
    genesis: &Proc,
    name: &str,
    seed: u8,
) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let mut socket = open_from(addr_of(genesis), Ipv4Addr::LOCALHOST)
        .await
        .unwrap();
    let key = Identity::from_seed([seed; 32]);
    let welcome = say_hello(&mut socket, name, &key).await;
    assert!(
        matches!(welcome, Some(ToTab::Welcome { .. })),
        "{welcome:?}"
    );
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(frame) = next_frame(&mut socket, Duration::from_secs(30)).await {
            if matches!(frame, ToTab::Request(_)) && seen.send(()).is_err() {
                return;
            }
        }
    });
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_per_connection_are_bounded() {
    // The defaults (--http2-max-streams 32), with room for more per tab.
    let genesis = genesis(&[
        "--relay",
        "--rate-limit",
        "0",
        "--relay-max-in-flight",
        "64",
    ]);
    let mut requests = silent_tab(&genesis, "Silent", 31).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = genesis.at("/relay/Silent/v1/schema");
    let pending: Vec<_> = (0..40)
        .map(|_| {
            let (h2, url) = (h2.clone(), url.clone());
            tokio::spawn(async move { h2.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut seen = 0;
    while requests.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 32, "requests in flight on one HTTP/2 connection");
    for task in pending {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded() {
    let genesis = genesis(&[
        "--relay",
        "--rate-limit",
        "0",
        "--max-in-flight",
        "6",
        "--relay-timeout",
        "3s",
    ]);
    let _requests = silent_tab(&genesis, "Silent", 30).await;
    let url = genesis.at("/relay/Silent/v1/schema");
    // Six requests wait on the tab: the seventh is refused at once.
    let h1 = reqwest::Client::new();
    let waiting: Vec<_> = (0..6)
        .map(|_| {
            let (h1, url) = (h1.clone(), url.clone());
            tokio::spawn(async move { h1.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    let refused = h1.get(genesis.at("/healthz")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(1));
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-in-flight 6"),
        "{body}"
    );
    for task in waiting {
        assert_eq!(task.await.unwrap().unwrap(), 504);
    }
    let healthy = h1.get(genesis.at("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
}

/// A tab simulated by a socket client (`plexus_bench::tab`): it joins and
/// registers as `name`, answering what genesis relays with a standalone
/// peer's app (whose data folder is the second half).
async fn registered_tab(
    client: &reqwest::Client,
    genesis: &Proc,
    name: &str,
    seed: u8,
) -> (plexus_bench::tab::Tab, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(plexus_peer::PeerDb::open(dir.path()).unwrap());
    let app = plexus_peer::router(plexus_peer::PeerState::standalone(db.clone()));
    let key = Identity::from_seed([seed; 32]);
    let tab = plexus_bench::tab::join(client, &genesis.url, name, &key, app, &db.schema_hash())
        .await
        .unwrap();
    (tab, dir)
}

/// Whether `tab`'s socket closed within `limit` (its serving task ends,
/// and with it the stream of the requests it answered).
async fn socket_closed(tab: &mut plexus_bench::tab::Tab, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tab.requests.recv()).await {
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_or_departed_tab_loses_its_socket_and_its_slot() {
    // Three sockets at most; a peer silent for 2 s is evicted.
    let genesis = genesis(&["--relay", "--relay-max-tabs", "3", "--peer-timeout", "2s"]);
    let client = reqwest::Client::new();
    let (mut silent, _d1) = registered_tab(&client, &genesis, "Silent", 31).await;
    let (mut leaving, _d2) = registered_tab(&client, &genesis, "Leaving", 32).await;
    let (mut alive, _d3) = registered_tab(&client, &genesis, "Alive", 33).await;
    // Every slot is taken.
    assert_eq!(
        open_from(addr_of(&genesis), Ipv4Addr::LOCALHOST)
            .await
            .err(),
        Some(503)
    );
    // "Alive" keeps pinging (and so genesis does not hold evictions);
    // "Leaving" leaves; "Silent" stops pinging.
    let pinger = {
        let (client, url, id, session) = (
            client.clone(),
            genesis.url.clone(),
            alive.id,
            alive.session.clone(),
        );
        tokio::spawn(async move {
            loop {
                let _ = plexus_bench::tab::ping(&client, &url, id, &session, "").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let path = plexus_core::wire::leave_path(leaving.id);
    let signature = leaving.session.sign(
        &plexus_core::auth::Message::request("DELETE", &path, b""),
        plexus_genesis::now(),
    );
    let mut leave = client.delete(genesis.at(&path));
    for (n, v) in signature.pairs() {
        leave = leave.header(n, v);
    }
    let left = leave.send().await.unwrap().status();
    assert!(left.is_success(), "{left}");
    assert!(
        socket_closed(&mut leaving, Duration::from_secs(2)).await,
        "the relay keeps the socket of a tab that left"
    );
    let started = Instant::now();
    assert!(
        socket_closed(&mut silent, Duration::from_secs(8)).await,
        "the relay keeps the socket of an evicted tab"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !plexus_bench::tab::is_listed(&client, &genesis.url, "Silent")
            .await
            .unwrap()
    );
    // Its name answers no more, and its slot is free for another tab.
    let gone = client
        .get(genesis.at("/relay/Silent/p2p/ping"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(gone, 502);
    let _newcomer = registered_tab(&client, &genesis, "Newcomer", 34).await;
    // The tab that kept pinging keeps its socket.
    assert!(!socket_closed(&mut alive, Duration::from_millis(500)).await);
    let ping = client
        .get(genesis.at("/relay/Alive/p2p/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    pinger.abort();
}
