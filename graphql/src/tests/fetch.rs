//! Local Fetch, Fuzzy and Introspect over the committed contextionary.

use super::*;

fn meaning() -> Option<Arc<Meaning>> {
    let bytes = include_bytes!("../../../data/contextionary/glove-6b-50d-50k.ctx");
    let contextionary = plexus_core::contextionary::Contextionary::parse(bytes.to_vec()).unwrap();
    Some(Arc::new(Meaning {
        contextionary: Arc::new(contextionary),
        peer: "PeerA".into(),
    }))
}

fn places() -> (Schema, Arc<dyn Source>) {
    let class = |name: &str| json!({"class": name, "properties": [{"name": "name", "dataType": ["string"]}]});
    let schema: Schema = serde_json::from_value(json!({"things": {"classes": [
        class("City"), class("Town"), class("Village"), class("Airplane"),
        {"class": "Harbour", "properties": [{"name": "description", "dataType": ["text"]}]}
    ]}}))
    .unwrap();
    let mut memory = Memory::default();
    memory.add(1, "City", json!({"name": "Amsterdam"}));
    memory.add(2, "City", json!({"name": "Utrecht"}));
    memory.add(3, "Town", json!({"name": "Amsterdam"}));
    memory.add(4, "Village", json!({"name": "Amsterdam"}));
    memory.add(5, "Airplane", json!({"name": "Amsterdam"}));
    memory.add(
        6,
        "Harbour",
        json!({"description": "the port of Rotterdam, the largest"}),
    );
    (schema, Arc::new(memory))
}

fn ask(engine: &Engine, source: &Arc<dyn Source>, query: &str) -> Value {
    engine
        .execute(GraphQLRequest::new(query), source.clone(), None)
        .now_or_never()
        .unwrap()
        .body
}

/// The `className` of each item of a Fetch or Introspect list.
fn class_names(found: &[Value]) -> Vec<&str> {
    found
        .iter()
        .map(|f| f["className"].as_str().unwrap())
        .collect()
}

fn beacon(n: u128) -> String {
    format!("weaviate://PeerA/things/{}", Uuid::from_u128(n))
}

#[test]
fn local_fetch_finds_the_near_classes_objects_and_not_the_airplane() {
    let (schema, source) = places();
    let engine = Engine::build(&schema, &BTreeMap::new(), &Limits::default())
        .unwrap()
        .with_meaning(meaning());
    let body = ask(
        &engine,
        &source,
        r#"{ Local { Fetch { Things(where: {
            class: {name: "City", certainty: 0.6},
            properties: [{name: "name", certainty: 0.9, operator: Equal, valueString: "Amsterdam"}]
        }) { className beacon certainty } } } }"#,
    );
    let found = body["data"]["Local"]["Fetch"]["Things"].as_array().unwrap();
    let got: Vec<(&str, &str)> = found
        .iter()
        .map(|f| {
            (
                f["className"].as_str().unwrap(),
                f["beacon"].as_str().unwrap(),
            )
        })
        .collect();
    let (b1, b3, b4) = (beacon(1), beacon(3), beacon(4));
    assert_eq!(
        got,
        [
            ("City", b1.as_str()),
            ("Town", b3.as_str()),
            ("Village", b4.as_str())
        ],
        "{body}"
    );
    let certainty = |i: usize| found[i]["certainty"].as_f64().unwrap();
    assert_eq!(certainty(0), 1.0);
    assert!((certainty(1) - 0.758).abs() < 0.001, "{body}");
    assert!((certainty(2) - 0.663).abs() < 0.001, "{body}");

    // Keywords of the query pull its meaning (City + airplane: Airplane
    // comes in at 0.745, Town drops out); `first` bounds the objects.
    let keyed = |first: usize| {
        let body = ask(
            &engine,
            &source,
            &format!(
                r#"{{ Local {{ Fetch {{ Things(where: {{
                    class: {{name: "City", certainty: 0.7, keywords: [{{value: "airplane", weight: 1}}]}},
                    first: {first} }}) {{ className }} }} }} }}"#
            ),
        );
        let mut classes: Vec<String> = body["data"]["Local"]["Fetch"]["Things"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|f| f["className"].as_str().unwrap().to_owned())
            .collect();
        classes.sort();
        classes
    };
    assert_eq!(keyed(10), ["Airplane", "City", "City"]);
    assert_eq!(keyed(2).len(), 2);

    // A word outside the vocabulary is an error naming it.
    let body = ask(
        &engine,
        &source,
        r#"{ Local { Fetch { Things(where: {class: {name: "Qwxzy", certainty: 0.6}}) { beacon } } } }"#,
    );
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("\"qwxzy\""), "{body}");
}

