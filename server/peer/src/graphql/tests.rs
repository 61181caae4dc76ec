//! Tests of the GraphQL executor over an in-memory source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use plexus_core::schema::{Kind, Schema};
use serde_json::{Value, json};
use uuid::Uuid;

use super::filter::{Filter, like, parse_date};
use super::{GraphQLRequest, GraphQLResponse, ObjectSource, SourceError, answer};
use crate::object::Object;

/// Objects by (class, id), and which classes were scanned and how many objects visited.
#[derive(Default)]
struct Memory {
    objects: BTreeMap<(String, Uuid), Object>,
    scanned: RefCell<Vec<String>>,
    visited: RefCell<usize>,
}

impl ObjectSource for Memory {
    fn scan_class(
        &self,
        class: &str,
        visit: &mut dyn FnMut(Object) -> bool,
    ) -> Result<(), SourceError> {
        self.scanned.borrow_mut().push(class.to_owned());
        for ((c, _), o) in &self.objects {
            if c == class {
                *self.visited.borrow_mut() += 1;
                if !visit(o.clone()) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn get(&self, id: Uuid) -> Result<Option<Object>, SourceError> {
        Ok(self.objects.values().find(|o| o.id == id).cloned())
    }
}

impl Memory {
    fn add(&mut self, n: u128, class: &str, values: Value) -> Uuid {
        let id = Uuid::from_u128(n);
        let object = Object {
            id,
            kind: Kind::Things,
            class: class.into(),
            schema: values.as_object().expect("object").clone(),
            creation_time_unix: 0,
            last_update_time_unix: 0,
        };
        self.objects.insert((class.into(), id), object);
        id
    }
}

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
    .expect("schema")
}

fn data() -> Memory {
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
    m
}

fn run(query: &str, variables: Value, source: &Memory) -> GraphQLResponse {
    let request = GraphQLRequest {
        query: query.into(),
        variables: variables.as_object().cloned(),
        operation_name: None,
    };
    futures::executor::block_on(answer(request, &schema(), None, async |prepared| {
        prepared.run(source)
    }))
}

fn cities(answer: &GraphQLResponse) -> Vec<Value> {
    let data = answer.data.as_ref().expect("data");
    data["Local"]["Get"]["Things"]["City"]
        .as_array()
        .expect("list")
        .clone()
}

fn names(answer: &GraphQLResponse) -> Vec<String> {
    cities(answer)
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

fn city_names_where(filter: &str) -> Vec<String> {
    let answer = run(
        &format!("{{ Local {{ Get {{ Things {{ City(where: {filter}) {{ name }} }} }} }} }}"),
        json!({}),
        &data(),
    );
    assert!(answer.errors.is_empty(), "{filter}: {:?}", answer.errors);
    names(&answer)
}

#[test]
fn answers_a_local_get() {
    let answer = run(
        "{ Local { Get { Things { City { name population uuid __typename } } } } }",
        json!({}),
        &data(),
    );
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    let all = cities(&answer);
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0],
        json!({"name": "Amsterdam", "population": 905234, "uuid": Uuid::from_u128(10).to_string(), "__typename": "City"})
    );
}

#[test]
fn filters_compare_values() {
    assert_eq!(
        city_names_where("{operator: Equal, path: [\"name\"], valueString: \"Berlin\"}"),
        ["Berlin"]
    );
    assert_eq!(
        city_names_where("{operator: NotEqual, path: [\"name\"], valueString: \"Berlin\"}"),
        ["Amsterdam", "Rotterdam"]
    );
    assert_eq!(
        city_names_where("{operator: GreaterThan, path: [\"population\"], valueInt: 905234}"),
        ["Berlin"]
    );
    assert_eq!(
        city_names_where("{operator: GreaterThanEqual, path: [\"population\"], valueInt: 905234}"),
        ["Amsterdam", "Berlin"]
    );
    assert_eq!(
        city_names_where("{operator: LessThan, path: [\"population\"], valueNumber: 905234.5}"),
        ["Amsterdam", "Rotterdam"]
    );
    assert_eq!(
        city_names_where("{operator: LessThanEqual, path: [\"population\"], valueInt: 651446}"),
        ["Rotterdam"]
    );
    assert_eq!(
        city_names_where("{operator: Equal, path: [\"capital\"], valueBoolean: true}"),
        ["Amsterdam", "Berlin"]
    );
    assert_eq!(
        city_names_where("{operator: Like, path: [\"name\"], valueText: \"*dam\"}"),
        ["Amsterdam", "Rotterdam"]
    );
    assert_eq!(
        city_names_where("{operator: Like, path: [\"name\"], valueString: \"B?rlin\"}"),
        ["Berlin"]
    );
    // Berlin's 1237-01-01T00:00:00+01:00 is 1236-12-31T23:00:00Z.
    assert_eq!(
        city_names_where(
            "{operator: LessThan, path: [\"founded\"], valueDate: \"1237-01-01T00:00:00Z\"}"
        ),
        ["Berlin"]
    );
    assert_eq!(
        city_names_where(
            "{operator: And, operands: [{operator: Equal, path: [\"capital\"], valueBoolean: true}, {operator: LessThan, path: [\"population\"], valueInt: 1000000}]}"
        ),
        ["Amsterdam"]
    );
    assert_eq!(
        city_names_where(
            "{operator: Or, operands: [{operator: Equal, path: [\"name\"], valueString: \"Berlin\"}, {operator: Equal, path: [\"name\"], valueString: \"Rotterdam\"}]}"
        ),
        ["Rotterdam", "Berlin"]
    );
    // Through a reference: cities in the Netherlands.
    assert_eq!(
        city_names_where(
            "{operator: Equal, path: [\"inCountry\", \"Country\", \"name\"], valueString: \"Netherlands\"}"
        ),
        ["Amsterdam", "Rotterdam"]
    );
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
        let answer = run(
            &format!("{{ Local {{ Get {{ Things {{ City(where: {filter}) {{ name }} }} }} }} }}"),
            json!({}),
            &data(),
        );
        assert_eq!(answer.errors.len(), 1, "{filter}");
        let error = &answer.errors[0];
        assert!(
            error.message.contains(needle),
            "{filter}: {}",
            error.message
        );
        assert_eq!(
            error.path,
            vec![json!("Local"), json!("Get"), json!("Things"), json!("City")]
        );
        assert_eq!(error.locations[0].line, 1);
        assert_eq!(
            answer.data.as_ref().expect("data")["Local"]["Get"]["Things"]["City"],
            Value::Null
        );
    }
}

