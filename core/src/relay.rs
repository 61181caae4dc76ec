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
//! [`Action`]s it returns ([`Relay::poll_action`]); each socket's writer
//! takes its frames from [`Relay::poll_frame`], so the frames waiting for a
//! tab are the relay's and are counted. It enforces every bound: sockets at
//! most and per client address, tabs per address, requests in flight per
//! tab, bytes queued per tab, body sizes, the time a hello, a registration
//! and a request may take; a closed socket fails its requests at once, and
//! a request that ends takes its unsent frame with it.
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
use std::net::IpAddr;
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
    /// Sockets open at once, in any state (still to say hello, serving, closing).
    pub max_tabs: usize,
    /// Sockets open at once from one client address, in any state.
    pub max_sockets_per_address: usize,
    /// Tabs (sockets that proved a key) at once from one client address.
    pub max_tabs_per_address: usize,
    /// Requests in flight per tab; more get 503.
    pub max_in_flight: usize,
    /// Largest body of a relayed request or answer, and of any frame.
    pub max_body_bytes: usize,
    /// Bytes of frames waiting to be written to one tab's socket; a request
    /// whose frame does not fit gets 503 (one frame always fits an empty queue).
    pub max_queue_bytes: usize,
    /// How long a relayed request may wait for the tab's answer (504
    /// after); a tab whose queue stays full this long is dropped.
    pub request_timeout: Duration,
    /// How long a new socket may take to prove its key.
    pub hello_timeout: Duration,
    /// How long a tab that proved its key may take to be registered
    /// (under that name and key) before it loses its slot.
    pub register_timeout: Duration,
    /// How far the hello's signature `created` may be from the relay's clock.
    pub max_signature_age: Duration,
}

impl Default for RelayConfig {
    /// The defaults of `plexus-genesis --relay`.
    fn default() -> Self {
        Self {
            max_tabs: 1024,
            max_sockets_per_address: 16,
            max_tabs_per_address: 8,
            max_in_flight: 32,
            max_body_bytes: 1024 * 1024,
            max_queue_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            register_timeout: Duration::from_secs(10),
            max_signature_age: auth::DEFAULT_MAX_AGE,
        }
    }
}

/// One WebSocket connection, numbered by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Why a socket is not accepted ([`Relay::handle_connect`]); its HTTP status
/// is [`ConnectRefused::status`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectRefused {
    /// The relay has as many sockets as it may.
    #[error("the relay is full ({max} sockets, --relay-max-tabs)")]
    Full {
        /// The bound.
        max: usize,
    },
    /// The client's address has as many sockets as it may.
    #[error("too many relay sockets from this address ({max}, --relay-max-sockets-per-address)")]
    TooManyFromAddress {
        /// The bound.
        max: usize,
    },
}

impl ConnectRefused {
    /// The HTTP status of the refused upgrade: 503 when the relay is full,
    /// 429 when the address has its share.
    pub fn status(&self) -> u16 {
        match self {
            Self::Full { .. } => 503,
            Self::TooManyFromAddress { .. } => 429,
        }
    }
}

/// Why a relayed request failed; [`RelayError::status`] is its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// No tab is connected under that name.
    #[error("no tab is connected as {0}")]
    NoTab(String),
    /// The tab has as many requests in flight as it may.
    #[error("the tab {name} already has {max} requests in flight (--relay-max-in-flight)")]
    Busy {
        /// The tab.
        name: String,
        /// The bound.
        max: usize,
    },
    /// The tab's send queue has no room for the request.
    #[error(
        "the tab {name} is not reading its socket fast enough: its queue holds {max} bytes (--relay-max-queue-bytes)"
    )]
    QueueFull {
        /// The tab.
        name: String,
        /// The bound.
        max: usize,
    },
    /// The request's body is larger than the relay passes on.
    #[error(
        "request body of {size} bytes is larger than the relay's {max} (--relay-max-body-bytes)"
    )]
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
    /// The tab's answer has a status that is not a final HTTP status (200-599).
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
            Self::Busy { .. } | Self::QueueFull { .. } => 503,
            Self::RequestTooLarge { .. } => 413,
            Self::NotText | Self::BadPath(_) => 400,
            Self::Timeout(_) => 504,
        }
    }
}

