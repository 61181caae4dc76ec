//! The command line of `plexus-genesis` and what it resolves to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use plexus_core::Limits;
use plexus_core::auth::{Authority, Identity};
use plexus_core::names::{DEFAULT_MAX_SCHEMA_HASH_CHARS, DEFAULT_MAX_URI_BYTES};
use plexus_core::registry::RegistryConfig;
use plexus_core::time::parse_duration;
use plexus_core::wire::{Contextionary, ContextionaryHash};
use plexus_server::ConnectionArgs;
use plexus_server::outbound::{Guard, OutboundArgs, Trust};
use plexus_server::policy::PolicyArgs;
use plexus_server::tls::TlsArgs;

/// The default contextionary URL: a real network sets its own.
pub const DEFAULT_CONTEXTIONARY_URL: &str =
    "https://contextionary.plexus.invalid/en/contextionary.idx";
/// The default of `--watch-buffer`: changes a watcher may fall behind.
pub const DEFAULT_WATCH_BUFFER: usize = 1024;

/// The genesis server of a Plexus network.
///
/// Peers register with it, ping it, and are told of every change of the
/// peer list by `PUT {peerUri}/p2p/genesis`. Every flag also reads the
/// environment variable shown.
///
/// Without --state the peer list lives in memory only: after a restart,
/// each peer gets 404 on its next ping and registers again (with a new id).
#[derive(Parser, Debug, Clone)]
#[command(name = "plexus-genesis", version, about, long_about)]
pub struct Args {
    /// Address to listen on (port 0: the OS chooses; the chosen address is
    /// printed on stdout as `listening on http://HOST:PORT`, or `https`
    /// with --tls-cert).
    #[arg(long, env = "PLEXUS_LISTEN", default_value = "127.0.0.1:8111")]
    pub listen: SocketAddr,

    /// The network's contextionary file (docs/peer.md): genesis serves it
    /// at GET /contextionary and names that URL and its SHA-256 in every
    /// registration answer [default: the file embedded in the binary,
    /// unless --contextionary-hash alone names another].
    #[arg(long, env = "PLEXUS_CONTEXTIONARY")]
    pub contextionary: Option<PathBuf>,

    /// URL of the network's contextionary, handed to every registering peer
    /// [default: http:// + the listen address + /contextionary when genesis
    /// serves the file; set it when peers reach genesis by another address].
    #[arg(long, env = "PLEXUS_CONTEXTIONARY_URL")]
    pub contextionary_url: Option<String>,

    /// Hash of the network's contextionary, as ALGORITHM:VALUE (peers with
    /// another contextionary refuse to join). With --contextionary, it must
    /// be the file's; alone, genesis names it and serves no file.
    #[arg(long, env = "PLEXUS_CONTEXTIONARY_HASH")]
    pub contextionary_hash: Option<ContextionaryHash>,

    /// A larger --contextionary file is refused.
    #[arg(long, env = "PLEXUS_CONTEXTIONARY_MAX_BYTES", default_value_t = plexus_server::contextionary::DEFAULT_MAX_BYTES)]
    pub contextionary_max_bytes: u64,

    /// A peer not heard from (register or ping) for this long is evicted.
    #[arg(long, env = "PLEXUS_PEER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub peer_timeout: Duration,

    /// When genesis has heard from no peer at all for half a peer timeout
    /// (its own network is probably down), evictions are held for at most
    /// this long, or until any peer is heard again. Default: the peer timeout.
    #[arg(long, env = "PLEXUS_HOLD_LIMIT", value_parser = parse_duration)]
    pub hold_limit: Option<Duration>,

    /// Changes within this window after a first one are pushed to peers in
    /// one broadcast round.
    #[arg(long, env = "PLEXUS_BROADCAST_DELAY", default_value = "10ms", value_parser = parse_duration)]
    pub broadcast_delay: Duration,

    /// While a broadcast round is being sent, the next one waits for it at
    /// most this long: a burst of changes then goes out in few rounds.
    #[arg(long, env = "PLEXUS_ROUND_WAIT", default_value = "250ms", value_parser = parse_duration)]
    pub round_wait: Duration,

