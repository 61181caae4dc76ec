//! db-bench: a peer as a database, beside SQLite.
//!
//! 1. Loads `--objects` `City` objects (`name` string, `population` int,
//!    `country` string) into a real `plexus-peer` process (the binary next to
//!    this one) through `POST /v1/batching/things`: objects/s.
//! 2. Loads the same rows into SQLite (in-process, a file with an index on
//!    each column) as the anchor.
//! 3. In one run, the median HTTP latency of four filtered Local Gets and of
//!    `GET /v1/things/{id}`, interleaved, each answer checked equal to
//!    SQLite's, with SQLite's in-process median beside it.
//!
//! Every query has the same number of matches at every scale (1, 4, about
//! 32 and about 20), so `--objects 1000000` shows how each figure grows with
//! the data alone.
//!
//! Run: `cargo build --release -p plexus-peer -p plexus-bench --bins &&
//! target/release/db-bench` (`--objects 1000000` to scale).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use futures::StreamExt;
use plexus_bench::{Server, percentile, sibling, spawn_server};
use serde_json::{Value, json};
use uuid::Uuid;

/// Countries the rows are spread over.
const COUNTRIES: usize = 200;
/// Rows that share one population value.
const SHARE: usize = 4;
/// Distinct population values in the range query (about 32 matches).
const RANGE_VALUES: i64 = 8;
/// Population values above the threshold of the country query (about 20 matches).
const TOP_VALUES: usize = 1_000;

/// db-bench's options.
#[derive(Debug, Parser)]
#[command(
    name = "db-bench",
    about = "A peer as a database: batch import and indexed filters over HTTP, beside SQLite"
)]
struct Args {
    /// City objects to load.
    #[arg(long, env = "PLEXUS_BENCH_OBJECTS", default_value_t = 100_000)]
    objects: usize,
    /// Objects per batch request.
    #[arg(long, env = "PLEXUS_BENCH_BATCH", default_value_t = 1_000)]
    batch: usize,
    /// Batch requests in flight.
    #[arg(long, env = "PLEXUS_BENCH_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Timed runs of each query.
    #[arg(long, env = "PLEXUS_BENCH_RUNS", default_value_t = 300)]
    runs: usize,
}

/// One row, the same in the peer and in SQLite.
struct Row {
    id: Uuid,
    name: String,
    population: i64,
    country: String,
}

fn row(i: usize, n: usize) -> Row {
    let distinct = (n / SHARE).max(1);
    Row {
        id: Uuid::from_u128(i as u128 + 1),
        name: format!("City {i:07}"),
        population: 1_000 + ((i * 7_919) % distinct) as i64 * 10,
        country: format!("Country {:03}", i % COUNTRIES),
    }
}

/// The population above which about [`TOP_VALUES`] values lie.
fn threshold(n: usize) -> i64 {
    let distinct = (n / SHARE).max(1);
    1_000 + distinct.saturating_sub(TOP_VALUES) as i64 * 10
}

fn start_peer(data: &std::path::Path, batch: usize) -> anyhow::Result<Server> {
    let mut command = Command::new(sibling("plexus-peer")?);
    command
        .args(["--listen", "127.0.0.1:0", "--batch-max-objects"])
        .arg(batch.to_string())
        .arg("--data")
        .arg(data);
    spawn_server(command)
}

