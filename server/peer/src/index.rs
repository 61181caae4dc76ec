//! Property indexes: which index entries an object has, and which index
//! ranges answer a `where` filter. Pure (no database): [`super::store`]
//! writes the entries in the object's transaction and runs the plans.
//!
//! An entry is `(class, property, key, id)`; `key` starts with a tag byte
//! that names the index and keeps byte order equal to value order:
//!
//! | property type | tag | key after the tag | serves |
//! | --- | --- | --- | --- |
//! | `string` | `s` | the UTF-8 bytes | `Equal`, `NotEqual`, ranges, `Like` with a literal prefix |
//! | `boolean` | `b` | `0` or `1` | `Equal`, `NotEqual` |
//! | `int`, `number` | `n` | the value as an `f64`, total-order bits, big-endian | `Equal`, ranges |
//! | `date` | `d` | seconds (sign-flipped, big-endian) then nanoseconds | `Equal`, `NotEqual`, ranges |
//! | `text` | `w` | one entry per distinct word (a run of letters and digits) | `Equal`, `Like` on whole words or word prefixes |
//!
//! A plan gives a superset of the matching objects (numbers share a key when
//! two `i64` round to the same `f64`; words only narrow the texts), and the
//! store checks every candidate with [`Filter::matches`], so an answer is
//! always the scan's answer. Only an exact plan is complemented (`NotEqual`).

use std::collections::BTreeSet;

use plexus_core::filter::{CompareOp, Filter, Operand, parse_date};
use plexus_core::schema::{Class, DataType};
use serde_json::{Map, Value};

const STRING: u8 = b's';
const BOOLEAN: u8 = b'b';
const NUMBER: u8 = b'n';
const DATE: u8 = b'd';
const WORD: u8 = b'w';

/// The type of property `name` of `class`, when it has a valid one.
pub fn property_type(class: &Class, name: &str) -> Option<DataType> {
    class
        .properties
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.kind().ok())
}

/// An `f64` as 8 bytes whose byte order is the numbers' order (`-0.0` is `0.0`).
pub fn number_key(value: f64) -> [u8; 8] {
    let value = if value == 0.0 { 0.0 } else { value };
    let bits = value.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    ordered.to_be_bytes()
}

/// A date (seconds, nanoseconds) as 12 bytes whose byte order is time order.
pub fn date_key((seconds, nanos): (i64, u32)) -> [u8; 12] {
    let mut out = [0; 12];
    out[..8].copy_from_slice(&((seconds as u64) ^ 1 << 63).to_be_bytes());
    out[8..].copy_from_slice(&nanos.to_be_bytes());
    out
}

/// The distinct words of `text`: maximal runs of letters and digits.
pub fn words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The default of [`ValueLimits::max_value_bytes`] (64 KiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// The default of [`ValueLimits::max_value_words`].
pub const DEFAULT_MAX_VALUE_WORDS: usize = 2_048;

/// What one value may cost the index: each byte of a `string` is in its
/// key, and each distinct word of a `text` is an entry of its own (tens of
/// bytes on disk for a word of a few), so these bound what one write makes
/// the peer store and hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    /// The most bytes of one `string` or `text` value (`--max-value-bytes`).
    pub max_value_bytes: usize,
    /// The most distinct words of one `text` value (`--max-value-words`).
    pub max_value_words: usize,
}

impl Default for ValueLimits {
    fn default() -> Self {
        ValueLimits {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_value_words: DEFAULT_MAX_VALUE_WORDS,
        }
    }
}

/// A value over a [`ValueLimits`] bound (the write is refused, 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A `string` or `text` value is too long.
    #[error(
        "property {property:?}: a {data_type} value holds at most {max} bytes (--max-value-bytes); this one has {len}"
    )]
    Bytes {
        /// The property.
        property: String,
        /// `string` or `text`.
        data_type: &'static str,
        /// Its bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A `text` value has too many distinct words to index.
    #[error(
        "property {property:?}: a text value has at most {max} distinct words (--max-value-words); this one has {count}"
    )]
    Words {
        /// The property.
        property: String,
        /// Its distinct words.
        count: usize,
        /// The bound.
        max: usize,
    },
}

