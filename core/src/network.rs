//! The Network query planner and result merger.
//!
//! `{ Network { Get { PeerB { Things { City { name } } } } } }` becomes one
//! Local query per distinct named peer: every field naming that peer (its
//! aliases, under `Get` and `GetMeta`) goes into the same query as one
//! aliased `Local` field each (`{ q0: Local { Get { … } } q1: Local {
//! GetMeta { … } } }`), so a peer gets one request however often a query
//! names it. The answers are merged back under `Network.Get.PeerB`, with one
//! GraphQL error (and its path) for each peer that failed, beside the data
//! of those that answered. The peers' engine validates a query before it is
//! planned (and each peer judges its own Local query), so the planner only
//! checks the shape and that every named peer is known. Peers, the
//! dashboard and the browser client all use this.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use graphql_parser::query::{
    Document, Field, OperationDefinition, Selection, SelectionSet, Text, Value,
};
use serde_json::{Map, Value as Json, json};

use crate::fanout::{Ask, Outcome};
use crate::graphql::{AstField, AstSelectionSet, GraphQLError, prepare, response_key};
use crate::names::PeerName;
use crate::schema::Schema;

/// The query forms of `Network` (and of `Local`).
pub const FORMS: [&str; 2] = ["Get", "GetMeta"];

/// One Local query to send to one peer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerQuery {
    /// The peer to ask.
    pub peer: PeerName,
    /// The Local query text to `POST {peer}/v1/graphql`.
    pub query: String,
    /// Where each of its `q{i}` answers goes in the response:
    /// `[Network key, form key, peer key]`, `i` being the index here.
    pub paths: Vec<[String; 3]>,
}

/// A planned Network query.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPlan {
    /// The queries to send, one per distinct peer, in the order first named.
    pub queries: Vec<PeerQuery>,
    /// The per-peer time the query asked for (`Network(networkTimeout:)`,
    /// in ms; the smallest when several `Network` fields give one).
    pub timeout: Option<u64>,
}

impl NetworkPlan {
    /// The asks of the fan-out, in the order of `queries`.
    pub fn asks(&self) -> Vec<Ask> {
        self.queries
            .iter()
            .map(|q| Ask {
                peer: q.peer.clone(),
                query: q.query.clone(),
            })
            .collect()
    }
}

/// The argument of `Network` that gives the per-peer time, in ms.
pub const TIMEOUT_ARGUMENT: &str = "networkTimeout";

/// One field naming a peer: its form (`Get`), its selection, its response path.
type Part = (String, AstSelectionSet, [String; 3]);