#[test]
fn unknown_classes_and_properties_are_errors_with_location_and_path() {
    let query =
        "{\n  Local { Get { Things {\n    City { name mayor }\n    Airport { code }\n  } } }\n}";
    let answer = run(query, json!({}), &data());
    assert_eq!(answer.errors.len(), 2, "{:?}", answer.errors);
    let mayor = &answer.errors[0];
    assert!(mayor.message.contains("\"mayor\""), "{}", mayor.message);
    assert_eq!(
        (mayor.locations[0].line, mayor.locations[0].column),
        (3, 17)
    );
    assert_eq!(
        mayor.path,
        vec![
            json!("Local"),
            json!("Get"),
            json!("Things"),
            json!("City"),
            json!("mayor")
        ]
    );
    let airport = &answer.errors[1];
    assert!(airport.message.contains("Airport"), "{}", airport.message);
    assert_eq!(
        (airport.locations[0].line, airport.locations[0].column),
        (4, 5)
    );
    assert_eq!(
        airport.path,
        vec![
            json!("Local"),
            json!("Get"),
            json!("Things"),
            json!("Airport")
        ]
    );
    let things = &answer.data.as_ref().expect("data")["Local"]["Get"]["Things"];
    assert_eq!(things["Airport"], Value::Null);
    assert_eq!(
        things["City"][0],
        json!({"name": "Amsterdam", "mayor": null})
    );
}

