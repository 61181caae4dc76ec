//! `plexus-peer`'s command line and its `run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use plexus_core::names::PeerUri;
use plexus_core::time::parse_duration;
use plexus_core::wire::{Contextionary, ContextionaryHash};

use super::batch::{
    BatchLimits, DEFAULT_BATCH_BYTES, DEFAULT_BATCH_OBJECTS, DEFAULT_BATCH_RUNNING,
};
use super::config::{self, NetworkSettings, Overrides};
use super::index::{DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_VALUE_WORDS, ValueLimits};
use super::network::{self, Input, Stopped, routes as p2p};
use super::{
    DEFAULT_MIN_FREE_DISK, GraphQLSettings, PeerDb, PeerState, WriteLimits, api_routes, layers,
};
use plexus_graphql::Limits;
use plexus_server::outbound::{self, Guard, Outbound, OutboundArgs};
use plexus_server::policy::PolicyArgs;
use plexus_server::tls::{Listener, TlsArgs};
use plexus_server::{ConnectionArgs, bind, shutdown_signal};

/// How long open requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long deregistering may take on the way out.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// The default contextionary URL: the same as genesis's default.
pub const DEFAULT_CONTEXTIONARY_URL: &str =
    "https://contextionary.plexus.invalid/en/contextionary.idx";

/// A Plexus knowledge-graph peer.
///
/// It serves its own schema and objects (v1 REST API, GraphQL at
/// /v1/graphql). With a network (the config file's network block for
/// --environment, or --genesis-url) it registers with genesis on start-up,
/// pings it every --ping-interval, answers Network queries by asking the
/// named peers in parallel, and deregisters on Ctrl-C or SIGTERM. It exits
/// non-zero with a one-line message when genesis names another
/// contextionary than --contextionary-hash, or refuses the join token.
/// Without a network it runs stand-alone. Every flag also reads the
/// environment variable shown.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "plexus-peer", version, about, long_about)]
pub struct Args {
    /// Address to listen on (port 0: any free port; the chosen address is
    /// printed on stdout as `listening on http://HOST:PORT`, or `https`
    /// with --tls-cert).
    #[arg(long, env = "PLEXUS_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Directory of the peer's database [default: the user's data dir/plexus/peer].
    #[arg(long, env = "PLEXUS_DATA")]
    pub data: Option<PathBuf>,
    /// JSON config file: {"environments": [{"name", "network": {"genesis_url",
    /// "public_url", "peer_name"}}]}.
    #[arg(long, env = "PLEXUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Which environment of the config file to use.
    #[arg(long, env = "PLEXUS_ENVIRONMENT", default_value = "default")]
    pub environment: String,
    /// Genesis's URL, or its replicas' URLs comma-separated (overrides the
    /// config file; alone, it is enough to join a network). When a replica
    /// does not answer, the peer moves to the next one and keeps its
    /// registration.
    #[arg(long, env = "PLEXUS_GENESIS_URL")]
    pub genesis_url: Option<String>,
    /// The URL where genesis and other peers reach this peer
    /// [default: http:// (https:// with --tls-cert) + the address it listens on].
    #[arg(long, env = "PLEXUS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// This peer's name in the network: a letter, then letters and digits (at most 63).
    #[arg(long, env = "PLEXUS_PEER_NAME")]
    pub peer_name: Option<String>,
    /// This peer's contextionary file (docs/peer.md) [default: the file
    /// embedded in the binary, unless --contextionary-url or
    /// --contextionary-hash names another].
    #[arg(long, env = "PLEXUS_CONTEXTIONARY")]
    pub contextionary: Option<PathBuf>,
    /// Without --contextionary: download the contextionary from this URL
    /// at start-up (genesis's `GET /contextionary`, the URL it names).
    #[arg(long, env = "PLEXUS_CONTEXTIONARY_URL")]
    pub contextionary_url: Option<String>,
    /// This peer's contextionary hash, ALG:VALUE: a file or download of
    /// another hash is refused, and the peer refuses a network whose
    /// genesis names another one.
    #[arg(long, env = "PLEXUS_CONTEXTIONARY_HASH")]
    pub contextionary_hash: Option<ContextionaryHash>,
    /// A larger contextionary file or download is refused.
    #[arg(long, env = "PLEXUS_CONTEXTIONARY_MAX_BYTES", default_value_t = plexus_server::contextionary::DEFAULT_MAX_BYTES)]
    pub contextionary_max_bytes: u64,
    /// Mean time between pings to genesis (e.g. 10s, 500ms).
    #[arg(long, env = "PLEXUS_PING_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// The network's join token, sent to genesis with each call (pushes
    /// from genesis are checked by genesis's signature, not by the token).
    /// Prefer --join-token-file or the environment variable: arguments are
    /// visible to every user of the machine.
    #[arg(long, env = "PLEXUS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Genesis's public key (`genesis_key` in the config file): pushes and
    /// lists are taken only when signed by it. Absent: the key that signs
    /// genesis's registration answer is pinned at each registration.
    #[arg(long, env = "PLEXUS_GENESIS_KEY")]
    pub genesis_key: Option<String>,
    /// How far a signature's `created` may be from this peer's clock, either
    /// way; older (replayed) or future pushes get 403.
    #[arg(long, env = "PLEXUS_SIGNATURE_MAX_AGE", default_value = "60s", value_parser = parse_duration)]
    pub signature_max_age: Duration,
    /// A file whose first line is the join token (instead of --join-token).
    #[arg(long, env = "PLEXUS_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
    /// At most this many schemas of other peers are downloaded at once.
    #[arg(long, env = "PLEXUS_MAX_SCHEMA_DOWNLOADS", default_value_t = 8)]
    pub max_schema_downloads: usize,
    /// The outbound guard of calls to other peers.
    #[command(flatten)]
    pub outbound: OutboundArgs,
    /// HTTPS (--tls-cert, --tls-key).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Connection bounds.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Rate limit and CORS of write calls.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// How long each peer asked by a Network query may take to answer.
    #[arg(long, env = "PLEXUS_QUERY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// At most this many objects in one `POST /v1/batching/things` (or actions) request.
    #[arg(long, env = "PLEXUS_BATCH_MAX_OBJECTS", default_value_t = DEFAULT_BATCH_OBJECTS)]
    pub batch_max_objects: usize,

