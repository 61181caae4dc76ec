//! The command line of `plexus-dash`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use plexus_core::time::parse_duration;

/// The terminal dashboard of a Plexus network: its peers live, their
/// schemas, and Network queries.
#[derive(Debug, Parser)]
#[command(name = "plexus-dash", version, about)]
pub struct Args {
    /// The genesis server to watch, or its replicas comma-separated (when
    /// one fails, the next is watched).
    #[arg(long, env = "PLEXUS_GENESIS", default_value = "http://127.0.0.1:8111")]
    pub genesis: String,
    /// The peer that Network queries go through (default: the selected peer).
    #[arg(long, env = "PLEXUS_PEER")]
    pub peer: Option<String>,
    /// Start a local genesis (with --relay) and three sample peers, watch
    /// them, and serve the tab peer demo app (wasm/www and the built wasm
    /// modules) for browser tabs to join as peers; its URL is printed and
    /// shown in the header.
    #[arg(long, env = "PLEXUS_DEVNET")]
    pub devnet: bool,
    /// Where --devnet serves the demo app (port 0: one the OS picks).
    #[arg(long, env = "PLEXUS_DEMO_LISTEN", default_value = "127.0.0.1:0")]
    pub demo_listen: SocketAddr,
    /// The folder holding the demo app for --devnet: www/ (the page) and pkg/
    /// (the modules `bash wasm/build.sh` builds). Default: the wasm/ folder of
    /// the source tree plexus-dash was built from.
    #[arg(long, env = "PLEXUS_DEMO_DIR", default_value = crate::demo::DEFAULT_DEMO_DIR)]
    pub demo_dir: PathBuf,
    /// Genesis's peer timeout, for colouring ping ages (genesis does not tell it).
    #[arg(long, env = "PLEXUS_PEER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub peer_timeout: Duration,
    /// Write logs (RUST_LOG sets the level) to this file; without it, nowhere.
    #[arg(long, env = "PLEXUS_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// `plexus-genesis` for --devnet (default: next to plexus-dash, else on PATH).
    #[arg(long, env = "PLEXUS_GENESIS_BIN")]
    pub genesis_bin: Option<PathBuf>,
    /// `plexus-peer` for --devnet (default: next to plexus-dash, else on PATH).
    #[arg(long, env = "PLEXUS_PEER_BIN")]
    pub peer_bin: Option<PathBuf>,
    /// The query the editor starts with.
    #[arg(long, env = "PLEXUS_QUERY")]
    pub query: Option<String>,
    /// Trust roots for HTTPS genesis and peers (--ca-file).
    #[command(flatten)]
    pub trust: plexus_server::outbound::TrustArgs,
}
