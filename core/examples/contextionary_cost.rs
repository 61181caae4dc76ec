//! What the contextionary costs: the default file's size, the time to parse
//! it (every byte checked, and its SHA-256), the memory it holds once parsed,
//! a schema search per class, and a Fetch plan over a schema of many classes.
//! No I/O but reading the file.
//!
//! `cargo run --release -p plexus-core --example contextionary_cost`
//! (`CLASSES=1000` for a larger schema).

use std::hint::black_box;
use std::time::Instant;

use plexus_core::contextionary::Contextionary;
use plexus_core::fetch::{self, FetchWhere};
use plexus_core::schema::{Kind, Schema};
use serde_json::json;

/// Resident memory of this process, in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/contextionary/glove-6b-50d-50k.ctx"
    );
    let bytes = std::fs::read(path).expect("the committed file");
    let size = bytes.len();
    let before = rss_kib();
    let runs = 20;
    let start = Instant::now();
    let mut parsed = None;
    for _ in 0..runs {
        parsed = Some(Contextionary::parse(black_box(bytes.clone())).expect("valid"));
    }
    let parse = start.elapsed() / runs;
    let c = parsed.expect("parsed");
    drop(bytes);
    let held = rss_kib().saturating_sub(before);
    println!(
        "file {size} bytes ({} words x {} dims); parse {:.1} ms; held once parsed ~{held} KiB RSS",
        c.len(),
        c.dims(),
        parse.as_secs_f64() * 1e3
    );

    let classes: usize = std::env::var("CLASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Class names of one or two frequent words: `City`, `CityTown`, ...
    let words: Vec<String> = (0..c.len())
        .step_by(c.len() / 200)
        .map(|i| c.word(i).to_owned())
        .collect();
    let mut list = Vec::new();
    for i in 0..classes {
        let mut name = words[i % words.len()].clone();
        if i >= words.len() {
            name.push_str(&words[(i / words.len()) % words.len()]);
        }
        name[..1].make_ascii_uppercase();
        list.push(json!({"class": format!("{name}{i}"), "properties": [
            {"name": "name", "dataType": ["string"]}, {"name": "size", "dataType": ["int"]}]}));
    }
    let schema: Schema =
        serde_json::from_value(json!({"things": {"classes": list}})).expect("schema");
    let query = c.vector("City", &[]).expect("known");
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(c.classes(black_box(&schema), Kind::Things, &query, 0.6));
    }
    let per_class = start.elapsed().as_secs_f64() * 1e6 / (rounds * classes) as f64;
    let w = FetchWhere::parse(&json!({"class": {"name": "City", "certainty": 0.6},
        "properties": [{"name": "name", "certainty": 0.9, "operator": "Equal", "valueString": "Amsterdam"}]}))
    .expect("where");
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(fetch::plan(&c, &schema, Kind::Things, &w).expect("plan"));
    }
    let plan = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let start = Instant::now();
    let near = c.nearest_words(&c.vector("amsterdam", &[]).expect("known"), 0.75, 10);
    let nearest = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "schema search: {per_class:.2} us per class ({classes} classes); Fetch plan {plan:.0} us; Fuzzy's nearest words {nearest:.1} ms ({} found)",
        near.len()
    );
}
