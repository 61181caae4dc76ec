//! The one guard of every outbound call to a URL that came from the network:
//! genesis's probe and pushes, a peer's calls to other peers and its schema
//! downloads.
//!
//! A URI from the network could make a server call its cloud's metadata
//! service or an internal address. The guard:
//! - follows no redirect (a 3xx is an answer, never a second request);
//! - refuses a host that is, or resolves to, a denied address: an IP
//!   literal is checked before the request ([`Guard::check_literal`]); a
//!   name is resolved through [`DenyingResolver`], which drops denied
//!   addresses at connect time, so that a name that later resolves
//!   elsewhere (DNS rebinding) is still refused;
//! - reads at most `max_answer_bytes` of an answer ([`Outbound::read`]).
//!
//! The deny list ([`Guard::new`]): link-local and unspecified addresses, the
//! cloud metadata addresses, loopback when the server itself listens on a
//! non-loopback address, and `--deny-cidr`; `--allow-cidr` wins over all of it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use ipnet::IpNet;
use plexus_core::PeerUri;

/// The ranges denied by default: link-local (169.254.169.254 is in it),
/// unspecified, and the cloud metadata addresses outside link-local
/// (AWS's IPv6 `fd00:ec2::254`, Alibaba's `100.100.100.200`, Azure's
/// `168.63.129.16`).
pub const DEFAULT_DENIED: [&str; 7] = [
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
    "::/128",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "168.63.129.16/32",
];

/// Loopback, denied as well when the server listens on a non-loopback address.
pub const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// The default of `--max-answer-bytes`.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The flags of the outbound guard, shared by both servers.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutboundArgs {
    /// Never call (and, on genesis, refuse with 422 peer URIs that point at)
    /// an address in this range; repeatable or comma-separated. Always denied
    /// besides: link-local (169.254.0.0/16, fe80::/10), unspecified
    /// (0.0.0.0/8, ::/128), the cloud metadata addresses fd00:ec2::254,
    /// 100.100.100.200 and 168.63.129.16, and loopback when listening on a
    /// non-loopback address.
    #[arg(long = "deny-cidr", env = "PLEXUS_DENY_CIDR", value_delimiter = ',')]
    pub deny_cidr: Vec<IpNet>,

    /// Allow this range even if the deny list holds it (e.g. 127.0.0.0/8 for
    /// peers on the same host as a server listening on 0.0.0.0);
    /// repeatable or comma-separated.
    #[arg(long = "allow-cidr", env = "PLEXUS_ALLOW_CIDR", value_delimiter = ',')]
    pub allow_cidr: Vec<IpNet>,

    /// Answers of other peers (schemas, Network query results) larger than
    /// this many bytes are refused. [default: 8388608 (8 MiB)]
    #[arg(long, env = "PLEXUS_MAX_ANSWER_BYTES")]
    pub max_answer_bytes: Option<usize>,

    /// The trust roots of every outbound call.
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `--ca-file`: more trust roots for every outbound HTTPS call.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Trust the certificate authorities in this PEM file too, for every
    /// outbound HTTPS call (repeatable, or comma-separated); the system's
    /// roots stay trusted. Certificates are always verified.
    #[arg(long = "ca-file", env = "PLEXUS_CA_FILE", value_delimiter = ',')]
    pub ca_file: Vec<PathBuf>,
}

impl TrustArgs {
    /// The roots of the files, read now; an error names the file.
    pub fn load(&self) -> anyhow::Result<Trust> {
        let mut roots = Vec::new();
        for path in &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?;
            let found = Trust::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?;
            roots.extend(found.roots.iter().cloned());
        }
        Ok(Trust {
            roots: roots.into(),
        })
    }
}

/// The trust roots added to the system's for outbound calls (`--ca-file`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    roots: Arc<[reqwest::Certificate]>,
}

impl Trust {
    /// The certificates of a PEM bundle; an error if it holds none.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let roots = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| anyhow::anyhow!("not a PEM certificate bundle: {e}"))?;
        anyhow::ensure!(!roots.is_empty(), "no PEM certificate in it");
        Ok(Self {
            roots: roots.into(),
        })
    }

    /// How many roots it adds.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether it adds none.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

