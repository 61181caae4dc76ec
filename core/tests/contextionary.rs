//! The contextionary: its file format against hostile bytes, exact
//! certainties on a tiny fixed vocabulary, the schema search, and Fetch /
//! Introspect / Fuzzy planning.
#![allow(clippy::unwrap_used)]

use plexus_core::contextionary::{Contextionary, FormatError, certainty, split_name};
use plexus_core::fetch::{self, FetchWhere, IntrospectWhere};
use plexus_core::filter::Filter;
use plexus_core::object::Object;
use plexus_core::schema::{Keyword, Kind, Schema};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A file of `dims`-long vectors: each word with its int8 components and scale.
fn file(dims: u16, words: &[(&str, f32, &[i8])]) -> Vec<u8> {
    let mut out = b"PLXC".to_vec();
    out.extend(1u16.to_le_bytes());
    out.extend(dims.to_le_bytes());
    out.extend((words.len() as u32).to_le_bytes());
    for (w, _, _) in words {
        out.push(w.len() as u8);
        out.extend(w.as_bytes());
    }
    for (_, scale, v) in words {
        out.extend(scale.to_le_bytes());
        out.extend(v.iter().map(|q| *q as u8));
    }
    out
}

/// Two dimensions, scale 1: city (0,0), town (3,4), village (6,8), big (12,0),
/// airplane (0,12), name (1,1), label (1,2), amsterdam (5,5), rotterdam (5,6).
fn tiny() -> Contextionary {
    Contextionary::parse(file(
        2,
        &[
            ("airplane", 1.0, &[0, 12]),
            ("amsterdam", 1.0, &[5, 5]),
            ("big", 1.0, &[12, 0]),
            ("city", 1.0, &[0, 0]),
            ("label", 1.0, &[1, 2]),
            ("name", 1.0, &[1, 1]),
            ("rotterdam", 1.0, &[5, 6]),
            ("town", 1.0, &[3, 4]),
            ("village", 0.5, &[12, 16]),
        ],
    ))
    .expect("valid file")
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn certainties_on_a_tiny_vocabulary_are_exact() {
    let c = tiny();
    let v = |name: &str| c.vector(name, &[]).expect("known");
    close(certainty(&v("City"), &v("Town")), 1.0 - 5.0 / 12.0);
    close(certainty(&v("City"), &v("Village")), 1.0 - 10.0 / 12.0);
    close(certainty(&v("City"), &v("Airplane")), 0.0);
    close(certainty(&v("City"), &v("City")), 1.0);
    // The centroid of camelCase words: BigCity = (6, 0); to town (3, 4): 5.
    close(certainty(&v("BigCity"), &v("Town")), 1.0 - 5.0 / 12.0);
    // Keywords weigh in: City + 0.5 × town = (1, 4/3); to town: 10/3.
    let keyed = c
        .vector(
            "City",
            &[Keyword {
                keyword: "town".into(),
                weight: 0.5,
            }],
        )
        .expect("known");
    close(certainty(&keyed, &v("Town")), 1.0 - (10.0 / 3.0) / 12.0);
    let err = c.vector("XyzzyCity", &[]).expect_err("unknown word");
    assert_eq!(
        err.to_string(),
        "the contextionary has no word \"xyzzy\" (in \"XyzzyCity\")"
    );
    assert_eq!(split_name("inCountry"), ["in", "country"]);
    assert_eq!(split_name("HTTPServer"), ["http", "server"]);
    assert_eq!(split_name("city_name2x"), ["city", "name", "x"]);
    // A non-ASCII letter stays in its word (no word of an a-z vocabulary:
    // an error naming it), never a silent separator.
    assert_eq!(split_name("grosseStädte"), ["grosse", "städte"]);
    let err = c.vector("Städte", &[]).expect_err("not an a-z word");
    assert!(err.to_string().contains("\"städte\""), "{err}");
}

fn schema() -> Schema {
    serde_json::from_value(json!({"things": {"classes": [
        {"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]},
        {"class": "Town", "properties": [{"name": "label", "dataType": ["string"]}, {"name": "name", "dataType": ["int"]}]},
        {"class": "Village", "properties": [{"name": "name", "dataType": ["text"]}]},
        {"class": "Airplane", "properties": [{"name": "name", "dataType": ["string"]}]},
        {"class": "Xyzzy", "properties": []}
    ]}}))
    .expect("schema")
}

#[test]
fn the_schema_search_ranks_classes_and_properties() {
    let c = tiny();
    let s = schema();
    let q = c.vector("City", &[]).expect("known");
    let found: Vec<(&str, f64)> = c
        .classes(&s, Kind::Things, &q, 0.1)
        .into_iter()
        .map(|(class, c)| (class.class.as_str(), c))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(
        (found[0].0, found[1].0, found[2].0),
        ("City", "Town", "Village")
    );
    close(found[1].1, 7.0 / 12.0);
    assert!(c.classes(&s, Kind::Actions, &q, 0.0).is_empty());
    let town = s.class(Kind::Things, "Town").expect("town");
    let name = c.vector("name", &[]).expect("known");
    let props: Vec<&str> = c
        .properties(town, &name, 0.9)
        .iter()
        .map(|(p, _)| p.name.as_str())
        .collect();
    // name (1,1) is 1.0 from itself, label (1,2) is 1 − 1/12.
    assert_eq!(props, ["name", "label"]);
}

#[test]
fn fetch_is_or_over_matching_properties_and_and_across_conditions() {
    let c = tiny();
    let s = schema();
    let w = FetchWhere::parse(&json!({
        "class": {"name": "City", "certainty": 0.1},
        "properties": [{"name": "name", "certainty": 0.9, "operator": "Equal", "valueString": "Amsterdam"}]
    }))
    .expect("where");
    let plan = fetch::plan(&c, &s, Kind::Things, &w).expect("plan");
    let classes: Vec<&str> = plan.iter().map(|p| p.class.as_str()).collect();
    // Town's `name` is an int (valueString does not fit) but its `label` is near
    // `name`: one comparison remains. Village's `name` is text.
    assert_eq!(classes, ["City", "Town", "Village"]);
    let town = &plan[1];
    let Some(Filter::Compare { property, .. }) = &town.filter else {
        panic!("one comparison: {:?}", town.filter);
    };
    assert_eq!(property, "label");
    // A condition no property of a class takes leaves the class out.
    let w = FetchWhere::parse(&json!({
        "class": {"name": "City", "certainty": 0.1},
        "properties": [
            {"name": "name", "certainty": 0.9, "operator": "Equal", "valueString": "Amsterdam"},
            {"name": "label", "certainty": 0.99, "operator": "Equal", "valueString": "x"}
        ]
    }))
    .expect("where");
    let plan = fetch::plan(&c, &s, Kind::Things, &w).expect("plan");
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].class, "Town");
    assert!(matches!(plan[0].filter, Some(Filter::And(ref all)) if all.len() == 2));
    let unknown =
        FetchWhere::parse(&json!({"class": {"name": "Qqq", "certainty": 0.5}})).expect("where");
    assert!(
        fetch::plan(&c, &s, Kind::Things, &unknown)
            .unwrap_err()
            .to_string()
            .contains("\"qqq\"")
    );
    for bad in [
        json!({}),
        json!({"class": {"name": "City"}}),
        json!({"class": {"name": "City", "certainty": 2}}),
        json!({"class": {"name": "City", "certainty": 0.5}, "properties": [{"name": "name", "certainty": 0.5}]}),
        json!({"class": {"name": "City", "certainty": 0.5}, "first": -1}),
    ] {
        assert!(FetchWhere::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn fuzzy_finds_near_words_and_introspect_lists_classes() {
    let c = tiny();
    let s = schema();
    let plan = fetch::fuzzy(&c, &s, "amsterdam", 0.9).expect("fuzzy");
    let words: Vec<&str> = plan.words.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(words, ["amsterdam", "rotterdam"]);
    let classes: Vec<&str> = plan.classes.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(classes, ["City", "Town", "Village", "Airplane"]);
    let object = |v: Value| Object {
        id: uuid::Uuid::nil(),
        kind: Kind::Things,
        class: "Village".into(),
        schema: v.as_object().cloned().expect("object"),
        creation_time_unix: 0,
        last_update_time_unix: 0,
    };
    let village = &plan.classes[2].2;
    let text = object(json!({"name": "near Rotterdam, NL"}));
    assert!(village.matches(&text.schema, &mut |_| Vec::new()));
    assert!(
        !village.matches(&object(json!({"name": "Delft"})).schema, &mut |_| Vec::new(
        ))
    );
    close(
        fetch::fuzzy_certainty(&text, &plan.words).expect("found"),
        1.0 - 1.0 / 12.0,
    );

    let wheres = IntrospectWhere::parse_list(&json!([{
        "class": [{"name": "City", "certainty": 0.1}],
        "properties": [{"name": "name", "certainty": 0.9}]
    }]))
    .expect("where");
    let found = fetch::introspect(&c, &s, Kind::Things, &wheres).expect("introspect");
    let names: Vec<(&str, usize)> = found
        .iter()
        .map(|f| (f.class.as_str(), f.properties.len()))
        .collect();
    assert_eq!(names, [("City", 1), ("Town", 2), ("Village", 1)]);
    close(found[2].certainty, 1.0 / 6.0);
}

#[test]
fn hostile_files_are_refused_with_the_rule_they_broke() {
    let good = file(2, &[("a", 1.0, &[1, 2]), ("b", 1.0, &[3, 4])]);
    Contextionary::parse(good.clone()).expect("good");
    for n in 0..good.len() {
        assert!(
            Contextionary::parse(good[..n].to_vec()).is_err(),
            "prefix {n}"
        );
    }
    let with = |at: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        Contextionary::parse(f).expect_err("refused")
    };
    assert_eq!(with(0, b"PLXD"), FormatError::Magic(*b"PLXD"));
    assert_eq!(with(4, &2u16.to_le_bytes()), FormatError::Version(2));
    assert_eq!(with(6, &0u16.to_le_bytes()), FormatError::Dims(0));
    assert_eq!(with(6, &1025u16.to_le_bytes()), FormatError::Dims(1025));
    assert_eq!(with(8, &0u32.to_le_bytes()), FormatError::Empty);
    assert!(matches!(
        with(8, &u32::MAX.to_le_bytes()),
        FormatError::Truncated(_)
    ));
    assert_eq!(with(13, b"A"), FormatError::Word(0));
    assert_eq!(with(15, b"a"), FormatError::Order(1));
    assert_eq!(with(12, &[0]), FormatError::Word(0));
    assert_eq!(with(16, &f32::NAN.to_le_bytes()), FormatError::Scale(0));
    assert_eq!(with(22, &(-1.0f32).to_le_bytes()), FormatError::Scale(1));
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        Contextionary::parse(long).unwrap_err(),
        FormatError::Trailing(1)
    );
}

proptest! {
    #[test]
    fn any_bytes_parse_or_are_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Contextionary::parse(bytes);
    }

    #[test]
    fn any_mutation_of_a_good_file_parses_or_is_refused(at in 0usize..28, byte in any::<u8>()) {
        let mut f = file(2, &[("a", 1.0, &[1, 2]), ("b", 1.0, &[3, 4])]);
        f[at] = byte;
        if let Ok(c) = Contextionary::parse(f) {
            let _ = c.vector("a", &[]);
            let _ = c.nearest_words(&c.vector("a", &[]).unwrap_or(plexus_core::contextionary::Vector(vec![0.0; c.dims()])), 0.0, 5);
        }
    }
}

