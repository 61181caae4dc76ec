//! Native tests of the client's pure decisions.

use std::collections::BTreeMap;

use plexus_core::PeerName;
use plexus_core::network::NetworkPlan;
use plexus_core::schema::Schema;
use serde_json::{Map, Value as Json, json};

use super::*;

fn city_schema() -> Json {
    json!({"things": {"classes": [{"class": "City", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}]}})
}

fn schemas(names: &[&str]) -> BTreeMap<PeerName, Schema> {
    names
        .iter()
        .map(|n| {
            (
                PeerName::new(*n).expect("name"),
                serde_json::from_value(city_schema()).expect("schema"),
            )
        })
        .collect()
}

fn peer(name: &str, uri: &str) -> Peer {
    serde_json::from_value(
        json!({"id": "00000000-0000-0000-0000-000000000001", "peerName": name,
        "peerUri": uri, "last_contact_at": 1, "schema_hash": ""}),
    )
    .expect("peer")
}

const TWO: &str =
    "{ Network { Get { PeerA { Things { City { name } } } PeerB { Things { City { name } } } } } }";

#[test]
fn schema_hash_matches_the_core_and_ignores_order_and_whitespace() {
    let schema: Schema = serde_json::from_value(city_schema()).expect("schema");
    let text = serde_json::to_string_pretty(&city_schema()).expect("text");
    assert_eq!(schema_hash_of_text(&text).expect("hash"), schema.hash());
    let reordered = json!({"things": {"classes": [{"properties": [
        {"dataType": ["int"], "name": "population"}, {"name": "name", "dataType": ["string"]}], "class": "City"}]}});
    assert_eq!(schema_hash_of_json(reordered).expect("hash"), schema.hash());
    assert_eq!(schema.hash().len(), 64);
}

#[test]
fn bad_schemas_are_invalid_input() {
    for text in [
        "not json",
        "[]",
        r#"{"things": {"classes": [{"class": 3}]}}"#,
        r#"{"other": 1}"#,
    ] {
        let e = schema_hash_of_text(text).expect_err(text);
        assert_eq!(e.kind(), "invalid-input", "{text}: {e}");
    }
    let e = parse_schemas(json!({"bad-name": city_schema()})).expect_err("bad name");
    assert!(e.to_string().contains("bad-name"), "{e}");
    assert!(parse_schemas(json!([])).is_err());
}

#[test]
fn validate_reports_what_the_planner_reports() {
    let schemas = parse_schemas(json!({"PeerA": city_schema()})).expect("schemas");
    let none = ValidateOptions::default();
    assert!(
        validate(
            "{ Network { Get { PeerA { Things { City { name } } } } } }",
            &none,
            &schemas
        )
        .is_empty()
    );
    // A property is the peer's engine to judge, not the planner's.
    assert!(
        validate(
            "{ Network { Get { PeerA { Things { City { mayor } } } } } }",
            &none,
            &schemas,
        )
        .is_empty()
    );
    let errors = validate(
        "{ Network { Get { PeerZ { Things { City { name } } } } } }",
        &none,
        &schemas,
    );
    assert!(errors[0].message.contains("unknown peer"), "{errors:?}");
    assert!(!validate("{ Network {", &none, &schemas).is_empty());
    let with_vars = ValidateOptions {
        variables: Some(json!({"n": 1}).as_object().cloned().expect("object")),
        operation_name: Some("Q".into()),
    };
    let q =
        "query Q($n: Int) { Network { Get { PeerA { Things { City(limit: $n) { name } } } } } }";
    assert!(validate(q, &with_vars, &schemas).is_empty());
}

#[test]
fn named_peers_are_distinct_and_in_query_order() {
    let q = "{ Network { Get { PeerB { Things { City { name } } } a: PeerA { Things { City { name } } } PeerB { Things { City { population } } } } } }";
    assert_eq!(
        named_peers(q, None, &Map::new()),
        vec!["PeerB".to_owned(), "PeerA".to_owned()]
    );
    assert!(named_peers("{ nope", None, &Map::new()).is_empty());
}