/// The one start of every HTTP client of Plexus (servers, dashboard, load
/// tools): the system's and the bundled roots, plus `trust`. Certificates
/// and host names are always verified; nothing here can turn that off.
pub fn client_builder(trust: &Trust) -> reqwest::ClientBuilder {
    trust
        .roots
        .iter()
        .fold(reqwest::Client::builder(), |builder, root| {
            builder.add_root_certificate(root.clone())
        })
}

/// Why an outbound call was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The host is, or resolves to, an address in a denied range.
    #[error("{uri} points at {addr}, in the denied range {net} (--deny-cidr, --allow-cidr)")]
    Denied {
        /// The URI given.
        uri: String,
        /// The offending address.
        addr: IpAddr,
        /// The range it falls in.
        net: IpNet,
    },
    /// The host name does not resolve (to an allowed address).
    #[error("{uri} is unreachable")]
    Unresolvable {
        /// The URI given.
        uri: String,
    },
    /// The answer is larger than the cap.
    #[error("the answer is larger than {max} bytes ({flag})")]
    TooLarge {
        /// The cap.
        max: usize,
        /// The flag that sets it.
        flag: &'static str,
    },
    /// The connection failed or broke off.
    #[error("{0}")]
    Transport(String),
}

/// The deny and allow lists of outbound calls.
#[derive(Debug, Clone)]
pub struct Guard {
    deny: Arc<[IpNet]>,
    allow: Arc<[IpNet]>,
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().filter_map(|net| net.parse().ok()).collect()
}

/// IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Guard {
    /// The guard of a server listening on `listen`: the default deny list,
    /// loopback too when `listen` is not a loopback address, `deny` added
    /// and `allow` exempted.
    pub fn new(listen: SocketAddr, deny: &[IpNet], allow: &[IpNet]) -> Self {
        let mut list = nets(&DEFAULT_DENIED);
        if !listen.ip().is_loopback() {
            list.extend(nets(&LOOPBACK));
        }
        list.extend(deny.iter().copied());
        Self {
            deny: list.into(),
            allow: allow.into(),
        }
    }

    /// The guard of `args` for a server listening on `listen`.
    pub fn from_args(listen: SocketAddr, args: &OutboundArgs) -> Self {
        Self::new(listen, &args.deny_cidr, &args.allow_cidr)
    }

    /// The denied range that holds `ip`, unless an allowed one does.
    pub fn denied_range(&self, ip: IpAddr) -> Option<IpNet> {
        let ip = unmapped(ip);
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        self.deny.iter().find(|net| net.contains(&ip)).copied()
    }

    fn denied(&self, uri: &str, addr: IpAddr) -> Result<(), OutboundError> {
        match self.denied_range(addr) {
            Some(net) => Err(OutboundError::Denied {
                uri: uri.to_owned(),
                addr,
                net,
            }),
            None => Ok(()),
        }
    }

    /// Refuses `uri` if its host is a denied IP literal (a name is checked
    /// at connect time by [`DenyingResolver`]). Costs no lookup.
    pub fn check_literal(&self, uri: &PeerUri) -> Result<(), OutboundError> {
        match uri.host().parse::<IpAddr>() {
            Ok(addr) => self.denied(uri.as_str(), addr),
            Err(_) => Ok(()),
        }
    }

    /// Refuses `uri` if its host is, or resolves to, a denied address: for
    /// a clear answer before any request (genesis's registration).
    pub async fn check_uri(&self, uri: &PeerUri) -> Result<(), OutboundError> {
        if let Ok(addr) = uri.host().parse::<IpAddr>() {
            return self.denied(uri.as_str(), addr);
        }
        let unresolvable = || OutboundError::Unresolvable {
            uri: uri.to_string(),
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((uri.host(), 0))
            .await
            .map_err(|_| unresolvable())?
            .collect();
        if addrs.is_empty() {
            return Err(unresolvable());
        }
        addrs
            .iter()
            .try_for_each(|a| self.denied(uri.as_str(), a.ip()))
    }
}

/// A DNS resolver for the HTTP client that never hands out a denied address.
#[derive(Debug, Clone)]
pub struct DenyingResolver {
    guard: Guard,
}

