//! HTTPS end to end: certificates made here (a private CA and one per
//! server, with rcgen), genesis and peers serving HTTPS, every call between
//! them over TLS with `--ca-file`; a server without the CA is refused; a
//! renewed certificate is served without a restart; `--require-https`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod fault_common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fault_common::metric;
use plexus_bench::certs::{ServerFiles, TestCa};
use plexus_server::outbound::{Trust, client_builder};
use serde_json::json;
use support::*;

/// A client that trusts `ca` (as `--ca-file` does) and keeps the TLS info
/// of its answers; a new connection for every request.
fn client(ca: Option<&TestCa>) -> reqwest::Client {
    let trust = ca.map_or_else(Trust::default, |ca| {
        Trust::from_pem(ca.pem().as_bytes()).expect("the CA")
    });
    client_builder(&trust)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The certificate (DER) the server at `url` serves on a new connection
/// (a new client: an HTTP/2 connection would be shared, not pooled).
async fn served(ca: &TestCa, url: &str) -> Option<Vec<u8>> {
    let client = client(Some(ca));
    let response = client.get(format!("{url}/healthz")).send().await.ok()?;
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

fn strings(files: &ServerFiles, ca: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = files.args();
    args.extend(["--ca-file".into(), ca.display().to_string()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn https_genesis(files: &ServerFiles, ca: &Path, extra: &[&str]) -> Proc {
    let args = strings(files, ca, extra);
    genesis(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A peer serving `files` in the network of `genesis`, trusting `ca` if given.
fn https_peer(
    genesis: &Proc,
    name: &str,
    dir: &Path,
    files: &ServerFiles,
    ca: Option<&Path>,
) -> Proc {
    let mut command = peer_command(&genesis.url, name, 0, &dir.join(name));
    command.args(files.args());
    if let Some(ca) = ca {
        command.arg("--ca-file").arg(ca);
    }
    spawn(command)
}

#[tokio::test]
async fn an_https_network_registers_pings_pushes_and_answers_network_queries() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Plexus test CA").unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem")).unwrap();
    let server = |stem| {
        ca.issue_files(dir.path(), stem, &["127.0.0.1", "localhost"])
            .unwrap()
            .0
    };
    let (g, a, b) = (server("genesis"), server("a"), server("b"));
    // --require-https too: https peer URIs are the ones it takes.
    let genesis = https_genesis(&g, &ca_file, &["--require-https"]);
    assert!(
        genesis.url.starts_with("https://127.0.0.1:"),
        "{}",
        genesis.url
    );
    let peer_a = https_peer(&genesis, "PeerA", dir.path(), &a, Some(&ca_file));
    let peer_b = https_peer(&genesis, "PeerB", dir.path(), &b, Some(&ca_file));
    assert!(peer_a.url.starts_with("https://"), "{}", peer_a.url);
    let client = client(Some(&ca));

    // Registration: genesis probed each peer over TLS, and lists https URIs.
    poll(Duration::from_secs(10), "both peers registered", || async {
        (genesis_names(&client, &genesis).await? == ["PeerA", "PeerB"]).then_some(())
    })
    .await;
    let peers = get(&client, &genesis.at("/peers")).await.unwrap();
    for peer in peers.as_array().unwrap() {
        assert!(
            peer["peerUri"]
                .as_str()
                .unwrap()
                .starts_with("https://127.0.0.1:"),
            "{peer}"
        );
    }

    // Signed pushes over TLS: each peer's view holds the other.
    for (url, other) in [(&peer_a.url, "PeerB"), (&peer_b.url, "PeerA")] {
        poll(Duration::from_secs(10), "the pushed views", || async {
            view_of(&client, url, other).await.map(|_| ())
        })
        .await;
    }
    assert!(metric(&client, &genesis, "plexus_genesis_broadcasts_sent_total").await >= 1);
    // Pings over TLS.
    let pings = metric(&client, &genesis, "plexus_genesis_pings_total").await;
    poll(Duration::from_secs(5), "more pings", || async {
        (metric(&client, &genesis, "plexus_genesis_pings_total").await > pings + 1).then_some(())
    })
    .await;

    // A Network Get from A to B over TLS (the schema download too).
    add_class(&client, &peer_b.url, "City").await;
    add_thing(&client, &peer_b.url, "City", "Delft", 1).await;
    wait_cached(&client, &peer_a.url, &["PeerB"], Duration::from_secs(10)).await;
    let query = "{ Network { Get { PeerB { Things { City { name } } } } } }";
    // The engine follows the cached schemas a moment later.
    poll(
        Duration::from_secs(10),
        "the Network Get answered",
        || async {
            let answer = graphql(&client, &peer_a.url, query).await;
            (answer["data"]["Network"]["Get"]["PeerB"]["Things"]["City"]
                == json!([{"name": "Delft"}]))
            .then_some(())
        },
    )
    .await;

    // It is TLS: plain HTTP to the port gets no answer, and a client
    // without the CA refuses the certificate.
    let plain = genesis.url.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());
    let refused = reqwest::Client::new()
        .get(genesis.at("/healthz"))
        .send()
        .await
        .expect_err("no CA, no answer");
    let chain = plexus_server::error_chain(&refused);
    assert!(chain.contains("certificate"), "{chain}");
}

#[tokio::test]
async fn a_server_without_the_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Plexus test CA").unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem")).unwrap();
    let server = |stem| ca.issue_files(dir.path(), stem, &["127.0.0.1"]).unwrap().0;
    let (g, a, c) = (server("genesis"), server("a"), server("c"));
    let genesis = https_genesis(&g, &ca_file, &[]);
    let client = client(Some(&ca));
    // PeerC does not trust the CA: its registration never reaches genesis.
    let peer_c = https_peer(&genesis, "PeerC", dir.path(), &c, None);
    // PeerA does, and registers (so genesis works, and PeerC had time).
    let _peer_a = https_peer(&genesis, "PeerA", dir.path(), &a, Some(&ca_file));
    poll(Duration::from_secs(10), "PeerA registered", || async {
        genesis_names(&client, &genesis)
            .await?
            .contains(&"PeerA".to_owned())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(genesis_names(&client, &genesis).await.unwrap(), ["PeerA"]);
    let view = get(&client, &peer_c.at("/v1/network/peers")).await.unwrap();
    assert_ne!(view["state"], "registered", "{view}");
    assert_eq!(view["id"], serde_json::Value::Null, "{view}");

    // A genesis without the CA cannot probe an https peer: 400.
    let blind = genesis_command("127.0.0.1:0");
    let blind = spawn({
        let mut blind = blind;
        blind.args(g.args());
        blind
    });
    let (status, body) = post(
        &client,
        &blind.at("/peers/register"),
        json!({"peerName": "PeerC", "peerUri": peer_c.url}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Plexus test CA").unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem")).unwrap();
    let (files, first) = ca
        .issue_files(dir.path(), "genesis", &["127.0.0.1"])
        .unwrap();
    let mut genesis = https_genesis(&files, &ca_file, &[]);
    assert_eq!(served(&ca, &genesis.url).await, Some(first.der.clone()));

    // A broken file: the old certificate is still served.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    tokio::time::sleep(plexus_server::tls::RELOAD_CHECK + Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert_eq!(served(&ca, &genesis.url).await, Some(first.der.clone()));
    }

    // The renewal: served on new connections within a few seconds.
    let renewed = ca.issue(&["127.0.0.1"]).unwrap();
    files.write(&renewed).unwrap();
    poll(
        Duration::from_secs(10),
        "the renewed certificate served",
        || async { (served(&ca, &genesis.url).await? == renewed.der).then_some(()) },
    )
    .await;
    assert!(
        genesis.child.try_wait().unwrap().is_none(),
        "the same process"
    );
    assert_ne!(first.der, renewed.der);
    genesis.kill9();
}

#[tokio::test]
async fn require_https_refuses_http_peer_uris() {
    let dir = tempfile::tempdir().unwrap();
    // A live plain-HTTP peer: without the flag, genesis registers it.
    let mut standalone = Command::new(bin("plexus-peer"));
    standalone
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("plain"))
        .env("RUST_LOG", "warn");
    let plain = spawn(standalone);
    let client = reqwest::Client::new();
    let register = json!({"peerName": "PeerP", "peerUri": plain.url});
    let open = genesis(&[]);
    let (status, body) = post(&client, &open.at("/peers/register"), register.clone()).await;
    assert_eq!(status, 200, "{body}");

    let strict = genesis(&["--require-https"]);
    let (status, body) = post(&client, &strict.at("/peers/register"), register).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--require-https"), "{message}");
    assert_eq!(
        genesis_names(&client, &strict).await.unwrap(),
        Vec::<String>::new()
    );
}
