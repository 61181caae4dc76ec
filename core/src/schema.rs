//! A peer's schema of Things and Actions, its canonical hash, and the check of
//! an object's values against it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Whether a class holds Things or Actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Things: cities, countries, airports.
    Things,
    /// Actions: flights, purchases.
    Actions,
}

impl Kind {
    /// Both kinds, in their canonical order.
    pub const ALL: [Kind; 2] = [Kind::Things, Kind::Actions];

    /// The name used in paths and GraphQL (`things`, `actions`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Things => "things",
            Kind::Actions => "actions",
        }
    }

    /// The GraphQL field of this kind under `Get` (`Things`, `Actions`).
    pub fn graphql_field(self) -> &'static str {
        match self {
            Kind::Things => "Things",
            Kind::Actions => "Actions",
        }
    }

    /// The kind named by a path segment (`things`) or a GraphQL field (`Things`).
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "things" | "Things" => Some(Kind::Things),
            "actions" | "Actions" => Some(Kind::Actions),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole schema, as `GET /v1/schema` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The Things classes.
    #[serde(default)]
    pub things: ClassList,
    /// The Actions classes.
    #[serde(default)]
    pub actions: ClassList,
}

/// The classes of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassList {
    /// The classes.
    #[serde(default)]
    pub classes: Vec<Class>,
}

/// A class: a name and typed properties.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// Its name, a GraphQL name starting with an upper-case letter.
    pub class: String,
    /// What it is, for a person.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its properties.
    #[serde(default)]
    pub properties: Vec<Property>,
    /// Words that pull its meaning in the contextionary (the original's
    /// `keywords`); absent when empty, so a schema without keywords keeps
    /// the hash it had before keywords existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<Keyword>,
}

/// A word that pulls a class's or property's meaning, with its weight
/// (0 to 1): `{"keyword": "metropolis", "weight": 0.5}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyword {
    /// One word of the contextionary.
    pub keyword: String,
    /// Its weight beside the name's words (each of weight 1).
    pub weight: f64,
}

// Weights are checked finite ([`Schema::add_class`]), and JSON has no NaN.
impl Eq for Keyword {}

/// A property of a class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// Its name, a GraphQL name starting with a lower-case letter.
    pub name: String,
    /// One primitive type (`["int"]`), or one or more class names for a reference.
    #[serde(rename = "dataType")]
    pub data_type: Vec<String>,
    /// What it is, for a person.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Words that pull its meaning, as a class's [`Class::keywords`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<Keyword>,
}

/// The type of a property's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataType {
    /// A short string.
    String,
    /// A long text.
    Text,
    /// A 64-bit integer.
    Int,
    /// A floating-point number.
    Number,
    /// true or false.
    Boolean,
    /// An RFC 3339 date-time.
    Date,
    /// `{"latitude": .., "longitude": ..}`.
    GeoCoordinates,
    /// A reference to objects of one of these classes.
    Ref(Vec<String>),
}

impl Property {
    /// The property's type, or why `dataType` is not a valid one.
    pub fn kind(&self) -> Result<DataType, SchemaError> {
        let primitive = match self.data_type.as_slice() {
            [one] => match one.as_str() {
                "string" => Some(DataType::String),
                "text" => Some(DataType::Text),
                "int" => Some(DataType::Int),
                "number" => Some(DataType::Number),
                "boolean" => Some(DataType::Boolean),
                "date" => Some(DataType::Date),
                "geoCoordinates" => Some(DataType::GeoCoordinates),
                _ => None,
            },
            _ => None,
        };
        if let Some(p) = primitive {
            return Ok(p);
        }
        if self.data_type.is_empty() || !self.data_type.iter().all(|t| is_class_name(t)) {
            return Err(SchemaError::DataType {
                property: self.name.clone(),
                data_type: self.data_type.clone(),
            });
        }
        Ok(DataType::Ref(self.data_type.clone()))
    }
}