/// Plans the `Network` root fields of `query` (with `variables`); other
/// root fields are left to the caller. Every named peer must be a key of
/// `schemas` (the peers whose schema is known).
pub fn plan<S: Borrow<Schema>>(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    schemas: &BTreeMap<PeerName, S>,
) -> Result<NetworkPlan, Vec<GraphQLError>> {
    let root = prepare(query, operation_name, variables).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    // Per peer, in the order first named: its (form, selection, path) parts.
    let mut parts: Vec<(PeerName, Vec<Part>)> = Vec::new();
    let mut timeout: Option<u64> = None;
    for network in fields(&root, &mut errors, "the root") {
        if network.name != "Network" {
            continue;
        }
        let network_key = response_key(network).to_owned();
        for (name, value) in &network.arguments {
            let ms = match value {
                Value::Int(n) if name == TIMEOUT_ARGUMENT => n.as_i64().filter(|n| *n > 0),
                _ => None,
            };
            match ms.and_then(|ms| u64::try_from(ms).ok()) {
                Some(ms) => timeout = Some(timeout.map_or(ms, |t| t.min(ms))),
                None => errors.push(GraphQLError::at(
                    format!(
                        "Network takes one argument, {TIMEOUT_ARGUMENT}: a positive number of milliseconds (got {name}: {value})"
                    ),
                    network.position,
                    std::slice::from_ref(&network_key),
                )),
            }
        }
        for form in fields(&network.selection_set, &mut errors, "Network") {
            let form_key = response_key(form).to_owned();
            if !FORMS.contains(&form.name.as_str()) {
                errors.push(GraphQLError::at(
                    format!("Network.{} is not supported: use Get or GetMeta", form.name),
                    form.position,
                    &[network_key.clone(), form_key],
                ));
                continue;
            }
            for peer_field in fields(&form.selection_set, &mut errors, "Network.Get") {
                let path = [
                    network_key.clone(),
                    form_key.clone(),
                    response_key(peer_field).to_owned(),
                ];
                let peer = match PeerName::new(peer_field.name.clone()) {
                    Ok(peer) if schemas.contains_key(&peer) => peer,
                    _ => {
                        let known: Vec<&str> = schemas.keys().map(PeerName::as_str).collect();
                        errors.push(GraphQLError::at(
                            format!(
                                "unknown peer {:?} (known peers with a schema: {})",
                                peer_field.name,
                                known.join(", ")
                            ),
                            peer_field.position,
                            &path,
                        ));
                        continue;
                    }
                };
                let part = (form.name.clone(), peer_field.selection_set.clone(), path);
                match parts.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, list)) => list.push(part),
                    None => parts.push((peer, vec![part])),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let queries = parts
        .into_iter()
        .map(|(peer, list)| {
            let mut items = Vec::new();
            let mut paths = Vec::new();
            for (i, (form, mut set, path)) in list.into_iter().enumerate() {
                with_typenames(&mut set, &format!("{peer}_"));
                items.push(Selection::Field(field(
                    Some(format!("q{i}")),
                    "Local",
                    vec![Selection::Field(field(None, &form, set.items))],
                )));
                paths.push(path);
            }
            let document: Document<'static, String> = Document {
                definitions: vec![graphql_parser::query::Definition::Operation(
                    OperationDefinition::SelectionSet(selection_set(items)),
                )],
            };
            PeerQuery {
                peer,
                query: document.to_string(),
                paths,
            }
        })
        .collect();
    Ok(NetworkPlan { queries, timeout })
}

/// The fields of `set`: fragments were inlined by `prepare`, and only a
/// reference's selection may hold inline fragments.
fn fields<'s>(
    set: &'s AstSelectionSet,
    errors: &mut Vec<GraphQLError>,
    under: &str,
) -> Vec<&'s AstField> {
    let mut out = Vec::new();
    for item in &set.items {
        match item {
            Selection::Field(f) => out.push(f),
            _ => errors.push(GraphQLError::query(format!(
                "fragments are not allowed under {under} of a Network query"
            ))),
        }
    }
    out
}

/// Adds `__typename` to every selection that holds inline fragments (a
/// reference's), so the merged answer tells each object's class, and names
/// the peer's own types in their conditions (the engine's Network types
/// carry a `{peer}_` prefix).
fn with_typenames(set: &mut AstSelectionSet, prefix: &str) {
    let mut fragments = false;
    for item in &mut set.items {
        match item {
            Selection::Field(f) => with_typenames(&mut f.selection_set, prefix),
            Selection::InlineFragment(f) => {
                fragments = true;
                if let Some(graphql_parser::query::TypeCondition::On(name)) = &mut f.type_condition
                    && let Some(bare) = name.strip_prefix(prefix)
                {
                    *name = bare.to_owned();
                }
                with_typenames(&mut f.selection_set, prefix);
            }
            Selection::FragmentSpread(_) => {}
        }
    }
    if fragments {
        set.items
            .push(Selection::Field(field(None, "__typename", Vec::new())));
    }
}

fn selection_set<'a, T: Text<'a>>(items: Vec<Selection<'a, T>>) -> SelectionSet<'a, T> {
    SelectionSet {
        span: Default::default(),
        items,
    }
}

fn field(
    alias: Option<String>,
    name: &str,
    items: Vec<Selection<'static, String>>,
) -> Field<'static, String> {
    Field {
        position: Default::default(),
        alias,
        name: name.to_owned(),
        arguments: Vec::new(),
        directives: Vec::new(),
        selection_set: selection_set(items),
    }
}

/// The merged answer of a Network query, typed: the data under
/// `Network key → form key → peer key`, and the errors with their paths
/// (one for each peer that did not answer, was missing parts of its
/// answer or answered malformed, and each peer's own errors moved under
/// its field).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    /// `{Network key: {form key: {peer key: value}}}`.
    pub data: Map<String, Json>,
    /// The errors, each with its path from the response's root.
    pub errors: Vec<GraphQLError>,
}

