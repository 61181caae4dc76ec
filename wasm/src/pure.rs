//! The client's decisions, free of JavaScript: what a response body means,
//! which peers a query names, how a Network query is planned when some
//! peers cannot be reached, and what a watch event says.
//!
//! Everything here runs natively too, so `cargo test -p plexus-wasm` checks
//! it without a browser; the modules around it only move bytes.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use plexus_core::PeerName;
use plexus_core::PeerUri;
use plexus_core::fanout::Outcome;
use plexus_core::graphql::{AstSelectionSet, GraphQLError, Selection, prepare, response_key};
use plexus_core::network::{FORMS, NetworkPlan, merge, plan};
use plexus_core::schema::Schema;
use plexus_core::wire::{ErrorBody, Peer, PeerChange};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::error::ClientError;

/// How long one request may take by default, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// The default of `maxInFlight`: Local queries of one Network query at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;
/// The default of `maxPerPeer`: requests to one peer at once, across queries.
pub const DEFAULT_MAX_PER_PEER: usize = 8;

/// The options of `new NetworkClient(genesisUrl, options)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientOptions {
    /// The join token, sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
    /// How long each request may take, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Local queries of one Network query sent at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Requests to one peer at once, across the client's Network queries.
    #[serde(default)]
    pub max_per_peer: Option<usize>,
}

/// The options of `client.query(graphql, options)`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryOptions {
    /// Send the Network query through this peer (a name genesis lists, or a URL)
    /// instead of planning it here.
    #[serde(default)]
    pub via: Option<String>,
    /// The query's variables.
    #[serde(default)]
    pub variables: Option<Map<String, Json>>,
    /// Which operation of the document to run.
    #[serde(default)]
    pub operation_name: Option<String>,
}

/// The options of `validateQuery(query, schemas, options)`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateOptions {
    /// The query's variables.
    #[serde(default)]
    pub variables: Option<Map<String, Json>>,
    /// Which operation of the document to check.
    #[serde(default)]
    pub operation_name: Option<String>,
}

/// Parses a genesis or peer URL given by the caller.
pub fn parse_base_url(url: &str, what: &str) -> Result<PeerUri, ClientError> {
    PeerUri::new(url.trim()).map_err(|e| ClientError::invalid(format!("invalid {what}: {e}")))
}

/// The schema hash of a schema given as JSON text, exactly as peers compute it.
pub fn schema_hash_of_text(text: &str) -> Result<String, ClientError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| ClientError::invalid(format!("the schema is not JSON: {e}")))?;
    schema_hash_of_json(json)
}

/// The schema hash of a schema given as a JSON value.
pub fn schema_hash_of_json(json: Json) -> Result<String, ClientError> {
    Ok(parse_schema(json, "the schema")?.hash())
}

/// A schema given as JSON; it must be an object (serde would take `[]` too).
fn parse_schema(json: Json, what: &str) -> Result<Schema, ClientError> {
    if !json.is_object() {
        return Err(ClientError::invalid(format!(
            "{what} is not a Plexus schema: expected an object"
        )));
    }
    serde_json::from_value(json)
        .map_err(|e| ClientError::invalid(format!("{what} is not a Plexus schema: {e}")))
}

/// Reads `{peerName: Schema}`, as `validateQuery` takes it.
pub fn parse_schemas(json: Json) -> Result<BTreeMap<PeerName, Schema>, ClientError> {
    let Json::Object(map) = json else {
        return Err(ClientError::invalid(
            "schemas must be an object of peer name to schema",
        ));
    };
    let mut schemas = BTreeMap::new();
    for (name, schema) in map {
        let peer = PeerName::new(name.clone())
            .map_err(|e| ClientError::invalid(format!("{name:?} is not a peer name: {e}")))?;
        let schema = parse_schema(schema, &format!("the schema of {name}"))?;
        schemas.insert(peer, schema);
    }
    Ok(schemas)
}

