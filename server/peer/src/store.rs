//! The peer's embedded database: its schema, its objects and their property
//! indexes in one redb file.
//!
//! Five tables:
//!
//! - `schema`: one record, the JSON of the peer's [`Schema`];
//! - `objects`: `(class, id)` → the object's JSON record, so that the objects
//!   of one class are one contiguous key range and a Local Get with a limit
//!   reads only that range, never another class;
//! - `object_class`: `id` → class, to find an object by its id alone;
//! - `index`: `(class, property, key, id)` → `()`, the entries of
//!   [`super::index`] (equality, order and words), so that a filter reads one
//!   key range per comparison instead of every object;
//! - `meta`: `format` → the layout version ([`FORMAT`]). A database of an
//!   older layout (no `meta`) gets its indexes built when it is opened.
//!
//! Every method is one redb transaction, and an object's index entries are
//! written, replaced and removed in the object's own transaction, so an
//! acknowledged write is found by every filter and a crash never leaves an
//! index out of step with its objects. Every write commits with redb's
//! default durability (fsync before the commit returns), so an acknowledged
//! write survives `kill -9`. The methods block: async callers run them on
//! `tokio::task::spawn_blocking` (see [`super::PeerDb`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use plexus_core::filter::Filter;
use plexus_core::schema::{Kind, Schema};
use redb::{
    Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use serde_json::Value;
use uuid::Uuid;

use super::index::{self, Candidates};
use super::object::{Object, Record, RecordRef};

const SCHEMA: TableDefinition<&str, &str> = TableDefinition::new("schema");
const OBJECTS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("objects");
const OBJECT_CLASS: TableDefinition<u128, &str> = TableDefinition::new("object_class");
type IndexKey<'a> = (&'a str, &'a str, &'a [u8], u128);
const INDEX: TableDefinition<IndexKey, ()> = TableDefinition::new("index");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
const FORMAT_KEY: &str = "format";

/// The layout version this build writes: 1 added the `index` table.
/// A database without it (or with an older one) is indexed when opened.
pub const FORMAT: u64 = 1;

/// The file inside the data directory.
pub const DB_FILE: &str = "peer.redb";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory cannot be created or the database file cannot be opened.
    #[error("cannot open the data directory {path}: {reason}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the database.
    #[error("the data directory {0} is in use by another process")]
    Locked(PathBuf),
    /// The database failed.
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    /// A stored record does not parse.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The write was not committed: the request it answers ran out of time.
    #[error("the write was not committed: its request ran out of time (--request-timeout)")]
    TimedOut,
    /// The read stopped: its query was cancelled.
    #[error("the query was cancelled (time is up or the client went away)")]
    Cancelled,
}

/// Asked right before a write commits: `false` aborts it
/// ([`StoreError::TimedOut`]), because the request it answers was answered
/// 503 already (see `plexus_server::serve::Commit`).
pub type MayCommit<'a> = &'a dyn Fn() -> bool;

/// Asked as a read goes, every [`CHECK_EVERY`] rows: `true` stops it
/// ([`StoreError::Cancelled`]).
pub type Stop<'a> = &'a dyn Fn() -> bool;

/// How many rows (objects or index entries) a read takes between two
/// looks at its [`Stop`]: a few microseconds of work each, so that a
/// cancelled query stops within a millisecond or so.
pub const CHECK_EVERY: usize = 256;

/// Counts rows and looks at `stop` every [`CHECK_EVERY`] of them.
struct Watch<'a> {
    stop: Stop<'a>,
    rows: usize,
}

impl<'a> Watch<'a> {
    fn new(stop: Stop<'a>) -> Self {
        Watch { stop, rows: 0 }
    }

    fn row(&mut self) -> Result<(), StoreError> {
        self.rows += 1;
        if self.rows % CHECK_EVERY == 0 && (self.stop)() {
            return Err(StoreError::Cancelled);
        }
        Ok(())
    }
}

