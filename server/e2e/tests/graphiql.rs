//! GraphiQL in a closed network: a real peer's GraphiQL page, loaded in
//! headless Chromium whose name resolution is closed to every host but
//! loopback, renders GraphiQL's editors, and neither the page nor anything
//! it loads names or asks another host (Chromium's own NetLog says what the
//! page requested). Chromium is required: without it the test fails
//! (`scripts/setup.sh` installs it; `PLEXUS_CHROMIUM` names another binary).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// How long Chromium may take to load and render the page, on a loaded machine.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(120);

/// Runs headless Chromium on `url` with the network closed to every host but
/// 127.0.0.1; the DOM once the page settled, and the NetLog it wrote.
async fn chromium_dump_dom(url: &str, dir: &std::path::Path) -> (String, Value) {
    let binary = std::env::var("PLEXUS_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let net_log = dir.join("netlog.json");
    let mut command = tokio::process::Command::new(&binary);
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--log-net-log={}", net_log.display()))
        .args(["--dump-dom", url])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = command.output();
    let output = match tokio::time::timeout(CHROMIUM_LIMIT, child).await {
        Err(_) => panic!("{binary} did not finish loading {url} within {CHROMIUM_LIMIT:?}"),
        Ok(Err(e)) => panic!(
            "cannot run {binary} ({e}): the GraphiQL test needs Chromium \
             (scripts/setup.sh installs it; PLEXUS_CHROMIUM names another binary)"
        ),
        Ok(Ok(output)) => output,
    };
    assert!(
        output.status.success(),
        "{binary} failed: {:?}",
        output.status
    );
    let log = std::fs::read_to_string(&net_log).expect("Chromium wrote its NetLog");
    (
        String::from_utf8(output.stdout).expect("utf-8 DOM"),
        serde_json::from_str(&log).expect("a complete NetLog"),
    )
}

/// The requests the page made (those whose initiator is `origin`, and the
/// page itself): `(method, url)`. Chromium's own requests have no initiator.
fn page_requests(net_log: &Value, origin: &str, page: &str) -> Vec<(String, String)> {
    let start_job = net_log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the NetLog names URL_REQUEST_START_JOB");
    net_log["events"]
        .as_array()
        .expect("NetLog events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter_map(|e| {
            let params = &e["params"];
            let url = params["url"].as_str()?;
            (params["initiator"].as_str() == Some(origin) || url == page).then(|| {
                (
                    params["method"].as_str().unwrap_or("").to_owned(),
                    url.to_owned(),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn graphiql_renders_with_no_host_but_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(bin("plexus-peer"));
    command
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn");
    let peer = spawn(command);
    let page = peer.at("/v1/graphql");

    // The page as served names no other host: every reference is a path.
    let client = reqwest::Client::new();
    let response = client
        .get(&page)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(!html.contains("//"), "the page names another host: {html}");
    let scripts = html.matches("<script src=\"/v1/graphiql/").count();
    assert!(
        scripts >= 4,
        "React, ReactDOM, GraphiQL and its start: {html}"
    );

    let (dom, net_log) = chromium_dump_dom(&page, dir.path()).await;
    // GraphiQL rendered: its container, the query editor (CodeMirror) with
    // its gutter, and the results pane.
    for element in [
        "graphiql-container",
        "graphiql-query-editor",
        "CodeMirror-code",
        "graphiql-response",
    ] {
        assert!(
            dom.contains(element),
            "GraphiQL did not render ({element} is not in the DOM):\n{dom}"
        );
    }
    let requests = page_requests(&net_log, &peer.url, &page);
    let elsewhere: Vec<_> = requests
        .iter()
        .filter(|(_, url)| !url.starts_with(&format!("{}/", peer.url)))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the page asked other hosts: {elsewhere:?}"
    );
    // It loaded every script from the peer, and asked the peer its schema.
    let assets = requests
        .iter()
        .filter(|(m, url)| m == "GET" && url.contains("/v1/graphiql/"))
        .count();
    assert!(assets > scripts, "{requests:?}");
    assert!(
        requests.iter().any(|(m, url)| m == "POST" && *url == page),
        "GraphiQL did not ask the peer its schema: {requests:?}"
    );
}
