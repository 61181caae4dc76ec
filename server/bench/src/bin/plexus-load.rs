//! `plexus-load`: the load tool of `scripts/bench.sh`.
//!
//! * `plexus-load pings --genesis URL` registers `--keys` fake peers (played
//!   by one in-process HTTP server) and drives closed-loop pings from
//!   `--concurrency` workers for `--duration`;
//!   `plexus-load pings --etcd URL` grants `--keys` etcd leases
//!   (`POST /v3/lease/grant`) and drives closed-loop keep-alives
//!   (`POST /v3/lease/keepalive`) the same way, with the same HTTP/JSON
//!   client. Both print one JSON line: `{"ops_per_s", "p50_ms", "p99_ms", "errors"}`.
//! * `plexus-load join --peers N` starts its own genesis, registers N fake
//!   peers with `x-plexus-deltas: 1` (fake peer `i` at `{server}/p{i}`)
//!   with broadcasts off, restarts genesis from its `--state`, registers one
//!   more peer and prints when every fake peer's view held it:
//!   `{"joins": [{"join_ms_max", "join_ms_p50", "seen"}], "rss_kib"}`.
//! * `plexus-load replicas --peers N` starts its own one-member etcd and, in
//!   one run, measures registrations/s and pings/s of one in-memory genesis,
//!   one replica on etcd and two replicas on etcd (registrations and pings
//!   split between them), the memory per peer of a genesis and of a replica,
//!   and a join reaching N fake peers' views with two replicas (bootstrapped
//!   with broadcasts off, then restarted). One JSON line.
//! * `pings --rss-pid PID` adds the `VmRSS` of that process, in KiB, after
//!   the registrations.
//!
//! Build with `--release` for meaningful figures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use plexus_bench::{GenesisProcess, percentile, post_workers, rss_kib, sibling_genesis};
use plexus_core::time::parse_duration;
use plexus_server::outbound::Trust;
use serde_json::{Value, json};

/// Load on plexus-genesis and, for comparison, on etcd.
#[derive(Parser, Debug)]
#[command(name = "plexus-load")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
    /// Trust roots for an HTTPS genesis (--ca-file, before the subcommand).
    #[command(flatten)]
    trust: plexus_server::outbound::TrustArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Closed-loop pings (genesis) or lease keep-alives (etcd).
    Pings {
        /// A plexus-genesis to ping.
        #[arg(long, conflicts_with = "etcd")]
        genesis: Option<String>,
        /// An etcd client URL whose leases to keep alive.
        #[arg(long)]
        etcd: Option<String>,
        /// Registered peers, or granted leases.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Concurrent workers (each one request at a time).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Length of the measured phase.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        /// Print the VmRSS of this process after the registrations.
        #[arg(long)]
        rss_pid: Option<u32>,
    },
    /// Time for a join to reach every fake peer's view.
    ///
    /// Starts its own genesis. Bootstrapping N fake peers costs N whole
    /// lists (N² entries) by nature, so they are registered with broadcasts
    /// off (`--broadcast-delay 1h`, `--state` in a temporary folder); genesis
    /// is then restarted from that state with `--broadcast-delay`, and only
    /// the joins after that are measured.
    Join {
        /// The plexus-genesis binary (default: next to this one).
        #[arg(long)]
        genesis_bin: Option<PathBuf>,
        /// Genesis's --broadcast-delay for the measured joins.
        #[arg(long, default_value = "10ms")]
        broadcast_delay: String,
        /// Fake peers.
        #[arg(long, default_value_t = 10_000)]
        peers: usize,
        /// Joins measured, one after the other.
        #[arg(long, default_value_t = 1)]
        joins: usize,
    },
    /// One genesis in memory, one replica on etcd, two replicas on etcd,
    /// side by side (starts its own etcd: `etcd` must be on the PATH).
    Replicas {
        /// The plexus-genesis binary (default: next to this one).
        #[arg(long)]
        genesis_bin: Option<PathBuf>,
        /// Fake peers registered in each setup (and joined in the last).
        #[arg(long, default_value_t = 10_000)]
        peers: usize,
        /// Concurrent ping workers.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Length of each measured ping phase.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
    },
}

