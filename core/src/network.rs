//! The Network query planner and result merger.
//!
//! `{ Network { Get { PeerB { Things { City { name } } } } } }` becomes one
//! `{ Local { Get { Things { City { name } } } } }` per named peer; the
//! answers are merged back under `Network.Get.PeerB`, with one GraphQL error
//! (and its path) for each peer that failed, beside the data of those that
//! answered. Peers, the dashboard and the browser client all use this.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use graphql_parser::query::{Document, Field, OperationDefinition, Selection, SelectionSet};
use serde_json::{Map, Value as Json, json};

use crate::graphql::{AstField, GraphQLError, prepare, response_key, validate_get};
use crate::names::PeerName;
use crate::schema::Schema;

/// One Local query to send to one peer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerQuery {
    /// The peer to ask.
    pub peer: PeerName,
    /// The Local query text to `POST {peer}/v1/graphql`.
    pub query: String,
    /// Where its answer goes in the response: `[Network key, Get key, peer key]`.
    pub path: [String; 3],
}

/// A planned Network query.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPlan {
    /// The queries to send, directly and in parallel.
    pub queries: Vec<PeerQuery>,
}

/// Plans `query` (with `variables`) against the cached `schemas` of the
/// known peers. Every root field must be `Network`; an unknown peer, class
/// or property is an error before anything is sent.
pub fn plan<S: Borrow<Schema>>(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    schemas: &BTreeMap<PeerName, S>,
) -> Result<NetworkPlan, Vec<GraphQLError>> {
    let root = prepare(query, operation_name, variables).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut queries = Vec::new();
    for item in &root.items {
        let Selection::Field(network) = item else {
            errors.push(GraphQLError::query(
                "fragments are not allowed at the root of a Network query",
            ));
            continue;
        };
        let network_key = response_key(network).to_owned();
        if network.name != "Network" {
            errors.push(GraphQLError::at(
                format!(
                    "{:?} cannot be asked together with Network; send Local queries on their own",
                    network.name
                ),
                network.position,
                &[network_key],
            ));
            continue;
        }
        for item in &network.selection_set.items {
            let Selection::Field(get) = item else {
                errors.push(GraphQLError::query(
                    "fragments are not allowed under Network",
                ));
                continue;
            };
            let get_key = response_key(get).to_owned();
            if get.name != "Get" {
                let path = [network_key.clone(), get_key];
                errors.push(GraphQLError::at(
                    format!("Network.{} is not supported: use Get", get.name),
                    get.position,
                    &path,
                ));
                continue;
            }
            for item in &get.selection_set.items {
                let Selection::Field(peer_field) = item else {
                    errors.push(GraphQLError::query(
                        "fragments are not allowed under Network.Get",
                    ));
                    continue;
                };
                let path = [
                    network_key.clone(),
                    get_key.clone(),
                    response_key(peer_field).to_owned(),
                ];
                match plan_peer(peer_field, schemas, &path) {
                    Ok(q) => queries.push(q),
                    Err(mut e) => errors.append(&mut e),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(NetworkPlan { queries })
    } else {
        Err(errors)
    }
}

fn plan_peer<S: Borrow<Schema>>(
    field: &AstField,
    schemas: &BTreeMap<PeerName, S>,
    path: &[String; 3],
) -> Result<PeerQuery, Vec<GraphQLError>> {
    let unknown = || {
        let known: Vec<&str> = schemas.keys().map(PeerName::as_str).collect();
        vec![GraphQLError::at(
            format!(
                "unknown peer {:?} (known peers with a schema: {})",
                field.name,
                known.join(", ")
            ),
            field.position,
            path,
        )]
    };
    let peer = PeerName::new(field.name.clone()).map_err(|_| unknown())?;
    let schema = schemas.get(&peer).ok_or_else(unknown)?;
    let errors = validate_get(&field.selection_set, schema.borrow(), path);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PeerQuery {
        peer,
        query: local_query(&field.selection_set),
        path: path.clone(),
    })
}

/// `{ Local { Get { <get> } } }` as text.
fn local_query(get: &SelectionSet<'static, String>) -> String {
    let wrap = |name: &str, set: SelectionSet<'static, String>| SelectionSet {
        span: set.span,
        items: vec![Selection::Field(Field {
            position: set.span.0,
            alias: None,
            name: name.to_owned(),
            arguments: Vec::new(),
            directives: Vec::new(),
            selection_set: set,
        })],
    };
    let document: Document<'static, String> = Document {
        definitions: vec![graphql_parser::query::Definition::Operation(
            OperationDefinition::SelectionSet(wrap("Local", wrap("Get", get.clone()))),
        )],
    };
    document.to_string()
}

/// What one peer answered to its [`PeerQuery`]: its whole GraphQL response,
/// or why there was none (timeout, connection refused, bad status).
pub type PeerAnswer = Result<Json, String>;

/// Merges the answers (in the order of `plan.queries`) into one GraphQL
/// response `{"data": ..., "errors": [...]}`.
pub fn merge(plan: &NetworkPlan, answers: Vec<PeerAnswer>) -> Json {
    let mut data = Map::new();
    let mut errors = Vec::new();
    for (query, answer) in plan.queries.iter().zip(answers) {
        let [network_key, get_key, peer_key] = &query.path;
        let value = match answer {
            Ok(response) => {
                for error in response
                    .get("errors")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    errors.push(rebase_error(error, &query.path));
                }
                response
                    .pointer("/data/Local/Get")
                    .cloned()
                    .unwrap_or(Json::Null)
            }
            Err(reason) => {
                errors.push(json!({
                    "message": format!("peer {} did not answer: {reason}", query.peer),
                    "path": query.path,
                }));
                Json::Null
            }
        };
        let network = data.entry(network_key.clone()).or_insert_with(|| json!({}));
        let get = network
            .as_object_mut()
            .map(|n| n.entry(get_key.clone()).or_insert_with(|| json!({})));
        if let Some(Json::Object(get)) = get {
            get.insert(peer_key.clone(), value);
        }
    }
    let mut response = json!({ "data": data });
    if !errors.is_empty() {
        response["errors"] = Json::Array(errors);
    }
    response
}

