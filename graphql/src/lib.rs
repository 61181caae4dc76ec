//! The GraphQL engine of a Plexus peer, on async-graphql's dynamic schema.
//!
//! [`Engine::build`] turns the peer's own [`Schema`] (the `Local` root
//! field: `Get` and `GetMeta` per class, with `where` and `limit`) and the
//! schemas of the remote peers it holds (the `Network` root field) into one
//! async-graphql schema. The library brings parsing, validation,
//! introspection, `__typename`, fragments and the depth, complexity and
//! recursion limits; [`cost`] adds the two bounds it cannot weigh (aliases,
//! and objects weighted by `limit`) before anything else looks at the query.
//!
//! Resolvers are thin: a class field calls [`Source::query`] once (the one
//! way the engine reads objects, so a store can answer it from indexes), a
//! reference calls [`Source::get`], and `Network` serves the merged answer
//! of the peers. A run of the engine never waits on a peer: a Network query
//! is validated and planned by [`Engine::begin`], the host asks the peers
//! (the core's [`plexus_core::fanout`]) and merges
//! ([`plexus_core::network::merge`]), then [`Engine::execute`] runs it
//! with the answers in hand. No clock, no threads: the host bounds time and
//! runs the engine where it likes (the peer on its query slots; a browser
//! in its tab).

mod build;
pub mod cost;
mod documents;
#[cfg_attr(not(feature = "meaning"), allow(dead_code))]
mod fetch;
mod meta;
mod network;

pub use fetch::{Meaning, NO_CONTEXTIONARY};
pub use meta::aggregate;
pub use network::NO_NETWORK;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::dynamic;
use plexus_core::filter::Filter;
use plexus_core::names::PeerName;
use plexus_core::network::{Merged, NetworkPlan};
use plexus_core::object::Object;
use plexus_core::schema::{Kind, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use plexus_core::graphql::{DEFAULT_LIMIT, MAX_LIMIT};

/// The query root's type name, as `__typename` answers it.
pub const ROOT_TYPE: &str = "WeaviateObj";

/// A store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read objects: {0}")]
pub struct SourceError(pub String);

/// Where the engine reads a peer's objects: one consistent view (a snapshot)
/// for the whole request. Blocking calls: the host runs the engine off its
/// async workers.
pub trait Source: Send + Sync {
    /// Up to `limit` objects of `class` (of `kind`) that pass `filter`, in a
    /// stable order. This is the only way the engine reads a class: a store
    /// with indexes plans it as it likes.
    fn query(
        &self,
        kind: Kind,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, SourceError>;
    /// The object `id`, if any (to follow references).
    fn get(&self, id: Uuid) -> Result<Option<Object>, SourceError>;
}

/// What [`Engine::begin`] made of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The whole answer: the request holds no `Network` field (it ran), or
    /// it was refused (parse, validation, a bound, the planner).
    Answer(Answer),
    /// Its `Network` fields, validated and planned: ask the peers, merge,
    /// then [`Engine::execute`] with the merged answer.
    Network(NetworkPlan),
}

/// The body of a GraphQL request (`POST /v1/graphql`, or GET's parameters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLRequest {
    /// The GraphQL document.
    pub query: String,
    /// Values of the operation's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
    /// Which operation of the document to run, when it holds several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
}

impl GraphQLRequest {
    /// A request for `query` without variables.
    pub fn new(query: impl Into<String>) -> Self {
        GraphQLRequest {
            query: query.into(),
            ..Default::default()
        }
    }
}

