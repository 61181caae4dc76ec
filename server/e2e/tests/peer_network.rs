//! `plexus-peer` in a network, end to end: a real `plexus-genesis` and real
//! peers on loopback ports.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// Ping interval of every peer in these tests (see `peer_command`).
const PING: Duration = Duration::from_millis(500);
/// Long enough for registering and the first broadcasts on a busy machine.
const SETTLE: Duration = Duration::from_secs(15);

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn three_peers_query_each_other_and_survive_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let genesis = genesis(&["--peer-timeout", "3s"]);
    let a = peer(&genesis, "PeerA", &dir.path().join("a"), &[]);
    let b = peer(&genesis, "PeerB", &dir.path().join("b"), &[]);
    let mut c = peer(&genesis, "PeerC", &dir.path().join("c"), &[]);

    add_class(&client, &a.url, "Person").await;
    add_class(&client, &b.url, "City").await;
    add_class(&client, &c.url, "Airport").await;
    add_thing(&client, &a.url, "Person", "Ada", 36).await;
    for (name, size) in [("Amsterdam", 905), ("Utrecht", 361)] {
        add_thing(&client, &b.url, "City", name, size).await;
    }
    add_thing(&client, &c.url, "Airport", "AMS", 71).await;

    // Each sees the others, with their schemas cached.
    wait_cached(&client, &a.url, &["PeerB", "PeerC"], SETTLE).await;
    wait_cached(&client, &b.url, &["PeerA", "PeerC"], SETTLE).await;
    wait_cached(&client, &c.url, &["PeerA", "PeerB"], SETTLE).await;
    let view = get(&client, &a.at("/v1/network/peers")).await.unwrap();
    assert_eq!(view["state"], "registered", "{view}");
    assert_eq!(view["name"], "PeerA");
    let b_seen = view_of(&client, &a.url, "PeerB").await.unwrap();
    assert_eq!(b_seen["uri"], b.url.as_str());
    assert!(b_seen["id"].is_string() && b_seen["schemaHash"].is_string());

    // A Network Get from A returns B's and C's objects.
    let query = "{ Network { Get { PeerB { Things { City { name size } } } \
                 PeerC { Things { Airport { name } } } } } }";
    let answer = graphql(&client, &a.url, query).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let get = &answer["data"]["Network"]["Get"];
    assert_eq!(
        names(&get["PeerB"]["Things"]["City"]),
        ["Amsterdam", "Utrecht"]
    );
    assert_eq!(names(&get["PeerC"]["Things"]["Airport"]), ["AMS"]);

    // The asking peer is part of the network too: it answers its own part.
    let own = "{ Network { Get { PeerA { Things { Person { name } } } PeerB { Things { City { name } } } } } }";
    let answer = graphql(&client, &a.url, own).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(
        names(&answer["data"]["Network"]["Get"]["PeerA"]["Things"]["Person"]),
        ["Ada"]
    );

    // The engine's validation errors come before anything is sent: unknown
    // peer (no field of that name), unknown class.
    for (bad, needle) in [
        (
            "{ Network { Get { PeerZ { Things { City { name } } } } } }",
            "\"PeerZ\"",
        ),
        (
            "{ Network { Get { PeerB { Things { Airport { name } } } } } }",
            "Airport",
        ),
    ] {
        let answer = graphql(&client, &a.url, bad).await;
        assert!(answer.get("data").is_none(), "{answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{answer}");
    }

    // kill -9 C: A's Network Get reports C's error with its path, and still
    // returns B's data.
    c.kill9();
    let answer = graphql(&client, &a.url, query).await;
    let get = &answer["data"]["Network"]["Get"];
    assert_eq!(
        names(&get["PeerB"]["Things"]["City"]),
        ["Amsterdam", "Utrecht"]
    );
    assert_eq!(get["PeerC"], Value::Null, "{answer}");
    let errors = answer["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{answer}");
    assert_eq!(errors[0]["path"], json!(["Network", "Get", "PeerC"]));
    assert!(
        errors[0]["message"].as_str().unwrap().contains("PeerC"),
        "{answer}"
    );

    // Genesis evicts C after its peer timeout, and A's view drops it.
    poll(Duration::from_secs(10), "genesis evicts PeerC", || async {
        let names = genesis_names(&client, &genesis).await?;
        (names == ["PeerA", "PeerB"]).then_some(())
    })
    .await;
    poll(Duration::from_secs(5), "A forgets PeerC", || async {
        view_of(&client, &a.url, "PeerB").await?;
        view_of(&client, &a.url, "PeerC")
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn schema_changes_spread_and_sigterm_deregisters_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    // A long peer timeout: only deregistering can drop B quickly.
    let genesis = genesis(&["--peer-timeout", "30s"]);
    let a = peer(&genesis, "PeerA", &dir.path().join("a"), &[]);
    let mut b = peer(&genesis, "PeerB", &dir.path().join("b"), &[]);
    add_class(&client, &b.url, "City").await;
    wait_cached(&client, &a.url, &["PeerB"], SETTLE).await;
    let before = view_of(&client, &a.url, "PeerB").await.unwrap();

    // A schema change on B reaches A's cache within two ping intervals.
    add_class(&client, &b.url, "River").await;
    let changed = Instant::now();
    let own_hash = get(&client, &b.at("/v1/network/peers")).await.unwrap();
    assert_eq!(own_hash["state"], "registered");
    poll(2 * PING, "A caches B's new schema", || async {
        let seen = view_of(&client, &a.url, "PeerB").await?;
        (seen["schemaHash"] != before["schemaHash"] && seen["schemaCached"] == true).then_some(())
    })
    .await;
    eprintln!("schema change reached A's cache in {:?}", changed.elapsed());
    add_thing(&client, &b.url, "River", "Amstel", 31).await;
    let answer = graphql(
        &client,
        &a.url,
        "{ Network { Get { PeerB { Things { River { name } } } } } }",
    )
    .await;
    assert_eq!(
        answer["data"]["Network"]["Get"]["PeerB"]["Things"]["River"][0]["name"], "Amstel",
        "{answer}"
    );

    // SIGTERM on B deregisters it at once: genesis drops it long before its
    // 30 s timeout, A's view follows, and B exits cleanly.
    let stopped = Instant::now();
    b.terminate();
    poll(Duration::from_secs(3), "genesis drops PeerB", || async {
        let names = genesis_names(&client, &genesis).await?;
        (names == ["PeerA"]).then_some(())
    })
    .await;
    eprintln!("PeerB deregistered {:?} after SIGTERM", stopped.elapsed());
    let status = b.wait_exit(Duration::from_secs(5)).expect("B exits");
    assert!(status.success(), "{status:?}");
    poll(Duration::from_secs(3), "A forgets PeerB", || async {
        let view = get(&client, &a.at("/v1/network/peers")).await?;
        view["peers"].as_array()?.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn another_contextionary_exits_non_zero_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = genesis(&["--contextionary-hash", "sha256:network"]);
    let mut command = peer_command(&genesis.url, "PeerX", 0, &dir.path().join("x"));
    command.args(["--contextionary-hash", "sha256:mine"]);
    let started = Instant::now();
    let output = command.output().expect("run plexus-peer");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("plexus-peer: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(
        line.contains("sha256:network") && line.contains("sha256:mine"),
        "{line}"
    );
}

#[tokio::test]
async fn bad_configuration_is_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peer.json");
    std::fs::write(&file, "{ \"environments\": [ { \"name\": \"default\", ").unwrap();
    let output = std::process::Command::new(support::bin("plexus-peer"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid config file"), "{stderr}");
}

#[tokio::test]
async fn config_file_joins_and_data_survives_kill_9_and_re_registers() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let genesis = genesis(&["--peer-timeout", "30s", "--join-token", "s3cret"]);
    let b = peer(
        &genesis,
        "PeerB",
        &dir.path().join("b"),
        &["--join-token", "s3cret"],
    );

    // A joins through the seed's config file (with its token from the environment).
    let config = dir.path().join("plexus.json");
    let write_config = |port: u16| {
        let file = json!({"environments": [
            {"name": "default"},
            {"name": "test", "network": {"genesis_url": genesis.url,
                "public_url": format!("http://127.0.0.1:{port}"), "peer_name": "PeerA"}}]});
        std::fs::write(&config, file.to_string()).unwrap();
    };
    // A's public URL is in its config file, so each start writes the port first.
    let start_a = |port: u16| {
        write_config(port);
        let mut command = std::process::Command::new(support::bin("plexus-peer"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&config)
            .args(["--environment", "test", "--ping-interval", "500ms"])
            .arg("--data")
            .arg(dir.path().join("a"))
            .env("PLEXUS_JOIN_TOKEN", "s3cret")
            .env("RUST_LOG", "warn");
        command
    };
    let (mut a, _) = spawn_on_free_port(start_a);
    add_class(&client, &a.url, "Person").await;
    add_thing(&client, &a.url, "Person", "Ada", 36).await;
    wait_cached(&client, &b.url, &["PeerA"], SETTLE).await;
    let first_id = get(&client, &a.at("/v1/network/peers")).await.unwrap()["id"].clone();

    // A peer list without the network's token is refused.
    let refused = client
        .put(a.at("/p2p/genesis"))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // kill -9, restart on the same data at another port: the data is there,
    // and the peer registers again (a new id, its new URI).
    a.kill9();
    let (a, _) = spawn_on_free_port(start_a);
    let view = poll(SETTLE, "A registers again", || async {
        let view = get(&client, &a.at("/v1/network/peers")).await?;
        (view["state"] == "registered").then_some(view)
    })
    .await;
    assert_ne!(view["id"], first_id);
    poll(SETTLE, "B sees A's new URI", || async {
        let seen = view_of(&client, &b.url, "PeerA").await?;
        (seen["uri"] == a.url.as_str() && seen["schemaCached"] == true).then_some(())
    })
    .await;
    let answer = graphql(
        &client,
        &b.url,
        "{ Network { Get { PeerA { Things { Person { name size } } } } } }",
    )
    .await;
    assert_eq!(
        answer["data"]["Network"]["Get"]["PeerA"]["Things"]["Person"],
        json!([{"name": "Ada", "size": 36}]),
        "{answer}"
    );
}

#[test]
fn a_server_whose_port_was_taken_meanwhile_starts_on_a_fresh_one() {
    // What the other tests' processes do to a port chosen a moment before:
    // the first start finds it taken, exits, and the support starts the
    // peer again on another free port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut tries = 0;
    let (peer, port) = spawn_on_free_port(|port| {
        tries += 1;
        let port = if tries == 1 { taken_port } else { port };
        let mut command = std::process::Command::new(bin("plexus-peer"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.path().join(tries.to_string()))
            .env("RUST_LOG", "warn");
        command
    });
    assert_eq!(tries, 2, "one failed start, then one on a fresh port");
    assert_ne!(port, taken_port);
    assert_eq!(peer.url, format!("http://127.0.0.1:{port}"));
}
