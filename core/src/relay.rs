//! The relay that makes a browser tab a peer: decisions and framing.
//!
//! A browser tab cannot accept HTTP. With a relay (`plexus-genesis
//! --relay`), it opens one WebSocket to genesis, proves the key that holds
//! its name, and is then reachable at `{genesis}/relay/{name}`: each HTTP
//! request to that URI (genesis's own probe and pushes, other peers'
//! `POST /v1/graphql` and `GET /v1/schema`) is framed to the tab with an id,
//! and the tab's answer with that id goes back to the caller.
//!
//! [`Relay`] is the sans-IO machine of the relay side: the shell feeds it
//! connections, frames, requests, closes and instants, and performs the
//! [`Action`]s it returns ([`Relay::poll_action`]). It enforces every bound:
//! tabs at most, requests in flight per tab, body sizes, the time a request
//! and a hello may take; a closed socket fails its requests at once.
//!
//! # Frames (JSON text messages, field `type`)
//!
//! ```text
//! relay -> tab   {"type":"challenge","nonce":"..."}
//! tab -> relay   {"type":"hello","name":"TabA","signatureInput":"...","signature":"...","contentDigest":"..."}
//! relay -> tab   {"type":"welcome","name":"TabA","path":"/relay/TabA"}
//! relay -> tab   {"type":"request","id":1,"method":"POST","path":"/v1/graphql","headers":[["content-type","application/json"]],"body":"..."}
//! tab -> relay   {"type":"response","id":1,"status":200,"headers":[["content-type","application/json"]],"body":"..."}
//! relay -> tab   {"type":"refused","message":"..."}   (then the relay closes the socket)
//! ```
//!
//! The hello is an RFC 9421-style signature ([`crate::auth`]) by the tab's
//! Ed25519 key of [`hello_message`]: `CONNECT /relay/{name}` over the
//! relay's nonce. So a hello cannot be replayed on another connection, nor
//! moved to another name.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{self, Expect, Message, PublicKey, Received, SignatureHeaders};
use crate::names::PeerName;
use crate::time::Timestamp;

/// The path of the relay's WebSocket endpoint on genesis.
pub const SOCKET_PATH: &str = "/relay";

/// The path prefix under which genesis relays a tab: `/relay/{name}`.
pub fn tab_path(name: &PeerName) -> String {
    format!("{SOCKET_PATH}/{name}")
}

/// The URI a tab registers as its `peerUri`: `{genesis}/relay/{name}`.
pub fn tab_uri(genesis: &str, name: &PeerName) -> String {
    format!("{}{}", genesis.trim_end_matches('/'), tab_path(name))
}

/// The URL of the relay's socket for a tab of `genesis`: `ws://…/relay`
/// for an `http` genesis, `wss://…/relay` for an `https` one (a TLS genesis
/// serves its socket over TLS too; a page served over HTTPS may open only
/// `wss`). Another scheme is kept as it is, for the socket to refuse.
pub fn socket_url(genesis: &str) -> String {
    let genesis = genesis.trim().trim_end_matches('/');
    let scheme_end = genesis.find("://").unwrap_or(0);
    let (scheme, rest) = genesis.split_at(scheme_end);
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => "wss",
        "http" => "ws",
        _ => scheme,
    };
    format!("{scheme}{rest}{SOCKET_PATH}")
}

/// The message a tab signs to prove its key for `name` on a connection
/// whose challenge was `nonce`.
pub fn hello_message<'a>(path: &'a str, nonce: &'a str) -> Message<'a> {
    Message::request("CONNECT", path, nonce.as_bytes())
}

/// The request headers that travel to the tab (all others are dropped).
pub const REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    crate::wire::PEERS_VERSION_HEADER,
    crate::wire::DELTAS_HEADER,
    auth::SIGNATURE_INPUT,
    auth::SIGNATURE,
    auth::CONTENT_DIGEST,
];

/// The response headers that travel back from the tab (all others are dropped).
pub const RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    crate::wire::PEERS_VERSION_HEADER,
    auth::SIGNATURE_INPUT,
    auth::SIGNATURE,
    auth::CONTENT_DIGEST,
];

/// A frame from the relay to a tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ToTab {
    /// The first frame: the tab signs [`hello_message`] over this nonce.
    Challenge {
        /// Random text, fresh for each connection.
        nonce: String,
    },
    /// The hello was accepted: the tab now answers for `name` at `path`.
    Welcome {
        /// Its name.
        name: PeerName,
        /// Its path on genesis (`/relay/{name}`).
        path: String,
    },
    /// The relay refuses the tab and closes the socket.
    Refused {
        /// Why.
        message: String,
    },
    /// An HTTP request for the tab to answer.
    Request(RelayRequest),
}