/// Whether an answer of `status` carries a body: 204 and 304 never do
/// (RFC 9110, 6.4.1), so the relay sends them without one and without a
/// `content-length`.
pub fn status_has_body(status: u16) -> bool {
    !matches!(status, 204 | 304)
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connection `conn` has frames to write: its writer calls
    /// [`Relay::poll_frame`] until `None`.
    Wake {
        /// The connection.
        conn: ConnId,
    },
    /// Connection `conn` is being closed: its reader stops, its writer
    /// writes what [`Relay::poll_frame`] still gives (a last `refused`
    /// frame, then [`Outgoing::Close`]); the shell calls
    /// [`Relay::handle_closed`] once the socket is gone.
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

/// What the writer of a socket does next ([`Relay::poll_frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Write this text frame, then call [`Relay::handle_written`].
    Frame(String),
    /// Send a close frame and drop the socket.
    Close,
}

#[derive(Debug)]
enum State {
    AwaitingHello {
        nonce: String,
        deadline: Timestamp,
    },
    Serving {
        name: PeerName,
        key: PublicKey,
        /// Until the registry lists the tab: the time by which it must
        /// (`None`: confirmed; then it goes when the list drops it).
        register_by: Option<Timestamp>,
    },
    /// Refused or dropped: only its last frame is left to write.
    Closing {
        last: Option<String>,
    },
}

#[derive(Debug)]
struct Queued {
    /// The request the frame carries, if any (so that its end frees it).
    request: Option<u64>,
    text: String,
}

#[derive(Debug)]
struct Conn {
    client: IpAddr,
    state: State,
    queue: VecDeque<Queued>,
    /// Bytes of `queue` plus the frame the writer holds.
    queued_bytes: usize,
    /// The size of the frame the writer holds (handed out, not yet written).
    writing: usize,
    /// Since when a request found the queue full with no byte written since.
    full_since: Option<Timestamp>,
}

