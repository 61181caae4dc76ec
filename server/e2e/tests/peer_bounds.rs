//! A peer under attack, round two (issue 20), against real processes on
//! loopback: forged pushes refused before their bodies are read, the text
//! index bounded per value, a free-space floor for writes, no write that
//! commits after its 503, and a query's time limit that stops its scan.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Proc, genesis, poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A line of `/proc/PID/status` (`VmHWM`, `VmRSS`), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's `(name)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn host_port(proc: &Proc) -> String {
    proc.url.trim_start_matches("http://").to_owned()
}

/// `PUT /p2p/genesis` with `headers`, declaring and then streaming `size`
/// bytes until the peer answers or closes the connection. Returns the
/// status the peer answered (`None`: it closed without one) and the bytes
/// the kernel took.
async fn stream_push(addr: &str, headers: &str, size: u64) -> (Option<u16>, u64) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /p2p/genesis HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {size}\r\nx-plexus-peers-version: 99\r\n{headers}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.split();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0u64;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            n = read.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                _ => break,
            },
            w = write.write(&chunk[..chunk.len().min((size - sent) as usize)]), if sent < size => match w {
                Ok(n) => sent += n as u64,
                Err(_) => break,
            },
        }
    }
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|text| text.split(' ').nth(1))
        .and_then(|code| code.parse().ok());
    (status, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_forged_64_mib_pushes_are_refused_unread_and_cost_the_peer_no_memory() {
    let keys = tempfile::tempdir().unwrap();
    let (key, key_file) = support::genesis_key(keys.path());
    let g = genesis(&["--key-file", &key_file]);
    let data = tempfile::tempdir().unwrap();
    // The cap of before (64 MiB): the pushes are under it, so what refuses
    // them is their signature, read from the headers alone.
    let peer = support::peer(&g, "PeerA", data.path(), &["--max-list-bytes", "67108864"]);
    let client = client();
    poll(Duration::from_secs(20), "the peer registered", || {
        let client = client.clone();
        let url = peer.at("/v1/network/peers");
        async move {
            let view = support::get(&client, &url).await?;
            (view["state"] == "registered").then_some(())
        }
    })
    .await;
    let pid = peer.child.id();
    let before = status_kib(pid, "VmHWM");

    // Unsigned; signed by another key; and signed by another key under
    // genesis's key id (the signature does not verify).
    let mallory = plexus_core::auth::Identity::from_seed([0x66; 32]);
    let now = plexus_core::Timestamp::from_millis(
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    );
    let forged = mallory.sign(&plexus_core::auth::Message::push(Some(99), b"[]"), now);
    let genuine = key.sign(&plexus_core::auth::Message::push(Some(99), b"[]"), now);
    let as_headers = |input: &str, signature: &str, digest: &str| {
        format!(
            "signature-input: {input}\r\nsignature: {signature}\r\ncontent-digest: {digest}\r\n"
        )
    };
    let kinds = [
        String::new(),
        as_headers(
            &forged.signature_input,
            &forged.signature,
            &forged.content_digest,
        ),
        as_headers(
            &genuine.signature_input,
            &forged.signature,
            &forged.content_digest,
        ),
    ];
    let size = 64 * 1024 * 1024;
    let addr = host_port(&peer);
    let started = Instant::now();
    let pushes: Vec<_> = (0..40)
        .map(|i| {
            let (addr, headers) = (addr.clone(), kinds[i % kinds.len()].clone());
            tokio::spawn(async move { stream_push(&addr, &headers, size).await })
        })
        .collect();
    let mut sent = 0;
    for push in pushes {
        let (status, bytes) = tokio::time::timeout(Duration::from_secs(60), push)
            .await
            .expect("every push ends within 60 s")
            .unwrap();
        assert!(
            matches!(status, Some(403) | None),
            "a forged push is refused: {status:?}"
        );
        sent += bytes;
    }
    let took = started.elapsed();
    let after = status_kib(pid, "VmHWM");
    eprintln!(
        "40 forged 64 MiB pushes: {took:?}, {} MiB taken by the kernel in all, peer VmHWM {before} KiB before, {after} KiB after",
        sent >> 20
    );
    assert!(after < 200 * 1024, "the peer's VmHWM reached {after} KiB");
    assert!(
        took < Duration::from_secs(30),
        "refused at once, not read: {took:?}"
    );
    // Genesis's own pushes are still taken.
    let list = json!([{"id": uuid::Uuid::new_v4(), "name": "PeerZ", "uri": "http://127.0.0.1:9", "schemaHash": ""}]);
    assert_eq!(support::signed_push(&peer, &key, &list).await, 200);
    let view: Value = support::get(&client, &peer.at("/v1/network/peers"))
        .await
        .unwrap();
    assert!(
        view["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "PeerZ")
    );
}

/// A stand-alone peer on a port the OS picks, with `extra` flags, writes
/// not rate-limited (the load comes from one address).
fn standalone(data: &std::path::Path, extra: &[&str]) -> Proc {
    let mut command = std::process::Command::new(support::bin("plexus-peer"));
    command
        .args(["--listen", "127.0.0.1:0", "--rate-limit", "0"])
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn");
    support::spawn(command)
}

async fn add_doc_class(client: &reqwest::Client, peer: &Proc) {
    let class = json!({"class": "Doc", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "body", "dataType": ["text"]}]});
    let (status, body) = support::post(client, &peer.at("/v1/schema/things"), class).await;
    assert_eq!(status, 200, "{body}");
}