impl ValueLimits {
    /// Refuses `values` (of an object of `class`) when one of its `string`
    /// or `text` values is over a bound.
    pub fn check(&self, class: &Class, values: &Map<String, Value>) -> Result<(), ValueError> {
        for (name, value) in values {
            let (Some(data_type), Value::String(text)) = (property_type(class, name), value) else {
                continue;
            };
            let data_type = match data_type {
                DataType::String => "string",
                DataType::Text => "text",
                _ => continue,
            };
            if text.len() > self.max_value_bytes {
                return Err(ValueError::Bytes {
                    property: name.clone(),
                    data_type,
                    len: text.len(),
                    max: self.max_value_bytes,
                });
            }
            if data_type == "text" {
                let count = words(text).len();
                if count > self.max_value_words {
                    return Err(ValueError::Words {
                        property: name.clone(),
                        count,
                        max: self.max_value_words,
                    });
                }
            }
        }
        Ok(())
    }
}

fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(bytes.len() + 1);
    key.push(tag);
    key.extend_from_slice(bytes);
    key
}

/// The index keys of one property value of type `data_type`.
pub fn value_keys(data_type: &DataType, value: &Value) -> Vec<Vec<u8>> {
    match (data_type, value) {
        (DataType::String, Value::String(s)) => vec![tagged(STRING, s.as_bytes())],
        (DataType::Boolean, Value::Bool(b)) => vec![tagged(BOOLEAN, &[u8::from(*b)])],
        (DataType::Int | DataType::Number, Value::Number(n)) => n
            .as_f64()
            .map(|f| vec![tagged(NUMBER, &number_key(f))])
            .unwrap_or_default(),
        (DataType::Date, Value::String(s)) => parse_date(s)
            .map(|d| vec![tagged(DATE, &date_key(d))])
            .unwrap_or_default(),
        (DataType::Text, Value::String(s)) => words(s)
            .into_iter()
            .map(|w| tagged(WORD, w.as_bytes()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every index entry `(property, key)` of an object of `class` with `values`.
pub fn entries(class: &Class, values: &Map<String, Value>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, value) in values {
        if let Some(data_type) = property_type(class, name) {
            for key in value_keys(&data_type, value) {
                out.push((name.clone(), key));
            }
        }
    }
    out
}

/// How a filter is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// No index narrows it: every object of the class is a candidate.
    Scan,
    /// The objects with an entry of `property` with `start <= key < end`.
    Range {
        /// The property.
        property: String,
        /// The first key (inclusive).
        start: Vec<u8>,
        /// The end key (exclusive).
        end: Vec<u8>,
        /// Whether these are exactly the objects the comparison passes.
        exact: bool,
    },
    /// Every object of the class but those of an exact plan.
    Not(Box<Plan>),
    /// The objects of every plan.
    And(Vec<Plan>),
    /// The objects of any plan.
    Or(Vec<Plan>),
}

/// The smallest key greater than every key that starts with `prefix`, or
/// `None` when there is none (the prefix is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The keys right after `key` and every key it prefixes: `key` followed by
/// `0x00` is the smallest key greater than `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

fn range(property: &str, start: Vec<u8>, end: Vec<u8>, exact: bool) -> Plan {
    Plan::Range {
        property: property.to_owned(),
        start,
        end,
        exact,
    }
}

/// A comparison over an ordered index of tag `tag`, where `key` is the
/// operand's key; `exact` when equal keys mean equal values.
fn ordered(property: &str, tag: u8, key: &[u8], op: CompareOp, exact: bool) -> Plan {
    let key = tagged(tag, key);
    let (first, last) = (vec![tag], vec![tag + 1]);
    match op {
        CompareOp::Equal => range(property, key.clone(), after(&key), exact),
        CompareOp::NotEqual if exact => {
            Plan::Not(Box::new(range(property, key.clone(), after(&key), true)))
        }
        // Strict bounds include the operand's key: the check drops it.
        CompareOp::GreaterThan | CompareOp::GreaterThanEqual => range(property, key, last, false),
        CompareOp::LessThan | CompareOp::LessThanEqual => {
            range(property, first, after(&key), false)
        }
        CompareOp::NotEqual | CompareOp::Like => Plan::Scan,
    }
}

/// The literal text before the first wildcard of a `Like` pattern.
fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// The word constraints of a `Like` pattern over a text: each run of letters
/// and digits that starts a word (after the pattern's start or a literal
/// separator) is a whole word when a separator or the end follows it, and a
/// word prefix when a wildcard does. Runs after a wildcard say nothing.
fn like_words(pattern: &str) -> Vec<(String, bool)> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        let starts_word = start == 0 || !matches!(chars[start - 1], '*' | '?');
        if !starts_word {
            continue;
        }
        let whole = i == chars.len() || !matches!(chars[i], '*' | '?');
        out.push((chars[start..i].iter().collect(), whole));
    }
    out
}

