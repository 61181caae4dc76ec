//! The GraphQL engine on real peers: the attacks of issue 12 (fragment bombs
//! on the Local and Network paths with a memory ceiling, aliases with big
//! limits, oversized answers, `/p2p/ping` latency while queries run),
//! introspection, GetMeta over the network with exact figures, and GraphQL
//! over HTTP (GET, media types, status codes, GraphiQL).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const SETTLE: Duration = Duration::from_secs(15);
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The peer process's resident memory, in KiB.
fn vm_rss_kib(proc: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn fragment_bomb(levels: usize, root: &str, on: &str) -> String {
    let mut q = format!("{{ {root} }}\n");
    for i in 0..levels {
        q.push_str(&format!(
            "fragment F{i} on {on} {{ ...F{} ...F{} }}\n",
            i + 1,
            i + 1
        ));
    }
    q.push_str(&format!("fragment F{levels} on {on} {{ name }}\n"));
    q
}

/// POSTs `query` accepting `accept`; status, content type, body.
async fn ask(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    accept: &str,
) -> (u16, String, Value) {
    let response = client
        .post(format!("{url}/v1/graphql"))
        .header("accept", accept)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_refused_and_the_peer_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let genesis = genesis(&[]);
    let a = peer(
        &genesis,
        "PeerA",
        &dir.path().join("a"),
        &["--graphql-max-answer-bytes", "2000"],
    );
    let b = peer(&genesis, "PeerB", &dir.path().join("b"), &[]);
    add_class(&client, &a.url, "City").await;
    add_class(&client, &b.url, "City").await;
    for (name, size) in [("Amsterdam", 905), ("Utrecht", 361), ("Rotterdam", 651)] {
        add_thing(&client, &a.url, "City", name, size).await;
        add_thing(&client, &b.url, "City", name, size).await;
    }
    wait_cached(&client, &a.url, &["PeerB"], SETTLE).await;
    let rss_before = vm_rss_kib(&a);

    // Fragment bombs, Local (25 levels) and Network (23 levels): a 400 at once.
    for (levels, root, on) in [
        (25, "Local { Get { Things { City { ...F0 } } } }", "City"),
        (
            23,
            "Network { Get { PeerB { Things { City { ...F0 } } } } }",
            "PeerB_City",
        ),
    ] {
        let started = Instant::now();
        let (status, _, body) = ask(
            &client,
            &a.url,
            &fragment_bomb(levels, root, on),
            GRAPHQL_RESPONSE,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(message(&body).contains("fragments expanded"), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    let rss_after = vm_rss_kib(&a);
    assert!(
        rss_after < rss_before + 50 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // 400 aliases of City(limit: 10000): refused before running.
    let fields: String = (0..400)
        .map(|i| format!("a{i}: City(limit: 10000) {{ name }} "))
        .collect();
    let (status, _, body) = ask(
        &client,
        &a.url,
        &format!("{{ Local {{ Get {{ Things {{ {fields} }} }} }} }}"),
        GRAPHQL_RESPONSE,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("aliases"), "{body}");

    // An answer past --graphql-max-answer-bytes is replaced by a clear error.
    let fields: String = (0..40).map(|i| format!("n{i}: name ")).collect();
    let body = graphql(
        &client,
        &a.url,
        &format!("{{ Local {{ Get {{ Things {{ City {{ {fields} }} }} }} }} }}"),
    )
    .await;
    assert!(
        message(&body).contains("--graphql-max-answer-bytes"),
        "{body}"
    );

    // /p2p/ping answers within 100 ms while big queries run.
    let heavy: String = (0..90)
        .map(|i| format!("a{i}: City(limit: 100) {{ name size uuid }} "))
        .collect();
    let heavy = format!("{{ Local {{ Get {{ Things {{ {heavy} }} }} }} }}");
    let stop = Instant::now() + Duration::from_secs(2);
    let mut load = Vec::new();
    for _ in 0..8 {
        let (client, url, heavy) = (client.clone(), a.url.clone(), heavy.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop {
                let response = client
                    .post(format!("{url}/v1/graphql"))
                    .json(&json!({ "query": heavy }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await;
                n += 1;
            }
            n
        }));
    }
    let mut worst = Duration::ZERO;
    while Instant::now() < stop {
        let started = Instant::now();
        let status = client.get(a.at("/p2p/ping")).send().await.unwrap().status();
        assert_eq!(status, 200);
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut queries = 0;
    for l in load {
        queries += l.await.unwrap();
    }
    assert!(queries > 8, "the load ran {queries} queries");
    assert!(worst < Duration::from_millis(100), "worst ping {worst:?}");
}

#[tokio::test]
async fn introspection_get_meta_and_http_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let genesis = genesis(&[]);
    let a = peer(&genesis, "PeerA", &dir.path().join("a"), &[]);
    let b = peer(&genesis, "PeerB", &dir.path().join("b"), &[]);
    add_class(&client, &a.url, "Person").await;
    add_class(&client, &b.url, "City").await;
    for (name, size) in [("Amsterdam", 905), ("Utrecht", 361), ("Amsterdam", 10)] {
        add_thing(&client, &b.url, "City", name, size).await;
    }
    // PeerA may have cached PeerB's schema from before its class: wait
    // until its engine has the class (the view's next hash, then a rebuild).
    let body = poll(SETTLE, "PeerA's engine has PeerB_City", || async {
        let body = graphql(
            &client,
            &a.url,
            "{ __schema { queryType { name } } __type(name: \"PeerB_City\") { fields { name } } }",
        )
        .await;
        (!body["data"]["__type"].is_null()).then_some(body)
    })
    .await;

    // Introspection names the Local and Network types.
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "WeaviateObj");
    assert_eq!(
        body["data"]["__type"]["fields"],
        json!([{"name": "uuid"}, {"name": "name"}, {"name": "size"}])
    );

    // GetMeta over the network, exact figures.
    let body = graphql(
        &client,
        &a.url,
        "{ Network { GetMeta { PeerB { Things { City { meta { count } size { count minimum maximum mean sum } name { topOccurrences { value occurs } } } } } } } }",
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let city = &body["data"]["Network"]["GetMeta"]["PeerB"]["Things"]["City"];
    assert_eq!(city["meta"]["count"], 3);
    assert_eq!(
        city["size"],
        json!({"count": 3, "minimum": 10.0, "maximum": 905.0, "mean": 425.3333333333333, "sum": 1276.0})
    );
    assert_eq!(
        city["name"]["topOccurrences"],
        json!([{"value": "Amsterdam", "occurs": 2}, {"value": "Utrecht", "occurs": 1}])
    );

    // GET with variables and operationName.
    let response = client
        .get(a.at("/v1/graphql"))
        .header("accept", GRAPHQL_RESPONSE)
        .query(&[
            ("query", "query Q($n: Int) { Network { Get { PeerB { Things { City(limit: $n) { name } } } } } }"),
            ("variables", "{\"n\": 1}"),
            ("operationName", "Q"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(GRAPHQL_RESPONSE)
    );
    let body: Value = response.json().await.unwrap();
    // `limit: $n` with n = 1: one of PeerB's cities (objects come in id
    // order, and ids are random).
    let cities = body["data"]["Network"]["Get"]["PeerB"]["Things"]["City"]
        .as_array()
        .unwrap();
    assert_eq!(cities.len(), 1, "{body}");
    assert!(
        ["Amsterdam", "Utrecht"].contains(&cities[0]["name"].as_str().unwrap()),
        "{body}"
    );

    // Parse and validation failures: 400 with graphql-response+json, 200 with JSON.
    for query in [
        "{ Local { ",
        "{ Local { Get { Things { Nowhere { name } } } } }",
    ] {
        let (status, content_type, body) = ask(&client, &a.url, query, GRAPHQL_RESPONSE).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(content_type.starts_with(GRAPHQL_RESPONSE));
        assert!(body.get("data").is_none(), "{body}");
        let (status, content_type, body) = ask(&client, &a.url, query, "application/json").await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(content_type.starts_with("application/json"));
        assert!(body["errors"].is_array());
    }
    // A body that is not JSON is a 415; an unacceptable Accept a 406.
    let response = client
        .post(a.at("/v1/graphql"))
        .header("content-type", "text/plain")
        .body("{ Local { __typename } }")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (status, _, _) = ask(&client, &a.url, "{ Local { __typename } }", "text/plain").await;
    assert_eq!(status, 406);

    // A browser gets GraphiQL.
    let response = client
        .get(a.at("/v1/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("graphiql") && page.contains("/v1/graphiql/start.js"),
        "{page}"
    );
}
