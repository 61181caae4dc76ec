//! The peer's embedded database: its schema and its objects in one redb file.
//!
//! Three tables:
//!
//! - `schema`: one record, the JSON of the peer's [`Schema`];
//! - `objects`: `(class, id)` → the object's JSON record, so that the objects
//!   of one class are one contiguous key range and a Local Get with a limit
//!   reads only that range, never another class;
//! - `object_class`: `id` → class, to find an object by its id alone.
//!
//! Every method is one redb transaction; every write commits with redb's
//! default durability (fsync before the commit returns), so an acknowledged
//! write survives `kill -9`. The methods block: async callers run them on
//! `tokio::task::spawn_blocking` (see [`super::PeerDb`]).

use std::path::{Path, PathBuf};

use plexus_core::schema::Schema;
use redb::{Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use super::object::{Object, Record};

const SCHEMA: TableDefinition<&str, &str> = TableDefinition::new("schema");
const OBJECTS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("objects");
const OBJECT_CLASS: TableDefinition<u128, &str> = TableDefinition::new("object_class");
const SCHEMA_KEY: &str = "schema";

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
}

fn decode(id: u128, bytes: &[u8]) -> Result<Object, StoreError> {
    let record: Record = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("object {}: {e}", Uuid::from_u128(id))))?;
    Ok(record.into_object(Uuid::from_u128(id)))
}

fn encode(object: &Object) -> Vec<u8> {
    serde_json::to_vec(&Record::of(object)).unwrap_or_default()
}

impl Store {
    /// Opens (or creates) the database in `dir`, creating the directory if needed.
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
        tx.commit()?;
        Ok(Store { db })
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

    /// Replaces the stored schema.
    pub fn save_schema(&self, schema: &Schema) -> Result<(), StoreError> {
        let text = serde_json::to_string(schema).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.db.begin_write()?;
        tx.open_table(SCHEMA)?.insert(SCHEMA_KEY, text.as_str())?;
        tx.commit()?;
        Ok(())
    }

    /// Saves `schema` (which no longer has `class`) only if `class` has no objects,
    /// in one transaction.
    pub fn remove_class(&self, schema: &Schema, class: &str) -> Result<RemoveClass, StoreError> {
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
            tx.open_table(SCHEMA)?.insert(SCHEMA_KEY, text.as_str())?;
        }
        tx.commit()?;
        Ok(RemoveClass::Removed)
    }

    /// Stores a new object; `false` (and nothing written) when its id is taken.
    pub fn insert(&self, object: &Object) -> Result<bool, StoreError> {
        let id = object.id.as_u128();
        let tx = self.db.begin_write()?;
        {
            let mut ids = tx.open_table(OBJECT_CLASS)?;
            if ids.get(id)?.is_some() {
                return Ok(false);
            }
            ids.insert(id, object.class.as_str())?;
            tx.open_table(OBJECTS)?
                .insert((object.class.as_str(), id), encode(object).as_slice())?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Stores many new objects in one transaction (one fsync): all of them,
    /// or none when one id is taken (that id is returned).
    pub fn insert_all(&self, objects: &[Object]) -> Result<Option<Uuid>, StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut ids = tx.open_table(OBJECT_CLASS)?;
            let mut table = tx.open_table(OBJECTS)?;
            for object in objects {
                let id = object.id.as_u128();
                if ids.insert(id, object.class.as_str())?.is_some() {
                    drop((ids, table));
                    tx.abort()?;
                    return Ok(Some(object.id));
                }
                table.insert((object.class.as_str(), id), encode(object).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(None)
    }

    /// Replaces an existing object (its class may change); `false` when there is none.
    pub fn replace(&self, object: &Object) -> Result<bool, StoreError> {
        let id = object.id.as_u128();
        let tx = self.db.begin_write()?;
        {
            let mut ids = tx.open_table(OBJECT_CLASS)?;
            let Some(old_class) = ids.get(id)?.map(|c| c.value().to_owned()) else {
                return Ok(false);
            };
            let mut objects = tx.open_table(OBJECTS)?;
            objects.remove((old_class.as_str(), id))?;
            objects.insert((object.class.as_str(), id), encode(object).as_slice())?;
            ids.insert(id, object.class.as_str())?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Deletes the object `id`; the deleted object, or `None` when there was none.
    pub fn delete(
        &self,
        id: Uuid,
        expect: impl FnOnce(&Object) -> bool,
    ) -> Result<Option<Object>, StoreError> {
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
            object
        };
        tx.commit()?;
        Ok(Some(removed))
    }

    /// A consistent read-only view of the objects.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(Snapshot {
            objects: tx.open_table(OBJECTS)?,
            ids: tx.open_table(OBJECT_CLASS)?,
        })
    }
}

/// A read transaction over the objects: every read sees the same state.
pub struct Snapshot {
    objects: ReadOnlyTable<(&'static str, u128), &'static [u8]>,
    ids: ReadOnlyTable<u128, &'static str>,
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

    /// Visits the objects of `class` in id order until `visit` returns `false`.
    /// Reads only that class's key range.
    pub fn scan_class(
        &self,
        class: &str,
        visit: &mut dyn FnMut(Object) -> bool,
    ) -> Result<(), StoreError> {
        for entry in self.objects.range((class, 0u128)..=(class, u128::MAX))? {
            let (key, value) = entry?;
            if !visit(decode(key.value().1, value.value())?) {
                break;
            }
        }
        Ok(())
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
            assert!(store.insert(&a).unwrap());
            assert!(store.insert(&b).unwrap());
            assert!(!store.insert(&a).unwrap(), "same id twice");
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
        assert!(store.replace(&moved).unwrap());
        let snap = store.snapshot().unwrap();
        let mut count = 0;
        snap.scan_class("B", &mut |_| {
            count += 1;
            true
        })
        .unwrap();
        assert_eq!(count, 0);
        assert_eq!(
            store.remove_class(&Schema::default(), "A").unwrap(),
            RemoveClass::NotEmpty
        );
        assert_eq!(store.delete(a.id, |_| true).unwrap(), Some(a.clone()));
        assert_eq!(store.delete(a.id, |_| true).unwrap(), None);
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 1);
    }

    #[test]
    fn insert_all_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let batch: Vec<Object> = (0..100).map(|n| object("A", n)).collect();
        assert_eq!(store.insert_all(&batch).unwrap(), None);
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 100);
        let again = vec![object("A", 1), batch[7].clone()];
        assert_eq!(store.insert_all(&again).unwrap(), Some(batch[7].id));
        assert_eq!(store.snapshot().unwrap().len().unwrap(), 100);
    }
}
