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
//!
//! `Network { Fetch { … } Introspect { … } }` names no peer: each of its
//! lists (`Fetch.Things`, `Fetch.Actions`, `Fetch.Fuzzy`,
//! `Introspect.Things`, `Introspect.Actions`) is the same Local sub-query
//! asked of every peer whose schema is known and may answer it
//! ([`crate::fetch::Question::may_answer`]: a class near the queried one by
//! the contextionary, at the query's certainty), as one more aliased part of
//! that peer's one Local query; the answers are concatenated and ranked by
//! certainty (descending; ties by beacon, or by peer and class), with one
//! error per peer that did not answer. `Introspect.Beacon(id:)` asks the
//! peer the beacon names.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use crate::contextionary::Contextionary;
use crate::fanout::{Ask, Outcome};
use crate::fetch::{FetchWhere, IntrospectWhere, Question};
use crate::graphql::{
    AstField, AstSelectionSet, Field, GraphQLError, Selection, SelectionSet, Value, prepare,
    response_key, value_to_json,
};
use crate::names::PeerName;
use crate::schema::{Kind, Schema, parse_beacon};

/// The query forms of `Network` (and of `Local`) that name their peers.
pub const FORMS: [&str; 2] = ["Get", "GetMeta"];
/// The query forms of `Network` that ask every peer whose schema is known.
pub const MEANING_FORMS: [&str; 2] = ["Fetch", "Introspect"];

/// How the answer of one part joins the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gather {
    /// `Get`, `GetMeta`: the named peer's answer, at its field.
    Peer,
    /// `Introspect.Beacon`: the answer of the peer the beacon names, at the field.
    Field,
    /// A list of `Fetch` or `Introspect`: every asked peer's items, ranked.
    Ranked,
}

/// One part of a peer's Local query: its answer `q{i}` goes to `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `[Network key, form key, peer key]` (Get, GetMeta) or `[Network
    /// key, form key, field key]` (Fetch, Introspect).
    pub path: [String; 3],
    /// How it joins the response.
    pub gather: Gather,
}

/// One Local query to send to one peer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerQuery {
    /// The peer to ask.
    pub peer: PeerName,
    /// The Local query text to `POST {peer}/v1/graphql`.
    pub query: String,
    /// Where each of its `q{i}` answers goes in the response, `i` being
    /// the index here.
    pub parts: Vec<Part>,
}

/// A planned Network query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkPlan {
    /// The queries to send, one per distinct peer, in the order first named
    /// (the peers of Fetch and Introspect in name order).
    pub queries: Vec<PeerQuery>,
    /// The per-peer time the query asked for (`Network(networkTimeout:)`,
    /// in ms; the smallest when several `Network` fields give one).
    pub timeout: Option<u64>,
    /// The ranked lists' paths (each answered a list, empty when no peer
    /// was asked), in query order.
    pub lists: Vec<[String; 3]>,
    /// Peers whose schema is known but who were not asked a list, as `(path,
    /// peer)`: their schema has no class near the query.
    pub skipped: Vec<([String; 3], PeerName)>,
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

/// The response keys the planner adds to a ranked list's selection to
/// rank its items (certainty, then the ties); the merger drops them.
const RANK_KEYS: [&str; 3] = ["_rankCertainty", "_rankTie0", "_rankTie1"];

/// One planned part: the form field to put under `q{i}: Local`, and where
/// its answer goes.
type Planned = (AstField, Part);

/// Whether `query` holds a `Network` field of a form that asks every peer
/// whose schema is known (`Fetch`, `Introspect`): a client that plans it
/// needs every peer's schema, not only those the query names.
pub fn asks_every_peer(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
) -> bool {
    let Ok(root) = prepare(query, operation_name, variables) else {
        return false;
    };
    root.items.iter().any(|item| {
        match item {
        Selection::Field(network) if network.name == "Network" => {
            network.selection_set.items.iter().any(|form| {
                matches!(form, Selection::Field(f) if MEANING_FORMS.contains(&f.name.as_str()))
            })
        }
        _ => false,
    }
    })
}