/// The engine's bounds. Each is a peer flag; the defaults are documented
/// in docs/peer.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of selections (async-graphql's `limit_depth`).
    pub max_depth: usize,
    /// Most fields in a query, fragments expanded (`limit_complexity`, and
    /// the same bound checked before validation by [`cost`]).
    pub max_complexity: usize,
    /// Deepest recursion of the parser (`limit_recursive_depth`).
    pub max_recursive_depth: usize,
    /// Most aliased fields in a document.
    pub max_aliases: usize,
    /// Most objects in one answer: checked before running (each class field
    /// weighs its `limit`, times its fragment expansions), and counted while
    /// running (references included).
    pub max_objects: usize,
    /// Most objects one GetMeta class reads to aggregate.
    pub max_meta_objects: usize,
    /// Most bytes of query text whose parsed documents the engine keeps
    /// for the next request with the same text (0: none kept).
    pub max_cached_query_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_complexity: 2_000,
            max_recursive_depth: 32,
            max_aliases: 100,
            max_objects: 10_000,
            max_meta_objects: 100_000,
            max_cached_query_bytes: 256 * 1024,
        }
    }
}

/// Why a schema could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the GraphQL schema: {0}")]
pub struct BuildError(String);

/// One built schema: the peer's classes and the remote schemas it held when built.
pub struct Engine {
    schema: dynamic::Schema,
    /// The same schema without async-graphql's validation rules (depth and
    /// complexity still checked), for documents that passed them before.
    validated: dynamic::Schema,
    documents: documents::Documents,
    limits: Limits,
    peers: Arc<BTreeMap<PeerName, Arc<Schema>>>,
    meaning: Option<Arc<Meaning>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// What the engine answered: the GraphQL response as JSON, and whether it
/// is a request error (the query did not run: parse or validation failed,
/// a limit refused it), which GraphQL over HTTP answers with a 4xx.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// `{"data": ..., "errors": [...]}`.
    pub body: Value,
    /// The request did not run (no `data`).
    pub request_error: bool,
}

impl Answer {
    /// A request error with one message.
    pub fn refused(message: impl Into<String>) -> Self {
        Answer {
            body: serde_json::json!({ "errors": [{ "message": message.into() }] }),
            request_error: true,
        }
    }
}

/// A resolver's body whose error becomes a field error at its path (the
/// field is `null`, the rest of the answer stands): async-graphql 7.0's
/// dynamic schema would otherwise drop the whole `data`.
#[macro_export]
#[doc(hidden)]
macro_rules! caught {
    ($ctx:ident, $body:block) => {
        async_graphql::dynamic::FieldFuture::new(async move {
            let result: async_graphql::Result<Option<async_graphql::dynamic::FieldValue<'_>>> =
                async { $body }.await;
            Ok($crate::field_error(&$ctx, result))
        })
    };
}

/// A synchronous resolver's body, run now: its value without a boxed future
/// (most fields only read their parent), its error a field error as with
/// [`caught!`].
#[macro_export]
#[doc(hidden)]
macro_rules! now {
    ($ctx:ident, $body:block) => {{
        let result: async_graphql::Result<Option<async_graphql::dynamic::FieldValue<'_>>> =
            (|| $body)();
        async_graphql::dynamic::FieldFuture::Value($crate::field_error(&$ctx, result))
    }};
}

/// The value of a resolver's `result`; an error is added to the answer at
/// the field's path, and the field is `null`.
pub(crate) fn field_error<'a>(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
    result: async_graphql::Result<Option<async_graphql::dynamic::FieldValue<'a>>>,
) -> Option<async_graphql::dynamic::FieldValue<'a>> {
    match result {
        Ok(value) => value,
        Err(e) => {
            let error = e.into_server_error(ctx.ctx.item.pos);
            ctx.ctx.add_error(ctx.ctx.set_error_path(error));
            None
        }
    }
}

/// What a resolver reads from the request.
pub(crate) struct RequestData {
    pub(crate) source: Arc<dyn Source>,
    pub(crate) objects: AtomicUsize,
    pub(crate) limits: Limits,
    pub(crate) network: network::Mode,
    pub(crate) meaning: Option<Arc<Meaning>>,
}

impl RequestData {
    /// Counts `n` more objects in the answer; an error past the bound.
    pub(crate) fn count(&self, n: usize) -> async_graphql::Result<()> {
        let total = self
            .objects
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        if total > self.limits.max_objects {
            return Err(async_graphql::Error::new(format!(
                "the answer would hold more than {} objects (the peer's --graphql-max-objects)",
                self.limits.max_objects
            )));
        }
        Ok(())
    }
}

