//! The `where` filter's own rules: parsing a filter object against a class,
//! testing values, `Like` patterns and dates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_core::filter::{Filter, like, parse_date};
use plexus_core::schema::Schema;
use serde_json::{Value, json};

fn schema() -> Schema {
    serde_json::from_value(json!({"things": {"classes": [
        {"class": "City", "properties": [
            {"name": "name", "dataType": ["string"]},
            {"name": "population", "dataType": ["int"]}]}]}}))
    .expect("schema")
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