#[test]
fn fuzzy_introspect_and_beacon() {
    let (schema, source) = places();
    let engine = Engine::build(&schema, &BTreeMap::new(), &Limits::default())
        .unwrap()
        .with_meaning(meaning());
    let body = ask(
        &engine,
        &source,
        r#"{ Local { Fetch { Fuzzy(value: "amsterdam", certainty: 0.75) { className beacon certainty } } } }"#,
    );
    let found = body["data"]["Local"]["Fetch"]["Fuzzy"].as_array().unwrap();
    let classes = class_names(found);
    // The four objects named Amsterdam (certainty 1), then the text that
    // holds a near word (rotterdam), not Utrecht.
    assert_eq!(
        classes,
        ["City", "Town", "Village", "Airplane", "Harbour"],
        "{body}"
    );
    assert!(found[4]["certainty"].as_f64().unwrap() < 1.0);

    let body = ask(
        &engine,
        &source,
        r#"{ Local { Introspect { Things(where: [{class: [{name: "City", certainty: 0.6}],
            properties: [{name: "name", certainty: 0.9}]}]) {
            weaviate className certainty properties { propertyName certainty } } } } }"#,
    );
    let found = body["data"]["Local"]["Introspect"]["Things"]
        .as_array()
        .unwrap();
    let classes = class_names(found);
    assert_eq!(classes, ["City", "Town", "Village"], "{body}");
    assert_eq!(found[0]["weaviate"], "PeerA");
    assert_eq!(
        found[1]["properties"],
        json!([{"propertyName": "name", "certainty": 1.0}])
    );

    let query = format!(
        r#"{{ Local {{ Introspect {{ Beacon(id: "{}") {{ weaviate className properties {{ propertyName }} }} }} }} }}"#,
        beacon(3)
    );
    let body = ask(&engine, &source, &query);
    assert_eq!(
        body["data"]["Local"]["Introspect"]["Beacon"],
        json!({"weaviate": "PeerA", "className": "Town", "properties": [{"propertyName": "name"}]}),
        "{body}"
    );

    // Without a contextionary, Fetch answers an error and the rest stands.
    let bare = Engine::build(&schema, &BTreeMap::new(), &Limits::default()).unwrap();
    let body = ask(
        &bare,
        &source,
        r#"{ Local { Fetch { Fuzzy(value: "x", certainty: 0.5) { beacon } } Get { Things { City { name } } } } }"#,
    );
    assert_eq!(body["errors"][0]["message"], NO_CONTEXTIONARY, "{body}");
    assert_eq!(
        body["data"]["Local"]["Get"]["Things"]["City"][0]["name"],
        "Amsterdam"
    );
}

