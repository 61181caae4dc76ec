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
use serde_json::{Value, json};

/// Load on plexus-genesis and, for comparison, on etcd.
#[derive(Parser, Debug)]
#[command(name = "plexus-load")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
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

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
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
) -> anyhow::Result<()> {
    let client = client()?;
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

async fn join(
    genesis_bin: Option<PathBuf>,
    broadcast_delay: &str,
    peers: usize,
    joins: usize,
) -> anyhow::Result<()> {
    let binary = genesis_bin.map_or_else(sibling_genesis, Ok)?;
    let state = tempfile::tempdir()?;
    let state_arg = state.path().to_str().context("temporary folder name")?;
    let client = client()?;
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
        let result = json!({
            "peers": peers,
            "seen": times.len(),
            "join_ms_p50": percentile(&times, 50.0).round(),
            "join_ms_max": times.last().copied().unwrap_or(f64::NAN).round(),
        });
        eprintln!("join {j}: {result}");
        results.push(result);
        settle(&fakes, Duration::from_millis(500)).await;
    }
    println!("{}", json!({ "joins": results, "rss_kib": rss }));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
            } => pings(genesis, etcd, keys, concurrency, duration, rss_pid).await,
            Cmd::Join {
                genesis_bin,
                broadcast_delay,
                peers,
                joins,
            } => join(genesis_bin, &broadcast_delay, peers, joins).await,
        }
    })
}
