//! `plexus-peer`'s knowledge-graph database: a schema of Things and Actions
//! classes and their objects in an embedded redb file ([`store`]), the v1
//! REST API ([`api`]) and the GraphQL endpoint ([`graphql_http`], on the
//! `plexus-graphql` engine).
//!
//! [`PeerDb`] is the database every handler shares; [`router`] builds the
//! HTTP app. The network layer adds its routes with [`api_routes`] and
//! [`layers`], answers `Network` queries through a [`NetworkAsk`],
//! and follows schema changes with [`PeerDb::subscribe_schema`].

/// The memory allocator of the peer, and of every program that links this
/// crate (its benchmarks, the end-to-end tests): mimalloc. A query's answer
/// is made on a query slot's thread and freed on an async worker, all the
/// time; glibc's allocator then contends on its arenas' locks, and small
/// queries ran ~15 % slower with it (BENCHMARKS.md, issue 12). Genesis keeps
/// glibc's: it holds 100,000 peers in fewer bytes with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod batch;
pub mod cli;
pub mod config;
pub mod graphiql;
pub mod graphql_http;
pub mod index;
pub mod network;
pub mod object;
pub mod store;

#[cfg(test)]
mod index_props;
mod slots;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use futures::future::BoxFuture;
use plexus_core::contextionary::Contextionary;
use plexus_core::filter::Filter;
use plexus_core::names::PeerName;
use plexus_core::network::{Merged, NetworkPlan};
use plexus_core::schema::{Class, Kind, ObjectError, Property, Schema, SchemaError};
use plexus_graphql::{Engine, Limits, Meaning, Source, Step};
use tokio::sync::{RwLock, watch};
use uuid::Uuid;

pub use object::Object;
pub use plexus_graphql::{Answer, GraphQLRequest};
use plexus_server::AppError;
use plexus_server::policy::PolicyArgs;
use slots::Outcome;
use store::{RemoveClass, Snapshot, Store, StoreError};

/// The largest request body accepted (2 MiB).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// Why a database operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The schema change breaks a rule of the schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The object's values do not fit its class.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A value is over a bound of the index (`--max-value-bytes`, `--max-value-words`).
    #[error(transparent)]
    Value(#[from] index::ValueError),
    /// The data folder's disk is below `--min-free-disk`.
    #[error(
        "the data folder's disk has {free} bytes free, below the {floor} this peer keeps (--min-free-disk): writes are refused until there is room"
    )]
    DiskFull {
        /// Bytes free for the peer.
        free: u64,
        /// The floor.
        floor: u64,
    },
    /// No object of that kind with that id.
    #[error("no {kind} object with id {id}")]
    NotFound {
        /// The kind asked for.
        kind: Kind,
        /// The id asked for.
        id: String,
    },
    /// A class cannot be removed while it has objects.
    #[error("class {0:?} still has objects; delete them first")]
    ClassNotEmpty(String),
    /// An object with this id exists already.
    #[error("an object with id {0} exists already")]
    IdTaken(Uuid),
    /// The body's id is not the id in the path.
    #[error("the body's id differs from the id in the path")]
    IdMismatch,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task failed.
    #[error("task failed: {0}")]
    Task(String),
}