/// A frame from a tab to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FromTab {
    /// The proof of the tab's key for `name`.
    #[serde(rename_all = "camelCase")]
    Hello {
        /// The name it answers for.
        name: PeerName,
        /// `signature-input` of its signature of [`hello_message`].
        signature_input: String,
        /// `signature`.
        signature: String,
        /// `content-digest`.
        content_digest: String,
    },
    /// The answer to a [`RelayRequest`].
    Response(RelayResponse),
}

impl FromTab {
    /// The hello that proves `signature` for `name`.
    pub fn hello(name: PeerName, signature: SignatureHeaders) -> Self {
        Self::Hello {
            name,
            signature_input: signature.signature_input,
            signature: signature.signature,
            content_digest: signature.content_digest,
        }
    }
}

/// An HTTP request relayed to a tab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRequest {
    /// Its id on this connection: the answer carries it.
    pub id: u64,
    /// E.g. `POST`.
    pub method: String,
    /// The path below `/relay/{name}`, with its query (e.g. `/v1/graphql`).
    pub path: String,
    /// The headers of [`REQUEST_HEADERS`] that the request carried.
    pub headers: Vec<(String, String)>,
    /// The body, as text (the relay refuses bodies that are not UTF-8).
    pub body: String,
}

/// A tab's answer to a [`RelayRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayResponse {
    /// The id of the request it answers.
    pub id: u64,
    /// The HTTP status.
    pub status: u16,
    /// Headers (only those of [`RESPONSE_HEADERS`] are passed on).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    #[serde(default)]
    pub body: String,
}

/// Bounds of a relay.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Connected tabs at most (those still to say hello included).
    pub max_tabs: usize,
    /// Requests in flight per tab; more get 503.
    pub max_in_flight: usize,
    /// Largest body of a relayed request or answer, and of any frame.
    pub max_body_bytes: usize,
    /// How long a relayed request may wait for the tab's answer (504 after).
    pub request_timeout: Duration,
    /// How long a new connection may take to say hello.
    pub hello_timeout: Duration,
    /// How far the hello's signature `created` may be from the relay's clock.
    pub max_signature_age: Duration,
}

impl Default for RelayConfig {
    /// The defaults of `plexus-genesis --relay`.
    fn default() -> Self {
        Self {
            max_tabs: 1024,
            max_in_flight: 32,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            max_signature_age: auth::DEFAULT_MAX_AGE,
        }
    }
}

/// One WebSocket connection, numbered by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Why a relayed request failed; [`RelayError::status`] is its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// No tab is connected under that name.
    #[error("no tab is connected as {0}")]
    NoTab(String),
    /// The tab has as many requests in flight as it may.
    #[error("the tab {name} already has {max} requests in flight")]
    Busy {
        /// The tab.
        name: String,
        /// The bound.
        max: usize,
    },
    /// The request's body is larger than the relay passes on.
    #[error("request body of {size} bytes is larger than the relay's {max}")]
    RequestTooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// The request's body is not UTF-8 text.
    #[error("the relay passes on text bodies only (UTF-8)")]
    NotText,
    /// The request's path is not a path.
    #[error("bad path: {0}")]
    BadPath(String),
    /// The tab's answer is larger than the relay passes on.
    #[error("the tab's answer is larger than the relay's {max} bytes")]
    ResponseTooLarge {
        /// The bound.
        max: usize,
    },
    /// The tab's answer has a status that is not an HTTP status.
    #[error("the tab answered with an invalid status {0}")]
    BadStatus(u16),
    /// The tab did not answer in time.
    #[error("the tab did not answer within {0:?}")]
    Timeout(Duration),
    /// The tab's socket closed before it answered.
    #[error("the tab's socket closed before it answered")]
    Gone,
}