impl Merged {
    /// The GraphQL response `{"data": ..., "errors": [...]}` (no `errors`
    /// key when there is none), for a client that merges without an engine.
    pub fn into_response(self) -> Json {
        let mut response = json!({ "data": self.data });
        if !self.errors.is_empty() {
            response["errors"] = serde_json::to_value(&self.errors).unwrap_or_default();
        }
        response
    }

    /// Puts `value` at `path` (`[Network key, form key, peer key]`).
    pub fn insert(&mut self, path: &[String; 3], value: Json) {
        let [network_key, form_key, peer_key] = path;
        let network = self
            .data
            .entry(network_key.clone())
            .or_insert_with(|| json!({}));
        let form = network
            .as_object_mut()
            .map(|n| n.entry(form_key.clone()).or_insert_with(|| json!({})));
        if let Some(Json::Object(form)) = form {
            form.insert(peer_key.clone(), value);
        }
    }

    /// Adds an error at `path`.
    pub fn error(&mut self, message: String, path: &[String]) {
        self.errors.push(GraphQLError {
            message,
            locations: Vec::new(),
            path: path.iter().map(|p| Json::String(p.clone())).collect(),
        });
    }
}

/// Merges the outcomes of the fan-out (in the order of `plan.queries`).
/// A peer that did not answer gets `null` and an error `peer X did not
/// answer: …` at each of its fields; a part missing from an answer (no
/// `q{i}`, or `null` with no error of the peer's for it) or an answer that
/// is not shaped as a GraphQL response gets `null` and an error saying so.
pub fn merge(plan: &NetworkPlan, outcomes: Vec<Outcome>) -> Merged {
    let mut merged = Merged::default();
    for (query, outcome) in plan.queries.iter().zip(outcomes) {
        let response = match outcome {
            Outcome::Answered(response) => response,
            other => {
                let reason = other.reason().unwrap_or_default();
                for path in &query.paths {
                    merged.error(
                        format!("peer {} did not answer: {reason}", query.peer),
                        path,
                    );
                    merged.insert(path, Json::Null);
                }
                continue;
            }
        };
        let (data, errors) = match response {
            Json::Object(mut o) => (o.remove("data"), o.remove("errors")),
            _ => (None, None),
        };
        let errors: &[Json] = match &errors {
            Some(Json::Array(list)) => list,
            _ => &[],
        };
        let mut data = match data {
            Some(Json::Object(data)) => Some(data),
            Some(Json::Null) | None => None,
            Some(_) => {
                for path in &query.paths {
                    merged.error(
                        format!(
                            "peer {} answered malformed: its data is not an object",
                            query.peer
                        ),
                        path,
                    );
                    merged.insert(path, Json::Null);
                }
                continue;
            }
        };
        for (i, path) in query.paths.iter().enumerate() {
            let alias = format!("q{i}");
            let before = merged.errors.len();
            for error in errors {
                if let Some(e) = rebase_error(error, &alias, path) {
                    merged.errors.push(e);
                }
            }
            let explained = merged.errors.len() > before;
            let part = data.as_mut().and_then(|d| d.remove(&alias));
            let value = match part {
                Some(Json::Object(local)) if local.len() == 1 => {
                    local.into_iter().next().map_or(Json::Null, |(_, v)| v)
                }
                Some(Json::Null) | None => {
                    if !explained {
                        merged.error(
                            format!(
                                "peer {} answered without this part ({alias}) and without an error for it",
                                query.peer
                            ),
                            path,
                        );
                    }
                    Json::Null
                }
                Some(_) => {
                    merged.error(
                        format!(
                            "peer {} answered malformed: its part {alias} is not an object of one form",
                            query.peer
                        ),
                        path,
                    );
                    Json::Null
                }
            };
            merged.insert(path, value);
        }
    }
    merged
}

