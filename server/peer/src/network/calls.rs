//! The HTTP calls the membership machine asks for, performed with reqwest,
//! and their answers mapped to what the machine understands.

use std::time::Duration;

use plexus_core::membership::{CallError, Request};
use plexus_core::names::{PeerName, PeerUri};
use plexus_core::schema::Schema;
use plexus_core::wire::{
    DELTAS_HEADER, PEERS_VERSION_HEADER, Peer, PeerListEntry, PeerRegistrationResponse,
};
use plexus_server::error_chain;
use reqwest::{RequestBuilder, Response, StatusCode};

/// How long a call to genesis (or a schema download) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer of one [`Request`], ready for the matching `handle_*_response`.
#[derive(Debug)]
pub enum Outcome {
    /// Of [`Request::Register`].
    Register(Result<PeerRegistrationResponse, CallError>),
    /// Of [`Request::Ping`]: the list version genesis told, if any.
    Ping(Result<Option<u64>, CallError>),
    /// Of [`Request::Leave`].
    Leave(Result<(), CallError>),
    /// Of [`Request::FetchPeers`].
    Peers(Result<(Vec<PeerListEntry>, Option<u64>), CallError>),
    /// Of [`Request::DownloadSchema`].
    Schema {
        /// The remote peer.
        peer: PeerName,
        /// The hash asked for.
        hash: String,
        /// The schema, checked.
        result: Result<Schema, CallError>,
    },
}

/// Where genesis is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct Genesis {
    /// Its base URL, or its replicas' ([`Genesis::base`] picks one).
    pub bases: Vec<PeerUri>,
    /// The join token, sent as `Authorization: Bearer`.
    pub token: Option<String>,
}

impl Genesis {
    /// The base URL of replica `index` (the membership machine's choice).
    pub fn base(&self, index: usize) -> &PeerUri {
        &self.bases[index % self.bases.len().max(1)]
    }

    fn with_auth(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Maps an HTTP status that is not a success to a [`CallError`].
pub fn status_error(status: StatusCode, body: &str) -> CallError {
    let message = serde_json::from_str::<plexus_core::wire::ErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| format!("{status}"));
    match status.as_u16() {
        400 => CallError::Unreachable(message),
        403 => CallError::Forbidden(message),
        404 => CallError::NotFound,
        401..=499 => CallError::Invalid(message),
        _ => CallError::Transport(message),
    }
}

fn transport(e: &reqwest::Error) -> CallError {
    CallError::Transport(error_chain(e))
}

/// A success, or the [`CallError`] its status maps to.
async fn success(result: reqwest::Result<Response>) -> Result<Response, CallError> {
    let response = result.map_err(|e| transport(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(status_error(status, &body))
    }
}

fn version(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(PEERS_VERSION_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, CallError> {
    let bytes = response.bytes().await.map_err(|e| transport(&e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))
}

/// Performs `request` and returns its outcome; never fails, never hangs
/// longer than [`CALL_TIMEOUT`].
pub async fn perform(
    http: &reqwest::Client,
    genesis: &Genesis,
    replica: usize,
    request: Request,
) -> Outcome {
    let base = genesis.base(replica);
    match request {
        Request::Register(update) => {
            let call = genesis
                .with_auth(http.post(base.join("/peers/register")))
                // Plexus peers take deltas; the original's peers get whole lists.
                .header(DELTAS_HEADER, "1")
                .json(&update)
                .timeout(CALL_TIMEOUT)
                .send()
                .await;
            let result = match success(call).await {
                Ok(response) => json(response).await,
                Err(e) => Err(e),
            };
            Outcome::Register(result)
        }
        Request::Ping { id, body } => {
            let call = genesis
                .with_auth(http.post(base.join(&format!("/peers/{id}/ping"))))
                .json(&body)
                .timeout(CALL_TIMEOUT)
                .send()
                .await;
            Outcome::Ping(success(call).await.map(|r| version(&r)))
        }
        Request::Leave { id } => {
            let call = genesis
                .with_auth(http.delete(base.join(&format!("/peers/{id}"))))
                .timeout(CALL_TIMEOUT)
                .send()
                .await;
            Outcome::Leave(success(call).await.map(|_| ()))
        }
        Request::FetchPeers => {
            let call = genesis
                .with_auth(http.get(base.join("/peers")))
                .timeout(CALL_TIMEOUT)
                .send()
                .await;
            let result = match success(call).await {
                Ok(response) => {
                    let v = version(&response);
                    json::<Vec<Peer>>(response)
                        .await
                        .map(|peers| (peers.iter().map(Peer::to_entry).collect(), v))
                }
                Err(e) => Err(e),
            };
            Outcome::Peers(result)
        }
        Request::DownloadSchema { peer, uri, hash } => {
            let call = http
                .get(uri.join("/v1/schema"))
                .timeout(CALL_TIMEOUT)
                .send()
                .await;
            let result = match success(call).await {
                Ok(response) => json::<Schema>(response).await.and_then(|schema| {
                    schema
                        .validate()
                        .map(|()| schema)
                        .map_err(|e| CallError::Invalid(format!("invalid schema: {e}")))
                }),
                Err(e) => Err(e),
            };
            Outcome::Schema { peer, hash, result }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_call_errors() {
        let body = r#"{"error": {"message": "cannot reach you"}}"#;
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, body),
            CallError::Unreachable("cannot reach you".into())
        );
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, ""),
            CallError::Forbidden(_)
        ));
        assert_eq!(status_error(StatusCode::NOT_FOUND, ""), CallError::NotFound);
        assert!(matches!(
            status_error(StatusCode::UNPROCESSABLE_ENTITY, ""),
            CallError::Invalid(_)
        ));
        assert!(matches!(
            status_error(StatusCode::CONFLICT, ""),
            CallError::Invalid(_)
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, ""),
            CallError::Transport(_)
        ));
    }
}
