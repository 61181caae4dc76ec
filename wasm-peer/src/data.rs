//! The tab's knowledge graph in memory: its schema, its objects, and the
//! GraphQL engine built on them and on the remote schemas it holds.
//!
//! Writes take the JSON of the native peer's REST API and are checked by
//! the same code ([`Schema::add_class`], [`Schema::check_object`]); their
//! errors carry the status that API answers ([`SchemaError::status`]).
//! Plain Rust, tested natively.

use std::collections::BTreeMap;
use std::sync::Arc;

use plexus_core::PeerName;
use plexus_core::contextionary::Contextionary;
use plexus_core::filter::Filter;
use plexus_core::object::{NewObject, Object};
use plexus_core::schema::{Class, Kind, Schema, SchemaError, beacons};
use plexus_graphql::{Engine, Limits, Meaning, Source, SourceError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Objects a tab holds at most, by default (`maxObjects`).
pub const DEFAULT_MAX_OBJECTS: usize = 10_000;

/// A refused write: the HTTP status the native peer's REST API answers for
/// it, and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestError {
    /// E.g. 404 for an unknown class, 422 for a broken rule.
    pub status: u16,
    /// For a person.
    pub message: String,
}

impl RestError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        RestError {
            status,
            message: message.into(),
        }
    }
}

impl From<SchemaError> for RestError {
    fn from(e: SchemaError) -> Self {
        RestError::new(e.status(), e.to_string())
    }
}

/// What a tab keeps across reloads: its schema and objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Its schema.
    pub schema: Schema,
    /// Its objects, each with its kind.
    pub objects: Vec<SavedObject>,
}

/// An object as saved: the REST form and its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedObject {
    /// Things or actions.
    pub kind: Kind,
    /// The object (its `kind` field is not in its JSON).
    pub object: Value,
}

/// The kind named by `segment` (`things` or `actions`), as a path segment
/// of the REST API: 404 otherwise.
pub fn kind(segment: &str) -> Result<Kind, RestError> {
    Kind::parse(segment)
        .filter(|k| k.as_str() == segment)
        .ok_or_else(|| {
            RestError::new(
                404,
                format!("no such resource {segment:?}: use things or actions"),
            )
        })
}

