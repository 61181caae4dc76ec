//! Validated names and addresses: a peer's name and its public URI.
//!
//! Both are checked once, when they enter the system, so that the rest of the
//! core can rely on them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

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
}

/// A peer's name: a DNS label that is also a GraphQL name.
///
/// It becomes a field of Network queries (`Network { Get { PeerB { .. } } }`),
/// so a hyphen, valid in DNS, is refused.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PeerName(String);

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
        Ok(Self(name))
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

impl<'de> Deserialize<'de> for PeerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PeerName::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An absolute `http` or `https` URI at which a peer is reachable.
///
/// Kept in the URI parser's normalised form, without a trailing slash, so
/// that paths such as `/p2p/ping` can be appended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PeerUri(String);

impl PeerUri {
    /// Validates `uri`.
    pub fn new(uri: impl Into<String>) -> Result<Self, NameError> {
        let uri = uri.into();
        let parsed = url::Url::parse(&uri).map_err(|e| NameError::Uri {
            uri: uri.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(NameError::Scheme(uri));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty()
        {
            return Err(NameError::Uri {
                uri,
                reason: "a peer URI has no query, fragment or user name".into(),
            });
        }
        // The parser's form, not the text given: it drops surrounding control
        // characters and whitespace, and lower-cases the scheme and host.
        Ok(Self(parsed.as_str().trim_end_matches('/').to_owned()))
    }

    /// The URI as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI of `path` (which starts with `/`) on this peer.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }

    /// The host part of the URI (a name, an IPv4 address, or an IPv6 address without brackets).
    pub fn host(&self) -> Option<url::Host<String>> {
        url::Url::parse(&self.0).ok()?.host().map(|h| h.to_owned())
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
        assert!(matches!(
            PeerUri::new("/relative"),
            Err(NameError::Uri { .. })
        ));
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<PeerName>("\"bad-name\"").is_err());
        assert!(serde_json::from_str::<PeerUri>("\"gopher://x\"").is_err());
        let name: PeerName = serde_json::from_str("\"PeerB\"").expect("valid");
        assert_eq!(name.as_str(), "PeerB");
    }
}
