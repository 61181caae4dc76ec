//! GetMeta: aggregates over the objects of a class, in the original's shape.
//!
//! Per class `meta { count }`; per property `count` (objects with a value)
//! and `type`, and numbers `minimum maximum mean sum`, strings
//! `topOccurrences { value occurs }` (the 5 most frequent, ties by value),
//! booleans `totalTrue totalFalse percentageTrue percentageFalse` (fractions
//! of `count`, from 0 to 1).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{Field, FieldValue, Object, TypeRef};
use plexus_core::object::Object as Obj;
use plexus_core::schema::{Class, DataType, Kind, Schema};
use serde_json::{Map, Value, json};

use crate::RequestData;
use crate::build::{arguments, data_field};

/// How many values `topOccurrences` lists.
pub const TOP_OCCURRENCES: usize = 5;

/// The shared types of GetMeta's answers.
pub(crate) fn types() -> Vec<Object> {
    let f = |name, ty: &str| data_field(name, TypeRef::named(ty));
    let common = |name: &str| {
        Object::new(name)
            .field(f("count", TypeRef::INT))
            .field(f("type", TypeRef::STRING))
    };
    vec![
        Object::new("MetaCount").field(f("count", TypeRef::INT)),
        common("MetaNumber")
            .field(f("minimum", TypeRef::FLOAT))
            .field(f("maximum", TypeRef::FLOAT))
            .field(f("mean", TypeRef::FLOAT))
            .field(f("sum", TypeRef::FLOAT)),
        common("MetaString").field(data_field(
            "topOccurrences",
            TypeRef::named_list("MetaOccurrence"),
        )),
        Object::new("MetaOccurrence")
            .field(f("value", TypeRef::STRING))
            .field(f("occurs", TypeRef::INT)),
        common("MetaBoolean")
            .field(f("totalTrue", TypeRef::INT))
            .field(f("totalFalse", TypeRef::INT))
            .field(f("percentageTrue", TypeRef::FLOAT))
            .field(f("percentageFalse", TypeRef::FLOAT)),
        common("MetaProperty"),
    ]
}

/// The GetMeta type of one class.
pub(crate) fn class_type(type_name: &str, class: &Class) -> Object {
    let mut obj = Object::new(type_name).field(data_field("meta", TypeRef::named("MetaCount")));
    for p in &class.properties {
        let ty = match p.kind() {
            Ok(DataType::Int | DataType::Number) => "MetaNumber",
            Ok(DataType::String | DataType::Text) => "MetaString",
            Ok(DataType::Boolean) => "MetaBoolean",
            Ok(_) => "MetaProperty",
            Err(_) => continue,
        };
        obj = obj.field(data_field(&p.name, TypeRef::named(ty)));
    }
    obj
}

/// The Local GetMeta field of a class: reads the objects that pass `where`
/// (at most `max_meta_objects`) and aggregates them.
pub(crate) fn class_field(name: &str, ty: TypeRef, kind: Kind, schema: Arc<Schema>) -> Field {
    let class = name.to_owned();
    Field::new(name, ty, move |ctx| {
        let (schema, class) = (schema.clone(), class.clone());
        crate::caught!(ctx, {
            let data = ctx.data::<RequestData>()?;
            let (_, filter) = arguments(&ctx, &schema, &class)?;
            let max = data.limits.max_meta_objects;
            let objects = data
                .source
                .query(kind, &class, filter.as_ref(), max.saturating_add(1))
                .map_err(|e| Error::new(e.to_string()))?;
            if objects.len() > max {
                return Err(Error::new(format!(
                    "GetMeta of {class} would read more than {max} objects (the peer's --graphql-max-meta-objects)"
                )));
            }
            let Some(def) = schema.find_class(&class).map(|(_, c)| c) else {
                return Ok(None);
            };
            Ok(Some(FieldValue::owned_any(aggregate(def, &objects))))
        })
    })
}

/// The GetMeta answer of `class` over `objects`, every field computed.
pub fn aggregate(class: &Class, objects: &[Obj]) -> Value {
    let mut out = Map::new();
    out.insert("meta".into(), json!({ "count": objects.len() }));
    for p in &class.properties {
        let Ok(data_type) = p.kind() else { continue };
        let values: Vec<&Value> = objects
            .iter()
            .filter_map(|o| o.schema.get(&p.name))
            .filter(|v| !v.is_null())
            .collect();
        let type_name = match &data_type {
            DataType::Ref(_) => "cref",
            _ => p.data_type.first().map_or("", String::as_str),
        };
        let mut m = Map::new();
        m.insert("count".into(), json!(values.len()));
        m.insert("type".into(), json!(type_name));
        match data_type {
            DataType::Int | DataType::Number => {
                let numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
                let sum: f64 = numbers.iter().sum();
                let min = numbers.iter().copied().reduce(f64::min);
                let max = numbers.iter().copied().reduce(f64::max);
                m.insert("minimum".into(), json!(min));
                m.insert("maximum".into(), json!(max));
                m.insert("sum".into(), json!(sum));
                #[allow(clippy::cast_precision_loss)]
                let mean = (!numbers.is_empty()).then(|| sum / numbers.len() as f64);
                m.insert("mean".into(), json!(mean));
            }
            DataType::String | DataType::Text => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in &values {
                    if let Some(s) = v.as_str() {
                        *counts.entry(s).or_default() += 1;
                    }
                }
                let mut top: Vec<(&str, usize)> = counts.into_iter().collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                top.truncate(TOP_OCCURRENCES);
                let top: Vec<Value> = top
                    .into_iter()
                    .map(|(value, occurs)| json!({ "value": value, "occurs": occurs }))
                    .collect();
                m.insert("topOccurrences".into(), Value::Array(top));
            }
            DataType::Boolean => {
                let yes = values.iter().filter(|v| v.as_bool() == Some(true)).count();
                let no = values.iter().filter(|v| v.as_bool() == Some(false)).count();
                let total = yes + no;
                #[allow(clippy::cast_precision_loss)]
                let share = |n: usize| (total > 0).then(|| n as f64 / total as f64);
                m.insert("totalTrue".into(), json!(yes));
                m.insert("totalFalse".into(), json!(no));
                m.insert("percentageTrue".into(), json!(share(yes)));
                m.insert("percentageFalse".into(), json!(share(no)));
            }
            _ => {}
        }
        out.insert(p.name.clone(), Value::Object(m));
    }
    Value::Object(out)
}
