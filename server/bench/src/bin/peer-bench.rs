//! peer-bench: the figures of `plexus-peer`.
//!
//! 1. Latency of a Network Get over 1 and over 10 peers: one genesis and
//!    eleven real `plexus-peer` processes on loopback (the binaries next to
//!    this one), the median of many runs from one querying peer; and a
//!    Network Fetch asking the same 10 peers (no peer named), timed
//!    interleaved with the Get over 10.
//! 2. Local Get throughput over 100 000 objects, in-process on a `PeerDb`
//!    (loaded in one transaction, not by 100 000 HTTP calls).
//!
//! 3. Beside a peer that never answers (`--only hanging`): the Local p99 of
//!    a peer while 20 Network queries naming the hanging peer wait, and the
//!    querier's CPU per Network query (self plus one other peer).
//!
//! Run: `cargo build --release -p plexus-server --bins && target/release/peer-bench`
//! (`--only network` or `--only local` for one part; `--only tls`: the
//! Network Get over HTTP and over HTTPS in one run; `--peer-bin` to run
//! the process figures with another build's `plexus-peer`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use anyhow::bail;
use plexus_bench::certs::{ServerFiles, TestCa};
use plexus_bench::{Server, percentile, post_json as post, sibling, spawn_server as spawn};
use plexus_peer::GraphQLRequest;
use plexus_peer::{NewObject, PeerDb};
use plexus_server::outbound::{Trust, client_builder};
use plexus_server::tls::scheme;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Peers in the wide Network Get.
const PEERS: usize = 10;
/// Objects on each remote peer.
const OBJECTS_PER_PEER: usize = 100;
/// Timed runs of each Network Get.
const RUNS: usize = 200;
/// Rounds of the small-query figure.
const SMALL_ROUNDS: usize = 7;
/// Objects of the Local Get benchmark.
const LOCAL_OBJECTS: usize = 100_000;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A TCP proxy to `target` that holds every chunk sent to it for `delay`
/// (a one-way latency, as across a WAN); answers flow back at once.
async fn delay_proxy(target: SocketAddr, delay: Duration) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_server, mut to_server) = outbound.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = from_client.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        to_server.write_all(&buf[..n]).await?;
                    }
                    to_server.shutdown().await
                };
                let down = tokio::io::copy(&mut from_server, &mut to_client);
                let _ = tokio::join!(up, down);
            });
        }
    });
    Ok(addr)
}

/// The certificates of an HTTPS network: the CA file and a server's
/// `--tls-cert`/`--tls-key` (one certificate for every process on loopback).
struct TlsFiles {
    ca_file: std::path::PathBuf,
    server: ServerFiles,
    ca: TestCa,
}

impl TlsFiles {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let ca = TestCa::new("peer-bench CA")?;
        let ca_file = ca.write(&dir.join("ca.pem"))?;
        let (server, _) = ca.issue_files(dir, "server", &["127.0.0.1"])?;
        Ok(Self {
            ca_file,
            server,
            ca,
        })
    }

    /// The flags of a server of this network.
    fn args(&self) -> Vec<String> {
        let mut args = self.server.args();
        args.extend(["--ca-file".into(), self.ca_file.display().to_string()]);
        args
    }
}

async fn start_peer(
    bin: &Path,
    genesis: &str,
    name: &str,
    data: &Path,
    delay: Option<Duration>,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<Server> {
    start_peer_with(bin, genesis, name, data, delay, tls, &[]).await
}

#[allow(clippy::too_many_arguments)]
async fn start_peer_with(
    bin: &Path,
    genesis: &str,
    name: &str,
    data: &Path,
    delay: Option<Duration>,
    tls: Option<&TlsFiles>,
    extra: &[&str],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let public = match delay {
        Some(delay) => delay_proxy(SocketAddr::from(([127, 0, 0, 1], port)), delay).await?,
        None => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let mut command = Command::new(bin);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--public-url",
            &format!("{}://{public}", scheme(tls.is_some())),
        ])
        .args(["--genesis-url", genesis, "--peer-name", name])
        .args(["--ping-interval", "2s"])
        .args(tls.map(TlsFiles::args).unwrap_or_default())
        .args(extra)
        .arg("--data")
        .arg(data);
    spawn(command)
}

