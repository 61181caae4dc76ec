//! GraphQL pieces shared by every Plexus query path: the error shape, the
//! `limit` rule, and parsing into an operation with its variables
//! substituted and its named fragments inlined (for the Network planner,
//! which runs after the engine of `plexus-graphql` validated the query and
//! bounded its fragment expansion). Whether a query fits a schema is the
//! engine's to judge, on the peer that answers it.

use std::collections::BTreeMap;

use graphql_parser::Pos;
use graphql_parser::query::{
    Definition, Document, Field, FragmentDefinition, InlineFragment, Number, OperationDefinition,
    Selection, SelectionSet, Value,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The AST of a field, with owned strings.
pub type AstField = Field<'static, String>;
/// The AST of a selection set, with owned strings.
pub type AstSelectionSet = SelectionSet<'static, String>;

/// A GraphQL error as the spec shapes it in a response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphQLError {
    /// What went wrong.
    pub message: String,
    /// Where in the query text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Which field of the response (names and list indices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<Json>,
}

impl GraphQLError {
    /// An error at `pos` for the response field at `path`.
    pub fn at(message: impl Into<String>, pos: Pos, path: &[String]) -> Self {
        Self {
            message: message.into(),
            locations: vec![Location::from(pos)],
            path: path.iter().map(|p| Json::String(p.clone())).collect(),
        }
    }

    /// An error about the whole query.
    pub fn query(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: Vec::new(),
        }
    }
}

/// A line and column in the query text, both from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

impl From<Pos> for Location {
    fn from(pos: Pos) -> Self {
        Self {
            line: pos.line,
            column: pos.column,
        }
    }
}

/// The name under which a field appears in the response: its alias or its name.
pub fn response_key(field: &AstField) -> &str {
    field.alias.as_deref().unwrap_or(&field.name)
}

/// Parses `query` and returns the selection set of the operation to run
/// (`operation_name`, or the only one), with `variables` substituted and
/// named fragments inlined, so that what follows sees one self-contained tree.
pub fn prepare(
    query: &str,
    operation_name: Option<&str>,
    variables: &serde_json::Map<String, Json>,
) -> Result<AstSelectionSet, GraphQLError> {
    let document: Document<'static, String> = graphql_parser::parse_query::<String>(query)
        .map_err(|e| GraphQLError::query(format!("syntax error: {}", e.to_string().trim())))?
        .into_static();
    let mut fragments = BTreeMap::new();
    let mut operations = Vec::new();
    for definition in document.definitions {
        match definition {
            Definition::Fragment(f) => {
                fragments.insert(f.name.clone(), f);
            }
            Definition::Operation(op) => operations.push(op),
        }
    }
    let chosen = match operation_name {
        Some(name) => operations
            .into_iter()
            .find(
                |op| matches!(op, OperationDefinition::Query(q) if q.name.as_deref() == Some(name)),
            )
            .ok_or_else(|| GraphQLError::query(format!("no operation named {name:?}")))?,
        None if operations.len() == 1 => operations.remove(0),
        None => {
            return Err(GraphQLError::query(
                "the query must hold exactly one operation, or name one",
            ));
        }
    };
    let (selection_set, defaults) = match chosen {
        OperationDefinition::SelectionSet(set) => (set, Vec::new()),
        OperationDefinition::Query(q) => {
            let defaults = q
                .variable_definitions
                .into_iter()
                .map(|d| (d.name, d.default_value))
                .collect();
            (q.selection_set, defaults)
        }
        OperationDefinition::Mutation(m) => {
            return Err(GraphQLError::at(
                "mutations are not supported: use the REST API",
                m.position,
                &[],
            ));
        }
        OperationDefinition::Subscription(s) => {
            return Err(GraphQLError::at(
                "subscriptions are not supported",
                s.position,
                &[],
            ));
        }
    };
    let mut values = BTreeMap::new();
    for (name, default) in defaults {
        // An absent variable without a default is null, and its argument is dropped.
        let value = match (variables.get(&name), default) {
            (Some(json), _) => json_to_value(json),
            (None, Some(default)) => default,
            (None, None) => Value::Null,
        };
        values.insert(name, value);
    }
    let mut set = selection_set;
    inline(&mut set, &fragments, &values, 0)?;
    Ok(set)
}

/// Replaces fragment spreads by inline fragments and variables by their values.
fn inline(
    set: &mut AstSelectionSet,
    fragments: &BTreeMap<String, FragmentDefinition<'static, String>>,
    variables: &BTreeMap<String, Value<'static, String>>,
    depth: usize,
) -> Result<(), GraphQLError> {
    if depth > 32 {
        return Err(GraphQLError::query(
            "the query nests too deep (more than 32 levels)",
        ));
    }
    for item in &mut set.items {
        match item {
            Selection::Field(field) => {
                for (_, value) in &mut field.arguments {
                    substitute(value, variables, field.position)?;
                }
                field.arguments.retain(|(_, v)| *v != Value::Null);
                inline(&mut field.selection_set, fragments, variables, depth + 1)?;
            }
            Selection::InlineFragment(fragment) => {
                inline(&mut fragment.selection_set, fragments, variables, depth + 1)?
            }
            Selection::FragmentSpread(spread) => {
                let definition = fragments.get(&spread.fragment_name).ok_or_else(|| {
                    GraphQLError::at(
                        format!("unknown fragment {:?}", spread.fragment_name),
                        spread.position,
                        &[],
                    )
                })?;
                let mut replacement = InlineFragment {
                    position: spread.position,
                    type_condition: Some(definition.type_condition.clone()),
                    directives: Vec::new(),
                    selection_set: definition.selection_set.clone(),
                };
                inline(
                    &mut replacement.selection_set,
                    fragments,
                    variables,
                    depth + 1,
                )?;
                *item = Selection::InlineFragment(replacement);
            }
        }
    }
    Ok(())
}

