#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use plexus_core::fanout::Outcome;
use plexus_core::network::PeerQuery;
use plexus_core::schema::parse_beacon;
use serde_json::json;

use super::*;

mod fetch;
mod queries;

/// Objects in insertion order, and the `(class, limit)` of every query.
#[derive(Default)]
pub(super) struct Memory {
    objects: Vec<Object>,
    queries: Mutex<Vec<(String, usize)>>,
}

impl Memory {
    fn new(objects: Vec<Object>) -> Self {
        Memory {
            objects,
            queries: Mutex::default(),
        }
    }

    pub(super) fn add(&mut self, n: u128, class: &str, values: Value) -> Uuid {
        let id = Uuid::from_u128(n);
        self.objects.push(Object {
            id,
            kind: Kind::Things,
            class: class.into(),
            schema: values.as_object().unwrap().clone(),
            creation_time_unix: 1,
            last_update_time_unix: 1,
        });
        id
    }

    /// The objects a reference value (one beacon or a list) points at.
    fn follow(&self, reference: &Value) -> Vec<Object> {
        let beacons = match reference {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        beacons
            .into_iter()
            .filter_map(|b| b.get("beacon")?.as_str().and_then(parse_beacon))
            .filter_map(|(kind, id)| self.objects.iter().find(|o| o.id == id && o.kind == kind))
            .cloned()
            .collect()
    }
}

impl Source for Memory {
    fn query(
        &self,
        kind: Kind,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, SourceError> {
        self.queries.lock().unwrap().push((class.to_owned(), limit));
        Ok(self
            .objects
            .iter()
            .filter(|o| o.kind == kind && o.class == class)
            .filter(|o| filter.is_none_or(|f| f.matches(&o.schema, &mut |r| self.follow(r))))
            .take(limit)
            .cloned()
            .collect())
    }

    fn get(&self, id: Uuid) -> Result<Option<Object>, SourceError> {
        Ok(self.objects.iter().find(|o| o.id == id).cloned())
    }
}

fn schema() -> Schema {
    serde_json::from_value(json!({"things": {"classes": [
        {"class": "City", "properties": [
            {"name": "name", "dataType": ["string"]},
            {"name": "population", "dataType": ["int"]},
            {"name": "capital", "dataType": ["boolean"]},
            {"name": "inCountry", "dataType": ["Country"]}]},
        {"class": "Country", "properties": [{"name": "name", "dataType": ["string"]}]}]}}))
    .unwrap()
}

fn object(class: &str, values: Value) -> Object {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Object {
        id: Uuid::from_u128(u128::from(
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )),
        kind: Kind::Things,
        class: class.into(),
        schema: values.as_object().unwrap().clone(),
        creation_time_unix: 1,
        last_update_time_unix: 1,
    }
}

fn data() -> Arc<dyn Source> {
    let nl = object("Country", json!({"name": "Netherlands"}));
    let beacon = json!({"beacon": format!("weaviate://localhost/things/{}", nl.id)});
    Arc::new(Memory::new(vec![
        object(
            "City",
            json!({"name": "Amsterdam", "population": 905234, "capital": true, "inCountry": [beacon]}),
        ),
        object(
            "City",
            json!({"name": "Rotterdam", "population": 651446, "capital": false}),
        ),
        object(
            "City",
            json!({"name": "Utrecht", "population": 361924, "capital": false}),
        ),
        object("City", json!({"name": "Rotterdam", "population": 10})),
        nl,
    ]))
}

fn engine() -> Engine {
    Engine::build(&schema(), &BTreeMap::new(), &Limits::default()).unwrap()
}

fn run(engine: &Engine, query: &str) -> Answer {
    engine
        .execute(GraphQLRequest::new(query), data(), None)
        .now_or_never()
        .unwrap()
}

#[test]
fn local_get_with_where_limit_references_and_typename() {
    let a = run(
        &engine(),
        r#"{ __typename Local { Get { Things { City(where: {operator: Equal, path: ["name"], valueString: "Amsterdam"}, limit: 5) { __typename name inCountry { ... on Country { name } } } } } } }"#,
    );
    assert!(!a.request_error, "{}", a.body);
    assert_eq!(a.body["data"]["__typename"], "WeaviateObj");
    let cities = &a.body["data"]["Local"]["Get"]["Things"]["City"];
    assert_eq!(
        cities,
        &json!([{"__typename": "City", "name": "Amsterdam", "inCountry": [{"name": "Netherlands"}]}])
    );
    let a = run(
        &engine(),
        "{ Local { Get { Things { City(limit: 2) { n: name } } } } }",
    );
    assert_eq!(
        a.body["data"]["Local"]["Get"]["Things"]["City"],
        json!([{"n": "Amsterdam"}, {"n": "Rotterdam"}])
    );
}

#[test]
fn unknown_fields_and_bad_arguments_are_request_errors_with_locations() {
    let a = run(&engine(), "{ Local { Get { Things { City { mayor } } } } }");
    assert!(a.request_error);
    assert!(a.body.get("data").is_none(), "{}", a.body);
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("mayor")
    );
    assert!(a.body["errors"][0]["locations"].is_array());
    let a = run(
        &engine(),
        "{ Local { Get { Things { City(limit: 10001) { name } } } } }",
    );
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{}",
        a.body
    );
    let a = run(
        &engine(),
        "{ Local { Get { Things { City(where: {operator: Equal, path: [\"nope\"], valueString: \"x\"}) { name } } } } }",
    );
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{}",
        a.body
    );
}

