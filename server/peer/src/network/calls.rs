//! The HTTP calls the membership machine asks for, performed with reqwest,
//! and their answers mapped to what the machine understands.

use std::time::Duration;

use plexus_core::client::{Answer, Call, CallError, read_schema};
use plexus_core::membership::Request;
use plexus_core::names::{PeerName, PeerUri};
use plexus_core::schema::Schema;
use plexus_server::genesis_call;

use super::Peers;

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
}

/// Performs `request`, sent as `call` (built and signed by the core, see
/// [`plexus_core::membership::Membership::call`]; `None` for a schema
/// download), and returns its outcome; never fails, never hangs longer
/// than [`CALL_TIMEOUT`] (a schema download waits for a permit of
/// [`Peers::downloads`] first). Genesis is called with `http`, other peers
/// through `peers`' outbound guard.
pub async fn perform(
    http: &reqwest::Client,
    peers: &Peers,
    genesis: &Genesis,
    replica: usize,
    request: Request,
    call: Option<Call>,
) -> Outcome {
    if let Request::DownloadSchema { peer, uri, hash } = request {
        let result = download_schema(peers, &uri).await;
        return Outcome::Schema { peer, hash, result };
    }
    let answer = match call {
        Some(call) => send(http, genesis, replica, call).await,
        // Never: the core builds a call for every request to genesis.
        None => Err(CallError::Invalid("no call to send".into())),
    };
    match request {
        Request::Register(_) => Outcome::Register(answer),
        Request::Ping { .. } => Outcome::Ping(answer),
        Request::Leave { .. } => Outcome::Leave(answer.map(|_| ())),
        Request::FetchPeers | Request::DownloadSchema { .. } => Outcome::Peers(answer),
    }
}

/// Sends `call` to replica `replica` of `genesis`, with the join token.
async fn send(
    http: &reqwest::Client,
    genesis: &Genesis,
    replica: usize,
    call: Call,
) -> Result<Answer, CallError> {
    let call = call.with_token(genesis.token.as_deref());
    let request = genesis_call::request(http, genesis.base(replica).as_str(), call);
    genesis_call::send(
        request.timeout(CALL_TIMEOUT),
        genesis.max_list_bytes,
        "--max-list-bytes",
    )
    .await
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
        .timeout(CALL_TIMEOUT);
    let answer =
        genesis_call::send(call, outbound.max_answer_bytes(), "--max-answer-bytes").await?;
    read_schema(&answer)
}