impl RelayError {
    /// The HTTP status the caller of the relayed request gets.
    pub fn status(&self) -> u16 {
        match self {
            Self::NoTab(_) | Self::Gone | Self::ResponseTooLarge { .. } | Self::BadStatus(_) => 502,
            Self::Busy { .. } => 503,
            Self::RequestTooLarge { .. } => 413,
            Self::NotText | Self::BadPath(_) => 400,
            Self::Timeout(_) => 504,
        }
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `frame` on connection `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: ToTab,
    },
    /// Close connection `conn` (after the frames sent before).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// Relayed request `id` is over: answer its caller with `result`.
    Complete {
        /// The id [`Relay::begin_request`] returned.
        id: u64,
        /// The tab's answer, or why there is none.
        result: Result<RelayResponse, RelayError>,
    },
    /// A tab now answers for `name` with `key` (for the log and metrics).
    Joined {
        /// The connection.
        conn: ConnId,
        /// Its name.
        name: PeerName,
        /// Its key.
        key: PublicKey,
    },
}

#[derive(Debug)]
enum Conn {
    AwaitingHello { nonce: String, deadline: Timestamp },
    Serving { name: PeerName, key: PublicKey },
}

#[derive(Debug)]
struct Pending {
    conn: ConnId,
    deadline: Timestamp,
}

/// The relay's state: connections, the names they answer for, and the
/// requests in flight.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    conns: BTreeMap<ConnId, Conn>,
    names: BTreeMap<PeerName, ConnId>,
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    actions: VecDeque<Action>,
}

impl Relay {
    /// An empty relay with `config`.
    pub fn new(config: RelayConfig) -> Self {
        Self {
            config,
            conns: BTreeMap::new(),
            names: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_id: 1,
            actions: VecDeque::new(),
        }
    }

    /// Its bounds.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The names tabs answer for now.
    pub fn names(&self) -> impl Iterator<Item = &PeerName> {
        self.names.keys()
    }

    /// How many requests are in flight, over all tabs.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// A new connection `conn`, challenged with `nonce` (fresh random text
    /// from the shell). `false` when the relay is full: the shell refuses
    /// it (the returned actions say so) and must not call anything else for it.
    pub fn handle_connect(&mut self, conn: ConnId, nonce: String, now: Timestamp) -> bool {
        if self.conns.len() >= self.config.max_tabs {
            let message = format!("the relay is full ({} tabs)", self.config.max_tabs);
            self.refuse(conn, message);
            return false;
        }
        let deadline = now + self.config.hello_timeout;
        self.actions.push_back(Action::Send {
            conn,
            frame: ToTab::Challenge {
                nonce: nonce.clone(),
            },
        });
        self.conns
            .insert(conn, Conn::AwaitingHello { nonce, deadline });
        true
    }

    /// A text frame from `conn`. `held_by_other(name, key)` says whether
    /// the registry holds `name` for another key than `key` (then the tab
    /// may not answer for it). Any frame that breaks the protocol closes
    /// the connection.
    pub fn handle_frame(
        &mut self,
        conn: ConnId,
        text: &str,
        now: Timestamp,
        held_by_other: impl FnOnce(&PeerName, &PublicKey) -> bool,
    ) {
        if text.len() > self.config.max_body_bytes.saturating_add(4096) {
            return self.refuse(conn, "frame too large".into());
        }
        let frame = match serde_json::from_str::<FromTab>(text) {
            Ok(frame) => frame,
            Err(e) => return self.refuse(conn, format!("bad frame: {e}")),
        };
        match (self.conns.get(&conn), frame) {
            (None, _) => {}
            (Some(Conn::AwaitingHello { nonce, .. }), hello @ FromTab::Hello { .. }) => {
                let nonce = nonce.clone();
                self.hello(conn, &nonce, hello, now, held_by_other);
            }
            (Some(Conn::Serving { .. }), FromTab::Response(response)) => {
                self.response(conn, response);
            }
            (Some(Conn::AwaitingHello { .. }), FromTab::Response(_)) => {
                self.refuse(conn, "say hello first".into());
            }
            (Some(Conn::Serving { .. }), FromTab::Hello { .. }) => {
                self.refuse(conn, "hello twice".into());
            }
        }
    }

    fn hello(
        &mut self,
        conn: ConnId,
        nonce: &str,
        hello: FromTab,
        now: Timestamp,
        held_by_other: impl FnOnce(&PeerName, &PublicKey) -> bool,
    ) {
        let FromTab::Hello {
            name,
            signature_input,
            signature,
            content_digest,
        } = hello
        else {
            return;
        };
        let path = tab_path(&name);
        let received = Received {
            signature_input: Some(signature_input),
            signature: Some(signature),
            content_digest: Some(content_digest),
        };
        let verified = auth::verify(
            &received,
            &hello_message(&path, nonce),
            Expect::AnyKey,
            now,
            self.config.max_signature_age,
        );
        let key = match verified.map(|v| v.key) {
            Ok(Some(key)) => key,
            Ok(None) => {
                return self.refuse(conn, "the hello must be signed with an Ed25519 key".into());
            }
            Err(e) => return self.refuse(conn, format!("hello refused: {e}")),
        };
        if let Some(&other) = self.names.get(&name) {
            let Some(Conn::Serving { key: held, .. }) = self.conns.get(&other) else {
                return;
            };
            if *held != key {
                return self.refuse(conn, format!("another key answers for {name}"));
            }
            // The same key again (a reload): the new socket takes over.
            self.refuse(
                other,
                "replaced by a new connection with the same key".into(),
            );
        }
        if held_by_other(&name, &key) {
            return self.refuse(conn, format!("genesis holds {name} for another key"));
        }
        self.names.insert(name.clone(), conn);
        self.conns.insert(
            conn,
            Conn::Serving {
                name: name.clone(),
                key,
            },
        );
        self.actions.push_back(Action::Send {
            conn,
            frame: ToTab::Welcome {
                name: name.clone(),
                path,
            },
        });
        self.actions.push_back(Action::Joined { conn, name, key });
    }

    fn response(&mut self, conn: ConnId, response: RelayResponse) {
        // Only an answer to a request of this very connection counts; a
        // late one (after its timeout) or a made-up id is dropped.
        if self.pending.get(&response.id).map(|p| p.conn) != Some(conn) {
            return;
        }
        self.pending.remove(&response.id);
        let result = if response.body.len() > self.config.max_body_bytes {
            Err(RelayError::ResponseTooLarge {
                max: self.config.max_body_bytes,
            })
        } else if !(100..=599).contains(&response.status) {
            Err(RelayError::BadStatus(response.status))
        } else {
            let headers = response
                .headers
                .into_iter()
                .filter(|(name, _)| RESPONSE_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
                .collect();
            Ok(RelayResponse {
                headers,
                ..response
            })
        };
        self.actions.push_back(Action::Complete {
            id: response.id,
            result,
        });
    }

    /// An HTTP request for the tab `name`: `Ok(id)` and an
    /// [`Action::Send`] to the tab, whose [`Action::Complete`] with that id
    /// comes later; or the error to answer at once.
    pub fn begin_request(
        &mut self,
        name: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: Timestamp,
    ) -> Result<u64, RelayError> {
        let conn = PeerName::new(name)
            .ok()
            .and_then(|n| self.names.get(&n).copied())
            .ok_or_else(|| RelayError::NoTab(name.to_owned()))?;
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(RelayError::BadPath(path.to_owned()));
        }
        if body.len() > self.config.max_body_bytes {
            return Err(RelayError::RequestTooLarge {
                size: body.len(),
                max: self.config.max_body_bytes,
            });
        }
        let body = std::str::from_utf8(body).map_err(|_| RelayError::NotText)?;
        let in_flight = self.pending.values().filter(|p| p.conn == conn).count();
        if in_flight >= self.config.max_in_flight {
            return Err(RelayError::Busy {
                name: name.to_owned(),
                max: self.config.max_in_flight,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.config.request_timeout;
        self.pending.insert(id, Pending { conn, deadline });
        let headers = headers
            .iter()
            .filter(|(name, _)| REQUEST_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        self.actions.push_back(Action::Send {
            conn,
            frame: ToTab::Request(RelayRequest {
                id,
                method: method.to_owned(),
                path: path.to_owned(),
                headers,
                body: body.to_owned(),
            }),
        });
        Ok(id)
    }

    /// The caller of request `id` went away: forget it.
    pub fn cancel(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// Connection `conn` closed: its name is free and its requests in
    /// flight fail at once.
    pub fn handle_closed(&mut self, conn: ConnId) {
        if let Some(Conn::Serving { name, .. }) = self.conns.remove(&conn) {
            if self.names.get(&name) == Some(&conn) {
                self.names.remove(&name);
            }
        }
        self.fail_requests_of(conn);
    }

    fn fail_requests_of(&mut self, conn: ConnId) {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.pending.remove(&id);
            self.actions.push_back(Action::Complete {
                id,
                result: Err(RelayError::Gone),
            });
        }
    }

    /// Refuses `conn`: a last frame, then a close; it no longer answers.
    fn refuse(&mut self, conn: ConnId, message: String) {
        self.actions.push_back(Action::Send {
            conn,
            frame: ToTab::Refused {
                message: message.clone(),
            },
        });
        self.actions.push_back(Action::Close {
            conn,
            reason: message,
        });
        self.handle_closed(conn);
    }

    /// Expires hellos and requests whose time is up.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter_map(|(conn, c)| match c {
                Conn::AwaitingHello { deadline, .. } if *deadline <= now => Some(*conn),
                _ => None,
            })
            .collect();
        for conn in late {
            self.refuse(conn, "no hello in time".into());
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.pending.remove(&id);
            self.actions.push_back(Action::Complete {
                id,
                result: Err(RelayError::Timeout(self.config.request_timeout)),
            });
        }
    }

    /// When [`Relay::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let hellos = self.conns.values().filter_map(|c| match c {
            Conn::AwaitingHello { deadline, .. } => Some(*deadline),
            Conn::Serving { .. } => None,
        });
        let requests = self.pending.values().map(|p| p.deadline);
        hellos.chain(requests).min()
    }

    /// The next thing the shell must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