#[test]
fn the_default_file_keeps_the_originals_certainties() {
    let c = Contextionary::parse(
        include_bytes!("../../data/contextionary/glove-6b-50d-50k.ctx").to_vec(),
    )
    .expect("the committed file");
    assert_eq!(c.len(), 50_000);
    assert_eq!(c.dims(), 50);
    assert_eq!(
        c.hash().to_string(),
        "sha256:77965598833b24f93cdaaf23efc6f5a7b449a846b8fce68135d9630bbd1c5c0c"
    );
    let v = |n: &str| c.vector(n, &[]).expect("known");
    let city = v("City");
    let round = |x: f64| (x * 100.0).round() / 100.0;
    assert_eq!(round(certainty(&city, &v("Town"))), 0.76);
    assert_eq!(round(certainty(&city, &v("Village"))), 0.66);
    assert_eq!(round(certainty(&city, &v("Country"))), 0.63);
    assert_eq!(round(certainty(&city, &v("Airplane"))), 0.49);
}

// ---- Network Fetch and Introspect: who is asked, and the ranked merge ----

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_core::PeerName;
use plexus_core::Timestamp;
use plexus_core::fanout::{Fanout, FanoutLimits};
use plexus_core::network::{self, Gather};

/// PeerA holds City, PeerB Town, PeerC Village, PeerD Airplane, PeerE only
/// an action class; each class with a string `name`.
fn network_schemas() -> BTreeMap<PeerName, Schema> {
    let one = |kind: &str, class: &str| -> Schema {
        serde_json::from_value(json!({kind: {"classes": [
            {"class": class, "properties": [{"name": "name", "dataType": ["string"]}]}]}}))
        .expect("schema")
    };
    [
        ("PeerA", one("things", "City")),
        ("PeerB", one("things", "Town")),
        ("PeerC", one("things", "Village")),
        ("PeerD", one("things", "Airplane")),
        ("PeerE", one("actions", "Town")),
    ]
    .into_iter()
    .map(|(n, s)| (PeerName::new(n).expect("name"), s))
    .collect()
}