fn word_plan(property: &str, word: &str, whole: bool) -> Plan {
    let key = tagged(WORD, word.as_bytes());
    let end = if whole {
        after(&key)
    } else {
        prefix_end(&key).unwrap_or_else(|| vec![WORD + 1])
    };
    range(property, key, end, false)
}

fn all_of(plans: Vec<Plan>) -> Plan {
    match plans.len() {
        0 => Plan::Scan,
        1 => plans.into_iter().next().unwrap_or(Plan::Scan),
        _ => Plan::And(plans),
    }
}

fn compare_plan(data_type: &DataType, property: &str, op: CompareOp, value: &Operand) -> Plan {
    match (data_type, value) {
        (DataType::String, Operand::Text(text)) => match op {
            CompareOp::Like => {
                let prefix = literal_prefix(text).as_bytes();
                let start = tagged(STRING, prefix);
                let end = prefix_end(&start).unwrap_or_else(|| vec![STRING + 1]);
                range(property, start, end, false)
            }
            CompareOp::GreaterThan | CompareOp::GreaterThanEqual => range(
                property,
                tagged(STRING, text.as_bytes()),
                vec![STRING + 1],
                false,
            ),
            CompareOp::LessThan | CompareOp::LessThanEqual => range(
                property,
                vec![STRING],
                after(&tagged(STRING, text.as_bytes())),
                false,
            ),
            _ => ordered(property, STRING, text.as_bytes(), op, true),
        },
        (DataType::Boolean, Operand::Boolean(b)) => {
            ordered(property, BOOLEAN, &[u8::from(*b)], op, true)
        }
        (DataType::Int | DataType::Number, Operand::Int(i)) => {
            ordered(property, NUMBER, &number_key(*i as f64), op, false)
        }
        (DataType::Int | DataType::Number, Operand::Number(f)) if f.is_finite() => {
            ordered(property, NUMBER, &number_key(*f), op, false)
        }
        (DataType::Date, Operand::Date(s, n)) => {
            ordered(property, DATE, &date_key((*s, *n)), op, true)
        }
        (DataType::Text, Operand::Text(text)) => match op {
            CompareOp::Equal => all_of(
                words(text)
                    .into_iter()
                    .map(|w| word_plan(property, w, true))
                    .collect(),
            ),
            CompareOp::Like => all_of(
                like_words(text)
                    .into_iter()
                    .map(|(w, whole)| word_plan(property, &w, whole))
                    .collect(),
            ),
            _ => Plan::Scan,
        },
        _ => Plan::Scan,
    }
}

/// The plan of `filter` over the objects of `class`. Comparisons through
/// references (hops) and properties without an index are [`Plan::Scan`].
pub fn plan(class: &Class, filter: &Filter) -> Plan {
    match filter {
        Filter::And(all) => {
            let parts: Vec<Plan> = all
                .iter()
                .map(|f| plan(class, f))
                .filter(|p| *p != Plan::Scan)
                .collect();
            all_of(merge_ranges(parts))
        }
        Filter::Or(any) => {
            let parts: Vec<Plan> = any.iter().map(|f| plan(class, f)).collect();
            if parts.is_empty() || parts.contains(&Plan::Scan) {
                Plan::Scan
            } else {
                Plan::Or(parts)
            }
        }
        Filter::Compare {
            op,
            hops,
            property,
            value,
        } => {
            if !hops.is_empty() {
                return Plan::Scan;
            }
            match property_type(class, property) {
                Some(data_type) => compare_plan(&data_type, property, *op, value),
                None => Plan::Scan,
            }
        }
    }
}

/// The candidate objects of a plan, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    /// Every object of the class.
    All,
    /// These objects.
    Only(BTreeSet<u128>),
    /// Every object of the class but these.
    AllBut(BTreeSet<u128>),
}

impl Candidates {
    /// The objects in both.
    pub fn and(self, other: Candidates) -> Candidates {
        use Candidates::*;
        match (self, other) {
            (All, x) | (x, All) => x,
            (Only(a), Only(b)) => Only(a.intersection(&b).copied().collect()),
            (Only(a), AllBut(b)) | (AllBut(b), Only(a)) => {
                Only(a.difference(&b).copied().collect())
            }
            (AllBut(a), AllBut(b)) => AllBut(a.union(&b).copied().collect()),
        }
    }