/// The `p`th percentile (0–100) of `samples`, by nearest rank.
fn percentile_of(samples: &[Duration], p: f64) -> Duration {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    Duration::from_secs_f64(percentile(&ms, p) / 1000.0)
}

async fn time_query(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    expect_peers: usize,
) -> anyhow::Result<Vec<Duration>> {
    let body = json!({ "query": query });
    for _ in 0..20 {
        post(client, url, body.clone()).await?;
    }
    time_query_runs(client, url, query, expect_peers, RUNS).await
}

/// `runs` timed runs of a Network Get whose answer must hold `expect_peers` peers.
async fn time_query_runs(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    expect_peers: usize,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let body = json!({ "query": query });
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let answer = post(client, url, body.clone()).await?;
        samples.push(start.elapsed());
        let got = answer["data"]["Network"]["Get"]
            .as_object()
            .map_or(0, |o| o.values().filter(|v| !v.is_null()).count());
        if answer.get("errors").is_some() || got != expect_peers {
            bail!("unexpected answer: {answer}");
        }
    }
    Ok(samples)
}

/// Times `get` (a Network Get over [`PEERS`] peers) and `fetch` (a
/// Network Fetch asking every peer) interleaved, one of each per run, so
/// both see the same machine: their samples.
async fn time_get_and_fetch(
    client: &reqwest::Client,
    url: &str,
    get: &str,
    fetch: &str,
    expect_items: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let fetch_body = json!({ "query": fetch });
    for _ in 0..20 {
        post(client, url, fetch_body.clone()).await?;
    }
    let mut gets = Vec::with_capacity(RUNS);
    let mut fetches = Vec::with_capacity(RUNS);
    for _ in 0..RUNS / 20 {
        gets.extend(time_query_runs(client, url, get, PEERS, 20).await?);
        for _ in 0..20 {
            let start = Instant::now();
            let answer = post(client, url, fetch_body.clone()).await?;
            fetches.push(start.elapsed());
            let got = answer["data"]["Network"]["Fetch"]["Things"]
                .as_array()
                .map_or(0, Vec::len);
            if answer.get("errors").is_some() || got != expect_items {
                bail!("unexpected answer: {answer}");
            }
        }
    }
    Ok((gets, fetches))
}