/// `count` distinct words (base 36 of `from..from + count`), space-separated.
fn distinct_words(from: u64, count: u64) -> String {
    let mut text = String::new();
    for n in from..from + count {
        let mut n = n;
        let mut word = Vec::new();
        loop {
            word.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        word.push(b'w');
        word.reverse();
        text.push_str(std::str::from_utf8(&word).unwrap());
        text.push(' ');
    }
    text
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_concurrent_batches_of_distinct_words_cost_bounded_disk_and_memory() {
    let data = tempfile::tempdir().unwrap();
    let peer = standalone(data.path(), &[]);
    let client = client();
    add_doc_class(&client, &peer).await;
    let pid = peer.child.id();
    let disk_before = dir_bytes(data.path());
    // Each batch ~6 MB: texts over 64 KiB, and texts of 6,000 distinct
    // words under it (the issue's attack: 12 such batches wrote 1.4 GB).
    // Made before any is sent, so that every body streams at once.
    let bodies: Vec<Vec<u8>> = (0..12u64)
        .map(|b| {
            let things: Vec<Value> = (0..100u64)
                .map(|i| {
                    let from = (b * 100 + i) * 10_000;
                    let words = if i % 2 == 0 { 11_000 } else { 6_000 };
                    json!({"class": "Doc", "schema": {"name": "x", "body": distinct_words(from, words)}})
                })
                .collect();
            serde_json::to_vec(&json!({ "things": things })).unwrap()
        })
        .collect();
    let batches: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, url) = (client.clone(), peer.at("/v1/batching/things"));
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let mut refusals = std::collections::BTreeSet::new();
    for batch in batches {
        let (status, answers) = batch.await.unwrap();
        assert_eq!(status, 200, "{answers}");
        for answer in answers.as_array().unwrap() {
            assert_eq!(answer["result"]["status"], "FAILED", "{answer}");
            let message = answer["result"]["errors"]["error"][0]["message"]
                .as_str()
                .unwrap();
            let flag = if message.contains("--max-value-bytes") {
                "--max-value-bytes"
            } else {
                assert!(message.contains("--max-value-words"), "{message}");
                "--max-value-words"
            };
            refusals.insert(flag);
        }
    }
    assert_eq!(
        refusals.len(),
        2,
        "both bounds refused values: {refusals:?}"
    );
    let disk_after = dir_bytes(data.path());
    let hwm = status_kib(pid, "VmHWM");
    eprintln!(
        "12 batches of distinct words: data folder {disk_before} -> {disk_after} bytes, VmHWM {hwm} KiB"
    );
    assert!(
        disk_after < disk_before + 16 * 1024 * 1024,
        "{disk_after} bytes on disk"
    );
    assert!(hwm < 300 * 1024, "the peer's VmHWM reached {hwm} KiB");
    // A text at the bounds is stored, and found by its words.
    let one = json!({"class": "Doc", "schema": {"name": "ok", "body": distinct_words(7, 2_048)}});
    let (status, body) = support::post(&client, &peer.at("/v1/things"), one).await;
    assert_eq!(status, 200, "{body}");
    let one_more =
        json!({"class": "Doc", "schema": {"name": "no", "body": distinct_words(7, 2_049)}});
    let (status, body) = support::post(&client, &peer.at("/v1/things"), one_more).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-value-words")
    );
}

