//! The tab peer's budget, measured in headless Chromium (the browser's own
//! engine, socket and event loop), not by a Rust tab client as
//! `relay-bench` does. `scripts/tab-bench.sh` starts a release
//! `plexus-genesis --relay`, a native peer `Querier` that sends the Network
//! queries, and a native peer `Holder` with the same objects as the tab, and
//! runs this file in release with `--include-ignored`; it passes at compile
//! time:
//!
//! - `PLEXUS_BENCH_GENESIS`: the genesis URL;
//! - `PLEXUS_BENCH_QUERIER`: the URL of `Querier`;
//! - `PLEXUS_BENCH_OBJECTS`: how many Cities `Holder` holds (the tab adds
//!   the same); `PLEXUS_BENCH_JOINS`, `PLEXUS_BENCH_RUNS`: sample counts.
//!
//! It prints medians: join to listed (a fresh key joins, then `GET /peers`
//! is polled until it lists the tab; budget <= 1 s), and a Network Get sent
//! by the page to `Querier` and answered by the tab vs by `Holder`,
//! interleaved in the same run (budget: tab <= 3x native).
#![cfg(target_arch = "wasm32")]

use gloo_net::http::Request;
use gloo_timers::future::TimeoutFuture;
use plexus_wasm_peer::{PeerOptionsArg, PlexusPeer};
use serde_json::{Value as Json, json};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod support;

fn env(value: Option<&'static str>, name: &str) -> &'static str {
    support::env(value, name, "scripts/tab-bench.sh")
}

fn count(value: Option<&'static str>, default: usize) -> usize {
    value.and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `performance.now()`, in ms with sub-ms precision.
fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            now.dyn_into::<js_sys::Function>().ok()?.call0(&p).ok()
        })
        .and_then(|v| v.as_f64())
        .unwrap_or_else(js_sys::Date::now)
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

async fn join(genesis: &str, name: &str) -> PlexusPeer {
    let options = json!({
        "genesis": genesis,
        "name": name,
        "timeoutMs": 5000,
        "database": null,
    });
    let options = plexus_wasm::to_js(&options).expect("options");
    PlexusPeer::join(options.unchecked_into::<PeerOptionsArg>())
        .await
        .expect("the tab joins")
}

async fn listed(genesis: &str, name: &str) -> bool {
    let Ok(response) = Request::get(&format!("{genesis}/peers")).send().await else {
        return false;
    };
    let peers: Json = response.json().await.unwrap_or(Json::Null);
    peers
        .as_array()
        .is_some_and(|peers| peers.iter().any(|p| p["peerName"] == name))
}

/// Sends `query` to `peer` and returns how many Cities the answer holds for
/// `asked`.
async fn cities(peer: &str, asked: &str, query: &str) -> usize {
    let answer = support::post_graphql(peer, query).await;
    answer["data"]["Network"]["Get"][asked]["Things"]["City"]
        .as_array()
        .map_or(0, Vec::len)
}

fn network_get(name: &str) -> String {
    format!("{{ Network {{ Get {{ {name} {{ Things {{ City {{ name population }} }} }} }} }} }}")
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: scripts/tab-bench.sh runs it against its servers"]
async fn tab_budget_join_to_listed_and_network_get_vs_native() {
    let genesis = env(option_env!("PLEXUS_BENCH_GENESIS"), "PLEXUS_BENCH_GENESIS");
    let querier = env(option_env!("PLEXUS_BENCH_QUERIER"), "PLEXUS_BENCH_QUERIER");
    let objects = count(option_env!("PLEXUS_BENCH_OBJECTS"), 20);
    let joins = count(option_env!("PLEXUS_BENCH_JOINS"), 30).max(1);
    let runs = count(option_env!("PLEXUS_BENCH_RUNS"), 200).max(1);
    let stamp = js_sys::Date::now() as u64 % 1_000_000;

    // 1. Join to listed, fresh names and keys.
    let mut join_ms = Vec::new();
    for i in 0..joins {
        let name = format!("BenchJoin{stamp}x{i}");
        let started = now_ms();
        let mut peer = join(genesis, &name).await;
        let mut polls = 0;
        while !listed(genesis, &name).await {
            polls += 1;
            assert!(polls < 1000, "{name} never listed");
            TimeoutFuture::new(1).await;
        }
        join_ms.push(now_ms() - started);
        JsFuture::from(peer.leave()).await.expect("left");
    }
    let join_max = join_ms.iter().copied().fold(0.0, f64::max);
    let join_median = median(&mut join_ms);

    // 2. A Network Get through Querier: answered by this tab vs by Holder,
    // which holds the same objects.
    let name = format!("BenchTab{stamp}");
    let mut tab = join(genesis, &name).await;
    let class = json!({"class": "City", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]});
    JsFuture::from(tab.create_class("things".into(), plexus_wasm::to_js(&class).expect("JS")))
        .await
        .expect("the class");
    for i in 0..objects {
        let object =
            json!({"class": "City", "schema": {"name": format!("City {i}"), "population": i}});
        JsFuture::from(tab.add_object("things".into(), plexus_wasm::to_js(&object).expect("JS")))
            .await
            .expect("an object");
    }
    let (by_tab, by_native) = (network_get(&name), network_get("Holder"));
    // Querier plans with the tab's schema once genesis told it the hash.
    let mut waited = 0;
    while cities(querier, &name, &by_tab).await != objects {
        waited += 1;
        assert!(waited < 300, "Querier never got the tab's {objects} Cities");
        TimeoutFuture::new(100).await;
    }
    assert_eq!(cities(querier, "Holder", &by_native).await, objects);
    for _ in 0..20 {
        cities(querier, &name, &by_tab).await;
        cities(querier, "Holder", &by_native).await;
    }
    let (mut tab_ms, mut native_ms) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = now_ms();
        assert_eq!(cities(querier, &name, &by_tab).await, objects);
        tab_ms.push(now_ms() - started);
        let started = now_ms();
        assert_eq!(cities(querier, "Holder", &by_native).await, objects);
        native_ms.push(now_ms() - started);
    }
    JsFuture::from(tab.leave()).await.expect("left");
    let (tab_median, native_median) = (median(&mut tab_ms), median(&mut native_ms));
    console_log!(
        "tab-bench: join to listed, {joins} joins: median {join_median:.1} ms, max {join_max:.1} ms (budget <= 1000 ms)"
    );
    console_log!(
        "tab-bench: Network Get of {objects} objects through a native peer, {runs} interleaved runs: answered by the tab {tab_median:.2} ms, by a native peer {native_median:.2} ms (medians): tab / native = {:.2}x (budget <= 3x)",
        tab_median / native_median
    );
    // Figures, not verdicts of a timed test: the script prints them.
    let verdict = |ok: bool| if ok { "within budget" } else { "OVER BUDGET" };
    console_log!(
        "tab-bench: join {}, Network Get {}",
        verdict(join_median <= 1000.0),
        verdict(tab_median <= 3.0 * native_median)
    );
}