/// The fake peers' server: fake peer `i` is `/p{i}`.
#[derive(Default)]
struct Fakes {
    pushes: AtomicU64,
    /// The name to look for in pushes, and when each fake peer first saw it.
    watch: Mutex<Option<String>>,
    seen: Mutex<HashMap<usize, Instant>>,
    watching: AtomicBool,
    seen_count: AtomicUsize,
}

async fn fake_push(State(fakes): State<Arc<Fakes>>, Path(i): Path<String>, body: Bytes) {
    fakes.pushes.fetch_add(1, Ordering::Relaxed);
    if !fakes.watching.load(Ordering::Relaxed) {
        return;
    }
    let Some(watch) = fakes.watch.lock().ok().and_then(|w| w.clone()) else {
        return;
    };
    // Cheap check first: the name must appear in the body at all.
    if !body
        .windows(watch.len())
        .any(|window| window == watch.as_bytes())
    {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return;
    };
    let list = match &value {
        Value::Array(list) => list,
        other => match other["upserts"].as_array() {
            Some(list) => list,
            None => return,
        },
    };
    if list.iter().any(|p| p["name"] == watch.as_str())
        && let Ok(i) = i.trim_start_matches('p').parse::<usize>()
        && let Ok(mut seen) = fakes.seen.lock()
        && seen.insert(i, Instant::now()).is_none()
    {
        fakes.seen_count.fetch_add(1, Ordering::Relaxed);
    }
}

async fn start_fakes() -> anyhow::Result<(String, Arc<Fakes>)> {
    let fakes = Arc::new(Fakes::default());
    let app = Router::new()
        .route("/{i}/p2p/ping", get(|| async {}))
        .route("/{i}/p2p/genesis", put(fake_push))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::clone(&fakes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, fakes))
}

