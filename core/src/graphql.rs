//! GraphQL pieces shared by every Plexus query path: the error shape, the
//! `limit` rule, and parsing into an operation with its variables
//! substituted and its named fragments inlined (for the Network planner,
//! which runs after the engine of `plexus-graphql` validated the query and
//! bounded its fragment expansion). Whether a query fits a schema is the
//! engine's to judge, on the peer that answers it.
//!
//! It parses with async-graphql-parser, the engine's own parser (one
//! GraphQL parser in the browser modules, not two), into a small owned tree
//! of its own ([`SelectionSet`]), which prints back as query text
//! ([`print`]) for the Local queries the planner sends.

use std::collections::HashMap;
use std::fmt::{self, Display, Formatter, Write as _};

pub use async_graphql_parser::Pos;
use async_graphql_parser::Positioned;
use async_graphql_parser::types::{
    self as parsed, DocumentOperations, FragmentDefinition, OperationType,
};
pub use async_graphql_value::ConstValue as Value;
use async_graphql_value::{Name, Number};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A field of a prepared query: variables substituted, fragments inlined.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Field {
    /// Where it starts in the query text (`0:0` when the planner made it).
    pub position: Pos,
    /// Its alias.
    pub alias: Option<String>,
    /// Its name.
    pub name: String,
    /// Its arguments, in query order (those whose value is null dropped).
    pub arguments: Vec<(String, Value)>,
    /// Its directives.
    pub directives: Vec<Directive>,
    /// Its sub-selection (empty for a leaf).
    pub selection_set: SelectionSet,
}

/// A directive of a prepared query, such as `@include(if: true)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directive {
    /// Its name, without the `@`.
    pub name: String,
    /// Its arguments, variables substituted.
    pub arguments: Vec<(String, Value)>,
}

/// An inline fragment (named fragments are inlined as these).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InlineFragment {
    /// Where it starts in the query text.
    pub position: Pos,
    /// The type of `... on Type`, if any.
    pub type_condition: Option<String>,
    /// Its directives.
    pub directives: Vec<Directive>,
    /// Its selection.
    pub selection_set: SelectionSet,
}

/// One item of a selection set.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// A field.
    Field(Field),
    /// An inline fragment.
    InlineFragment(InlineFragment),
}

/// A selection set: `{ a b(x: 1) ... on T { c } }`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectionSet {
    /// Its items, in query order.
    pub items: Vec<Selection>,
}

/// The AST of a field, with owned strings.
pub type AstField = Field;
/// The AST of a selection set, with owned strings.
pub type AstSelectionSet = SelectionSet;

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

/// How deep `prepare` lets selections nest, fragments inlined.
const MAX_DEPTH: usize = 32;

/// Parses `query` and returns the selection set of the operation to run
/// (`operation_name`, or the only one), with `variables` substituted and
/// named fragments inlined, so that what follows sees one self-contained tree.
pub fn prepare(
    query: &str,
    operation_name: Option<&str>,
    variables: &serde_json::Map<String, Json>,
) -> Result<AstSelectionSet, GraphQLError> {
    let document = async_graphql_parser::parse_query(query).map_err(|e| GraphQLError {
        message: format!("syntax error: {}", e.to_string().trim()),
        locations: e.positions().map(Location::from).collect(),
        path: Vec::new(),
    })?;
    let chosen = match (&document.operations, operation_name) {
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Single(operation), None) => Some(operation),
        (DocumentOperations::Multiple(operations), None) => match operations.len() {
            1 => operations.values().next(),
            _ => {
                return Err(GraphQLError::query(
                    "the query must hold exactly one operation, or name one",
                ));
            }
        },
    };
    let chosen = chosen.ok_or_else(|| {
        GraphQLError::query(format!(
            "no operation named {:?}",
            operation_name.unwrap_or_default()
        ))
    })?;
    match chosen.node.ty {
        OperationType::Query => {}
        OperationType::Mutation => {
            return Err(GraphQLError::at(
                "mutations are not supported: use the REST API",
                chosen.pos,
                &[],
            ));
        }
        OperationType::Subscription => {
            return Err(GraphQLError::at(
                "subscriptions are not supported",
                chosen.pos,
                &[],
            ));
        }
    }
    let mut values = HashMap::new();
    for definition in &chosen.node.variable_definitions {
        let definition = &definition.node;
        // An absent variable without a default is null, and its argument is dropped.
        let value = match (
            variables.get(definition.name.node.as_str()),
            &definition.default_value,
        ) {
            (Some(json), _) => json_to_value(json),
            (None, Some(default)) => default.node.clone(),
            (None, None) => Value::Null,
        };
        values.insert(definition.name.node.clone(), value);
    }
    let inliner = Inliner {
        fragments: &document.fragments,
        variables: &values,
    };
    inliner.set(&chosen.node.selection_set.node, 0)
}

