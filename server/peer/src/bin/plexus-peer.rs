//! plexus-peer: a Plexus knowledge-graph peer, stand-alone or in a network.

use std::process::ExitCode;

use clap::Parser;
use plexus_peer::cli::{Args, run};

#[tokio::main]
async fn main() -> ExitCode {
    plexus_server::init_tracing();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus-peer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
