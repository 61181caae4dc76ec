//! The embedded store behind `--state`: the peer list (with each peer's
//! choice of deltas) and its version, kept in a redb file so that a
//! restarted genesis still knows its network.
//!
//! Changes are written by one task in batches (group commit): a handler
//! hands its changes over while it still holds the registry's lock, so the
//! store sees them in the registry's order, and answers its client only once
//! the batch holding them is committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_core::registry::SavedPeer;
use plexus_core::wire::{ChangeKind, PeerChange};
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

const PEERS: TableDefinition<u128, &[u8]> = TableDefinition::new("peers");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION: &str = "version";

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    path: PathBuf,
    message: String,
}

/// The redb file holding the peer list.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store at `path`: a file, or a folder that then
    /// holds `genesis.redb`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let path = if path.is_dir() {
            path.join("genesis.redb")
        } else {
            path.to_owned()
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Self::error(&path, e))?;
        }
        let db = Database::create(&path).map_err(|e| Self::error(&path, e))?;
        let store = Self {
            db: Arc::new(db),
            path,
        };
        // Create the tables, so that reading a fresh store works.
        store.apply(&[], 0)?;
        Ok(store)
    }

    fn error(path: &Path, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        Self::error(&self.path, e)
    }

    /// The saved peers and list version.
    pub fn load(&self) -> Result<(Vec<SavedPeer>, u64), StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let peers_table = tx.open_table(PEERS).map_err(|e| self.err(e))?;
        let mut peers = Vec::new();
        for row in peers_table.iter().map_err(|e| self.err(e))? {
            let (_, value) = row.map_err(|e| self.err(e))?;
            let peer: SavedPeer = serde_json::from_slice(value.value()).map_err(|e| self.err(e))?;
            peers.push(peer);
        }
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let version = meta
            .get(VERSION)
            .map_err(|e| self.err(e))?
            .map_or(0, |v| v.value());
        Ok((peers, version))
    }

    /// Writes `changes` in one transaction (blocking: call off the runtime).
    pub fn apply(&self, changes: &[Change], version: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut peers = tx.open_table(PEERS).map_err(|e| self.err(e))?;
            for Change { change, deltas } in changes {
                let key = change.peer.id.0.as_u128();
                match change.kind {
                    ChangeKind::Joined | ChangeKind::Updated => {
                        let saved = SavedPeer {
                            peer: change.peer.clone(),
                            deltas: *deltas,
                        };
                        let value = serde_json::to_vec(&saved).map_err(|e| self.err(e))?;
                        peers
                            .insert(key, value.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    ChangeKind::Left | ChangeKind::Evicted => {
                        peers.remove(key).map_err(|e| self.err(e))?;
                    }
                }
            }
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let saved = meta
                .get(VERSION)
                .map_err(|e| self.err(e))?
                .map_or(0, |v| v.value());
            meta.insert(VERSION, version.max(saved))
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

/// A change of the list to save, and whether its peer asked for deltas.
#[derive(Debug, Clone)]
pub struct Change {
    /// The change.
    pub change: PeerChange,
    /// The peer registered with `x-plexus-deltas: 1`.
    pub deltas: bool,
}

/// A batch of changes handed to the writer, and who waits for its commit.
#[derive(Debug)]
struct Job {
    changes: Vec<Change>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The sending side of the store's writer task.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

/// Resolves once a batch of changes is committed (or failed).
pub type Committed = oneshot::Receiver<Result<(), String>>;

impl Writer {
    /// Starts the writer task of `store` (call inside a tokio runtime).
    pub fn spawn(store: Store) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let store = store.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let changes: Vec<Change> = batch
                        .iter()
                        .flat_map(|j| j.changes.iter().cloned())
                        .collect();
                    let version = changes.iter().map(|c| c.change.version).max();
                    let version = version.unwrap_or(0);
                    let result = store.apply(&changes, version).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "cannot save the peer list");
                    }
                    (batch, result)
                })
                .await;
                match result {
                    Ok((batch, result)) => {
                        for job in batch {
                            if let Some(done) = job.done {
                                let _ = done.send(result.clone());
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "state writer failed"),
                }
            }
        });
        Self { jobs }
    }

    /// Hands `changes` over; the answer resolves once they are committed.
    /// Call while holding the registry's lock, so that order is kept.
    pub fn submit(&self, changes: Vec<Change>, wait: bool) -> Option<Committed> {
        let (done, committed) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self.jobs.send(Job { changes, done }).is_err() {
            tracing::error!("state writer is gone; change not saved");
        }
        committed
    }
}