/// Checks a Network query as the planner does before sending anything
/// (syntax, shape, known peers): the errors, none when it can be planned.
/// Classes and properties are judged by the named peers' engines.
pub fn validate<S: Borrow<Schema>>(
    query: &str,
    options: &ValidateOptions,
    schemas: &BTreeMap<PeerName, S>,
) -> Vec<GraphQLError> {
    let variables = options.variables.clone().unwrap_or_default();
    match plan(
        query,
        options.operation_name.as_deref(),
        &variables,
        schemas,
    ) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

/// A peer field of a Network query: `Network.Get.<peer>` (or `GetMeta`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerField {
    /// The peer's name (the field's name).
    pub peer: String,
    /// Its response path: `[Network key, form key, peer key]`.
    pub path: [String; 3],
}

/// The peer fields of a prepared query, in query order.
pub fn peer_fields(root: &AstSelectionSet) -> Vec<PeerField> {
    let mut out = Vec::new();
    for network in fields_named(root, "Network") {
        let forms = network
            .selection_set
            .items
            .iter()
            .filter_map(|item| match item {
                Selection::Field(f) if FORMS.contains(&f.name.as_str()) => Some(f),
                _ => None,
            });
        for get in forms {
            for item in &get.selection_set.items {
                if let Selection::Field(peer) = item {
                    out.push(PeerField {
                        peer: peer.name.clone(),
                        path: [
                            response_key(network).to_owned(),
                            response_key(get).to_owned(),
                            response_key(peer).to_owned(),
                        ],
                    });
                }
            }
        }
    }
    out
}

fn fields_named<'a>(
    set: &'a AstSelectionSet,
    name: &'a str,
) -> impl Iterator<Item = &'a plexus_core::graphql::AstField> + 'a {
    set.items.iter().filter_map(move |item| match item {
        Selection::Field(f) if f.name == name => Some(f),
        _ => None,
    })
}

/// The distinct peer names a query asks, in query order (none when it does not parse).
pub fn named_peers(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
) -> Vec<String> {
    let Ok(root) = prepare(query, operation_name, variables) else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    peer_fields(&root)
        .into_iter()
        .filter(|f| seen.insert(f.peer.clone()))
        .map(|f| f.peer)
        .collect()
}

/// The prepared query without the peer fields named in `drop`, as text;
/// `None` when nothing is left to ask.
fn prune(mut root: AstSelectionSet, drop: &BTreeSet<String>) -> Option<String> {
    root.items.retain_mut(|item| match item {
        Selection::Field(network) if network.name == "Network" => {
            network.selection_set.items.retain_mut(|item| match item {
                Selection::Field(get) if FORMS.contains(&get.name.as_str()) => {
                    get.selection_set
                        .items
                        .retain(|i| !matches!(i, Selection::Field(p) if drop.contains(&p.name)));
                    !get.selection_set.items.is_empty()
                }
                _ => true,
            });
            !network.selection_set.items.is_empty()
        }
        _ => true,
    });
    if root.items.is_empty() {
        return None;
    }
    Some(root.to_string())
}

/// A peer named by the query whose schema could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// Its field in the query.
    pub field: PeerField,
    /// Why its schema could not be fetched.
    pub reason: String,
}

/// What to do with a Network query.
#[derive(Clone, Debug, PartialEq)]
pub enum Planned {
    /// Send these Local queries, then [`finish`] with the answers.
    Send {
        /// The queries.
        plan: NetworkPlan,
        /// Peers left out because their schema could not be fetched: each
        /// becomes a per-peer error in the response.
        unreachable: Vec<Unreachable>,
    },
    /// Nothing to send: this is the whole response (the query is invalid).
    Answer(Json),
}

