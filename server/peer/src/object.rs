//! An object of the peer's knowledge graph, as stored and as answered over REST.

use plexus_core::schema::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// One Thing or Action: its class, its property values and its times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object {
    /// Its id.
    pub id: Uuid,
    /// Whether it is a Thing or an Action (not part of the REST body).
    #[serde(skip_serializing)]
    pub kind: Kind,
    /// Its class.
    pub class: String,
    /// Its property values, checked against the schema when written.
    pub schema: Map<String, Value>,
    /// When it was created, in ms since the Unix epoch.
    pub creation_time_unix: u64,
    /// When it was last replaced, in ms since the Unix epoch.
    pub last_update_time_unix: u64,
}

impl Object {
    /// The beacon that references this object: `weaviate://localhost/things/<uuid>`.
    pub fn beacon(&self) -> String {
        format!("weaviate://localhost/{}/{}", self.kind, self.id)
    }
}

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