#[test]
fn variables_feed_limit_and_where() {
    let query = "query Q($limit: Int, $where: WhereInpObj, $min: Int = 700000) {
        Local { Get { Things {
            first: City(limit: $limit, where: $where) { name }
            big: City(where: {operator: GreaterThan, path: [\"population\"], valueInt: $min}) { name }
        } } } }";
    let variables =
        json!({"limit": 1, "where": {"operator": "Like", "path": ["name"], "valueString": "*dam"}});
    let answer = run(query, variables, &data());
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    let things = &answer.data.as_ref().expect("data")["Local"]["Get"]["Things"];
    assert_eq!(things["first"], json!([{"name": "Amsterdam"}]));
    assert_eq!(
        things["big"],
        json!([{"name": "Amsterdam"}, {"name": "Berlin"}])
    );

    let missing = run(
        "query($l: Int!) { Local { Get { Things { City(limit: $l) { name } } } } }",
        json!({}),
        &data(),
    );
    assert!(missing.data.is_none());
    assert!(
        missing.errors[0].message.contains("$l"),
        "{:?}",
        missing.errors
    );
    let undefined = run(
        "{ Local { Get { Things { City(limit: $nope) { name } } } } }",
        json!({}),
        &data(),
    );
    assert!(
        undefined.errors[0].message.contains("$nope"),
        "{:?}",
        undefined.errors
    );
    let negative = run(
        "{ Local { Get { Things { City(limit: -1) { name } } } } }",
        json!({}),
        &data(),
    );
    assert!(
        negative.errors[0].message.contains("limit"),
        "{:?}",
        negative.errors
    );
}

#[test]
fn references_follow_inline_fragments() {
    let query = "{ Local { Get { Things { City { name inCountry { __typename ... on Country { name } ...C } } } } } }
        fragment C on City { population }";
    let answer = run(query, json!({}), &data());
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    let all = cities(&answer);
    assert_eq!(
        all[0]["inCountry"],
        json!([{"__typename": "Country", "name": "Netherlands"}])
    );
    // A single beacon works too; a beacon to a missing object is skipped.
    assert_eq!(
        all[1]["inCountry"],
        json!([{"__typename": "Country", "name": "Netherlands"}])
    );
    assert_eq!(
        all[2]["inCountry"],
        json!([{"__typename": "Country", "name": "Germany"}])
    );

    let direct = run(
        "{ Local { Get { Things { City { inCountry { name } } } } } }",
        json!({}),
        &data(),
    );
    assert_eq!(direct.errors.len(), 1, "{:?}", direct.errors);
    assert!(
        direct.errors[0].message.contains("... on"),
        "{}",
        direct.errors[0].message
    );
    let wrong = run(
        "{ Local { Get { Things { City { inCountry { ... on Airport { name } } } } } } }",
        json!({}),
        &data(),
    );
    assert_eq!(wrong.errors.len(), 1, "{:?}", wrong.errors);
    assert!(wrong.errors[0].message.contains("Airport"));
}

#[test]
fn geo_typename_and_network_hook() {
    let query = "{ __typename Local { __typename Get { Things { City(limit: 1) { location { latitude longitude } } } } } Network { Get { PeerB { Things { City { name } } } } } }";
    let answer = run(query, json!({}), &data());
    let data = answer.data.as_ref().expect("data");
    assert_eq!(data["__typename"], json!("WeaviateObj"));
    assert_eq!(data["Local"]["__typename"], json!("WeaviateLocalObj"));
    assert_eq!(
        data["Local"]["Get"]["Things"]["City"][0]["location"],
        json!({"latitude": 52.37, "longitude": 4.89})
    );
    assert_eq!(data["Network"], Value::Null);
    assert_eq!(answer.errors.len(), 1);
    assert_eq!(answer.errors[0].message, super::NO_NETWORK);
    assert_eq!(answer.errors[0].path, vec![json!("Network")]);
    let leaf = run(
        "{ Local { Get { Things { City { name { x } location } } } } }",
        json!({}),
        &data_set(),
    );
    assert_eq!(leaf.errors.len(), 2, "{:?}", leaf.errors);
}

fn data_set() -> Memory {
    data()
}

#[test]
fn a_limited_get_reads_only_its_class_and_stops_early() {
    let mut m = Memory::default();
    for i in 0..1000 {
        m.add(
            1000 + i,
            "City",
            json!({"name": format!("c{i}"), "population": i}),
        );
        m.add(5000 + i, "Country", json!({"name": format!("n{i}")}));
    }
    let answer = run(
        "{ Local { Get { Things { City(limit: 5) { name } } } } }",
        json!({}),
        &m,
    );
    assert_eq!(cities(&answer).len(), 5);
    assert_eq!(*m.scanned.borrow(), vec!["City".to_owned()]);
    assert_eq!(*m.visited.borrow(), 5);
    let zero = run(
        "{ Local { Get { Things { City(limit: 0) { name } } } } }",
        json!({}),
        &m,
    );
    assert_eq!(cities(&zero).len(), 0);
}

#[test]
fn request_errors_have_no_data() {
    let syntax = run("{ Local { Get ", json!({}), &data());
    assert!(syntax.data.is_none());
    assert_eq!(syntax.errors[0].locations.len(), 1, "{:?}", syntax.errors);
    let two = run(
        "query A { __typename } query B { __typename }",
        json!({}),
        &data(),
    );
    assert!(two.data.is_none());
    let mutation = run("mutation { x }", json!({}), &data());
    assert!(mutation.data.is_none());
}

#[test]
fn like_and_dates() {
    assert!(like("Amsterdam", "*dam"));
    assert!(like("Amsterdam", "A*d?m"));
    assert!(like("", "*"));
    assert!(!like("Amsterdam", "*dan"));
    assert!(!like("Amsterdam", "?sterdam"));
    assert!(like("Amsterdam", "?msterdam"));
    assert!(like("a*b", "a*b"));
    assert_eq!(parse_date("1970-01-01T00:00:00Z"), Some((0, 0)));
    assert_eq!(parse_date("1970-01-02T01:00:00+01:00"), Some((86_400, 0)));
    assert_eq!(
        parse_date("2000-03-01T00:00:00.5Z"),
        Some((951_868_800, 500_000_000))
    );
    assert_eq!(parse_date("yesterday"), None);
}

#[test]
fn filters_parse_from_json() {
    let filter = Filter::parse(
        &json!({"operator": "Equal", "path": ["population"], "valueInt": 5}),
        &schema(),
        "City",
    )
    .expect("valid");
    let mut no_refs = |_: &Value| Vec::new();
    assert!(filter.matches(
        json!({"population": 5}).as_object().expect("o"),
        &mut no_refs
    ));
    assert!(!filter.matches(
        json!({"population": 6}).as_object().expect("o"),
        &mut no_refs
    ));
    assert!(!filter.matches(json!({}).as_object().expect("o"), &mut no_refs));
    assert!(
        Filter::parse(
            &json!({"operator": "Equal", "path": ["population"], "valueInt": 5, "extra": 1}),
            &schema(),
            "City"
        )
        .is_err()
    );
    assert!(Filter::parse(&json!({"operator": "And"}), &schema(), "City").is_err());
}
