//! Asking by meaning, end to end: genesis serves the contextionary and
//! names it, peers download it or refuse another one, and Fetch and
//! Introspect find a `Town` and a `Village` for `City`, not an `Airplane`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const SETTLE: Duration = Duration::from_secs(15);
const DEFAULT_HASH: &str = "77965598833b24f93cdaaf23efc6f5a7b449a846b8fce68135d9630bbd1c5c0c";

const FETCH_CITY: &str = r#"{ Local { Fetch { Things(where: {
    class: {name: "City", certainty: 0.6},
    properties: [{name: "name", certainty: 0.9, operator: Equal, valueString: "Amsterdam"}]
}) { className beacon certainty } } } }"#;

const INTROSPECT_CITY: &str = r#"{ Local { Introspect { Things(where: [{
    class: [{name: "City", certainty: 0.6}], properties: [{name: "name", certainty: 0.9}]
}]) { weaviate className certainty properties { propertyName certainty } } } } }"#;

fn class_names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|f| f["className"].as_str().unwrap().to_owned())
        .collect()
}

/// A contextionary file of two words, not the network's.
fn other_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = b"PLXC".to_vec();
    bytes.extend(1u16.to_le_bytes());
    bytes.extend(1u16.to_le_bytes());
    bytes.extend(2u32.to_le_bytes());
    bytes.extend([4, b'c', b'i', b't', b'y', 4, b't', b'o', b'w', b'n']);
    bytes.extend(1f32.to_le_bytes());
    bytes.push(1);
    bytes.extend(1f32.to_le_bytes());
    bytes.push(2);
    let path = dir.join("other.ctx");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn genesis_serves_and_names_the_contextionary_and_peers_download_it_or_refuse_another() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let genesis = genesis(&[]);

    // The file, cacheable by its hash.
    let url = genesis.at("/contextionary");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{DEFAULT_HASH}\""));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(
        plexus_core::contextionary::hash_of(&bytes).value,
        DEFAULT_HASH
    );
    let cached = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    // A peer that downloads it from genesis joins, and answers Fetch with it.
    let a = peer(
        &genesis,
        "PeerA",
        &dir.path().join("a"),
        &["--contextionary-url", &url],
    );
    poll(SETTLE, "PeerA registers", || async {
        let view = get(&client, &a.at("/v1/network/peers")).await?;
        (view["state"] == "registered").then_some(())
    })
    .await;
    add_class(&client, &a.url, "Town").await;
    add_thing(&client, &a.url, "Town", "Amsterdam", 1).await;
    let answer = graphql(&client, &a.url, FETCH_CITY).await;
    assert_eq!(
        class_names(&answer["data"]["Local"]["Fetch"]["Things"]),
        ["Town"],
        "{answer}"
    );

    // Every registration answer names the URL and the hash, in the original's shape.
    let (status, registered) = post(
        &client,
        &genesis.at("/peers/register"),
        json!({"peerName": "Probe", "peerUri": a.url}),
    )
    .await;
    assert_eq!(status, 200, "{registered}");
    assert_eq!(
        registered["contextionary"],
        json!({"url": url, "hash": {"algorithm": "sha256", "value": DEFAULT_HASH}})
    );

    // A peer with another file refuses to join, naming both hashes.
    let other = other_file(dir.path());
    let mut command = peer_command(&genesis.url, "PeerX", 0, &dir.path().join("x"));
    command.arg("--contextionary").arg(&other);
    let output = command.output().expect("run plexus-peer");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(DEFAULT_HASH) && stderr.contains("refusing to join"),
        "{stderr}"
    );

    // A download whose hash is not the one asked for is refused.
    let mut command = peer_command(&genesis.url, "PeerY", 0, &dir.path().join("y"));
    command.args([
        "--contextionary-url",
        &url,
        "--contextionary-hash",
        "sha256:0000",
    ]);
    let output = command.output().expect("run plexus-peer");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected sha256:0000"), "{stderr}");
}

#[tokio::test]
async fn local_fetch_and_introspect_find_the_cities_and_not_the_airplane() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (a, _) = spawn_on_free_port(|port| {
        let mut command = std::process::Command::new(bin("plexus-peer"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.path().join("a"))
            .env("RUST_LOG", "warn");
        command
    });
    for class in ["City", "Town", "Village", "Airplane"] {
        add_class(&client, &a.url, class).await;
        add_thing(&client, &a.url, class, "Amsterdam", 1).await;
    }
    add_thing(&client, &a.url, "City", "Utrecht", 2).await;
    let answer = graphql(&client, &a.url, FETCH_CITY).await;
    let found = &answer["data"]["Local"]["Fetch"]["Things"];
    assert_eq!(class_names(found), ["City", "Town", "Village"], "{answer}");
    for f in found.as_array().unwrap() {
        assert!(
            f["beacon"]
                .as_str()
                .unwrap()
                .starts_with("weaviate://localhost/things/"),
            "{f}"
        );
    }
    let answer = graphql(&client, &a.url, INTROSPECT_CITY).await;
    let found = answer["data"]["Local"]["Introspect"]["Things"]
        .as_array()
        .unwrap()
        .clone();
    let certainties: Vec<(String, f64)> = found
        .iter()
        .map(|f| {
            (
                f["className"].as_str().unwrap().to_owned(),
                (f["certainty"].as_f64().unwrap() * 100.0).round() / 100.0,
            )
        })
        .collect();
    assert_eq!(
        certainties,
        [
            ("City".to_owned(), 1.0),
            ("Town".to_owned(), 0.76),
            ("Village".to_owned(), 0.66)
        ],
        "{answer}"
    );
}

