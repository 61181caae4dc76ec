//! From a GraphQL document to a checked [`Node`] tree: the operation is
//! chosen, variables are resolved, and every selected class, property,
//! argument and fragment is checked against the peer's own [`Schema`].
//! Pure: no store, no I/O.
//!
//! A field that does not exist is reported as a [`GraphQLError`] with its
//! location and path, and planned as [`Node::Null`] (or [`Sel::Null`]): it gets
//! no data, and the rest of the query still runs.

use std::collections::BTreeMap;

use graphql_parser::query::{Definition, Document, Field, OperationDefinition, SelectionSet, Type};
use plexus_core::schema::{Class, DataType, Kind, Schema};
use serde_json::{Map, Value};

use super::collect::{Collector, Group, Scope};
use super::filter::Filter;
use super::types::{GraphQLError, Location};

/// The limit of a Local Get without a `limit` argument, and the largest
/// accepted: the core's, so the Network planner judges `limit` the same way.
pub use plexus_core::graphql::{DEFAULT_LIMIT, MAX_LIMIT};

/// The root type's name, as `__typename` answers it.
pub const ROOT_TYPE: &str = "WeaviateObj";

/// A planned field whose value is not a list of objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A field that failed validation: `null`, its error already reported.
    Null,
    /// A fixed text (`__typename`).
    Text(String),
    /// A fixed object (`Local`, `Get`, `Things`) with its fields by response key.
    Object(Vec<(String, Node)>),
    /// The objects of one class.
    Class(ClassQuery),
    /// The `Network` root field, answered by a network resolver; where it is in the query.
    Network(Location),
}

/// A Local Get of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassQuery {
    /// The class.
    pub class: String,
    /// At most this many objects.
    pub limit: usize,
    /// Only objects that pass this filter.
    pub filter: Option<Filter>,
    /// What to answer of each object.
    pub selection: Vec<(String, Sel)>,
}

/// A planned field of an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Sel {
    /// A field that failed validation: `null`.
    Null,
    /// `__typename`: this text.
    Typename(String),
    /// The object's id.
    Uuid,
    /// A primitive property's value.
    Value(String),
    /// A geoCoordinates property, with these fields (`latitude`, `longitude`, `__typename`).
    Geo(String, Vec<(String, String)>),
    /// A reference property: what to answer for a referenced object of each class.
    Reference(String, BTreeMap<String, Vec<(String, Sel)>>),
}

/// The planned root fields by response key, and the field errors found.
pub type Planned = (Vec<(String, Node)>, Vec<GraphQLError>);

