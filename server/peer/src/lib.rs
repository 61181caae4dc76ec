//! `plexus-peer`'s knowledge-graph database: a schema of Things and Actions
//! classes and their objects in an embedded redb file ([`store`]), the v1
//! REST API ([`api`]) and the GraphQL endpoint ([`graphql`]).
//!
//! [`PeerDb`] is the database every handler shares; [`router`] builds the
//! HTTP app. The network layer adds its routes with [`api_routes`] and
//! [`layers`], answers `Network` queries through [`graphql::NetworkResolver`],
//! and follows schema changes with [`PeerDb::subscribe_schema`].

pub mod api;
pub mod batch;
pub mod cli;
pub mod config;
pub mod graphql;
pub mod index;
pub mod network;
pub mod object;
pub mod store;

#[cfg(test)]
mod index_props;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use plexus_core::schema::{Class, Kind, ObjectError, Property, Schema, SchemaError};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::{RwLock, watch};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

pub use graphql::NetworkResolver;
use graphql::{GraphQLRequest, GraphQLResponse, ObjectSource, SourceError};
pub use object::Object;
use plexus_server::AppError;
use plexus_server::policy::PolicyArgs;
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
            PeerError::Schema(SchemaError::UnknownClass { .. }) | PeerError::NotFound { .. } => {
                AppError::not_found(e.to_string())
            }
            PeerError::Schema(_)
            | PeerError::Object(_)
            | PeerError::ClassNotEmpty(_)
            | PeerError::IdTaken(_)
            | PeerError::IdMismatch => AppError::unprocessable(e.to_string()),
            PeerError::Store(_) | PeerError::Task(_) => AppError::internal(e),
        }
    }
}

/// The body of `POST /v1/things` and `PUT /v1/things/{id}` (and actions).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewObject {
    /// The object's class.
    pub class: String,
    /// Its property values.
    #[serde(default)]
    pub schema: Map<String, Value>,
    /// The id to give it (create), or its id (replace); a new one when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
}

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
    schema: RwLock<Arc<Schema>>,
    hash: watch::Sender<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ObjectSource for Snapshot {
    fn scan_class(
        &self,
        class: &str,
        visit: &mut dyn FnMut(Object) -> bool,
    ) -> Result<(), SourceError> {
        Snapshot::scan_class(self, class, visit).map_err(|e| SourceError(e.to_string()))
    }

    fn get(&self, id: Uuid) -> Result<Option<Object>, SourceError> {
        Snapshot::get(self, id).map_err(|e| SourceError(e.to_string()))
    }

    fn query(
        &self,
        class: &str,
        filter: Option<&plexus_core::filter::Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, SourceError> {
        let Some((kind, _)) = self.schema().find_class(class) else {
            return Ok(Vec::new());
        };
        Snapshot::query(self, kind, class, filter, limit).map_err(|e| SourceError(e.to_string()))
    }
}

impl PeerDb {
    /// Opens the database in `dir` (created if needed). Blocks: call it at
    /// start-up, or on `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<PeerDb, StoreError> {
        let store = Store::open(dir)?;
        let schema = store.load_schema()?;
        let (hash, _) = watch::channel(schema.hash());
        Ok(PeerDb {
            store: Arc::new(store),
            batch: batch::BatchLimits::default(),
            schema: RwLock::new(Arc::new(schema)),
            hash,
        })
    }

    /// The same database with these batch bounds.
    pub fn with_batch_limits(self, batch: batch::BatchLimits) -> PeerDb {
        PeerDb { batch, ..self }
    }

    /// The bounds of one `POST /v1/batching/...` request.
    pub fn batch_limits(&self) -> batch::BatchLimits {
        self.batch
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

    async fn change_schema<R>(
        &self,
        change: impl FnOnce(&mut Schema) -> Result<R, SchemaError>,
    ) -> Result<R, PeerError> {
        let mut guard = self.schema.write().await;
        let mut next = Schema::clone(&guard);
        let result = change(&mut next)?;
        let next = Arc::new(next);
        let saved = next.clone();
        self.blocking(move |s| s.save_schema(&saved)).await?;
        self.hash.send_replace(next.hash());
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
            .blocking(move |s| s.remove_class(&saved, &class))
            .await?
        {
            RemoveClass::NotEmpty => Err(PeerError::ClassNotEmpty(name.to_owned())),
            RemoveClass::Removed => {
                self.hash.send_replace(next.hash());
                *guard = next;
                Ok(())
            }
        }
    }

    /// Creates an object after checking its values against the schema.
    pub async fn create_object(&self, kind: Kind, new: NewObject) -> Result<Object, PeerError> {
        let schema = self.schema.read().await;
        schema.check_object(kind, &new.class, &new.schema)?;
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
        if !self.blocking(move |s| s.insert(&stored)).await? {
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
            schema.check_object(kind, &new.class, &new.schema)?;
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
        if let Some(taken) = self.blocking(move |s| s.insert_all(&checked)).await? {
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
                schema
                    .check_object(kind, &new.class, &new.schema)
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
        let stored = self.blocking(move |s| s.insert_batch(&valid)).await?;
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
        schema.check_object(kind, &new.class, &new.schema)?;
        let object = Object {
            class: new.class,
            schema: new.schema,
            last_update_time_unix: now_ms().max(old.creation_time_unix),
            ..old
        };
        let stored = object.clone();
        if !self.blocking(move |s| s.replace(&stored)).await? {
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
            .blocking(move |s| s.delete(uuid, |o| o.kind == kind))
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

    /// Answers a GraphQL request: `Local` from this peer's objects, `Network`
    /// through `network` (an error when `None`).
    pub async fn graphql(
        &self,
        request: GraphQLRequest,
        network: Option<&dyn NetworkResolver>,
    ) -> GraphQLResponse {
        let schema = self.schema().await;
        graphql::answer(request, &schema, network, async |prepared| {
            let answer = self
                .blocking(move |s| Ok(prepared.run(&s.snapshot()?)))
                .await;
            answer.unwrap_or_else(|e| {
                tracing::error!(error = %e, "GraphQL query failed");
                GraphQLResponse::request_errors(vec![graphql::GraphQLError::query(
                    "could not read the peer's objects",
                )])
            })
        })
        .await
    }
}

/// What every handler gets: the database and, once the peer is in a network,
/// the resolver of `Network` queries.
#[derive(Clone)]
pub struct PeerState {
    /// The database.
    pub db: Arc<PeerDb>,
    /// Answers `Network` queries; `None` for a stand-alone peer.
    pub network: Option<Arc<dyn NetworkResolver>>,
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
/// refusals, a [`MAX_BODY`] body limit, tracing, and the write policy of
/// `policy` (reads from any origin; writes rate-limited per client address
/// and only from the origins it names, see [`plexus_server::policy`]).
pub fn layers(router: Router, policy: &PolicyArgs) -> Router {
    let router = router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(plexus_server::json_errors));
    plexus_server::policy::guard_writes(router, policy, &[]).layer(TraceLayer::new_for_http())
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
