//! Genesis's API from a client's side: each call built once, each answer
//! read once, and one rule for moving between replicas and backing off.
//!
//! Sans-IO, like the rest of the core: a [`Call`] is the method, path,
//! headers and body to send; the host sends it with whatever it has
//! (reqwest, a browser's `fetch`) and hands back the status, a header
//! lookup and the body it read ([`read_answer`]). The typed readings of an
//! [`Answer`] ([`Answer::registration`], [`Answer::signed_version`],
//! [`Answer::peer_list`]) and of the watch stream ([`WatchEvent::read`])
//! say what it means. The native peer, the tab peer, the bench's tab and
//! the dashboard all use these, so none of them reads genesis on its own.

use std::time::Duration;

use crate::auth::{
    self, AuthError, Expect, Identity, Message, PublicKey, Received, SESSION_KEY_HEADER,
    SessionKey, SignatureHeaders,
};
use crate::schema::Schema;
use crate::time::Timestamp;
use crate::wire::{
    AUTHORIZATION, DELTAS_HEADER, ErrorBody, PEERS_PATH, PEERS_VERSION_HEADER, Peer, PeerChange,
    PeerId, PeerPing, PeerRegistrationResponse, PeerUpdate, REGISTER_PATH, WATCH_PATH,
    WatchSnapshot, leave_path, ping_path,
};

/// The default first delay before a client calls genesis again after a
/// failure ([`crate::time::backoff`]); it doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(500);
/// The default longest delay between a client's attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// One HTTP call to genesis, ready to send: the host joins [`Call::path`]
/// to the replica's base URL and sends the rest as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// The API path (see [`crate::wire`]).
    pub path: String,
    /// The headers to send besides the signature's, names in lower case.
    headers: Vec<(&'static str, String)>,
    /// The signature's headers, when the call is signed.
    signature: Option<SignatureHeaders>,
    /// The body (empty: none).
    pub body: Vec<u8>,
}

impl Call {
    fn new(method: &'static str, path: String) -> Self {
        Self {
            method,
            path,
            headers: Vec::new(),
            signature: None,
            body: Vec::new(),
        }
    }

    /// Every header to send, as (lower-case name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let signature = self.signature.iter().flat_map(SignatureHeaders::pairs);
        self.headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .chain(signature)
    }

    /// The signature of the call, when it is signed.
    pub fn signature(&self) -> Option<&SignatureHeaders> {
        self.signature.as_ref()
    }

    fn with_json(mut self, body: Vec<u8>) -> Self {
        self.headers
            .push(("content-type", "application/json".into()));
        self.body = body;
        self
    }

    /// Signs the call (method, path, body) with `identity` or `session`.
    fn signed(
        mut self,
        identity: Option<&Identity>,
        session: Option<&SessionKey>,
        now: Timestamp,
    ) -> Self {
        let message = Message::request(self.method, &self.path, &self.body);
        self.signature = match (identity, session) {
            (Some(identity), _) => Some(identity.sign(&message, now)),
            (None, Some(session)) => Some(session.sign(&message, now)),
            (None, None) => None,
        };
        self
    }

    /// `POST /peers/register` of `update`, signed with the peer's key when
    /// it has one. It asks for deltas (`x-plexus-deltas: 1`): every client
    /// of this module applies them.
    pub fn register(update: &PeerUpdate, identity: Option<&Identity>, now: Timestamp) -> Self {
        let mut call = Self::new("POST", REGISTER_PATH.to_owned())
            .with_json(serde_json::to_vec(update).unwrap_or_default());
        call.headers.push((DELTAS_HEADER, "1".into()));
        call.signed(identity, None, now)
    }

    /// `POST /peers/{id}/ping` with `ping`, signed with the registration's
    /// session key when it has one.
    pub fn ping(id: PeerId, ping: &PeerPing, session: Option<&SessionKey>, now: Timestamp) -> Self {
        Self::new("POST", ping_path(id))
            .with_json(serde_json::to_vec(ping).unwrap_or_default())
            .signed(None, session, now)
    }

    /// `DELETE /peers/{id}`, signed with the session key when it has one.
    pub fn leave(id: PeerId, session: Option<&SessionKey>, now: Timestamp) -> Self {
        Self::new("DELETE", leave_path(id)).signed(None, session, now)
    }

    /// `GET /peers`: the whole list and its version.
    pub fn peers() -> Self {
        Self::new("GET", PEERS_PATH.to_owned())
    }

    /// `GET /peers/watch`: the watch stream (server-sent events).
    pub fn watch() -> Self {
        let mut call = Self::new("GET", WATCH_PATH.to_owned());
        call.headers.push(("accept", "text/event-stream".into()));
        call
    }

    /// The same call with the join token (`Authorization: Bearer`), if any.
    #[must_use]
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        if let Some(token) = token {
            self.headers.push((AUTHORIZATION, bearer(token)));
        }
        self
    }
}