/// The four filters, for the rows around row `k`: (label, GraphQL `where`, SQL).
fn queries(k: usize, n: usize) -> Vec<(&'static str, String, String)> {
    let r = row(k, n);
    let (p, name, country) = (r.population, r.name, r.country);
    let top = threshold(n);
    let hi = p + RANGE_VALUES * 10;
    vec![
        (
            "name Equal",
            format!(r#"{{operator: Equal, path: ["name"], valueString: "{name}"}}"#),
            format!("SELECT name FROM city WHERE name = '{name}'"),
        ),
        (
            "population Equal",
            format!(r#"{{operator: Equal, path: ["population"], valueInt: {p}}}"#),
            format!("SELECT name FROM city WHERE population = {p}"),
        ),
        (
            "population range (And)",
            format!(
                r#"{{operator: And, operands: [{{operator: GreaterThanEqual, path: ["population"], valueInt: {p}}}, {{operator: LessThan, path: ["population"], valueInt: {hi}}}]}}"#
            ),
            format!("SELECT name FROM city WHERE population >= {p} AND population < {hi}"),
        ),
        (
            "country Equal And population GreaterThan",
            format!(
                r#"{{operator: And, operands: [{{operator: Equal, path: ["country"], valueString: "{country}"}}, {{operator: GreaterThan, path: ["population"], valueInt: {top}}}]}}"#
            ),
            format!("SELECT name FROM city WHERE country = '{country}' AND population > {top}"),
        ),
    ]
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let response = client.post(url).json(body).send().await?;
    let status = response.status();
    let value: Value = response.json().await?;
    ensure!(status.is_success(), "{url}: {status} {value}");
    Ok(value)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.objects;
    ensure!(
        n >= SHARE * TOP_VALUES,
        "--objects must be at least {}",
        SHARE * TOP_VALUES
    );
    let dir = tempfile::tempdir()?;
    let peer = start_peer(&dir.path().join("peer"), args.batch)?;
    let client = plexus_server::outbound::client_builder(&Default::default()).build()?;
    post(
        &client,
        &format!("{}/v1/schema/things", peer.url),
        &json!({"class": "City", "properties": [
            {"name": "name", "dataType": ["string"]},
            {"name": "population", "dataType": ["int"]},
            {"name": "country", "dataType": ["string"]}]}),
    )
    .await?;

    // 1. The batch import.
    let batch_url = format!("{}/v1/batching/things", peer.url);
    let bodies: Vec<Value> = (0..n)
        .step_by(args.batch)
        .map(|start| {
            let things: Vec<Value> = (start..(start + args.batch).min(n))
                .map(|i| {
                    let r = row(i, n);
                    json!({"class": "City", "id": r.id, "schema": {
                        "name": r.name, "population": r.population, "country": r.country}})
                })
                .collect();
            json!({ "things": things })
        })
        .collect();
    let started = Instant::now();
    let answers: Vec<anyhow::Result<Value>> = futures::stream::iter(bodies.iter())
        .map(|body| post(&client, &batch_url, body))
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let load = started.elapsed();
    let mut stored = 0;
    for answer in answers {
        for result in answer?.as_array().context("a list")? {
            ensure!(result["result"]["status"] == "SUCCESS", "{result}");
            stored += 1;
        }
    }
    ensure!(stored == n, "stored {stored} of {n}");
    let peer_rate = n as f64 / load.as_secs_f64();

    // 2. SQLite, the same rows and an index on each column.
    let sqlite_path: PathBuf = dir.path().join("city.sqlite");
    let mut sqlite = rusqlite::Connection::open(&sqlite_path)?;
    sqlite.execute_batch(
        "CREATE TABLE city (id TEXT PRIMARY KEY, name TEXT, population INTEGER, country TEXT);
         CREATE INDEX city_name ON city(name);
         CREATE INDEX city_population ON city(population);
         CREATE INDEX city_country ON city(country);",
    )?;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(args.batch) {
        let tx = sqlite.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO city VALUES (?1, ?2, ?3, ?4)")?;
            for &i in chunk {
                let r = row(i, n);
                insert.execute(rusqlite::params![
                    r.id.to_string(),
                    r.name,
                    r.population,
                    r.country
                ])?;
            }
        }
        tx.commit()?;
    }
    let sqlite_rate = n as f64 / started.elapsed().as_secs_f64();

    // 3. The queries, interleaved with GET by id, each answer checked.
    let graphql_url = format!("{}/v1/graphql", peer.url);
    let labels: Vec<&str> = queries(0, n).iter().map(|q| q.0).collect();
    let mut http: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    let mut lite: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    let mut matches: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    let mut by_id = Vec::new();
    for run in 0..args.runs {
        let k = (run * 104_729 + 17) % n;
        let id = row(k, n).id;
        // The five requests in a rotating order, so none is always the
        // first after a pause.
        for step in 0..5 {
            let which = (run + step) % 5;
            if which == 4 {
                let started = Instant::now();
                let got = client
                    .get(format!("{}/v1/things/{id}", peer.url))
                    .send()
                    .await?
                    .json::<Value>()
                    .await?;
                by_id.push(ms(started.elapsed()));
                ensure!(got["schema"]["name"] == row(k, n).name, "{got}");
                continue;
            }
            let (_, filter, sql) = &queries(k, n)[which];
            let q = which;
            let body = json!({"query": format!(
                "{{ Local {{ Get {{ Things {{ City(limit: 10000, where: {filter}) {{ name }} }} }} }} }}")});
            let started = Instant::now();
            let answer = post(&client, &graphql_url, &body).await?;
            http[q].push(ms(started.elapsed()));
            let mut names: Vec<String> = answer["data"]["Local"]["Get"]["Things"]["City"]
                .as_array()
                .with_context(|| format!("no list in {answer}"))?
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect();
            names.sort();
            let started = Instant::now();
            let mut statement = sqlite.prepare_cached(sql)?;
            let mut expected: Vec<String> = statement
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            lite[q].push(ms(started.elapsed()));
            expected.sort();
            ensure!(
                names == expected,
                "{}: the peer answered {names:?}, SQLite {expected:?}",
                labels[q]
            );
            matches[q].push(names.len() as f64);
        }
    }

    let get_ms = median(by_id);
    println!(
        "db-bench: {n} City objects, batches of {}, {} in flight, {} runs",
        args.batch, args.concurrency, args.runs
    );
    println!(
        "load through POST /v1/batching/things: {peer_rate:.0} objects/s (SQLite in-process, same indexes: {sqlite_rate:.0} rows/s)"
    );
    println!("GET /v1/things/{{id}}: median {get_ms:.3} ms");
    println!(
        "{:<42} {:>9} {:>12} {:>9} {:>14}",
        "query (answers equal to SQLite's)", "matches", "HTTP median", "x GET", "SQLite median"
    );
    for (q, label) in labels.iter().enumerate() {
        let m = median(http[q].clone());
        println!(
            "{label:<42} {:>9.0} {:>9.3} ms {:>8.2}x {:>11.3} ms",
            median(matches[q].clone()),
            m,
            m / get_ms,
            median(lite[q].clone()),
        );
    }
    drop(peer);
    Ok(())
}
