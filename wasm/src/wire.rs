//! The genesis wire types as the client reads them.
//!
//! Field for field these are `plexus_core::wire::{Peer, PeerChange}` (a
//! native test checks that both read and write the same JSON), except that a
//! peer URI is checked here by [`BaseUrl`] instead of `plexus_core::PeerUri`:
//! that one parses with the `url` crate, whose Unicode (IDNA) tables would
//! add some 50 KiB gzipped to the `.wasm`. Genesis checked every URI with
//! `PeerUri` when the peer registered.

use std::fmt;

use plexus_core::wire::{ChangeKind, PeerId};
use plexus_core::{PeerName, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};

/// An absolute `http` or `https` URL without a trailing slash: a genesis
/// server's or a peer's base URL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks `url`: `http://` or `https://`, a host, no spaces or control characters.
    pub fn new(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|scheme| lower.strip_prefix(scheme))
            .ok_or_else(|| format!("{url:?} is not an http or https URL"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("{url:?} has no host"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{url:?} holds a space or a control character"));
        }
        Ok(Self(url.trim_end_matches('/').to_owned()))
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of `path` (which starts with `/`) under this one.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BaseUrl::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A registered peer, as `GET /peers` lists it (`plexus_core::wire::Peer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its id.
    pub id: PeerId,
    /// Its name.
    #[serde(rename = "peerName")]
    pub peer_name: PeerName,
    /// Its URI.
    #[serde(rename = "peerUri")]
    pub peer_uri: BaseUrl,
    /// When genesis last heard from it.
    pub last_contact_at: Timestamp,
    /// Hash of its schema (empty before its first ping).
    #[serde(rename = "schemaHash", default)]
    pub schema_hash: String,
}

/// One change of the watch stream (`plexus_core::wire::PeerChange`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerChange {
    /// The list version after the change.
    pub version: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The peer it happened to.
    pub peer: Peer,
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base_urls_are_http_with_a_host_and_no_trailing_slash() {
        for (url, expected) in [
            ("http://127.0.0.1:8111/", "http://127.0.0.1:8111"),
            ("HTTPS://example.org/base//", "HTTPS://example.org/base"),
            (" http://[::1]:80 ", "http://[::1]:80"),
            ("http://user@h", "http://user@h"),
        ] {
            assert_eq!(
                BaseUrl::new(url).map(|u| u.0),
                Ok(expected.to_owned()),
                "{url}"
            );
        }
        for url in [
            "",
            "ftp://h",
            "http://",
            "http:///path",
            "http://:80",
            "h:80",
            "http://a b",
            "http://h\u{7}x",
        ] {
            assert!(BaseUrl::new(url).is_err(), "{url:?}");
        }
        assert_eq!(
            BaseUrl::new("http://h:1").expect("url").join("/peers"),
            "http://h:1/peers"
        );
    }

    #[test]
    fn the_same_json_as_the_core_wire_types() {
        let peer = json!({"id": "6f1c0e6e-4a57-4a43-9f0e-3c1a2b4c5d6e", "peerName": "PeerA",
            "peerUri": "http://127.0.0.1:8081", "last_contact_at": 1_700_000_000_000u64, "schemaHash": "abc"});
        let change = json!({"version": 7, "kind": "evicted", "peer": peer});
        let core: plexus_core::wire::PeerChange =
            serde_json::from_value(change.clone()).expect("core reads it");
        let ours: PeerChange = serde_json::from_value(change.clone()).expect("we read it");
        assert_eq!(serde_json::to_value(&core).expect("json"), change);
        assert_eq!(serde_json::to_value(&ours).expect("json"), change);
        let without_hash = json!({"id": "6f1c0e6e-4a57-4a43-9f0e-3c1a2b4c5d6e", "peerName": "B",
            "peerUri": "https://h", "last_contact_at": 1});
        let core: plexus_core::wire::Peer =
            serde_json::from_value(without_hash.clone()).expect("core");
        let ours: Peer = serde_json::from_value(without_hash).expect("ours");
        assert_eq!(
            serde_json::to_value(core).expect("json"),
            serde_json::to_value(ours).expect("json")
        );
        for bad in [
            json!({"id": "x", "peerName": "B", "peerUri": "https://h", "last_contact_at": 1}),
            json!({"id": "6f1c0e6e-4a57-4a43-9f0e-3c1a2b4c5d6e", "peerName": "bad-name", "peerUri": "https://h", "last_contact_at": 1}),
            json!({"id": "6f1c0e6e-4a57-4a43-9f0e-3c1a2b4c5d6e", "peerName": "B", "peerUri": "ftp://h", "last_contact_at": 1}),
        ] {
            assert!(
                serde_json::from_value::<plexus_core::wire::Peer>(bad.clone()).is_err(),
                "core refuses {bad}"
            );
            assert!(
                serde_json::from_value::<Peer>(bad.clone()).is_err(),
                "we refuse {bad}"
            );
        }
    }
}
