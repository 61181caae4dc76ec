//! The JSON bodies of the genesis API and the peer's p2p API.
//!
//! Field names are exactly those of the original Weaviate genesis spec 0.1.0,
//! so that a client of the original works unchanged.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::{PeerName, PeerUri};
use crate::time::Timestamp;

/// Header carrying the join token on every call that needs it (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";
/// Header with which genesis tells the version of the peer list in a response or broadcast.
pub const PEERS_VERSION_HEADER: &str = "x-plexus-peers-version";
/// Header with which a server answers a request from a web page whose
/// origin may not write there (not one of its `--cors-origin`): the origin,
/// as the page sent it. A browser hides why a refused write failed; a page
/// reads this header on any answer to a read, which every origin may make.
pub const REFUSED_ORIGIN_HEADER: &str = "x-plexus-refused-origin";

/// The API path of registration.
pub const REGISTER_PATH: &str = "/peers/register";
/// The path of genesis's health (`GET`, open to every origin).
pub const HEALTH_PATH: &str = "/healthz";
/// The API path of the whole peer list.
pub const PEERS_PATH: &str = "/peers";
/// The API path of the watch stream (`GET`, server-sent events).
pub const WATCH_PATH: &str = "/peers/watch";
/// The API path of a peer's pushes from genesis.
pub const PUSH_PATH: &str = "/p2p/genesis";

/// The API path of the pings of peer `id` (`POST`).
pub fn ping_path(id: PeerId) -> String {
    with_ping_path(id, str::to_owned)
}

/// What comes before the id in [`ping_path`].
const PING_PATH_START: &str = "/peers/";
/// What comes after the id in [`ping_path`].
const PING_PATH_END: &str = "/ping";

/// The id's segment of a ping's path ([`ping_path`]), still to be parsed;
/// `None` when `path` is not a ping's.
pub fn ping_path_id(path: &str) -> Option<&str> {
    path.strip_prefix(PING_PATH_START)?
        .strip_suffix(PING_PATH_END)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Calls `f` with [`ping_path`] of `id`, written on the stack: a server
/// checks it on every signed ping.
pub fn with_ping_path<R>(id: PeerId, f: impl FnOnce(&str) -> R) -> R {
    const START: &[u8] = PING_PATH_START.as_bytes();
    const END: &[u8] = PING_PATH_END.as_bytes();
    let mut path = [0u8; START.len() + uuid::fmt::Hyphenated::LENGTH + END.len()];
    let (start, rest) = path.split_at_mut(START.len());
    let (uuid, end) = rest.split_at_mut(uuid::fmt::Hyphenated::LENGTH);
    start.copy_from_slice(START);
    // The id's text form (its `Display`): hyphenated, lower case.
    id.0.hyphenated().encode_lower(uuid);
    end.copy_from_slice(END);
    // Only ASCII was written.
    f(std::str::from_utf8(&path).unwrap_or_default())
}

/// The API path of the leave of peer `id` (`DELETE`).
pub fn leave_path(id: PeerId) -> String {
    format!("/peers/{id}")
}

/// A peer's id, given by genesis on registration. Ordered as its bytes
/// are, as one number: the registry's maps search by id on every ping, and
/// two integer compares cost less than a call to compare 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub Uuid);

impl Ord for PeerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_u128().cmp(&other.0.as_u128())
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PeerId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(PeerId)
    }
}

/// Deserializes `T` from a map (a JSON object) only. serde's derived
/// `Deserialize` of a struct also takes a sequence, so that `[]` would be a
/// ping with every field defaulted; a request body of the genesis API is an
/// object, and anything else does not fit (422).
fn object_only<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectOnly<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(ObjectOnly(std::marker::PhantomData))
}

/// Body of `POST /peers/register`: who wants to join, and where it listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct PeerUpdate {
    /// The name other peers use for it in Network queries.
    pub peer_name: PeerName,
    /// Where genesis and other peers reach it.
    pub peer_uri: PeerUri,
}

/// Body of `POST /peers/{peerId}/ping`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct PeerPing {
    /// The hash of the peer's current schema.
    #[serde(default)]
    pub schema_hash: String,
}

/// The bodies a server reads are JSON objects only ([`object_only`]).
macro_rules! object_bodies {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$t>::serialize(self, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Fields($t);
                impl<'de> Deserialize<'de> for Fields {
                    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                        <$t>::deserialize(d).map(Fields)
                    }
                }
                object_only::<D, Fields>(deserializer).map(|f| f.0)
            }
        }
    )*};
}

object_bodies!(PeerUpdate, PeerPing);

/// A schema hash as genesis lists it. Shared (`Arc<str>`): most peers of a
/// network have the same schema, and the registry keeps one copy of each
/// distinct hash instead of one per peer. On the wire, a plain string.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaHash(Arc<str>);