/// Plans the `Network` root fields of `query` (with `variables`); other
/// root fields are left to the caller. Every named peer must be a key of
/// `schemas` (the peers whose schema is known). Fetch and Introspect lists
/// are asked of every peer of `schemas` with a class of the kind (see
/// [`plan_with`] to leave out those with no class near the query).
pub fn plan<S: Borrow<Schema>>(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    schemas: &BTreeMap<PeerName, S>,
) -> Result<NetworkPlan, Vec<GraphQLError>> {
    plan_with(query, operation_name, variables, schemas, None)
}

/// [`plan`], with the network's contextionary: a Fetch or Introspect list
/// is asked only of the peers whose cached schema has a class near the
/// queried one, at the query's certainty; a word of the query outside the
/// contextionary is an error before anything is sent.
pub fn plan_with<S: Borrow<Schema>>(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    schemas: &BTreeMap<PeerName, S>,
    contextionary: Option<&Contextionary>,
) -> Result<NetworkPlan, Vec<GraphQLError>> {
    // One body for every kind of map: the browser modules have a size
    // budget, and the planner is large. (`extend`, not `collect`: no sort.)
    let mut borrowed = BTreeMap::new();
    borrowed.extend(schemas.iter().map(|(name, schema)| (name, schema.borrow())));
    plan_over(query, operation_name, variables, &borrowed, contextionary)
}