/// A remote peer's error for its part `alias` (`q{i}`), with its path moved
/// from `q{i}.Get…` to `Network.Get.Peer…`; its locations refer to the
/// Local query and are dropped. An error without a path (the whole Local
/// query failed) counts for every part; one of another part, for none.
fn rebase_error(error: &Json, alias: &str, prefix: &[String; 3]) -> Option<GraphQLError> {
    let message = error
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("error");
    let remote_path = error.get("path").and_then(Json::as_array);
    let mut path: Vec<Json> = prefix.iter().map(|p| Json::String(p.clone())).collect();
    if let Some(remote) = remote_path.filter(|p| !p.is_empty()) {
        if remote.first().and_then(Json::as_str) != Some(alias) {
            return None;
        }
        path.extend(remote.iter().skip(2).cloned());
    }
    Some(GraphQLError {
        message: message.to_owned(),
        locations: Vec::new(),
        path,
    })
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
    fn plans_one_local_query_per_distinct_peer() {
        let q = "{ Network { Get { PeerB { Things { City(limit: 1) { name } } } PeerC { Things { Airport { code } } } b2: PeerB { Things { City { population } } } } GetMeta { PeerB { Things { City { meta { count } } } } } } }";
        let plan = plan(q, None, &no_vars(), &schemas()).expect("valid");
        assert_eq!(plan.queries.len(), 2, "{plan:?}");
        let b = &plan.queries[0];
        assert_eq!(b.peer.as_str(), "PeerB");
        assert_eq!(b.paths.len(), 3);
        assert_eq!(
            b.paths[1],
            ["Network".to_owned(), "Get".into(), "b2".into()]
        );
        assert_eq!(b.paths[2][1], "GetMeta");
        let text = graphql_parser::parse_query::<String>(&b.query)
            .expect("valid GraphQL")
            .to_string();
        assert!(
            text.contains("q0: Local")
                && text.contains("q2: Local")
                && text.contains("GetMeta")
                && text.contains("City(limit: 1)")
                && !text.contains("Airport"),
            "{text}"
        );
        assert_eq!(
            plan.queries[1].paths,
            [["Network".to_owned(), "Get".into(), "PeerC".into()]]
        );
    }

    #[test]
    fn a_thousand_aliases_of_one_peer_make_one_query() {
        let fields: String = (0..1000)
            .map(|i| format!("a{i}: PeerB {{ Things {{ City(limit: 1) {{ name }} }} }} "))
            .collect();
        let q = format!("{{ Network {{ Get {{ {fields} }} }} }}");
        let plan = plan(&q, None, &no_vars(), &schemas()).expect("valid");
        assert_eq!(plan.queries.len(), 1);
        assert_eq!(plan.queries[0].paths.len(), 1000);
    }

    #[test]
    fn references_ask_for_their_typename() {
        let q = "{ Network { Get { PeerB { Things { City { inCountry { ... on Country { name } } } } } } } }";
        let plan = plan(q, None, &no_vars(), &schemas()).expect("valid");
        assert!(
            plan.queries[0].query.contains("__typename"),
            "{}",
            plan.queries[0].query
        );
    }

    #[test]
    fn unknown_peers_and_forms_are_refused_before_sending() {
        for (q, needle) in [
            (
                "{ Network { Get { PeerZ { Things { City { name } } } } } }",
                "unknown peer",
            ),
            ("{ Network { Fetch { PeerB { x } } } }", "not supported"),
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
        let local_only = "{ Local { Get { Things { City { name } } } } }";
        assert_eq!(
            plan(local_only, None, &no_vars(), &schemas()).expect("Local is left alone"),
            NetworkPlan {
                queries: vec![],
                timeout: None
            }
        );
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

    fn answered(v: Json) -> Outcome {
        Outcome::Answered(v)
    }

    #[test]
    fn merges_answers_and_reports_each_failed_peer_with_its_path() {
        let q = "{ Network { Get { PeerB { Things { City { name } } } c: PeerC { Things { Airport { code } } } } } }";
        let plan = plan(q, None, &no_vars(), &schemas()).expect("valid");
        let b = json!({"data": {"q0": {"Get": {"Things": {"City": [{"name": "Amsterdam"}]}}}}});
        let merged = merge(
            &plan,
            vec![answered(b), Outcome::Failed("connection refused".into())],
        )
        .into_response();
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
                .contains("PeerC did not answer: connection refused")
        );
    }

    #[test]
    fn remote_errors_are_rebased_under_the_peer() {
        let plan = plan(
            "{ Network { Get { PeerB { Things { City { name } } } x: PeerB { Things { City { name } } } } } }",
            None,
            &no_vars(),
            &schemas(),
        )
        .expect("valid");
        let answer = json!({"data": {"q0": {"Get": {"Things": {"City": null}}}, "q1": {"Get": {"Things": {"City": []}}}},
                            "errors": [{"message": "boom", "locations": [{"line": 1, "column": 3}], "path": ["q0", "Get", "Things", "City"]}]});
        let merged = merge(&plan, vec![answered(answer)]).into_response();
        assert_eq!(
            merged["errors"],
            json!([{"message": "boom", "path": ["Network", "Get", "PeerB", "Things", "City"]}])
        );
        assert_eq!(
            merged["data"]["Network"]["Get"]["x"]["Things"]["City"],
            json!([])
        );
        let clean = merge(
            &plan,
            vec![answered(
                json!({"data": {"q0": {"Get": {}}, "q1": {"Get": {}}}}),
            )],
        )
        .into_response();
        assert!(
            clean.get("errors").is_none(),
            "no errors key when all answered"
        );
    }

    #[test]
    fn a_missing_or_malformed_part_is_null_with_an_error_at_its_path() {
        let q = "{ Network { Get { PeerB { Things { City { name } } } c: PeerC { Things { Airport { code } } } } GetMeta { PeerB { Things { City { meta { count } } } } } } }";
        let plan = plan(q, None, &no_vars(), &schemas()).expect("valid");
        let cases = [
            // `{"data": {}}`: every part missing.
            (json!({"data": {}}), "without this part"),
            (json!({"data": null}), "without this part"),
            (json!({}), "without this part"),
            (json!({"data": [1]}), "malformed"),
            (json!({"data": {"q0": 3, "q1": "x"}}), "malformed"),
        ];
        for (answer, needle) in cases {
            let merged = merge(
                &plan,
                vec![
                    answered(answer.clone()),
                    answered(json!({"data": {"q0": {"Get": {"Things": {"Airport": []}}}}})),
                ],
            );
            let paths: Vec<&[Json]> = merged.errors.iter().map(|e| &e.path[..]).collect();
            assert_eq!(
                paths,
                [
                    &[json!("Network"), json!("Get"), json!("PeerB")][..],
                    &[json!("Network"), json!("GetMeta"), json!("PeerB")][..]
                ],
                "{answer}: {merged:?}"
            );
            assert!(
                merged.errors.iter().all(|e| e.message.contains(needle)),
                "{answer}: {merged:?}"
            );
            let response = merged.into_response();
            assert_eq!(response["data"]["Network"]["Get"]["PeerB"], Json::Null);
            assert_eq!(
                response["data"]["Network"]["Get"]["c"],
                json!({"Things": {"Airport": []}})
            );
        }
        // A part that is null because of the peer's own error gets only that error.
        let merged = merge(
            &plan,
            vec![
                answered(json!({"data": null, "errors": [{"message": "schema changed"}]})),
                answered(json!({"data": {"q0": {"Get": {}}}})),
            ],
        );
        assert_eq!(merged.errors.len(), 2, "{merged:?}");
        assert!(merged.errors.iter().all(|e| e.message == "schema changed"));
    }

    #[test]
    fn network_timeout_is_read_from_the_network_field() {
        let q = "{ a: Network(networkTimeout: 250) { Get { PeerB { Things { City { name } } } } } b: Network(networkTimeout: 900) { Get { PeerC { Things { Airport { code } } } } } }";
        assert_eq!(
            plan(q, None, &no_vars(), &schemas())
                .expect("valid")
                .timeout,
            Some(250)
        );
        let vars = json!({"t": 40}).as_object().cloned().expect("object");
        let q = "query($t: Int) { Network(networkTimeout: $t) { Get { PeerB { Things { City { name } } } } } }";
        assert_eq!(
            plan(q, None, &vars, &schemas()).expect("valid").timeout,
            Some(40)
        );
        assert_eq!(
            plan(q, None, &no_vars(), &schemas())
                .expect("valid")
                .timeout,
            None
        );
        for bad in ["0", "-5", "\"x\"", "1.5"] {
            let q = format!(
                "{{ Network(networkTimeout: {bad}) {{ Get {{ PeerB {{ Things {{ City {{ name }} }} }} }} }} }}"
            );
            let errors = plan(&q, None, &no_vars(), &schemas()).expect_err(bad);
            assert!(errors[0].message.contains("networkTimeout"), "{errors:?}");
        }
    }
}