#[test]
fn introspection_answers_schema_and_type() {
    let a = run(
        &engine(),
        "{ __schema { queryType { name } types { name } } __type(name: \"City\") { fields { name } } }",
    );
    assert!(!a.request_error, "{}", a.body);
    assert_eq!(
        a.body["data"]["__schema"]["queryType"]["name"],
        "WeaviateObj"
    );
    let fields: Vec<&str> = a.body["data"]["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["uuid", "name", "population", "capital", "inCountry"]
    );
}

#[test]
fn get_meta_has_exact_figures() {
    let a = run(
        &engine(),
        "{ Local { GetMeta { Things { City { meta { count } population { count type minimum maximum mean sum } name { topOccurrences { value occurs } } capital { totalTrue totalFalse percentageTrue percentageFalse } } } } } }",
    );
    assert!(!a.request_error, "{}", a.body);
    let city = &a.body["data"]["Local"]["GetMeta"]["Things"]["City"];
    assert_eq!(city["meta"]["count"], 4);
    assert_eq!(
        city["population"],
        json!({"count": 4, "type": "int", "minimum": 10.0, "maximum": 905234.0, "mean": 479653.5, "sum": 1918614.0})
    );
    assert_eq!(
        city["name"]["topOccurrences"],
        json!([{"value": "Rotterdam", "occurs": 2}, {"value": "Amsterdam", "occurs": 1}, {"value": "Utrecht", "occurs": 1}])
    );
    let third = 1.0 / 3.0;
    assert_eq!(
        city["capital"],
        json!({"totalTrue": 1, "totalFalse": 2, "percentageTrue": third, "percentageFalse": 2.0 * third})
    );
}

fn fragment_bomb(levels: usize, root: &str) -> String {
    let mut q = format!("{{ {root} }}\n");
    for i in 0..levels {
        q.push_str(&format!(
            "fragment F{i} on City {{ ...F{} ...F{} }}\n",
            i + 1,
            i + 1
        ));
    }
    q.push_str(&format!("fragment F{levels} on City {{ name }}\n"));
    q
}

#[test]
fn a_fragment_bomb_is_refused_quickly() {
    let started = Instant::now();
    let a = run(
        &engine(),
        &fragment_bomb(25, "Local { Get { Things { City { ...F0 } } } }"),
    );
    assert!(a.request_error, "{}", a.body);
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("fragments expanded"),
        "{}",
        a.body
    );
    assert!(
        started.elapsed().as_millis() < 500,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn many_aliases_and_big_limits_are_refused() {
    let fields: String = (0..400)
        .map(|i| format!("a{i}: City(limit: 10000) {{ name }} "))
        .collect();
    let a = run(
        &engine(),
        &format!("{{ Local {{ Get {{ Things {{ {fields} }} }} }} }}"),
    );
    assert!(a.request_error);
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("aliases"),
        "{}",
        a.body
    );
    let fields: String = (0..3)
        .map(|i| format!("a{i}: City(limit: 5000) {{ name }} "))
        .collect();
    let a = run(
        &engine(),
        &format!("{{ Local {{ Get {{ Things {{ {fields} }} }} }} }}"),
    );
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("objects"),
        "{}",
        a.body
    );
    let a = engine()
        .execute(
            GraphQLRequest {
                query: "query($n: Int) { Local { Get { Things { a: City(limit: $n) { name } b: City(limit: $n) { name } } } } }".into(),
                variables: Some(json!({"n": 9000}).as_object().unwrap().clone()),
                operation_name: None,
            },
            data(),
            None,
        )
        .now_or_never()
        .unwrap();
    assert!(
        a.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("objects"),
        "{}",
        a.body
    );
}

