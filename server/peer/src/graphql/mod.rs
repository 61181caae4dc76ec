//! `POST /v1/graphql`: the peer's own GraphQL executor.
//!
//! A query goes through three steps:
//!
//! 1. [`prepare`] (pure): parse with `graphql-parser`, choose the operation,
//!    resolve variables, and check every field against the peer's schema
//!    ([`plan`]); `where` filters are parsed and checked by [`filter`].
//! 2. A query with a `Network` root field goes whole to a [`NetworkResolver`]
//!    (given by the network layer); without one, that field is an error
//!    ([`NO_NETWORK`]) and the rest still runs.
//! 3. [`Prepared::run`] (pure over an [`ObjectSource`]) answers `Local` from
//!    one consistent snapshot of the store.

pub mod collect;
pub mod exec;
pub mod filter;
pub mod plan;
pub mod types;

#[cfg(test)]
mod tests;

use futures::future::BoxFuture;
use plexus_core::schema::Schema;
use serde_json::{Map, Value};

pub use exec::{ObjectSource, SourceError};
pub use plan::Node;
pub use types::{GraphQLError, GraphQLRequest, GraphQLResponse, Location};

/// The message of the error answered for `Network` when no resolver is set.
pub const NO_NETWORK: &str = "Network queries need a network: this peer runs stand-alone";

/// Answers queries with a `Network` root field: the network layer implements
/// it (plan with `plexus_core::network::plan`, ask the named peers, merge with
/// `plexus_core::network::merge`).
pub trait NetworkResolver: Send + Sync + 'static {
    /// Answers the whole `request`, which has at least one `Network` root field.
    fn resolve(&self, request: GraphQLRequest) -> BoxFuture<'static, GraphQLResponse>;
}

/// A query checked against the schema, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    root: Vec<(String, Node)>,
    errors: Vec<GraphQLError>,
}

/// Parses and checks `request` against `schema`. `Err` is the whole answer
/// when the request cannot run at all (syntax error, no such operation,
/// missing variable).
#[allow(clippy::result_large_err)]
pub fn prepare(request: &GraphQLRequest, schema: &Schema) -> Result<Prepared, GraphQLResponse> {
    let document = graphql_parser::parse_query::<String>(&request.query)
        .map_err(|e| GraphQLResponse::request_errors(vec![syntax_error(&e.to_string())]))?;
    let empty = Map::new();
    let variables = request.variables.as_ref().unwrap_or(&empty);
    let (root, errors) = plan::plan(
        &document,
        request.operation_name.as_deref(),
        variables,
        schema,
    )
    .map_err(GraphQLResponse::request_errors)?;
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
    pub fn add_errors(&mut self, errors: impl IntoIterator<Item = GraphQLError>) {
        self.errors.extend(errors);
    }

    /// Answers the query from `source` (a `Network` field is `null`).
    pub fn run(self, source: &dyn ObjectSource) -> GraphQLResponse {
        let mut errors = self.errors;
        let data = exec::execute(&self.root, source, &mut errors);
        GraphQLResponse {
            data: Some(data),
            errors,
        }
    }
}

/// Answers `request`: a query with a `Network` root field goes whole to
/// `network` (or, when there is none, gets the error [`NO_NETWORK`] on that
/// field while `Local` still runs); the rest runs on `snapshot` from `read`.
pub async fn answer<F>(
    request: GraphQLRequest,
    schema: &Schema,
    network: Option<&dyn NetworkResolver>,
    read: F,
) -> GraphQLResponse
where
    F: AsyncFnOnce(Prepared) -> GraphQLResponse,
{
    let mut prepared = match prepare(&request, schema) {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let network_fields = prepared.network_fields();
    if !network_fields.is_empty() {
        if let Some(resolver) = network {
            return resolver.resolve(request).await;
        }
        prepared.add_errors(network_fields.into_iter().map(|(key, at)| GraphQLError {
            message: NO_NETWORK.into(),
            locations: vec![at],
            path: vec![Value::String(key)],
        }));
    }
    read(prepared).await
}

/// A syntax error, with its location when the parser's message names one
/// (`... at LINE:COLUMN ...`).
fn syntax_error(message: &str) -> GraphQLError {
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
    GraphQLError {
        message: format!("Syntax error: {}", message.trim().replace('\n', " ")),
        locations: location.into_iter().collect(),
        path: Vec::new(),
    }
}