/// Why a change to the schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A class name that is not a GraphQL name starting with an upper-case letter.
    #[error(
        "invalid class name {0:?}: must start with an upper-case letter and hold only ASCII letters, digits and _"
    )]
    ClassName(String),
    /// A property name that is not a GraphQL name starting with a lower-case letter.
    #[error(
        "invalid property name {0:?}: must start with a lower-case letter and hold only ASCII letters, digits and _"
    )]
    PropertyName(String),
    /// A class of that name exists already (in Things or Actions).
    #[error("class {0:?} already exists")]
    DuplicateClass(String),
    /// Two properties of a class share a name.
    #[error("property {property:?} appears twice in class {class:?}")]
    DuplicateProperty {
        /// The class.
        class: String,
        /// The property.
        property: String,
    },
    /// A `dataType` that is neither a primitive nor a list of class names.
    #[error(
        "property {property:?} has unknown data type {data_type:?}: use one of string, text, int, number, boolean, date, geoCoordinates, or class names"
    )]
    DataType {
        /// The property.
        property: String,
        /// The type given.
        data_type: Vec<String>,
    },
    /// A keyword that is not one word of a-z with a weight from 0 to 1.
    #[error(
        "invalid keyword {keyword:?} (weight {weight}) of {owner:?}: a keyword is one word of a-z (at most 255 letters) with a weight from 0 to 1"
    )]
    Keyword {
        /// The class or class.property it belongs to.
        owner: String,
        /// The keyword.
        keyword: String,
        /// Its weight, as written.
        weight: String,
    },
    /// A reference to a class that does not exist.
    #[error("property {property:?} refers to class {target:?}, which does not exist")]
    MissingClass {
        /// The property.
        property: String,
        /// The class it names.
        target: String,
    },
    /// No class of that name in that kind.
    #[error("no {kind} class named {class:?}")]
    UnknownClass {
        /// The kind searched.
        kind: Kind,
        /// The class named.
        class: String,
    },
    /// The class is still the target of a reference.
    #[error("class {class:?} is referenced by {by:?}; remove that property first")]
    Referenced {
        /// The class to remove.
        class: String,
        /// The class.property that refers to it.
        by: String,
    },
}

impl SchemaError {
    /// The HTTP status of a REST call refused with this error (the peer's
    /// API and a browser tab's answer alike): 404 for a class that does not
    /// exist, 422 for every other broken rule.
    pub fn status(&self) -> u16 {
        match self {
            SchemaError::UnknownClass { .. } => 404,
            _ => 422,
        }
    }
}

fn is_graphql_name(name: &str, first: fn(char) -> bool) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// Each keyword one word of `a`-`z` (as the contextionary's words are),
/// its weight finite and from 0 to 1.
fn check_keywords(owner: &str, keywords: &[Keyword]) -> Result<(), SchemaError> {
    for k in keywords {
        let word = !k.keyword.is_empty()
            && k.keyword.len() <= 255
            && k.keyword.bytes().all(|b| b.is_ascii_lowercase());
        if !word || !(0.0..=1.0).contains(&k.weight) {
            return Err(SchemaError::Keyword {
                owner: owner.to_owned(),
                keyword: k.keyword.clone(),
                weight: k.weight.to_string(),
            });
        }
    }
    Ok(())
}

fn is_class_name(name: &str) -> bool {
    is_graphql_name(name, |c| c.is_ascii_uppercase())
}

fn is_property_name(name: &str) -> bool {
    is_graphql_name(name, |c| c.is_ascii_lowercase())
}

impl Schema {
    /// Every class of both kinds, with its kind.
    pub fn classes(&self) -> impl Iterator<Item = (Kind, &Class)> {
        Kind::ALL
            .into_iter()
            .flat_map(move |kind| self.list(kind).classes.iter().map(move |c| (kind, c)))
    }

    /// The classes of `kind`.
    pub fn list(&self, kind: Kind) -> &ClassList {
        match kind {
            Kind::Things => &self.things,
            Kind::Actions => &self.actions,
        }
    }

    fn list_mut(&mut self, kind: Kind) -> &mut ClassList {
        match kind {
            Kind::Things => &mut self.things,
            Kind::Actions => &mut self.actions,
        }
    }

