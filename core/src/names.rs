//! Validated names and addresses: a peer's name and its public URI.
//!
//! Both are checked once, when they enter the system, so that the rest of the
//! core can rely on them.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a peer name or URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty or longer than 63 characters.
    #[error("peer name must be 1 to 63 characters long, got {0}")]
    Length(usize),
    /// The name does not start with an ASCII letter or has other characters than letters and digits.
    #[error("peer name {0:?} must start with a letter and contain only ASCII letters and digits")]
    Characters(String),
    /// The URI does not parse.
    #[error("peer URI {uri:?} is not an absolute URI: {reason}")]
    Uri {
        /// The text given.
        uri: String,
        /// What the URI parser said.
        reason: String,
    },
    /// The URI's scheme is not http or https, or it has no host.
    #[error("peer URI {0:?} must be an absolute http or https URI with a host")]
    Scheme(String),
    /// The URI is `http` where only `https` is taken.
    #[error("peer URI {0:?} must be https (--require-https)")]
    NotHttps(String),
    /// A peer URI or a schema hash is longer than its bound.
    #[error("{what} is {len} {unit} long, more than the bound of {max} ({flag})")]
    TooLong {
        /// What was too long: `peerUri` or `schemaHash`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound it exceeds.
        max: usize,
        /// `bytes` or `characters`.
        unit: &'static str,
        /// The flag that sets the bound.
        flag: &'static str,
    },
}

/// The default bound of a peer URI, in bytes (`--max-uri-bytes`).
pub const DEFAULT_MAX_URI_BYTES: usize = 2048;
/// The default bound of a schema hash, in characters (`--max-schema-hash-chars`).
pub const DEFAULT_MAX_SCHEMA_HASH_CHARS: usize = 128;

/// The bounds on what a peer may make genesis keep and push to every other
/// peer: each byte of a URI or a schema hash is sent once per peer per
/// change, so an unbounded one amplifies an attacker's bytes N times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest peer URI, in bytes.
    pub max_uri_bytes: usize,
    /// The longest schema hash, in characters.
    pub max_schema_hash_chars: usize,
    /// Whether only `https` peer URIs are taken (`--require-https`).
    pub require_https: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_schema_hash_chars: DEFAULT_MAX_SCHEMA_HASH_CHARS,
            require_https: false,
        }
    }
}

impl Limits {
    /// Refuses a URI longer than [`Limits::max_uri_bytes`], or one that is
    /// not `https` under [`Limits::require_https`].
    pub fn check_uri(&self, uri: &PeerUri) -> Result<(), NameError> {
        if self.require_https && !uri.is_https() {
            return Err(NameError::NotHttps(uri.to_string()));
        }
        let len = uri.as_str().len();
        if len > self.max_uri_bytes {
            return Err(NameError::TooLong {
                what: "peerUri",
                len,
                max: self.max_uri_bytes,
                unit: "bytes",
                flag: "--max-uri-bytes",
            });
        }
        Ok(())
    }

    /// Refuses a schema hash longer than [`Limits::max_schema_hash_chars`].
    pub fn check_schema_hash(&self, hash: &str) -> Result<(), NameError> {
        // Counting stops past the bound: a huge hash costs no full scan.
        let len = hash.chars().take(self.max_schema_hash_chars + 1).count();
        if len > self.max_schema_hash_chars {
            return Err(NameError::TooLong {
                what: "schemaHash",
                len: hash.chars().count(),
                max: self.max_schema_hash_chars,
                unit: "characters",
                flag: "--max-schema-hash-chars",
            });
        }
        Ok(())
    }
}

/// A peer's name: a DNS label that is also a GraphQL name.
///
/// It becomes a field of Network queries (`Network { Get { PeerB { .. } } }`),
/// so a hyphen, valid in DNS, is refused. Shared (`Arc<str>`): the registry
/// keeps it twice (in the peer and in its by-name index) for one allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerName(Arc<str>);

impl PeerName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let len = name.chars().count();
        if len == 0 || len > 63 {
            return Err(NameError::Length(len));
        }
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric()) {
            return Err(NameError::Characters(name));
        }
        Ok(Self(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PeerName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PeerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PeerName::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An absolute `http` or `https` URI at which a peer is reachable.
///
/// Kept in a normalised form (lower-case scheme and host, no trailing slash)
/// so that paths such as `/p2p/ping` can be appended. Parsed with the `http`
/// crate rather than `url`, whose Unicode tables would weigh on the browser
/// client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PeerUri(Box<str>);

impl PeerUri {
    /// Validates `uri`.
    pub fn new(uri: impl Into<String>) -> Result<Self, NameError> {
        let uri = uri.into();
        let invalid = |reason: &str| NameError::Uri {
            uri: uri.clone(),
            reason: reason.to_owned(),
        };
        let lower = uri.get(..8).unwrap_or(&uri).to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(NameError::Scheme(uri));
        }
        let parsed: http::Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let (Some(scheme), Some(authority)) = (parsed.scheme_str(), parsed.authority()) else {
            return Err(invalid("not an absolute URI"));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") || authority.host().is_empty() {
            return Err(NameError::Scheme(uri));
        }
        if parsed.query().is_some() || authority.as_str().contains('@') || uri.contains('#') {
            return Err(invalid("a peer URI has no query, fragment or user name"));
        }
        let authority = authority.as_str().to_ascii_lowercase();
        let path = parsed.path().trim_end_matches('/');
        Ok(Self(format!("{scheme}://{authority}{path}").into()))
    }

    /// The URI as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI of `path` (which starts with `/`) on this peer.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }

    /// Whether the scheme is `https` (kept in lower case).
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// The host: a name, an IPv4 address, or an IPv6 address without its
    /// brackets (so that `host().parse::<IpAddr>()` tells addresses apart).
    pub fn host(&self) -> &str {
        let authority = self.0.split_once("://").map_or("", |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or("");
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host),
        }
    }
}