/// Turns the parsed tree into a prepared one: fragment spreads become
/// inline fragments and variables their values.
struct Inliner<'d> {
    fragments: &'d HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'d HashMap<Name, Value>,
}

impl Inliner<'_> {
    fn set(&self, set: &parsed::SelectionSet, depth: usize) -> Result<SelectionSet, GraphQLError> {
        if depth > MAX_DEPTH {
            return Err(GraphQLError::query(format!(
                "the query nests too deep (more than {MAX_DEPTH} levels)"
            )));
        }
        let mut items = Vec::with_capacity(set.items.len());
        for item in &set.items {
            items.push(match &item.node {
                parsed::Selection::Field(field) => {
                    let pos = field.pos;
                    let field = &field.node;
                    let mut arguments = self.arguments(&field.arguments, pos)?;
                    arguments.retain(|(_, v)| *v != Value::Null);
                    Selection::Field(Field {
                        position: pos,
                        alias: field.alias.as_ref().map(|a| a.node.to_string()),
                        name: field.name.node.to_string(),
                        arguments,
                        directives: self.directives(&field.directives)?,
                        selection_set: self.set(&field.selection_set.node, depth + 1)?,
                    })
                }
                parsed::Selection::InlineFragment(fragment) => {
                    let pos = fragment.pos;
                    let fragment = &fragment.node;
                    Selection::InlineFragment(InlineFragment {
                        position: pos,
                        type_condition: fragment
                            .type_condition
                            .as_ref()
                            .map(|t| t.node.on.node.to_string()),
                        directives: self.directives(&fragment.directives)?,
                        selection_set: self.set(&fragment.selection_set.node, depth + 1)?,
                    })
                }
                parsed::Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let definition = self.fragments.get(name).ok_or_else(|| {
                        GraphQLError::at(
                            format!("unknown fragment {:?}", name.as_str()),
                            spread.pos,
                            &[],
                        )
                    })?;
                    Selection::InlineFragment(InlineFragment {
                        position: spread.pos,
                        type_condition: Some(
                            definition.node.type_condition.node.on.node.to_string(),
                        ),
                        directives: self.directives(&spread.node.directives)?,
                        selection_set: self.set(&definition.node.selection_set.node, depth + 1)?,
                    })
                }
            });
        }
        Ok(SelectionSet { items })
    }

    fn arguments(
        &self,
        arguments: &[(Positioned<Name>, Positioned<async_graphql_value::Value>)],
        pos: Pos,
    ) -> Result<Vec<(String, Value)>, GraphQLError> {
        let mut out = Vec::with_capacity(arguments.len());
        for (name, value) in arguments {
            let value = value.node.clone().into_const_with(|variable| {
                self.variables.get(&variable).cloned().ok_or_else(|| {
                    GraphQLError::at(format!("variable ${variable} is not defined"), pos, &[])
                })
            })?;
            out.push((name.node.to_string(), value));
        }
        Ok(out)
    }

    fn directives(
        &self,
        directives: &[Positioned<parsed::Directive>],
    ) -> Result<Vec<Directive>, GraphQLError> {
        let mut out = Vec::with_capacity(directives.len());
        for directive in directives {
            out.push(Directive {
                name: directive.node.name.node.to_string(),
                arguments: self.arguments(&directive.node.arguments, directive.pos)?,
            });
        }
        Ok(out)
    }
}