/// The `Authorization` value that carries the join token `token`: genesis
/// and peers take it alike.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// How a call to genesis failed: what its status (or its absence) means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// 400: genesis could not reach this peer.
    #[error("genesis cannot reach this peer (400): {0}")]
    Unreachable(String),
    /// 403: the join token is missing or wrong, or a signature is refused.
    #[error("genesis refused the call (403): {0}")]
    Forbidden(String),
    /// 404: genesis does not know this id (or this route).
    #[error("genesis does not know this peer (404)")]
    NotFound,
    /// 422 or another 4xx: the request itself is wrong.
    #[error("genesis refused the request: {0}")]
    Invalid(String),
    /// No answer, a 5xx, or an answer that does not parse.
    #[error("no usable answer from genesis: {0}")]
    Transport(String),
}

impl CallError {
    /// The error of a call that genesis answered with `status` (not a
    /// success) and `body` (`{"error": {"message": ...}}`, or anything).
    pub fn from_status(status: u16, body: &str) -> CallError {
        let message = serde_json::from_str::<ErrorBody>(body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        match status {
            400 => CallError::Unreachable(message),
            403 => CallError::Forbidden(message),
            404 => CallError::NotFound,
            401..=499 => CallError::Invalid(message),
            _ => CallError::Transport(message),
        }
    }
}

/// A successful answer of genesis as it came: what its signature covers,
/// and the headers that carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The raw body.
    pub body: Vec<u8>,
    /// The `x-plexus-peers-version` header, if any and a number.
    pub version: Option<u64>,
    /// The signature headers.
    pub signature: Received,
    /// The [`auth::SESSION_KEY_HEADER`] of a registration's answer, if any.
    pub session_key: Option<String>,
}

/// The list version a `x-plexus-peers-version` header tells: a decimal
/// number, blanks around it allowed; anything else tells none.
pub fn read_version(value: Option<&str>) -> Option<u64> {
    value?.trim().parse().ok()
}

/// Reads genesis's answer to a [`Call`]: its `status`, its headers (`header`
/// gives a header's value by lower-case name) and its `body`, or why the
/// host could not read the body (too large, cut off). A success is an
/// [`Answer`]; any other status the [`CallError`] it means, its message read
/// from the error body when there is one.
pub fn read_answer<'h>(
    status: u16,
    header: impl Fn(&str) -> Option<&'h str>,
    body: Result<Vec<u8>, String>,
) -> Result<Answer, CallError> {
    if !(200..300).contains(&status) {
        let body = body.unwrap_or_default();
        return Err(CallError::from_status(
            status,
            &String::from_utf8_lossy(&body),
        ));
    }
    let body = body.map_err(CallError::Transport)?;
    Ok(Answer {
        version: read_version(header(PEERS_VERSION_HEADER)),
        signature: Received::from_headers(&header),
        session_key: header(SESSION_KEY_HEADER).map(str::to_owned),
        body,
    })
}

/// A registration's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The peer as registered (its new id) and the network's contextionary.
    pub response: PeerRegistrationResponse,
    /// The key that signed the answer: genesis's, to pin when none was configured.
    pub key: Option<PublicKey>,
    /// The session key of a keyed registration (`None` for a keyless one).
    pub session: Option<SessionKey>,
}

/// Why a registration's answer (a success status) is not one to take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// Not signed by the expected key, or not signed at all.
    #[error("not signed by the expected key: {0}")]
    Unauthentic(AuthError),
    /// Signed, but not a `PeerRegistrationResponse`.
    #[error("unexpected answer: {0}")]
    Invalid(String),
    /// A keyed registration's answer without a session key, or with one
    /// that is not 64 hex digits: its pings could not be signed.
    #[error("the answer carries no valid session key ({SESSION_KEY_HEADER})")]
    NoSessionKey,
}

impl Answer {
    /// Reads this as the answer of a registration: signed by the key
    /// `expect` names (genesis's configured key, or any key, which the
    /// client then pins) over its body at most `max_age` from `now`, a
    /// `PeerRegistrationResponse`, and, for a `keyed` registration (one
    /// signed with the peer's own key), with its session key.
    pub fn registration(
        &self,
        expect: Expect<'_>,
        keyed: bool,
        now: Timestamp,
        max_age: Duration,
    ) -> Result<Registered, RegistrationError> {
        let verified = auth::verify(
            &self.signature,
            &Message::response(&self.body),
            expect,
            now,
            max_age,
        )
        .map_err(RegistrationError::Unauthentic)?;
        let response = serde_json::from_slice::<PeerRegistrationResponse>(&self.body)
            .map_err(|e| RegistrationError::Invalid(e.to_string()))?;
        let session = if keyed {
            let text = self.session_key.as_deref();
            let key = text.and_then(|t| t.parse::<SessionKey>().ok());
            Some(key.ok_or(RegistrationError::NoSessionKey)?)
        } else {
            None
        };
        Ok(Registered {
            response,
            key: verified.key,
            session,
        })
    }

