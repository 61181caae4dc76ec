//! The real `plexus-peer` binary: create a schema and objects over HTTP, query
//! them, `kill -9` the process, restart it on the same data directory, and
//! find every acknowledged object again.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

mod support;

/// A running peer, killed (SIGKILL) when dropped.
struct Peer {
    child: Child,
    url: String,
}

impl Peer {
    fn start(data: &Path) -> Peer {
        let mut child = Command::new(support::bin("plexus-peer"))
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn plexus-peer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Peer { child, url }
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("peer");
    let client = reqwest::Client::new();
    let peer = Peer::start(&data);

    // A second peer on the same data directory refuses to start, in one line.
    let second = Command::new(support::bin("plexus-peer"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("run second peer");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("in use by another process")),
        "{stderr}"
    );

    let country =
        json!({"class": "Country", "properties": [{"name": "name", "dataType": ["string"]}]});
    let city = json!({"class": "City", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]},
        {"name": "inCountry", "dataType": ["Country"]}]});
    assert_eq!(
        post(&client, format!("{}/v1/schema/things", peer.url), country)
            .await
            .0,
        200
    );
    assert_eq!(
        post(&client, format!("{}/v1/schema/things", peer.url), city)
            .await
            .0,
        200
    );
    let (status, nl) = post(
        &client,
        format!("{}/v1/things", peer.url),
        json!({"class": "Country", "schema": {"name": "Netherlands"}}),
    )
    .await;
    assert_eq!(status, 200);
    let beacon = json!({"beacon": format!("weaviate://localhost/things/{}", nl["id"].as_str().expect("id"))});
    let mut acknowledged = vec![nl.clone()];
    for i in 0..20 {
        let body = json!({"class": "City", "schema": {"name": format!("city{i}"), "population": i * 1000, "inCountry": beacon}});
        let (status, object) = post(&client, format!("{}/v1/things", peer.url), body).await;
        assert_eq!(status, 200, "{object}");
        acknowledged.push(object);
    }

    let query = json!({"query": "query($min: Int!) { Local { Get { Things { City(limit: 100, where: {operator: GreaterThanEqual, path: [\"population\"], valueInt: $min}) { name inCountry { ... on Country { name } } } } } } }",
                       "variables": {"min": 15000}});
    let (status, before) = post(&client, format!("{}/v1/graphql", peer.url), query.clone()).await;
    assert_eq!(status, 200);
    assert!(before.get("errors").is_none(), "{before}");
    let found = before["data"]["Local"]["Get"]["Things"]["City"]
        .as_array()
        .expect("list")
        .clone();
    assert_eq!(found.len(), 5, "{before}");
    assert!(
        found
            .iter()
            .all(|c| c["inCountry"] == json!([{"name": "Netherlands"}])),
        "{before}"
    );

    peer.kill9();
    let peer = Peer::start(&data);
    for object in &acknowledged {
        let id = object["id"].as_str().expect("id");
        let response = client
            .get(format!("{}/v1/things/{id}", peer.url))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status().as_u16(), 200, "{id} lost");
        assert_eq!(&response.json::<Value>().await.expect("json"), object);
    }
    let (_, after) = post(&client, format!("{}/v1/graphql", peer.url), query).await;
    assert_eq!(after, before);
    let schema: Value = client
        .get(format!("{}/v1/schema", peer.url))
        .send()
        .await
        .expect("schema")
        .json()
        .await
        .expect("json");
    assert_eq!(
        schema["things"]["classes"]
            .as_array()
            .expect("classes")
            .len(),
        2
    );
}
