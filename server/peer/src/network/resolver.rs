//! Network queries: the engine plans them with [`plexus_core::network::plan`]
//! (one Local query per distinct peer) and merges with
//! [`plexus_core::network::merge`]; this peer sends the Local queries, at
//! most `max_in_flight` at once and each with a bounded timeout. Its own
//! part runs on its own engine, without HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use plexus_core::network::{PeerAnswer, PeerQuery};
use plexus_graphql::{GraphQLRequest, Remote};
use serde_json::{Value, json};

use plexus_core::PeerUri;

use super::{NetworkHandle, Peers};
use plexus_server::error_chain;

impl Remote for NetworkHandle {
    fn ask(&self, queries: Vec<PeerQuery>) -> BoxFuture<'static, Vec<PeerAnswer>> {
        let handle = self.clone();
        let count = queries.len();
        // Spawned on the runtime: the engine may poll this from a blocking thread.
        let task = tokio::spawn(async move {
            let view = handle.view();
            futures::stream::iter(queries)
                .map(|q| {
                    let (handle, view) = (handle.clone(), view.clone());
                    async move {
                        if q.peer == handle.name {
                            let own = handle
                                .local
                                .graphql(GraphQLRequest::new(q.query), None)
                                .await;
                            return Ok(own.body);
                        }
                        let body = json!({ "query": q.query });
                        ask(&handle.peers, view.uri(&q.peer), body, handle.query_timeout).await
                    }
                })
                .buffered(handle.max_in_flight.max(1))
                .collect::<Vec<_>>()
                .await
        });
        async move {
            task.await.unwrap_or_else(|e| {
                (0..count)
                    .map(|_| Err(format!("the network task failed: {e}")))
                    .collect()
            })
        }
        .boxed()
    }
}

/// This handle as the engine's [`Remote`].
pub fn remote(handle: &NetworkHandle) -> Arc<dyn Remote> {
    Arc::new(handle.clone())
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
        .header("accept", "application/json")
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