/// A remote peer's error, with its path moved from `Local.Get…` to
/// `Network.Get.Peer…`; its locations refer to the Local query and are dropped.
fn rebase_error(error: &Json, prefix: &[String; 3]) -> Json {
    let message = error
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("error");
    let remote_path = error.get("path").and_then(Json::as_array);
    let mut path: Vec<Json> = prefix.iter().map(|p| Json::String(p.clone())).collect();
    path.extend(remote_path.into_iter().flatten().skip(2).cloned());
    json!({ "message": message, "path": path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> BTreeMap<PeerName, Schema> {
        let city: Schema = serde_json::from_value(json!({"things": {"classes": [
            {"class": "City", "properties": [{"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}]}}))
        .expect("schema");
        let airport: Schema = serde_json::from_value(json!({"things": {"classes": [
            {"class": "Airport", "properties": [{"name": "code", "dataType": ["string"]}]}]}}))
        .expect("schema");
        BTreeMap::from([
            (PeerName::new("PeerB").expect("name"), city),
            (PeerName::new("PeerC").expect("name"), airport),
        ])
    }

    fn no_vars() -> Map<String, Json> {
        Map::new()
    }

    #[test]
    fn plans_one_local_query_per_named_peer() {
        let q = "{ Network { Get { PeerB { Things { City(limit: 1) { name } } } PeerC { Things { Airport { code } } } } } }";
        let plan = plan(q, None, &no_vars(), &schemas()).expect("valid");
        assert_eq!(plan.queries.len(), 2);
        assert_eq!(plan.queries[0].peer.as_str(), "PeerB");
        let reparsed =
            graphql_parser::parse_query::<String>(&plan.queries[0].query).expect("valid GraphQL");
        let text = reparsed.to_string();
        assert!(
            text.contains("Local") && text.contains("City(limit: 1)") && !text.contains("Airport"),
            "{text}"
        );
        assert_eq!(
            plan.queries[1].path,
            ["Network".to_owned(), "Get".into(), "PeerC".into()]
        );
    }

    #[test]
    fn unknown_peer_class_or_property_is_refused_before_sending() {
        for (q, needle) in [
            (
                "{ Network { Get { PeerZ { Things { City { name } } } } } }",
                "unknown peer",
            ),
            (
                "{ Network { Get { PeerC { Things { City { name } } } } } }",
                "no things class",
            ),
            (
                "{ Network { Get { PeerB { Things { City { mayor } } } } } }",
                "no property",
            ),
            ("{ Network { Fetch { PeerB { x } } } }", "not supported"),
            (
                "{ Local { Get { Things { City { name } } } } Network { Get { PeerB { Things { City { name } } } } } }",
                "together",
            ),
        ] {
            let errors = plan(q, None, &no_vars(), &schemas()).expect_err(q);
            assert!(
                errors.iter().any(|e| e.message.contains(needle)),
                "{q}: {errors:?}"
            );
            assert!(
                errors
                    .iter()
                    .all(|e| !e.locations.is_empty() || !e.path.is_empty()),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn variables_are_inlined_into_the_local_queries() {
        let q =
            "query($n: Int) { Network { Get { PeerB { Things { City(limit: $n) { name } } } } } }";
        let vars = json!({"n": 2}).as_object().cloned().expect("object");
        let plan = plan(q, None, &vars, &schemas()).expect("valid");
        assert!(
            plan.queries[0].query.contains("limit: 2"),
            "{}",
            plan.queries[0].query
        );
    }

    #[test]
    fn merges_answers_and_reports_each_failed_peer_with_its_path() {
        let q = "{ Network { Get { PeerB { Things { City { name } } } c: PeerC { Things { Airport { code } } } } } }";
        let plan = plan(q, None, &no_vars(), &schemas()).expect("valid");
        let b = json!({"data": {"Local": {"Get": {"Things": {"City": [{"name": "Amsterdam"}]}}}}});
        let merged = merge(&plan, vec![Ok(b), Err("connection refused".into())]);
        assert_eq!(
            merged["data"]["Network"]["Get"]["PeerB"]["Things"]["City"][0]["name"],
            "Amsterdam"
        );
        assert_eq!(merged["data"]["Network"]["Get"]["c"], Json::Null);
        let errors = merged["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["path"], json!(["Network", "Get", "c"]));
        assert!(
            errors[0]["message"]
                .as_str()
                .expect("text")
                .contains("PeerC")
        );
    }

    #[test]
    fn remote_errors_are_rebased_under_the_peer() {
        let plan = plan(
            "{ Network { Get { PeerB { Things { City { name } } } } } }",
            None,
            &no_vars(),
            &schemas(),
        )
        .expect("valid");
        let answer = json!({"data": {"Local": {"Get": {"Things": {"City": null}}}},
                            "errors": [{"message": "boom", "locations": [{"line": 1, "column": 3}], "path": ["Local", "Get", "Things", "City"]}]});
        let merged = merge(&plan, vec![Ok(answer)]);
        assert_eq!(
            merged["errors"],
            json!([{"message": "boom", "path": ["Network", "Get", "PeerB", "Things", "City"]}])
        );
        assert!(merged.get("errors").is_some());
        let clean = merge(&plan, vec![Ok(json!({"data": {"Local": {"Get": {}}}}))]);
        assert!(
            clean.get("errors").is_none(),
            "no errors key when all answered"
        );
    }
}