/// A JSON variable value as a GraphQL literal.
pub fn json_to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.clone()),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(json_to_value).collect()),
        Json::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (Name::new(k), json_to_value(v)))
                .collect(),
        ),
    }
}

/// A GraphQL literal as JSON (enums become strings, bytes a list of numbers).
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Number(n) => Json::Number(n.clone()),
        Value::String(s) => Json::String(s.clone()),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Null => Json::Null,
        Value::Enum(e) => Json::String(e.to_string()),
        Value::Binary(bytes) => Json::Array(bytes.iter().map(|b| Json::from(*b)).collect()),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

// The printer: a prepared selection set as query text (`{ a(x: 1) { b } }`,
// on one line), which parses back to the same tree. `ConstValue`'s own
// Display is not used for strings: it writes control characters as
// decimal `\u` escapes.

impl Display for SelectionSet {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for item in &self.items {
            f.write_char(' ')?;
            match item {
                Selection::Field(field) => field.fmt(f)?,
                Selection::InlineFragment(fragment) => fragment.fmt(f)?,
            }
        }
        f.write_str(" }")
    }
}

impl Display for Field {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(alias) = &self.alias {
            write!(f, "{alias}: ")?;
        }
        f.write_str(&self.name)?;
        write_arguments(&self.arguments, f)?;
        write_directives(&self.directives, f)?;
        if !self.selection_set.items.is_empty() {
            f.write_char(' ')?;
            self.selection_set.fmt(f)?;
        }
        Ok(())
    }
}

impl Display for InlineFragment {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("...")?;
        if let Some(on) = &self.type_condition {
            write!(f, " on {on}")?;
        }
        write_directives(&self.directives, f)?;
        f.write_char(' ')?;
        self.selection_set.fmt(f)
    }
}

/// The text of a query whose one operation is `set`.
pub fn print(set: &SelectionSet) -> String {
    set.to_string()
}

fn write_directives(directives: &[Directive], f: &mut Formatter<'_>) -> fmt::Result {
    for directive in directives {
        write!(f, " @{}", directive.name)?;
        write_arguments(&directive.arguments, f)?;
    }
    Ok(())
}

fn write_arguments(arguments: &[(String, Value)], f: &mut Formatter<'_>) -> fmt::Result {
    if arguments.is_empty() {
        return Ok(());
    }
    let pairs = arguments.iter().map(|(name, value)| (name.as_str(), value));
    write_pairs(('(', ')'), pairs, f)
}

/// `name: value` pairs between `open` and `close`, comma-separated: the
/// arguments of a field or directive, and an input object.
fn write_pairs<'v>(
    (open, close): (char, char),
    pairs: impl Iterator<Item = (&'v str, &'v Value)>,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    f.write_char(open)?;
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{name}: ")?;
        write_value(value, f)?;
    }
    f.write_char(close)
}

fn write_value(value: &Value, f: &mut Formatter<'_>) -> fmt::Result {
    match value {
        Value::String(s) => write_string(s, f),
        Value::Number(n) => write_number(n, f),
        Value::List(items) => {
            f.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_value(item, f)?;
            }
            f.write_char(']')
        }
        Value::Object(map) => {
            let pairs = map.iter().map(|(name, item)| (name.as_str(), item));
            write_pairs(('{', '}'), pairs, f)
        }
        // Null, booleans, enums and bytes (a list of numbers).
        other => other.fmt(f),
    }
}

fn write_number(n: &Number, f: &mut Formatter<'_>) -> fmt::Result {
    // serde_json writes every finite float as a GraphQL literal (`1.5`,
    // `1e300`, `-0.0`): an integer part, then a fraction or an exponent.
    n.fmt(f)
}