impl From<PeerError> for AppError {
    fn from(e: PeerError) -> Self {
        match &e {
            PeerError::Schema(schema) => AppError::new(
                axum::http::StatusCode::from_u16(schema.status())
                    .unwrap_or(axum::http::StatusCode::UNPROCESSABLE_ENTITY),
                e.to_string(),
            ),
            PeerError::NotFound { .. } => AppError::not_found(e.to_string()),
            PeerError::DiskFull { .. } => {
                AppError::new(axum::http::StatusCode::INSUFFICIENT_STORAGE, e.to_string())
            }
            PeerError::Store(StoreError::TimedOut) => {
                AppError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            PeerError::Object(_)
            | PeerError::Value(_)
            | PeerError::ClassNotEmpty(_)
            | PeerError::IdTaken(_)
            | PeerError::IdMismatch => AppError::unprocessable(e.to_string()),
            PeerError::Store(_) | PeerError::Task(_) => AppError::internal(e),
        }
    }
}

pub use plexus_core::object::NewObject;

/// The peer's database: the schema in memory (and on disk), the objects on disk.
///
/// Schema changes take the schema's write lock, object writes its read lock,
/// both for the whole check-and-commit: an object is never written against a
/// schema that is being changed, and a class is never removed under a write.
/// Every redb call runs on `spawn_blocking`, since a commit waits for fsync.
#[derive(Debug)]
pub struct PeerDb {
    store: Arc<Store>,
    batch: batch::BatchLimits,
    /// One permit per batch request being read and written (`--batch-max-running`).
    batches: Arc<tokio::sync::Semaphore>,
    writes: WriteLimits,
    /// The data folder, whose disk's free space writes check.
    dir: std::path::PathBuf,
    schema: RwLock<Arc<Schema>>,
    hash: watch::Sender<String>,
    /// The GraphQL engine of the current schema and remote schemas: each
    /// request runs on the engine it started with; a rebuild swaps it and
    /// the old one drops with its last request.
    engine: watch::Sender<Arc<Engine>>,
    /// The peer's name and the remote schemas it holds (with its own), once in a network.
    network: std::sync::Mutex<HeldSchemas>,
    settings: GraphQLSettings,
    /// Where queries run, at most `max_running` at once.
    running: Arc<slots::Slots>,
    /// The contextionary Fetch and Introspect search in, if any.
    contextionary: std::sync::Mutex<Option<Arc<Contextionary>>>,
}

/// The bounds of what one write may make the peer store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// Per `string`/`text` value.
    pub values: index::ValueLimits,
    /// Writes are refused (507) while the data folder's disk has fewer
    /// bytes free than this (`--min-free-disk`).
    pub min_free_disk: u64,
}

/// The default of [`WriteLimits::min_free_disk`] (256 MiB): room for a
/// few of the largest batches (8 MiB of body, ~20 times that written with
/// its indexes) and redb's own growth.
pub const DEFAULT_MIN_FREE_DISK: u64 = 256 * 1024 * 1024;

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            values: index::ValueLimits::default(),
            min_free_disk: DEFAULT_MIN_FREE_DISK,
        }
    }
}

/// The bytes free for an unprivileged user on the disk of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// This peer's name in a network, and the schemas of the peers it holds.
type HeldSchemas = (Option<PeerName>, BTreeMap<PeerName, Arc<Schema>>);

/// How the GraphQL engine is bounded (see docs/peer.md for the flags).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphQLSettings {
    /// The engine's limits.
    pub limits: Limits,
    /// The most bytes of one answer.
    pub max_answer_bytes: usize,
    /// How long one query may run before it is cancelled.
    pub timeout: std::time::Duration,
    /// How many queries run at once (the others wait, within their time).
    pub max_running: usize,
}

impl Default for GraphQLSettings {
    fn default() -> Self {
        GraphQLSettings {
            limits: Limits::default(),
            max_answer_bytes: 16 * 1024 * 1024,
            timeout: std::time::Duration::from_secs(10),
            max_running: default_max_running(),
        }
    }
}

/// The default of `--graphql-max-running`: the machine's cores, so the
/// async workers that answer pings always get their turn.
pub fn default_max_running() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// The engine reads a request's objects from one redb snapshot, and stops
/// once the request was cancelled (timeout, or the client went away).
struct SnapshotSource {
    snapshot: Snapshot,
    cancelled: Arc<AtomicBool>,
}

impl SnapshotSource {
    fn check(&self) -> Result<(), plexus_graphql::SourceError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(plexus_graphql::SourceError(
                StoreError::Cancelled.to_string(),
            ));
        }
        Ok(())
    }
}

