//! The real `plexus-peer` binary: create a schema and objects over HTTP, query
//! them, `kill -9` the process, restart it on the same data directory, and
//! find every acknowledged object again.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// One batch of `size` City objects, numbered from `first`.
fn city_batch(first: usize, size: usize) -> Value {
    let things: Vec<Value> = (first..first + size)
        .map(|i| json!({"class": "City", "schema": {"name": format!("c{i}"), "population": i}}))
        .collect();
    json!({ "things": things })
}

async fn names_where(client: &reqwest::Client, url: &str, filter: &str) -> Vec<String> {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(", where: {filter}")
    };
    let query =
        format!("{{ Local {{ Get {{ Things {{ City(limit: 10000{filter}) {{ name }} }} }} }} }}");
    let (status, answer) = post(
        client,
        format!("{url}/v1/graphql"),
        json!({ "query": query }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut names: Vec<String> = answer["data"]["Local"]["Get"]["Things"]["City"]
        .as_array()
        .unwrap_or_else(|| panic!("no list in {answer}"))
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn objects_and_indexes_agree_after_kill_9_during_a_batch_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("peer");
    let client = reqwest::Client::new();
    let peer = Peer::start(&data);
    let city = json!({"class": "City", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]});
    assert_eq!(
        post(&client, format!("{}/v1/schema/things", peer.url), city)
            .await
            .0,
        200
    );

    // Four writers post batches until the peer dies under them.
    const SIZE: usize = 200;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, url, acknowledged) = (client.clone(), peer.url.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for b in 0.. {
                let first = (b * 4 + w) * SIZE;
                let Ok(response) = client
                    .post(format!("{url}/v1/batching/things"))
                    .json(&city_batch(first, SIZE))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(answers) = response.json::<Vec<Value>>().await else {
                    return;
                };
                let mut done = acknowledged.lock().expect("lock");
                for a in answers {
                    assert_eq!(a["result"]["status"], "SUCCESS", "{a}");
                    done.push(a["schema"]["name"].as_str().expect("name").to_owned());
                }
            }
        }));
    }
    support::poll(Duration::from_secs(30), "some acknowledged batches", || {
        let acknowledged = acknowledged.clone();
        async move { (acknowledged.lock().expect("lock").len() >= 8 * SIZE).then_some(()) }
    })
    .await;
    peer.kill9();
    for w in writers {
        w.await.expect("writer");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    // Every acknowledged object is found by a scan and by the indexes, and
    // each index answer equals the scan's.
    let peer = Peer::start(&data);
    let everything = names_where(&client, &peer.url, "").await;
    let by_prefix = names_where(
        &client,
        &peer.url,
        r#"{operator: Like, path: ["name"], valueString: "c*"}"#,
    )
    .await;
    assert_eq!(by_prefix, everything);
    let by_range = names_where(
        &client,
        &peer.url,
        r#"{operator: GreaterThanEqual, path: ["population"], valueInt: 0}"#,
    )
    .await;
    assert_eq!(by_range, everything);
    assert_eq!(everything.len() % SIZE, 0, "whole batches only");
    for name in &acknowledged {
        assert!(everything.binary_search(name).is_ok(), "{name} lost");
    }
    for name in everything.iter().step_by(97) {
        let found = names_where(
            &client,
            &peer.url,
            &format!(r#"{{operator: Equal, path: ["name"], valueString: "{name}"}}"#),
        )
        .await;
        assert_eq!(found, std::slice::from_ref(name));
    }
    drop(peer);

    // The database itself: every index entry matches its object, and back.
    let store = plexus_peer::store::Store::open(&data).expect("open the database");
    assert_eq!(store.check_indexes().expect("read"), None);
    assert_eq!(
        store.snapshot().expect("snapshot").len().expect("len") as usize,
        everything.len()
    );
}
