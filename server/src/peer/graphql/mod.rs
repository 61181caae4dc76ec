//! `POST /v1/graphql`: the peer's own GraphQL executor.
//!
//! A query goes through three steps:
//!
//! 1. [`prepare`] (pure): parse with `graphql-parser`, choose the operation,
//!    resolve variables, and check every field against the peer's schema
//!    ([`plan`]); `where` filters are parsed and checked by [`filter`].
//! 2. The `Network` root field, if any, goes to a [`NetworkResolver`] (given by
//!    the network layer); without one it is an error "Network queries need a
//!    network".
//! 3. [`Prepared::run`] (pure over an [`ObjectSource`]) answers `Local` from
//!    one consistent snapshot of the store.

pub mod collect;
pub mod exec;
pub mod filter;
pub mod plan;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use plexus_core::schema::Schema;
use serde_json::{Map, Value};

pub use exec::{ObjectSource, SourceError};
pub use plan::Node;
pub use types::{GraphqlError, GraphqlRequest, GraphqlResponse, Location};

/// The message of the error answered for `Network` when no resolver is set.
pub const NO_NETWORK: &str = "Network queries need a network: this peer runs stand-alone";

/// The value of a `Network` root field, and the errors met while getting it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkAnswer {
    /// The field's value (`null` when nothing could be answered).
    pub data: Value,
    /// Errors, with paths starting at the field's response key.
    pub errors: Vec<GraphqlError>,
}

/// Answers the `Network` root field of a query: the network layer implements
/// it (plan with `plexus-core`, ask the named peers, merge).
pub trait NetworkResolver: Send + Sync + 'static {
    /// Resolves the `Network` field whose response key is `response_key`
    /// (its name, or its alias) in `request`.
    fn resolve(
        &self,
        request: GraphqlRequest,
        response_key: String,
    ) -> BoxFuture<'static, NetworkAnswer>;
}

/// A query checked against the schema, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    root: Vec<(String, Node)>,
    errors: Vec<GraphqlError>,
}

/// Parses and checks `request` against `schema`. `Err` is the whole answer
/// when the request cannot run at all (syntax error, no such operation,
/// missing variable).
#[allow(clippy::result_large_err)]
pub fn prepare(request: &GraphqlRequest, schema: &Schema) -> Result<Prepared, GraphqlResponse> {
    let document = graphql_parser::parse_query::<String>(&request.query)
        .map_err(|e| GraphqlResponse::request_errors(vec![syntax_error(&e.to_string())]))?;
    let empty = Map::new();
    let variables = request.variables.as_ref().unwrap_or(&empty);
    let (root, errors) = plan::plan(
        &document,
        request.operation_name.as_deref(),
        variables,
        schema,
    )
    .map_err(GraphqlResponse::request_errors)?;
    Ok(Prepared { root, errors })
}

impl Prepared {
    /// The response keys of the `Network` root fields, with where they are in the query.
    pub fn network_fields(&self) -> Vec<(String, Location)> {
        self.root
            .iter()
            .filter_map(|(k, n)| match n {
                Node::Network(at) => Some((k.clone(), *at)),
                _ => None,
            })
            .collect()
    }

    /// Adds errors met outside (e.g. while resolving `Network`).
    pub fn add_errors(&mut self, errors: impl IntoIterator<Item = GraphqlError>) {
        self.errors.extend(errors);
    }

    /// Answers the query from `source`; `network` holds each `Network`
    /// field's value by response key.
    pub fn run(
        self,
        source: &dyn ObjectSource,
        network: &BTreeMap<String, Value>,
    ) -> GraphqlResponse {
        let mut errors = self.errors;
        let data = exec::execute(&self.root, source, network, &mut errors);
        GraphqlResponse {
            data: Some(data),
            errors,
        }
    }
}

/// Resolves every `Network` field of `prepared` with `network` (or reports
/// [`NO_NETWORK`]); returns the values by response key.
pub async fn resolve_network(
    prepared: &mut Prepared,
    request: &GraphqlRequest,
    network: Option<&dyn NetworkResolver>,
) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    for (key, at) in prepared.network_fields() {
        match network {
            Some(resolver) => {
                let answer = resolver.resolve(request.clone(), key.clone()).await;
                values.insert(key, answer.data);
                prepared.add_errors(answer.errors);
            }
            None => prepared.add_errors([GraphqlError {
                message: NO_NETWORK.into(),
                locations: vec![at],
                path: vec![Value::String(key)],
            }]),
        }
    }
    values
}

/// A syntax error, with its location when the parser's message names one
/// (`... at LINE:COLUMN ...`).
fn syntax_error(message: &str) -> GraphqlError {
    let location = message.split_whitespace().find_map(|word| {
        let (line, column) = word.split_once(':')?;
        Some(Location {
            line: line.parse().ok()?,
            column: column
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()?,
        })
    });
    GraphqlError {
        message: format!("Syntax error: {}", message.trim().replace('\n', " ")),
        locations: location.into_iter().collect(),
        path: Vec::new(),
    }
}