impl Engine {
    /// Builds the schema of a peer whose classes are `local` and which holds
    /// the schemas `remotes` (its own name may be among them: the Network
    /// includes the peer itself).
    pub fn build(
        local: &Schema,
        remotes: &BTreeMap<PeerName, Arc<Schema>>,
        limits: &Limits,
    ) -> Result<Engine, BuildError> {
        let finish = |mode| {
            build::schema(local, remotes)
                .limit_depth(limits.max_depth)
                .limit_complexity(limits.max_complexity)
                .limit_recursive_depth(limits.max_recursive_depth)
                .validation_mode(mode)
                .finish()
                .map_err(|e| BuildError(e.to_string()))
        };
        let schema = finish(async_graphql::ValidationMode::Strict)?;
        let validated = finish(async_graphql::ValidationMode::Fast)?;
        Ok(Engine {
            schema,
            validated,
            documents: documents::Documents::new(limits.max_cached_query_bytes),
            limits: limits.clone(),
            peers: Arc::new(remotes.clone()),
            meaning: None,
        })
    }

    /// The same engine, answering Fetch and Introspect with `meaning`'s
    /// contextionary (without one they answer [`NO_CONTEXTIONARY`]).
    pub fn with_meaning(mut self, meaning: Option<Arc<Meaning>>) -> Self {
        self.meaning = meaning;
        self
    }

    /// The schema in SDL.
    pub fn sdl(&self) -> String {
        self.schema.sdl()
    }

    /// Answers `request`: `Local` from `source`, `Network` from `merged`
    /// (the peers' merged answer, as [`Engine::begin`] planned it; an error
    /// on that field when `None`). Waits on nothing: the host may run it
    /// on a blocking thread with `block_on`.
    pub async fn execute(
        &self,
        request: GraphQLRequest,
        source: Arc<dyn Source>,
        merged: Option<Merged>,
    ) -> Answer {
        let mode = match merged {
            Some(merged) => network::Mode::Served(merged.into()),
            None => network::Mode::Off,
        };
        match self.parse(&request) {
            Ok((gql, validated)) => self.run(gql, validated, request, source, mode).await,
            Err(answer) => answer,
        }
    }

    /// The first step of a request on a peer in a network: a request
    /// without a `Network` field is answered (`Local` from `source`), as
    /// [`Engine::execute`] would; one with a `Network` field is validated
    /// (nothing read) and planned. Waits on nothing.
    pub async fn begin(&self, request: &GraphQLRequest, source: Arc<dyn Source>) -> Step {
        let (mut gql, validated) = match self.parse(request) {
            Ok(parsed) => parsed,
            Err(answer) => return Step::Answer(answer),
        };
        if !has_network(gql.parsed_query().ok()) {
            let answer = self
                .run(gql, validated, request.clone(), source, network::Mode::Off)
                .await;
            return Step::Answer(answer);
        }
        let checked = self
            .run(
                gql,
                validated,
                request.clone(),
                source,
                network::Mode::Planning,
            )
            .await;
        if checked.request_error {
            return Step::Answer(checked);
        }
        let empty = Map::new();
        match plexus_core::network::plan_with(
            &request.query,
            request.operation_name.as_deref(),
            request.variables.as_ref().unwrap_or(&empty),
            &*self.peers,
            self.meaning.as_deref().map(|m| &*m.contextionary),
        ) {
            Ok(plan) => Step::Network(plan),
            Err(errors) => Step::Answer(Answer {
                body: serde_json::json!({ "errors": errors }),
                request_error: true,
            }),
        }
    }