impl Conn {
    fn serving(&self) -> Option<(&PeerName, &PublicKey)> {
        match &self.state {
            State::Serving { name, key, .. } => Some((name, key)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Pending {
    conn: ConnId,
    deadline: Timestamp,
    /// Bytes of the queue held for its body until it is read.
    reserved: usize,
}

/// The relay's state: connections, the names they answer for, their send
/// queues, and the requests in flight.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    conns: BTreeMap<ConnId, Conn>,
    names: BTreeMap<PeerName, ConnId>,
    per_client: BTreeMap<IpAddr, usize>,
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
            per_client: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_id: 1,
            actions: VecDeque::new(),
        }
    }

    /// Its bounds.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// How many sockets are open (closing ones included).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no socket is open.
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

    /// Bytes waiting to be written, over all sockets.
    pub fn queued_bytes(&self) -> usize {
        self.conns.values().map(|c| c.queued_bytes).sum()
    }

    /// A new socket `conn` from `client` (its address as the rate limit
    /// keys it), challenged with `nonce` (fresh random text from the
    /// shell). Call it before the WebSocket upgrade: on `Err` the shell
    /// answers the upgrade with [`ConnectRefused::status`] and nothing is
    /// kept; on `Ok` the socket counts until [`Relay::handle_closed`], and
    /// must say hello within the hello timeout.
    pub fn handle_connect(
        &mut self,
        conn: ConnId,
        client: IpAddr,
        nonce: String,
        now: Timestamp,
    ) -> Result<(), ConnectRefused> {
        if self.conns.len() >= self.config.max_tabs {
            return Err(ConnectRefused::Full {
                max: self.config.max_tabs,
            });
        }
        let from_client = self.per_client.get(&client).copied().unwrap_or(0);
        if from_client >= self.config.max_sockets_per_address {
            return Err(ConnectRefused::TooManyFromAddress {
                max: self.config.max_sockets_per_address,
            });
        }
        *self.per_client.entry(client).or_default() += 1;
        let deadline = now + self.config.hello_timeout;
        let challenge = ToTab::Challenge {
            nonce: nonce.clone(),
        };
        self.conns.insert(
            conn,
            Conn {
                client,
                state: State::AwaitingHello { nonce, deadline },
                queue: VecDeque::new(),
                queued_bytes: 0,
                writing: 0,
                full_since: None,
            },
        );
        self.enqueue(conn, None, &challenge);
        Ok(())
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
        let state = match self.conns.get(&conn) {
            None
            | Some(Conn {
                state: State::Closing { .. },
                ..
            }) => return,
            Some(c) => &c.state,
        };
        if text.len() > self.config.max_body_bytes.saturating_add(4096) {
            return self.refuse(conn, "frame too large".into());
        }
        let frame = match serde_json::from_str::<FromTab>(text) {
            Ok(frame) => frame,
            Err(e) => return self.refuse(conn, format!("bad frame: {e}")),
        };
        match (state, frame) {
            (State::AwaitingHello { nonce, .. }, hello @ FromTab::Hello { .. }) => {
                let nonce = nonce.clone();
                self.hello(conn, &nonce, hello, now, held_by_other);
            }
            (State::Serving { .. }, FromTab::Response(response)) => {
                self.response(conn, response);
            }
            (State::AwaitingHello { .. }, FromTab::Response(_)) => {
                self.refuse(conn, "say hello first".into());
            }
            (State::Serving { .. }, FromTab::Hello { .. }) => {
                self.refuse(conn, "hello twice".into());
            }
            (State::Closing { .. }, _) => {}
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
        let replaced = self.names.get(&name).copied();
        if let Some(other) = replaced
            && self
                .conns
                .get(&other)
                .and_then(Conn::serving)
                .is_some_and(|(_, held)| *held != key)
        {
            return self.refuse(conn, format!("another key answers for {name}"));
        }
        let Some(client) = self.conns.get(&conn).map(|c| c.client) else {
            return;
        };
        let tabs_of_client = self
            .conns
            .iter()
            .filter(|(id, c)| Some(**id) != replaced && c.client == client && c.serving().is_some())
            .count();
        if tabs_of_client >= self.config.max_tabs_per_address {
            let max = self.config.max_tabs_per_address;
            return self.refuse(
                conn,
                format!("too many tabs from this address ({max}, --relay-max-tabs-per-address)"),
            );
        }
        if held_by_other(&name, &key) {
            return self.refuse(conn, format!("genesis holds {name} for another key"));
        }
        if let Some(other) = replaced {
            // The same key again (a reload): the new socket takes over.
            self.refuse(
                other,
                "replaced by a new connection with the same key".into(),
            );
        }
        self.names.insert(name.clone(), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Serving {
                name: name.clone(),
                key,
                register_by: Some(now + self.config.register_timeout),
            };
        }
        self.enqueue(
            conn,
            None,
            &ToTab::Welcome {
                name: name.clone(),
                path,
            },
        );
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
        } else if !(200..=599).contains(&response.status) {
            // 1xx are not answers (a 101 would claim to switch protocols).
            Err(RelayError::BadStatus(response.status))
        } else {
            let headers = response
                .headers
                .into_iter()
                .filter(|(name, _)| RESPONSE_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
                .collect();
            let body = if status_has_body(response.status) {
                response.body
            } else {
                String::new()
            };
            Ok(RelayResponse {
                headers,
                body,
                ..response
            })
        };
        self.actions.push_back(Action::Complete {
            id: response.id,
            result,
        });
    }

    /// An HTTP request for the tab `name`, whose body is at hand:
    /// [`Relay::reserve`] then [`Relay::send_request`].
    pub fn begin_request(
        &mut self,
        name: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: Timestamp,
    ) -> Result<u64, RelayError> {
        let id = self.reserve(name, path, body.len(), now)?;
        self.send_request(id, method, path, headers, body, now)?;
        Ok(id)
    }

    /// A request for the tab `name` whose body (`declared` bytes, its
    /// `content-length`; 0 when unknown) is still to be read: `Ok(id)`
    /// holds its place (one of the tab's requests in flight, and `declared`
    /// bytes of its queue) before the shell reads the body, so that bodies
    /// are read only for requests that may be sent. Then
    /// [`Relay::send_request`] with the body, or [`Relay::cancel`].
    pub fn reserve(
        &mut self,
        name: &str,
        path: &str,
        declared: usize,
        now: Timestamp,
    ) -> Result<u64, RelayError> {
        let conn = PeerName::new(name)
            .ok()
            .and_then(|n| self.names.get(&n).copied())
            .ok_or_else(|| RelayError::NoTab(name.to_owned()))?;
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(RelayError::BadPath(path.to_owned()));
        }
        if declared > self.config.max_body_bytes {
            return Err(RelayError::RequestTooLarge {
                size: declared,
                max: self.config.max_body_bytes,
            });
        }
        let in_flight = self.pending.values().filter(|p| p.conn == conn).count();
        if in_flight >= self.config.max_in_flight {
            return Err(RelayError::Busy {
                name: name.to_owned(),
                max: self.config.max_in_flight,
            });
        }
        self.room(conn, declared, now)?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queued_bytes += declared;
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.config.request_timeout;
        self.pending.insert(
            id,
            Pending {
                conn,
                deadline,
                reserved: declared,
            },
        );
        Ok(id)
    }

    /// Whether `bytes` more fit the queue of `conn` (one frame always fits
    /// an empty queue); a refusal starts the clock of a full queue.
    fn room(&mut self, conn: ConnId, bytes: usize, now: Timestamp) -> Result<(), RelayError> {
        let max = self.config.max_queue_bytes;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(RelayError::Gone);
        };
        if c.queued_bytes > 0 && c.queued_bytes.saturating_add(bytes) > max {
            c.full_since.get_or_insert(now);
            let name = c.serving().map(|(n, _)| n.to_string()).unwrap_or_default();
            return Err(RelayError::QueueFull { name, max });
        }
        Ok(())
    }

