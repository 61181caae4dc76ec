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
//!   registrations, and the bytes of broadcasts the sink received;
//! * with `--tls`, instead: a plain and an HTTPS genesis side by side,
//!   kept-alive pings and pings on a new connection each, to one then the
//!   other (`BENCHMARKS.md`, *HTTPS against HTTP*).
//!
//! Build with `--release` for meaningful figures.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, put};
use clap::Parser;
use plexus_bench::certs::TestCa;
use plexus_bench::{
    GenesisProcess, Load, Post, post_signed_workers, post_workers, sibling_genesis,
};
use plexus_core::Timestamp;
use plexus_core::auth::{Identity, Message, SESSION_KEY_HEADER, SessionKey};
use plexus_core::time::parse_duration;
use plexus_core::wire::{PeerId, PeerRegistrationResponse, REGISTER_PATH, ping_path};
use plexus_server::outbound::{Trust, client_builder};
use reqwest::header::{HeaderName, HeaderValue};

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
    /// Passed to plexus-genesis: its limit of write calls per second per
    /// client address. Every call of the bench comes from 127.0.0.1, so
    /// the default, 0, turns the limit off.
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
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
    /// The schema hash the reqwest pings carry (the same for every peer, as
    /// in a network whose peers share one schema).
    #[arg(long, default_value = "")]
    schema_hash: String,
    /// Also register this many peers that own their names (named `K0`,
    /// `K1`, …): each signs its registration with its own Ed25519 key and
    /// signs its pings with its session key. The reqwest closed loop then
    /// runs `--rounds` times over the keyless peers and the keyed ones in
    /// turn, and prints both rates and their ratio. `wrk` pings only the
    /// keyless peers (its Lua cannot sign).
    #[arg(long, default_value_t = 0)]
    keyed_peers: usize,
    /// Rounds of the keyless-then-keyed closed loops (with --keyed-peers),
    /// or of the HTTP-then-HTTPS ones (with --tls).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// HTTPS against HTTP: start a second genesis serving HTTPS (a
    /// certificate of a test CA) beside the plain one, register --peers on
    /// each, and run --rounds rounds of closed-loop pings over kept-alive
    /// HTTP/1.1 connections to each in turn, then of pings that each open a
    /// new connection (the handshake's cost); prints both rates, genesis's
    /// CPU per ping, and the median ratios. Replaces the other ping phases.
    #[arg(long)]
    tls: bool,
    /// Trust roots for an HTTPS genesis (`--genesis` built elsewhere).
    #[command(flatten)]
    trust: plexus_server::outbound::TrustArgs,
}

fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Registers `count` peers named `{prefix}{i}` at `sink_url`, keyed or not,
/// with `concurrency` workers: their ids, and the session keys of keyed ones.
async fn register_all(
    client: &reqwest::Client,
    base: &str,
    sink_url: &str,
    (prefix, count, keyed): (&'static str, usize, bool),
    concurrency: usize,
    deltas: bool,
) -> anyhow::Result<Vec<(PeerId, Option<SessionKey>)>> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}{REGISTER_PATH}");
            let sink_url = sink_url.to_owned();
            let next = Arc::clone(&next);
            let total = count as u64;
            let deltas = if deltas { "1" } else { "0" };
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(ids);
                    }
                    let body = serde_json::to_vec(
                        &serde_json::json!({"peerName": format!("{prefix}{i}"), "peerUri": sink_url}),
                    )?;
                    let mut request = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-plexus-deltas", deltas);
                    if keyed {
                        let mut seed = [7u8; 32];
                        seed[..8].copy_from_slice(&i.to_le_bytes());
                        let message = Message::request("POST", REGISTER_PATH, &body);
                        let signature = Identity::from_seed(seed).sign(&message, wall_clock());
                        for (name, value) in signature.pairs() {
                            request = request.header(name, value);
                        }
                    }
                    let response = request.body(body).send().await?;
                    if !response.status().is_success() {
                        bail!(
                            "registration {prefix}{i}: {} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
                    }
                    let session = response
                        .headers()
                        .get(SESSION_KEY_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<SessionKey>().ok());
                    if keyed && session.is_none() {
                        bail!("registration {prefix}{i}: no session key in the answer");
                    }
                    let id = response.json::<PeerRegistrationResponse>().await?.peer.id;
                    ids.push((id, session));
                }
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}

