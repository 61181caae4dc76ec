//! The record a peer keeps on disk for an [`Object`].

pub use plexus_core::object::Object;
use plexus_core::schema::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The record kept on disk: the object with its kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    pub(crate) class: String,
    pub(crate) schema: Map<String, Value>,
    pub(crate) creation_time_unix: u64,
    pub(crate) last_update_time_unix: u64,
}

/// The record of an object as written: the same fields, borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordRef<'a> {
    pub(crate) kind: Kind,
    pub(crate) class: &'a str,
    pub(crate) schema: &'a Map<String, Value>,
    pub(crate) creation_time_unix: u64,
    pub(crate) last_update_time_unix: u64,
}

impl<'a> RecordRef<'a> {
    pub(crate) fn of(object: &'a Object) -> Self {
        RecordRef {
            kind: object.kind,
            class: &object.class,
            schema: &object.schema,
            creation_time_unix: object.creation_time_unix,
            last_update_time_unix: object.last_update_time_unix,
        }
    }
}

impl Record {
    pub(crate) fn into_object(self, id: Uuid) -> Object {
        Object {
            id,
            kind: self.kind,
            class: self.class,
            schema: self.schema,
            creation_time_unix: self.creation_time_unix,
            last_update_time_unix: self.last_update_time_unix,
        }
    }
}
