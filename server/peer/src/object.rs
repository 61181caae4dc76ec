//! The record a peer keeps on disk for an [`Object`].

pub use plexus_core::object::Object;
use plexus_core::schema::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The record kept on disk: the object with its kind.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    pub(crate) class: String,
    pub(crate) schema: Map<String, Value>,
    pub(crate) creation_time_unix: u64,
    pub(crate) last_update_time_unix: u64,
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

    pub(crate) fn of(object: &Object) -> Self {
        Record {
            kind: object.kind,
            class: object.class.clone(),
            schema: object.schema.clone(),
            creation_time_unix: object.creation_time_unix,
            last_update_time_unix: object.last_update_time_unix,
        }
    }
}
