//! Property tests of the indexes: for random objects, random writes and
//! random filters, [`Snapshot::query`] (from the indexes) answers exactly
//! what a scan with [`Filter::matches`] answers, and the index entries are
//! exactly those of the stored objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_core::filter::{CompareOp, Filter, Hop, Operand};
use plexus_core::schema::{Class, Kind, Property, Schema};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::index::Plan;
use crate::object::Object;
use crate::store::{Snapshot, Store};

const CLASS: &str = "City";

fn schema() -> Schema {
    let property = |name: &str, t: &str| Property {
        name: name.into(),
        data_type: vec![t.into()],
        description: String::new(),
        keywords: Vec::new(),
    };
    let mut schema = Schema::default();
    schema
        .add_class(
            Kind::Things,
            Class {
                class: CLASS.into(),
                description: String::new(),
                properties: vec![
                    property("s", "string"),
                    property("t", "text"),
                    property("i", "int"),
                    property("n", "number"),
                    property("b", "boolean"),
                    property("d", "date"),
                    property("r", CLASS),
                ],
                keywords: Vec::new(),
            },
        )
        .unwrap();
    schema
}

const STRINGS: [&str; 8] = ["", "a", "ab", "abc", "b", "ba", "é", "a*b"];
const WORDS: [&str; 6] = ["red", "fox", "re", "foxes", "Red", "1"];
const SEPARATORS: [&str; 3] = [" ", ", ", "-"];
const INTS: [i64; 8] = [-3, -1, 0, 1, 2, 9_007_199_254_740_993, i64::MAX, i64::MIN];
const NUMBERS: [f64; 7] = [-1.5, -0.0, 0.0, 1.0, 2.5, 3.0, 1e300];
const DATES: [&str; 5] = [
    "2020-01-01T00:00:00Z",
    "2020-01-01T01:00:00+01:00",
    "2020-01-01T00:00:00.5Z",
    "1969-12-31T23:59:59Z",
    "2030-06-01T12:00:00Z",
];
const IDS: u128 = 12;

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec((0..WORDS.len(), 0..SEPARATORS.len()), 0..4).prop_map(|parts| {
        let mut out = String::new();
        for (i, (w, s)) in parts.iter().enumerate() {
            if i > 0 {
                out.push_str(SEPARATORS[*s]);
            }
            out.push_str(WORDS[*w]);
        }
        out
    })
}

fn values() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::of(0..STRINGS.len()),
        prop::option::of(text()),
        prop::option::of(0..INTS.len()),
        prop::option::of(prop_oneof![
            (0..NUMBERS.len()).prop_map(|i| json!(NUMBERS[i])),
            (0..INTS.len()).prop_map(|i| json!(INTS[i])),
        ]),
        prop::option::of(any::<bool>()),
        prop::option::of(0..DATES.len()),
        prop::option::of(prop::collection::vec(0..IDS, 0..3)),
    )
        .prop_map(|(s, t, i, n, b, d, r)| {
            let mut m = Map::new();
            if let Some(s) = s {
                m.insert("s".into(), json!(STRINGS[s]));
            }
            if let Some(t) = t {
                m.insert("t".into(), json!(t));
            }
            if let Some(i) = i {
                m.insert("i".into(), json!(INTS[i]));
            }
            if let Some(n) = n {
                m.insert("n".into(), n);
            }
            if let Some(b) = b {
                m.insert("b".into(), json!(b));
            }
            if let Some(d) = d {
                m.insert("d".into(), json!(DATES[d]));
            }
            if let Some(r) = r {
                let beacons: Vec<Value> = r
                    .into_iter()
                    .map(|id| json!({ "beacon": format!("weaviate://localhost/things/{}", Uuid::from_u128(id)) }))
                    .collect();
                m.insert("r".into(), Value::Array(beacons));
            }
            m
        })
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Equal,
        CompareOp::NotEqual,
        CompareOp::GreaterThan,
        CompareOp::GreaterThanEqual,
        CompareOp::LessThan,
        CompareOp::LessThanEqual,
    ])
}

fn pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        (0..WORDS.len()).prop_map(|w| WORDS[w].to_owned()),
        (0..STRINGS.len()).prop_map(|s| STRINGS[s].to_owned()),
        (0..SEPARATORS.len()).prop_map(|s| SEPARATORS[s].to_owned()),
        Just("*".to_owned()),
        Just("?".to_owned()),
    ];
    prop::collection::vec(token, 0..4).prop_map(|t| t.concat())
}