    /// The list version of a ping's answer, counted only when `key`
    /// signed it (with the body) at most `max_age` from `now`.
    pub fn signed_version(
        &self,
        key: &PublicKey,
        now: Timestamp,
        max_age: Duration,
    ) -> Option<u64> {
        let message = Message::response(&self.body).with_version(self.version);
        auth::verify(&self.signature, &message, Expect::Key(key), now, max_age)
            .ok()
            .and(self.version)
    }

    /// Reads this as the answer of `GET /peers` to a peer: `[Peer]` and
    /// its version, taken only when `key` signed the body and version at
    /// most `max_age` from `now`.
    pub fn peer_list(
        &self,
        key: &PublicKey,
        now: Timestamp,
        max_age: Duration,
    ) -> Result<(Vec<Peer>, Option<u64>), CallError> {
        let message = Message::response(&self.body).with_version(self.version);
        auth::verify(&self.signature, &message, Expect::Key(key), now, max_age)
            .map_err(|e| CallError::Forbidden(e.to_string()))?;
        self.listed_peers()
    }

    /// Reads this as the answer of `GET /peers` as it came, signed or not:
    /// a dashboard's or a browser client's reading, which only shows it.
    pub fn listed_peers(&self) -> Result<(Vec<Peer>, Option<u64>), CallError> {
        let peers = serde_json::from_slice(&self.body)
            .map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))?;
        Ok((peers, self.version))
    }
}

/// Reads the answer of a schema download (`GET {uri}/v1/schema` of a
/// remote peer, [`crate::membership::Request::DownloadSchema`]): a schema
/// that validates, or why not.
pub fn read_schema(answer: &Answer) -> Result<Schema, CallError> {
    let schema: Schema = serde_json::from_slice(&answer.body)
        .map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))?;
    schema
        .validate()
        .map(|()| schema)
        .map_err(|e| CallError::Invalid(format!("invalid schema: {e}")))
}

/// One event of the watch stream (`GET /peers/watch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The whole list, first.
    Snapshot(WatchSnapshot),
    /// A change after it.
    Change(PeerChange),
}

/// A watch event that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {event}: {reason}")]
pub struct WatchError {
    /// The event's name.
    pub event: &'static str,
    /// Why it does not parse.
    pub reason: String,
}

impl WatchEvent {
    /// Reads a server-sent event named `event` with `data`. `Ok(None)`: an
    /// event of another name (a client skips it).
    pub fn read(event: &str, data: &str) -> Result<Option<WatchEvent>, WatchError> {
        let error = |event, e: serde_json::Error| WatchError {
            event,
            reason: e.to_string(),
        };
        match event {
            "snapshot" => serde_json::from_str(data)
                .map(|s| Some(WatchEvent::Snapshot(s)))
                .map_err(|e| error("snapshot", e)),
            "change" => serde_json::from_str(data)
                .map(|c| Some(WatchEvent::Change(c)))
                .map_err(|e| error("change", e)),
            _ => Ok(None),
        }
    }
}

/// Which genesis replica a client calls, and when to call the next one:
/// the one rule of every client. A call that gets no answer moves the
/// client to the next replica, at once, until every replica has failed
/// since the last answer; then the client waits its backoff
/// ([`crate::time::backoff`]) before the next round, so that a network
/// without genesis is not hammered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    replicas: usize,
    current: usize,
    /// Replicas moved past since a call last got an answer.
    failed: usize,
}

impl Failover {
    /// A client of `replicas` replicas (at least 1), calling the first.
    pub fn new(replicas: usize) -> Self {
        Self {
            replicas: replicas.max(1),
            current: 0,
            failed: 0,
        }
    }

    /// The replica calls go to: an index into the client's list.
    pub fn current(&self) -> usize {
        self.current
    }

    /// How many replicas the client has.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The current replica gave no answer: move to the next. Returns
    /// whether to call it at once: not with a single replica, nor when
    /// every replica has failed since the last answer.
    pub fn fail_over(&mut self) -> bool {
        if self.replicas == 1 {
            return false;
        }
        self.current = (self.current + 1) % self.replicas;
        self.failed += 1;
        self.failed < self.replicas
    }

    /// A call got an answer from the current replica.
    pub fn answered(&mut self) {
        self.failed = 0;
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