/// Chooses the operation of `document`, resolves its variables, and plans its
/// root fields. `Err` holds request errors: nothing can run. `Ok` holds the
/// plan and the field errors found while planning.
pub fn plan(
    document: &Document<'_, String>,
    operation_name: Option<&str>,
    variables: &Map<String, Value>,
    schema: &Schema,
) -> Result<Planned, Vec<GraphQLError>> {
    let mut operations = Vec::new();
    let mut fragments = BTreeMap::new();
    for definition in &document.definitions {
        match definition {
            Definition::Operation(op) => operations.push(op),
            Definition::Fragment(f) => {
                fragments.insert(f.name.as_str(), f);
            }
        }
    }
    fn name_of<'o>(op: &'o OperationDefinition<'_, String>) -> Option<&'o str> {
        match op {
            OperationDefinition::SelectionSet(_) => None,
            OperationDefinition::Query(q) => q.name.as_deref(),
            OperationDefinition::Mutation(m) => m.name.as_deref(),
            OperationDefinition::Subscription(s) => s.name.as_deref(),
        }
    }
    let operation = match operation_name {
        Some(wanted) => operations
            .iter()
            .find(|op| name_of(op) == Some(wanted))
            .ok_or_else(|| {
                vec![GraphQLError::query(format!(
                    "Unknown operation named \"{wanted}\"."
                ))]
            })?,
        None => match operations.as_slice() {
            [one] => one,
            [] => {
                return Err(vec![GraphQLError::query(
                    "The document holds no operation.",
                )]);
            }
            _ => {
                return Err(vec![GraphQLError::query(
                    "Must provide operation name if query contains multiple operations.",
                )]);
            }
        },
    };
    let (selection_set, definitions) = match operation {
        OperationDefinition::SelectionSet(set) => (set, &[][..]),
        OperationDefinition::Query(q) => (&q.selection_set, q.variable_definitions.as_slice()),
        OperationDefinition::Mutation(m) => {
            return Err(vec![GraphQLError::at(
                "Only queries are supported.",
                m.position,
                &[],
            )]);
        }
        OperationDefinition::Subscription(s) => {
            return Err(vec![GraphQLError::at(
                "Only queries are supported.",
                s.position,
                &[],
            )]);
        }
    };
    let mut resolved = Map::new();
    let mut errors = Vec::new();
    let mut defaults = Collector::new(&fragments, Map::new());
    for def in definitions {
        match variables.get(&def.name).filter(|v| !v.is_null()) {
            Some(value) => {
                resolved.insert(def.name.clone(), value.clone());
            }
            None => match &def.default_value {
                Some(default) => {
                    if let Some(value) = defaults.value(default, def.position, &[]) {
                        resolved.insert(def.name.clone(), value);
                    }
                }
                None if matches!(def.var_type, Type::NonNullType(_)) => {
                    errors.push(GraphQLError::at(
                        format!(
                            "Variable \"${}\" of required type \"{}\" was not provided.",
                            def.name, def.var_type
                        ),
                        def.position,
                        &[],
                    ))
                }
                None => {
                    resolved.insert(def.name.clone(), Value::Null);
                }
            },
        }
    }
    errors.append(&mut defaults.errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut planner = Planner {
        schema,
        c: Collector::new(&fragments, resolved),
    };
    let root = planner.root(selection_set);
    Ok((root, planner.c.errors))
}

struct Planner<'a, 'q> {
    schema: &'a Schema,
    c: Collector<'a, 'q>,
}

fn child_path(path: &[String], key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_owned());
    p
}

impl<'a, 'q> Planner<'a, 'q> {
    fn root(&mut self, set: &'a SelectionSet<'q, String>) -> Vec<(String, Node)> {
        let groups = self.c.collect_sets([set], &Scope::plain(ROOT_TYPE), &[]);
        self.fixed_fields(groups, ROOT_TYPE, &[], |p, name, group, path| match name {
            "Local" => {
                Some(p.fixed(
                    group,
                    "WeaviateLocalObj",
                    path,
                    |p, name, group, path| match name {
                        "Get" => Some(p.fixed(
                            group,
                            "WeaviateLocalGetObj",
                            path,
                            |p, name, group, path| {
                                let kind =
                                    Kind::parse(name).filter(|k| k.graphql_field() == name)?;
                                let type_name =
                                    format!("WeaviateLocalGet{}Obj", kind.graphql_field());
                                Some(p.fixed(group, &type_name, path, |p, _, group, path| {
                                    p.class(kind, group, path)
                                }))
                            },
                        )),
                        _ => None,
                    },
                ))
            }
            "Network" => Some(p.no_arguments(group, path).map_or(Node::Null, |()| {
                let pos = group.first().position;
                Node::Network(Location {
                    line: pos.line,
                    column: pos.column,
                })
            })),
            _ => None,
        })
    }

