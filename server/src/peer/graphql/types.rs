//! The JSON shapes of `POST /v1/graphql`: request, response, error.

use graphql_parser::Pos;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `POST /v1/graphql`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphqlRequest {
    /// The GraphQL document.
    pub query: String,
    /// Values of the operation's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
    /// Which operation of the document to run, when it holds several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
}

impl GraphqlRequest {
    /// A request for `query` without variables.
    pub fn new(query: impl Into<String>) -> Self {
        GraphqlRequest {
            query: query.into(),
            ..Default::default()
        }
    }
}

/// The answer: `data` (absent when the request could not run) and `errors`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphqlResponse {
    /// The result, shaped like the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// What went wrong, each with where in the query and in the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<GraphqlError>,
}

impl GraphqlResponse {
    /// A response with errors only: the request did not run.
    pub fn request_errors(errors: Vec<GraphqlError>) -> Self {
        GraphqlResponse { data: None, errors }
    }
}

/// A GraphQL error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphqlError {
    /// What went wrong, for a person.
    pub message: String,
    /// Where in the query text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Where in the result: field names (response keys) and list indices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<Value>,
}

impl GraphqlError {
    /// An error without location or path.
    pub fn new(message: impl Into<String>) -> Self {
        GraphqlError {
            message: message.into(),
            locations: Vec::new(),
            path: Vec::new(),
        }
    }

    /// An error at `pos` in the query and `path` in the result.
    pub fn at(message: impl Into<String>, pos: Pos, path: &[String]) -> Self {
        GraphqlError {
            message: message.into(),
            locations: vec![Location {
                line: pos.line,
                column: pos.column,
            }],
            path: path.iter().map(|p| Value::String(p.clone())).collect(),
        }
    }
}

/// A position in the query text, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
}