#[tokio::test]
async fn writes_are_refused_with_507_below_the_free_disk_floor() {
    let data = tempfile::tempdir().unwrap();
    // A floor above any disk's free space.
    let peer = standalone(data.path(), &["--min-free-disk", "1000000000000000000"]);
    let client = client();
    let class = json!({"class": "Doc", "properties": [{"name": "name", "dataType": ["string"]}]});
    let (status, body) = support::post(&client, &peer.at("/v1/schema/things"), class).await;
    assert_eq!(status, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--min-free-disk"), "{message}");
    let (status, body) = support::post(
        &client,
        &peer.at("/v1/batching/things"),
        json!({"things": [{"class": "Doc", "schema": {"name": "x"}}]}),
    )
    .await;
    assert_eq!(status, 507, "{body}");
    // Reads still answer.
    let schema = support::get(&client, &peer.at("/v1/schema")).await.unwrap();
    assert_eq!(schema["things"]["classes"], json!([]));
}

/// The ids of every Thing the peer holds.
async fn stored_ids(client: &reqwest::Client, peer: &Proc) -> std::collections::BTreeSet<String> {
    let list = support::get(client, &peer.at("/v1/things?limit=10000"))
        .await
        .unwrap();
    list["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_batch_answered_503_is_never_committed_and_an_acknowledged_one_is() {
    let data = tempfile::tempdir().unwrap();
    let peer = standalone(data.path(), &["--request-timeout", "2s"]);
    let client = client();
    add_doc_class(&client, &peer).await;
    // Batches of growing size, each text 2,000 distinct words: the small
    // ones commit within the timeout, the large ones run past it.
    let mut sent = Vec::new();
    for (b, size) in [1u64, 3, 10, 40, 150, 450].into_iter().enumerate() {
        let ids: Vec<String> = (0..size)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let things: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let from = (b as u64 * 1_000 + i as u64) * 2_000;
                json!({"class": "Doc", "id": id, "schema": {"name": "x", "body": distinct_words(from, 2_000)}})
            })
            .collect();
        let started = Instant::now();
        let response = client
            .post(peer.at("/v1/batching/things"))
            .json(&json!({ "things": things }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let took = started.elapsed();
        eprintln!("batch of {size}: {status} after {took:?}");
        assert!(matches!(status, 200 | 503), "{status}");
        if status == 503 {
            // Nothing of it is there now …
            let now = stored_ids(&client, &peer).await;
            assert!(
                ids.iter().all(|id| !now.contains(id)),
                "a 503'd batch is half there"
            );
        }
        sent.push((status, ids));
    }
    assert!(
        sent.iter().any(|(s, _)| *s == 503) && sent.iter().any(|(s, _)| *s == 200),
        "the test needs both outcomes: {:?}",
        sent.iter()
            .map(|(s, ids)| (*s, ids.len()))
            .collect::<Vec<_>>()
    );
    // … nor later, when every commit that was going on has ended.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stored = stored_ids(&client, &peer).await;
    for (status, ids) in &sent {
        let there = ids.iter().filter(|id| stored.contains(*id)).count();
        match status {
            200 => assert_eq!(there, ids.len(), "an acknowledged batch is all there"),
            _ => assert_eq!(there, 0, "a batch answered 503 was committed later"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_like_scan_stops_its_work_and_frees_its_slot() {
    let data = tempfile::tempdir().unwrap();
    let peer = standalone(
        data.path(),
        &["--graphql-timeout", "300ms", "--graphql-max-running", "2"],
    );
    let client = client();
    add_doc_class(&client, &peer).await;
    // 20,000 long texts (~2 KB each, few distinct words: a small index).
    let text = "the quick brown fox jumps over the lazy dog and runs far away ".repeat(32);
    let things: Vec<Value> = (0..1_000)
        .map(|_| json!({"class": "Doc", "schema": {"name": "x", "body": text}}))
        .collect();
    // The peer gives each object its id: one body serves every batch.
    let body = axum::body::Bytes::from(serde_json::to_vec(&json!({ "things": things })).unwrap());
    // Two at a time: the peer writes two batches at once (--batch-max-running).
    for _ in 0..10 {
        let loads: Vec<_> = (0..2)
            .map(|_| {
                let (client, url, body) =
                    (client.clone(), peer.at("/v1/batching/things"), body.clone());
                tokio::spawn(async move {
                    let response = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    response.status().as_u16()
                })
            })
            .collect();
        for load in loads {
            assert_eq!(load.await.unwrap(), 200);
        }
    }
    let pid = peer.child.id();
    // No word starts after a separator in `*zzz*`: it scans every text.
    let scan = r#"{ Local { Get { Things { Doc(where: {path: ["body"], operator: Like, valueString: "*zzz*"}, limit: 10) { name } } } } }"#;
    let started = Instant::now();
    let scans: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), peer.url.clone());
            tokio::spawn(async move { support::graphql(&client, &url, scan).await })
        })
        .collect();
    for scan in scans {
        let answer = scan.await.unwrap();
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("cancelled") || message.contains("no query slot"),
            "{answer}"
        );
    }
    let answered = started.elapsed();
    // Within 100 ms of their answers the scans have stopped: the peer is idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = cpu_ticks(pid) - ticks;
    let small = Instant::now();
    let answer = support::graphql(
        &client,
        &peer.url,
        "{ Local { Get { Things { Doc(limit: 1) { name } } } } }",
    )
    .await;
    let small = small.elapsed();
    eprintln!(
        "4 Like scans answered in {answered:?}; then {busy} ticks of CPU in 1 s; a small query took {small:?}"
    );
    assert_eq!(
        answer["data"]["Local"]["Get"]["Things"]["Doc"][0]["name"], "x",
        "{answer}"
    );
    // 100 ticks are one core's whole second: the scans went on.
    assert!(
        busy < 20,
        "{busy} ticks of CPU after every scan was answered"
    );
    assert!(
        small < Duration::from_millis(250),
        "a small query took {small:?}"
    );
}
