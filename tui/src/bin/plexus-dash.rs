//! `plexus-dash`: the terminal dashboard. `plexus-dash --help` lists its flags.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use plexus_tui::cli::Args;
use plexus_tui::demo::{DemoFiles, DemoListener};
use plexus_tui::devnet::{Binaries, DEVNET_PEER_TIMEOUT, Devnet, EXAMPLE_QUERY};
use plexus_tui::model::Config;
use plexus_tui::{app, net};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_tracing(&args) {
        eprintln!("plexus-dash: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexus-dash: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config {
        genesis: args.genesis.trim_end_matches('/').to_owned(),
        peer: args.peer.map(|p| p.trim_end_matches('/').to_owned()),
        peer_timeout: args.peer_timeout,
        demo: None,
    };
    let client = net::client(&args.trust.load()?)?;
    let mut query = args.query;
    // Declared before the UI runs, so dropped (children stopped) after the
    // terminal is restored, on every path out of this function.
    let mut devnet = None;
    if args.devnet {
        let bins = Binaries::locate(args.genesis_bin, args.peer_bin);
        eprintln!(
            "plexus-dash: starting a devnet ({} and {})",
            bins.genesis.display(),
            bins.peer.display()
        );
        // The demo app's origin must be known before genesis starts, which
        // lets it write (the tab's registration).
        let demo = match DemoFiles::find(&args.demo_dir) {
            Ok(files) => Some((files, DemoListener::bind(args.demo_listen).await?)),
            Err(e) => {
                eprintln!("plexus-dash: not serving the tab peer demo app: {e:#}");
                None
            }
        };
        let origin = demo.as_ref().map(|(_, listener)| listener.origin());
        let net = Devnet::start(&bins, origin.as_deref())?;
        eprintln!("plexus-dash: devnet logs in {}", net.log_dir().display());
        if let Some((files, listener)) = demo {
            let (url, _server) = listener.serve(&files, &net.genesis);
            eprintln!(
                "plexus-dash: tab peer demo app at {url} (genesis {})",
                net.genesis
            );
            config.demo = Some(url);
        }
        net.load_samples(&client)
            .await
            .context("loading the sample data")?;
        config.genesis = net.genesis.clone();
        config.peer = net.peers.first().map(|(_, url)| url.clone());
        config.peer_timeout = DEVNET_PEER_TIMEOUT;
        query = query.or_else(|| Some(EXAMPLE_QUERY.to_owned()));
        devnet = Some(net);
    }
    let result = app::run(config, query, client).await;
    if let Some(mut net) = devnet {
        eprintln!("plexus-dash: stopping the devnet");
        net.stop();
    }
    result
}

fn init_tracing(args: &Args) -> anyhow::Result<()> {
    let Some(path) = &args.log_file else {
        return Ok(()); // never on the terminal the dashboard draws on
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}