#[test]
fn a_plannable_query_is_sent_whole() {
    let Planned::Send { plan, unreachable } = plan_query(
        TWO,
        None,
        &Map::new(),
        &schemas(&["PeerA", "PeerB"]),
        &BTreeMap::new(),
    ) else {
        panic!("expected a plan");
    };
    assert_eq!(plan.queries.len(), 2);
    assert!(unreachable.is_empty());
}

#[test]
fn a_peer_without_a_schema_becomes_a_per_peer_error_beside_the_others_data() {
    let unreachable = BTreeMap::from([("PeerB".to_owned(), "connection refused".to_owned())]);
    let Planned::Send { plan, unreachable } =
        plan_query(TWO, None, &Map::new(), &schemas(&["PeerA"]), &unreachable)
    else {
        panic!("expected a plan");
    };
    assert_eq!(plan.queries.len(), 1);
    assert_eq!(plan.queries[0].peer.as_str(), "PeerA");
    assert_eq!(unreachable.len(), 1);
    let a = json!({"data": {"q0": {"Get": {"Things": {"City": [{"name": "Amsterdam"}]}}}}});
    let response = finish(&plan, vec![Outcome::Answered(a)], &unreachable);
    assert_eq!(
        response["data"]["Network"]["Get"]["PeerA"]["Things"]["City"][0]["name"],
        "Amsterdam"
    );
    assert_eq!(response["data"]["Network"]["Get"]["PeerB"], Json::Null);
    assert_eq!(
        response["errors"],
        json!([{"message": "peer PeerB did not answer: connection refused", "path": ["Network", "Get", "PeerB"]}])
    );
}

#[test]
fn when_no_peer_is_reachable_every_one_is_an_error() {
    let unreachable = BTreeMap::from([
        ("PeerA".to_owned(), "timeout".to_owned()),
        ("PeerB".to_owned(), "refused".to_owned()),
    ]);
    let Planned::Send { plan, unreachable } =
        plan_query(TWO, None, &Map::new(), &schemas(&[]), &unreachable)
    else {
        panic!("expected a plan");
    };
    assert!(plan.queries.is_empty());
    let response = finish(&plan, Vec::new(), &unreachable);
    assert_eq!(
        response["data"],
        json!({"Network": {"Get": {"PeerA": null, "PeerB": null}}})
    );
    assert_eq!(response["errors"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_invalid_query_is_answered_without_sending_and_keeps_its_locations() {
    let unreachable = BTreeMap::from([("PeerB".to_owned(), "refused".to_owned())]);
    let q = "{ Network { Get { PeerZ { Things { City { name } } } PeerB { Things { City { name } } } } } }";
    let Planned::Answer(response) =
        plan_query(q, None, &Map::new(), &schemas(&["PeerA"]), &unreachable)
    else {
        panic!("expected an answer");
    };
    assert_eq!(response["data"], Json::Null);
    let errors = response["errors"].as_array().expect("errors");
    assert!(
        errors[0]["message"]
            .as_str()
            .expect("text")
            .contains("PeerZ"),
        "{errors:?}"
    );
    assert!(errors[0]["locations"].is_array(), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == json!(["Network", "Get", "PeerB"])),
        "{errors:?}"
    );
    let Planned::Answer(response) = plan_query(
        "{ Network {",
        None,
        &Map::new(),
        &schemas(&[]),
        &BTreeMap::new(),
    ) else {
        panic!("expected an answer");
    };
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .expect("text")
            .contains("syntax"),
        "{response}"
    );
}

#[test]
fn finish_without_unreachable_peers_is_the_core_merge() {
    let plan = NetworkPlan::default();
    assert_eq!(
        finish(&plan, Vec::new(), &[]),
        merge(&plan, Vec::new()).into_response()
    );
}

#[test]
fn get_meta_peers_are_named_and_left_out_as_get_peers_are() {
    let q = "{ Network { GetMeta { PeerB { Things { City { meta { count } } } } } Get { PeerA { Things { City { name } } } } } }";
    assert_eq!(named_peers(q, None, &Map::new()), ["PeerB", "PeerA"]);
    let unreachable = BTreeMap::from([("PeerB".to_owned(), "refused".to_owned())]);
    let Planned::Send { plan, unreachable } =
        plan_query(q, None, &Map::new(), &schemas(&["PeerA"]), &unreachable)
    else {
        panic!("expected a plan");
    };
    assert_eq!(plan.queries.len(), 1);
    let response = finish(&plan, vec![Outcome::Failed("gone".into())], &unreachable);
    assert_eq!(response["data"]["Network"]["GetMeta"]["PeerB"], Json::Null);
    let paths: Vec<&Json> = response["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| &e["path"])
        .collect();
    assert_eq!(
        paths,
        [
            &json!(["Network", "Get", "PeerA"]),
            &json!(["Network", "GetMeta", "PeerB"])
        ]
    );
}

#[test]
fn answers_are_decoded_or_turned_into_errors_with_kinds() {
    let peers: Vec<Json> = decode_answer("u", 200, "[]").expect("list");
    assert!(peers.is_empty());
    let e = decode_answer::<Vec<Json>>(
        "http://g/peers",
        403,
        r#"{"error": {"message": "bad token"}}"#,
    )
    .expect_err("403");
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        ("http", "http://g/peers answered 403: bad token")
    );
    let e = decode_answer::<Vec<Json>>("u", 200, "{").expect_err("bad json");
    assert_eq!(e.kind(), "decode");
    assert_eq!(error_message(""), "(empty body)");
    assert_eq!(error_message(&"é".repeat(300)).chars().count(), 100);
}

#[test]
fn the_peer_list_is_read_as_core_reads_it() {
    let list = r#"[{"id": "00000000-0000-0000-0000-000000000001", "peerName": "PeerA",
        "peerUri": "http://a.local", "last_contact_at": 5, "schema_hash": "h"}]"#;
    let peers = read_peer_list("http://g/peers", 200, list).expect("a list");
    assert_eq!(
        peers
            .iter()
            .map(|p| p.peer_name.as_str())
            .collect::<Vec<_>>(),
        ["PeerA"]
    );
    let e = read_peer_list(
        "http://g/peers",
        403,
        r#"{"error": {"message": "bad token"}}"#,
    )
    .expect_err("403");
    assert_eq!(e.to_string(), "http://g/peers answered 403: bad token");
    for bad in ["{", r#"[{"peerName": "Not a name!"}]"#] {
        assert_eq!(
            read_peer_list("u", 200, bad).expect_err("malformed").kind(),
            "decode"
        );
    }
}