    /// At most this many bytes of body in one batch request.
    #[arg(long, env = "PLEXUS_BATCH_MAX_BYTES", default_value_t = DEFAULT_BATCH_BYTES)]
    pub batch_max_bytes: usize,
    /// At most this many batch requests are read and written at once; the
    /// others wait (their bodies unread) within --request-timeout.
    #[arg(long, env = "PLEXUS_BATCH_MAX_RUNNING", default_value_t = DEFAULT_BATCH_RUNNING)]
    pub batch_max_running: usize,
    /// The most bytes of one `string` or `text` value; a larger one is
    /// refused (422, or a FAILED batch item).
    #[arg(long, env = "PLEXUS_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
    /// The most distinct words of one `text` value (each is an index
    /// entry); more is refused (422, or a FAILED batch item).
    #[arg(long, env = "PLEXUS_MAX_VALUE_WORDS", default_value_t = DEFAULT_MAX_VALUE_WORDS)]
    pub max_value_words: usize,
    /// Writes are refused (507) while the data folder's disk has fewer
    /// bytes free than this (0: no floor).
    #[arg(long, env = "PLEXUS_MIN_FREE_DISK", default_value_t = DEFAULT_MIN_FREE_DISK)]
    pub min_free_disk: u64,
    /// The most bytes of a peer list from genesis: a push (`PUT
    /// /p2p/genesis`) or the answer to a registration, a ping or `GET /peers`.
    /// A push that declares more is refused before its body is read. The
    /// default holds 10,000 peers at the longest URIs and hashes genesis
    /// takes by default.
    #[arg(long, env = "PLEXUS_MAX_LIST_BYTES", default_value_t = network::default_max_list_bytes())]
    pub max_list_bytes: usize,
    /// At most this many push bodies (`PUT /p2p/genesis`, once its
    /// signature headers check) are read at once; the others wait.
    #[arg(long, env = "PLEXUS_MAX_PUSH_BODIES", default_value_t = network::DEFAULT_MAX_PUSH_BODIES)]
    pub max_push_bodies: usize,
    /// The most Local queries one Network query sends at once (one per distinct peer).
    #[arg(long, env = "PLEXUS_NETWORK_MAX_IN_FLIGHT", default_value_t = network::DEFAULT_MAX_IN_FLIGHT)]
    pub network_max_in_flight: usize,
    /// The GraphQL engine's bounds.
    #[command(flatten)]
    pub graphql: GraphQLArgs,
}