/// Never stops.
pub fn never() -> bool {
    false
}

/// Commits `tx` when `may_commit` says so, else aborts it.
fn commit(tx: WriteTransaction, may_commit: MayCommit<'_>) -> Result<(), StoreError> {
    if !may_commit() {
        tx.abort()?;
        return Err(StoreError::TimedOut);
    }
    tx.commit()?;
    Ok(())
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What [`Store::remove_class`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveClass {
    /// The class had no objects; the new schema is committed.
    Removed,
    /// The class still has objects; nothing changed.
    NotEmpty,
}

/// The peer's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// The last committed schema, which says which index each property has.
    schema: RwLock<Arc<Schema>>,
}

fn decode(id: u128, bytes: &[u8]) -> Result<Object, StoreError> {
    let record: Record = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("object {}: {e}", Uuid::from_u128(id))))?;
    Ok(record.into_object(Uuid::from_u128(id)))
}

fn encode(object: &Object) -> Vec<u8> {
    serde_json::to_vec(&RecordRef::of(object)).unwrap_or_default()
}

fn read_schema(tx: &WriteTransaction) -> Result<Schema, StoreError> {
    let table = tx.open_table(SCHEMA)?;
    let text = table.get(SCHEMA_KEY)?;
    match text {
        Some(text) => serde_json::from_str(text.value())
            .map_err(|e| StoreError::Corrupt(format!("schema: {e}"))),
        None => Ok(Schema::default()),
    }
}

/// Adds (`add`) or removes the index entries of `object`.
fn index_object(
    table: &mut Table<IndexKey, ()>,
    schema: &Schema,
    object: &Object,
    add: bool,
) -> Result<(), StoreError> {
    let Some(class) = schema.class(object.kind, &object.class) else {
        return Ok(());
    };
    let id = object.id.as_u128();
    for (property, key) in index::entries(class, &object.schema) {
        let entry = (object.class.as_str(), property.as_str(), key.as_slice(), id);
        if add {
            table.insert(entry, ())?;
        } else {
            table.remove(entry)?;
        }
    }
    Ok(())
}

/// Empties the `index` table and fills it from every object, then records [`FORMAT`].
fn rebuild_indexes(tx: &WriteTransaction, schema: &Schema) -> Result<u64, StoreError> {
    tx.delete_table(INDEX)?;
    let mut table = tx.open_table(INDEX)?;
    let objects = tx.open_table(OBJECTS)?;
    let mut count = 0;
    for entry in objects.iter()? {
        let (key, value) = entry?;
        let object = decode(key.value().1, value.value())?;
        index_object(&mut table, schema, &object, true)?;
        count += 1;
    }
    tx.open_table(META)?.insert(FORMAT_KEY, FORMAT)?;
    Ok(count)
}

/// The tables an insert writes, opened once per transaction.
struct Writer<'t> {
    ids: Table<'t, u128, &'static str>,
    objects: Table<'t, (&'static str, u128), &'static [u8]>,
    index: Table<'t, IndexKey<'static>, ()>,
}

