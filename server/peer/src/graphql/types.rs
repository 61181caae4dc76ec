//! The JSON shapes of `POST /v1/graphql`: request and response. The error
//! type is `plexus_core`'s, shared with the Network planner.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use plexus_core::graphql::{GraphQLError, Location};

/// The body of `POST /v1/graphql`.
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

/// The answer: `data` (absent when the request could not run) and `errors`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphQLResponse {
    /// The result, shaped like the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// What went wrong, each with where in the query and in the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<GraphQLError>,
}

impl GraphQLResponse {
    /// A response with errors only: the request did not run.
    pub fn request_errors(errors: Vec<GraphQLError>) -> Self {
        GraphQLResponse { data: None, errors }
    }
}