#[test]
fn network_fetch_asks_the_near_peers_and_serves_their_ranked_items_beside_an_error_per_peer() {
    let (schema, source) = places();
    let one = |class: &str| -> Arc<Schema> {
        Arc::new(
            serde_json::from_value(json!({"things": {"classes": [
                {"class": class, "properties": [{"name": "name", "dataType": ["string"]}]}]}}))
            .unwrap(),
        )
    };
    let remotes = BTreeMap::from([
        (PeerName::new("PeerA").unwrap(), Arc::new(schema.clone())),
        (PeerName::new("PeerB").unwrap(), one("Town")),
        (PeerName::new("PeerC").unwrap(), one("Airplane")),
        (PeerName::new("PeerD").unwrap(), one("Village")),
    ]);
    let engine = Engine::build(&schema, &remotes, &Limits::default())
        .unwrap()
        .with_meaning(meaning());
    let request = GraphQLRequest::new(
        r#"{ Network(networkTimeout: 300) { Fetch { found: Things(where: {
            class: {name: "City", certainty: 0.6},
            properties: [{name: "name", certainty: 0.9, operator: Equal, valueString: "Amsterdam"}]
        }) { className beacon certainty } } } }"#,
    );
    let plan = match engine
        .begin(&request, source.clone())
        .now_or_never()
        .unwrap()
    {
        Step::Network(plan) => plan,
        Step::Answer(answer) => panic!("{}", answer.body),
    };
    let asked: Vec<&str> = plan.queries.iter().map(|q| q.peer.as_str()).collect();
    assert_eq!(
        asked,
        ["PeerA", "PeerB", "PeerD"],
        "the airplane's peer is not asked"
    );
    // PeerA (this peer) answers its Local part; PeerB is down, PeerD times out.
    let own = engine
        .execute(
            GraphQLRequest::new(plan.queries[0].query.clone()),
            source.clone(),
            None,
        )
        .now_or_never()
        .unwrap();
    let outcomes = vec![
        Outcome::Answered(own.body),
        Outcome::Failed("connection refused".into()),
        Outcome::TimedOut {
            after: std::time::Duration::from_millis(300),
            sent: true,
        },
    ];
    let merged = plexus_core::network::merge(&plan, outcomes);
    let body = engine
        .execute(request, source, Some(merged))
        .now_or_never()
        .unwrap()
        .body;
    let found = body["data"]["Network"]["Fetch"]["found"]
        .as_array()
        .unwrap();
    let classes = class_names(found);
    assert_eq!(classes, ["City", "Town", "Village"], "{body}");
    assert_eq!(found[0]["beacon"], beacon(1));
    assert!(found[0].get("_rankCertainty").is_none(), "{body}");
    let errors: Vec<(&str, &Value)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["message"].as_str().unwrap(), &e["path"]))
        .collect();
    assert_eq!(
        errors,
        [
            (
                "peer PeerB did not answer: connection refused",
                &json!(["Network", "Fetch", "found"])
            ),
            (
                "peer PeerD did not answer: no answer within 300ms",
                &json!(["Network", "Fetch", "found"])
            ),
        ],
        "{body}"
    );
}

#[test]
fn network_introspect_ranks_every_peers_classes_and_beacon_asks_its_peer() {
    let (schema, source) = places();
    let remotes = BTreeMap::from([
        (PeerName::new("PeerA").unwrap(), Arc::new(schema.clone())),
        (PeerName::new("PeerB").unwrap(), Arc::new(schema.clone())),
    ]);
    let engine = Engine::build(&schema, &remotes, &Limits::default())
        .unwrap()
        .with_meaning(meaning());
    let request = GraphQLRequest::new(format!(
        r#"{{ Network {{ Introspect {{ Things(where: [{{class: [{{name: "City", certainty: 0.6}}]}}]) {{ weaviate className }}
             Beacon(id: "{}") {{ className }} }} }} }}"#,
        beacon(3).replace("PeerA", "PeerB")
    ));
    let plan = match engine
        .begin(&request, source.clone())
        .now_or_never()
        .unwrap()
    {
        Step::Network(plan) => plan,
        Step::Answer(answer) => panic!("{}", answer.body),
    };
    assert_eq!(plan.queries.len(), 2);
    assert_eq!(
        plan.queries[1].parts.len(),
        2,
        "PeerB: the list and the beacon"
    );
    let outcomes = plan
        .queries
        .iter()
        .map(|q| {
            let mut answer = engine
                .execute(GraphQLRequest::new(q.query.clone()), source.clone(), None)
                .now_or_never()
                .unwrap()
                .body;
            // Each peer names itself.
            let text = answer
                .to_string()
                .replace("\"PeerA\"", &format!("\"{}\"", q.peer));
            answer = serde_json::from_str(&text).unwrap();
            Outcome::Answered(answer)
        })
        .collect();
    let merged = plexus_core::network::merge(&plan, outcomes);
    let body = engine
        .execute(request, source, Some(merged))
        .now_or_never()
        .unwrap()
        .body;
    let listed: Vec<String> = body["data"]["Network"]["Introspect"]["Things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}.{}",
                f["weaviate"].as_str().unwrap(),
                f["className"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            "PeerA.City",
            "PeerB.City",
            "PeerA.Town",
            "PeerB.Town",
            "PeerA.Village",
            "PeerB.Village"
        ],
        "{body}"
    );
    assert_eq!(
        body["data"]["Network"]["Introspect"]["Beacon"],
        json!({"className": "Town"})
    );
    assert!(body.get("errors").is_none(), "{body}");
}