fn fetch_city(certainty: f64) -> String {
    format!(
        r#"{{ Network(networkTimeout: 500) {{ Fetch {{ things: Things(where: {{class: {{name: "City", certainty: {certainty}}},
           properties: [{{name: "name", certainty: 0.9, operator: Equal, valueString: "Amsterdam"}}]}}) {{ className beacon }} }} }} }}"#
    )
}

fn peers_asked(plan: &network::NetworkPlan) -> Vec<&str> {
    plan.queries.iter().map(|q| q.peer.as_str()).collect()
}

#[test]
fn network_fetch_asks_only_the_peers_whose_cached_schema_is_near() {
    let c = tiny();
    let schemas = network_schemas();
    let vars = serde_json::Map::new();
    // City–Town 7/12, City–Village 1/6, City–Airplane 0 (tiny vocabulary).
    let plan =
        network::plan_with(&fetch_city(0.5), None, &vars, &schemas, Some(&c)).expect("valid");
    assert_eq!(peers_asked(&plan), ["PeerA", "PeerB"], "{plan:?}");
    let skipped: Vec<&str> = plan.skipped.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(skipped, ["PeerC", "PeerD", "PeerE"]);
    let path = ["Network".to_owned(), "Fetch".into(), "things".into()];
    assert_eq!(plan.lists, std::slice::from_ref(&path));
    assert_eq!(plan.timeout, Some(500));
    let q = &plan.queries[0];
    assert_eq!(q.parts[0].path, path);
    assert_eq!(q.parts[0].gather, Gather::Ranked);
    let text = plexus_core::graphql::prepare(&q.query, None, &serde_json::Map::new())
        .expect("valid GraphQL")
        .to_string();
    assert!(
        text.contains("q0: Local")
            && text.contains("Fetch")
            && text.contains("Things(where:")
            && !text.contains("things:")
            && text.contains("_rankCertainty: certainty")
            && text.contains("_rankTie0: beacon"),
        "{text}"
    );
    // A lower certainty reaches the village too.
    let plan =
        network::plan_with(&fetch_city(0.1), None, &vars, &schemas, Some(&c)).expect("valid");
    assert_eq!(peers_asked(&plan), ["PeerA", "PeerB", "PeerC"]);
    // Without a contextionary: every peer with a class of the kind.
    let plan = network::plan(&fetch_city(0.5), None, &vars, &schemas).expect("valid");
    assert_eq!(peers_asked(&plan), ["PeerA", "PeerB", "PeerC", "PeerD"]);
    // Introspect and Fetch of one peer share its one request.
    let both = r#"{ Network { Fetch { Things(where: {class: {name: "City", certainty: 0.5}}) { beacon } }
        Introspect { Things(where: [{class: [{name: "City", certainty: 0.1}]}]) { className }
                     Actions(where: [{class: [{name: "Town", certainty: 0.9}]}]) { className } } } }"#;
    let plan = network::plan_with(both, None, &vars, &schemas, Some(&c)).expect("valid");
    assert_eq!(peers_asked(&plan), ["PeerA", "PeerB", "PeerC", "PeerE"]);
    assert_eq!(
        plan.queries[0].parts.len(),
        2,
        "PeerA: Fetch and Introspect"
    );
    assert!(plan.queries[1].query.contains("_rankTie1: className"));
    assert_eq!(plan.lists.len(), 3);
}