const NETWORK_FETCH_CITY: &str = r#"{ Network(networkTimeout: 3000) { Fetch { Things(where: {
    class: {name: "City", certainty: 0.6},
    properties: [{name: "name", certainty: 0.9, operator: Equal, valueString: "Amsterdam"}]
}) { className beacon certainty } } } }"#;

const NETWORK_INTROSPECT_CITY: &str = r#"{ Network { Introspect { Things(where: [{
    class: [{name: "City", certainty: 0.6}], properties: [{name: "name", certainty: 0.9}]
}]) { weaviate className certainty properties { propertyName certainty } } } } }"#;

/// `(peer of the beacon, className, certainty to 2 places)` of each item.
fn found_by_peer(list: &Value) -> Vec<(String, String, f64)> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|f| {
            let beacon = f["beacon"].as_str().unwrap_or_default();
            let peer = beacon
                .strip_prefix("weaviate://")
                .and_then(|r| r.split('/').next())
                .or_else(|| f["weaviate"].as_str())
                .unwrap_or_default();
            (
                peer.to_owned(),
                f["className"].as_str().unwrap().to_owned(),
                (f["certainty"].as_f64().unwrap() * 100.0).round() / 100.0,
            )
        })
        .collect()
}

fn triple(peer: &str, class: &str, certainty: f64) -> (String, String, f64) {
    (peer.to_owned(), class.to_owned(), certainty)
}

#[tokio::test]
async fn network_fetch_and_introspect_ask_every_near_peer_and_a_killed_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    // A long peer timeout: the killed peer stays listed, so it is asked.
    let genesis = genesis(&["--peer-timeout", "60s"]);
    let mut peers = Vec::new();
    for (name, classes) in [
        ("PeerA", &["City", "Airplane"][..]),
        ("PeerB", &["Town"]),
        ("PeerC", &["Village"]),
        ("PeerD", &["Airplane"]),
    ] {
        let p = peer(&genesis, name, &dir.path().join(name), &[]);
        for class in classes {
            add_class(&client, &p.url, class).await;
            add_thing(&client, &p.url, class, "Amsterdam", 1).await;
        }
        peers.push(p);
    }
    let a = peers[0].url.clone();
    let want = [
        triple("PeerA", "City", 1.0),
        triple("PeerB", "Town", 0.76),
        triple("PeerC", "Village", 0.66),
    ];
    // Until PeerA's engine holds every peer's schema with its classes (the
    // airplane's too: it must be known to be left out).
    wait_cached(&client, &a, &["PeerB", "PeerC", "PeerD"], SETTLE).await;
    let answer = poll(SETTLE, "a Network Fetch finds the three cities", || async {
        let answer = graphql(&client, &a, NETWORK_FETCH_CITY).await;
        (found_by_peer(&answer["data"]["Network"]["Fetch"]["Things"]) == want).then_some(answer)
    })
    .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let beacons = answer["data"]["Network"]["Fetch"]["Things"].to_string();
    assert!(!beacons.contains("Airplane"), "{answer}");

    let answer = graphql(&client, &a, NETWORK_INTROSPECT_CITY).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let listed = &answer["data"]["Network"]["Introspect"]["Things"];
    assert_eq!(found_by_peer(listed), want, "{answer}");
    for class in listed.as_array().unwrap() {
        assert_eq!(
            class["properties"],
            json!([{"propertyName": "name", "certainty": 1.0}]),
            "{answer}"
        );
    }

    // The beacon's peer answers Introspect.Beacon.
    let town = answer["data"]["Network"]["Introspect"]["Things"][1]["weaviate"].clone();
    assert_eq!(town, "PeerB");
    let fetched = graphql(&client, &a, NETWORK_FETCH_CITY).await;
    let beacon = fetched["data"]["Network"]["Fetch"]["Things"][1]["beacon"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = format!(
        r#"{{ Network {{ Introspect {{ Beacon(id: "{beacon}") {{ weaviate className properties {{ propertyName }} }} }} }} }}"#
    );
    let answer = graphql(&client, &a, &q).await;
    assert_eq!(
        answer["data"]["Network"]["Introspect"]["Beacon"],
        json!({"weaviate": "PeerB", "className": "Town", "properties": [{"propertyName": "name"}, {"propertyName": "size"}]}),
        "{answer}"
    );

    // A killed peer: the others' results, and one error naming it. The
    // airplane's peer is killed too: it is never asked (no class near City
    // in its cached schema), so it is no error.
    peers[2].kill9();
    peers[3].kill9();
    let answer = graphql(&client, &a, NETWORK_FETCH_CITY).await;
    assert_eq!(
        found_by_peer(&answer["data"]["Network"]["Fetch"]["Things"]),
        want[..2],
        "{answer}"
    );
    let errors = answer["errors"].as_array().expect("an error for PeerC");
    assert_eq!(errors.len(), 1, "{answer}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("peer PeerC did not answer: "),
        "{answer}"
    );
    assert_eq!(errors[0]["path"], json!(["Network", "Fetch", "Things"]));
}
