//! Helpers of the fault and hostile-input tests: a genesis on a chosen port
//! (so that it can be killed and restarted where its peers look for it),
//! Prometheus counters, and in-process fake peers (answering, stalling,
//! pinging) on loopback ports chosen by the OS.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use serde_json::Value;

use super::support::{Proc, genesis_command, respawn, spawn_on_free_port};

/// The command of `plexus-genesis` listening on `127.0.0.1:{port}` with `args`.
fn genesis_command_on(port: u16, args: &[&str]) -> Command {
    let mut command = genesis_command(&format!("127.0.0.1:{port}"));
    command.args(["--broadcast-delay", "5ms"]).args(args);
    command
}

/// Starts `plexus-genesis` with `args` on a free port, which it returns, so
/// that it can be restarted there with [`genesis_on`].
pub fn genesis_at_free_port(args: &[&str]) -> (Proc, u16) {
    spawn_on_free_port(|port| genesis_command_on(port, args))
}

/// Starts `plexus-genesis` again on `port` with `args`, retrying for a few
/// seconds if the port is still taken.
pub fn genesis_on(port: u16, args: &[&str]) -> Proc {
    respawn(|| genesis_command_on(port, args))
}

/// A counter or gauge of genesis's `/metrics`.
pub async fn metric(client: &reqwest::Client, genesis: &Proc, name: &str) -> u64 {
    let text = client
        .get(genesis.at("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

/// Genesis's list: name → (id, last_contact_at).
pub async fn genesis_peers(
    client: &reqwest::Client,
    genesis: &Proc,
) -> Option<BTreeMap<String, (String, u64)>> {
    let list = super::support::get(client, &genesis.at("/peers")).await?;
    list.as_array()?
        .iter()
        .map(|p| {
            Some((
                p["peerName"].as_str()?.to_owned(),
                (p["id"].as_str()?.to_owned(), p["last_contact_at"].as_u64()?),
            ))
        })
        .collect()
}

/// A peer's view: (state, its id, name → id of each peer it sees).
pub async fn peer_view(
    client: &reqwest::Client,
    url: &str,
) -> Option<(String, Option<String>, BTreeMap<String, String>)> {
    let view: Value = client
        .get(format!("{url}/v1/network/peers"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let peers = view["peers"]
        .as_array()?
        .iter()
        .map(|p| Some((p["name"].as_str()?.to_owned(), p["id"].as_str()?.to_owned())))
        .collect::<Option<_>>()?;
    Some((
        view["state"].as_str()?.to_owned(),
        view["id"].as_str().map(str::to_owned),
        peers,
    ))
}

/// Milliseconds since the Unix epoch, as genesis writes `last_contact_at`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// What the fake peers of one [`FakePeers`] server heard.
#[derive(Default)]
pub struct FakeState {
    /// Probes answered.
    pub probes: AtomicU64,
    /// `PUT /p2p/genesis` bodies received.
    pub pushes: AtomicU64,
    /// While set, `PUT /p2p/genesis` and `GET /p2p/ping` never answer.
    pub stall: AtomicBool,
    /// A peer name to watch for in pushes.
    pub watch_for: Mutex<Option<String>>,
    /// When each fake peer (the `i` of `/p{i}`) first got a push naming `watch_for`.
    pub seen_at: Mutex<BTreeMap<usize, Instant>>,
}

/// Many fake peers played by one in-process HTTP server: fake peer `i` lives
/// at `{url}/p{i}` and answers `GET /p{i}/p2p/ping` and
/// `PUT /p{i}/p2p/genesis` (whole lists and deltas).
pub struct FakePeers {
    pub url: String,
    pub state: Arc<FakeState>,
}

impl FakePeers {
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/p{i}/p2p/ping", get(fake_ping))
            .route("/p{i}/p2p/genesis", put(fake_push))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    pub fn uri(&self, i: usize) -> String {
        format!("{}/p{i}", self.url)
    }
}

async fn stall_if(state: &FakeState) {
    if state.stall.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

async fn fake_ping(State(state): State<Arc<FakeState>>, Path(_): Path<String>) {
    stall_if(&state).await;
    state.probes.fetch_add(1, Ordering::Relaxed);
}

async fn fake_push(State(state): State<Arc<FakeState>>, Path(i): Path<String>, body: Bytes) {
    stall_if(&state).await;
    state.pushes.fetch_add(1, Ordering::Relaxed);
    let Ok(i) = i.parse::<usize>() else { return };
    let Some(watch) = state.watch_for.lock().expect("lock").clone() else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return;
    };
    let names: Vec<String> = match &body {
        Value::Array(list) => list
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect(),
        other => other["upserts"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    if names.contains(&watch) {
        state
            .seen_at
            .lock()
            .expect("lock")
            .entry(i)
            .or_insert_with(Instant::now);
    }
}

/// A TCP server that accepts every connection and never answers (nor closes).
pub async fn tarpit() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// Registers fake peer `i` of `fakes` as `name` with genesis (deltas on).
pub async fn register_fake(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    uri: &str,
) -> String {
    let response = client
        .post(format!("{genesis}/peers/register"))
        .header("x-plexus-deltas", "1")
        .json(&serde_json::json!({"peerName": name, "peerUri": uri}))
        .send()
        .await
        .expect("register");
    let status = response.status();
    let body: Value = response.json().await.expect("register body");
    assert_eq!(status, 200, "register {name}: {body}");
    body["peer"]["id"].as_str().expect("id").to_owned()
}

/// Whether `ip netns` works here (root, iproute2, network namespaces).
pub fn netns_available() -> Result<(), String> {
    let name = format!("plexus-probe-{}", std::process::id());
    let add = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .map_err(|e| format!("no `ip` command: {e}"))?;
    if !add.status.success() {
        return Err(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&add.stderr).trim()
        ));
    }
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    Ok(())
}

/// Starts a real `plexus-peer` named `name` on a free port in the network of
/// `genesis_url`, pinging every `ping`, its data in `data`.
pub fn real_peer(genesis_url: &str, name: &str, data: &std::path::Path, ping: &str) -> Proc {
    real_peer_with(genesis_url, name, data, ping, &[])
}

/// [`real_peer`] with more flags.
pub fn real_peer_with(
    genesis_url: &str,
    name: &str,
    data: &std::path::Path,
    ping: &str,
    extra: &[&str],
) -> Proc {
    spawn_on_free_port(|port| {
        let mut command = Command::new(super::support::bin("plexus-peer"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--public-url", &format!("http://127.0.0.1:{port}")])
            .args(["--genesis-url", genesis_url, "--peer-name", name])
            .args(["--ping-interval", ping])
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn");
        command
    })
    .0
}
