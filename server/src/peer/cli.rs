//! `plexus-peer`'s command line and its `run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{PeerDb, PeerState, router};
use crate::http::{bind, shutdown_signal};

/// How long open requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags of `plexus-peer`; each also reads `PLEXUS_<FLAG>`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "plexus-peer", about = "A Plexus knowledge-graph peer", version)]
pub struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "PLEXUS_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Directory of the peer's database [default: the user's data dir/plexus/peer].
    #[arg(long, env = "PLEXUS_DATA")]
    pub data: Option<PathBuf>,
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
}

/// Opens the database named by `args`.
pub async fn open_db(args: &Args) -> anyhow::Result<Arc<PeerDb>> {
    let dir = args.data_dir()?;
    let db = tokio::task::spawn_blocking(move || PeerDb::open(&dir)).await??;
    Ok(Arc::new(db))
}

/// Runs a stand-alone peer until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = open_db(&args).await?;
    let app = router(PeerState::standalone(db));
    serve(app, args.listen).await
}

/// Serves `app` on `listen` (printing the `listening on` line) until Ctrl-C
/// or SIGTERM, then lets open requests finish for at most [`DRAIN_TIMEOUT`].
pub async fn serve(app: axum::Router, listen: SocketAddr) -> anyhow::Result<()> {
    let (listener, _) = bind(listen).await?;
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stopping.send(());
    });
    let server = async move { server.await };
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