/// Runs the Network Get benchmark; with `delay`, every remote peer sits
/// behind a [`delay_proxy`] of that one-way latency; with `tls`, genesis
/// and every peer serve HTTPS (certificates of a test CA). The medians
/// over 1 and 10 peers.
async fn network_bench(
    delay: Option<Duration>,
    tls: bool,
    peer_bin: &Path,
) -> anyhow::Result<(f64, f64)> {
    let genesis_bin = sibling("plexus-genesis")?;
    let dir = tempfile::tempdir()?;
    let tls = tls.then(|| TlsFiles::new(dir.path())).transpose()?;
    let tls = tls.as_ref();
    let mut genesis_cmd = Command::new(&genesis_bin);
    genesis_cmd.args(["--listen", "127.0.0.1:0", "--peer-timeout", "30s"]);
    genesis_cmd.args(tls.map(TlsFiles::args).unwrap_or_default());
    let genesis = spawn(genesis_cmd)?;
    let trust = match tls {
        Some(tls) => Trust::from_pem(tls.ca.pem().as_bytes())?,
        None => Trust::default(),
    };
    let client = client_builder(&trust).build()?;

    let querier = start_peer(
        peer_bin,
        &genesis.url,
        "Querier",
        &dir.path().join("q"),
        None,
        tls,
    )
    .await?;
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let name = format!("Peer{i}");
        let peer = start_peer(
            peer_bin,
            &genesis.url,
            &name,
            &dir.path().join(&name),
            delay,
            tls,
        )
        .await?;
        post(
            &client,
            &format!("{}/v1/schema/things", peer.url),
            json!({"class": "City", "properties": [
                {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}),
        )
        .await?;
        for n in 0..OBJECTS_PER_PEER {
            post(
                &client,
                &format!("{}/v1/things", peer.url),
                json!({"class": "City", "schema": {"name": format!("city{n}"), "population": n}}),
            )
            .await?;
        }
        peers.push((name, peer));
    }
    // Wait until the querier has every schema.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (cached, view) = cached_schemas(&client, &querier).await?;
        if cached == PEERS {
            break;
        }
        if Instant::now() > deadline {
            bail!("the querier cached only {cached} schemas: {view}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let part =
        |name: &str| format!("{name} {{ Things {{ City(limit: 10) {{ name population }} }} }}");
    let one = format!("{{ Network {{ Get {{ {} }} }} }}", part("Peer0"));
    let all: Vec<String> = peers.iter().map(|(name, _)| part(name)).collect();
    let ten = format!("{{ Network {{ Get {{ {} }} }} }}", all.join(" "));
    let graphql = format!("{}/v1/graphql", querier.url);
    let local = format!(
        "{}/v1/graphql",
        remote_url(&peers[0].0, &peers[0].1, &querier, &client).await?
    );
    let local_q = "{ Local { Get { Things { City(limit: 10) { name population } } } } }";

    // Direct Local Get on one peer, for reference: the cost of one hop.
    let body = json!({ "query": local_q });
    let mut direct = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        post(&client, &local, body.clone()).await?;
        direct.push(start.elapsed());
    }
    let s1 = time_query(&client, &graphql, &one, 1).await?;
    // Fetch asks every peer whose schema has a class near City: the ten
    // (the querier holds none); 10 objects of each.
    let fetch = r#"{ Network { Fetch { Things(where: {class: {name: "City", certainty: 0.9}, first: 10}) { className beacon certainty } } } }"#;
    for _ in 0..20 {
        post(&client, &graphql, json!({ "query": &ten })).await?;
    }
    let (s10, f10) = time_get_and_fetch(&client, &graphql, &ten, fetch, PEERS * 10).await?;
    let (m1, m10) = (percentile_of(&s1, 50.0), percentile_of(&s10, 50.0));
    let link = match delay {
        Some(d) => format!("each remote peer behind a {} ms one-way delay", ms(d)),
        None => "plain loopback".to_owned(),
    };
    let link = format!("{link}, {}", if tls.is_some() { "HTTPS" } else { "HTTP" });
    println!(
        "Network Get, {link}, {RUNS} runs each (10 objects per peer, {OBJECTS_PER_PEER} stored):"
    );
    println!(
        "  direct Local Get on one peer:  median {:>8.3} ms",
        ms(percentile_of(&direct, 50.0))
    );
    println!(
        "  Network Get over  1 peer:      median {:>8.3} ms  p90 {:>8.3} ms",
        ms(m1),
        ms(percentile_of(&s1, 90.0))
    );
    println!(
        "  Network Get over {PEERS} peers:      median {:>8.3} ms  p90 {:>8.3} ms",
        ms(m10),
        ms(percentile_of(&s10, 90.0))
    );
    println!(
        "  ratio 10 / 1: {:.2}",
        m10.as_secs_f64() / m1.as_secs_f64()
    );
    let mf = percentile_of(&f10, 50.0);
    println!(
        "  Network Fetch over {PEERS} peers:    median {:>8.3} ms  p90 {:>8.3} ms  (interleaved with the Get over {PEERS})",
        ms(mf),
        ms(percentile_of(&f10, 90.0))
    );
    println!(
        "  ratio Fetch / Get over {PEERS}: {:.2}",
        mf.as_secs_f64() / m10.as_secs_f64()
    );
    drop(peers);
    drop(querier);
    drop(genesis);
    Ok((ms(m1), ms(m10)))
}

/// The querier's `GET /v1/network/peers`.
async fn network_view(client: &reqwest::Client, querier: &Server) -> anyhow::Result<Value> {
    let url = format!("{}/v1/network/peers", querier.url);
    Ok(client.get(url).send().await?.json().await?)
}

/// How many schemas of other peers `peer` has cached, and its view.
async fn cached_schemas(client: &reqwest::Client, peer: &Server) -> anyhow::Result<(usize, Value)> {
    let view = network_view(client, peer).await?;
    let cached = view["peers"].as_array().map_or(0, |p| {
        p.iter().filter(|p| p["schemaCached"] == true).count()
    });
    Ok((cached, view))
}

/// The URI other peers use for the peer `name` at `peer` (its proxy, when it
/// has one), as the querier sees it.
async fn remote_url(
    name: &str,
    peer: &Server,
    querier: &Server,
    client: &reqwest::Client,
) -> anyhow::Result<String> {
    let view = network_view(client, querier).await?;
    Ok(view["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .and_then(|p| p["uri"].as_str())
        .map_or_else(|| peer.url.clone(), str::to_owned))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Local figures; with `small_only`, only the small queries.
async fn local_bench(small_only: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = {
        let path = dir.path().join("db");
        Arc::new(tokio::task::spawn_blocking(move || PeerDb::open(&path)).await??)
    };
    let class = serde_json::from_value(json!({"class": "City", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}))?;
    db.add_class(plexus_core::schema::Kind::Things, class)
        .await?;
    let start = Instant::now();
    for chunk in 0..(LOCAL_OBJECTS / 10_000) {
        let batch = (0..10_000)
            .map(|i| {
                let n = chunk * 10_000 + i;
                let schema = json!({"name": format!("city{n}"), "population": n});
                NewObject {
                    class: "City".into(),
                    schema: schema.as_object().cloned().unwrap_or_default(),
                    id: None,
                }
            })
            .collect();
        db.import(plexus_core::schema::Kind::Things, batch).await?;
    }
    let load = start.elapsed();
    println!(
        "Local Get over {LOCAL_OBJECTS} objects (in-process PeerDb; loaded in {:.2} s, {:.0} objects/s, 10 transactions):",
        load.as_secs_f64(),
        LOCAL_OBJECTS as f64 / load.as_secs_f64()
    );

    println!("  with the async-graphql engine (PeerDb::graphql):");
    if !small_only {
        local_figures(&db).await?;
    }
    // Small queries: the median of several rounds (the machine's load moves).
    let mut rates = Vec::new();
    for _ in 0..SMALL_ROUNDS {
        rates.push(small_queries(&db).await?);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "  Get with limit 10:             {:>9.0} queries/s (4 concurrent, in-process; median of {SMALL_ROUNDS} rounds of 1 s)",
        percentile(&rates, 50.0)
    );
    drop(db);
    Ok(())
}

/// The figures of plexus-peer: Network Get latency and Local Get throughput.
#[derive(clap::Parser, Debug)]
#[command(name = "peer-bench")]
struct Args {
    /// Which figures to measure.
    #[arg(long, value_enum, default_value = "all")]
    only: Part,
    /// The `plexus-peer` of the process figures (default: the one beside this binary).
    #[arg(long)]
    peer_bin: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Everything below.
    All,
    /// Network Get over 1 and 10 peers, on plain loopback and behind a 10 ms delay.
    Network,
    /// Local Get over 100 000 objects, in-process.
    Local,
    /// Only the small Local queries (`City(limit: 10)`), e.g. to profile them.
    Small,
    /// Network Get over HTTP and over HTTPS (genesis and every peer with
    /// certificates of a test CA, `--ca-file`), in turn, plain loopback.
    Tls,
    /// The Local p99 beside 20 Network queries waiting on a hanging peer,
    /// and the CPU of one Network query.
    Hanging,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    let result = async {
        let peer_bin = match args.peer_bin {
            Some(bin) => bin,
            None => sibling("plexus-peer")?,
        };
        if matches!(args.only, Part::All | Part::Network) {
            network_bench(None, false, &peer_bin).await?;
            network_bench(Some(Duration::from_millis(10)), false, &peer_bin).await?;
        }
        if args.only == Part::Tls {
            let http = network_bench(None, false, &peer_bin).await?;
            let https = network_bench(None, true, &peer_bin).await?;
            println!(
                "HTTPS / HTTP, median Network Get: over 1 peer {:.2}, over {PEERS} peers {:.2}",
                https.0 / http.0,
                https.1 / http.1
            );
            return Ok(());
        }
        if matches!(args.only, Part::All | Part::Hanging) {
            hanging_bench(&peer_bin).await?;
        }
        if matches!(args.only, Part::All | Part::Local | Part::Small) {
            local_bench(args.only == Part::Small).await?;
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The Local figures over `db`: a full scan and a page of 10 000.
async fn local_figures(db: &Arc<PeerDb>) -> anyhow::Result<()> {
    let run = |query: String| {
        let db = db.clone();
        async move {
            let body = db.graphql(GraphQLRequest::new(query), None).await.body;
            if let Some(errors) = body.get("errors") {
                bail!("errors: {errors}");
            }
            Ok(body)
        }
    };
    // A filter that matches one object and that no index serves (a `Like`
    // without a literal prefix): every object is read and tested.
    let scan = "{ Local { Get { Things { City(limit: 10, where: {operator: Like, path: [\"name\"], valueString: \"*y99999\"}) { name } } } } }".to_owned();
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let answer = run(scan.clone()).await?;
        samples.push(start.elapsed());
        let found = answer
            .pointer("/data/Local/Get/Things/City")
            .and_then(Value::as_array)
            .map(Vec::len);
        if found != Some(1) {
            bail!("the scan found {found:?} objects");
        }
    }
    let m = percentile_of(&samples, 50.0);
    println!(
        "  full scan with a where filter: median {:>8.1} ms  = {:>9.0} objects scanned/s",
        ms(m),
        LOCAL_OBJECTS as f64 / m.as_secs_f64()
    );
    // Pages of 10 000 objects: objects answered per second.
    let page = "{ Local { Get { Things { City(limit: 10000) { name population } } } } }".to_owned();
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        run(page.clone()).await?;
        samples.push(start.elapsed());
    }
    let m = percentile_of(&samples, 50.0);
    println!(
        "  Get of 10 000 objects:         median {:>8.1} ms  = {:>9.0} objects answered/s",
        ms(m),
        10_000.0 / m.as_secs_f64()
    );
    Ok(())
}

/// Small Local queries (limit 10), 4 at a time, for 1 s: queries per second.
async fn small_queries(db: &Arc<PeerDb>) -> anyhow::Result<f64> {
    let small = "{ Local { Get { Things { City(limit: 10) { name population } } } } }";
    let run = || {
        let db = db.clone();
        async move {
            let body = db.graphql(GraphQLRequest::new(small), None).await.body;
            match body
                .pointer("/data/Local/Get/Things/City")
                .and_then(Value::as_array)
            {
                Some(cities) if cities.len() == 10 => anyhow::Ok(()),
                _ => bail!("unexpected answer: {body}"),
            }
        }
    };
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for result in futures::future::join_all((0..4).map(|_| run())).await {
            result?;
            done += 1;
        }
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// The CPU time (user + system) process `pid` has used so far.
fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The kernel's clock ticks per second (USER_HZ) are 100 on Linux.
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 10))
}

/// The Local p99 of a peer (`--graphql-max-running 2`) while 20 Network
/// queries naming a hanging peer wait, and its CPU per Network query.
async fn hanging_bench(peer_bin: &Path) -> anyhow::Result<()> {
    let genesis_bin = sibling("plexus-genesis")?;
    let dir = tempfile::tempdir()?;
    let mut genesis_cmd = Command::new(&genesis_bin);
    genesis_cmd.args(["--listen", "127.0.0.1:0", "--peer-timeout", "60s"]);
    let genesis = spawn(genesis_cmd)?;
    let client = reqwest::Client::new();
    let slots = ["--graphql-max-running", "2"];
    let a = start_peer_with(
        peer_bin,
        &genesis.url,
        "PeerA",
        &dir.path().join("a"),
        None,
        None,
        &slots,
    )
    .await?;
    let b = start_peer(
        peer_bin,
        &genesis.url,
        "PeerB",
        &dir.path().join("b"),
        None,
        None,
    )
    .await?;
    for (peer, city) in [(&a, "Delft"), (&b, "Utrecht")] {
        post(
            &client,
            &format!("{}/v1/schema/things", peer.url),
            json!({"class": "City", "properties": [
                {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}),
        )
        .await?;
        post(
            &client,
            &format!("{}/v1/things", peer.url),
            json!({"class": "City", "schema": {"name": city, "population": 1}}),
        )
        .await?;
    }
    plexus_bench::hanging_peer(&client, &genesis.url, "Hang").await?;
    let graphql = format!("{}/v1/graphql", a.url);
    let both = "{ Network { Get { PeerA { Things { City { name } } } PeerB { Things { City { name } } } } } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (cached, view) = cached_schemas(&client, &a).await?;
        let answer = post(&client, &graphql, json!({ "query": both })).await?;
        if cached == 2 && answer.get("errors").is_none() {
            break;
        }
        if Instant::now() > deadline {
            bail!("PeerA cannot ask PeerB and Hang: {view} {answer}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // CPU per Network query: PeerA's own part plus PeerB, one at a time.
    let pid = a.child.id();
    let runs = 500;
    let before = cpu_of(pid)?;
    let start = Instant::now();
    for _ in 0..runs {
        let answer = post(&client, &graphql, json!({ "query": both })).await?;
        if answer.get("errors").is_some() {
            bail!("unexpected answer: {answer}");
        }
    }
    let wall = start.elapsed();
    let cpu = cpu_of(pid)?.saturating_sub(before);
    println!("Beside a hanging peer (PeerA with --graphql-max-running 2):");
    println!(
        "  Network Get of self + PeerB, {runs} in a row: {:.3} ms each, PeerA's CPU {:.3} ms per query",
        ms(wall) / f64::from(runs),
        ms(cpu) / f64::from(runs)
    );

    // 20 Network queries naming Hang, in flight; Local queries meanwhile.
    let hang = "{ Network { Get { Hang { Things { City { name } } } PeerB { Things { City { name } } } } } }";
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (client, graphql) = (client.clone(), graphql.clone());
            tokio::spawn(async move { post(&client, &graphql, json!({ "query": hang })).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let local = json!({"query": "{ Local { Get { Things { City { name } } } } }"});
    let (mut samples, mut refused) = (Vec::new(), 0);
    let measuring = Instant::now();
    while samples.len() < 200 && measuring.elapsed() < Duration::from_secs(4) {
        let start = Instant::now();
        let answer = post(&client, &graphql, local.clone()).await?;
        samples.push(start.elapsed());
        if answer.get("errors").is_some() {
            refused += 1;
        }
    }
    let still = waiting.iter().filter(|w| !w.is_finished()).count();
    println!(
        "  Local Get while 20 Network queries wait on Hang ({still} still waiting at the end): {} queries, {refused} refused, median {:.3} ms, p99 {:.3} ms",
        samples.len(),
        ms(percentile_of(&samples, 50.0)),
        ms(percentile_of(&samples, 99.0))
    );
    for w in waiting {
        w.abort();
    }
    drop((a, b, genesis));
    Ok(())
}