/// The bounds of the GraphQL engine (docs/peer.md, "GraphQL").
#[derive(Debug, Clone, clap::Args)]
pub struct GraphQLArgs {
    /// Deepest nesting of selections in a query.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_DEPTH", default_value_t = Limits::default().max_depth)]
    pub graphql_max_depth: usize,
    /// Most fields in a query, every fragment expanded.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_COMPLEXITY", default_value_t = Limits::default().max_complexity)]
    pub graphql_max_complexity: usize,
    /// Deepest recursion of the GraphQL parser.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_RECURSIVE_DEPTH", default_value_t = Limits::default().max_recursive_depth)]
    pub graphql_max_recursive_depth: usize,
    /// Most aliased fields in a query, fragments expanded.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_ALIASES", default_value_t = Limits::default().max_aliases)]
    pub graphql_max_aliases: usize,
    /// Most objects in one answer: each `limit` weighs its value before the
    /// query runs, and the objects are counted while it runs.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_OBJECTS", default_value_t = Limits::default().max_objects)]
    pub graphql_max_objects: usize,
    /// Most objects one GetMeta class reads to aggregate.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_META_OBJECTS", default_value_t = Limits::default().max_meta_objects)]
    pub graphql_max_meta_objects: usize,
    /// Most bytes of query text whose parsed documents are kept for the
    /// next query with the same text (0: none kept).
    #[arg(long, env = "PLEXUS_GRAPHQL_CACHED_QUERY_BYTES", default_value_t = Limits::default().max_cached_query_bytes)]
    pub graphql_cached_query_bytes: usize,
    /// Most bytes of one GraphQL answer.
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_ANSWER_BYTES", default_value_t = GraphQLSettings::default().max_answer_bytes)]
    pub graphql_max_answer_bytes: usize,
    /// How long one query may run before it is cancelled (e.g. 10s).
    #[arg(long, env = "PLEXUS_GRAPHQL_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub graphql_timeout: Duration,
    /// How many queries run at once, off the async workers [default: the machine's cores].
    #[arg(long, env = "PLEXUS_GRAPHQL_MAX_RUNNING")]
    pub graphql_max_running: Option<usize>,
}

impl GraphQLArgs {
    /// The settings these flags give.
    pub fn settings(&self) -> GraphQLSettings {
        GraphQLSettings {
            limits: Limits {
                max_depth: self.graphql_max_depth,
                max_complexity: self.graphql_max_complexity,
                max_recursive_depth: self.graphql_max_recursive_depth,
                max_aliases: self.graphql_max_aliases,
                max_objects: self.graphql_max_objects,
                max_meta_objects: self.graphql_max_meta_objects,
                max_cached_query_bytes: self.graphql_cached_query_bytes,
            },
            max_answer_bytes: self.graphql_max_answer_bytes,
            timeout: self.graphql_timeout,
            max_running: self
                .graphql_max_running
                .unwrap_or_else(super::default_max_running),
        }
    }
}