    /// Timeout of each `PUT {peerUri}/p2p/genesis`; a slow peer never delays
    /// the others.
    #[arg(long, env = "PLEXUS_BROADCAST_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub broadcast_timeout: Duration,

    /// How many broadcasts are in flight at once.
    #[arg(long, env = "PLEXUS_BROADCAST_CONCURRENCY", default_value_t = 256)]
    pub broadcast_concurrency: usize,

    /// Timeout of the `GET {peerUri}/p2p/ping` probe made on registration
    /// (400 when it fails).
    #[arg(long, env = "PLEXUS_PROBE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub probe_timeout: Duration,

    /// When set, register, ping and leave need `Authorization: Bearer
    /// <token>` (403 otherwise). Broadcasts do not carry it: peers check
    /// them by genesis's signature. Prefer
    /// --join-token-file or the environment variable: arguments are visible
    /// to every user of the machine.
    #[arg(long, env = "PLEXUS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,

    /// A file whose first line is the join token (instead of --join-token).
    #[arg(long, env = "PLEXUS_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,

    /// A peer URI longer than this many bytes is refused (422): genesis
    /// pushes every byte of it to every peer.
    #[arg(long, env = "PLEXUS_MAX_URI_BYTES", default_value_t = DEFAULT_MAX_URI_BYTES)]
    pub max_uri_bytes: usize,

    /// A schema hash longer than this many characters is refused (422).
    #[arg(long, env = "PLEXUS_MAX_SCHEMA_HASH_CHARS", default_value_t = DEFAULT_MAX_SCHEMA_HASH_CHARS)]
    pub max_schema_hash_chars: usize,

    /// A `/peers/watch` client that falls this many changes behind has its
    /// stream ended (it reconnects and starts again from a snapshot).
    #[arg(long, env = "PLEXUS_WATCH_BUFFER", default_value_t = DEFAULT_WATCH_BUFFER)]
    pub watch_buffer: usize,

    /// The outbound guard of the probe and the pushes.
    #[command(flatten)]
    pub outbound: OutboundArgs,

    /// HTTPS (--tls-cert, --tls-key).
    #[command(flatten)]
    pub tls: TlsArgs,

    /// Refuse (422) peer URIs that are not https: every peer must serve
    /// HTTPS, so pushes, probes and Network queries travel encrypted.
    #[arg(long, env = "PLEXUS_REQUIRE_HTTPS")]
    pub require_https: bool,

    /// Connection bounds.
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Rate limit and CORS of write calls.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// File (or folder, which then holds `genesis.redb`) of the embedded
    /// store that keeps the peer list across restarts. Absent: memory only,
    /// and peers register again on their next ping's 404.
    #[arg(long, env = "PLEXUS_STATE")]
    pub state: Option<PathBuf>,

    /// Client URLs of an etcd cluster (comma-separated): the peer list lives
    /// in etcd, and any number of genesis replicas given the same cluster
    /// and --etcd-prefix serve the same network, e.g. `plexus-genesis --etcd
    /// http://e0:2379,http://e1:2379,http://e2:2379` on each machine. They
    /// share one signing key through etcd (the first replica writes it), so
    /// nothing needs copying. Members that are down may be listed: calls go
    /// to those that answer. Pings keep a lease per registration alive;
    /// eviction is the lease running out. Not with --state.
    #[arg(
        long,
        env = "PLEXUS_ETCD",
        value_delimiter = ',',
        conflicts_with = "state"
    )]
    pub etcd: Vec<String>,

    /// Prefix of every key genesis keeps in etcd: one network per prefix.
    #[arg(long, env = "PLEXUS_ETCD_PREFIX", default_value = "/plexus/")]
    pub etcd_prefix: String,

    /// TTL of a replica's own lease in etcd: a replica that dies hands its
    /// share of pushes to the others within about this long.
    #[arg(long, env = "PLEXUS_REPLICA_TTL", default_value = "5s", value_parser = parse_duration)]
    pub replica_ttl: Duration,

    /// Timeout of each call to etcd (503 when a registration or leave cannot
    /// be written within it).
    #[arg(long, env = "PLEXUS_ETCD_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub etcd_timeout: Duration,

    /// File of genesis's Ed25519 key (one line: the base64 of its 32-byte
    /// seed; made with mode 0600 if absent; refused if others may read it).
    /// Genesis signs every peer list it pushes or answers with it, and
    /// derives the secret that binds names to peers' keys from it.
    /// Default: `genesis.key` in the --state folder (`FILE.key` beside a
    /// --state file); with --etcd, the network's key in etcd (a --key-file
    /// that differs from it is refused); else a new key in memory at each start.
    #[arg(long, env = "PLEXUS_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Refuse (403) registrations that prove no key: only Plexus peers that
    /// sign their registration may join (original clients cannot).
    #[arg(long, env = "PLEXUS_REQUIRE_KEYS")]
    pub require_keys: bool,

    /// How far a request signature's `created` may be from genesis's clock,
    /// either way; older (replayed) or future ones get 403.
    #[arg(long, env = "PLEXUS_SIGNATURE_MAX_AGE", default_value = "60s", value_parser = parse_duration)]
    pub signature_max_age: Duration,

    /// Request bodies larger than this many bytes get 413.
    #[arg(long, env = "PLEXUS_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// On SIGINT or SIGTERM, in-flight requests get this long to finish.
    #[arg(long, env = "PLEXUS_SHUTDOWN_GRACE", default_value = "2s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// The relay for browser tabs.
    #[command(flatten)]
    pub relay: crate::relay::RelayArgs,
}