impl Source for SnapshotSource {
    fn query(
        &self,
        kind: Kind,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, plexus_graphql::SourceError> {
        self.check()?;
        // The store's planner: indexes where they serve, a scan for the
        // rest, which looks at the flag as it goes.
        let stop = || self.cancelled.load(Ordering::Relaxed);
        let found = self
            .snapshot
            .query_until(kind, class, filter, limit, &stop)
            .map_err(|e| plexus_graphql::SourceError(e.to_string()))?;
        self.check()?;
        Ok(found)
    }

    fn get(&self, id: Uuid) -> Result<Option<Object>, plexus_graphql::SourceError> {
        self.check()?;
        self.snapshot
            .get(id)
            .map_err(|e| plexus_graphql::SourceError(e.to_string()))
    }
}

/// Sets the flag when dropped: the request's future was dropped (client
/// gone) or finished.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PeerDb {
    /// Opens the database in `dir` (created if needed). Blocks: call it at
    /// start-up, or on `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<PeerDb, StoreError> {
        PeerDb::open_with(dir, GraphQLSettings::default())
    }

    /// Opens the database in `dir` with these GraphQL bounds.
    pub fn open_with(dir: &Path, settings: GraphQLSettings) -> Result<PeerDb, StoreError> {
        let store = Store::open(dir)?;
        let schema = store.load_schema()?;
        let (hash, _) = watch::channel(schema.hash());
        let engine = build_engine(&schema, &BTreeMap::new(), &settings.limits, None)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (engine, _) = watch::channel(Arc::new(engine));
        Ok(PeerDb {
            store: Arc::new(store),
            batches: Arc::new(tokio::sync::Semaphore::new(
                batch::BatchLimits::default().max_running,
            )),
            batch: batch::BatchLimits::default(),
            writes: WriteLimits::default(),
            dir: dir.to_owned(),
            schema: RwLock::new(Arc::new(schema)),
            hash,
            engine,
            network: std::sync::Mutex::new((None, BTreeMap::new())),
            running: slots::Slots::new(settings.max_running),
            settings,
            contextionary: std::sync::Mutex::new(None),
        })
    }

    /// Answers Fetch and Introspect with `contextionary` (none: they answer
    /// an error), and rebuilds the engine.
    pub async fn set_contextionary(&self, contextionary: Option<Arc<Contextionary>>) {
        let schema = self.schema.read().await;
        *self
            .contextionary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = contextionary;
        self.rebuild(&schema);
    }

    /// The same database with these batch bounds.
    pub fn with_batch_limits(self, batch: batch::BatchLimits) -> PeerDb {
        PeerDb {
            batch,
            batches: Arc::new(tokio::sync::Semaphore::new(batch.max_running.max(1))),
            ..self
        }
    }

    /// The same database with these write bounds.
    pub fn with_write_limits(self, writes: WriteLimits) -> PeerDb {
        PeerDb { writes, ..self }
    }

    /// Waits for one of the `--batch-max-running` turns of a batch request.
    pub async fn batch_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.batches.clone().acquire_owned().await.ok()
    }

    /// Refuses a write (507) while the data folder's disk is below the floor.
    fn check_disk(&self) -> Result<(), PeerError> {
        let floor = self.writes.min_free_disk;
        if floor == 0 {
            return Ok(());
        }
        match free_bytes(&self.dir) {
            Ok(free) if free < floor => Err(PeerError::DiskFull { free, floor }),
            Ok(_) => Ok(()),
            // A disk that cannot be asked is not refused for it.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data folder's free space");
                Ok(())
            }
        }
    }

    /// Checks an object's values against the schema and the write bounds.
    fn check_object(
        &self,
        schema: &Schema,
        kind: Kind,
        class: &str,
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), PeerError> {
        schema.check_object(kind, class, values)?;
        if let Some(class) = schema.class(kind, class) {
            self.writes.values.check(class, values)?;
        }
        Ok(())
    }

    /// The bounds of one `POST /v1/batching/...` request.
    pub fn batch_limits(&self) -> batch::BatchLimits {
        self.batch
    }

    /// The GraphQL bounds.
    pub fn graphql_settings(&self) -> &GraphQLSettings {
        &self.settings
    }

    /// The current GraphQL engine.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.borrow().clone()
    }

    /// Rebuilds the engine for `schema` (the peer's, just changed) and the
    /// remote schemas held.
    fn rebuild(&self, schema: &Arc<Schema>) {
        let remotes = {
            let guard = self
                .network
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (name, remotes) = &*guard;
            let mut remotes = remotes.clone();
            if let Some(name) = name {
                remotes.insert(name.clone(), schema.clone());
            }
            let contextionary = self
                .contextionary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let meaning = contextionary.map(|contextionary| {
                Arc::new(Meaning {
                    contextionary,
                    peer: name
                        .as_ref()
                        .map_or("localhost", PeerName::as_str)
                        .to_owned(),
                })
            });
            (remotes, meaning)
        };
        let (remotes, meaning) = remotes;
        match build_engine(schema, &remotes, &self.settings.limits, meaning) {
            Ok(engine) => {
                self.engine.send_replace(Arc::new(engine));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the GraphQL engine; keeping the old one")
            }
        }
    }

    /// Follows the network: this peer's `name` and the remote `schemas` it
    /// holds. Rebuilds the engine when they changed.
    pub async fn set_network(&self, name: PeerName, schemas: BTreeMap<PeerName, Arc<Schema>>) {
        let schema = self.schema.read().await;
        {
            let mut guard = self
                .network
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let next = (Some(name), schemas);
            if *guard == next {
                return;
            }
            *guard = next;
        }
        self.rebuild(&schema);
    }

    /// The current schema.
    pub async fn schema(&self) -> Arc<Schema> {
        self.schema.read().await.clone()
    }

    /// The hash of the current schema ([`Schema::hash`]).
    pub fn schema_hash(&self) -> String {
        self.hash.borrow().clone()
    }

    /// A receiver that sees the schema hash change after every committed schema change.
    pub fn subscribe_schema(&self) -> watch::Receiver<String> {
        self.hash.subscribe()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, PeerError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| PeerError::Task(e.to_string()))?
            .map_err(PeerError::from)
    }

    /// Runs a write on the blocking pool, after the disk's floor: it
    /// commits only if its request has not been answered 503 meanwhile
    /// (`plexus_server::serve::Commit`), and once it began to commit its
    /// request waits for it.
    async fn blocking_write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, store::MayCommit<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, PeerError> {
        self.check_disk()?;
        let gate = plexus_server::serve::Commit::current();
        self.blocking(move |s| {
            let may_commit = || {
                gate.as_ref()
                    .is_none_or(plexus_server::serve::Commit::begin)
            };
            f(s, &may_commit)
        })
        .await
    }

    async fn change_schema<R>(
        &self,
        change: impl FnOnce(&mut Schema) -> Result<R, SchemaError>,
    ) -> Result<R, PeerError> {
        let mut guard = self.schema.write().await;
        let mut next = Schema::clone(&guard);
        let result = change(&mut next)?;
        let next = Arc::new(next);
        let saved = next.clone();
        self.blocking_write(move |s, may| s.save_schema(&saved, may))
            .await?;
        self.hash.send_replace(next.hash());
        self.rebuild(&next);
        *guard = next;
        Ok(result)
    }

    /// Adds a class (see [`Schema::add_class`]).
    pub async fn add_class(&self, kind: Kind, class: Class) -> Result<Class, PeerError> {
        self.change_schema(|schema| {
            schema.add_class(kind, class.clone())?;
            Ok(class)
        })
        .await
    }

    /// Adds a property to a class (see [`Schema::add_property`]).
    pub async fn add_property(
        &self,
        kind: Kind,
        class: &str,
        property: Property,
    ) -> Result<Property, PeerError> {
        self.change_schema(|schema| {
            schema.add_property(kind, class, property.clone())?;
            Ok(property)
        })
        .await
    }

    /// Removes a class; refused while another class refers to it or it has objects.
    pub async fn remove_class(&self, kind: Kind, name: &str) -> Result<(), PeerError> {
        let mut guard = self.schema.write().await;
        let mut next = Schema::clone(&guard);
        next.remove_class(kind, name)?;
        let next = Arc::new(next);
        let (saved, class) = (next.clone(), name.to_owned());
        match self
            .blocking_write(move |s, may| s.remove_class(&saved, &class, may))
            .await?
        {
            RemoveClass::NotEmpty => Err(PeerError::ClassNotEmpty(name.to_owned())),
            RemoveClass::Removed => {
                self.hash.send_replace(next.hash());
                self.rebuild(&next);
                *guard = next;
                Ok(())
            }
        }
    }

    /// Creates an object after checking its values against the schema.
    pub async fn create_object(&self, kind: Kind, new: NewObject) -> Result<Object, PeerError> {
        let schema = self.schema.read().await;
        self.check_object(&schema, kind, &new.class, &new.schema)?;
        let now = now_ms();
        let object = Object {
            id: new.id.unwrap_or_else(Uuid::new_v4),
            kind,
            class: new.class,
            schema: new.schema,
            creation_time_unix: now,
            last_update_time_unix: now,
        };
        let stored = object.clone();
        if !self
            .blocking_write(move |s, may| s.insert(&stored, may))
            .await?
        {
            return Err(PeerError::IdTaken(object.id));
        }
        drop(schema);
        Ok(object)
    }

    /// Creates many objects in one transaction (one fsync): each is checked
    /// against the schema first; all are written, or none. For bulk loads
    /// (benchmarks, imports); the REST API writes one object per call.
    pub async fn import(&self, kind: Kind, objects: Vec<NewObject>) -> Result<usize, PeerError> {
        let schema = self.schema.read().await;
        let now = now_ms();
        let mut checked = Vec::with_capacity(objects.len());
        for new in objects {
            self.check_object(&schema, kind, &new.class, &new.schema)?;
            checked.push(Object {
                id: new.id.unwrap_or_else(Uuid::new_v4),
                kind,
                class: new.class,
                schema: new.schema,
                creation_time_unix: now,
                last_update_time_unix: now,
            });
        }
        let count = checked.len();
        if let Some(taken) = self
            .blocking_write(move |s, may| s.insert_all(&checked, may))
            .await?
        {
            return Err(PeerError::IdTaken(taken));
        }
        drop(schema);
        Ok(count)
    }

    /// Creates each object that is well-formed, fits the schema and has a
    /// free id, all in one transaction (one fsync); per object, the stored
    /// object or why it was refused (`items` holds a parse error already).
    pub async fn create_batch(
        &self,
        kind: Kind,
        items: Vec<Result<NewObject, String>>,
    ) -> Result<Vec<Result<Object, String>>, PeerError> {
        let schema = self.schema.read().await;
        let now = now_ms();
        let mut results: Vec<Result<Object, String>> = items
            .into_iter()
            .map(|item| {
                let new = item?;
                self.check_object(&schema, kind, &new.class, &new.schema)
                    .map_err(|e| e.to_string())?;
                Ok(Object {
                    id: new.id.unwrap_or_else(Uuid::new_v4),
                    kind,
                    class: new.class,
                    schema: new.schema,
                    creation_time_unix: now,
                    last_update_time_unix: now,
                })
            })
            .collect();
        let valid: Vec<Object> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let stored = self
            .blocking_write(move |s, may| s.insert_batch(&valid, may))
            .await?;
        let mut stored = stored.into_iter();
        for result in &mut results {
            if let Ok(object) = result
                && !stored.next().unwrap_or(false)
            {
                *result = Err(PeerError::IdTaken(object.id).to_string());
            }
        }
        drop(schema);
        Ok(results)
    }

    /// The object `id` of `kind`.
    pub async fn get_object(&self, kind: Kind, id: &str) -> Result<Object, PeerError> {
        let not_found = || PeerError::NotFound {
            kind,
            id: id.to_owned(),
        };
        let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
        let found = self.blocking(move |s| s.snapshot()?.get(uuid)).await?;
        found.filter(|o| o.kind == kind).ok_or_else(not_found)
    }

    /// Replaces the class and values of the object `id` of `kind`, keeping its creation time.
    pub async fn replace_object(
        &self,
        kind: Kind,
        id: &str,
        new: NewObject,
    ) -> Result<Object, PeerError> {
        let schema = self.schema.read().await;
        let old = self.get_object(kind, id).await?;
        if new.id.is_some_and(|given| given != old.id) {
            return Err(PeerError::IdMismatch);
        }
        self.check_object(&schema, kind, &new.class, &new.schema)?;
        let object = Object {
            class: new.class,
            schema: new.schema,
            last_update_time_unix: now_ms().max(old.creation_time_unix),
            ..old
        };
        let stored = object.clone();
        if !self
            .blocking_write(move |s, may| s.replace(&stored, may))
            .await?
        {
            return Err(PeerError::NotFound {
                kind,
                id: id.to_owned(),
            });
        }
        drop(schema);
        Ok(object)
    }

    /// Deletes the object `id` of `kind`.
    pub async fn delete_object(&self, kind: Kind, id: &str) -> Result<(), PeerError> {
        let not_found = || PeerError::NotFound {
            kind,
            id: id.to_owned(),
        };
        let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
        let _schema = self.schema.read().await;
        match self
            .blocking_write(move |s, may| s.delete(uuid, |o| o.kind == kind, may))
            .await?
        {
            Some(_) => Ok(()),
            None => Err(not_found()),
        }
    }

    /// Up to `limit` objects of `kind`, class by class.
    pub async fn list_objects(&self, kind: Kind, limit: usize) -> Result<Vec<Object>, PeerError> {
        let classes: Vec<String> = self
            .schema()
            .await
            .list(kind)
            .classes
            .iter()
            .map(|c| c.class.clone())
            .collect();
        self.blocking(move |s| {
            let snapshot = s.snapshot()?;
            let mut out = Vec::new();
            for class in classes {
                if out.len() >= limit {
                    break;
                }
                snapshot.scan_class(&class, &mut |o| {
                    out.push(o);
                    out.len() < limit
                })?;
            }
            Ok(out)
        })
        .await
    }

    /// Answers a GraphQL request with the engine: `Local` from one snapshot
    /// of the store, `Network` through `network` (an error when `None`).
    ///
    /// Only CPU work runs on the query slots (`--graphql-max-running`), each
    /// job a synchronous run of the engine that waits on nothing: a Local
    /// query is one job. A Network query is one job that validates and
    /// plans it, then the fan-out on async tasks (`network`; this peer's
    /// own part is one more ordinary Local job, submitted by the fan-out),
    /// holding no slot while it waits, then one job that runs the request
    /// with the merged answer in hand. No query needs two slots at once.
    /// The whole is cancelled after `--graphql-timeout` or when this future
    /// is dropped: the job's flag is set, and the store stops reading.
    pub async fn graphql(
        &self,
        request: GraphQLRequest,
        network: Option<Arc<dyn NetworkAsk>>,
    ) -> Answer {
        let engine = self.engine();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancelled.clone());
        let timeout = self.settings.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let Some(network) = network else {
            return self
                .on_slot(deadline, &cancelled, move |source| {
                    futures::executor::block_on(engine.execute(request, source, None))
                })
                .await
                .unwrap_or_else(|refused| refused);
        };
        let first = {
            let (engine, request) = (engine.clone(), request.clone());
            self.on_slot(deadline, &cancelled, move |source| {
                futures::executor::block_on(engine.begin(&request, source))
            })
            .await
        };
        let plan = match first {
            Ok(Step::Answer(answer)) => return answer,
            Ok(Step::Network(plan)) => plan,
            Err(refused) => return refused,
        };
        // No slot is held while the peers are asked.
        let Ok(merged) = tokio::time::timeout_at(deadline, network.ask(plan)).await else {
            return Answer::refused(format!(
                "the query ran out of time ({timeout:?}, the peer's --graphql-timeout) while the peers were asked"
            ));
        };
        self.on_slot(deadline, &cancelled, move |source| {
            futures::executor::block_on(engine.execute(request, source, Some(merged)))
        })
        .await
        .unwrap_or_else(|refused| refused)
    }

    /// Runs `job` on a query slot over a snapshot of the store, by
    /// `deadline`; a refusal saying why when it could not (no slot in
    /// time, out of time, the store failed, a panic).
    async fn on_slot<T: Send + 'static>(
        &self,
        deadline: tokio::time::Instant,
        cancelled: &Arc<AtomicBool>,
        job: impl FnOnce(Arc<dyn Source>) -> T + Send + 'static,
    ) -> Result<T, Answer> {
        let store = self.store.clone();
        let flag = cancelled.clone();
        let timeout = self.settings.timeout;
        let began = Arc::new(AtomicBool::new(false));
        let begun = began.clone();
        let outcome = self.running.run(move || {
            begun.store(true, Ordering::Relaxed);
            let snapshot = store.snapshot()?;
            let source: Arc<dyn Source> = Arc::new(SnapshotSource {
                snapshot,
                cancelled: flag,
            });
            Ok::<_, StoreError>(job(source))
        });
        match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(Outcome::Done(Ok(value)))) => Ok(value),
            Ok(Ok(Outcome::Done(Err(e)))) => {
                tracing::error!(error = %e, "GraphQL query failed");
                Err(Answer::refused("could not read the peer's objects"))
            }
            Ok(Ok(Outcome::Panicked) | Err(_)) => {
                tracing::error!("GraphQL query panicked");
                Err(Answer::refused("the query failed"))
            }
            Err(_) if !began.load(Ordering::Relaxed) => Err(Answer::refused(format!(
                "the peer is busy: no query slot within {timeout:?} (--graphql-max-running)"
            ))),
            Err(_) => Err(Answer::refused(format!(
                "the query ran out of time ({timeout:?}, the peer's --graphql-timeout) and was cancelled"
            ))),
        }
    }
}