/// The pings of `peers`, each signed now with its session key (if any).
fn pings(base: &str, peers: &[(PeerId, Option<SessionKey>)], schema_hash: &str) -> Arc<[Post]> {
    let now = wall_clock();
    let body = Bytes::from(serde_json::json!({ "schemaHash": schema_hash }).to_string());
    peers
        .iter()
        .map(|(id, session)| {
            let path = ping_path(*id);
            let headers = session
                .as_ref()
                .map(|key| {
                    let signature = key.sign(&Message::request("POST", &path, &body), now);
                    signature
                        .pairs()
                        .iter()
                        .filter_map(|(name, value)| {
                            let value = HeaderValue::from_str(value).ok()?;
                            Some((HeaderName::from_static(name), value))
                        })
                        .collect()
                })
                .unwrap_or_default();
            (format!("{base}{path}"), body.clone(), headers)
        })
        .collect()
}

/// The unsigned pings of `ids` at genesis `base`, carrying `schema_hash`.
fn plain_pings(base: &str, ids: &[PeerId], schema_hash: &str) -> Arc<[(String, Bytes)]> {
    let body = Bytes::from(serde_json::json!({ "schemaHash": schema_hash }).to_string());
    ids.iter()
        .map(|id| (format!("{base}/peers/{id}/ping"), body.clone()))
        .collect()
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

/// Genesis's counters from `GET /metrics`: `counter(name)` is the value of
/// the sample `name` (0 when it is missing).
async fn counters(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<impl Fn(&str) -> u64 + use<>> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(move |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
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

async fn bench(args: Args) -> anyhow::Result<()> {
    let binary = match args.genesis.clone() {
        Some(b) => b,
        None => sibling_genesis()?,
    };
    let (sink_url, sink, sink_server) = start_sink().await?;
    let rate_limit = args.rate_limit.to_string();
    let limit: &[&str] = if args.rate_limit == 0 {
        &[]
    } else {
        &["--rate-limit", &rate_limit]
    };
    let genesis_args = [&["--broadcast-delay", args.broadcast_delay.as_str()], limit].concat();
    if args.tls {
        return compare_tls(&args, &binary, &genesis_args, &sink_url).await;
    }
    let genesis = GenesisProcess::start(&binary, &genesis_args)?;
    let client = client_builder(&args.trust.load()?)
        .pool_max_idle_per_host(1024)
        .build()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_empty = genesis.rss_kib()?;

    // Register.
    let start = Instant::now();
    let plain = register_all(
        &client,
        &genesis.url,
        &sink_url,
        ("P", args.peers, false),
        args.register_concurrency,
        args.deltas,
    )
    .await?;
    let keyed = register_all(
        &client,
        &genesis.url,
        &sink_url,
        ("K", args.keyed_peers, true),
        args.register_concurrency,
        args.deltas,
    )
    .await?;
    let ids: Vec<PeerId> = plain.iter().chain(&keyed).map(|(id, _)| *id).collect();
    let registering = start.elapsed();
    println!(
        "registered {} peers ({} keyed) in {:.2}s ({:.0}/s), broadcast-delay {}, deltas {}",
        ids.len(),
        keyed.len(),
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
            let counter = counters(&client, &genesis.url).await?;
            Ok::<_, anyhow::Error>(
                [
                    "plexus_genesis_broadcasts_failed_total",
                    "plexus_genesis_broadcasts_sent_total",
                    "plexus_genesis_broadcasts_superseded_total",
                ]
                .iter()
                .map(|name| counter(name))
                .sum::<u64>(),
            )
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
    let metric = counters(&client, &genesis.url).await?;
    println!(
        "broadcasts settled after {:.2}s: {} rounds, {} PUTs received ({:.1} MB), {} superseded",
        settled.as_secs_f64(),
        metric("plexus_genesis_broadcast_rounds_total"),
        sink.puts.load(Ordering::Relaxed),
        sink.put_bytes.load(Ordering::Relaxed) as f64 / 1e6,
        metric("plexus_genesis_broadcasts_superseded_total"),
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
        let plain_ids: Vec<PeerId> = plain.iter().map(|(id, _)| *id).collect();
        let pings_total = async || -> anyhow::Result<u64> {
            let counter = counters(&client, &genesis.url).await?;
            Ok(counter("plexus_genesis_pings_total"))
        };
        let (before, ticks) = (pings_total().await?, genesis.cpu_ticks()?);
        run_wrk(&args, &genesis.url, &plain_ids)?;
        let ticks = genesis.cpu_ticks()?.saturating_sub(ticks);
        let pings = pings_total().await?.saturating_sub(before) as f64;
        // Genesis's own CPU per ping (ticks of 10 ms): unlike pings/s, it
        // does not count the load generator's share of the machine.
        println!(
            "wrk: {pings:.0} pings, genesis CPU {:.2} µs/ping",
            ticks as f64 * 10_000.0 / pings.max(1.0)
        );
    }
    if args.no_reqwest {
        return Ok(());
    }
    if !keyed.is_empty() {
        return compare_keys(&args, &client, &genesis, &plain, &keyed).await;
    }
    let pings = plain_pings(&genesis.url, &ids, &args.schema_hash);
    // Warm up the connections.
    let workers = args.concurrency;
    let _ = post_workers(&client, Arc::clone(&pings), workers, WARM_UP, None).await;
    let closed = post_workers(&client, Arc::clone(&pings), workers, args.duration, None).await;
    println!(
        "closed loop, {workers} workers: {:.0} pings/s, {}",
        closed.ops_per_s,
        summary(&closed)
    );
    let target = args.rate.unwrap_or(closed.ops_per_s / 2.0);
    let period = Duration::from_secs_f64(workers as f64 / target);
    let paced = post_workers(&client, pings, workers, args.duration, Some(period)).await;
    println!(
        "paced at {target:.0}/s: achieved {:.0} pings/s, {}",
        paced.ops_per_s,
        summary(&paced)
    );
    println!("genesis RSS after pings: {} KiB", genesis.rss_kib()?);
    Ok(())
}

const WARM_UP: Duration = Duration::from_millis(500);

/// Closed loops over the keyless peers and the keyed ones in turn,
/// `--rounds` times: both rates and the median of their ratios.
async fn compare_keys(
    args: &Args,
    client: &reqwest::Client,
    genesis: &GenesisProcess,
    plain: &[(PeerId, Option<SessionKey>)],
    keyed: &[(PeerId, Option<SessionKey>)],
) -> anyhow::Result<()> {
    let workers = args.concurrency;
    let mut ratios = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let mut rates = Vec::new();
        for (what, peers) in [("keyless", plain), ("keyed", keyed)] {
            if peers.is_empty() {
                continue;
            }
            // Signed now, so that every signature is fresh for the phase.
            let requests = pings(&genesis.url, peers, &args.schema_hash);
            let _ =
                post_signed_workers(client, Arc::clone(&requests), workers, WARM_UP, None).await;
            let ticks = genesis.cpu_ticks()?;
            let load = post_signed_workers(client, requests, workers, args.duration, None).await;
            let ticks = genesis.cpu_ticks()?.saturating_sub(ticks);
            let pings = load.ops_per_s * args.duration.as_secs_f64();
            // Genesis's own CPU per ping (ticks of 10 ms): what the load of
            // a shared machine blurs least.
            let cpu_us = ticks as f64 * 10_000.0 / pings.max(1.0);
            println!(
                "round {round}: closed loop, {workers} workers, {what} ({} peers): {:.0} pings/s, genesis CPU {cpu_us:.1} µs/ping, {}",
                peers.len(),
                load.ops_per_s,
                summary(&load)
            );
            rates.push((load.ops_per_s, cpu_us));
        }
        if let [(keyless, keyless_cpu), (keyed, keyed_cpu)] = rates[..] {
            ratios.push((keyed / keyless, keyless_cpu / keyed_cpu));
        }
    }
    let rate = median(ratios.iter().map(|r| r.0).collect());
    let cpu = median(ratios.iter().map(|r| r.1).collect());
    if let (Some(rate), Some(cpu)) = (rate, cpu) {
        println!(
            "keyed / keyless, median of {} rounds: pings/s {rate:.3}; pings per genesis CPU second {cpu:.3}",
            ratios.len()
        );
    }
    Ok(())
}

/// `--tls`: the same pings to a plain genesis and to an HTTPS one, in
/// turn, over kept-alive connections and over a new connection each.
async fn compare_tls(
    args: &Args,
    binary: &std::path::Path,
    genesis_args: &[&str],
    sink_url: &str,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("genesis-bench CA")?;
    let (files, _) = ca.issue_files(dir.path(), "genesis", &["127.0.0.1"])?;
    let tls_args: Vec<String> = files.args();
    let tls_args: Vec<&str> = genesis_args
        .iter()
        .copied()
        .chain(tls_args.iter().map(String::as_str))
        .collect();
    let http = GenesisProcess::start(binary, genesis_args)?;
    let https = GenesisProcess::start(binary, &tls_args)?;
    anyhow::ensure!(
        https.url.starts_with("https://"),
        "{} is not HTTPS",
        https.url
    );
    let trust = Trust::from_pem(ca.pem().as_bytes())?;
    // HTTP/1.1 on both, so that only TLS differs (ALPN would pick HTTP/2).
    let kept = client_builder(&trust)
        .http1_only()
        .pool_max_idle_per_host(1024)
        .build()?;
    let fresh = client_builder(&trust)
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut targets = Vec::new();
    for genesis in [&http, &https] {
        let peers = register_all(
            &kept,
            &genesis.url,
            sink_url,
            ("P", args.peers, false),
            args.register_concurrency,
            args.deltas,
        )
        .await?;
        let ids: Vec<PeerId> = peers.iter().map(|(id, _)| *id).collect();
        targets.push((genesis, plain_pings(&genesis.url, &ids, &args.schema_hash)));
    }
    println!(
        "registered {} peers on a plain genesis and on an HTTPS one",
        args.peers
    );
    let workers = args.concurrency;
    let mut ratios: Vec<(f64, f64)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let mut kept_rates = Vec::new();
        let mut fresh_p50 = Vec::new();
        for (client, what) in [(&kept, "kept-alive"), (&fresh, "new connection per ping")] {
            for (genesis, pings) in &targets {
                let scheme = if genesis.url.starts_with("https") {
                    "HTTPS"
                } else {
                    "HTTP"
                };
                let _ = post_workers(client, Arc::clone(pings), workers, WARM_UP, None).await;
                let ticks = genesis.cpu_ticks()?;
                let load =
                    post_workers(client, Arc::clone(pings), workers, args.duration, None).await;
                let ticks = genesis.cpu_ticks()?.saturating_sub(ticks);
                let cpu_us = ticks as f64 * 10_000.0
                    / (load.ops_per_s * args.duration.as_secs_f64()).max(1.0);
                println!(
                    "round {round}: {scheme:5} {what}, {workers} workers: {:.0} pings/s, genesis CPU {cpu_us:.1} µs/ping, {}",
                    load.ops_per_s,
                    summary(&load)
                );
                if what == "kept-alive" {
                    kept_rates.push(load.ops_per_s);
                } else {
                    fresh_p50.push((load.percentile_ms(50.0), cpu_us));
                }
            }
        }
        if let ([http, https], [(http_ms, http_cpu), (https_ms, https_cpu)]) =
            (&kept_rates[..], &fresh_p50[..])
        {
            ratios.push((https / http, https_ms - http_ms));
            println!(
                "round {round}: HTTPS / HTTP kept-alive pings/s {:.3}; a new connection costs {:.3} ms more at p50 and {:.0} µs more genesis CPU over HTTPS",
                https / http,
                https_ms - http_ms,
                https_cpu - http_cpu
            );
        }
    }
    let (rate, handshake) = (
        median(ratios.iter().map(|r| r.0).collect()),
        median(ratios.iter().map(|r| r.1).collect()),
    );
    if let (Some(rate), Some(handshake)) = (rate, handshake) {
        println!(
            "median of {} rounds: HTTPS / HTTP kept-alive pings/s {rate:.3}; TLS handshake +{handshake:.3} ms per new connection (p50)",
            ratios.len()
        );
    }
    Ok(())
}

/// The median of `values`, if any.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

fn summary(load: &Load) -> String {
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} errors",
        load.percentile_ms(50.0),
        load.percentile_ms(99.0),
        load.percentile_ms(100.0),
        load.errors
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}