    /// The request as async-graphql's, its document parsed once (or taken
    /// from the documents parsed before) and its cost checked; whether it
    /// passed validation before.
    fn parse(&self, request: &GraphQLRequest) -> Result<(async_graphql::Request, bool), Answer> {
        let mut gql = async_graphql::Request::new(request.query.clone());
        if let Some(name) = &request.operation_name {
            gql = gql.operation_name(name.clone());
        }
        if let Some(vars) = &request.variables {
            gql = gql.variables(async_graphql::Variables::from_json(Value::Object(
                vars.clone(),
            )));
        }
        // Parsed once, here: the cost bounds are checked on this document
        // before async-graphql walks it, and async-graphql runs on it
        // without parsing the text.
        let checked = self
            .documents
            .parse(&request.query)
            .and_then(|(document, validated)| {
                cost::check(&document, &gql.variables, &self.limits).map(|()| (document, validated))
            });
        match checked {
            Ok((document, validated)) => {
                gql.set_parsed_query(document);
                Ok((gql, validated))
            }
            Err(e) => Err(answer(async_graphql::Response::from_errors(vec![e]))),
        }
    }

    async fn run(
        &self,
        gql: async_graphql::Request,
        validated: bool,
        request: GraphQLRequest,
        source: Arc<dyn Source>,
        network: network::Mode,
    ) -> Answer {
        // async-graphql's validation also checks variables' values: only a
        // request without variables may skip it.
        let plain = request.variables.as_ref().is_none_or(Map::is_empty);
        let unmarked = (plain && !validated).then_some(request.query);
        let data = RequestData {
            source,
            objects: AtomicUsize::new(0),
            limits: self.limits.clone(),
            network,
            meaning: self.meaning.clone(),
        };
        let schema = if plain && validated {
            &self.validated
        } else {
            &self.schema
        };
        let answer = answer(schema.execute(gql.data(data)).await);
        if let Some(query) = unmarked
            && !answer.request_error
        {
            // It ran, so it passed validation.
            self.documents.validated(&query);
        }
        answer
    }
}

/// Whether a root selection of any operation of `document` is `Network`
/// (through fragments too).
fn has_network(document: Option<&async_graphql::parser::types::ExecutableDocument>) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn walk(
        set: &SelectionSet,
        document: &async_graphql::parser::types::ExecutableDocument,
        depth: usize,
    ) -> bool {
        depth < 8
            && set.items.iter().any(|item| match &item.node {
                Selection::Field(f) => f.node.name.node == "Network",
                Selection::InlineFragment(f) => {
                    walk(&f.node.selection_set.node, document, depth + 1)
                }
                Selection::FragmentSpread(s) => document
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .is_some_and(|f| walk(&f.node.selection_set.node, document, depth + 1)),
            })
    }
    let Some(document) = document else {
        return true;
    };
    document
        .operations
        .iter()
        .any(|(_, op)| walk(&op.node.selection_set.node, document, 0))
}

/// async-graphql's response as the engine's [`Answer`]: `data` moved into
/// JSON (no `data` for a request error, as GraphQL over HTTP wants), then
/// `errors` and `extensions` as async-graphql writes them.
fn answer(response: async_graphql::Response) -> Answer {
    let request_error = response.data == async_graphql::Value::Null && response.is_err();
    let mut body = Map::new();
    if !request_error {
        body.insert("data".into(), into_json(response.data));
    }
    let mut encode = |key: &str, value: Result<Value, serde_json::Error>| {
        let value = value.unwrap_or_else(
            |e| serde_json::json!([{ "message": format!("cannot encode the answer: {e}") }]),
        );
        body.insert(key.into(), value);
    };
    if !response.errors.is_empty() {
        encode("errors", serde_json::to_value(&response.errors));
    }
    if !response.extensions.is_empty() {
        encode("extensions", serde_json::to_value(&response.extensions));
    }
    Answer {
        body: Value::Object(body),
        request_error,
    }
}

/// A GraphQL value as JSON, its strings moved, not copied (what
/// async-graphql's `Serialize` writes, without going through serde).
fn into_json(value: async_graphql::Value) -> Value {
    use async_graphql::Value as V;
    match value {
        V::Null => Value::Null,
        V::Number(n) => Value::Number(n),
        V::String(s) => Value::String(s),
        V::Boolean(b) => Value::Bool(b),
        V::Binary(bytes) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
        V::Enum(name) => Value::String(name.to_string()),
        V::List(items) => Value::Array(items.into_iter().map(into_json).collect()),
        V::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.to_string(), into_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