/// Runs `query` as a peer in a network does: [`Engine::begin`], each
/// planned part answered from a fixed Local answer (the queries asked are
/// pushed to `asked`), merged by the core, then [`Engine::execute`].
fn through_network(engine: &Engine, query: &str, asked: &mut Vec<PeerQuery>) -> Answer {
    let request = GraphQLRequest::new(query);
    let plan = match engine.begin(&request, data()).now_or_never().unwrap() {
        Step::Answer(answer) => return answer,
        Step::Network(plan) => plan,
    };
    let outcomes = plan
        .queries
        .iter()
        .map(|q| {
            let mut data = Map::new();
            for i in 0..q.parts.len() {
                data.insert(
                    format!("q{i}"),
                    json!({"Get": {"Things": {"City": [{"name": "Berlin", "inCountry": [{"__typename": "Country", "name": "Germany"}]}]}}}),
                );
            }
            Outcome::Answered(json!({ "data": data }))
        })
        .collect();
    asked.extend(plan.queries.iter().cloned());
    let merged = plexus_core::network::merge(&plan, outcomes);
    engine
        .execute(request, data(), Some(merged))
        .now_or_never()
        .unwrap()
}

#[test]
fn network_sends_one_request_per_peer_and_serves_the_merged_answer() {
    let remotes = BTreeMap::from([(PeerName::new("PeerB").unwrap(), Arc::new(schema()))]);
    let limits = Limits {
        max_aliases: 2_000,
        max_complexity: 10_000,
        ..Limits::default()
    };
    let engine = Engine::build(&schema(), &remotes, &limits).unwrap();
    let fields: String = (0..1000)
        .map(|i| format!("a{i}: PeerB {{ Things {{ City(limit: 1) {{ name }} }} }} "))
        .collect();
    let mut asked = Vec::new();
    let a = through_network(
        &engine,
        &format!(
            "{{ Network(networkTimeout: 700) {{ Get {{ {fields} x: PeerB {{ Things {{ City {{ __typename name inCountry {{ ... on PeerB_Country {{ name }} }} }} }} }} }} }} }}"
        ),
        &mut asked,
    );
    assert!(!a.request_error, "{}", a.body);
    assert_eq!(asked.len(), 1, "one request to PeerB");
    let get = &a.body["data"]["Network"]["Get"];
    assert_eq!(get["a999"]["Things"]["City"], json!([{"name": "Berlin"}]));
    assert_eq!(
        get["x"]["Things"]["City"],
        json!([{"__typename": "PeerB_City", "name": "Berlin", "inCountry": [{"name": "Germany"}]}])
    );
}

#[test]
fn begin_plans_only_valid_network_queries_and_answers_local_ones() {
    let remotes = BTreeMap::from([(PeerName::new("PeerB").unwrap(), Arc::new(schema()))]);
    let engine = Engine::build(&schema(), &remotes, &Limits::default()).unwrap();
    let request = GraphQLRequest::new(
        "{ Network(networkTimeout: 250) { Get { PeerB { Things { City { name } } } } } }",
    );
    let Step::Network(plan) = engine.begin(&request, data()).now_or_never().unwrap() else {
        panic!("a Network query is planned")
    };
    assert_eq!(plan.timeout, Some(250));
    assert_eq!(plan.queries.len(), 1);
    let mut asked = Vec::new();
    for bad in [
        // An unknown class of a known peer: a validation error, nothing asked.
        "{ Network { Get { PeerB { Things { Nope { name } } } } } }",
        "{ Network(networkTimeout: \"x\") { Get { PeerB { Things { City { name } } } } } }",
        "{ Network(networkTimeout: -1) { Get { PeerB { Things { City { name } } } } } }",
    ] {
        let a = through_network(&engine, bad, &mut asked);
        assert!(a.request_error, "{bad}: {}", a.body);
    }
    assert!(asked.is_empty(), "{asked:?}");
    // A Local query runs in the first step.
    let local = GraphQLRequest::new("{ Local { Get { Things { City(limit: 1) { name } } } } }");
    let Step::Answer(a) = engine.begin(&local, data()).now_or_never().unwrap() else {
        panic!("a Local query is answered at once")
    };
    assert_eq!(
        a.body["data"]["Local"]["Get"]["Things"]["City"][0]["name"],
        "Amsterdam"
    );
}

#[test]
fn network_fragment_bomb_is_refused_before_planning() {
    let remotes = BTreeMap::from([(PeerName::new("PeerB").unwrap(), Arc::new(schema()))]);
    let engine = Engine::build(&schema(), &remotes, &Limits::default()).unwrap();
    let started = Instant::now();
    let query = fragment_bomb(
        23,
        "Network { Get { PeerB { Things { City { ...F0 } } } } }",
    )
    .replace("on City", "on PeerB_City");
    let mut asked = Vec::new();
    let a = through_network(&engine, &query, &mut asked);
    assert!(a.request_error, "{}", a.body);
    assert!(asked.is_empty());
    assert!(started.elapsed().as_millis() < 500);
}

