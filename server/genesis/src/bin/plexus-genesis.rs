//! `plexus-genesis`: the genesis server of a Plexus network.
//!
//! Run `plexus-genesis --help` for its flags; `docs/genesis.md` describes its API.

use clap::Parser;
use plexus_genesis::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    plexus_server::init_tracing();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus-genesis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