fn substitute(
    value: &mut Value<'static, String>,
    variables: &BTreeMap<String, Value<'static, String>>,
    pos: Pos,
) -> Result<(), GraphQLError> {
    match value {
        Value::Variable(name) => {
            *value = variables.get(name.as_str()).cloned().ok_or_else(|| {
                GraphQLError::at(format!("variable ${name} is not defined"), pos, &[])
            })?;
        }
        Value::List(items) => {
            for v in items {
                substitute(v, variables, pos)?;
            }
        }
        Value::Object(fields) => {
            for v in fields.values_mut() {
                substitute(v, variables, pos)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A JSON variable value as a GraphQL literal.
pub fn json_to_value(json: &Json) -> Value<'static, String> {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Value::Int(Number::from(i)),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(json_to_value).collect()),
        Json::Object(map) => {
            // extend, not collect: collecting into a BTree sorts first, and every
            // sort instantiated costs the tab module's size budget (wasm/build.sh).
            let mut object = BTreeMap::new();
            object.extend(map.iter().map(|(k, v)| (k.clone(), json_to_value(v))));
            Value::Object(object)
        }
    }
}

/// A GraphQL literal as JSON (enums become strings).
pub fn value_to_json(value: &Value<'static, String>) -> Json {
    match value {
        Value::Variable(name) => Json::String(format!("${name}")),
        Value::Int(n) => n.as_i64().map_or(Json::Null, Json::from),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Null => Json::Null,
        Value::Enum(e) => Json::String(e.clone()),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// The arguments a class field of `Get` takes.
pub const CLASS_ARGUMENTS: [&str; 2] = ["where", "limit"];

/// The limit of a `Get` class field without a `limit` argument.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted, by a peer and by the Network planner alike.
pub const MAX_LIMIT: usize = 10_000;

/// The `limit` argument of a `Get` class field (variables resolved, as
/// JSON): null means [`DEFAULT_LIMIT`]; otherwise an integer from 0 to
/// [`MAX_LIMIT`]. Every engine judges it by this rule.
pub fn parse_limit(value: &Json) -> Result<usize, String> {
    if value.is_null() {
        return Ok(DEFAULT_LIMIT);
    }
    match value.as_u64().and_then(|l| usize::try_from(l).ok()) {
        Some(l) if l <= MAX_LIMIT => Ok(l),
        _ => Err(format!(
            "limit must be an integer from 0 to {MAX_LIMIT}, got {value}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get_of(query: &str, variables: serde_json::Value) -> Result<AstSelectionSet, GraphQLError> {
        let set = prepare(query, None, variables.as_object().expect("object"))?;
        let Some(Selection::Field(local)) = set.items.into_iter().next() else {
            panic!("no root field")
        };
        let Some(Selection::Field(get)) = local.selection_set.items.into_iter().next() else {
            panic!("no Get")
        };
        Ok(get.selection_set)
    }

    #[test]
    fn limit_is_judged_by_one_rule() {
        assert_eq!(parse_limit(&Json::Null), Ok(DEFAULT_LIMIT));
        assert_eq!(parse_limit(&json!(0)), Ok(0));
        assert_eq!(parse_limit(&json!(MAX_LIMIT)), Ok(MAX_LIMIT));
        for bad in [json!(MAX_LIMIT + 1), json!(-1), json!(1.5), json!("3")] {
            assert!(parse_limit(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn variables_and_named_fragments_are_inlined() {
        let query = "query Q($n: Int, $w: WhereInput) { Local { Get { Things { City(limit: $n, where: $w) { ...F } } } } }
                     fragment F on City { name }";
        let get = get_of(query, json!({"n": 3})).expect("parse");
        let rendered = get.to_string();
        assert!(rendered.contains("limit: 3"), "{rendered}");
        assert!(
            !rendered.contains("where"),
            "absent optional variable drops the argument: {rendered}"
        );
        assert!(rendered.contains("... on City"), "{rendered}");
        assert!(
            prepare(
                "{ Local { Get { Things { City(limit: $x) { name } } } } }",
                None,
                &serde_json::Map::new()
            )
            .is_err()
        );
    }

    #[test]
    fn syntax_errors_and_mutations_are_refused() {
        let empty = serde_json::Map::new();
        assert!(
            prepare("{ Local { ", None, &empty)
                .expect_err("syntax")
                .message
                .starts_with("syntax error")
        );
        assert!(prepare("mutation { x }", None, &empty).is_err());
        assert!(prepare("query A { a } query B { b }", None, &empty).is_err());
        assert!(prepare("query A { a } query B { b }", Some("B"), &empty).is_ok());
    }

    #[test]
    fn json_and_graphql_values_round_trip() {
        let json = json!({"operator": "Equal", "path": ["name"], "valueInt": 5, "f": 1.5, "b": true, "n": null});
        assert_eq!(value_to_json(&json_to_value(&json)), json);
        // Past 32 bits an integer travels as a float literal that prints without a fraction.
        assert_eq!(
            json_to_value(&json!(10_000_000_000u64)).to_string(),
            "10000000000"
        );
    }
}