    /// The class named `name` in `kind`.
    pub fn class(&self, kind: Kind, name: &str) -> Option<&Class> {
        self.list(kind).classes.iter().find(|c| c.class == name)
    }

    /// The class named `name` in either kind.
    pub fn find_class(&self, name: &str) -> Option<(Kind, &Class)> {
        self.classes().find(|(_, c)| c.class == name)
    }

    /// Adds `class` to `kind`, after checking its name, its properties and its references.
    ///
    /// A reference to the class itself is allowed.
    pub fn add_class(&mut self, kind: Kind, class: Class) -> Result<(), SchemaError> {
        if !is_class_name(&class.class) {
            return Err(SchemaError::ClassName(class.class));
        }
        if self.find_class(&class.class).is_some() {
            return Err(SchemaError::DuplicateClass(class.class));
        }
        check_keywords(&class.class, &class.keywords)?;
        let mut seen = BTreeSet::new();
        for property in &class.properties {
            self.check_property(&class.class, property)?;
            if !seen.insert(property.name.as_str()) {
                return Err(SchemaError::DuplicateProperty {
                    class: class.class.clone(),
                    property: property.name.clone(),
                });
            }
        }
        self.list_mut(kind).classes.push(class);
        Ok(())
    }

    /// Adds `property` to the class `class` of `kind`.
    pub fn add_property(
        &mut self,
        kind: Kind,
        class: &str,
        property: Property,
    ) -> Result<(), SchemaError> {
        self.check_property(class, &property)?;
        let target = self.class_mut(kind, class)?;
        if target.properties.iter().any(|p| p.name == property.name) {
            return Err(SchemaError::DuplicateProperty {
                class: class.to_owned(),
                property: property.name,
            });
        }
        target.properties.push(property);
        Ok(())
    }

    /// Removes the class `name` of `kind`; refused while another class refers to it.
    pub fn remove_class(&mut self, kind: Kind, name: &str) -> Result<Class, SchemaError> {
        self.class_mut(kind, name)?;
        for (_, other) in self.classes().filter(|(_, c)| c.class != name) {
            for property in &other.properties {
                if let Ok(DataType::Ref(targets)) = property.kind()
                    && targets.iter().any(|t| t == name)
                {
                    return Err(SchemaError::Referenced {
                        class: name.to_owned(),
                        by: format!("{}.{}", other.class, property.name),
                    });
                }
            }
        }
        let list = &mut self.list_mut(kind).classes;
        let index =
            list.iter()
                .position(|c| c.class == name)
                .ok_or_else(|| SchemaError::UnknownClass {
                    kind,
                    class: name.to_owned(),
                })?;
        Ok(list.remove(index))
    }

    fn class_mut(&mut self, kind: Kind, name: &str) -> Result<&mut Class, SchemaError> {
        self.list_mut(kind)
            .classes
            .iter_mut()
            .find(|c| c.class == name)
            .ok_or_else(|| SchemaError::UnknownClass {
                kind,
                class: name.to_owned(),
            })
    }

