//! The `where` filter of a Local Get (the original Weaviate shape): parsed from
//! JSON, checked against the schema, and evaluated over an object's values.
//! Pure: no store, no I/O; references are followed through a closure.

use std::cmp::Ordering;

use plexus_core::schema::{DataType, Schema};
use serde_json::{Map, Value};

use crate::object::Object;

/// A `where` argument that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid where filter: {0}")]
pub struct FilterError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(message.into()))
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `Equal`.
    Equal,
    /// `NotEqual`.
    NotEqual,
    /// `GreaterThan`.
    GreaterThan,
    /// `GreaterThanEqual`.
    GreaterThanEqual,
    /// `LessThan`.
    LessThan,
    /// `LessThanEqual`.
    LessThanEqual,
    /// `Like`, with `*` (any run of characters) and `?` (one character).
    Like,
}

/// The value a property is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `valueInt`.
    Int(i64),
    /// `valueNumber`.
    Number(f64),
    /// `valueString` or `valueText`.
    Text(String),
    /// `valueBoolean`.
    Boolean(bool),
    /// `valueDate`, as seconds and nanoseconds since the epoch.
    Date(i64, u32),
}

/// One step through a reference: the property and the class it must point to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The reference property.
    pub property: String,
    /// The class of the referenced objects that count.
    pub class: String,
}

/// A parsed and checked filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every operand holds.
    And(Vec<Filter>),
    /// Some operand holds.
    Or(Vec<Filter>),
    /// A property, reached through `hops`, compared with `value`.
    Compare {
        /// The operator.
        op: CompareOp,
        /// References followed before the property.
        hops: Vec<Hop>,
        /// The compared property.
        property: String,
        /// The value compared with.
        value: Operand,
    },
}

const VALUE_KEYS: [&str; 6] = [
    "valueInt",
    "valueNumber",
    "valueString",
    "valueText",
    "valueBoolean",
    "valueDate",
];

impl Filter {
    /// Parses `value` (the `where` argument, variables resolved) for objects of `class`.
    pub fn parse(value: &Value, schema: &Schema, class: &str) -> Result<Filter, FilterError> {
        let Some(map) = value.as_object() else {
            return err("expected an object with an operator");
        };
        for key in map.keys() {
            if key != "operator"
                && key != "path"
                && key != "operands"
                && !VALUE_KEYS.contains(&key.as_str())
            {
                return err(format!("unknown field {key:?}"));
            }
        }
        let operator = map
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let op = match operator {
            "And" | "Or" => {
                let Some(operands) = map.get("operands").and_then(Value::as_array) else {
                    return err(format!("{operator} needs a list of operands"));
                };
                let parsed = operands
                    .iter()
                    .map(|o| Filter::parse(o, schema, class))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if operator == "And" {
                    Filter::And(parsed)
                } else {
                    Filter::Or(parsed)
                });
            }
            "Equal" => CompareOp::Equal,
            "NotEqual" => CompareOp::NotEqual,
            "GreaterThan" => CompareOp::GreaterThan,
            "GreaterThanEqual" => CompareOp::GreaterThanEqual,
            "LessThan" => CompareOp::LessThan,
            "LessThanEqual" => CompareOp::LessThanEqual,
            "Like" => CompareOp::Like,
            "" => return err("missing operator"),
            other => return err(format!("unknown operator {other:?}")),
        };
        let path: Vec<&str> = match map.get("path").and_then(Value::as_array) {
            Some(items) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().unwrap_or_default())
                .collect(),
            _ => return err(format!("{operator} needs a non-empty path")),
        };
        let (hops, property, data_type) = resolve_path(&path, schema, class)?;
        let value = parse_operand(map, &property, &data_type)?;
        let comparable = !matches!(value, Operand::Boolean(_))
            || matches!(op, CompareOp::Equal | CompareOp::NotEqual);
        let likeable = op != CompareOp::Like || matches!(value, Operand::Text(_));
        if !comparable || !likeable {
            return err(format!(
                "operator {operator} does not apply to property {property:?}"
            ));
        }
        Ok(Filter::Compare {
            op,
            hops,
            property,
            value,
        })
    }

    /// Whether the object with `values` passes; `deref` gives the objects a
    /// reference value points at.
    pub fn matches(
        &self,
        values: &Map<String, Value>,
        deref: &mut dyn FnMut(&Value) -> Vec<Object>,
    ) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(values, deref)),
            Filter::Or(any) => any.iter().any(|f| f.matches(values, deref)),
            Filter::Compare {
                op,
                hops,
                property,
                value,
            } => compare_at(values, hops, property, *op, value, deref),
        }
    }
}