impl Args {
    /// The data directory: `--data`, or `plexus/peer` in the user's data directory.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data {
            Some(dir) => Ok(dir.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("plexus").join("peer"))
                .context("no user data directory on this system: pass --data DIR"),
        }
    }

    /// The network settings: `None` for a stand-alone peer.
    pub fn network(&self) -> Result<Option<NetworkSettings>, config::ConfigError> {
        let file = self
            .config
            .as_deref()
            .map(|path| config::read_file(path).map(|f| (path, f)))
            .transpose()?;
        let overrides = Overrides {
            genesis_url: self.genesis_url.clone(),
            public_url: self.public_url.clone(),
            peer_name: self.peer_name.clone(),
            genesis_key: self.genesis_key.clone(),
        };
        let block = config::network_block(
            file.as_ref().map(|(p, f)| (*p, f)),
            &self.environment,
            &overrides,
        )?;
        block
            .map(|block| -> Result<NetworkSettings, config::ConfigError> {
                config::settings(
                    block,
                    Contextionary {
                        url: self
                            .contextionary_url
                            .clone()
                            .unwrap_or_else(|| DEFAULT_CONTEXTIONARY_URL.to_owned()),
                        hash: self.contextionary_hash.clone().unwrap_or_else(|| {
                            plexus_core::contextionary::hash_of(
                                plexus_server::contextionary::DEFAULT,
                            )
                        }),
                    },
                    self.ping_interval,
                    plexus_server::join_token(
                        self.join_token.as_deref(),
                        self.join_token_file.as_deref(),
                    )
                    .map_err(|e| config::ConfigError::Invalid {
                        field: "join token",
                        reason: e.to_string(),
                    })?,
                    self.query_timeout,
                )
                .map(|mut settings| {
                    settings.signature_max_age = self.signature_max_age;
                    settings
                })
            })
            .transpose()
    }
}

impl Args {
    /// This peer's contextionary, and what it tells genesis: the file of
    /// --contextionary; else the download of --contextionary-url; else, with
    /// --contextionary-hash alone, that hash (and the embedded file's
    /// vectors when it is the embedded file's hash); else the embedded file.
    /// A file or download whose hash is not --contextionary-hash is refused.
    /// A download trusts `trust`'s roots besides the system's.
    pub async fn contextionary(
        &self,
        trust: &plexus_server::outbound::Trust,
    ) -> anyhow::Result<(
        Option<Arc<plexus_core::contextionary::Contextionary>>,
        Contextionary,
    )> {
        use plexus_server::contextionary as ctx;
        let url = self
            .contextionary_url
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTEXTIONARY_URL.to_owned());
        let file = match (
            &self.contextionary,
            &self.contextionary_url,
            &self.contextionary_hash,
        ) {
            (Some(path), _, _) => ctx::load(path, self.contextionary_max_bytes)?,
            (None, Some(url), hash) => {
                let c = ctx::download(
                    &network::http_client(trust)?,
                    url,
                    self.contextionary_max_bytes,
                    hash.as_ref(),
                )
                .await?;
                tracing::info!(url, hash = %c.hash(), "downloaded the contextionary");
                c
            }
            (None, None, Some(hash)) => {
                let default = ctx::default()?;
                let vectors = (default.hash() == hash).then_some(default);
                if vectors.is_none() {
                    tracing::warn!(%hash, "--contextionary-hash names a contextionary this peer does not hold: Fetch and Introspect answer an error");
                }
                return Ok((
                    vectors,
                    Contextionary {
                        url,
                        hash: hash.clone(),
                    },
                ));
            }
            (None, None, None) => ctx::default()?,
        };
        if let Some(hash) = &self.contextionary_hash
            && hash != file.hash()
        {
            anyhow::bail!(
                "--contextionary-hash {hash} is not the hash of this peer's contextionary, {}",
                file.hash()
            );
        }
        let wire = Contextionary {
            url,
            hash: file.hash().clone(),
        };
        Ok((Some(file), wire))
    }
}

/// Opens the database named by `args`.
pub async fn open_db(args: &Args) -> anyhow::Result<Arc<PeerDb>> {
    let dir = args.data_dir()?;
    let settings = args.graphql.settings();
    let db = tokio::task::spawn_blocking(move || PeerDb::open_with(&dir, settings)).await??;
    Ok(Arc::new(
        db.with_batch_limits(BatchLimits {
            max_objects: args.batch_max_objects,
            max_bytes: args.batch_max_bytes,
            max_running: args.batch_max_running,
        })
        .with_write_limits(WriteLimits {
            values: ValueLimits {
                max_value_bytes: args.max_value_bytes,
                max_value_words: args.max_value_words,
            },
            min_free_disk: args.min_free_disk,
        }),
    ))
}

