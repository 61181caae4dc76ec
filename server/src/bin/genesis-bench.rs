//! `genesis-bench`: load on a real `plexus-genesis` process over loopback.
//!
//! It starts one sink (a tiny HTTP server answering `GET /p2p/ping` and
//! `PUT /p2p/genesis` for every fake peer), starts `plexus-genesis` as a
//! child process (found next to this binary unless `--genesis` says where),
//! registers `--peers` peers that all point at the sink, and then:
//!
//! * `--duration` of closed-loop pings from `--concurrency` workers:
//!   pings/s and latency percentiles;
//! * `--duration` of pings paced at `--rate` (default: half the closed-loop
//!   rate): latency percentiles at that load;
//! * the genesis process's resident memory (`VmRSS`) before and after the
//!   registrations, and the bytes of broadcasts the sink received.
//!
//! Build with `--release` for meaningful figures.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, put};
use clap::Parser;
use plexus_core::time::parse_duration;
use plexus_core::wire::{PeerId, PeerRegistrationResponse};

/// Load on plexus-genesis: registrations, pings/s, latency and memory.
#[derive(Parser, Debug)]
#[command(name = "genesis-bench")]
struct Args {
    /// The plexus-genesis binary (default: next to this one).
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Peers to register.
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Concurrent registrations.
    #[arg(long, default_value_t = 32)]
    register_concurrency: usize,
    /// Concurrent ping workers (each one connection).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of each ping phase (0s: no ping phases).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Pings/s of the paced phase (default: half the closed-loop rate).
    #[arg(long)]
    rate: Option<f64>,
    /// Passed to plexus-genesis.
    #[arg(long, default_value = "10ms")]
    broadcast_delay: String,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Also drive closed-loop pings with `wrk` (from Debian's `wrk`
    /// package) with this many threads; 0: don't.
    #[arg(long, default_value_t = 0)]
    wrk_threads: usize,
    /// Connections of the `wrk` run.
    #[arg(long, default_value_t = 32)]
    wrk_connections: usize,
    /// Register the peers with `x-plexus-deltas: 1`, so that broadcasts
    /// after their first are deltas rather than whole lists.
    #[arg(long)]
    deltas: bool,
    /// After registering, stop the sink and wait for the broadcast round
    /// (to unreachable peers: each PUT fails at connect) before measuring
    /// memory, so that the registry's pending-round state is cleared. Use
    /// with a `--broadcast-delay` longer than the registrations take.
    #[arg(long)]
    unreachable_round: bool,
    /// Skip the reqwest ping phases.
    #[arg(long)]
    no_reqwest: bool,
}

/// Runs `wrk` against the ping endpoint of every registered peer in turn.
fn run_wrk(args: &Args, base: &str, ids: &[PeerId]) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut script = String::from("local ids = {\n");
    for id in ids {
        let _ = writeln!(script, "\"{id}\",");
    }
    script.push_str(
        "}\nlocal i = 0\nlocal headers = {[\"Content-Type\"] = \"application/json\"}\n\
         request = function()\n  i = i + 1\n  \
         return wrk.format(\"POST\", \"/peers/\" .. ids[(i % #ids) + 1] .. \"/ping\", headers, '{\"schemaHash\":\"\"}')\nend\n",
    );
    let path = std::env::temp_dir().join(format!("genesis-bench-{}.lua", std::process::id()));
    std::fs::write(&path, script)?;
    let output = Command::new("wrk")
        .arg(format!("-t{}", args.wrk_threads))
        .arg(format!("-c{}", args.wrk_connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&path)
        .arg(base)
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let _ = std::fs::remove_file(&path);
    println!(
        "wrk -t{} -c{} -d{}s --latency:\n{}",
        args.wrk_threads,
        args.wrk_connections,
        args.duration.as_secs().max(1),
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

#[derive(Default)]
struct Sink {
    pings: AtomicU64,
    puts: AtomicU64,
    put_bytes: AtomicU64,
}

async fn start_sink() -> anyhow::Result<(String, Arc<Sink>, tokio::task::JoinHandle<()>)> {
    let sink = Arc::new(Sink::default());
    let app = Router::new()
        .route(
            "/p2p/ping",
            get(|State(s): State<Arc<Sink>>| async move {
                s.pings.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .route(
            "/p2p/genesis",
            put(|State(s): State<Arc<Sink>>, body: Bytes| async move {
                s.puts.fetch_add(1, Ordering::Relaxed);
                s.put_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::clone(&sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, sink, server))
}

struct GenesisProcess {
    child: Child,
    url: String,
}

impl GenesisProcess {
    fn start(binary: &PathBuf, broadcast_delay: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--peer-timeout",
                "1h",
                "--broadcast-delay",
                broadcast_delay,
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("no stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .context("no listening line")?
            .to_owned();
        Ok(Self { child, url })
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()?)
    }
}

impl Drop for GenesisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

/// Pings for `duration` from `workers` workers; `period` paces each worker.
async fn ping_phase(
    client: &reqwest::Client,
    base: &str,
    ids: &Arc<Vec<PeerId>>,
    workers: usize,
    duration: Duration,
    period: Option<Duration>,
) -> (f64, Vec<u32>, u64) {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let client = client.clone();
            let ids = Arc::clone(ids);
            let base = base.to_owned();
            let errors = Arc::clone(&errors);
            let urls: Vec<String> = ids
                .iter()
                .skip(w)
                .step_by(workers)
                .map(|id| format!("{base}/peers/{id}/ping"))
                .collect();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut ticker = period.map(|p| {
                    let mut t = tokio::time::interval_at(
                        tokio::time::Instant::now() + p.mul_f64(w as f64 / workers as f64),
                        p,
                    );
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    t
                });
                let mut k = 0usize;
                while start.elapsed() < duration {
                    if let Some(t) = ticker.as_mut() {
                        t.tick().await;
                    }
                    let url = &urls[k % urls.len()];
                    k += 1;
                    let sent = Instant::now();
                    let ok = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(r#"{"schemaHash":""}"#)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        latencies
                            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    (
        all.len() as f64 / elapsed,
        all,
        errors.load(Ordering::Relaxed),
    )
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let binary = match args.genesis.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("plexus-genesis"),
    };
    let (sink_url, sink, sink_server) = start_sink().await?;
    let genesis = GenesisProcess::start(&binary, &args.broadcast_delay)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_empty = genesis.rss_kib()?;

    // Register.
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.register_concurrency)
        .map(|_| {
            let client = client.clone();
            let url = format!("{}/peers/register", genesis.url);
            let sink_url = sink_url.clone();
            let next = Arc::clone(&next);
            let total = args.peers as u64;
            let deltas = if args.deltas { "1" } else { "0" };
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(ids);
                    }
                    let body =
                        serde_json::json!({"peerName": format!("P{i}"), "peerUri": sink_url});
                    let response = client
                        .post(&url)
                        .header("x-plexus-deltas", deltas)
                        .json(&body)
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!(
                            "registration {i}: {} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
                    }
                    ids.push(response.json::<PeerRegistrationResponse>().await?.peer.id);
                }
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(args.peers);
    for task in tasks {
        ids.extend(task.await??);
    }
    let registering = start.elapsed();
    println!(
        "registered {} peers in {:.2}s ({:.0}/s), broadcast-delay {}, deltas {}",
        ids.len(),
        registering.as_secs_f64(),
        ids.len() as f64 / registering.as_secs_f64(),
        args.broadcast_delay,
        args.deltas
    );

    if args.unreachable_round {
        sink_server.abort();
        let _ = sink_server.await;
        let rss_pending = genesis.rss_kib()?;
        println!(
            "genesis RSS before the round: {} KiB: {:.0} bytes/peer",
            rss_pending,
            (rss_pending.saturating_sub(rss_empty) * 1024) as f64 / ids.len().max(1) as f64
        );
        let failed = || async {
            let text = client
                .get(format!("{}/metrics", genesis.url))
                .send()
                .await?
                .text()
                .await?;
            let value: u64 = [
                "plexus_genesis_broadcasts_failed_total ",
                "plexus_genesis_broadcasts_sent_total ",
                "plexus_genesis_broadcasts_superseded_total ",
            ]
            .iter()
            .filter_map(|name| text.lines().find_map(|l| l.strip_prefix(name)))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum();
            Ok::<_, anyhow::Error>(value)
        };
        let waited = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if failed().await? >= ids.len() as u64 {
                break;
            }
            if waited.elapsed() > Duration::from_secs(600) {
                bail!("the round did not complete");
            }
        }
        println!(
            "round to {} unreachable peers done after {:.1}s",
            ids.len(),
            waited.elapsed().as_secs_f64()
        );
    }
    // Let broadcasts settle: the sink hears nothing for a second.
    let mut last = (u64::MAX, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let puts = sink.puts.load(Ordering::Relaxed);
        if puts != last.0 {
            last = (puts, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let settled = start.elapsed();
    let rss_full = genesis.rss_kib()?;
    let metrics = client
        .get(format!("{}/metrics", genesis.url))
        .send()
        .await?
        .text()
        .await?;
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    println!(
        "broadcasts settled after {:.2}s: {} rounds, {} PUTs received ({:.1} MB), {} superseded",
        settled.as_secs_f64(),
        metric("plexus_genesis_broadcast_rounds_total "),
        sink.puts.load(Ordering::Relaxed),
        sink.put_bytes.load(Ordering::Relaxed) as f64 / 1e6,
        metric("plexus_genesis_broadcasts_superseded_total "),
    );
    println!(
        "genesis RSS: {} KiB empty, {} KiB with {} peers: {:.0} bytes/peer",
        rss_empty,
        rss_full,
        ids.len(),
        (rss_full.saturating_sub(rss_empty) * 1024) as f64 / ids.len().max(1) as f64
    );

    if args.duration.is_zero() || ids.is_empty() {
        return Ok(());
    }
    if args.wrk_threads > 0 {
        run_wrk(&args, &genesis.url, &ids)?;
        let pings = client
            .get(format!("{}/metrics", genesis.url))
            .send()
            .await?
            .text()
            .await?;
        if let Some(line) = pings
            .lines()
            .find(|l| l.starts_with("plexus_genesis_pings_total "))
        {
            println!("{line}");
        }
    }
    if args.no_reqwest {
        return Ok(());
    }
    let ids = Arc::new(ids);
    // Warm up the connections.
    let _ = ping_phase(
        &client,
        &genesis.url,
        &ids,
        args.concurrency,
        Duration::from_millis(500),
        None,
    )
    .await;
    let (rate, lat, errors) = ping_phase(
        &client,
        &genesis.url,
        &ids,
        args.concurrency,
        args.duration,
        None,
    )
    .await;
    println!(
        "closed loop, {} workers: {:.0} pings/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} errors",
        args.concurrency,
        rate,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0),
        errors
    );
    let target = args.rate.unwrap_or(rate / 2.0);
    let period = Duration::from_secs_f64(args.concurrency as f64 / target);
    let (achieved, lat, errors) = ping_phase(
        &client,
        &genesis.url,
        &ids,
        args.concurrency,
        args.duration,
        Some(period),
    )
    .await;
    println!(
        "paced at {:.0}/s: achieved {:.0} pings/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} errors",
        target,
        achieved,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0),
        errors
    );
    println!("genesis RSS after pings: {} KiB", genesis.rss_kib()?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}