    /// The body of reserved request `id` is read: its frame is queued to
    /// the tab (an [`Action::Wake`]), and its [`Action::Complete`] comes
    /// later; or the error to answer at once (the request is then over).
    pub fn send_request(
        &mut self,
        id: u64,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), RelayError> {
        let Some(conn) = self.release(id) else {
            return Err(RelayError::Gone);
        };
        let result = self.frame(id, conn, method, path, headers, body, now);
        if result.is_err() {
            self.pending.remove(&id);
        }
        result
    }

    /// Gives back the bytes request `id` reserved; its connection.
    fn release(&mut self, id: u64) -> Option<ConnId> {
        let p = self.pending.get_mut(&id)?;
        let (conn, reserved) = (p.conn, std::mem::take(&mut p.reserved));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queued_bytes -= reserved;
        }
        Some(conn)
    }

    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        id: u64,
        conn: ConnId,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), RelayError> {
        if body.len() > self.config.max_body_bytes {
            return Err(RelayError::RequestTooLarge {
                size: body.len(),
                max: self.config.max_body_bytes,
            });
        }
        let body = std::str::from_utf8(body).map_err(|_| RelayError::NotText)?;
        // The frame is at least as long as the body: refuse before making it.
        self.room(conn, body.len(), now)?;
        let headers = headers
            .iter()
            .filter(|(name, _)| REQUEST_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        let frame = ToTab::Request(RelayRequest {
            id,
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            body: body.to_owned(),
        });
        let text = serde_json::to_string(&frame).unwrap_or_default();
        self.room(conn, text.len(), now)?;
        self.push(conn, Some(id), text);
        Ok(())
    }

    /// The caller of request `id` went away: forget it, and its frame if
    /// the tab has not been sent it yet.
    pub fn cancel(&mut self, id: u64) {
        if let Some(conn) = self.release(id) {
            self.pending.remove(&id);
            self.unqueue(conn, id);
        }
    }

    /// The next thing the writer of `conn` does: a frame to write (its
    /// bytes count against the queue until [`Relay::handle_written`]), a
    /// close, or `None` (wait for the next [`Action::Wake`]). Call it again
    /// after each [`Action::Wake`] or [`Action::Close`] of `conn`, and
    /// after each frame written.
    #[must_use]
    pub fn poll_frame(&mut self, conn: ConnId) -> Option<Outgoing> {
        let c = self.conns.get_mut(&conn)?;
        if let State::Closing { last } = &mut c.state {
            return Some(match last.take() {
                Some(text) => Outgoing::Frame(text),
                None => Outgoing::Close,
            });
        }
        if c.writing > 0 {
            return None;
        }
        let queued = c.queue.pop_front()?;
        c.writing = queued.text.len();
        Some(Outgoing::Frame(queued.text))
    }

    /// The frame last handed out for `conn` was written: its bytes leave
    /// the queue, and a tab whose queue was full has made progress.
    pub fn handle_written(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queued_bytes = c.queued_bytes.saturating_sub(c.writing);
            c.writing = 0;
            c.full_since = None;
        }
    }

    /// Connection `conn` is gone (the socket dropped, for any reason): its
    /// name is free, its slot too, and its requests in flight fail at once.
    pub fn handle_closed(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(count) = self.per_client.get_mut(&c.client) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&c.client);
            }
        }
        if let State::Serving { name, .. } = c.state
            && self.names.get(&name) == Some(&conn)
        {
            self.names.remove(&name);
        }
        self.fail_requests_of(conn);
    }

    /// Genesis's list changed for `name` (a registration, an update, an
    /// eviction for silent pings, a leave), or, with `None`, maybe for any
    /// name (the shell missed changes). `listed(name, key)` says whether the
    /// registry lists `name` under `key` now. A tab listed so is confirmed
    /// at once (its registration deadline no longer applies). A confirmed
    /// tab that is no longer listed loses its socket, and then its slot:
    /// evicted or gone, it must prove its key and register anew. A tab not
    /// yet confirmed is left to its registration deadline
    /// ([`Relay::handle_timeout`]).
    pub fn handle_list_changed(
        &mut self,
        name: Option<&PeerName>,
        mut listed: impl FnMut(&PeerName, &PublicKey) -> bool,
    ) {
        let conns: Vec<ConnId> = match name {
            Some(name) => self.names.get(name).copied().into_iter().collect(),
            None => self.names.values().copied().collect(),
        };
        let mut refusals = Vec::new();
        for conn in conns {
            let Some(State::Serving {
                name,
                key,
                register_by,
            }) = self.conns.get_mut(&conn).map(|c| &mut c.state)
            else {
                continue;
            };
            if listed(name, key) {
                *register_by = None;
            } else if register_by.is_none() {
                refusals.push((
                    conn,
                    format!("{name} is no longer registered (evicted, or it left)"),
                ));
            }
        }
        for (conn, message) in refusals {
            self.refuse(conn, message);
        }
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

    /// Refuses `conn`: it no longer answers (its name is free, its
    /// requests fail, its queue is dropped); a last frame says why, then
    /// the socket closes. It keeps its slot until [`Relay::handle_closed`].
    fn refuse(&mut self, conn: ConnId, message: String) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(c.state, State::Closing { .. }) {
            return;
        }
        let last = serde_json::to_string(&ToTab::Refused {
            message: message.clone(),
        })
        .ok();
        let old = std::mem::replace(&mut c.state, State::Closing { last });
        c.queue.clear();
        c.queued_bytes = c.writing;
        c.full_since = None;
        if let State::Serving { name, .. } = old
            && self.names.get(&name) == Some(&conn)
        {
            self.names.remove(&name);
        }
        self.actions.push_back(Action::Close {
            conn,
            reason: message,
        });
        self.fail_requests_of(conn);
    }

    fn enqueue(&mut self, conn: ConnId, request: Option<u64>, frame: &ToTab) {
        if let Ok(text) = serde_json::to_string(frame) {
            self.push(conn, request, text);
        }
    }

    fn push(&mut self, conn: ConnId, request: Option<u64>, text: String) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let idle = c.queue.is_empty() && c.writing == 0;
        c.queued_bytes += text.len();
        c.queue.push_back(Queued { request, text });
        if idle {
            self.actions.push_back(Action::Wake { conn });
        }
    }

    fn unqueue(&mut self, conn: ConnId, request: u64) {
        if let Some(c) = self.conns.get_mut(&conn)
            && let Some(at) = c.queue.iter().position(|q| q.request == Some(request))
            && let Some(q) = c.queue.remove(at)
        {
            c.queued_bytes -= q.text.len();
        }
    }

    /// Expires what is due at `now`: hellos, registrations, queues that
    /// stayed full and requests. `registered(name, key)` says whether the
    /// registry lists `name` under `key` (asked once per tab, at its
    /// registration deadline, unless [`Relay::handle_list_changed`]
    /// confirmed it before).
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
        mut registered: impl FnMut(&PeerName, &PublicKey) -> bool,
    ) {
        let stall = self.config.request_timeout;
        let mut refusals = Vec::new();
        for (id, c) in &mut self.conns {
            match &mut c.state {
                State::AwaitingHello { deadline, .. } if *deadline <= now => {
                    refusals.push((*id, "no hello in time (--relay-hello-timeout)".to_owned()));
                    continue;
                }
                State::Serving {
                    name,
                    key,
                    register_by,
                } if register_by.is_some_and(|at| at <= now) => {
                    if registered(name, key) {
                        *register_by = None;
                    } else {
                        refusals.push((
                            *id,
                            format!("{name} was not registered in time (--relay-register-timeout)"),
                        ));
                        continue;
                    }
                }
                _ => {}
            }
            if c.full_since.is_some_and(|at| at + stall <= now) {
                refusals.push((
                    *id,
                    format!(
                        "the tab's queue stayed full for {stall:?}: it does not read its socket"
                    ),
                ));
            }
        }
        for (conn, message) in refusals {
            self.refuse(conn, message);
        }
        let expired: Vec<(u64, ConnId)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, p)| (*id, p.conn))
            .collect();
        for (id, conn) in expired {
            self.release(id);
            self.pending.remove(&id);
            self.unqueue(conn, id);
            self.actions.push_back(Action::Complete {
                id,
                result: Err(RelayError::Timeout(self.config.request_timeout)),
            });
        }
    }

    /// When [`Relay::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let stall = self.config.request_timeout;
        let conns = self.conns.values().flat_map(|c| {
            let state = match &c.state {
                State::AwaitingHello { deadline, .. } => Some(*deadline),
                State::Serving { register_by, .. } => *register_by,
                State::Closing { .. } => None,
            };
            state.into_iter().chain(c.full_since.map(|at| at + stall))
        });
        let requests = self.pending.values().map(|p| p.deadline);
        conns.chain(requests).min()
    }

    /// The next thing the shell must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