#[test]
fn graphql_answers_keep_4xx_graphql_bodies() {
    let ok = decode_graphql("u", 200, r#"{"data": {"x": 1}}"#).expect("ok");
    assert_eq!(ok["data"]["x"], 1);
    let bad = decode_graphql("u", 400, r#"{"data": null, "errors": [{"message": "m"}]}"#)
        .expect("graphql 400");
    assert_eq!(bad["errors"][0]["message"], "m");
    assert_eq!(
        decode_graphql("u", 502, "bad gateway")
            .expect_err("502")
            .kind(),
        "http"
    );
    assert_eq!(
        decode_graphql("u", 500, r#"{"errors": []}"#)
            .expect_err("500")
            .kind(),
        "http"
    );
    assert_eq!(
        decode_graphql("u", 200, "[1]")
            .expect_err("not graphql")
            .kind(),
        "decode"
    );
}

#[test]
fn via_is_a_listed_name_or_a_url() {
    let peers = vec![peer("PeerA", "http://127.0.0.1:1/")];
    assert_eq!(
        resolve_peer(&peers, "PeerA").expect("name").as_str(),
        "http://127.0.0.1:1"
    );
    assert_eq!(
        resolve_peer(&peers, "http://h:2/").expect("url").as_str(),
        "http://h:2"
    );
    let e = resolve_peer(&peers, "PeerZ").expect_err("unknown");
    assert_eq!(e.kind(), "unknown-peer");
    assert!(e.to_string().contains("PeerA"), "{e}");
    assert_eq!(
        resolve_peer(&peers, "ftp://h").expect_err("scheme").kind(),
        "invalid-input"
    );
    assert_eq!(
        find_peer(&[], "X").expect_err("none").to_string(),
        "unknown peer \"X\" (genesis lists: none)"
    );
    assert_eq!(
        parse_base_url("nope", "genesis URL")
            .expect_err("bad")
            .kind(),
        "invalid-input"
    );
}

#[test]
fn watch_events_are_read_into_tagged_objects() {
    let p = json!({"id": "00000000-0000-0000-0000-000000000001", "peerName": "PeerA", "peerUri": "http://h:1",
        "last_contact_at": 5, "schemaHash": "h"});
    let snapshot = parse_watch_event(
        "snapshot",
        Some(&json!({"version": 3, "peers": [p]}).to_string()),
    );
    let out = serde_json::to_value(&snapshot).expect("json");
    assert_eq!(out["type"], "snapshot");
    assert_eq!(out["version"], 3);
    assert_eq!(out["peers"][0]["peerName"], "PeerA");
    let change = parse_watch_event(
        "change",
        Some(&json!({"version": 4, "kind": "joined", "peer": p}).to_string()),
    );
    let out = serde_json::to_value(&change).expect("json");
    assert_eq!(
        (
            out["type"].as_str(),
            out["kind"].as_str(),
            out["version"].as_u64()
        ),
        (Some("change"), Some("joined"), Some(4))
    );
    assert_eq!(out["peer"]["peerUri"], "http://h:1");
    for (name, data) in [
        ("change", Some("{}")),
        ("change", None),
        ("other", Some("{}")),
    ] {
        let out = serde_json::to_value(parse_watch_event(name, data)).expect("json");
        assert_eq!(out["type"], "error", "{name} {data:?}");
    }
}

#[test]
fn options_refuse_unknown_fields() {
    let o: ClientOptions =
        serde_json::from_value(json!({"token": "t", "timeoutMs": 5})).expect("options");
    assert_eq!((o.token.as_deref(), o.timeout_ms), (Some("t"), Some(5)));
    assert!(serde_json::from_value::<ClientOptions>(json!({"tokn": "t"})).is_err());
    let q: QueryOptions = serde_json::from_value(
        json!({"via": "PeerA", "variables": {"n": 1}, "operationName": "Q"}),
    )
    .expect("options");
    assert_eq!(q.via.as_deref(), Some("PeerA"));
}

#[test]
fn a_network_fetch_asks_every_peer_with_a_schema_and_an_unreachable_one_is_an_error_at_the_list() {
    let q = r#"{ Network { Fetch { Things(where: {class: {name: "City", certainty: 0.8}}) { className beacon } } } }"#;
    let vars = Map::new();
    assert!(plexus_core::network::asks_every_peer(q, None, &vars));
    assert!(!plexus_core::network::asks_every_peer(TWO, None, &vars));
    assert!(named_peers(q, None, &vars).is_empty());
    assert!(validate(q, &ValidateOptions::default(), &schemas(&["PeerA"])).is_empty());
    let unreachable = BTreeMap::from([(
        "PeerC".to_owned(),
        "cannot fetch its schema: 503".to_owned(),
    )]);
    let Planned::Send { plan, unreachable } =
        plan_query(q, None, &vars, &schemas(&["PeerA", "PeerB"]), &unreachable)
    else {
        panic!("a Fetch is planned");
    };
    let asked: Vec<&str> = plan.queries.iter().map(|q| q.peer.as_str()).collect();
    assert_eq!(asked, ["PeerA", "PeerB"]);
    let item = |b: &str, c: f64| json!({"className": "City", "beacon": b, "_rankCertainty": c, "_rankTie0": b});
    let response = finish(
        &plan,
        vec![
            Outcome::Answered(
                json!({"data": {"q0": {"Fetch": {"Things": [item("weaviate://PeerA/things/1", 0.9)]}}}}),
            ),
            Outcome::Answered(
                json!({"data": {"q0": {"Fetch": {"Things": [item("weaviate://PeerB/things/1", 1.0)]}}}}),
            ),
        ],
        &unreachable,
    );
    assert_eq!(
        response["data"]["Network"]["Fetch"]["Things"],
        json!([
            {"className": "City", "beacon": "weaviate://PeerB/things/1"},
            {"className": "City", "beacon": "weaviate://PeerA/things/1"}
        ]),
        "{response}"
    );
    assert_eq!(
        response["errors"],
        json!([{"message": "peer PeerC did not answer: cannot fetch its schema: 503", "path": ["Network", "Fetch", "Things"]}])
    );
}