/// Runs the peer until Ctrl-C or SIGTERM (then deregisters), or until it
/// gives up on its network (an error naming why).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = args.network()?;
    let trust = args.outbound.trust.load()?;
    let tls = args.tls.load()?;
    let (contextionary, named) = args.contextionary(&trust).await?;
    if let Some(settings) = &mut settings {
        settings.contextionary = named;
    }
    let db = open_db(&args).await?;
    db.set_contextionary(contextionary).await;
    let Some(settings) = settings else {
        let app = layers(
            api_routes()
                .with_state(PeerState::standalone(db))
                .merge(p2p::standalone_routes()),
            &args.policy,
        );
        return serve(app, bind(args.listen, tls).await?.0, &args.connection).await;
    };
    let (listener, local) = bind(args.listen, tls).await?;
    let public_uri = match &settings.public_uri {
        Some(uri) => uri.clone(),
        None if !local.ip().is_unspecified() => {
            PeerUri::new(format!("{}://{local}", listener.scheme()))?
        }
        None => {
            anyhow::bail!("listening on {local}, which other peers cannot dial: set --public-url")
        }
    };
    // The peer's key: made on first start, kept beside its database.
    let key_file = args.data_dir()?.join("peer.key");
    let (identity, made) = plexus_server::keys::load_or_create(&key_file)?;
    if made {
        tracing::info!(file = %key_file.display(), key = %identity.public(), "made the peer's key");
    }
    let http = network::http_client(&trust)?;
    let outbound = Outbound::new(
        Guard::from_args(local, &args.outbound),
        &trust,
        args.outbound
            .max_answer_bytes
            .unwrap_or(outbound::DEFAULT_MAX_ANSWER_BYTES),
        std::time::Duration::from_secs(2),
        concat!("plexus-peer/", env!("CARGO_PKG_VERSION")),
    )?;
    let mut network_settings = network::Settings::new(&settings, public_uri, identity);
    network_settings.max_in_flight = args.network_max_in_flight;
    network_settings.set_max_list_bytes(args.max_list_bytes);
    network_settings.max_push_bodies = args.max_push_bodies;
    let (task, handle) = network::start(
        network_settings,
        db.clone(),
        http,
        network::Peers::new(outbound, args.max_schema_downloads),
    );
    let state = PeerState {
        db,
        network: Some(Arc::new(handle.clone())),
    };
    let app = layers(
        api_routes()
            .with_state(state)
            .merge(p2p::routes(handle.clone())),
        &args.policy,
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = args.connection.clone();
    let server = tokio::spawn(async move {
        plexus_server::serve(listener, app, &limits, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    let mut membership = tokio::spawn(task.run());
    let outcome = tokio::select! {
        () = shutdown_signal() => {
            // Deregister first (bounded), then stop serving.
            if handle.send(Input::Shutdown).await {
                match tokio::time::timeout(LEAVE_TIMEOUT, &mut membership).await {
                    Ok(_) => {}
                    Err(_) => tracing::warn!("could not deregister within {LEAVE_TIMEOUT:?}"),
                }
            }
            Ok(())
        }
        stopped = &mut membership => match stopped {
            Ok(Stopped::Failed(reason)) => Err(anyhow::Error::new(reason)),
            Ok(Stopped::Left) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("the network task failed: {e}")),
        },
    };
    membership.abort();
    let _ = stop_tx.send(());
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Err(e))) => return Err(anyhow::Error::new(e).context("server failed")),
        Err(_) => tracing::warn!("open requests did not finish in {DRAIN_TIMEOUT:?}; stopping"),
        _ => {}
    }
    outcome
}

/// Serves `app` on `listener` (bound with [`bind`], which prints the
/// `listening on` line) until Ctrl-C or SIGTERM, then lets open requests
/// finish for at most [`DRAIN_TIMEOUT`].
pub async fn serve(
    app: axum::Router,
    listener: Listener,
    limits: &ConnectionArgs,
) -> anyhow::Result<()> {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = plexus_server::serve(listener, app, limits, async move {
        shutdown_signal().await;
        let _ = stopping.send(());
    });
    tokio::select! {
        result = server => result.context("server failed"),
        () = async {
            let _ = stopped.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {
            tracing::warn!("open requests did not finish in {DRAIN_TIMEOUT:?}; stopping");
            Ok(())
        }
    }
}