/// A JSON body as the REST API reads it: 400 when it is not JSON, 422 when
/// it does not fit.
fn body<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, RestError> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| RestError::new(400, format!("the body is not JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| RestError::new(422, e.to_string()))
}

/// The tab's schema, objects and engine.
#[derive(Debug)]
pub struct Data {
    name: PeerName,
    schema: Arc<Schema>,
    objects: Arc<BTreeMap<Uuid, Object>>,
    remotes: BTreeMap<PeerName, Arc<Schema>>,
    engine: Arc<Engine>,
    limits: Limits,
    max_objects: usize,
    /// The network's contextionary, once fetched: Fetch and Introspect.
    meaning: Option<Arc<Meaning>>,
}

impl Data {
    /// The data of tab `name`, from what it saved (empty for a new tab).
    pub fn new(
        name: PeerName,
        saved: Saved,
        limits: Limits,
        max_objects: usize,
    ) -> Result<Data, RestError> {
        saved
            .schema
            .validate()
            .map_err(|e| RestError::new(422, format!("the saved schema: {e}")))?;
        let mut objects = BTreeMap::new();
        for SavedObject { kind, object } in saved.objects {
            let mut object: Object = serde_json::from_value(with_kind(object, kind))
                .map_err(|e| RestError::new(422, format!("a saved object: {e}")))?;
            object.kind = kind;
            objects.insert(object.id, object);
        }
        let schema = Arc::new(saved.schema);
        let engine = build(&name, &schema, &BTreeMap::new(), &limits, None)?;
        Ok(Data {
            name,
            schema,
            objects: Arc::new(objects),
            remotes: BTreeMap::new(),
            engine,
            limits,
            max_objects,
            meaning: None,
        })
    }

    /// Its schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The engine of its schema and the remote schemas it holds.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// A snapshot of its objects for one request.
    pub fn source(&self) -> Arc<dyn Source> {
        Arc::new(Snapshot(self.objects.clone()))
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// What to save.
    pub fn saved(&self) -> Saved {
        Saved {
            schema: Schema::clone(&self.schema),
            objects: self
                .objects
                .values()
                .map(|o| SavedObject {
                    kind: o.kind,
                    object: serde_json::to_value(o).unwrap_or(Value::Null),
                })
                .collect(),
        }
    }

    /// `POST /v1/schema/{kind}` with `class_json`: the class added.
    pub fn create_class(&mut self, segment: &str, class_json: &str) -> Result<Class, RestError> {
        let kind = kind(segment)?;
        let class: Class = body(class_json)?;
        let mut next = Schema::clone(&self.schema);
        next.add_class(kind, class.clone())?;
        let next = Arc::new(next);
        self.engine = build(
            &self.name,
            &next,
            &self.remotes,
            &self.limits,
            self.meaning.clone(),
        )?;
        self.schema = next;
        Ok(class)
    }

    /// `POST /v1/{kind}` with `object_json`: the object created, with `id`
    /// unless the body names one, at `now_ms`.
    pub fn add_object(
        &mut self,
        segment: &str,
        object_json: &str,
        id: Uuid,
        now_ms: u64,
    ) -> Result<Object, RestError> {
        let kind = kind(segment)?;
        let new: NewObject = body(object_json)?;
        self.schema
            .check_object(kind, &new.class, &new.schema)
            .map_err(|e| RestError::new(422, e.to_string()))?;
        let id = new.id.unwrap_or(id);
        if self.objects.contains_key(&id) {
            return Err(RestError::new(
                422,
                format!("an object with id {id} exists already"),
            ));
        }
        if self.objects.len() >= self.max_objects {
            return Err(RestError::new(
                507,
                format!(
                    "this tab holds {} objects, as many as it may (maxObjects)",
                    self.max_objects
                ),
            ));
        }
        let object = Object {
            id,
            kind,
            class: new.class,
            schema: new.schema,
            creation_time_unix: now_ms,
            last_update_time_unix: now_ms,
        };
        Arc::make_mut(&mut self.objects).insert(id, object.clone());
        Ok(object)
    }

    /// The remote peers' schemas changed: the engine's `Network` follows.
    pub fn set_remotes(&mut self, remotes: BTreeMap<PeerName, Arc<Schema>>) {
        if remotes == self.remotes {
            return;
        }
        if let Ok(engine) = build(
            &self.name,
            &self.schema,
            &remotes,
            &self.limits,
            self.meaning.clone(),
        ) {
            self.engine = engine;
            self.remotes = remotes;
        }
    }

    /// The contextionary the engine answers Fetch and Introspect with, if any.
    pub fn contextionary(&self) -> Option<&Contextionary> {
        self.meaning.as_deref().map(|m| &*m.contextionary)
    }

    /// The network's contextionary arrived: the engine answers Fetch and
    /// Introspect with it (beacons name this tab).
    pub fn set_contextionary(
        &mut self,
        contextionary: Arc<Contextionary>,
    ) -> Result<(), RestError> {
        let meaning = Some(Arc::new(Meaning {
            contextionary,
            peer: self.name.to_string(),
        }));
        self.engine = build(
            &self.name,
            &self.schema,
            &self.remotes,
            &self.limits,
            meaning.clone(),
        )?;
        self.meaning = meaning;
        Ok(())
    }
}

/// The engine of `schema`, with `remotes` and the tab itself in `Network`,
/// answering Fetch and Introspect with `meaning` when it has one.
fn build(
    name: &PeerName,
    schema: &Arc<Schema>,
    remotes: &BTreeMap<PeerName, Arc<Schema>>,
    limits: &Limits,
    meaning: Option<Arc<Meaning>>,
) -> Result<Arc<Engine>, RestError> {
    let mut network = remotes.clone();
    network.insert(name.clone(), schema.clone());
    Engine::build(schema, &network, limits)
        .map(|engine| Arc::new(engine.with_meaning(meaning)))
        .map_err(|e| RestError::new(422, e.to_string()))
}

fn with_kind(object: Value, kind: Kind) -> Value {
    match object {
        Value::Object(mut map) => {
            map.insert("kind".into(), Value::String(kind.as_str().into()));
            Value::Object(map)
        }
        other => other,
    }
}

/// One request's view of the objects.
struct Snapshot(Arc<BTreeMap<Uuid, Object>>);

impl Snapshot {
    fn follow(&self, reference: &Value) -> Vec<Object> {
        beacons(reference)
            .filter_map(|(kind, id)| self.0.get(&id).filter(|o| o.kind == kind).cloned())
            .collect()
    }
}

impl Source for Snapshot {
    fn query(
        &self,
        kind: Kind,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, SourceError> {
        Ok(self
            .0
            .values()
            .filter(|o| o.kind == kind && o.class == class)
            .filter(|o| filter.is_none_or(|f| f.matches(&o.schema, &mut |r| self.follow(r))))
            .take(limit)
            .cloned()
            .collect())
    }

    fn get(&self, id: Uuid) -> Result<Option<Object>, SourceError> {
        Ok(self.0.get(&id).cloned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use futures::executor::block_on;
    use plexus_graphql::GraphQLRequest;
    use serde_json::json;

    const CITY: &str = r#"{"class": "City", "properties": [{"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}"#;

    fn data() -> Data {
        let name = PeerName::new("TabA").unwrap();
        Data::new(name, Saved::default(), Limits::default(), 3).unwrap()
    }

    #[test]
    fn a_class_and_objects_answer_local_queries_with_where() {
        let mut data = data();
        data.create_class("things", CITY).unwrap();
        for (i, (name, population)) in [("Amsterdam", 900_000), ("Utrecht", 360_000)]
            .into_iter()
            .enumerate()
        {
            let body = json!({"class": "City", "schema": {"name": name, "population": population}});
            let id = Uuid::from_u128(i as u128 + 1);
            let object = data.add_object("things", &body.to_string(), id, 7).unwrap();
            assert_eq!((object.id, object.creation_time_unix), (id, 7));
        }
        let query = r#"{ Local { Get { Things { City(where: {path: ["population"], operator: GreaterThan, valueInt: 500000}) { name } } } } }"#;
        let answer = block_on(data.engine().execute(
            GraphQLRequest::new(query),
            data.source(),
            None,
        ));
        assert_eq!(
            answer.body["data"]["Local"]["Get"]["Things"]["City"],
            json!([{"name": "Amsterdam"}])
        );
    }

    #[test]
    fn writes_are_refused_as_the_rest_api_refuses_them() {
        let mut data = data();
        assert_eq!(data.create_class("places", CITY).unwrap_err().status, 404);
        assert_eq!(data.create_class("things", "{").unwrap_err().status, 400);
        let bad_name = r#"{"class": "city", "properties": []}"#;
        assert_eq!(
            data.create_class("things", bad_name).unwrap_err().status,
            422
        );
        data.create_class("things", CITY).unwrap();
        let again = data.create_class("actions", CITY).unwrap_err();
        assert_eq!(again.status, 422);
        assert!(
            again.message.contains("already exists"),
            "{}",
            again.message
        );
        let wrong_type = json!({"class": "City", "schema": {"population": "many"}}).to_string();
        let e = data
            .add_object("things", &wrong_type, Uuid::nil(), 0)
            .unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.message.contains("population"), "{}", e.message);
        let unknown = json!({"class": "Town", "schema": {}}).to_string();
        assert_eq!(
            data.add_object("things", &unknown, Uuid::nil(), 0)
                .unwrap_err()
                .status,
            422
        );
        assert!(data.is_empty());
    }

    #[test]
    fn a_full_tab_refuses_objects_and_ids_are_not_reused() {
        let mut data = data();
        data.create_class("things", CITY).unwrap();
        let body = json!({"class": "City", "schema": {"name": "X"}}).to_string();
        data.add_object("things", &body, Uuid::from_u128(1), 0)
            .unwrap();
        let taken = data
            .add_object("things", &body, Uuid::from_u128(1), 0)
            .unwrap_err();
        assert_eq!(taken.status, 422);
        data.add_object("things", &body, Uuid::from_u128(2), 0)
            .unwrap();
        data.add_object("things", &body, Uuid::from_u128(3), 0)
            .unwrap();
        let full = data
            .add_object("things", &body, Uuid::from_u128(4), 0)
            .unwrap_err();
        assert_eq!(full.status, 507);
        assert_eq!(data.len(), 3);
    }

    #[test]
    fn what_is_saved_comes_back_whole() {
        let mut data = data();
        data.create_class("things", CITY).unwrap();
        let body = json!({"class": "City", "schema": {"name": "X"}}).to_string();
        data.add_object("things", &body, Uuid::from_u128(9), 5)
            .unwrap();
        let saved = data.saved();
        let text = serde_json::to_string(&saved).unwrap();
        let back = Data::new(
            PeerName::new("TabA").unwrap(),
            serde_json::from_str(&text).unwrap(),
            Limits::default(),
            3,
        )
        .unwrap();
        assert_eq!(back.saved(), saved);
        assert_eq!(back.schema().hash(), data.schema().hash());
    }
}
