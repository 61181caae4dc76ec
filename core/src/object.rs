//! An object of a peer's knowledge graph (a Thing or an Action), as stored
//! and as answered over REST.

use crate::schema::Kind;
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

/// The body of `POST /v1/things` and `PUT /v1/things/{id}` (and actions):
/// what a writer sends for a new object, before it is checked against the
/// schema ([`crate::schema::Schema::check_object`]).
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