    /// The objects in either.
    pub fn or(self, other: Candidates) -> Candidates {
        use Candidates::*;
        match (self, other) {
            (All, _) | (_, All) => All,
            (Only(a), Only(b)) => Only(a.union(&b).copied().collect()),
            (Only(a), AllBut(b)) | (AllBut(b), Only(a)) => {
                AllBut(b.difference(&a).copied().collect())
            }
            (AllBut(a), AllBut(b)) => AllBut(a.intersection(&b).copied().collect()),
        }
    }

    /// Every object of the class but these.
    pub fn complement(self) -> Candidates {
        match self {
            Candidates::All => Candidates::Only(BTreeSet::new()),
            Candidates::Only(a) => Candidates::AllBut(a),
            Candidates::AllBut(a) => Candidates::Only(a),
        }
    }

    /// Whether `id` is a candidate.
    pub fn contains(&self, id: u128) -> bool {
        match self {
            Candidates::All => true,
            Candidates::Only(a) => a.contains(&id),
            Candidates::AllBut(a) => !a.contains(&id),
        }
    }
}

/// Reads the ids of one [`Plan::Range`], `(property, start, end, cap,
/// keep)`: those in `keep` (every id when `None`), or `None` when the range
/// holds more than `cap` entries.
pub type ReadRange<'a, E> = dyn FnMut(&str, &[u8], &[u8], usize, Option<&BTreeSet<u128>>) -> Result<Option<BTreeSet<u128>>, E>
    + 'a;

/// How soon an operand of `And` is read: single keys first, then ranges.
fn rank(plan: &Plan) -> u8 {
    match plan {
        Plan::Range { start, end, .. } if *end == after(start) => 0,
        Plan::Range { .. } => 1,
        _ => 2,
    }
}

/// Runs `plan`, reading each range's ids with `read`. Within an `And`, a
/// range much wider than the candidates found so far is not read (the
/// filter's check drops what it would have dropped).
pub fn candidates<E>(plan: &Plan, read: &mut ReadRange<'_, E>) -> Result<Candidates, E> {
    Ok(match plan {
        Plan::Scan => Candidates::All,
        Plan::Range {
            property,
            start,
            end,
            ..
        } => {
            read(property, start, end, usize::MAX, None)?.map_or(Candidates::All, Candidates::Only)
        }
        Plan::Not(inner) => candidates(inner, read)?.complement(),
        Plan::And(all) => {
            let mut order: Vec<&Plan> = all.iter().collect();
            order.sort_by_key(|p| rank(p));
            let mut out = Candidates::All;
            for p in order {
                let next = match (p, &out) {
                    (
                        Plan::Range {
                            property,
                            start,
                            end,
                            ..
                        },
                        Candidates::Only(found),
                    ) => {
                        let cap = found.len().saturating_mul(WIDER).max(MIN_CAP);
                        read(property, start, end, cap, Some(found))?
                            .map_or(Candidates::All, Candidates::Only)
                    }
                    _ => candidates(p, read)?,
                };
                out = out.and(next);
                if out == Candidates::Only(BTreeSet::new()) {
                    break;
                }
            }
            out
        }
        Plan::Or(any) => {
            let mut out = Candidates::Only(BTreeSet::new());
            for p in any {
                out = out.or(candidates(p, read)?);
            }
            out
        }
    })
}

/// Within an `And`, a range is read only while it holds at most this many
/// times the candidates found so far …
const WIDER: usize = 16;
/// … or this many ids.
const MIN_CAP: usize = 1_024;

/// Merges the ranges of one property under an `And` into one: an object
/// has one entry of a property (but a text, one per word), so the
/// intersection of key intervals is the interval of the intersection.
fn merge_ranges(parts: Vec<Plan>) -> Vec<Plan> {
    let mut out: Vec<Plan> = Vec::with_capacity(parts.len());
    for part in parts {
        if let Plan::Range {
            property,
            start,
            end,
            exact,
        } = &part
            && start.first() != Some(&WORD)
            && let Some(Plan::Range {
                start: s,
                end: e,
                exact: x,
                ..
            }) = out.iter_mut().find(
                |p| matches!(p, Plan::Range { property: q, start: s, .. } if q == property && s.first() != Some(&WORD)),
            )
        {
            if start > s {
                s.clone_from(start);
            }
            if end < e {
                e.clone_from(end);
            }
            if e < s {
                e.clone_from(s);
            }
            *x = *x && *exact;
            continue;
        }
        out.push(part);
    }
    out
}