/// Asks the peers of a planned Network query and merges their answers:
/// the network layer's fan-out ([`network::resolver`]). The future waits
/// on the network only; dropping it gives the query up.
pub trait NetworkAsk: Send + Sync {
    /// The merged answers of the peers `plan` names.
    fn ask(&self, plan: NetworkPlan) -> BoxFuture<'static, Merged>;
}

fn build_engine(
    schema: &Schema,
    remotes: &BTreeMap<PeerName, Arc<Schema>>,
    limits: &Limits,
    meaning: Option<Arc<Meaning>>,
) -> Result<Engine, plexus_graphql::BuildError> {
    Engine::build(schema, remotes, limits).map(|e| e.with_meaning(meaning))
}

/// What every handler gets: the database and, once the peer is in a network,
/// the resolver of `Network` queries.
#[derive(Clone)]
pub struct PeerState {
    /// The database.
    pub db: Arc<PeerDb>,
    /// Asks the peers of `Network` queries; `None` for a stand-alone peer.
    pub network: Option<Arc<dyn NetworkAsk>>,
}

impl PeerState {
    /// A stand-alone peer's state.
    pub fn standalone(db: Arc<PeerDb>) -> Self {
        PeerState { db, network: None }
    }
}

/// Every `/v1` route, without middleware: merge more routes into it, then
/// wrap the result with [`layers`].
pub fn api_routes() -> Router<PeerState> {
    api::routes()
}

/// The middleware of every peer route: JSON error bodies for axum's own
/// refusals, a [`MAX_BODY`] body limit, the request trace
/// ([`plexus_server::trace_requests`]) and the write policy of
/// `policy` (reads from any origin; writes rate-limited per client address
/// and only from the origins it names, see [`plexus_server::policy`]).
pub fn layers(router: Router, policy: &PolicyArgs) -> Router {
    let router = router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(plexus_server::JsonErrorsLayer);
    Router::new().fallback_service(plexus_server::trace_requests(
        plexus_server::policy::guard_writes(router, policy, &[]),
    ))
}

/// The stand-alone peer's whole HTTP app, with the default write policy.
pub fn router(state: PeerState) -> Router {
    layers(
        api_routes()
            .with_state(state)
            .merge(network::routes::standalone_routes()),
        &PolicyArgs::default(),
    )
}