#[test]
fn network_without_a_remote_is_a_field_error() {
    let remotes = BTreeMap::from([(PeerName::new("PeerB").unwrap(), Arc::new(schema()))]);
    let engine = Engine::build(&schema(), &remotes, &Limits::default()).unwrap();
    let a = run(
        &engine,
        "{ Local { Get { Things { City(limit: 1) { name } } } } Network { Get { PeerB { Things { City { name } } } } } }",
    );
    assert!(!a.request_error, "{}", a.body);
    assert_eq!(a.body["data"]["Network"], Value::Null);
    assert_eq!(a.body["errors"][0]["message"], NO_NETWORK);
    assert_eq!(
        a.body["data"]["Local"]["Get"]["Things"]["City"][0]["name"],
        "Amsterdam"
    );
}

#[test]
fn a_failing_field_is_null_with_its_path_and_the_rest_stands() {
    let a = run(
        &engine(),
        "{ Local { Get { Things { ok: City(limit: 1) { name } bad: City(where: {operator: Equal, path: [\"population\"], valueString: \"x\"}) { name } } } } }",
    );
    assert!(!a.request_error, "{}", a.body);
    let things = &a.body["data"]["Local"]["Get"]["Things"];
    assert_eq!(things["ok"], json!([{"name": "Amsterdam"}]));
    assert_eq!(things["bad"], Value::Null);
    assert_eq!(
        a.body["errors"][0]["path"],
        json!(["Local", "Get", "Things", "bad"])
    );
}

#[test]
fn parsed_documents_are_kept_within_their_byte_bound() {
    let engine = Engine::build(
        &schema(),
        &BTreeMap::new(),
        &Limits {
            max_cached_query_bytes: 200,
            ..Limits::default()
        },
    )
    .unwrap();
    let query =
        |n: usize| format!("{{ Local {{ Get {{ Things {{ City(limit: {n}) {{ name }} }} }} }} }}");
    let text = query(1);
    // The same text twice: kept once, noted as validated once it ran, and
    // the second answer (which skips validation) is the same.
    let first = run(&engine, &text);
    assert_eq!(engine.documents.held_now(), (1, 1, text.len()));
    assert_eq!(run(&engine, &text), first);
    assert_eq!(engine.documents.held_now(), (1, 1, text.len()));
    // A document that fails validation is kept but never noted: it fails
    // every time.
    let bad = "{ Local { Get { Things { City { nope } } } } }";
    for _ in 0..2 {
        let a = run(&engine, bad);
        assert!(a.request_error, "{}", a.body);
        assert!(a.body.to_string().contains("nope"), "{}", a.body);
    }
    assert_eq!(engine.documents.held_now(), (2, 1, text.len() + bad.len()));
    // A kept document is weighed again with each request's variables.
    let with_var = "query Q($n: Int) { Local { Get { Things { City(limit: $n) { name } } } } }";
    let mut big = GraphQLRequest::new(with_var);
    big.variables = Some(json!({ "n": 1_000_000 }).as_object().unwrap().clone());
    let mut small = big.clone();
    small.variables = Some(json!({ "n": 1 }).as_object().unwrap().clone());
    for _ in 0..2 {
        let a = engine
            .execute(small.clone(), data(), None)
            .now_or_never()
            .unwrap();
        assert!(!a.request_error, "{}", a.body);
        let a = engine
            .execute(big.clone(), data(), None)
            .now_or_never()
            .unwrap();
        assert!(a.request_error, "{}", a.body);
        assert!(
            a.body.to_string().contains("--graphql-max-objects"),
            "{}",
            a.body
        );
    }
    // With variables it ran, but is not noted: async-graphql's validation
    // also checks variables' values. Once the same text ran without
    // variables it is noted, and a bad value is still refused.
    assert_eq!(engine.documents.held_now().1, 1);
    assert!(!run(&engine, with_var).request_error);
    assert_eq!(engine.documents.held_now().1, 2);
    let mut wrong = big.clone();
    wrong.variables = Some(json!({ "n": "ten" }).as_object().unwrap().clone());
    let a = engine.execute(wrong, data(), None).now_or_never().unwrap();
    assert!(a.request_error, "{}", a.body);
    // Past 200 bytes of text the least recently used go first.
    for n in 2..10 {
        run(&engine, &query(n));
        let (count, _, bytes) = engine.documents.held_now();
        assert!(
            bytes <= 200 && count >= 1,
            "{count} documents, {bytes} bytes"
        );
    }
    // A text that does not parse is not kept; nor is one over the bound.
    let before = engine.documents.held_now();
    assert!(run(&engine, "{ Local {").request_error);
    let long = format!("{{ Local {{ __typename }} {} }}", " ".repeat(300));
    assert!(!run(&engine, &long).request_error);
    assert_eq!(engine.documents.held_now(), before);
}