impl Args {
    /// How to reach etcd, with --etcd.
    pub fn etcd_config(&self) -> Option<crate::etcd::EtcdConfig> {
        (!self.etcd.is_empty()).then(|| crate::etcd::EtcdConfig {
            endpoints: self.etcd.clone(),
            prefix: self.etcd_prefix.clone(),
            replica_ttl: self.replica_ttl,
            timeout: self.etcd_timeout,
            peer_timeout: self.peer_timeout,
        })
    }

    /// Where genesis's key is kept: `--key-file`, else beside the `--state`
    /// store; `None`: in memory only.
    pub fn key_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.key_file {
            return Some(path.clone());
        }
        let state = self.state.as_ref()?;
        Some(if state.is_dir() {
            state.join("genesis.key")
        } else {
            let mut name = state.clone().into_os_string();
            name.push(".key");
            PathBuf::from(name)
        })
    }
}

/// What a running genesis needs to know, resolved from [`Args`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registry's own configuration.
    pub registry: RegistryConfig,
    /// Genesis's key pair: it signs pushes and lists, and the registry's
    /// [`Authority`] derives from it (set both with [`Settings::set_identity`]).
    pub identity: Identity,
    /// The join token, if any.
    pub join_token: Option<String>,
    /// The guard of every call to a peer URI.
    pub guard: Guard,
    /// The cap on answers read from peers.
    pub max_answer_bytes: usize,
    /// The trust roots of calls to peers besides the system's (`--ca-file`).
    pub trust: Trust,
    /// The bounds of a peer URI and a schema hash.
    pub limits: Limits,
    /// Changes a watcher may fall behind before its stream is ended.
    pub watch_buffer: usize,
    /// Rate limit and CORS of write calls.
    pub policy: PolicyArgs,
    /// Timeout of the registration probe.
    pub probe_timeout: Duration,
    /// Timeout of each broadcast.
    pub broadcast_timeout: Duration,
    /// Broadcasts in flight at once.
    pub broadcast_concurrency: usize,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// The relay for browser tabs (`--relay`), if on.
    pub relay: Option<plexus_core::relay::RelayConfig>,
    /// The contextionary file served at `GET /contextionary`, if any.
    pub contextionary_file: Option<plexus_server::contextionary::Served>,
}

impl Settings {
    /// Settings with the defaults of the command line and `contextionary`.
    pub fn new(contextionary: Contextionary) -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let identity = plexus_server::keys::random_identity();
        let mut registry = RegistryConfig::new(contextionary, seed);
        registry.authority = Authority::of(&identity);
        Self {
            registry,
            identity,
            join_token: None,
            guard: Guard::new(SocketAddr::from(([127, 0, 0, 1], 0)), &[], &[]),
            max_answer_bytes: plexus_server::outbound::DEFAULT_MAX_ANSWER_BYTES,
            trust: Trust::default(),
            limits: Limits::default(),
            watch_buffer: DEFAULT_WATCH_BUFFER,
            policy: PolicyArgs::default(),
            probe_timeout: Duration::from_secs(2),
            broadcast_timeout: Duration::from_secs(1),
            broadcast_concurrency: 256,
            max_body_bytes: 64 * 1024,
            relay: None,
            contextionary_file: None,
        }
    }
}

