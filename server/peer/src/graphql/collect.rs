//! Field collection (the GraphQL spec's CollectFields): fields grouped by
//! response key, with inline fragments, named fragments and `@skip`/`@include`
//! applied, and argument values turned into JSON with variables resolved.

use std::collections::BTreeMap;

use graphql_parser::Pos;
use graphql_parser::query::{
    Directive, Field, FragmentDefinition, Selection, SelectionSet, TypeCondition, Value as GqlValue,
};
use serde_json::{Map, Number, Value};

use super::types::GraphQLError;

/// The fields of one response key (several when the query repeats the key).
pub struct Group<'a, 'q> {
    /// The response key: the alias, or the field's name.
    pub key: String,
    /// The fields, in query order.
    pub fields: Vec<&'a Field<'q, String>>,
}

impl<'a, 'q> Group<'a, 'q> {
    /// The first field, whose name and arguments count.
    pub fn first(&self) -> &'a Field<'q, String> {
        self.fields[0]
    }

    /// The selection sets of every field, to be merged.
    pub fn sets(&self) -> Vec<&'a SelectionSet<'q, String>> {
        self.fields.iter().map(|f| &f.selection_set).collect()
    }
}

/// The type whose fields are collected.
pub struct Scope<'s> {
    /// The concrete type (an object type or a class).
    pub type_name: &'s str,
    /// The union the object is reached through, if any: directly in it only
    /// `__typename` may be selected, the rest goes in fragments.
    pub union: Option<&'s str>,
    /// Type conditions that are valid here but do not apply to `type_name`.
    pub allowed: &'s [String],
    /// Whether to report errors (off for the second and later member of a union,
    /// so that each error is reported once).
    pub report: bool,
}

impl<'s> Scope<'s> {
    /// A plain object type.
    pub fn plain(type_name: &'s str) -> Self {
        Scope {
            type_name,
            union: None,
            allowed: &[],
            report: true,
        }
    }
}

/// Collects fields and values, and keeps the errors found.
pub struct Collector<'a, 'q> {
    fragments: BTreeMap<&'a str, &'a FragmentDefinition<'q, String>>,
    variables: Map<String, Value>,
    /// The errors found so far.
    pub errors: Vec<GraphQLError>,
}

enum Applies {
    Yes,
    No,
    Invalid,
}

impl<'a, 'q> Collector<'a, 'q> {
    /// A collector for a document's `fragments` and the operation's resolved `variables`.
    pub fn new(
        fragments: &BTreeMap<&'a str, &'a FragmentDefinition<'q, String>>,
        variables: Map<String, Value>,
    ) -> Self {
        Collector {
            fragments: fragments.clone(),
            variables,
            errors: Vec::new(),
        }
    }

    /// Records an error at `pos` and `path`.
    pub fn error(&mut self, message: impl Into<String>, pos: Pos, path: &[String]) {
        self.errors.push(GraphQLError::at(message, pos, path));
    }

    /// The fields of `sets` (merged) for `scope`, grouped by response key.
    pub fn collect_sets(
        &mut self,
        sets: impl IntoIterator<Item = &'a SelectionSet<'q, String>>,
        scope: &Scope<'_>,
        path: &[String],
    ) -> Vec<Group<'a, 'q>> {
        let mut out = Vec::new();
        for set in sets {
            self.collect(set, scope, false, path, &mut out, &mut Vec::new());
        }
        out
    }