impl reqwest::dns::Resolve for DenyingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| guard.denied_range(a.ip()).is_none())
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no allowed address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of calls to network-given URLs, with its guard and cap.
#[derive(Debug, Clone)]
pub struct Outbound {
    guard: Guard,
    client: reqwest::Client,
    max_answer_bytes: usize,
}

impl Outbound {
    /// A client through `guard` (no redirects, the denying resolver) that
    /// trusts `trust` besides the system's roots and reads at most `max_answer_bytes` of an answer with [`Outbound::read`].
    pub fn new(
        guard: Guard,
        trust: &Trust,
        max_answer_bytes: usize,
        connect_timeout: Duration,
        user_agent: &str,
    ) -> reqwest::Result<Self> {
        let client = client_builder(trust)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(DenyingResolver {
                guard: guard.clone(),
            }))
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(user_agent)
            .build()?;
        Ok(Self {
            guard,
            client,
            max_answer_bytes,
        })
    }

    /// The client: check the URI with [`Guard::check_literal`] first.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The cap on an answer's bytes.
    pub fn max_answer_bytes(&self) -> usize {
        self.max_answer_bytes
    }

    /// The body of `response`, refused as soon as it passes the cap (see
    /// [`read_at_most`]).
    pub async fn read(&self, response: reqwest::Response) -> Result<Bytes, OutboundError> {
        read_at_most(response, self.max_answer_bytes, "--max-answer-bytes").await
    }
}

/// The body of `response`, refused as soon as it passes `max` bytes (a
/// `Content-Length` above it is refused before reading): the one capped
/// reader of every answer the servers read from the network. `flag` names
/// the setting of `max`, for the error.
pub async fn read_at_most(
    mut response: reqwest::Response,
    max: usize,
    flag: &'static str,
) -> Result<Bytes, OutboundError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(OutboundError::TooLarge { max, flag });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OutboundError::Transport(crate::error_chain(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(OutboundError::TooLarge { max, flag });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(addr: &str) -> SocketAddr {
        addr.parse().expect("addr")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn metadata_link_local_and_unspecified_are_denied_by_default() {
        let guard = Guard::new(listen("127.0.0.1:0"), &[], &[]);
        for denied in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
            "168.63.129.16",
            "fe80::1",
            "0.0.0.0",
            "::",
        ] {
            assert!(guard.denied_range(ip(denied)).is_some(), "{denied}");
        }
        // Listening on loopback: loopback peers are fine (a local network).
        for allowed in ["127.0.0.1", "::1", "10.1.2.3", "100.100.100.201"] {
            assert!(guard.denied_range(ip(allowed)).is_none(), "{allowed}");
        }
    }

    #[test]
    fn loopback_is_denied_when_listening_elsewhere_unless_allowed() {
        let public = Guard::new(listen("0.0.0.0:8111"), &[], &[]);
        assert!(public.denied_range(ip("127.0.0.1")).is_some());
        assert!(public.denied_range(ip("::1")).is_some());
        assert!(public.denied_range(ip("::ffff:127.0.0.1")).is_some());
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("net")];
        let deny: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let tuned = Guard::new(listen("0.0.0.0:8111"), &deny, &allow);
        assert!(tuned.denied_range(ip("127.0.0.1")).is_none());
        assert!(tuned.denied_range(ip("10.9.9.9")).is_some());
    }

    #[tokio::test]
    async fn literals_and_names_are_checked_before_any_request() {
        let guard = Guard::new(listen("192.0.2.1:80"), &[], &[]);
        let uri = |s: &str| PeerUri::new(s).expect("uri");
        assert!(matches!(
            guard.check_uri(&uri("http://169.254.169.254/latest")).await,
            Err(OutboundError::Denied { .. })
        ));
        assert!(matches!(
            guard.check_literal(&uri("http://[fd00:ec2::254]/")),
            Err(OutboundError::Denied { .. })
        ));
        assert!(matches!(
            guard.check_uri(&uri("http://localhost:80")).await,
            Err(OutboundError::Denied { .. })
        ));
        // A name is left to the resolver by the literal check.
        assert!(guard.check_literal(&uri("http://localhost:80")).is_ok());
        assert!(guard.check_uri(&uri("http://10.1.2.3:80")).await.is_ok());
    }
}