impl Settings {
    /// The network's contextionary from `args`, for a genesis listening on
    /// `local`: the file of --contextionary (or the embedded default, unless
    /// --contextionary-hash alone names another), served and named by its
    /// hash at --contextionary-url (default `{scheme}://{local}/contextionary`,
    /// `scheme` being the listener's own).
    pub fn resolve_contextionary(
        &mut self,
        args: &Args,
        scheme: &str,
        local: SocketAddr,
    ) -> anyhow::Result<()> {
        use plexus_server::contextionary as ctx;
        let file = match (&args.contextionary, &args.contextionary_hash) {
            (Some(path), _) => Some(ctx::load(path, args.contextionary_max_bytes)?),
            (None, Some(_)) => None,
            (None, None) => Some(ctx::default()?),
        };
        let Some(file) = file else {
            return Ok(());
        };
        if let Some(hash) = &args.contextionary_hash
            && hash != file.hash()
        {
            anyhow::bail!(
                "--contextionary-hash {hash} is not the hash of the --contextionary file, {}",
                file.hash()
            );
        }
        self.registry.contextionary = Contextionary {
            url: args
                .contextionary_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{local}{}", ctx::PATH)),
            hash: file.hash().clone(),
        };
        self.contextionary_file = Some(ctx::Served::new(&file));
        Ok(())
    }

    /// Genesis's key pair, and the registry's authority derived from it.
    pub fn set_identity(&mut self, identity: Identity) {
        self.registry.authority = Authority::of(&identity);
        self.identity = identity;
    }
}

impl From<&Args> for Settings {
    fn from(args: &Args) -> Self {
        // The file (--contextionary, or the embedded default) is read by
        // `resolve_contextionary`, which can fail; these are the old flags.
        let mut settings = Settings::new(Contextionary {
            url: args
                .contextionary_url
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTEXTIONARY_URL.to_owned()),
            hash: args.contextionary_hash.clone().unwrap_or_else(|| {
                plexus_core::contextionary::hash_of(plexus_server::contextionary::DEFAULT)
            }),
        });
        settings.registry.peer_timeout = args.peer_timeout;
        settings.registry.hold_limit = args.hold_limit.unwrap_or(args.peer_timeout);
        settings.registry.broadcast_delay = args.broadcast_delay;
        settings.registry.round_wait = args.round_wait;
        settings.registry.require_keys = args.require_keys;
        settings.registry.max_signature_age = args.signature_max_age;
        // --join-token-file and --ca-file are read by `run`, which can fail.
        settings.join_token = args.join_token.clone().filter(|t| !t.is_empty());
        settings.guard = Guard::from_args(args.listen, &args.outbound);
        if let Some(max) = args.outbound.max_answer_bytes {
            settings.max_answer_bytes = max;
        }
        settings.limits = Limits {
            max_uri_bytes: args.max_uri_bytes,
            max_schema_hash_chars: args.max_schema_hash_chars,
            require_https: args.require_https,
        };
        settings.watch_buffer = args.watch_buffer.max(1);
        settings.policy = args.policy.clone();
        settings.probe_timeout = args.probe_timeout;
        settings.broadcast_timeout = args.broadcast_timeout;
        settings.broadcast_concurrency = args.broadcast_concurrency.max(1);
        settings.max_body_bytes = args.max_body_bytes;
        settings.relay = args.relay.config(args.signature_max_age);
        settings
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Args;

    #[test]
    fn the_join_token_help_says_broadcasts_do_not_carry_it() {
        let help = Args::command().render_long_help().to_string();
        let text: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains("Broadcasts do not carry it: peers check them by genesis's signature"),
            "{text}"
        );
        assert!(!text.contains("broadcasts carry it"), "{text}");
    }
}
