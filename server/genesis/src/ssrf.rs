//! Refusing peer URIs that point where genesis must not send requests.
//!
//! A registering peer names a URI and genesis then sends requests to it (the
//! probe, and every broadcast): without a check, anyone could make genesis
//! call its cloud's metadata service or an internal address. The host is
//! checked before any request is made: an IP literal directly, a name by
//! resolving it and checking every address. The HTTP client also resolves
//! through [`DenyingResolver`], which drops denied addresses at connect
//! time, so that a name that later resolves elsewhere (DNS rebinding) is
//! still refused; and it follows no redirects.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use plexus_core::PeerUri;

/// Why a peer URI is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriRefusal {
    /// The host is, or resolves to, an address in a denied range (answered 422).
    #[error("peer URI {uri} points at {addr}, in the denied range {net}")]
    Denied {
        /// The URI given.
        uri: String,
        /// The offending address.
        addr: IpAddr,
        /// The range it falls in.
        net: IpNet,
    },
    /// The host name does not resolve (answered 400: genesis cannot reach it).
    #[error("genesis cannot resolve the host of {uri}: {reason}")]
    Unresolvable {
        /// The URI given.
        uri: String,
        /// What the resolver said.
        reason: String,
    },
}

/// The denied range that holds `ip`, if any (IPv4-mapped IPv6 addresses are
/// checked as the IPv4 address they carry).
pub fn denied_range(ip: IpAddr, deny: &[IpNet]) -> Option<IpNet> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    deny.iter().find(|net| net.contains(&ip)).copied()
}

/// Checks the host of `uri` against `deny`, resolving it if it is a name.
pub async fn check_uri(uri: &PeerUri, deny: &[IpNet]) -> Result<(), UriRefusal> {
    let denied = |addr: IpAddr| {
        denied_range(addr, deny).map(|net| UriRefusal::Denied {
            uri: uri.to_string(),
            addr,
            net,
        })
    };
    let unresolvable = |reason: String| UriRefusal::Unresolvable {
        uri: uri.to_string(),
        reason,
    };
    if let Ok(addr) = uri.host().parse::<IpAddr>() {
        return denied(addr).map_or(Ok(()), Err);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((uri.host(), 0))
        .await
        .map_err(|e| unresolvable(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(unresolvable("no address".into()));
    }
    addrs
        .iter()
        .find_map(|a| denied(a.ip()))
        .map_or(Ok(()), Err)
}

/// A DNS resolver for the HTTP client that never hands out a denied address.
#[derive(Debug, Clone)]
pub struct DenyingResolver {
    deny: Arc<[IpNet]>,
}

impl DenyingResolver {
    /// A resolver refusing `deny`.
    pub fn new(deny: &[IpNet]) -> Self {
        Self { deny: deny.into() }
    }
}

impl reqwest::dns::Resolve for DenyingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let deny = Arc::clone(&self.deny);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| denied_range(a.ip(), &deny).is_none())
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no allowed address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn mapped_ipv6_is_checked_as_ipv4() {
        let deny = nets(&["169.254.0.0/16", "fe80::/10"]);
        let mapped: IpAddr = "::ffff:169.254.169.254".parse().expect("ip");
        assert!(denied_range(mapped, &deny).is_some());
        assert!(denied_range("fe80::1".parse().expect("ip"), &deny).is_some());
        assert!(denied_range("127.0.0.1".parse().expect("ip"), &deny).is_none());
    }

    #[tokio::test]
    async fn literals_and_names_are_checked_before_any_request() {
        let deny = nets(&["169.254.0.0/16", "127.0.0.0/8", "::1/128"]);
        let uri = |s: &str| PeerUri::new(s).expect("uri");
        assert!(matches!(
            check_uri(&uri("http://169.254.169.254/latest"), &deny).await,
            Err(UriRefusal::Denied { .. })
        ));
        assert!(matches!(
            check_uri(&uri("http://[::1]:80"), &deny).await,
            Err(UriRefusal::Denied { .. })
        ));
        assert!(matches!(
            check_uri(&uri("http://localhost:80"), &deny).await,
            Err(UriRefusal::Denied { .. })
        ));
        assert!(check_uri(&uri("http://10.1.2.3:80"), &deny).await.is_ok());
    }
}