fn compare(property: &str, op: CompareOp, value: Operand) -> Filter {
    Filter::Compare {
        op,
        hops: Vec::new(),
        property: property.into(),
        value,
    }
}

fn leaf() -> impl Strategy<Value = Filter> {
    let date = |i: usize| {
        let (s, n) = plexus_core::filter::parse_date(DATES[i]).unwrap();
        Operand::Date(s, n)
    };
    prop_oneof![
        (op(), 0..STRINGS.len()).prop_map(|(op, s)| compare(
            "s",
            op,
            Operand::Text(STRINGS[s].into())
        )),
        pattern().prop_map(|p| compare("s", CompareOp::Like, Operand::Text(p))),
        (op(), text()).prop_map(|(op, t)| compare("t", op, Operand::Text(t))),
        pattern().prop_map(|p| compare("t", CompareOp::Like, Operand::Text(p))),
        (op(), prop::sample::select(vec!["i", "n"]), 0..INTS.len()).prop_map(|(op, p, i)| compare(
            p,
            op,
            Operand::Int(INTS[i])
        )),
        (op(), prop::sample::select(vec!["i", "n"]), 0..NUMBERS.len())
            .prop_map(|(op, p, i)| compare(p, op, Operand::Number(NUMBERS[i]))),
        (
            prop::sample::select(vec![CompareOp::Equal, CompareOp::NotEqual]),
            any::<bool>()
        )
            .prop_map(|(op, b)| compare("b", op, Operand::Boolean(b))),
        (op(), 0..DATES.len()).prop_map(move |(op, d)| compare("d", op, date(d))),
        (op(), 0..STRINGS.len()).prop_map(|(op, s)| Filter::Compare {
            op,
            hops: vec![Hop {
                property: "r".into(),
                class: CLASS.into(),
            }],
            property: "s".into(),
            value: Operand::Text(STRINGS[s].into()),
        }),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::And),
            prop::collection::vec(inner, 0..4).prop_map(Filter::Or),
        ]
    })
}

/// A write after the first batch: replace or delete one of the ids.
#[derive(Debug, Clone)]
enum Write {
    Replace(u128, Map<String, Value>),
    Delete(u128),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        (0..IDS, values()).prop_map(|(id, v)| Write::Replace(id, v)),
        (0..IDS).prop_map(Write::Delete),
    ]
}

fn object(id: u128, schema: Map<String, Value>) -> Object {
    Object {
        id: Uuid::from_u128(id),
        kind: Kind::Things,
        class: CLASS.into(),
        schema,
        creation_time_unix: 1,
        last_update_time_unix: 1,
    }
}

/// The reference answer: every object of the class, in id order, that passes.
fn scanned(snap: &Snapshot, filter: &Filter, limit: usize) -> Vec<Object> {
    let mut out = Vec::new();
    snap.scan_class(CLASS, &mut |o| {
        if filter.matches(&o.schema, &mut |r| snap.follow(r).unwrap()) {
            out.push(o);
        }
        out.len() < limit
    })
    .unwrap();
    out
}

fn uses_index(plan: &Plan) -> bool {
    match plan {
        Plan::Scan => false,
        Plan::Range { .. } | Plan::Not(_) => true,
        Plan::And(p) | Plan::Or(p) => p.iter().any(uses_index),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn indexed_answers_equal_scanned_answers(
        objects in prop::collection::vec((0..IDS, values()), 0..16),
        writes in prop::collection::vec(write(), 0..6),
        filters in prop::collection::vec((filter(), 1..20usize), 1..24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save_schema(&schema(), &|| true).unwrap();
        let batch: Vec<Object> = objects.into_iter().map(|(id, v)| object(id, v)).collect();
        store.insert_batch(&batch, &|| true).unwrap();
        for w in writes {
            match w {
                Write::Replace(id, v) => {
                    store.replace(&object(id, v), &|| true).unwrap();
                }
                Write::Delete(id) => {
                    store.delete(Uuid::from_u128(id), |_| true, &|| true).unwrap();
                }
            }
        }
        prop_assert_eq!(store.check_indexes().unwrap(), None);
        let snap = store.snapshot().unwrap();
        for (filter, limit) in &filters {
            let indexed = snap.query(Kind::Things, CLASS, Some(filter), *limit).unwrap();
            let expected = scanned(&snap, filter, *limit);
            prop_assert_eq!(
                &indexed, &expected,
                "filter {:?} (plan {:?}, uses an index: {})",
                filter, snap.plan(Kind::Things, CLASS, filter), uses_index(&snap.plan(Kind::Things, CLASS, filter))
            );
        }
    }
}
