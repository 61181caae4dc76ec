//! A web page of an origin that genesis was not started with
//! (`--cors-origin`): its writes are refused, every answer tells it so in
//! `x-plexus-refused-origin` (which pages may read), and genesis logs each
//! refused origin, once a minute at most.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use plexus_core::wire::REFUSED_ORIGIN_HEADER;
use support::*;

const APP: &str = "http://app.example";
const EVIL: &str = "http://evil.example";
const OTHER: &str = "http://other.example";

/// Genesis with `--cors-origin APP`, logging warnings to `log`.
fn genesis_logging_to(log: &std::path::Path) -> Proc {
    let mut command = genesis_command("127.0.0.1:0");
    command
        .args(["--cors-origin", APP])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = command.spawn().expect("start genesis");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("genesis said {line:?}"))
        .to_owned();
    Proc { child, url }
}

#[tokio::test]
async fn genesis_tells_a_refused_origin_and_logs_it_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("genesis.log");
    let genesis = genesis_logging_to(&log);
    let client = reqwest::Client::new();
    let register = genesis.at("/peers/register");
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &register)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };

    for _ in 0..5 {
        // A browser's preflight of the registration: refused (no allow-origin).
        let response = preflight(EVIL).await.unwrap();
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        // A simple POST (no preflight) is refused with 403, saying why.
        let response = client
            .post(&register)
            .header("origin", EVIL)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()[REFUSED_ORIGIN_HEADER], EVIL);
        let body = response.text().await.unwrap();
        assert!(body.contains("--cors-origin"), "{body}");
    }
    // A read from that origin is allowed, and its answer, readable by the
    // page (exposed), says the origin may not write.
    let response = client
        .get(genesis.at(plexus_core::wire::HEALTH_PATH))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], EVIL);
    assert_eq!(response.headers()[REFUSED_ORIGIN_HEADER], EVIL);
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains(REFUSED_ORIGIN_HEADER), "{exposed}");
    // The named origin is not told so, and its preflight is allowed.
    let response = client
        .get(genesis.at(plexus_core::wire::HEALTH_PATH))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get(REFUSED_ORIGIN_HEADER).is_none());
    let response = preflight(APP).await.unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], APP);
    // A second refused origin, by its preflight only.
    preflight(OTHER).await.unwrap();

    // Genesis logged each refused origin once, and not the allowed one.
    let text = poll(Duration::from_secs(5), "genesis logs the refusals", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains(OTHER).then_some(text) }
    })
    .await;
    let lines_naming = |origin: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("origin {origin}")) && l.contains("--cors-origin"))
            .count()
    };
    assert_eq!(lines_naming(EVIL), 1, "{text}");
    assert_eq!(lines_naming(OTHER), 1, "{text}");
    assert!(!text.contains(APP), "{text}");
}