impl SchemaHash {
    /// The hash as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether another value shares this one's text (for interning).
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

impl Deref for SchemaHash {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SchemaHash {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SchemaHash {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl From<String> for SchemaHash {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl PartialEq<str> for SchemaHash {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for SchemaHash {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for SchemaHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SchemaHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SchemaHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

/// A registered peer as genesis lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its id.
    pub id: PeerId,
    /// Its name.
    #[serde(rename = "peerName")]
    pub peer_name: PeerName,
    /// Its URI.
    #[serde(rename = "peerUri")]
    pub peer_uri: PeerUri,
    /// When genesis last heard from it.
    pub last_contact_at: Timestamp,
    /// Hash of its schema, as sent with its last ping (empty before the first).
    /// Written `schema_hash`, like `last_contact_at`, as the original's `Peer`
    /// model says; `schemaHash` (what Plexus wrote before) is read too.
    #[serde(alias = "schemaHash", default)]
    pub schema_hash: SchemaHash,
}

impl Peer {
    /// The entry that describes this peer in a broadcast.
    pub fn to_entry(&self) -> PeerListEntry {
        PeerListEntry {
            id: self.id,
            name: self.peer_name.clone(),
            uri: self.peer_uri.clone(),
            schema_hash: self.schema_hash.clone(),
        }
    }
}

/// The hash of a contextionary: which algorithm, and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextionaryHash {
    /// E.g. `sha256`.
    pub algorithm: String,
    /// The digest, as text.
    pub value: String,
}

impl FromStr for ContextionaryHash {
    type Err = ContextionaryHashError;
    /// Parses the `ALG:VALUE` form used on command lines.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((algorithm, value)) if !algorithm.is_empty() && !value.is_empty() => Ok(Self {
                algorithm: algorithm.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(ContextionaryHashError(s.to_owned())),
        }
    }
}

impl fmt::Display for ContextionaryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.value)
    }
}

/// A contextionary hash that is not of the form `ALG:VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid contextionary hash {0:?}: expected ALGORITHM:VALUE, e.g. sha256:ab12...")]
pub struct ContextionaryHashError(pub String);

/// The network's contextionary, set on genesis by configuration.
///
/// Peers refuse to join a network whose contextionary differs from theirs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contextionary {
    /// Where it can be downloaded.
    pub url: String,
    /// Its hash.
    pub hash: ContextionaryHash,
}

/// Answer of `POST /peers/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRegistrationResponse {
    /// The peer as registered, with its new id.
    pub peer: Peer,
    /// The network's contextionary.
    pub contextionary: Contextionary,
}

/// One peer in the list genesis pushes with `PUT {peerUri}/p2p/genesis`
/// (the original's `PeerUpdate` of a `PeerUpdateList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerListEntry {
    /// Its id.
    pub id: PeerId,
    /// Its name.
    pub name: PeerName,
    /// Its URI.
    pub uri: PeerUri,
    /// Hash of its schema.
    #[serde(rename = "schemaHash", default)]
    pub schema_hash: SchemaHash,
}

/// The longest peer name, in characters (ASCII: bytes).
const MAX_NAME_BYTES: usize = 63;

/// The most bytes one [`PeerListEntry`] takes in the compact JSON genesis
/// pushes, with its URI and schema hash at the bounds of `limits`, plus
/// the comma that separates it from the next: a URI byte is at most two
/// bytes of JSON (`\\`, `\"`; a URI holds no control character), a hash
/// character at most six (`\u001f`), an id 36, a name 63.
pub fn max_entry_bytes(limits: &crate::names::Limits) -> usize {
    const FRAME: usize = r#"{"id":"","name":"","uri":"","schemaHash":""},"#.len();
    FRAME + 36 + MAX_NAME_BYTES + 2 * limits.max_uri_bytes + 6 * limits.max_schema_hash_chars
}

/// The most bytes of a pushed list of `peers` peers (a whole list, or a
/// delta whose upserts and removals together touch at most `peers` peers;
/// a removal is an id, shorter than an entry) when genesis bounds URIs and
/// hashes by `limits`: a peer's `--max-list-bytes` is derived from it.
pub fn max_list_bytes(peers: usize, limits: &crate::names::Limits) -> usize {
    // `{"from":N,"to":N,"upserts":[...],"removed":[...]}` around the entries.
    const DELTA_FRAME: usize = 80;
    peers
        .saturating_mul(max_entry_bytes(limits))
        .saturating_add(DELTA_FRAME)
}

/// Header a registering peer sends (`x-plexus-deltas: 1`) to be told of
/// changes as a [`PeerDelta`] rather than the whole list.
pub const DELTAS_HEADER: &str = "x-plexus-deltas";