fn resolve_path(
    path: &[&str],
    schema: &Schema,
    class: &str,
) -> Result<(Vec<Hop>, String, DataType), FilterError> {
    let mut hops = Vec::new();
    let mut current = class.to_owned();
    let mut rest = path;
    loop {
        let Some((&name, tail)) = rest.split_first() else {
            return err("path must end at a property");
        };
        let Some((_, class_def)) = schema.find_class(&current) else {
            return err(format!("unknown class {current:?} in path"));
        };
        let Some(property) = class_def.properties.iter().find(|p| p.name == name) else {
            return err(format!("class {current:?} has no property {name:?}"));
        };
        let data_type = property.kind().map_err(|e| FilterError(e.to_string()))?;
        match (data_type, tail) {
            (DataType::Ref(targets), [target, more @ ..]) => {
                if !targets.iter().any(|t| t == target) {
                    return err(format!(
                        "property {name:?} does not refer to class {target:?}"
                    ));
                }
                hops.push(Hop {
                    property: name.to_owned(),
                    class: (*target).to_owned(),
                });
                current = (*target).to_owned();
                rest = more;
            }
            (DataType::Ref(_), []) => {
                return err(format!(
                    "path ends at reference {name:?}: add a class and a property"
                ));
            }
            (data_type, []) => return Ok((hops, name.to_owned(), data_type)),
            (_, _) => return err(format!("property {name:?} is not a reference")),
        }
    }
}

fn parse_operand(
    map: &Map<String, Value>,
    property: &str,
    data_type: &DataType,
) -> Result<Operand, FilterError> {
    let given: Vec<(&str, &Value)> = VALUE_KEYS
        .iter()
        .filter_map(|k| map.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        .collect();
    let [(key, value)] = given.as_slice() else {
        return err(format!("give exactly one of {}", VALUE_KEYS.join(", ")));
    };
    let mismatch = || {
        FilterError(format!(
            "{key} does not fit property {property:?} of type {data_type:?}"
        ))
    };
    let operand = match (*key, data_type) {
        ("valueInt", DataType::Int | DataType::Number) => {
            Operand::Int(value.as_i64().ok_or_else(mismatch)?)
        }
        ("valueNumber", DataType::Int | DataType::Number) => {
            Operand::Number(value.as_f64().ok_or_else(mismatch)?)
        }
        ("valueString" | "valueText", DataType::String | DataType::Text) => {
            Operand::Text(value.as_str().ok_or_else(mismatch)?.to_owned())
        }
        ("valueBoolean", DataType::Boolean) => {
            Operand::Boolean(value.as_bool().ok_or_else(mismatch)?)
        }
        ("valueDate", DataType::Date) => {
            let (s, n) = value.as_str().and_then(parse_date).ok_or_else(mismatch)?;
            Operand::Date(s, n)
        }
        _ => return Err(mismatch()),
    };
    Ok(operand)
}

fn compare_at(
    values: &Map<String, Value>,
    hops: &[Hop],
    property: &str,
    op: CompareOp,
    operand: &Operand,
    deref: &mut dyn FnMut(&Value) -> Vec<Object>,
) -> bool {
    match hops.split_first() {
        None => compare(values.get(property), op, operand),
        Some((hop, rest)) => {
            let Some(reference) = values.get(&hop.property) else {
                return false;
            };
            deref(reference)
                .into_iter()
                .filter(|o| o.class == hop.class)
                .any(|o| compare_at(&o.schema, rest, property, op, operand, deref))
        }
    }
}

fn compare(value: Option<&Value>, op: CompareOp, operand: &Operand) -> bool {
    let value = value.filter(|v| !v.is_null());
    if op == CompareOp::Like {
        return match (value.and_then(Value::as_str), operand) {
            (Some(text), Operand::Text(pattern)) => like(text, pattern),
            _ => false,
        };
    }
    let ordering = value.and_then(|v| match operand {
        Operand::Int(x) => match v.as_i64() {
            Some(i) => Some(i.cmp(x)),
            None => v.as_f64().and_then(|f| f.partial_cmp(&(*x as f64))),
        },
        Operand::Number(x) => v.as_f64().and_then(|f| f.partial_cmp(x)),
        Operand::Text(x) => v.as_str().map(|s| s.cmp(x.as_str())),
        Operand::Boolean(x) => v.as_bool().map(|b| b.cmp(x)),
        Operand::Date(s, n) => v.as_str().and_then(parse_date).map(|d| d.cmp(&(*s, *n))),
    });
    match ordering {
        None => op == CompareOp::NotEqual,
        Some(o) => match op {
            CompareOp::Equal => o == Ordering::Equal,
            CompareOp::NotEqual => o != Ordering::Equal,
            CompareOp::GreaterThan => o == Ordering::Greater,
            CompareOp::GreaterThanEqual => o != Ordering::Less,
            CompareOp::LessThan => o == Ordering::Less,
            CompareOp::LessThanEqual => o != Ordering::Greater,
            CompareOp::Like => false,
        },
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of
/// characters and `?` for exactly one.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// An RFC 3339 date-time as seconds and nanoseconds since the epoch (UTC).
pub fn parse_date(text: &str) -> Option<(i64, u32)> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let mut scale = 100_000_000;
        while i < b.len() && b[i].is_ascii_digit() {
            nanos += u32::from(b[i] - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let minutes = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((
        days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        nanos,
    ))
}