/// Plans `query` as a peer does, with the `schemas` fetched; a peer in
/// `unreachable` (name → why its schema could not be fetched) is left out
/// of the plan and reported as a per-peer error, like a peer that did not
/// answer, instead of failing the whole query as an unknown peer.
pub fn plan_query<S: Borrow<Schema>>(
    query: &str,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
    schemas: &BTreeMap<PeerName, S>,
    unreachable: &BTreeMap<String, String>,
) -> Planned {
    let root = match prepare(query, operation_name, variables) {
        Ok(root) => root,
        Err(e) => return Planned::Answer(invalid_response(vec![e], &[])),
    };
    let errors = match plan(query, operation_name, variables, schemas) {
        Ok(plan) => {
            let unreachable = at_lists(&plan, unreachable);
            return Planned::Send { plan, unreachable };
        }
        Err(errors) => errors,
    };
    let left_out: Vec<Unreachable> = peer_fields(&root)
        .into_iter()
        .filter_map(|field| {
            let reason = unreachable.get(&field.peer)?.clone();
            Some(Unreachable { field, reason })
        })
        .collect();
    let (_, other): (Vec<GraphQLError>, Vec<GraphQLError>) = errors.into_iter().partition(|e| {
        left_out
            .iter()
            .any(|u| path_starts_with(&e.path, &u.field.path))
    });
    if left_out.is_empty() || !other.is_empty() {
        return Planned::Answer(invalid_response(other, &left_out));
    }
    // extend, not collect: collecting into a BTree sorts first, and every
    // sort instantiated costs the tab module's size budget (wasm/build.sh).
    let mut drop = BTreeSet::new();
    drop.extend(left_out.iter().map(|u| u.field.peer.clone()));
    let plan = match prune(root, &drop) {
        None => NetworkPlan::default(),
        Some(text) => match plan(&text, None, &Map::new(), schemas) {
            Ok(plan) => plan,
            Err(errors) => return Planned::Answer(invalid_response(errors, &left_out)),
        },
    };
    let mut unreachable = at_lists(&plan, unreachable);
    unreachable.extend(left_out);
    Planned::Send { plan, unreachable }
}

/// Fetch and Introspect ask every peer whose schema is known: a peer whose
/// schema could not be fetched is an error at each of the plan's lists.
fn at_lists(plan: &NetworkPlan, unreachable: &BTreeMap<String, String>) -> Vec<Unreachable> {
    plan.lists
        .iter()
        .flat_map(|path| {
            unreachable.iter().map(|(peer, reason)| Unreachable {
                field: PeerField {
                    peer: peer.clone(),
                    path: path.clone(),
                },
                reason: reason.clone(),
            })
        })
        .collect()
}

fn path_starts_with(path: &[Json], prefix: &[String; 3]) -> bool {
    path.len() >= prefix.len()
        && path
            .iter()
            .zip(prefix)
            .all(|(p, q)| p.as_str() == Some(q.as_str()))
}

fn unreachable_error(u: &Unreachable) -> Json {
    json!({
        "message": format!("peer {} did not answer: {}", u.field.peer, u.reason),
        "path": u.field.path,
    })
}

/// `{"data": null, "errors": [...]}`.
fn invalid_response(errors: Vec<GraphQLError>, unreachable: &[Unreachable]) -> Json {
    let mut all: Vec<Json> = errors
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_else(|_| json!({"message": e.message})))
        .collect();
    all.extend(unreachable.iter().map(unreachable_error));
    json!({"data": Json::Null, "errors": all})
}

/// Merges the outcomes of the fan-out exactly as a peer does, then adds a
/// null (not at a Fetch or Introspect list: the others' items stand) and a
/// per-peer error for each peer left out of the plan.
pub fn finish(plan: &NetworkPlan, outcomes: Vec<Outcome>, unreachable: &[Unreachable]) -> Json {
    let mut merged = merge(plan, outcomes);
    for u in unreachable {
        if !plan.lists.contains(&u.field.path) {
            merged.insert(&u.field.path, Json::Null);
        }
        merged.error(
            format!("peer {} did not answer: {}", u.field.peer, u.reason),
            &u.field.path,
        );
    }
    merged.into_response()
}