#[test]
fn network_fetch_refuses_unknown_words_and_beacons_of_unknown_peers_before_sending() {
    let c = tiny();
    let schemas = network_schemas();
    let vars = serde_json::Map::new();
    let q = r#"{ Network { Fetch { Things(where: {class: {name: "XyzzyCity", certainty: 0.5}}) { beacon } } } }"#;
    let errors = network::plan_with(q, None, &vars, &schemas, Some(&c)).expect_err("unknown word");
    assert!(errors[0].message.contains("\"xyzzy\""), "{errors:?}");
    assert_eq!(
        errors[0].path,
        [json!("Network"), json!("Fetch"), json!("Things")]
    );
    let beacon = |peer: &str| {
        format!(
            r#"{{ Network {{ Introspect {{ Beacon(id: "weaviate://{peer}/things/6f9b5a32-8d7b-4c36-9a8e-0b1c2d3e4f50") {{ className }} }} }} }}"#
        )
    };
    let plan =
        network::plan_with(&beacon("PeerC"), None, &vars, &schemas, Some(&c)).expect("valid");
    assert_eq!(peers_asked(&plan), ["PeerC"]);
    assert_eq!(plan.queries[0].parts[0].gather, Gather::Field);
    assert!(plan.lists.is_empty());
    let errors = network::plan(&beacon("PeerZ"), None, &vars, &schemas).expect_err("unknown");
    assert!(
        errors[0].message.contains("unknown peer \"PeerZ\""),
        "{errors:?}"
    );
    let bad = r#"{ Network { Introspect { Beacon(id: "nope") { className } } } }"#;
    let errors = network::plan(bad, None, &vars, &schemas).expect_err("not a beacon");
    assert!(errors[0].message.contains("not a beacon"), "{errors:?}");
    let bad = r#"{ Network { Fetch { Things(where: {class: {name: "City", certainty: 0.5}}) { _rankTie0: className } } } }"#;
    let errors = network::plan(bad, None, &vars, &schemas).expect_err("a rank key");
    assert!(errors[0].message.contains("_rankTie0"), "{errors:?}");
    let bad = r#"{ Network { Fetch { Things(where: {class: {name: "City", certainty: 2}}) { beacon } } } }"#;
    let errors = network::plan(bad, None, &vars, &schemas).expect_err("a certainty over 1");
    assert!(
        errors[0].message.contains("certainty from 0 to 1"),
        "{errors:?}"
    );
}

