//! Runs a planned query over an [`ObjectSource`]. Pure: the source is a trait,
//! so tests run it over a map in memory and the peer over a redb snapshot.

use plexus_core::filter::Filter;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::plan::{ClassQuery, Node, Sel};
use super::types::GraphQLError;
use crate::object::Object;
use crate::store::beacons;

/// A source failed to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read objects: {0}")]
pub struct SourceError(pub String);

/// Where a Local query reads its objects.
pub trait ObjectSource {
    /// Visits the objects of `class` in a stable order until `visit` returns
    /// `false`. Must read only that class's objects.
    fn scan_class(
        &self,
        class: &str,
        visit: &mut dyn FnMut(Object) -> bool,
    ) -> Result<(), SourceError>;
    /// The object `id`, if any.
    fn get(&self, id: Uuid) -> Result<Option<Object>, SourceError>;
    /// Up to `limit` objects of `class` that pass `filter`, in the order of
    /// [`ObjectSource::scan_class`]. By default a scan with
    /// [`Filter::matches`]; the peer's store answers from its indexes
    /// ([`crate::store::Snapshot::query`]) with the same answer.
    fn query(
        &self,
        class: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Object>, SourceError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let mut failure = None;
        self.scan_class(class, &mut |object| {
            let pass = match filter {
                None => true,
                Some(filter) => filter.matches(&object.schema, &mut |reference| match follow(
                    self, reference,
                ) {
                    Ok(objects) => objects,
                    Err(e) => {
                        failure = Some(e);
                        Vec::new()
                    }
                }),
            };
            if pass {
                found.push(object);
            }
            found.len() < limit && failure.is_none()
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }
}

/// The objects a reference value (one beacon or a list of them) points at.
/// Beacons to missing objects, or to an object of another kind, are skipped.
pub fn follow<S: ObjectSource + ?Sized>(
    source: &S,
    reference: &Value,
) -> Result<Vec<Object>, SourceError> {
    let mut out = Vec::new();
    for (kind, id) in beacons(reference) {
        if let Some(object) = source.get(id)?
            && object.kind == kind
        {
            out.push(object);
        }
    }
    Ok(out)
}

/// Runs the planned root fields (a `Network` field is `null`); errors are
/// appended to `errors`.
pub fn execute(
    root: &[(String, Node)],
    source: &dyn ObjectSource,
    errors: &mut Vec<GraphQLError>,
) -> Value {
    let mut out = Map::new();
    for (key, node) in root {
        let value = run_node(node, source, &[Value::String(key.clone())], errors);
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

fn push(path: &[Value], segment: impl Into<Value>) -> Vec<Value> {
    let mut p = path.to_vec();
    p.push(segment.into());
    p
}

fn run_node(
    node: &Node,
    source: &dyn ObjectSource,
    path: &[Value],
    errors: &mut Vec<GraphQLError>,
) -> Value {
    match node {
        Node::Null | Node::Network(_) => Value::Null,
        Node::Text(text) => Value::String(text.clone()),
        Node::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        run_node(n, source, &push(path, k.as_str()), errors),
                    )
                })
                .collect(),
        ),
        Node::Class(query) => match run_class(query, source, path) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(error = %e, "Local Get failed");
                errors.push(GraphQLError {
                    message: "could not read the peer's objects".into(),
                    locations: Vec::new(),
                    path: path.to_vec(),
                });
                Value::Null
            }
        },
    }
}

fn run_class(
    query: &ClassQuery,
    source: &dyn ObjectSource,
    path: &[Value],
) -> Result<Value, SourceError> {
    let found = source.query(&query.class, query.filter.as_ref(), query.limit)?;
    let mut list = Vec::with_capacity(found.len());
    for (i, object) in found.iter().enumerate() {
        list.push(render(object, &query.selection, source, &push(path, i))?);
    }
    Ok(Value::Array(list))
}

fn render(
    object: &Object,
    selection: &[(String, Sel)],
    source: &dyn ObjectSource,
    path: &[Value],
) -> Result<Value, SourceError> {
    let mut out = Map::new();
    for (key, sel) in selection {
        let value = match sel {
            Sel::Null => Value::Null,
            Sel::Typename(name) => Value::String(name.clone()),
            Sel::Uuid => Value::String(object.id.to_string()),
            Sel::Value(property) => object.schema.get(property).cloned().unwrap_or(Value::Null),
            Sel::Geo(property, fields) => match object.schema.get(property) {
                Some(Value::Object(geo)) => Value::Object(
                    fields
                        .iter()
                        .map(|(k, name)| {
                            let v = if name == "__typename" {
                                Value::String("GeoCoordinates".into())
                            } else {
                                geo.get(name).cloned().unwrap_or(Value::Null)
                            };
                            (k.clone(), v)
                        })
                        .collect(),
                ),
                _ => Value::Null,
            },
            Sel::Reference(property, members) => match object.schema.get(property) {
                None | Some(Value::Null) => Value::Null,
                Some(reference) => {
                    let here = push(path, key.as_str());
                    let mut list = Vec::new();
                    for target in follow(source, reference)? {
                        if let Some(sel) = members.get(&target.class) {
                            let i = list.len();
                            list.push(render(&target, sel, source, &push(&here, i))?);
                        }
                    }
                    Value::Array(list)
                }
            },
        };
        out.insert(key.clone(), value);
    }
    Ok(Value::Object(out))
}
