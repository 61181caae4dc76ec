//! relay-bench: the figures of `plexus-genesis --relay` (browser tabs as peers).
//!
//! 1. Join to listed: a tab (the Rust client of [`plexus_bench::tab`])
//!    opens its socket, proves its key, registers (genesis probes it over
//!    the socket), pings, and polls `GET /peers` until it is listed; the
//!    median and the largest of `--joins` joins under fresh names.
//! 2. A Network Get answered by a tab vs by a native peer, in the same run:
//!    one querying `plexus-peer` process asks `{ Network { Get { X { Things
//!    { Note { text } } } } } }` of a native `plexus-peer` process and of a
//!    tab holding the same objects, interleaved; the medians and their ratio.
//!    The tab answers with a peer router in this process (not the browser's
//!    wasm engine): the figure is the cost of the relay hop.
//!
//! Run: `cargo build --release -p plexus-genesis -p plexus-peer -p plexus-bench --bins && target/release/relay-bench`

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use plexus_bench::tab::{join_until_listed, ping};
use plexus_bench::{GenesisProcess, Server, percentile, post_json as post, spawn_server};
use plexus_core::auth::Identity;
use plexus_peer::{PeerDb, PeerState, router};
use serde_json::json;

/// The figures of genesis's relay for browser tabs.
#[derive(Parser, Debug)]
struct Args {
    /// Joins timed.
    #[arg(long, env = "PLEXUS_JOINS", default_value_t = 30)]
    joins: usize,
    /// Timed Network Gets of each kind.
    #[arg(long, env = "PLEXUS_RUNS", default_value_t = 300)]
    runs: usize,
    /// Objects each answering peer holds.
    #[arg(long, env = "PLEXUS_OBJECTS", default_value_t = 20)]
    objects: usize,
}

fn start_peer(bin: &Path, genesis: &str, name: &str, data: &Path) -> anyhow::Result<Server> {
    let mut command = Command::new(bin);
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(["--genesis-url", genesis, "--peer-name", name])
        .args(["--ping-interval", "2s"])
        .arg("--data")
        .arg(data);
    spawn_server(command)
}

/// Defines `Note` and adds `objects` notes through the REST API at `url`.
async fn fill(client: &reqwest::Client, url: &str, objects: usize) -> anyhow::Result<()> {
    let class = json!({"class": "Note", "properties": [{"name": "text", "dataType": ["string"]}]});
    post(client, &format!("{url}/v1/schema/things"), class).await?;
    for i in 0..objects {
        let note = json!({"class": "Note", "schema": {"text": format!("note {i}")}});
        post(client, &format!("{url}/v1/things"), note).await?;
    }
    Ok(())
}

fn median_ms(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    percentile(samples, 50.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let exe = std::env::current_exe()?;
    let genesis_bin = exe.with_file_name("plexus-genesis");
    let peer_bin = exe.with_file_name("plexus-peer");
    let genesis = GenesisProcess::start(&genesis_bin, &["--relay"])?;
    let client = plexus_server::outbound::client_builder(&Default::default()).build()?;
    let dir = tempfile::tempdir()?;

    // The tab's data: a peer database behind a router in this process.
    let tab_url = {
        let db = Arc::new(PeerDb::open(&dir.path().join("tab"))?);
        let app = router(PeerState::standalone(db.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        fill(&client, &url, args.objects).await?;
        (db, url)
    };
    let (db, _) = &tab_url;
    let hash = db.schema_hash();

    // 1. Join to listed.
    let mut joins = Vec::with_capacity(args.joins);
    for i in 0..args.joins {
        let identity = plexus_server::keys::random_identity();
        let app = router(PeerState::standalone(db.clone()));
        let (tab, took) = join_until_listed(
            &client,
            &genesis.url,
            &format!("Join{i}"),
            &identity,
            app,
            &hash,
        )
        .await?;
        joins.push(took.as_secs_f64() * 1000.0);
        drop(tab);
    }
    let join_median = median_ms(&mut joins);
    let join_max = joins.last().copied().unwrap_or(0.0);

    // 2. Network Get: tab vs native peer, from one querying peer.
    let querier = start_peer(&peer_bin, &genesis.url, "Querier", &dir.path().join("q"))?;
    let native = start_peer(&peer_bin, &genesis.url, "Native", &dir.path().join("n"))?;
    fill(&client, &native.url, args.objects).await?;
    let identity = Identity::from_seed([42; 32]);
    let app = router(PeerState::standalone(db.clone()));
    let (tab, _) = join_until_listed(&client, &genesis.url, "Tab", &identity, app, &hash).await?;
    let _keep = ping(&client, &genesis.url, tab.id, &tab.session, &hash).await?;
    let query = |name: &str| json!({ "query": format!("{{ Network {{ Get {{ {name} {{ Things {{ Note {{ text }} }} }} }} }} }}") });
    let graphql = format!("{}/v1/graphql", querier.url);
    // Wait until the querier has both schemas, then warm up.
    let started = Instant::now();
    loop {
        let a = post(&client, &graphql, query("Tab")).await?;
        let b = post(&client, &graphql, query("Native")).await?;
        if a.get("errors").is_none() && b.get("errors").is_none() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the querier cannot reach both: {a} {b}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        post(&client, &graphql, query("Tab")).await?;
        post(&client, &graphql, query("Native")).await?;
    }
    let (mut by_tab, mut by_native) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        for (name, samples) in [("Tab", &mut by_tab), ("Native", &mut by_native)] {
            let start = Instant::now();
            let answer = post(&client, &graphql, query(name)).await?;
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
            let notes = answer["data"]["Network"]["Get"][name]["Things"]["Note"]
                .as_array()
                .map_or(0, Vec::len);
            if answer.get("errors").is_some() || notes != args.objects {
                bail!("unexpected answer from {name}: {answer}");
            }
        }
    }
    let tab_median = median_ms(&mut by_tab);
    let native_median = median_ms(&mut by_native);
    println!(
        "join to listed ({} joins): median {join_median:.2} ms, max {join_max:.2} ms",
        args.joins
    );
    println!(
        "Network Get of {} notes ({} runs each): answered by a tab {tab_median:.2} ms, by a native peer {native_median:.2} ms (median), ratio {:.2}x",
        args.objects,
        args.runs,
        tab_median / native_median
    );
    drop(tab);
    genesis.stop()?;
    Ok(())
}