/// Whether a [`DELTAS_HEADER`] of `value` asks for deltas: `1` or `true`.
pub fn asks_deltas(value: Option<&[u8]>) -> bool {
    matches!(value, Some(b"1" | b"true"))
}

/// The changes of the peer list from version `from` to version `to`: what a
/// peer that asked for deltas gets in `PUT /p2p/genesis`, instead of the
/// whole list, so that a change costs genesis O(N) bytes, not O(N²).
///
/// A peer whose list is not at `from` has missed a round: it fetches the
/// whole list with `GET /peers` instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDelta {
    /// The version the changes apply to.
    pub from: u64,
    /// The version after them.
    pub to: u64,
    /// Peers added or changed.
    #[serde(default)]
    pub upserts: Vec<PeerListEntry>,
    /// Ids of peers that left or were evicted.
    #[serde(default)]
    pub removed: Vec<PeerId>,
}

/// The body of `PUT /p2p/genesis`: the original whole list, or a delta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GenesisPush {
    /// The whole list (the original's `PeerUpdateList`).
    Full(Vec<PeerListEntry>),
    /// Only the changes.
    Delta(PeerDelta),
}

/// What changed in the peer list, as the watch stream (`GET /peers/watch`) tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A peer registered (or registered again under the same name).
    Joined,
    /// A peer deregistered.
    Left,
    /// A peer was evicted for silence.
    Evicted,
    /// A peer's schema hash changed.
    Updated,
}

/// One event of the watch stream: a change and the list version it produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerChange {
    /// The list version after the change.
    pub version: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The peer it happened to, as it was at that moment.
    pub peer: Peer,
}

/// The first event of the watch stream (`snapshot`): the whole list at `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSnapshot {
    /// The list version.
    pub version: u64,
    /// Every registered peer.
    pub peers: Vec<Peer>,
}

/// The JSON body of every 4xx and 5xx answer: `{"error": {"message": ...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorMessage,
}

/// The message of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// What went wrong, for a person.
    pub message: String,
}

impl ErrorBody {
    /// An error body with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            error: ErrorMessage {
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Ids are ordered as their bytes (a list sorted by id, as genesis
    /// keeps it, is the same as before the order was made numeric).
    #[test]
    fn ids_are_ordered_as_their_bytes() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut ids: Vec<PeerId> = (0..200)
            .map(|i| {
                let mut bytes = [0u8; 16];
                rng.fill(&mut bytes);
                // Some share a prefix, to reach the later bytes.
                if i % 3 == 0 {
                    bytes[..8].fill(7);
                }
                PeerId(Uuid::from_bytes(bytes))
            })
            .collect();
        let mut by_bytes = ids.clone();
        by_bytes.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        ids.sort();
        assert_eq!(ids, by_bytes);
    }

    #[test]
    fn a_list_of_the_longest_entries_fits_max_list_bytes() {
        let limits = crate::names::Limits::default();
        let uri = format!("http://h/{}", "\"".repeat(limits.max_uri_bytes - 9));
        let entry = PeerListEntry {
            id: PeerId(Uuid::from_u128(u128::MAX)),
            name: PeerName::new("a".repeat(63)).expect("name"),
            uri: PeerUri::new(uri).expect("uri"),
            schema_hash: "\u{1}".repeat(limits.max_schema_hash_chars).into(),
        };
        assert_eq!(entry.uri.as_str().len(), limits.max_uri_bytes);
        let one = serde_json::to_vec(&entry).expect("json").len();
        assert!(one < max_entry_bytes(&limits), "{one}");
        // The bound is the worst case, not a guess: within the comma and
        // the unescaped `http://h/` of it.
        assert!(one + 16 > max_entry_bytes(&limits), "{one}");
        let list = GenesisPush::Full(vec![entry.clone(); 100]);
        let delta = GenesisPush::Delta(PeerDelta {
            from: u64::MAX - 1,
            to: u64::MAX,
            upserts: vec![entry; 50],
            removed: vec![PeerId(Uuid::from_u128(1)); 50],
        });
        for push in [list, delta] {
            let len = serde_json::to_vec(&push).expect("json").len();
            assert!(len <= max_list_bytes(100, &limits), "{len}");
        }
    }

    #[test]
    fn the_ping_path_holds_the_id_as_its_text_form() {
        for bytes in [[0u8; 16], [0xff; 16], *b"0123456789abcdef"] {
            let id = PeerId(uuid::Builder::from_random_bytes(bytes).into_uuid());
            assert_eq!(ping_path(id), format!("/peers/{id}/ping"));
        }
        let nil = PeerId(uuid::Uuid::nil());
        assert_eq!(
            ping_path(nil),
            "/peers/00000000-0000-0000-0000-000000000000/ping"
        );
    }