    /// Plans the fields of a fixed object type; `child` plans a field by name,
    /// or answers `None` when the type has no such field.
    fn fixed_fields(
        &mut self,
        groups: Vec<Group<'a, 'q>>,
        type_name: &str,
        path: &[String],
        mut child: impl FnMut(&mut Self, &str, &Group<'a, 'q>, &[String]) -> Option<Node>,
    ) -> Vec<(String, Node)> {
        let mut out = Vec::new();
        for group in groups {
            let field = group.first();
            let path = child_path(path, &group.key);
            let node = if field.name == "__typename" {
                self.leaf(&group, &path)
                    .map_or(Node::Null, |()| Node::Text(type_name.to_owned()))
            } else {
                match child(self, &field.name, &group, &path) {
                    Some(node) => node,
                    None => {
                        self.unknown_field(field, type_name, &path, "");
                        Node::Null
                    }
                }
            };
            out.push((group.key, node));
        }
        out
    }

    /// Plans a field whose value is the fixed object type `type_name`.
    fn fixed(
        &mut self,
        group: &Group<'a, 'q>,
        type_name: &str,
        path: &[String],
        child: impl FnMut(&mut Self, &str, &Group<'a, 'q>, &[String]) -> Option<Node>,
    ) -> Node {
        if self.no_arguments(group, path).is_none()
            || self.needs_selection(group, type_name, path).is_none()
        {
            return Node::Null;
        }
        let groups = self
            .c
            .collect_sets(group.sets(), &Scope::plain(type_name), path);
        Node::Object(self.fixed_fields(groups, type_name, path, child))
    }

    fn class(&mut self, kind: Kind, group: &Group<'a, 'q>, path: &[String]) -> Option<Node> {
        let field = group.first();
        let Some(class) = self.schema.class(kind, &field.name) else {
            let hint = format!(": this peer has no {kind} class named \"{}\"", field.name);
            self.unknown_field(
                field,
                &format!("WeaviateLocalGet{}Obj", kind.graphql_field()),
                path,
                &hint,
            );
            return Some(Node::Null);
        };
        let mut limit = DEFAULT_LIMIT;
        let mut filter = None;
        let mut ok = true;
        for (name, value) in &field.arguments {
            let Some(value) = self.c.value(value, field.position, path) else {
                ok = false;
                continue;
            };
            match name.as_str() {
                "limit" => match plexus_core::graphql::parse_limit(&value) {
                    Ok(l) => limit = l,
                    Err(message) => {
                        self.c.error(message, field.position, path);
                        ok = false;
                    }
                },
                "where" if value.is_null() => {}
                "where" => match Filter::parse(&value, self.schema, &class.class) {
                    Ok(f) => filter = Some(f),
                    Err(e) => {
                        self.c.error(e.to_string(), field.position, path);
                        ok = false;
                    }
                },
                other => {
                    self.c.error(
                        format!("Unknown argument \"{other}\" on field \"{}\".", field.name),
                        field.position,
                        path,
                    );
                    ok = false;
                }
            }
        }
        if self.needs_selection(group, &class.class, path).is_none() {
            ok = false;
        }
        let selection = self.object(class, group.sets(), None, path);
        Some(if ok {
            Node::Class(ClassQuery {
                class: class.class.clone(),
                limit,
                filter,
                selection,
            })
        } else {
            Node::Null
        })
    }

    /// Plans the selection of an object of `class`; `union` is set when the
    /// object is reached through a reference (name of the union, its targets).
    fn object(
        &mut self,
        class: &Class,
        sets: Vec<&'a SelectionSet<'q, String>>,
        union: Option<(&str, &[String], bool)>,
        path: &[String],
    ) -> Vec<(String, Sel)> {
        let scope = match union {
            Some((name, targets, report)) => Scope {
                type_name: &class.class,
                union: Some(name),
                allowed: targets,
                report,
            },
            None => Scope::plain(&class.class),
        };
        let groups = self.c.collect_sets(sets, &scope, path);
        let mut out = Vec::new();
        for group in groups {
            let path = child_path(path, &group.key);
            let sel = self.property(class, &group, &path);
            out.push((group.key, sel));
        }
        out
    }