impl fmt::Display for PeerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PeerUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PeerUri::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_are_dns_labels_and_graphql_names() {
        for ok in ["WeaviateA", "b", "peer2", &"a".repeat(63)] {
            assert!(PeerName::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(PeerName::new(""), Err(NameError::Length(0)));
        assert_eq!(PeerName::new("a".repeat(64)), Err(NameError::Length(64)));
        for bad in ["peer-b", "2peer", "_x", "pé", "a b", "a.b"] {
            assert!(
                matches!(PeerName::new(bad), Err(NameError::Characters(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn peer_uris_are_absolute_http() {
        let uri = PeerUri::new("http://127.0.0.1:8081/").expect("valid");
        assert_eq!(uri.as_str(), "http://127.0.0.1:8081");
        assert_eq!(uri.join("/p2p/ping"), "http://127.0.0.1:8081/p2p/ping");
        assert!(PeerUri::new("https://peer.example:443").is_ok());
        assert!(matches!(PeerUri::new("ftp://x"), Err(NameError::Scheme(_))));
        assert!(matches!(
            PeerUri::new("file:///etc/passwd"),
            Err(NameError::Scheme(_))
        ));
        assert!(PeerUri::new("/relative").is_err());
        assert!(PeerUri::new("http://").is_err());
        let odd = PeerUri::new("HTTP://Example.COM:80/base/").expect("valid");
        assert_eq!(odd.as_str(), "http://example.com:80/base");
        assert_eq!(odd.host(), "example.com");
        assert_eq!(
            PeerUri::new("http://[::1]:8080").expect("valid").host(),
            "::1"
        );
        assert_eq!(
            PeerUri::new("http://10.0.0.1").expect("valid").host(),
            "10.0.0.1"
        );
        // Found by the fuzzer: control characters around a URI.
        assert!(PeerUri::new("\u{c}http://h:1").is_err());
        for bad in [
            "http://h/?x=1",
            "http://h/#top",
            "http://user:pw@h/",
            "http://h/a b",
        ] {
            assert!(
                matches!(PeerUri::new(bad), Err(NameError::Uri { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_bound_uris_in_bytes_and_hashes_in_characters() {
        let limits = Limits::default();
        let at_bound = format!("http://h/{}", "a".repeat(DEFAULT_MAX_URI_BYTES - 9));
        let uri = PeerUri::new(at_bound).expect("valid");
        assert_eq!(uri.as_str().len(), DEFAULT_MAX_URI_BYTES);
        assert_eq!(limits.check_uri(&uri), Ok(()));
        let over = PeerUri::new(format!("{uri}b")).expect("valid");
        assert_eq!(
            limits.check_uri(&over),
            Err(NameError::TooLong {
                what: "peerUri",
                len: DEFAULT_MAX_URI_BYTES + 1,
                max: DEFAULT_MAX_URI_BYTES,
                unit: "bytes",
                flag: "--max-uri-bytes",
            })
        );
        // 128 two-byte characters are 128 characters, not 256.
        assert_eq!(limits.check_schema_hash(&"é".repeat(128)), Ok(()));
        assert_eq!(limits.check_schema_hash(""), Ok(()));
        let refused = limits.check_schema_hash(&"h".repeat(64 * 1024));
        assert!(
            matches!(
                refused,
                Err(NameError::TooLong {
                    what: "schemaHash",
                    len: 65536,
                    max: 128,
                    ..
                })
            ),
            "{refused:?}"
        );
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("--max-schema-hash-chars"), "{message}");
        let tight = Limits {
            max_uri_bytes: 10,
            max_schema_hash_chars: 2,
            require_https: false,
        };
        assert!(
            tight
                .check_uri(&PeerUri::new("http://h:1").expect("valid"))
                .is_ok()
        );
        assert!(
            tight
                .check_uri(&PeerUri::new("http://h:12").expect("valid"))
                .is_err()
        );
        assert!(tight.check_schema_hash("abc").is_err());
        let https_only = Limits {
            require_https: true,
            ..Limits::default()
        };
        assert_eq!(
            https_only.check_uri(&PeerUri::new("HTTP://h:1").expect("valid")),
            Err(NameError::NotHttps("http://h:1".into()))
        );
        assert!(
            https_only
                .check_uri(&PeerUri::new("HTTPS://h:1").expect("valid"))
                .is_ok()
        );
        assert!(
            Limits::default()
                .check_uri(&PeerUri::new("http://h:1").expect("valid"))
                .is_ok()
        );
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<PeerName>("\"bad-name\"").is_err());
        assert!(serde_json::from_str::<PeerUri>("\"gopher://x\"").is_err());
        let name: PeerName = serde_json::from_str("\"PeerB\"").expect("valid");
        assert_eq!(name.as_str(), "PeerB");
    }
}