/// The message of a non-2xx answer: the server's `error.message`, or the start of its body.
pub fn error_message(text: &str) -> String {
    if let Ok(body) = serde_json::from_str::<ErrorBody>(text) {
        return body.error.message;
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut end = trimmed.len().min(200);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    trimmed[..end].to_owned()
}

/// Reads genesis's answer to `GET /peers` (`url`) with core's reading of
/// the list ([`plexus_core::client::Answer::listed_peers`]: a client only
/// shows it, as the dashboard does), or turns the answer into an error as
/// [`decode_answer`] does.
pub fn read_peer_list(url: &str, status: u16, text: &str) -> Result<Vec<Peer>, ClientError> {
    if !(200..300).contains(&status) {
        return decode_answer(url, status, text);
    }
    // Its body only: a client reads no signature and no version of it.
    let answer = plexus_core::client::Answer {
        body: text.as_bytes().to_vec(),
        ..Default::default()
    };
    let (peers, _version) = answer.listed_peers().map_err(|e| ClientError::Decode {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(peers)
}

/// Decodes a 2xx JSON answer of `url`, or turns the answer into an error.
pub fn decode_answer<T: DeserializeOwned>(
    url: &str,
    status: u16,
    text: &str,
) -> Result<T, ClientError> {
    if !(200..300).contains(&status) {
        return Err(ClientError::Http {
            url: url.to_owned(),
            status,
            message: error_message(text),
        });
    }
    serde_json::from_str(text).map_err(|e| ClientError::Decode {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the answer of `POST /v1/graphql`: a GraphQL response, also when the
/// status is 4xx (GraphQL over HTTP answers an invalid query so), or an error.
pub fn decode_graphql(url: &str, status: u16, text: &str) -> Result<Json, ClientError> {
    let parsed = serde_json::from_str::<Json>(text).ok();
    let is_response = parsed
        .as_ref()
        .and_then(Json::as_object)
        .is_some_and(|o| o.contains_key("data") || o.contains_key("errors"));
    match parsed {
        Some(response) if is_response && (200..500).contains(&status) => Ok(response),
        _ if !(200..300).contains(&status) => Err(ClientError::Http {
            url: url.to_owned(),
            status,
            message: error_message(text),
        }),
        _ => Err(ClientError::Decode {
            url: url.to_owned(),
            reason: "not a GraphQL response (no data and no errors)".to_owned(),
        }),
    }
}

/// Where a `via` (a peer name genesis lists, or a URL) points.
pub fn resolve_peer(peers: &[Peer], name_or_url: &str) -> Result<PeerUri, ClientError> {
    if name_or_url.contains("://") {
        return parse_base_url(name_or_url, "peer URL");
    }
    peers
        .iter()
        .find(|p| p.peer_name.as_str() == name_or_url)
        .map(|p| p.peer_uri.clone())
        .ok_or_else(|| unknown_peer(peers, name_or_url))
}

/// The peer named `name` in `peers`.
pub fn find_peer<'a>(peers: &'a [Peer], name: &str) -> Result<&'a Peer, ClientError> {
    peers
        .iter()
        .find(|p| p.peer_name.as_str() == name)
        .ok_or_else(|| unknown_peer(peers, name))
}

fn unknown_peer(peers: &[Peer], name: &str) -> ClientError {
    let known: Vec<&str> = peers.iter().map(|p| p.peer_name.as_str()).collect();
    ClientError::UnknownPeer {
        name: name.to_owned(),
        known: if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        },
    }
}

/// One event of `client.watch(callback)`, as the callback receives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WatchEvent {
    /// The whole list: first, and again after a reconnection or when the
    /// watcher fell behind.
    Snapshot {
        /// The list version.
        version: u64,
        /// The peers.
        peers: Vec<Peer>,
    },
    /// One change of the list.
    Change(PeerChange),
    /// The stream broke (the browser reconnects by itself unless stopped) or
    /// sent something unreadable.
    Error {
        /// What happened.
        message: String,
    },
}

/// Reads one server-sent event of `GET /peers/watch` (its name and data),
/// as the core reads it ([`plexus_core::client::WatchEvent::read`]).
pub fn parse_watch_event(name: &str, data: Option<&str>) -> WatchEvent {
    use plexus_core::client::WatchEvent as Read;
    let Some(data) = data else {
        return WatchEvent::Error {
            message: format!("watch event {name:?} without data"),
        };
    };
    match Read::read(name, data) {
        Ok(Some(Read::Snapshot(s))) => WatchEvent::Snapshot {
            version: s.version,
            peers: s.peers,
        },
        Ok(Some(Read::Change(change))) => WatchEvent::Change(change),
        Ok(None) => WatchEvent::Error {
            message: format!("unknown watch event {name:?}"),
        },
        Err(e) => WatchEvent::Error {
            message: format!("unreadable {name} event: {}", e.reason),
        },
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