    fn property(&mut self, class: &Class, group: &Group<'a, 'q>, path: &[String]) -> Sel {
        let field = group.first();
        if self.no_arguments(group, path).is_none() {
            return Sel::Null;
        }
        let name = field.name.as_str();
        if name == "__typename" || name == "uuid" {
            return match self.leaf(group, path) {
                Some(()) if name == "uuid" => Sel::Uuid,
                Some(()) => Sel::Typename(class.class.clone()),
                None => Sel::Null,
            };
        }
        let Some(property) = class.properties.iter().find(|p| p.name == name) else {
            self.unknown_field(field, &class.class, path, "");
            return Sel::Null;
        };
        match property.kind() {
            Ok(DataType::Ref(targets)) => {
                let mut union = property.name.clone();
                union[..1].make_ascii_uppercase();
                let union = format!("{}{union}Obj", class.class);
                if self.needs_selection(group, &union, path).is_none() {
                    return Sel::Null;
                }
                let mut members = BTreeMap::new();
                for (i, target) in targets.iter().enumerate() {
                    if let Some((_, target_class)) = self.schema.find_class(target) {
                        let sel = self.object(
                            target_class,
                            group.sets(),
                            Some((&union, &targets, i == 0)),
                            path,
                        );
                        members.insert(target.clone(), sel);
                    }
                }
                Sel::Reference(property.name.clone(), members)
            }
            Ok(DataType::GeoCoordinates) => {
                if self
                    .needs_selection(group, "GeoCoordinates", path)
                    .is_none()
                {
                    return Sel::Null;
                }
                let groups =
                    self.c
                        .collect_sets(group.sets(), &Scope::plain("GeoCoordinates"), path);
                let mut fields = Vec::new();
                for g in groups {
                    let f = g.first();
                    let sub = child_path(path, &g.key);
                    if matches!(f.name.as_str(), "latitude" | "longitude" | "__typename") {
                        if self.leaf(&g, &sub).is_some() {
                            fields.push((g.key.clone(), f.name.clone()));
                        }
                    } else {
                        self.unknown_field(f, "GeoCoordinates", &sub, "");
                    }
                }
                Sel::Geo(property.name.clone(), fields)
            }
            _ => self
                .leaf(group, path)
                .map_or(Sel::Null, |()| Sel::Value(property.name.clone())),
        }
    }

    fn unknown_field(
        &mut self,
        field: &Field<'q, String>,
        type_name: &str,
        path: &[String],
        hint: &str,
    ) {
        self.c.error(
            format!(
                "Cannot query field \"{}\" on type \"{type_name}\"{hint}.",
                field.name
            ),
            field.position,
            path,
        );
    }

    fn no_arguments(&mut self, group: &Group<'a, 'q>, path: &[String]) -> Option<()> {
        let field = group.first();
        match field.arguments.first() {
            None => Some(()),
            Some((name, _)) => {
                self.c.error(
                    format!("Unknown argument \"{name}\" on field \"{}\".", field.name),
                    field.position,
                    path,
                );
                None
            }
        }
    }

    fn leaf(&mut self, group: &Group<'a, 'q>, path: &[String]) -> Option<()> {
        let field = group.first();
        if group
            .fields
            .iter()
            .all(|f| f.selection_set.items.is_empty())
        {
            return Some(());
        }
        self.c.error(
            format!(
                "Field \"{}\" must not have a selection since its type has no subfields.",
                field.name
            ),
            field.position,
            path,
        );
        None
    }

    fn needs_selection(
        &mut self,
        group: &Group<'a, 'q>,
        type_name: &str,
        path: &[String],
    ) -> Option<()> {
        let field = group.first();
        if group
            .fields
            .iter()
            .any(|f| !f.selection_set.items.is_empty())
        {
            return Some(());
        }
        self.c.error(
            format!(
                "Field \"{}\" of type \"{type_name}\" must have a selection of subfields.",
                field.name
            ),
            field.position,
            path,
        );
        None
    }
}
