//! Local queries through the engine over a richer data set: the behaviours
//! the hand-written executor's tests proved (filters of every operator,
//! variables, references, geo, request errors, limits), kept when it went.

use std::sync::Arc;

use futures::FutureExt;
use plexus_core::schema::Schema;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Memory;
use crate::{Answer, Engine, GraphQLRequest, Limits};

fn beacon(id: Uuid) -> Value {
    json!({"beacon": format!("weaviate://localhost/things/{id}")})
}

fn schema() -> Schema {
    serde_json::from_value(json!({"things": {"classes": [
        {"class": "Country", "properties": [{"name": "name", "dataType": ["string"]}]},
        {"class": "City", "properties": [
            {"name": "name", "dataType": ["string"]},
            {"name": "population", "dataType": ["int"]},
            {"name": "area", "dataType": ["number"]},
            {"name": "capital", "dataType": ["boolean"]},
            {"name": "founded", "dataType": ["date"]},
            {"name": "location", "dataType": ["geoCoordinates"]},
            {"name": "inCountry", "dataType": ["Country", "City"]}]}]}}))
    .unwrap()
}

fn data() -> Arc<Memory> {
    let mut m = Memory::default();
    let nl = m.add(1, "Country", json!({"name": "Netherlands"}));
    let de = m.add(2, "Country", json!({"name": "Germany"}));
    m.add(
        10,
        "City",
        json!({"name": "Amsterdam", "population": 905234, "capital": true, "area": 219.3,
        "founded": "1275-10-27T00:00:00Z", "location": {"latitude": 52.37, "longitude": 4.89},
        "inCountry": [beacon(nl)]}),
    );
    m.add(11, "City", json!({"name": "Rotterdam", "population": 651446, "capital": false, "inCountry": beacon(nl)}));
    m.add(12, "City", json!({"name": "Berlin", "population": 3645000, "capital": true,
        "founded": "1237-01-01T00:00:00+01:00", "inCountry": [beacon(de), beacon(Uuid::from_u128(99))]}));
    Arc::new(m)
}

fn run_on(source: Arc<Memory>, query: &str, variables: Value) -> Answer {
    let engine = Engine::build(&schema(), &Default::default(), &Limits::default()).unwrap();
    let request = GraphQLRequest {
        query: query.into(),
        variables: variables.as_object().cloned(),
        operation_name: None,
    };
    engine
        .execute(request, source, None)
        .now_or_never()
        .unwrap()
}

fn run(query: &str, variables: Value) -> Answer {
    run_on(data(), query, variables)
}