    #[test]
    fn a_ping_path_gives_back_its_id_and_no_other_path_does() {
        let id = PeerId(uuid::Builder::from_random_bytes(*b"0123456789abcdef").into_uuid());
        assert_eq!(ping_path_id(&ping_path(id)), Some(id.to_string().as_str()));
        assert_eq!(ping_path_id("/peers/not-a-uuid/ping"), Some("not-a-uuid"));
        for other in [
            "/peers//ping",
            "/peers/a/b/ping",
            "/peers/a/ping/",
            "/peers/a",
            "/peers/register",
            "/peer/a/ping",
            "/peers/ping",
        ] {
            assert_eq!(ping_path_id(other), None, "{other}");
        }
    }

    #[test]
    fn request_bodies_are_objects_only() {
        for text in ["[]", r#"["h1"]"#, r#""h1""#, "1", "null"] {
            let error = serde_json::from_str::<PeerPing>(text).expect_err(text);
            assert_eq!(
                error.classify(),
                serde_json::error::Category::Data,
                "{text}"
            );
        }
        let error = serde_json::from_str::<PeerUpdate>(r#"["PeerA", "http://127.0.0.1:1"]"#)
            .expect_err("a sequence");
        assert_eq!(error.classify(), serde_json::error::Category::Data);
        assert_eq!(
            serde_json::from_str::<PeerPing>("{}").expect("an object"),
            PeerPing::default()
        );
        assert_eq!(
            serde_json::from_str::<PeerPing>(r#"{"schemaHash": "h1", "other": 1}"#)
                .expect("an object")
                .schema_hash,
            "h1"
        );
        let update: PeerUpdate =
            serde_json::from_str(r#"{"peerName": "PeerA", "peerUri": "http://127.0.0.1:1"}"#)
                .expect("an object");
        assert_eq!(
            serde_json::to_value(&update).expect("serialise"),
            json!({"peerName": "PeerA", "peerUri": "http://127.0.0.1:1"})
        );
    }

    #[test]
    fn field_names_match_the_original_genesis_spec() {
        let peer = Peer {
            id: PeerId(Uuid::nil()),
            peer_name: PeerName::new("WeaviateA").expect("valid"),
            peer_uri: PeerUri::new("http://127.0.0.1:8081").expect("valid"),
            last_contact_at: Timestamp(1_700_000_000_000),
            schema_hash: "abc".into(),
        };
        assert_eq!(
            serde_json::to_value(&peer).expect("serialise"),
            json!({"id": Uuid::nil(), "peerName": "WeaviateA", "peerUri": "http://127.0.0.1:8081",
                   "last_contact_at": 1_700_000_000_000u64, "schema_hash": "abc"})
        );
        // Both spellings are read: the original's and Plexus's older one.
        for field in ["schema_hash", "schemaHash"] {
            let mut json = serde_json::to_value(&peer).expect("serialise");
            let object = json.as_object_mut().expect("object");
            object.remove("schema_hash");
            object.insert(field.into(), json!("abc"));
            let read: Peer = serde_json::from_value(json).expect(field);
            assert_eq!(read, peer, "{field}");
        }
        assert_eq!(
            serde_json::to_value(peer.to_entry()).expect("serialise"),
            json!({"id": Uuid::nil(), "name": "WeaviateA", "uri": "http://127.0.0.1:8081", "schemaHash": "abc"})
        );
        let update: PeerUpdate =
            serde_json::from_value(json!({"peerName": "B", "peerUri": "http://h:1"}))
                .expect("parse");
        assert_eq!(update.peer_name.as_str(), "B");
        let ping: PeerPing = serde_json::from_value(json!({"schemaHash": "h1"})).expect("parse");
        assert_eq!(ping.schema_hash, "h1");
    }

    #[test]
    fn invalid_bodies_are_errors_not_panics() {
        assert!(
            serde_json::from_value::<PeerUpdate>(
                json!({"peerName": "bad-name", "peerUri": "http://h"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<PeerUpdate>(json!({"peerName": "ok", "peerUri": "ftp://h"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<PeerUpdate>(json!({"peerName": 3, "peerUri": "http://h"}))
                .is_err()
        );
        assert!("not-a-uuid".parse::<PeerId>().is_err());
    }

    #[test]
    fn contextionary_hash_parses_alg_colon_value() {
        let hash: ContextionaryHash = "sha256:abc".parse().expect("valid");
        assert_eq!(
            (hash.algorithm.as_str(), hash.value.as_str()),
            ("sha256", "abc")
        );
        assert_eq!(hash.to_string(), "sha256:abc");
        assert!("sha256".parse::<ContextionaryHash>().is_err());
        assert!(":abc".parse::<ContextionaryHash>().is_err());
    }
}