    fn collect(
        &mut self,
        set: &'a SelectionSet<'q, String>,
        scope: &Scope<'_>,
        in_member: bool,
        path: &[String],
        out: &mut Vec<Group<'a, 'q>>,
        stack: &mut Vec<&'a str>,
    ) {
        for item in &set.items {
            match item {
                Selection::Field(field) => {
                    if !self.included(&field.directives, path, scope.report) {
                        continue;
                    }
                    let key = field.alias.as_ref().unwrap_or(&field.name);
                    if let Some(union) = scope.union
                        && !in_member
                        && field.name != "__typename"
                    {
                        if scope.report {
                            let mut p = path.to_vec();
                            p.push(key.clone());
                            let message = format!(
                                "Cannot query field \"{}\" on type \"{union}\": select it in a fragment such as `... on {} {{ {} }}`.",
                                field.name, scope.type_name, field.name
                            );
                            self.error(message, field.position, &p);
                        }
                        continue;
                    }
                    match out.iter_mut().find(|g| &g.key == key) {
                        Some(group) => {
                            if group.first().name != field.name && scope.report {
                                let message = format!(
                                    "Fields \"{key}\" conflict because \"{}\" and \"{}\" are different fields.",
                                    group.first().name,
                                    field.name
                                );
                                self.error(message, field.position, path);
                            } else {
                                group.fields.push(field);
                            }
                        }
                        None => out.push(Group {
                            key: key.clone(),
                            fields: vec![field],
                        }),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    if !self.included(&fragment.directives, path, scope.report) {
                        continue;
                    }
                    let member = match &fragment.type_condition {
                        None => in_member,
                        Some(TypeCondition::On(on)) => match applies(on, scope) {
                            Applies::Yes => in_member || on == scope.type_name,
                            Applies::No => continue,
                            Applies::Invalid => {
                                self.bad_condition(on, scope, fragment.position, path);
                                continue;
                            }
                        },
                    };
                    self.collect(&fragment.selection_set, scope, member, path, out, stack);
                }
                Selection::FragmentSpread(spread) => {
                    if !self.included(&spread.directives, path, scope.report) {
                        continue;
                    }
                    let name = spread.fragment_name.as_str();
                    let Some(&definition) = self.fragments.get(name) else {
                        if scope.report {
                            self.error(
                                format!("Unknown fragment \"{name}\"."),
                                spread.position,
                                path,
                            );
                        }
                        continue;
                    };
                    if stack.contains(&definition.name.as_str()) {
                        if scope.report {
                            self.error(
                                format!("Cannot spread fragment \"{name}\" within itself."),
                                spread.position,
                                path,
                            );
                        }
                        continue;
                    }
                    let TypeCondition::On(on) = &definition.type_condition;
                    let member = match applies(on, scope) {
                        Applies::Yes => in_member || on == scope.type_name,
                        Applies::No => continue,
                        Applies::Invalid => {
                            self.bad_condition(on, scope, spread.position, path);
                            continue;
                        }
                    };
                    stack.push(definition.name.as_str());
                    self.collect(&definition.selection_set, scope, member, path, out, stack);
                    stack.pop();
                }
            }
        }
    }

    fn bad_condition(&mut self, on: &str, scope: &Scope<'_>, pos: Pos, path: &[String]) {
        if scope.report {
            let here = scope.union.unwrap_or(scope.type_name);
            self.error(
                format!("Fragment on \"{on}\" can never apply to type \"{here}\"."),
                pos,
                path,
            );
        }
    }

    fn included(
        &mut self,
        directives: &[Directive<'q, String>],
        path: &[String],
        report: bool,
    ) -> bool {
        for directive in directives {
            let condition = directive
                .arguments
                .iter()
                .find(|(n, _)| n == "if")
                .map(|(_, v)| v);
            let value = condition.and_then(|v| self.value(v, directive.position, path));
            match (directive.name.as_str(), value) {
                ("skip", Some(Value::Bool(true))) | ("include", Some(Value::Bool(false))) => {
                    return false;
                }
                ("skip" | "include", Some(Value::Bool(_))) => {}
                ("skip" | "include", _) => {
                    if report {
                        self.error(
                            format!("@{} needs a Boolean argument \"if\".", directive.name),
                            directive.position,
                            path,
                        );
                    }
                }
                (other, _) => {
                    if report {
                        self.error(
                            format!("Unknown directive \"@{other}\"."),
                            directive.position,
                            path,
                        );
                    }
                }
            }
        }
        true
    }

    /// `value` as JSON, with variables resolved; `None` (and an error) when it
    /// uses an undefined variable.
    pub fn value(
        &mut self,
        value: &GqlValue<'q, String>,
        pos: Pos,
        path: &[String],
    ) -> Option<Value> {
        Some(match value {
            GqlValue::Variable(name) => match self.variables.get(name) {
                Some(v) => v.clone(),
                None => {
                    self.error(format!("Variable \"${name}\" is not defined."), pos, path);
                    return None;
                }
            },
            GqlValue::Int(n) => n.as_i64().map_or(Value::Null, Value::from),
            GqlValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            GqlValue::String(s) => Value::String(s.clone()),
            GqlValue::Boolean(b) => Value::Bool(*b),
            GqlValue::Null => Value::Null,
            GqlValue::Enum(e) => Value::String(e.clone()),
            GqlValue::List(items) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    list.push(self.value(item, pos, path)?);
                }
                Value::Array(list)
            }
            GqlValue::Object(fields) => {
                let mut map = Map::new();
                for (k, v) in fields {
                    map.insert(k.clone(), self.value(v, pos, path)?);
                }
                Value::Object(map)
            }
        })
    }
}

fn applies(on: &str, scope: &Scope<'_>) -> Applies {
    if on == scope.type_name || scope.union == Some(on) {
        Applies::Yes
    } else if scope.allowed.iter().any(|a| a == on) {
        Applies::No
    } else {
        Applies::Invalid
    }
}