fn message(answer: &Answer, i: usize) -> String {
    answer.body["errors"][i]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn city_names_where(filter: &str) -> Vec<String> {
    let a = run(
        &format!("{{ Local {{ Get {{ Things {{ City(where: {filter}) {{ name }} }} }} }} }}"),
        json!({}),
    );
    assert!(a.body.get("errors").is_none(), "{filter}: {}", a.body);
    a.body["data"]["Local"]["Get"]["Things"]["City"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn answers_a_local_get() {
    let a = run(
        "{ Local { Get { Things { City { name population uuid __typename } } } } }",
        json!({}),
    );
    assert!(a.body.get("errors").is_none(), "{}", a.body);
    let all = &a.body["data"]["Local"]["Get"]["Things"]["City"];
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(
        all[0],
        json!({"name": "Amsterdam", "population": 905234, "uuid": Uuid::from_u128(10).to_string(), "__typename": "City"})
    );
}

#[test]
fn filters_compare_values() {
    let cases: [(&str, &[&str]); 13] = [
        (
            "{operator: Equal, path: [\"name\"], valueString: \"Berlin\"}",
            &["Berlin"],
        ),
        (
            "{operator: NotEqual, path: [\"name\"], valueString: \"Berlin\"}",
            &["Amsterdam", "Rotterdam"],
        ),
        (
            "{operator: GreaterThan, path: [\"population\"], valueInt: 905234}",
            &["Berlin"],
        ),
        (
            "{operator: GreaterThanEqual, path: [\"population\"], valueInt: 905234}",
            &["Amsterdam", "Berlin"],
        ),
        (
            "{operator: LessThan, path: [\"population\"], valueNumber: 905234.5}",
            &["Amsterdam", "Rotterdam"],
        ),
        (
            "{operator: LessThanEqual, path: [\"population\"], valueInt: 651446}",
            &["Rotterdam"],
        ),
        (
            "{operator: Equal, path: [\"capital\"], valueBoolean: true}",
            &["Amsterdam", "Berlin"],
        ),
        (
            "{operator: Like, path: [\"name\"], valueText: \"*dam\"}",
            &["Amsterdam", "Rotterdam"],
        ),
        (
            "{operator: Like, path: [\"name\"], valueString: \"B?rlin\"}",
            &["Berlin"],
        ),
        // Berlin's 1237-01-01T00:00:00+01:00 is 1236-12-31T23:00:00Z.
        (
            "{operator: LessThan, path: [\"founded\"], valueDate: \"1237-01-01T00:00:00Z\"}",
            &["Berlin"],
        ),
        (
            "{operator: And, operands: [{operator: Equal, path: [\"capital\"], valueBoolean: true}, {operator: LessThan, path: [\"population\"], valueInt: 1000000}]}",
            &["Amsterdam"],
        ),
        (
            "{operator: Or, operands: [{operator: Equal, path: [\"name\"], valueString: \"Berlin\"}, {operator: Equal, path: [\"name\"], valueString: \"Rotterdam\"}]}",
            &["Rotterdam", "Berlin"],
        ),
        // Through a reference: cities in the Netherlands.
        (
            "{operator: Equal, path: [\"inCountry\", \"Country\", \"name\"], valueString: \"Netherlands\"}",
            &["Amsterdam", "Rotterdam"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(city_names_where(filter), expected, "{filter}");
    }
}

#[test]
fn bad_filters_are_errors_on_the_class_field() {
    for (filter, needle) in [
        (
            "{operator: Equal, path: [\"mayor\"], valueString: \"x\"}",
            "no property",
        ),
        (
            "{operator: Equal, path: [\"population\"], valueString: \"x\"}",
            "does not fit",
        ),
        (
            "{operator: Sideways, path: [\"population\"], valueInt: 1}",
            "unknown operator",
        ),
        (
            "{operator: Like, path: [\"population\"], valueInt: 1}",
            "does not apply",
        ),
        (
            "{operator: GreaterThan, path: [\"capital\"], valueBoolean: true}",
            "does not apply",
        ),
        (
            "{operator: Equal, path: [\"inCountry\"], valueString: \"x\"}",
            "reference",
        ),
        (
            "{operator: Equal, path: [\"inCountry\", \"Airport\", \"name\"], valueString: \"x\"}",
            "does not refer",
        ),
        (
            "{operator: Equal, path: [\"name\"], valueString: \"x\", valueText: \"y\"}",
            "exactly one",
        ),
    ] {
        let a = run(
            &format!("{{ Local {{ Get {{ Things {{ City(where: {filter}) {{ name }} }} }} }} }}"),
            json!({}),
        );
        assert!(!a.request_error, "{filter}: {}", a.body);
        let errors = a.body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{filter}: {}", a.body);
        assert!(message(&a, 0).contains(needle), "{filter}: {}", a.body);
        assert_eq!(errors[0]["path"], json!(["Local", "Get", "Things", "City"]));
        assert_eq!(errors[0]["locations"][0]["line"], 1);
        assert_eq!(
            a.body["data"]["Local"]["Get"]["Things"]["City"],
            Value::Null
        );
    }
}

#[test]
fn variables_feed_limit_and_where() {
    let query = "query Q($limit: Int, $where: WhereFilter, $min: Int = 700000) {
        Local { Get { Things {
            first: City(limit: $limit, where: $where) { name }
            big: City(where: {operator: GreaterThan, path: [\"population\"], valueInt: $min}) { name }
        } } } }";
    let variables =
        json!({"limit": 1, "where": {"operator": "Like", "path": ["name"], "valueString": "*dam"}});
    let a = run(query, variables);
    assert!(a.body.get("errors").is_none(), "{}", a.body);
    let things = &a.body["data"]["Local"]["Get"]["Things"];
    assert_eq!(things["first"], json!([{"name": "Amsterdam"}]));
    assert_eq!(
        things["big"],
        json!([{"name": "Amsterdam"}, {"name": "Berlin"}])
    );

    let missing = run(
        "query($l: Int!) { Local { Get { Things { City(limit: $l) { name } } } } }",
        json!({}),
    );
    assert!(
        missing.request_error && missing.body.get("data").is_none(),
        "{}",
        missing.body
    );
    assert!(message(&missing, 0).contains('l'), "{}", missing.body);
    let undefined = run(
        "{ Local { Get { Things { City(limit: $nope) { name } } } } }",
        json!({}),
    );
    assert!(undefined.request_error, "{}", undefined.body);
    assert!(
        message(&undefined, 0).contains("nope"),
        "{}",
        undefined.body
    );
    let negative = run(
        "{ Local { Get { Things { City(limit: -1) { name } } } } }",
        json!({}),
    );
    assert!(message(&negative, 0).contains("limit"), "{}", negative.body);
}

#[test]
fn references_follow_inline_fragments() {
    let query = "{ Local { Get { Things { City { name inCountry { __typename ... on Country { name } ...C } } } } } }
        fragment C on City { population }";
    let a = run(query, json!({}));
    assert!(a.body.get("errors").is_none(), "{}", a.body);
    let all = &a.body["data"]["Local"]["Get"]["Things"]["City"];
    let nl = json!([{"__typename": "Country", "name": "Netherlands"}]);
    assert_eq!(all[0]["inCountry"], nl);
    // A single beacon works too; a beacon to a missing object is skipped.
    assert_eq!(all[1]["inCountry"], nl);
    assert_eq!(
        all[2]["inCountry"],
        json!([{"__typename": "Country", "name": "Germany"}])
    );

    // A union's members are reached through fragments only.
    let direct = run(
        "{ Local { Get { Things { City { inCountry { name } } } } } }",
        json!({}),
    );
    assert!(direct.request_error, "{}", direct.body);
    assert!(message(&direct, 0).contains("name"), "{}", direct.body);
    let wrong = run(
        "{ Local { Get { Things { City { inCountry { ... on Airport { name } } } } } } }",
        json!({}),
    );
    assert!(wrong.request_error, "{}", wrong.body);
    assert!(message(&wrong, 0).contains("Airport"), "{}", wrong.body);
}

#[test]
fn geo_typename_and_leaves() {
    let a = run(
        "{ __typename Local { __typename Get { Things { City(limit: 1) { area location { latitude longitude } } } } } }",
        json!({}),
    );
    assert!(a.body.get("errors").is_none(), "{}", a.body);
    let data = &a.body["data"];
    assert_eq!(data["__typename"], json!("WeaviateObj"));
    assert_eq!(data["Local"]["__typename"], json!("WeaviateLocalObj"));
    assert_eq!(
        data["Local"]["Get"]["Things"]["City"][0],
        json!({"area": 219.3, "location": {"latitude": 52.37, "longitude": 4.89}})
    );
    // A leaf with a selection, an object without one: both refused.
    let leaf = run(
        "{ Local { Get { Things { City { name { x } location } } } } }",
        json!({}),
    );
    assert!(leaf.request_error, "{}", leaf.body);
    let messages: Vec<&str> = leaf.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"name\" must not have a selection")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"location\"") && m.contains("must have a selection")),
        "{messages:?}"
    );
}

#[test]
fn a_limited_get_asks_its_class_for_its_limit() {
    let mut m = Memory::default();
    for i in 0..1000 {
        m.add(
            1000 + i,
            "City",
            json!({"name": format!("c{i}"), "population": i}),
        );
        m.add(5000 + i, "Country", json!({"name": format!("n{i}")}));
    }
    let m = Arc::new(m);
    let a = run_on(
        m.clone(),
        "{ Local { Get { Things { City(limit: 5) { name } } } } }",
        json!({}),
    );
    assert_eq!(
        a.body["data"]["Local"]["Get"]["Things"]["City"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(*m.queries.lock().unwrap(), vec![("City".to_owned(), 5)]);
    let zero = run_on(
        m.clone(),
        "{ Local { Get { Things { City(limit: 0) { name } } } } }",
        json!({}),
    );
    assert_eq!(
        zero.body["data"]["Local"]["Get"]["Things"]["City"],
        json!([])
    );
    // Without a limit: the default.
    run_on(
        m.clone(),
        "{ Local { Get { Things { City { name } } } } }",
        json!({}),
    );
    assert_eq!(
        m.queries.lock().unwrap()[2],
        ("City".to_owned(), crate::DEFAULT_LIMIT)
    );
}

#[test]
fn request_errors_have_no_data() {
    let syntax = run("{ Local { Get ", json!({}));
    assert!(
        syntax.request_error && syntax.body.get("data").is_none(),
        "{}",
        syntax.body
    );
    assert_eq!(
        syntax.body["errors"][0]["locations"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{}",
        syntax.body
    );
    let two = run("query A { __typename } query B { __typename }", json!({}));
    assert!(
        two.request_error && two.body.get("data").is_none(),
        "{}",
        two.body
    );
    let mutation = run("mutation { x }", json!({}));
    assert!(
        mutation.request_error && mutation.body.get("data").is_none(),
        "{}",
        mutation.body
    );
}