fn client(trust: &Trust) -> anyhow::Result<reqwest::Client> {
    Ok(plexus_server::outbound::client_builder(trust)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Registers fake peers `names` at `{fakes}/p{i}`, 64 at a time; their ids.
async fn register(
    client: &reqwest::Client,
    genesis: &str,
    fakes: &str,
    range: std::ops::Range<usize>,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let count = range.len();
    let ids: Vec<anyhow::Result<String>> = futures::stream::iter(range)
        .map(|i| {
            let body =
                json!({"peerName": format!("{prefix}{i}"), "peerUri": format!("{fakes}/p{i}")});
            let request = client
                .post(format!("{genesis}/peers/register"))
                .header("x-plexus-deltas", "1")
                .json(&body);
            async move {
                let response = request.send().await?;
                if !response.status().is_success() {
                    bail!(
                        "register {i}: {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                let body: Value = response.json().await?;
                Ok(body["peer"]["id"].as_str().context("no id")?.to_owned())
            }
        })
        .buffered(64)
        .collect()
        .await;
    eprintln!(
        "registered {count} fake peers in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    ids.into_iter().collect()
}

/// Waits until `fakes` received no push for `quiet`.
async fn settle(fakes: &Fakes, quiet: Duration) {
    let mut last = (u64::MAX, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pushes = fakes.pushes.load(Ordering::Relaxed);
        if pushes != last.0 {
            last = (pushes, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return;
        }
    }
}

async fn pings(
    genesis: Option<String>,
    etcd: Option<String>,
    keys: usize,
    concurrency: usize,
    duration: Duration,
    rss_pid: Option<u32>,
    trust: &Trust,
) -> anyhow::Result<()> {
    let client = client(trust)?;
    let requests: Arc<[(String, Bytes)]> = match (genesis, etcd) {
        (Some(genesis), None) => {
            let (fakes_url, fakes) = start_fakes().await?;
            let ids = register(&client, &genesis, &fakes_url, 0..keys, "F").await?;
            settle(&fakes, Duration::from_secs(1)).await;
            ids.into_iter()
                .map(|id| {
                    (
                        format!("{genesis}/peers/{id}/ping"),
                        Bytes::from_static(br#"{"schemaHash":""}"#),
                    )
                })
                .collect()
        }
        (None, Some(etcd)) => {
            let started = Instant::now();
            let ids: Vec<anyhow::Result<String>> = futures::stream::iter(0..keys)
                .map(|_| {
                    let request = client
                        .post(format!("{etcd}/v3/lease/grant"))
                        .json(&json!({"TTL": 300}));
                    async move {
                        let body: Value = request.send().await?.json().await?;
                        Ok(body["ID"].as_str().context("no lease ID")?.to_owned())
                    }
                })
                .buffered(64)
                .collect()
                .await;
            eprintln!(
                "granted {keys} leases in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            ids.into_iter()
                .map(|id| {
                    Ok((
                        format!("{etcd}/v3/lease/keepalive"),
                        Bytes::from(json!({ "ID": id? }).to_string()),
                    ))
                })
                .collect::<anyhow::Result<_>>()?
        }
        _ => bail!("give exactly one of --genesis and --etcd"),
    };
    let rss = rss_pid.map(rss_kib).transpose()?;
    // Warm up the connections, then measure.
    let warm_up = Duration::from_millis(500);
    let _ = post_workers(&client, Arc::clone(&requests), concurrency, warm_up, None).await;
    let load = post_workers(&client, requests, concurrency, duration, None).await;
    let round3 = |ms: f64| (ms * 1000.0).round() / 1000.0;
    let mut result = json!({
        "ops_per_s": load.ops_per_s.round(),
        "p50_ms": round3(load.percentile_ms(50.0)),
        "p99_ms": round3(load.percentile_ms(99.0)),
        "errors": load.errors,
    });
    result["keys"] = json!(keys);
    result["concurrency"] = json!(concurrency);
    if let Some(rss) = rss {
        result["rss_kib"] = json!(rss);
    }
    println!("{result}");
    Ok(())
}

/// How long the newcomer registered at `start` took to reach the views of
/// the fakes `0..peers`: `{"peers", "seen", "join_ms_p50", "join_ms_max"}`.
fn join_summary(fakes: &Fakes, start: Instant, peers: usize) -> serde_json::Value {
    let mut times: Vec<f64> = fakes
        .seen
        .lock()
        .map(|s| {
            s.iter()
                .filter(|(i, _)| **i < peers)
                .map(|(_, t)| t.duration_since(start).as_secs_f64() * 1000.0)
                .collect()
        })
        .unwrap_or_default();
    times.sort_by(f64::total_cmp);
    json!({
        "peers": peers,
        "seen": times.len(),
        "join_ms_p50": percentile(&times, 50.0).round(),
        "join_ms_max": times.last().copied().unwrap_or(f64::NAN).round(),
    })
}

async fn join(
    genesis_bin: Option<PathBuf>,
    broadcast_delay: &str,
    peers: usize,
    joins: usize,
) -> anyhow::Result<()> {
    let binary = genesis_bin.map_or_else(sibling_genesis, Ok)?;
    let state = tempfile::tempdir()?;
    let state_arg = state.path().to_str().context("temporary folder name")?;
    let client = client(&Trust::default())?;
    let (fakes_url, fakes) = start_fakes().await?;
    let bootstrap =
        GenesisProcess::start(&binary, &["--state", state_arg, "--broadcast-delay", "1h"])?;
    register(&client, &bootstrap.url, &fakes_url, 0..peers, "F").await?;
    bootstrap.stop()?;
    let started = Instant::now();
    let genesis_process = GenesisProcess::start(
        &binary,
        &["--state", state_arg, "--broadcast-delay", broadcast_delay],
    )?;
    eprintln!(
        "genesis restarted with {peers} peers from its state in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let genesis = genesis_process.url.clone();
    let rss = genesis_process.rss_kib()?;
    let mut results = Vec::new();
    for j in 0..joins {
        let name = format!("Newcomer{}", peers + j);
        if let Ok(mut watch) = fakes.watch.lock() {
            *watch = Some(name.clone());
        }
        if let Ok(mut seen) = fakes.seen.lock() {
            seen.clear();
        }
        fakes.seen_count.store(0, Ordering::Relaxed);
        fakes.watching.store(true, Ordering::Relaxed);
        let start = Instant::now();
        // The newcomer is one more fake peer, beyond the others.
        register(
            &client,
            &genesis,
            &fakes_url,
            peers + j..peers + j + 1,
            "Newcomer",
        )
        .await?;
        while fakes.seen_count.load(Ordering::Relaxed) < peers
            && start.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        fakes.watching.store(false, Ordering::Relaxed);
        let result = join_summary(&fakes, start, peers);
        eprintln!("join {j}: {result}");
        results.push(result);
        settle(&fakes, Duration::from_millis(500)).await;
    }
    println!("{}", json!({ "joins": results, "rss_kib": rss }));
    Ok(())
}

/// A one-member etcd on free loopback ports, killed when dropped.
struct Etcd {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_etcd(client: &reqwest::Client) -> anyhow::Result<Etcd> {
    let dir = tempfile::tempdir()?;
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let child = std::process::Command::new("etcd")
        .args(["--name", "bench", "--log-level", "error"])
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("bench={peer}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start etcd (Debian's etcd-server)")?;
    let etcd = Etcd {
        child,
        url,
        _dir: dir,
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(r) = client.get(format!("{}/health", etcd.url)).send().await
            && r.status().is_success()
        {
            return Ok(etcd);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("etcd did not become healthy")
}

/// Registers `range` split over `genesis` (a contiguous share each, all
/// at once); returns each id with the replica that registered it, and
/// registrations/s.
async fn register_split(
    client: &reqwest::Client,
    genesis: &[String],
    fakes: &str,
    range: std::ops::Range<usize>,
    prefix: &str,
) -> anyhow::Result<(Vec<(usize, String)>, f64)> {
    let started = Instant::now();
    let (count, n) = (range.len(), genesis.len());
    let shares = genesis.iter().enumerate().map(|(k, url)| {
        let share = range.start + k * count / n..range.start + (k + 1) * count / n;
        async move {
            let ids = register(client, url, fakes, share, prefix).await?;
            anyhow::Ok(ids.into_iter().map(|id| (k, id)).collect::<Vec<_>>())
        }
    });
    let ids: Vec<(usize, String)> = futures::future::try_join_all(shares)
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok((ids, count as f64 / started.elapsed().as_secs_f64()))
}

/// etcd's current revision (it grows by one per write), through its JSON
/// gateway.
async fn etcd_revision(client: &reqwest::Client, etcd: &str) -> anyhow::Result<u64> {
    let answer: Value = client
        .post(format!("{etcd}/v3/kv/range"))
        .json(&json!({ "key": "eA==" }))
        .send()
        .await?
        .json()
        .await?;
    let revision = &answer["header"]["revision"];
    revision
        .as_str()
        .and_then(|r| r.parse().ok())
        .or_else(|| revision.as_u64())
        .with_context(|| format!("no revision in etcd's answer {answer}"))
}

/// Registrations/s, pings/s and memory per peer of one setup; with `etcd`,
/// also etcd's writes per ping while the pings are measured.
async fn setup_load(
    client: &reqwest::Client,
    label: &str,
    genesis: &[GenesisProcess],
    etcd: Option<&str>,
    peers: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let (fakes_url, _fakes) = start_fakes().await?;
    let urls: Vec<String> = genesis.iter().map(|g| g.url.clone()).collect();
    let rss_before = genesis[0].rss_kib()?;
    let (ids, registrations_per_s) =
        register_split(client, &urls, &fakes_url, 0..peers, "F").await?;
    // Let the replicas' mirrors catch up before the memory is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = genesis[0].rss_kib()?;
    let requests: Arc<[(String, Bytes)]> = ids
        .iter()
        .map(|(k, id)| {
            (
                format!("{}/peers/{id}/ping", urls[*k]),
                Bytes::from_static(br#"{"schemaHash":""}"#),
            )
        })
        .collect();
    let _ = post_workers(
        client,
        Arc::clone(&requests),
        concurrency,
        Duration::from_millis(500),
        None,
    )
    .await;
    let revision_before = match etcd {
        Some(etcd) => Some(etcd_revision(client, etcd).await?),
        None => None,
    };
    let load = post_workers(client, requests, concurrency, duration, None).await;
    let writes = match (etcd, revision_before) {
        (Some(etcd), Some(before)) => {
            Some(etcd_revision(client, etcd).await?.saturating_sub(before))
        }
        _ => None,
    };
    let pings = load.latencies_ms.len();
    let bytes_per_peer = (rss_after.saturating_sub(rss_before) * 1024) as f64 / peers as f64;
    let result = json!({
        "setup": label,
        "registrations_per_s": registrations_per_s.round(),
        "pings_per_s": load.ops_per_s.round(),
        "ping_p50_ms": (load.percentile_ms(50.0) * 1000.0).round() / 1000.0,
        "ping_errors": load.errors,
        "bytes_per_peer": bytes_per_peer.round(),
        "pings": pings,
        "etcd_writes": writes,
        "etcd_writes_per_ping": writes.map(|w| w as f64 / pings.max(1) as f64),
    });
    eprintln!("{result}");
    Ok(result)
}

async fn replicas(
    genesis_bin: Option<PathBuf>,
    peers: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let binary = genesis_bin.map_or_else(sibling_genesis, Ok)?;
    let client = client(&Trust::default())?;
    let etcd = start_etcd(&client).await?;
    // No --key-file: the replicas of each prefix share the key in etcd.
    // Broadcasts off while measuring registrations and pings: a round to
    // N peers per registration would measure the fakes, not genesis.
    let replica = |prefix: &str, delay: &str| {
        GenesisProcess::start(
            &binary,
            &[
                "--etcd",
                &etcd.url,
                "--etcd-prefix",
                prefix,
                "--broadcast-delay",
                delay,
            ],
        )
    };
    let mut results = Vec::new();
    let memory = GenesisProcess::start(&binary, &["--broadcast-delay", "1h"])?;
    results.push(
        setup_load(
            &client,
            "memory",
            &[memory],
            None,
            peers,
            concurrency,
            duration,
        )
        .await?,
    );
    let one = replica("/one/", "1h")?;
    results.push(
        setup_load(
            &client,
            "etcd, 1 replica",
            &[one],
            Some(&etcd.url),
            peers,
            concurrency,
            duration,
        )
        .await?,
    );
    let two = [replica("/two/", "1h")?, replica("/two/", "1h")?];
    results.push(
        setup_load(
            &client,
            "etcd, 2 replicas",
            &two,
            Some(&etcd.url),
            peers,
            concurrency,
            duration,
        )
        .await?,
    );
    drop(two);

    // A join reaching every fake peer's view, with two replicas: bootstrap
    // with broadcasts off, stop both, start two more (they load the list
    // from etcd and push nothing for it), then join one more.
    let (fakes_url, fakes) = start_fakes().await?;
    let boot = [replica("/join/", "1h")?, replica("/join/", "1h")?];
    let urls: Vec<String> = boot.iter().map(|g| g.url.clone()).collect();
    register_split(&client, &urls, &fakes_url, 0..peers, "F").await?;
    // Stopped with SIGTERM: each revokes its lease, so the live replicas
    // share the fakes between the two of them only.
    for replica in boot {
        replica.stop()?;
    }
    let live = [replica("/join/", "10ms")?, replica("/join/", "10ms")?];
    // Each replica sees the other (its lease) before the join is measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let name = format!("Newcomer{peers}");
    if let Ok(mut watch) = fakes.watch.lock() {
        *watch = Some(name);
    }
    fakes.watching.store(true, Ordering::Relaxed);
    let start = Instant::now();
    register(
        &client,
        &live[0].url,
        &fakes_url,
        peers..peers + 1,
        "Newcomer",
    )
    .await?;
    while fakes.seen_count.load(Ordering::Relaxed) < peers
        && start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let join = join_summary(&fakes, start, peers);
    eprintln!("join with two replicas: {join}");
    println!(
        "{}",
        json!({ "setups": results, "join_two_replicas": join })
    );
    drop(live);
    drop(etcd);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let trust = args.trust.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            Cmd::Pings {
                genesis,
                etcd,
                keys,
                concurrency,
                duration,
                rss_pid,
            } => pings(genesis, etcd, keys, concurrency, duration, rss_pid, &trust).await,
            Cmd::Join {
                genesis_bin,
                broadcast_delay,
                peers,
                joins,
            } => join(genesis_bin, &broadcast_delay, peers, joins).await,
            Cmd::Replicas {
                genesis_bin,
                peers,
                concurrency,
                duration,
            } => replicas(genesis_bin, peers, concurrency, duration).await,
        }
    })
}