impl<'t> Writer<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Writer {
            ids: tx.open_table(OBJECT_CLASS)?,
            objects: tx.open_table(OBJECTS)?,
            index: tx.open_table(INDEX)?,
        })
    }

    /// Stores `object` unless its id is taken (`false`, nothing written).
    fn insert(&mut self, schema: &Schema, object: &Object) -> Result<bool, StoreError> {
        let id = object.id.as_u128();
        if self.ids.get(id)?.is_some() {
            return Ok(false);
        }
        self.ids.insert(id, object.class.as_str())?;
        self.objects
            .insert((object.class.as_str(), id), encode(object).as_slice())?;
        index_object(&mut self.index, schema, object, true)?;
        Ok(true)
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`, creating the directory if
    /// needed. A database of an older layout gets its indexes built here.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.to_owned(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let db = match Database::create(dir.join(DB_FILE)) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked(dir.to_owned()));
            }
            Err(e) => return Err(open_err(e.to_string())),
        };
        let tx = db.begin_write()?;
        tx.open_table(SCHEMA)?;
        tx.open_table(OBJECTS)?;
        tx.open_table(OBJECT_CLASS)?;
        tx.open_table(INDEX)?;
        let schema = read_schema(&tx)?;
        let format = tx.open_table(META)?.get(FORMAT_KEY)?.map(|v| v.value());
        if format != Some(FORMAT) {
            let count = rebuild_indexes(&tx, &schema)?;
            tracing::info!(
                objects = count,
                from = format.unwrap_or(0),
                to = FORMAT,
                "indexed a database of an older layout"
            );
        }
        tx.commit()?;
        Ok(Store {
            db,
            schema: RwLock::new(Arc::new(schema)),
        })
    }

    fn cached_schema(&self) -> Arc<Schema> {
        match self.schema.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn cache_schema(&self, schema: &Schema) {
        let next = Arc::new(schema.clone());
        match self.schema.write() {
            Ok(mut s) => *s = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// The stored schema (empty when none was ever saved).
    pub fn load_schema(&self) -> Result<Schema, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SCHEMA)?;
        match table.get(SCHEMA_KEY)? {
            Some(text) => serde_json::from_str(text.value())
                .map_err(|e| StoreError::Corrupt(format!("schema: {e}"))),
            None => Ok(Schema::default()),
        }
    }

    /// Replaces the stored schema. Indexes follow it: a property added later
    /// has no values yet, and a property's type never changes.
    pub fn save_schema(
        &self,
        schema: &Schema,
        may_commit: MayCommit<'_>,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(schema).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.db.begin_write()?;
        tx.open_table(SCHEMA)?.insert(SCHEMA_KEY, text.as_str())?;
        commit(tx, may_commit)?;
        self.cache_schema(schema);
        Ok(())
    }

    /// Saves `schema` (which no longer has `class`) only if `class` has no
    /// objects, in one transaction that also drops the class's index entries.
    pub fn remove_class(
        &self,
        schema: &Schema,
        class: &str,
        may_commit: MayCommit<'_>,
    ) -> Result<RemoveClass, StoreError> {
        let text = serde_json::to_string(schema).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.db.begin_write()?;
        {
            let objects = tx.open_table(OBJECTS)?;
            if objects
                .range((class, 0u128)..=(class, u128::MAX))?
                .next()
                .is_some()
            {
                return Ok(RemoveClass::NotEmpty);
            }
            let mut index = tx.open_table(INDEX)?;
            let stale: Vec<(String, Vec<u8>, u128)> = index
                .range(class_range(class))?
                .map(|e| {
                    e.map(|(k, _)| {
                        let (_, p, key, id) = k.value();
                        (p.to_owned(), key.to_vec(), id)
                    })
                })
                .collect::<Result<_, _>>()?;
            for (p, key, id) in &stale {
                index.remove((class, p.as_str(), key.as_slice(), *id))?;
            }
            tx.open_table(SCHEMA)?.insert(SCHEMA_KEY, text.as_str())?;
        }
        commit(tx, may_commit)?;
        self.cache_schema(schema);
        Ok(RemoveClass::Removed)
    }

    /// Stores a new object; `false` (and nothing written) when its id is taken.
    pub fn insert(&self, object: &Object, may_commit: MayCommit<'_>) -> Result<bool, StoreError> {
        let schema = self.cached_schema();
        let tx = self.db.begin_write()?;
        if !Writer::open(&tx)?.insert(&schema, object)? {
            return Ok(false);
        }
        commit(tx, may_commit)?;
        Ok(true)
    }

    /// Stores many new objects in one transaction (one fsync): all of them,
    /// or none when one id is taken (that id is returned).
    pub fn insert_all(
        &self,
        objects: &[Object],
        may_commit: MayCommit<'_>,
    ) -> Result<Option<Uuid>, StoreError> {
        let schema = self.cached_schema();
        let tx = self.db.begin_write()?;
        {
            let mut writer = Writer::open(&tx)?;
            for object in objects {
                if !writer.insert(&schema, object)? {
                    drop(writer);
                    tx.abort()?;
                    return Ok(Some(object.id));
                }
            }
        }
        commit(tx, may_commit)?;
        Ok(None)
    }

    /// Stores each object whose id is free, in one transaction (one fsync);
    /// per object, whether it was stored (`false`: its id was taken, by an
    /// older object or an earlier one of the same batch).
    ///
    /// Each table is written in key order (ids, objects, index entries),
    /// so that the B-trees are walked from left to right once per batch
    /// rather than at random.
    pub fn insert_batch(
        &self,
        objects: &[Object],
        may_commit: MayCommit<'_>,
    ) -> Result<Vec<bool>, StoreError> {
        let schema = self.cached_schema();
        let tx = self.db.begin_write()?;
        let mut stored = Vec::with_capacity(objects.len());
        {
            let mut writer = Writer::open(&tx)?;
            let mut seen = std::collections::HashSet::with_capacity(objects.len());
            for object in objects {
                let id = object.id.as_u128();
                stored.push(seen.insert(id) && writer.ids.get(id)?.is_none());
            }
            let mut fresh: Vec<&Object> = objects
                .iter()
                .zip(&stored)
                .filter_map(|(object, &stored)| stored.then_some(object))
                .collect();
            fresh.sort_unstable_by_key(|o| o.id.as_u128());
            for object in &fresh {
                writer
                    .ids
                    .insert(object.id.as_u128(), object.class.as_str())?;
            }
            fresh.sort_by(|a, b| (&a.class, a.id).cmp(&(&b.class, b.id)));
            for object in &fresh {
                writer.objects.insert(
                    (object.class.as_str(), object.id.as_u128()),
                    encode(object).as_slice(),
                )?;
            }
            let mut entries = Vec::with_capacity(fresh.len() * 4);
            for object in &fresh {
                if let Some(class) = schema.class(object.kind, &object.class) {
                    for (property, key) in index::entries(class, &object.schema) {
                        entries.push((object.class.as_str(), property, key, object.id.as_u128()));
                    }
                }
            }
            entries.sort_unstable();
            for (class, property, key, id) in &entries {
                writer
                    .index
                    .insert((*class, property.as_str(), key.as_slice(), *id), ())?;
            }
        }
        commit(tx, may_commit)?;
        Ok(stored)
    }

    /// Replaces an existing object (its class may change); `false` when there is none.
    pub fn replace(&self, object: &Object, may_commit: MayCommit<'_>) -> Result<bool, StoreError> {
        let schema = self.cached_schema();
        let id = object.id.as_u128();
        let tx = self.db.begin_write()?;
        {
            let mut ids = tx.open_table(OBJECT_CLASS)?;
            let Some(old_class) = ids.get(id)?.map(|c| c.value().to_owned()) else {
                return Ok(false);
            };
            let mut objects = tx.open_table(OBJECTS)?;
            let old = objects
                .remove((old_class.as_str(), id))?
                .map(|b| decode(id, b.value()))
                .transpose()?;
            let mut index = tx.open_table(INDEX)?;
            if let Some(old) = old {
                index_object(&mut index, &schema, &old, false)?;
            }
            objects.insert((object.class.as_str(), id), encode(object).as_slice())?;
            index_object(&mut index, &schema, object, true)?;
            ids.insert(id, object.class.as_str())?;
        }
        commit(tx, may_commit)?;
        Ok(true)
    }

    /// Deletes the object `id`; the deleted object, or `None` when there was none.
    pub fn delete(
        &self,
        id: Uuid,
        expect: impl FnOnce(&Object) -> bool,
        may_commit: MayCommit<'_>,
    ) -> Result<Option<Object>, StoreError> {
        let schema = self.cached_schema();
        let key = id.as_u128();
        let tx = self.db.begin_write()?;
        let removed = {
            let mut ids = tx.open_table(OBJECT_CLASS)?;
            let Some(class) = ids.get(key)?.map(|c| c.value().to_owned()) else {
                return Ok(None);
            };
            let mut objects = tx.open_table(OBJECTS)?;
            let Some(object) = objects
                .get((class.as_str(), key))?
                .map(|b| decode(key, b.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            if !expect(&object) {
                return Ok(None);
            }
            objects.remove((class.as_str(), key))?;
            ids.remove(key)?;
            index_object(&mut tx.open_table(INDEX)?, &schema, &object, false)?;
            object
        };
        commit(tx, may_commit)?;
        Ok(Some(removed))
    }

    /// A consistent read-only view of the objects and their indexes.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let schema = self.cached_schema();
        let tx = self.db.begin_read()?;
        Ok(Snapshot {
            objects: tx.open_table(OBJECTS)?,
            ids: tx.open_table(OBJECT_CLASS)?,
            index: tx.open_table(INDEX)?,
            schema,
        })
    }

    /// Checks that the indexes hold exactly the entries of the stored
    /// objects: `Ok(None)` when they agree, else the first difference.
    pub fn check_indexes(&self) -> Result<Option<String>, StoreError> {
        let schema = self.cached_schema();
        let tx = self.db.begin_read()?;
        let objects = tx.open_table(OBJECTS)?;
        let mut expected = BTreeSet::new();
        for entry in objects.iter()? {
            let (key, value) = entry?;
            let (class, id) = key.value();
            let object = decode(id, value.value())?;
            if let Some(class_def) = schema.class(object.kind, class) {
                for (property, key) in index::entries(class_def, &object.schema) {
                    expected.insert((class.to_owned(), property, key, id));
                }
            }
        }
        let mut found = BTreeSet::new();
        for entry in tx.open_table(INDEX)?.iter()? {
            let (key, _) = entry?;
            let (class, property, key, id) = key.value();
            found.insert((class.to_owned(), property.to_owned(), key.to_vec(), id));
        }
        Ok(expected
            .symmetric_difference(&found)
            .next()
            .map(|(class, property, key, id)| {
                let side = if found.contains(&(class.clone(), property.clone(), key.clone(), *id)) {
                    "an index entry without its object"
                } else {
                    "an object without its index entry"
                };
                format!(
                    "{side}: {class}.{property} {key:?} {}",
                    Uuid::from_u128(*id)
                )
            }))
    }
}

fn class_range(class: &str) -> std::ops::Range<IndexKey<'_>> {
    (class, "", &[][..], 0)..(class, "\u{10FFFF}\u{10FFFF}", &[][..], 0)
}

/// A read transaction over the objects: every read sees the same state.
pub struct Snapshot {
    objects: ReadOnlyTable<(&'static str, u128), &'static [u8]>,
    ids: ReadOnlyTable<u128, &'static str>,
    index: ReadOnlyTable<IndexKey<'static>, ()>,
    schema: Arc<Schema>,
}

impl Snapshot {
    /// The object `id`, if any.
    pub fn get(&self, id: Uuid) -> Result<Option<Object>, StoreError> {
        let key = id.as_u128();
        let Some(class) = self.ids.get(key)?.map(|c| c.value().to_owned()) else {
            return Ok(None);
        };
        self.objects
            .get((class.as_str(), key))?
            .map(|b| decode(key, b.value()))
            .transpose()
    }

    /// The objects a reference value (one beacon or a list of them) points
    /// at. Beacons to missing objects, or to an object of another kind, are skipped.
    pub fn follow(&self, reference: &Value) -> Result<Vec<Object>, StoreError> {
        let mut out = Vec::new();
        for (kind, id) in beacons(reference) {
            if let Some(object) = self.get(id)?
                && object.kind == kind
            {
                out.push(object);
            }
        }
        Ok(out)
    }

    /// Visits the objects of `class` in id order until `visit` returns `false`.
    /// Reads only that class's key range.
    pub fn scan_class(
        &self,
        class: &str,
        visit: &mut dyn FnMut(Object) -> bool,
    ) -> Result<(), StoreError> {
        self.scan_class_until(class, &never, visit)
    }

    /// [`Snapshot::scan_class`], stopped ([`StoreError::Cancelled`]) once
    /// `stop` says so, looked at every [`CHECK_EVERY`] objects.
    pub fn scan_class_until(
        &self,
        class: &str,
        stop: Stop<'_>,
        visit: &mut dyn FnMut(Object) -> bool,
    ) -> Result<(), StoreError> {
        let mut watch = Watch::new(stop);
        for entry in self.objects.range((class, 0u128)..=(class, u128::MAX))? {
            watch.row()?;
            let (key, value) = entry?;
            if !visit(decode(key.value().1, value.value())?) {
                break;
            }
        }
        Ok(())
    }

    /// The ids of the entries of `class`.`property` with `start <= key < end`
    /// that are in `keep` (every id when `None`), or `None` when the range
    /// holds more than `cap` entries.
    fn index_range(
        &self,
        class: &str,
        property: &str,
        (start, end): (&[u8], &[u8]),
        cap: usize,
        keep: Option<&BTreeSet<u128>>,
        stop: Stop<'_>,
    ) -> Result<Option<BTreeSet<u128>>, StoreError> {
        let mut ids = BTreeSet::new();
        if start >= end {
            return Ok(Some(ids));
        }
        let mut watch = Watch::new(stop);
        let entries = self
            .index
            .range((class, property, start, 0u128)..(class, property, end, 0u128))?;
        for (read, entry) in entries.enumerate() {
            if read == cap {
                return Ok(None);
            }
            watch.row()?;
            let id = entry?.0.value().3;
            if keep.is_none_or(|k| k.contains(&id)) {
                ids.insert(id);
            }
        }
        Ok(Some(ids))
    }

    /// The plan [`Snapshot::query`] follows for `filter` over `class` (for
    /// tests and diagnostics).
    pub fn plan(&self, kind: Kind, class: &str, filter: &Filter) -> index::Plan {
        match self.schema.class(kind, class) {
            Some(class_def) => index::plan(class_def, filter),
            None => index::Plan::Scan,
        }
    }

    /// Up to `limit` objects of `class` (of `kind`) that pass `filter`, in
    /// id order: the answer of a scan with [`Filter::matches`], read from the
    /// indexes where they serve (see [`index::plan`]). Every candidate an
    /// index gives is checked with the filter; a scan stops at `limit`.
    pub fn query(
        &self,
        kind: Kind,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, StoreError> {
        self.query_until(kind, class, filter, limit, &never)
    }

    /// [`Snapshot::query`], stopped ([`StoreError::Cancelled`]) once `stop`
    /// says so: every scan, index range and list of candidates looks at it
    /// every [`CHECK_EVERY`] rows, so a cancelled query frees its thread
    /// at once rather than at the end of its scan.
    pub fn query_until(
        &self,
        kind: Kind,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
        stop: Stop<'_>,
    ) -> Result<Vec<Object>, StoreError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let candidates = match filter {
            None => Candidates::All,
            Some(filter) => {
                let plan = self.plan(kind, class, filter);
                index::candidates(&plan, &mut |property, start, end, cap, keep| {
                    self.index_range(class, property, (start, end), cap, keep, stop)
                })?
            }
        };
        let mut failure = None;
        let mut pass = |object: &Object| -> bool {
            object.kind == kind
                && filter.is_none_or(|f| {
                    f.matches(&object.schema, &mut |reference| {
                        self.follow(reference).unwrap_or_else(|e| {
                            failure = Some(e);
                            Vec::new()
                        })
                    })
                })
        };
        match &candidates {
            Candidates::Only(ids) => {
                let mut watch = Watch::new(stop);
                for &id in ids {
                    watch.row()?;
                    let Some(bytes) = self.objects.get((class, id))? else {
                        continue;
                    };
                    let object = decode(id, bytes.value())?;
                    if pass(&object) {
                        found.push(object);
                        if found.len() >= limit {
                            break;
                        }
                    }
                }
            }
            Candidates::All | Candidates::AllBut(_) => {
                self.scan_class_until(class, stop, &mut |object| {
                    if candidates.contains(object.id.as_u128()) && pass(&object) {
                        found.push(object);
                    }
                    found.len() < limit
                })?;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// The schema this snapshot plans with.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// How many objects the store holds, of every class.
    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.ids.len()?)
    }

    /// Whether the store holds no object.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

pub use plexus_core::schema::beacons;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use plexus_core::schema::Kind;
    use serde_json::{Map, json};

    use super::*;

    fn object(class: &str, n: i64) -> Object {
        let mut schema = Map::new();
        schema.insert("n".into(), json!(n));
        Object {
            id: Uuid::new_v4(),
            kind: Kind::Things,
            class: class.into(),
            schema,
            creation_time_unix: 1,
            last_update_time_unix: 1,
        }
    }

    #[test]
    fn objects_survive_reopen_and_scans_stay_in_their_class() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (object("A", 1), object("B", 2));
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.insert(&a, &|| true).unwrap());
            assert!(store.insert(&b, &|| true).unwrap());
            assert!(!store.insert(&a, &|| true).unwrap(), "same id twice");
            assert!(matches!(
                Store::open(dir.path()),
                Err(StoreError::Locked(_))
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.get(a.id).unwrap(), Some(a.clone()));
        let mut seen = Vec::new();
        snap.scan_class("A", &mut |o| {
            seen.push(o);
            true
        })
        .unwrap();
        assert_eq!(seen, vec![a.clone()]);
        let mut moved = b.clone();
        moved.class = "A".into();
        assert!(store.replace(&moved, &|| true).unwrap());
        let snap = store.snapshot().unwrap();
        let mut count = 0;
        snap.scan_class("B", &mut |_| {
            count += 1;
            true
        })
        .unwrap();
        assert_eq!(count, 0);
        assert_eq!(
            store
                .remove_class(&Schema::default(), "A", &|| true)
                .unwrap(),
            RemoveClass::NotEmpty
        );
        assert_eq!(
            store.delete(a.id, |_| true, &|| true).unwrap(),
            Some(a.clone())
        );
        assert_eq!(store.delete(a.id, |_| true, &|| true).unwrap(), None);
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 1);
    }

    #[test]
    fn a_scan_observes_its_stop_flag_mid_way() {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let batch: Vec<Object> = (0..10 * CHECK_EVERY as i64)
            .map(|n| object("A", n))
            .collect();
        assert_eq!(store.insert_all(&batch, &|| true).unwrap(), None);
        let snap = store.snapshot().unwrap();
        assert_eq!(
            snap.query(Kind::Things, "A", None, usize::MAX)
                .unwrap()
                .len(),
            batch.len()
        );
        // The flag is set while the scan runs (as a timeout would): the
        // scan stops within CHECK_EVERY objects of it.
        let cancelled = AtomicBool::new(false);
        let visited = Cell::new(0);
        let stop = || cancelled.load(Ordering::Relaxed);
        let outcome = snap.scan_class_until("A", &stop, &mut |_| {
            visited.set(visited.get() + 1);
            if visited.get() == 3 * CHECK_EVERY + 7 {
                cancelled.store(true, Ordering::Relaxed);
            }
            true
        });
        assert!(matches!(outcome, Err(StoreError::Cancelled)), "{outcome:?}");
        assert!(
            visited.get() < 4 * CHECK_EVERY + 1,
            "visited {} of {}",
            visited.get(),
            batch.len()
        );
        // A query's scan and its index reads stop the same way.
        let looks = Cell::new(0);
        let after_two = || {
            looks.set(looks.get() + 1);
            looks.get() > 2
        };
        let outcome = snap.query_until(Kind::Things, "A", None, usize::MAX, &after_two);
        assert!(matches!(outcome, Err(StoreError::Cancelled)));
        assert_eq!(
            looks.get(),
            3,
            "looked every {CHECK_EVERY} rows, not once per row"
        );
    }

    #[test]
    fn a_write_that_may_not_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let batch: Vec<Object> = (0..10).map(|n| object("A", n)).collect();
        let refused = store.insert_batch(&batch, &|| false);
        assert!(matches!(refused, Err(StoreError::TimedOut)), "{refused:?}");
        assert!(matches!(
            store.insert(&batch[0], &|| false),
            Err(StoreError::TimedOut)
        ));
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 0);
        assert_eq!(
            store.insert_batch(&batch, &|| true).unwrap(),
            vec![true; 10]
        );
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 10);
    }

    #[test]
    fn insert_all_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let batch: Vec<Object> = (0..100).map(|n| object("A", n)).collect();
        assert_eq!(store.insert_all(&batch, &|| true).unwrap(), None);
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 100);
        let again = vec![object("A", 1), batch[7].clone()];
        assert_eq!(
            store.insert_all(&again, &|| true).unwrap(),
            Some(batch[7].id)
        );
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 100);
    }

    #[test]
    fn a_database_of_the_layout_before_indexes_is_indexed_when_opened() {
        use plexus_core::filter::{CompareOp, Operand};
        use plexus_core::schema::{Class, Property};
        let dir = tempfile::tempdir().unwrap();
        let mut schema = Schema::default();
        schema
            .add_class(
                Kind::Things,
                Class {
                    class: "A".into(),
                    description: String::new(),
                    properties: vec![Property {
                        name: "n".into(),
                        data_type: vec!["int".into()],
                        description: String::new(),
                        keywords: Vec::new(),
                    }],
                    keywords: Vec::new(),
                },
            )
            .unwrap();
        let objects: Vec<Object> = (0..50).map(|n| object("A", n)).collect();
        {
            // The layout of format 0: three tables, no `index`, no `meta`.
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(SCHEMA)
                .unwrap()
                .insert(SCHEMA_KEY, serde_json::to_string(&schema).unwrap().as_str())
                .unwrap();
            for o in &objects {
                let id = o.id.as_u128();
                tx.open_table(OBJECT_CLASS)
                    .unwrap()
                    .insert(id, "A")
                    .unwrap();
                tx.open_table(OBJECTS)
                    .unwrap()
                    .insert(("A", id), encode(o).as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
            let read = db.begin_read().unwrap();
            assert!(read.open_table(INDEX).is_err(), "no index table yet");
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check_indexes().unwrap(), None);
        let filter = Filter::Compare {
            op: CompareOp::Equal,
            hops: Vec::new(),
            property: "n".into(),
            value: Operand::Int(7),
        };
        let snap = store.snapshot().unwrap();
        assert!(matches!(
            snap.plan(Kind::Things, "A", &filter),
            index::Plan::Range { .. }
        ));
        let found = snap.query(Kind::Things, "A", Some(&filter), 10).unwrap();
        assert_eq!(found, vec![objects[7].clone()]);
        let tx = store.db.begin_read().unwrap();
        let format = tx
            .open_table(META)
            .unwrap()
            .get(FORMAT_KEY)
            .unwrap()
            .map(|v| v.value());
        assert_eq!(format, Some(FORMAT));
    }
}