fn write_string(s: &str, f: &mut Formatter<'_>) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
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
    fn printed_queries_parse_back_to_the_same_tree() {
        let empty = serde_json::Map::new();
        let query = r#"query Q($v: WhereInput, $s: String) {
            a: Local(x: 1) @include(if: true) { Get { Things {
                City(limit: 10000000000, where: {path: ["na\"me", "a\\b"], s: "line\nnext\ttab\r\u0001\u001f\u007f", u: "é😀\u00e9", f: 1.5, g: -0.25e-3, h: 1e300, big: 18446744073709551616, e: Equal, n: [[1, 2], [], [{x: {y: [true, false]}}]]}, v: $v, s: $s) {
                    name
                    ... on Country @skip(if: false) { name }
                    ...F
                    ... { population }
                }
            } } }
        }
        fragment F on City { inCountry { __typename } }"#;
        let vars =
            json!({"v": {"operator": "Like", "valueString": "\"quoted\" \\ \u{2028} \u{0} end"}});
        let first = prepare(query, None, vars.as_object().expect("object")).expect("parse");
        let text = print(&first);
        let second = prepare(&text, None, &empty).expect(&text);
        let strip = |set: &SelectionSet| {
            let mut set = set.clone();
            fn walk(set: &mut SelectionSet) {
                for item in &mut set.items {
                    match item {
                        Selection::Field(f) => {
                            f.position = Pos::default();
                            walk(&mut f.selection_set);
                        }
                        Selection::InlineFragment(f) => {
                            f.position = Pos::default();
                            walk(&mut f.selection_set);
                        }
                    }
                }
            }
            walk(&mut set);
            set
        };
        assert_eq!(strip(&first), strip(&second), "{text}");
        assert_eq!(print(&second), text);
        for needle in [
            r#"a: Local(x: 1) @include(if: true) {"#,
            r#"limit: 10000000000"#,
            r#""na\"me""#,
            r#""a\\b""#,
            r#""line\nnext\ttab\r\u0001\u001f\u007f""#,
            "\"é😀é\"",
            "e: Equal",
            "h: 1e+300",
            "big: 1.8446744073709552e+19",
            "... on Country @skip(if: false) { name }",
            "... on City { inCountry { __typename } }",
            "... { population }",
            "v: {operator: \"Like\", valueString: \"\\\"quoted\\\" \\\\ \u{2028} \\u0000 end\"}",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(
            text.contains(r#" end"}) { name"#) && !text.contains('$'),
            "an absent variable drops its argument: {text}"
        );
    }

    #[test]
    fn nesting_is_bounded_and_fragment_cycles_end() {
        let empty = serde_json::Map::new();
        let deep = format!("{}{}", "{ a ".repeat(40), "}".repeat(40));
        let error = prepare(&deep, None, &empty).expect_err("too deep");
        assert!(error.message.contains("too deep"), "{error:?}");
        let cycle = "{ a { ...F } } fragment F on A { b { ...F } }";
        let error = prepare(cycle, None, &empty).expect_err("cycle");
        assert!(error.message.contains("too deep"), "{error:?}");
        let hostile = format!("{}{}", "{ a ".repeat(100_000), "}".repeat(100_000));
        assert!(prepare(&hostile, None, &empty).is_err());
        let error = prepare("{ a(x: ) }", None, &empty).expect_err("syntax");
        assert!(error.message.starts_with("syntax error"), "{error:?}");
        assert_eq!(
            error.locations.first().map(|l| l.line),
            Some(1),
            "{error:?}"
        );
        let error = prepare("subscription { a }", None, &empty).expect_err("subscription");
        assert_eq!(error.message, "subscriptions are not supported");
        let error = prepare("mutation M { a }", None, &empty).expect_err("mutation");
        assert_eq!(
            error.message,
            "mutations are not supported: use the REST API"
        );
        assert_eq!(error.locations, [Location { line: 1, column: 1 }]);
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