fn plan_over(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    schemas: &BTreeMap<&PeerName, &Schema>,
    contextionary: Option<&Contextionary>,
) -> Result<NetworkPlan, Vec<GraphQLError>> {
    let root = prepare(query, operation_name, variables).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    // Per peer, in the order first asked: its planned parts.
    let mut parts: Vec<(PeerName, Vec<Planned>)> = Vec::new();
    let mut push =
        |peer: &PeerName, planned: Planned| match parts.iter_mut().find(|(p, _)| p == peer) {
            Some((_, list)) => list.push(planned),
            None => parts.push((peer.clone(), vec![planned])),
        };
    let mut timeout: Option<u64> = None;
    let mut lists = Vec::new();
    let mut skipped = Vec::new();
    let unknown = |name: &str| {
        let known: Vec<&str> = schemas.keys().map(|peer| peer.as_str()).collect();
        format!(
            "unknown peer {name:?} (known peers with a schema: {})",
            known.join(", ")
        )
    };
    for network in fields(&root, &mut errors, "the root") {
        if network.name != "Network" {
            continue;
        }
        let network_key = response_key(network).to_owned();
        for (name, value) in &network.arguments {
            let ms = match value {
                Value::Number(n) if name == TIMEOUT_ARGUMENT => n.as_i64().filter(|n| *n > 0),
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
            if form.name == "__typename" {
                continue;
            }
            if MEANING_FORMS.contains(&form.name.as_str()) {
                for sub in fields(&form.selection_set, &mut errors, "Network.Fetch") {
                    if sub.name.starts_with("__") {
                        continue;
                    }
                    let path = [
                        network_key.clone(),
                        form_key.clone(),
                        response_key(sub).to_owned(),
                    ];
                    let at = |message: String| GraphQLError::at(message, sub.position, &path);
                    let target = match target(&form.name, sub) {
                        Ok(target) => target,
                        Err(message) => {
                            errors.push(at(message));
                            continue;
                        }
                    };
                    let question = match target {
                        Target::Peer(name) => match PeerName::new(name.clone()) {
                            Ok(peer) if schemas.contains_key(&peer) => {
                                let item = form_field(&form.name, sub, &[]);
                                let gather = Gather::Field;
                                push(&peer, (item, Part { path, gather }));
                                continue;
                            }
                            _ => {
                                errors.push(at(unknown(&name)));
                                continue;
                            }
                        },
                        Target::Everyone(question) => question,
                    };
                    let near = match contextionary.map(|c| question.vectors(c).map(|v| (c, v))) {
                        None => None,
                        Some(Ok(near)) => Some(near),
                        Some(Err(e)) => {
                            errors.push(at(e.to_string()));
                            continue;
                        }
                    };
                    if let Some(key) = RANK_KEYS.iter().find(|k| selects(sub, k)) {
                        errors.push(at(format!(
                            "{key} is a response key the Network planner keeps for itself"
                        )));
                        continue;
                    }
                    let ties: &[&str] = match question {
                        Question::Introspect(..) => &["weaviate", "className"],
                        _ => &["beacon"],
                    };
                    let item = form_field(&form.name, sub, ties);
                    for (peer, schema) in schemas {
                        let near = near.as_ref().map(|(c, v)| (*c, &v[..]));
                        if question.may_answer(near, schema) {
                            let part = Part {
                                path: path.clone(),
                                gather: Gather::Ranked,
                            };
                            push(peer, (item.clone(), part));
                        } else {
                            skipped.push((path.clone(), PeerName::clone(peer)));
                        }
                    }
                    lists.push(path);
                }
                continue;
            }
            if !FORMS.contains(&form.name.as_str()) {
                errors.push(GraphQLError::at(
                    format!(
                        "Network.{} is not supported: use Get, GetMeta, Fetch or Introspect",
                        form.name
                    ),
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
                        errors.push(GraphQLError::at(
                            unknown(&peer_field.name),
                            peer_field.position,
                            &path,
                        ));
                        continue;
                    }
                };
                let mut set = peer_field.selection_set.clone();
                with_typenames(&mut set, &format!("{peer}_"));
                let item = field(None, &form.name, set.items);
                let gather = Gather::Peer;
                push(&peer, (item, Part { path, gather }));
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
            for (i, (item, part)) in list.into_iter().enumerate() {
                items.push(Selection::Field(field(
                    Some(format!("q{i}")),
                    "Local",
                    vec![Selection::Field(item)],
                )));
                paths.push(part);
            }
            PeerQuery {
                peer,
                query: selection_set(items).to_string(),
                parts: paths,
            }
        })
        .collect();
    Ok(NetworkPlan {
        queries,
        timeout,
        lists,
        skipped,
    })
}

/// Whom a field of Fetch or Introspect asks.
enum Target {
    /// The peers that may answer this question.
    Everyone(Question),
    /// The peer a beacon names.
    Peer(String),
}

/// Reads the arguments of `Fetch.{Things,Actions,Fuzzy}` or
/// `Introspect.{Things,Actions,Beacon}` (as the peers will: the core's
/// readers) to know whom to ask.
fn target(form: &str, sub: &AstField) -> Result<Target, String> {
    let arg = |name: &str| {
        sub.arguments
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Json::Null, |(_, v)| value_to_json(v))
    };
    let kind = Kind::parse(&sub.name).filter(|_| sub.name != "things" && sub.name != "actions");
    match (form, kind, sub.name.as_str()) {
        ("Fetch", Some(kind), _) => FetchWhere::parse(&arg("where"))
            .map(|w| Target::Everyone(Question::Fetch(kind, w)))
            .map_err(|e| e.to_string()),
        ("Fetch", None, "Fuzzy") => Ok(Target::Everyone(Question::Fuzzy)),
        ("Introspect", Some(kind), _) => IntrospectWhere::parse_list(&arg("where"))
            .map(|w| Target::Everyone(Question::Introspect(kind, w)))
            .map_err(|e| e.to_string()),
        ("Introspect", None, "Beacon") => {
            let id = arg("id");
            let peer = id
                .as_str()
                .filter(|b| parse_beacon(b).is_some())
                .and_then(|b| b.strip_prefix("weaviate://"))
                .and_then(|rest| rest.split('/').next());
            match peer {
                Some(peer) => Ok(Target::Peer(peer.to_owned())),
                None => Err(format!(
                    "{id} is not a beacon (weaviate://PEER/things/UUID)"
                )),
            }
        }
        _ => Err(format!(
            "Network.{form}.{} is not supported: use Things, Actions or {}",
            sub.name,
            if form == "Fetch" { "Fuzzy" } else { "Beacon" }
        )),
    }
}

/// Whether `sub`'s selection uses the response key `key`.
fn selects(sub: &AstField, key: &str) -> bool {
    sub.selection_set
        .items
        .iter()
        .any(|i| matches!(i, Selection::Field(f) if response_key(f) == key))
}

/// `Fetch { Things(where: …) { <selection> <rank fields> } }`: the field
/// to put under `q{i}: Local`, the sub-field without its alias (the
/// response path says where its answer goes), and `certainty` and `ties`
/// under the rank keys when it is a ranked list.
fn form_field(form: &str, sub: &AstField, ties: &[&str]) -> AstField {
    let mut sub = sub.clone();
    sub.alias = None;
    if sub.name != "Beacon" {
        let rank = std::iter::once("certainty").chain(ties.iter().copied());
        for (key, name) in RANK_KEYS.iter().zip(rank) {
            sub.selection_set.items.push(Selection::Field(field(
                Some((*key).to_owned()),
                name,
                Vec::new(),
            )));
        }
    }
    field(None, form, vec![Selection::Field(sub)])
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
                if let Some(name) = &mut f.type_condition
                    && let Some(bare) = name.strip_prefix(prefix)
                {
                    *name = bare.to_owned();
                }
                with_typenames(&mut f.selection_set, prefix);
            }
        }
    }
    if fragments {
        set.items
            .push(Selection::Field(field(None, "__typename", Vec::new())));
    }
}

