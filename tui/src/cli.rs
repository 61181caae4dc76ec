//! The command line of `plexus-dash`.

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
    /// Start a local genesis and three sample peers and watch them.
    #[arg(long, env = "PLEXUS_DEVNET")]
    pub devnet: bool,
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
}
