//! Network queries: planned by [`plexus_core::network::plan`] against the
//! cached remote schemas, sent to the named peers directly and in parallel
//! (a bounded timeout each), and merged by [`plexus_core::network::merge`].

use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use plexus_core::network::{PeerAnswer, merge, plan};
use serde_json::{Map, Value, json};

use plexus_core::PeerUri;

use super::{NetworkHandle, Peers};
use crate::graphql::{GraphQLError, GraphQLRequest, GraphQLResponse, NetworkResolver};
use plexus_server::error_chain;

impl NetworkResolver for NetworkHandle {
    fn resolve(&self, request: GraphQLRequest) -> BoxFuture<'static, GraphQLResponse> {
        let handle = self.clone();
        Box::pin(async move { handle.network_query(request).await })
    }
}

impl NetworkHandle {
    /// Answers a query whose root fields are all `Network`.
    pub async fn network_query(&self, request: GraphQLRequest) -> GraphQLResponse {
        // The view is a snapshot: planning takes no lock. This peer is part
        // of the network too, with its own schema.
        let view = self.view();
        let mut schemas = view.schemas.clone();
        schemas.insert(self.name.clone(), self.local.schema().await);
        let empty = Map::new();
        let variables = request.variables.as_ref().unwrap_or(&empty);
        let plan = match plan(
            &request.query,
            request.operation_name.as_deref(),
            variables,
            &schemas,
        ) {
            Ok(plan) => plan,
            Err(errors) => return GraphQLResponse::request_errors(errors),
        };
        let asks = plan.queries.iter().map(|q| async {
            if q.peer == self.name {
                let own = self
                    .local
                    .graphql(GraphQLRequest::new(q.query.clone()), None)
                    .await;
                return serde_json::to_value(own).map_err(|e| e.to_string());
            }
            let body = json!({ "query": q.query });
            ask(&self.peers, view.uri(&q.peer), body, self.query_timeout).await
        });
        let answers = join_all(asks).await;
        let merged = merge(&plan, answers);
        serde_json::from_value(merged).unwrap_or_else(|e| {
            GraphQLResponse::request_errors(vec![GraphQLError::query(format!(
                "could not merge the answers: {e}"
            ))])
        })
    }
}

/// Sends one Local query through the outbound guard; its whole GraphQL
/// answer (at most `--max-answer-bytes`), or why there is none.
async fn ask(peers: &Peers, uri: Option<&PeerUri>, body: Value, timeout: Duration) -> PeerAnswer {
    let uri = uri.ok_or_else(|| "it left the network".to_owned())?;
    let outbound = &peers.outbound;
    outbound
        .guard()
        .check_literal(uri)
        .map_err(|e| e.to_string())?;
    let url = uri.join("/v1/graphql");
    let response = outbound
        .client()
        .post(&url)
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| describe(&e, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("it answered {status}"));
    }
    let bytes = tokio::time::timeout(timeout, outbound.read(response))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("its answer is not JSON: {e}"))
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {timeout:?}")
    } else {
        error_chain(e)
    }
}