fn selection_set(items: Vec<Selection>) -> SelectionSet {
    SelectionSet { items }
}

fn field(alias: Option<String>, name: &str, items: Vec<Selection>) -> Field {
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
/// answer: …` at each of its fields (at a ranked list: the error, beside
/// the other peers' items); a part missing from an answer (no `q{i}`, or
/// `null` with no error of the peer's for it) or an answer that is not
/// shaped as a GraphQL response gets `null` and an error saying so. A
/// ranked list holds the items of every peer that answered, by certainty
/// (descending), then by beacon (Fetch) or by peer and class (Introspect),
/// stable; the rank keys the planner added are dropped.
pub fn merge(plan: &NetworkPlan, outcomes: Vec<Outcome>) -> Merged {
    let mut merged = Merged::default();
    // extend, not collect: collecting into a BTreeMap sorts first (the
    // browser modules' size budget).
    let mut lists: BTreeMap<&[String; 3], Vec<Json>> = BTreeMap::new();
    lists.extend(plan.lists.iter().map(|p| (p, Vec::new())));
    for (query, outcome) in plan.queries.iter().zip(outcomes) {
        let peer = &query.peer;
        let response = match outcome {
            Outcome::Answered(response) => response,
            other => {
                let reason = other.reason().unwrap_or_default();
                for part in &query.parts {
                    merged.error(format!("peer {peer} did not answer: {reason}"), &part.path);
                    if part.gather != Gather::Ranked {
                        merged.insert(&part.path, Json::Null);
                    }
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
                for part in &query.parts {
                    merged.error(
                        format!("peer {peer} answered malformed: its data is not an object"),
                        &part.path,
                    );
                    if part.gather != Gather::Ranked {
                        merged.insert(&part.path, Json::Null);
                    }
                }
                continue;
            }
        };
        for (i, part) in query.parts.iter().enumerate() {
            let alias = format!("q{i}");
            let before = merged.errors.len();
            for error in errors {
                if let Some(e) = rebase_error(error, &alias, part, peer) {
                    merged.errors.push(e);
                }
            }
            let explained = merged.errors.len() > before;
            let depth = if part.gather == Gather::Peer { 1 } else { 2 };
            let mut value = data.as_mut().and_then(|d| d.remove(&alias));
            let mut shaped = true;
            for _ in 0..depth {
                value = match value {
                    Some(Json::Object(one)) if one.len() == 1 => {
                        one.into_iter().next().map(|(_, v)| v)
                    }
                    Some(Json::Null) | None => None,
                    Some(_) => {
                        shaped = false;
                        None
                    }
                };
            }
            let malformed = |merged: &mut Merged| {
                merged.error(
                    format!("peer {peer} answered malformed: its part {alias} is not an object of one form"),
                    &part.path,
                )
            };
            let value = match value {
                _ if !shaped => {
                    malformed(&mut merged);
                    Json::Null
                }
                Some(Json::Null) | None => {
                    if !explained {
                        merged.error(
                            format!(
                                "peer {peer} answered without this part ({alias}) and without an error for it"
                            ),
                            &part.path,
                        );
                    }
                    Json::Null
                }
                Some(value) => value,
            };
            if part.gather != Gather::Ranked {
                merged.insert(&part.path, value);
                continue;
            }
            match value {
                Json::Null => {}
                Json::Array(items) if items.iter().all(Json::is_object) => {
                    if let Some(list) = lists.get_mut(&part.path) {
                        list.extend(items);
                    }
                }
                _ => malformed(&mut merged),
            }
        }
    }
    for (path, mut items) in lists {
        let rank = |item: &Json| {
            let certainty = item[RANK_KEYS[0]].as_f64().unwrap_or(f64::NEG_INFINITY);
            let tie = |k: &str| item[k].as_str().unwrap_or_default().to_owned();
            (certainty, tie(RANK_KEYS[1]), tie(RANK_KEYS[2]))
        };
        let ranks: Vec<_> = items.iter().map(rank).collect();
        let order = crate::rank::order(
            &ranks
                .iter()
                .map(|(c, a, b)| (*c, a.as_str(), b.as_str()))
                .collect::<Vec<_>>(),
        );
        let items = crate::rank::arrange(std::mem::take(&mut items), &order)
            .into_iter()
            .map(|mut item| {
                if let Json::Object(map) = &mut item {
                    for key in RANK_KEYS {
                        map.remove(key);
                    }
                }
                item
            })
            .collect();
        merged.insert(path, Json::Array(items));
    }
    merged
}

/// A remote peer's error for its part `alias` (`q{i}`), with its path moved
/// from `q{i}.Get…` to `Network.Get.Peer…` (from `q{i}.Fetch.Things…` to
/// `Network.Fetch.Things`, its message naming the peer); its locations
/// refer to the Local query and are dropped. An error without a path (the
/// whole Local query failed) counts for every part; one of another part,
/// for none.
fn rebase_error(error: &Json, alias: &str, part: &Part, peer: &PeerName) -> Option<GraphQLError> {
    let message = error
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("error");
    let remote_path = error.get("path").and_then(Json::as_array);
    let mut path: Vec<Json> = part.path.iter().map(|p| Json::String(p.clone())).collect();
    if let Some(remote) = remote_path.filter(|p| !p.is_empty()) {
        if remote.first().and_then(Json::as_str) != Some(alias) {
            return None;
        }
        match part.gather {
            Gather::Peer => path.extend(remote.iter().skip(2).cloned()),
            Gather::Field => path.extend(remote.iter().skip(3).cloned()),
            // An item's index means nothing once the lists are merged.
            Gather::Ranked => {}
        }
    }
    let message = match part.gather {
        Gather::Peer => message.to_owned(),
        Gather::Field | Gather::Ranked => format!("peer {peer}: {message}"),
    };
    Some(GraphQLError {
        message,
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
        assert_eq!(b.parts.len(), 3);
        assert_eq!(
            b.parts[1].path,
            ["Network".to_owned(), "Get".into(), "b2".into()]
        );
        assert_eq!(b.parts[2].path[1], "GetMeta");
        let text = prepare(&b.query, None, &no_vars())
            .expect("valid GraphQL")
            .to_string();
        assert_eq!(text, b.query, "the planned text prints back the same");
        assert!(
            text.contains("q0: Local")
                && text.contains("q2: Local")
                && text.contains("GetMeta")
                && text.contains("City(limit: 1)")
                && !text.contains("Airport"),
            "{text}"
        );
        assert_eq!(
            plan.queries[1].parts,
            [Part {
                path: ["Network".to_owned(), "Get".into(), "PeerC".into()],
                gather: Gather::Peer
            }]
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
        assert_eq!(plan.queries[0].parts.len(), 1000);
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
            NetworkPlan::default()
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