#[test]
fn network_fetch_merges_the_answers_by_certainty_with_an_error_per_peer_that_did_not_answer() {
    let schemas = network_schemas();
    let vars = serde_json::Map::new();
    let plan = network::plan(&fetch_city(0.5), None, &vars, &schemas).expect("valid");
    assert_eq!(peers_asked(&plan), ["PeerA", "PeerB", "PeerC", "PeerD"]);
    // Virtual time: A and B answer, C refuses the connection, D never answers.
    let mut fanout = Fanout::new(FanoutLimits::default());
    let t0 = Timestamp(1_000);
    let timeout = Duration::from_millis(500);
    let id = fanout.start(plan.asks(), timeout, t0);
    let sent: Vec<_> = std::iter::from_fn(|| fanout.poll_transmit()).collect();
    assert_eq!(sent.len(), 4);
    let item = |class: &str, beacon: &str, c: f64| json!({"className": class, "beacon": beacon, "_rankCertainty": c, "_rankTie0": beacon});
    let answer =
        |items: Vec<Value>| json!({"data": {"q0": {"Fetch": {"Things": items}}}}).to_string();
    let a = answer(vec![item("City", "weaviate://PeerA/things/2", 1.0)]);
    let b = answer(vec![
        item("Town", "weaviate://PeerB/things/9", 7.0 / 12.0),
        item("Town", "weaviate://PeerB/things/1", 7.0 / 12.0),
        item("Town", "weaviate://PeerB/things/5", 0.99),
    ]);
    fanout.handle_reply(sent[1].id, 200, b.as_bytes(), Timestamp(1_010));
    fanout.handle_reply(sent[0].id, 200, a.as_bytes(), Timestamp(1_020));
    fanout.handle_failure(sent[2].id, "connection refused".into(), Timestamp(1_030));
    assert!(fanout.poll_event().is_none(), "PeerD is still awaited");
    assert_eq!(fanout.poll_timeout(), Some(Timestamp(1_500)));
    fanout.handle_timeout(Timestamp(1_500));
    let done = fanout.poll_event().expect("over at the deadline");
    assert_eq!(done.query, id);
    let response = network::merge(&plan, done.outcomes).into_response();
    let found = &response["data"]["Network"]["Fetch"]["things"];
    assert_eq!(
        *found,
        json!([
            {"className": "City", "beacon": "weaviate://PeerA/things/2"},
            {"className": "Town", "beacon": "weaviate://PeerB/things/5"},
            {"className": "Town", "beacon": "weaviate://PeerB/things/1"},
            {"className": "Town", "beacon": "weaviate://PeerB/things/9"},
        ]),
        "by certainty, ties by beacon, rank keys dropped: {response}"
    );
    let errors: Vec<(&str, &Value)> = response["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["message"].as_str().expect("text"), &e["path"]))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, "peer PeerC did not answer: connection refused");
    assert_eq!(
        errors[1].0,
        "peer PeerD did not answer: no answer within 500ms"
    );
    for (_, path) in &errors {
        assert_eq!(**path, json!(["Network", "Fetch", "things"]));
    }
}

#[test]
fn a_peers_own_error_and_a_malformed_list_are_errors_naming_it_beside_the_others_items() {
    let schemas = network_schemas();
    let vars = serde_json::Map::new();
    let plan = network::plan(&fetch_city(0.5), None, &vars, &schemas).expect("valid");
    let ok = |beacon: &str| {
        plexus_core::fanout::Outcome::Answered(json!({"data": {"q0": {"Fetch": {"Things": [
            {"beacon": beacon, "_rankCertainty": 0.5, "_rankTie0": beacon}]}}}}))
    };
    let outcomes = vec![
        ok("weaviate://PeerA/things/1"),
        plexus_core::fanout::Outcome::Answered(json!({"data": {"q0": {"Fetch": {"Things": null}}},
            "errors": [{"message": "the contextionary has no word \"x\"", "path": ["q0", "Fetch", "Things"]}]})),
        plexus_core::fanout::Outcome::Answered(json!({"data": {"q0": {"Fetch": {"Things": 7}}}})),
        ok("weaviate://PeerD/things/1"),
    ];
    let merged = network::merge(&plan, outcomes);
    let messages: Vec<&str> = merged.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "peer PeerB: the contextionary has no word \"x\"",
            "peer PeerC answered malformed: its part q0 is not an object of one form"
        ]
    );
    let response = merged.into_response();
    assert_eq!(
        response["data"]["Network"]["Fetch"]["things"],
        json!([{"beacon": "weaviate://PeerA/things/1"}, {"beacon": "weaviate://PeerD/things/1"}])
    );
    // No peer asked: an empty list, no error.
    let c = tiny();
    let q = r#"{ Network { Fetch { Actions(where: {class: {name: "Airplane", certainty: 0.9}}) { beacon } } } }"#;
    let plan = network::plan_with(q, None, &vars, &schemas, Some(&c)).expect("valid");
    assert!(plan.queries.is_empty());
    assert_eq!(
        network::merge(&plan, vec![]).into_response(),
        json!({"data": {"Network": {"Fetch": {"Actions": []}}}})
    );
}
