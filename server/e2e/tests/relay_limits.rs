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
/// 100 ms, reading whatever comes) until genesis closes it; how long that
/// took, or `None` if it was still open after `limit`.
async fn pinged_until_closed(mut socket: Socket, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
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
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let refused = client.get(genesis.at("/healthz")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-connections 16"),
        "{body}"
    );
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
    let genesis = genesis(&["--relay", "--relay-hello-timeout", "10s"]);
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
                Duration::from_secs(15),
            ))),
            Err(status) => Err(status),
        }
    })
    .buffer_unordered(64)
    .collect::<Vec<_>>()
    .await;
    let opened = started.elapsed();
    assert!(
        opened < Duration::from_secs(9),
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
    // Every held socket is closed once its hello timeout (10 s) is over,
    // however it pings.
    for task in held {
        let took = task.await.unwrap().expect("a socket still open after 15 s");
        assert!(
            took > Duration::from_secs(9) && took < Duration::from_secs(12),
            "closed after {took:?}"
        );
    }
    let grown = peak.saturating_sub(before);
    println!(
        "2,000 attempts in {opened:?}: VmRSS {before} KiB before, VmHWM {peak} KiB (+{grown} KiB)"
    );
    assert!(grown < 64 * 1024, "genesis grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_socket_is_closed_at_once_while_it_pings() {
    let genesis = genesis(&["--relay"]);
    let at = addr_of(&genesis);
    let mut socket = open_from(at, Ipv4Addr::LOCALHOST).await.unwrap();
    assert!(matches!(
        next_frame(&mut socket, Duration::from_secs(5)).await,
        Some(ToTab::Challenge { .. })
    ));
    socket.send(Ws::Text("not a frame".into())).await.unwrap();
    let took = pinged_until_closed(socket, Duration::from_secs(5))
        .await
        .expect("the refused socket stayed open");
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throw_away_keys_cannot_hold_the_tab_slots() {
    let genesis = genesis(&[
        "--relay",
        "--relay-max-tabs",
        "32",
        "--relay-register-timeout",
        "1s",
    ]);
    let at = addr_of(&genesis);
    let attacker = Ipv4Addr::new(127, 0, 5, 1);
    // One address proves twelve throw-away keys: eight tabs
    // (--relay-max-tabs-per-address), the others refused.
    let mut welcomed = Vec::new();
    let mut refused = 0;
    for i in 0..12u8 {
        let mut socket = open_from(at, attacker).await.unwrap();
        let key = Identity::from_seed([100 + i; 32]);
        match say_hello(&mut socket, &format!("Junk{i}"), &key).await {
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
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(plexus_peer::PeerDb::open(dir.path()).unwrap());
    let app = plexus_peer::router(plexus_peer::PeerState::standalone(db.clone()));
    let key = Identity::from_seed([7; 32]);
    let _tab = plexus_bench::tab::join(&client, &genesis.url, "Real", &key, app, &db.schema_hash())
        .await
        .unwrap();
    // The throw-away tabs never registered: they lose their slots.
    let started = Instant::now();
    for mut socket in welcomed {
        let last = next_frame(&mut socket, Duration::from_secs(4)).await;
        assert!(
            matches!(&last, Some(ToTab::Refused { message }) if message.contains("--relay-register-timeout")),
            "{last:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
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
    let genesis = genesis(&[
        "--relay",
        "--rate-limit",
        "0",
        "--relay-timeout",
        "2s",
        "--relay-max-queue-bytes",
        "2097152",
    ]);
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
                        let response = client.post(url).body(body).send().await.unwrap();
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
    // The queues are full: most requests were refused at once (503).
    assert!(first.get(&503).copied().unwrap_or(0) > 200, "{first:?}");
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
    assert_eq!(second.get(&502), Some(&256), "{second:?}");
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
    let genesis = genesis(&[
        "--relay",
        "--relay-max-body-bytes",
        "1000",
        "--relay-register-timeout",
        "60s",
    ]);
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
async fn requests_in_flight_and_http2_streams_are_bounded() {
    let genesis = genesis(&[
        "--relay",
        "--rate-limit",
        "0",
        "--max-in-flight",
        "6",
        "--http2-max-streams",
        "4",
        "--relay-timeout",
        "5s",
        "--relay-register-timeout",
        "60s",
    ]);
    let mut requests = silent_tab(&genesis, "Silent", 30).await;
    // Ten requests on one HTTP/2 connection: four streams at once reach the tab.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = genesis.at("/relay/Silent/v1/schema");
    let pending: Vec<_> = (0..10)
        .map(|_| {
            let (h2, url) = (h2.clone(), url.clone());
            tokio::spawn(async move { h2.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut seen = 0;
    while requests.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 4, "requests in flight on one HTTP/2 connection");
    // Two more on HTTP/1.1 fill --max-in-flight 6; the next is refused at once.
    let h1 = reqwest::Client::new();
    let more: Vec<_> = (0..2)
        .map(|_| {
            let (h1, url) = (h1.clone(), url.clone());
            tokio::spawn(async move { h1.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    for task in pending.into_iter().chain(more) {
        let _ = task.await;
    }
    let healthy = h1.get(genesis.at("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
}