    fn check_property(&self, owner: &str, property: &Property) -> Result<(), SchemaError> {
        if !is_property_name(&property.name) {
            return Err(SchemaError::PropertyName(property.name.clone()));
        }
        check_keywords(&format!("{owner}.{}", property.name), &property.keywords)?;
        if let DataType::Ref(targets) = property.kind()? {
            for target in targets {
                if target != owner && self.find_class(&target).is_none() {
                    return Err(SchemaError::MissingClass {
                        property: property.name.clone(),
                        target,
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks a whole schema received from elsewhere (a remote peer, a file):
    /// rebuilding it class by class applies every rule of [`Schema::add_class`],
    /// with references allowed in any order.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let mut names = Schema::default();
        for (kind, class) in self.classes() {
            names.add_class(
                kind,
                Class {
                    class: class.class.clone(),
                    description: String::new(),
                    properties: Vec::new(),
                    keywords: class.keywords.clone(),
                },
            )?;
        }
        for (kind, class) in self.classes() {
            for property in &class.properties {
                names.add_property(kind, &class.class, property.clone())?;
            }
        }
        Ok(())
    }

    /// The canonical JSON form: classes and properties sorted by name, object keys
    /// sorted, no whitespace. Equal schemas give equal text on every machine.
    pub fn canonical_json(&self) -> String {
        let mut sorted = self.clone();
        for kind in Kind::ALL {
            let classes = &mut sorted.list_mut(kind).classes;
            classes.sort_by(|a, b| a.class.cmp(&b.class));
            for class in classes.iter_mut() {
                class.properties.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        let value = serde_json::to_value(&sorted).unwrap_or(Value::Null);
        canonical_text(&value)
    }

    /// The schema hash: hex SHA-256 of [`Schema::canonical_json`].
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the values of an object of class `class` of `kind` against their properties.
    pub fn check_object(
        &self,
        kind: Kind,
        class: &str,
        values: &Map<String, Value>,
    ) -> Result<(), ObjectError> {
        let class_def = self
            .class(kind, class)
            .ok_or_else(|| ObjectError::UnknownClass {
                kind,
                class: class.to_owned(),
            })?;
        for (name, value) in values {
            let property = class_def
                .properties
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| ObjectError::UnknownProperty {
                    class: class.to_owned(),
                    property: name.clone(),
                })?;
            let data_type = property.kind().map_err(|_| ObjectError::UnknownProperty {
                class: class.to_owned(),
                property: name.clone(),
            })?;
            if !value.is_null() && !fits(&data_type, value) {
                return Err(ObjectError::Value {
                    property: name.clone(),
                    expected: property.data_type.join("|"),
                    got: value.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Writes `value` with object keys sorted, whatever map the JSON library was built with.
fn canonical_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_text(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_text)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// Why an object's values were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The object names a class that does not exist.
    #[error("no {kind} class named {class:?}")]
    UnknownClass {
        /// The kind.
        kind: Kind,
        /// The class.
        class: String,
    },
    /// A value for a property the class does not have.
    #[error("class {class:?} has no property {property:?}")]
    UnknownProperty {
        /// The class.
        class: String,
        /// The property.
        property: String,
    },
    /// A value that does not fit its property's type.
    #[error("property {property:?} expects {expected}, got {got}")]
    Value {
        /// The property.
        property: String,
        /// Its data type.
        expected: String,
        /// The value given.
        got: Value,
    },
}

fn fits(data_type: &DataType, value: &Value) -> bool {
    match data_type {
        DataType::String | DataType::Text => value.is_string(),
        DataType::Int => {
            value.is_i64()
                || value.is_u64() && value.as_u64().is_some_and(|v| i64::try_from(v).is_ok())
        }
        DataType::Number => value.is_number(),
        DataType::Boolean => value.is_boolean(),
        DataType::Date => value.as_str().is_some_and(is_rfc3339),
        DataType::GeoCoordinates => {
            let coordinate = |key: &str, limit: f64| {
                value
                    .get(key)
                    .and_then(Value::as_f64)
                    .is_some_and(|v| (-limit..=limit).contains(&v))
            };
            value.as_object().is_some_and(|o| o.len() == 2)
                && coordinate("latitude", 90.0)
                && coordinate("longitude", 180.0)
        }
        DataType::Ref(_) => match value {
            Value::Array(items) => items.iter().all(is_beacon),
            single => is_beacon(single),
        },
    }
}

/// A reference value: `{"beacon": "weaviate://localhost/things/<uuid>"}`.
fn is_beacon(value: &Value) -> bool {
    value
        .get("beacon")
        .and_then(Value::as_str)
        .and_then(parse_beacon)
        .is_some()
}

/// The beacons of a reference value (one `{"beacon": ...}` or a list of
/// them) that parse, as (kind, id).
pub fn beacons(reference: &Value) -> impl Iterator<Item = (Kind, uuid::Uuid)> + '_ {
    let items: Vec<&Value> = match reference {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    items.into_iter().filter_map(|beacon| {
        beacon
            .get("beacon")
            .and_then(Value::as_str)
            .and_then(parse_beacon)
    })
}

/// The kind and object id a beacon (`weaviate://HOST/things/<uuid>`) points at.
pub fn parse_beacon(beacon: &str) -> Option<(Kind, uuid::Uuid)> {
    let rest = beacon.strip_prefix("weaviate://")?;
    let mut parts = rest.split('/');
    let _host = parts.next()?;
    let kind = Kind::parse(parts.next()?)?;
    let id = uuid::Uuid::parse_str(parts.next()?).ok()?;
    parts.next().is_none().then_some((kind, id))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, checked by shape and range.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let number = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(99)
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return false;
    }
    if !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    if !(1..=12).contains(&number(5..7))
        || !(1..=31).contains(&number(8..10))
        || number(11..13) > 23
        || number(14..16) > 59
        || number(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => {
            b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn city() -> Class {
        serde_json::from_value(json!({"class": "City", "properties": [
            {"name": "name", "dataType": ["string"]},
            {"name": "population", "dataType": ["int"]},
            {"name": "location", "dataType": ["geoCoordinates"]},
            {"name": "founded", "dataType": ["date"]},
        ]}))
        .expect("valid class")
    }

    #[test]
    fn adds_classes_and_refuses_bad_ones() {
        let mut schema = Schema::default();
        schema.add_class(Kind::Things, city()).expect("city");
        assert_eq!(
            schema.add_class(Kind::Actions, city()),
            Err(SchemaError::DuplicateClass("City".into()))
        );
        let bad_name = Class {
            class: "city".into(),
            description: String::new(),
            properties: vec![],
            keywords: vec![],
        };
        assert!(matches!(
            schema.add_class(Kind::Things, bad_name),
            Err(SchemaError::ClassName(_))
        ));
        let dangling: Class = serde_json::from_value(json!({"class": "Airport", "properties": [
            {"name": "inCountry", "dataType": ["Country"]}]}))
        .expect("parse");
        assert!(matches!(
            schema.add_class(Kind::Things, dangling),
            Err(SchemaError::MissingClass { .. })
        ));
        let unknown: Class = serde_json::from_value(json!({"class": "Airport", "properties": [
            {"name": "code", "dataType": ["varchar"]}]}))
        .expect("parse");
        assert!(matches!(
            schema.add_class(Kind::Things, unknown),
            Err(SchemaError::DataType { .. })
        ));
        let twice: Class = serde_json::from_value(json!({"class": "Airport", "properties": [
            {"name": "code", "dataType": ["string"]}, {"name": "code", "dataType": ["text"]}]}))
        .expect("parse");
        assert!(matches!(
            schema.add_class(Kind::Things, twice),
            Err(SchemaError::DuplicateProperty { .. })
        ));
    }

    #[test]
    fn references_block_removal() {
        let mut schema = Schema::default();
        schema.add_class(Kind::Things, city()).expect("city");
        let airport: Class = serde_json::from_value(json!({"class": "Airport", "properties": [
            {"name": "inCity", "dataType": ["City"]}]}))
        .expect("parse");
        schema.add_class(Kind::Things, airport).expect("airport");
        assert!(matches!(
            schema.remove_class(Kind::Things, "City"),
            Err(SchemaError::Referenced { .. })
        ));
        schema
            .remove_class(Kind::Things, "Airport")
            .expect("remove airport");
        schema
            .remove_class(Kind::Things, "City")
            .expect("remove city");
        assert!(matches!(
            schema.remove_class(Kind::Things, "City"),
            Err(SchemaError::UnknownClass { .. })
        ));
    }

    #[test]
    fn hash_ignores_order_but_not_content() {
        let a: Schema = serde_json::from_value(json!({"things": {"classes": [
            {"class": "City", "properties": [{"name": "name", "dataType": ["string"]}, {"name": "pop", "dataType": ["int"]}]},
            {"class": "Country", "properties": []}]}}))
        .expect("parse");
        let b: Schema = serde_json::from_value(json!({"actions": {"classes": []}, "things": {"classes": [
            {"properties": [], "class": "Country"},
            {"properties": [{"dataType": ["int"], "name": "pop"}, {"name": "name", "dataType": ["string"]}], "class": "City"}]}}))
        .expect("parse");
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        let mut c = a.clone();
        c.things.classes[1].class = "Nation".into();
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn keywords_are_in_the_hash_and_a_schema_without_them_keeps_its_hash() {
        let plain: Schema = serde_json::from_value(json!({"things": {"classes": [
            {"class": "City", "properties": [{"name": "name", "dataType": ["string"]}]}]}}))
        .expect("parse");
        // The text hashed before keywords existed.
        assert_eq!(
            plain.canonical_json(),
            r#"{"actions":{"classes":[]},"things":{"classes":[{"class":"City","properties":[{"dataType":["string"],"name":"name"}]}]}}"#
        );
        let keyword = || Keyword {
            keyword: "metropolis".into(),
            weight: 0.5,
        };
        let mut on_class = plain.clone();
        on_class.things.classes[0].keywords.push(keyword());
        let mut on_property = plain.clone();
        on_property.things.classes[0].properties[0]
            .keywords
            .push(keyword());
        assert_ne!(plain.hash(), on_class.hash());
        assert_ne!(plain.hash(), on_property.hash());
        assert_ne!(on_class.hash(), on_property.hash());
        on_class.validate().expect("valid keywords");
        let mut lighter = on_class.clone();
        lighter.things.classes[0].keywords[0].weight = 0.25;
        assert_ne!(on_class.hash(), lighter.hash());
        for (word, weight) in [
            ("Metropolis", 0.5),
            ("", 0.5),
            ("two words", 0.5),
            ("city", 1.5),
            ("city", -0.1),
        ] {
            let mut bad = plain.clone();
            bad.things.classes[0].properties[0].keywords.push(Keyword {
                keyword: word.into(),
                weight,
            });
            assert!(
                matches!(bad.validate(), Err(SchemaError::Keyword { .. })),
                "{word:?} {weight}"
            );
        }
    }

    #[test]
    fn checks_object_values() {
        let mut schema = Schema::default();
        schema.add_class(Kind::Things, city()).expect("city");
        let ok = json!({"name": "Amsterdam", "population": 905234, "location": {"latitude": 52.37, "longitude": 4.89},
                        "founded": "1275-10-27T00:00:00Z"});
        schema
            .check_object(Kind::Things, "City", ok.as_object().expect("object"))
            .expect("fits");
        for bad in [
            json!({"population": "many"}),
            json!({"population": 1.5}),
            json!({"name": 3}),
            json!({"location": {"latitude": 100, "longitude": 0}}),
            json!({"founded": "yesterday"}),
            json!({"founded": "2020-13-01T00:00:00Z"}),
            json!({"mayor": "x"}),
        ] {
            assert!(
                schema
                    .check_object(Kind::Things, "City", bad.as_object().expect("object"))
                    .is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            schema.check_object(Kind::Actions, "City", &Map::new()),
            Err(ObjectError::UnknownClass { .. })
        ));
    }

    #[test]
    fn dates_and_beacons() {
        for ok in [
            "2020-01-02T03:04:05Z",
            "2020-01-02T03:04:05.123+01:00",
            "2020-01-02t03:04:05z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2020-01-02",
            "2020-01-02T03:04:05",
            "2020-01-02T03:04:05+0100",
            "2020-01-02T03:04:05.Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        let id = uuid::Uuid::nil();
        assert_eq!(
            parse_beacon(&format!("weaviate://localhost/things/{id}")),
            Some((Kind::Things, id))
        );
        assert_eq!(parse_beacon("weaviate://localhost/people/x"), None);
    }

    #[test]
    fn validate_accepts_forward_references_and_refuses_dangling_ones() {
        let forward: Schema = serde_json::from_value(json!({"things": {"classes": [
            {"class": "Airport", "properties": [{"name": "inCity", "dataType": ["City"]}]},
            {"class": "City", "properties": []}]}}))
        .expect("parse");
        forward.validate().expect("valid");
        let dangling: Schema = serde_json::from_value(json!({"things": {"classes": [
            {"class": "Airport", "properties": [{"name": "inCity", "dataType": ["City"]}]}]}}))
        .expect("parse");
        assert!(dangling.validate().is_err());
    }
}
