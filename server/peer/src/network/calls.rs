//! The HTTP calls the membership machine asks for, performed with reqwest,
//! and their answers mapped to what the machine understands.

use std::time::Duration;

use plexus_core::auth::{self, Received, SignatureHeaders};
use plexus_core::membership::{Answer, CallError, Request};
use plexus_core::names::{PeerName, PeerUri};
use plexus_core::schema::Schema;
use plexus_core::wire::{DELTAS_HEADER, PEERS_VERSION_HEADER};
use plexus_server::error_chain;
use plexus_server::outbound::read_at_most;

use super::Peers;
use reqwest::{RequestBuilder, Response, StatusCode};

/// How long a call to genesis (or a schema download) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer of one [`Request`], ready for the matching `handle_*_response`.
#[derive(Debug)]
pub enum Outcome {
    /// Of [`Request::Register`]: the answer as it came, for the core to check.
    Register(Result<Answer, CallError>),
    /// Of [`Request::Ping`]: its (signed) list version.
    Ping(Result<Answer, CallError>),
    /// Of [`Request::Leave`].
    Leave(Result<(), CallError>),
    /// Of [`Request::FetchPeers`]: the signed list.
    Peers(Result<Answer, CallError>),
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
    /// The most bytes of one answer of genesis (`--max-list-bytes`).
    pub max_list_bytes: usize,
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
    CallError::from_status(status.as_u16(), body)
}

fn transport(e: &reqwest::Error) -> CallError {
    CallError::Transport(error_chain(e))
}

/// A success, or the [`CallError`] its status maps to (its message read
/// from at most `max` bytes of the error's body).
async fn success(result: reqwest::Result<Response>, max: usize) -> Result<Response, CallError> {
    let response = result.map_err(|e| transport(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else {
        let body = read_at_most(response, max, "the answer cap")
            .await
            .unwrap_or_default();
        Err(status_error(status, &String::from_utf8_lossy(&body)))
    }
}

/// The body a request to genesis carries: what its signature covers.
pub fn body(request: &Request) -> Vec<u8> {
    let json = match request {
        Request::Register(update) => serde_json::to_vec(update),
        Request::Ping { body, .. } => serde_json::to_vec(body),
        Request::Leave { .. } | Request::FetchPeers | Request::DownloadSchema { .. } => {
            return Vec::new();
        }
    };
    json.unwrap_or_default()
}

/// An answer of genesis with what the core checks: body, version,
/// signature; at most `max` bytes of body.
async fn answer(response: Response, max: usize) -> Result<Answer, CallError> {
    let headers = response.headers();
    let version = version(&response);
    let signature = Received::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    let session_key = headers
        .get(auth::SESSION_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_at_most(response, max, "--max-list-bytes")
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?
        .to_vec();
    Ok(Answer {
        body,
        version,
        signature,
        session_key,
    })
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

/// Performs `request`, sent with `body` (see [`body`]) and `signature`
/// (made by the core), and returns its outcome; never fails, never hangs
/// longer than [`CALL_TIMEOUT`] (a schema download waits for a permit of
/// [`Peers::downloads`] first). Genesis is called with `http`, other peers
/// through `peers`' outbound guard.
pub async fn perform(
    http: &reqwest::Client,
    peers: &Peers,
    genesis: &Genesis,
    replica: usize,
    request: Request,
    body: Vec<u8>,
    signature: Option<SignatureHeaders>,
) -> Outcome {
    let call = |method: &str, path: &str| {
        let mut call = genesis
            .with_auth(http.request(
                method.parse().unwrap_or(reqwest::Method::GET),
                genesis.base(replica).join(path),
            ))
            .timeout(CALL_TIMEOUT);
        if !body.is_empty() {
            call = call
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        for (name, value) in signature.iter().flat_map(SignatureHeaders::pairs) {
            call = call.header(name, value);
        }
        call
    };
    let (method, path) = request.method_and_path();
    match request {
        Request::Register(_) => {
            // Plexus peers take deltas; the original's peers get whole lists.
            let sent = call(method, &path).header(DELTAS_HEADER, "1").send().await;
            let result = match success(sent, genesis.max_list_bytes).await {
                Ok(response) => answer(response, genesis.max_list_bytes).await,
                Err(e) => Err(e),
            };
            Outcome::Register(result)
        }
        Request::Ping { .. } => {
            let result =
                match success(call(method, &path).send().await, genesis.max_list_bytes).await {
                    Ok(response) => answer(response, genesis.max_list_bytes).await,
                    Err(e) => Err(e),
                };
            Outcome::Ping(result)
        }
        Request::Leave { .. } => {
            let sent = call(method, &path).send().await;
            Outcome::Leave(success(sent, genesis.max_list_bytes).await.map(|_| ()))
        }
        Request::FetchPeers => {
            let result =
                match success(call(method, &path).send().await, genesis.max_list_bytes).await {
                    Ok(response) => answer(response, genesis.max_list_bytes).await,
                    Err(e) => Err(e),
                };
            Outcome::Peers(result)
        }
        Request::DownloadSchema { peer, uri, hash } => {
            let result = download_schema(peers, &uri).await;
            Outcome::Schema { peer, hash, result }
        }
    }
}

/// `GET {uri}/v1/schema` through the outbound guard: a denied address, a
/// redirect or an answer over the cap is an error, the schema is checked.
async fn download_schema(peers: &Peers, uri: &PeerUri) -> Result<Schema, CallError> {
    let outbound = &peers.outbound;
    outbound
        .guard()
        .check_literal(uri)
        .map_err(|e| CallError::Invalid(e.to_string()))?;
    let _permit = peers
        .downloads
        .acquire()
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let call = outbound
        .client()
        .get(uri.join("/v1/schema"))
        .timeout(CALL_TIMEOUT)
        .send()
        .await;
    let response = success(call, outbound.max_answer_bytes()).await?;
    let bytes = outbound
        .read(response)
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let schema: Schema = serde_json::from_slice(&bytes)
        .map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))?;
    schema
        .validate()
        .map(|()| schema)
        .map_err(|e| CallError::Invalid(format!("invalid schema: {e}")))
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
