//! Asking a peer by meaning: the original's `Fetch` and `Introspect`.
//!
//! Each takes its `where` argument as JSON (variables resolved), reads it
//! here, and finds the classes of the peer's schema near the queried class
//! name and their properties near each queried property name
//! ([`Contextionary::classes`], [`Contextionary::properties`]). Fetch then
//! turns the property conditions into one [`Filter`] per class, so a store
//! answers it from its indexes: an object matches when, for every
//! condition, some matching property satisfies the operator (OR over the
//! class's matching properties, AND across conditions). Fuzzy finds the
//! words near a value and a filter per class for the objects whose string
//! or text values hold one of them. Pure: no store, no I/O.

use serde_json::{Map, Value, json};

use crate::contextionary::{Contextionary, UnknownWord, Vector, split_name};
use crate::filter::Filter;
use crate::graphql::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::object::Object;
use crate::schema::{DataType, Keyword, Kind, Schema};

/// At most this many words near a Fuzzy value are searched for.
pub const FUZZY_MAX_WORDS: usize = 10;

/// Why a Fetch or Introspect could not be asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A word of the query outside the contextionary.
    #[error(transparent)]
    Word(#[from] UnknownWord),
    /// The `where` argument is not of the expected shape.
    #[error("invalid where: {0}")]
    Where(String),
}

fn bad<T>(message: impl Into<String>) -> Result<T, FetchError> {
    Err(FetchError::Where(message.into()))
}

/// A queried name: `{name, certainty, keywords: [{value, weight}], first}`.
#[derive(Clone, Debug, PartialEq)]
pub struct NameQuery {
    /// The name (camelCase words).
    pub name: String,
    /// Keywords that pull its meaning.
    pub keywords: Vec<Keyword>,
    /// The least certainty of a match, 0 to 1.
    pub certainty: f64,
    /// At most this many matches (the most certain).
    pub first: Option<usize>,
}

impl NameQuery {
    fn parse(value: &Value, what: &str) -> Result<NameQuery, FetchError> {
        let Some(map) = value.as_object() else {
            return bad(format!("{what} must be an object"));
        };
        let Some(name) = map.get("name").and_then(Value::as_str) else {
            return bad(format!("{what} needs a name"));
        };
        let certainty = match map.get("certainty").and_then(Value::as_f64) {
            Some(c) if (0.0..=1.0).contains(&c) => c,
            _ => return bad(format!("{what} needs a certainty from 0 to 1")),
        };
        let mut keywords = Vec::new();
        for k in map
            .get("keywords")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let word = k
                .get("value")
                .or_else(|| k.get("keyword"))
                .and_then(Value::as_str);
            let weight = k.get("weight").and_then(Value::as_f64);
            match (word, weight) {
                (Some(word), Some(weight)) if (0.0..=1.0).contains(&weight) => {
                    keywords.push(Keyword {
                        keyword: word.to_owned(),
                        weight,
                    })
                }
                _ => {
                    return bad(format!(
                        "a keyword of {what} needs a value and a weight from 0 to 1"
                    ));
                }
            }
        }
        let first = match map.get("first") {
            None | Some(Value::Null) => None,
            Some(v) => Some(limit(v, what)?),
        };
        Ok(NameQuery {
            name: name.to_owned(),
            keywords,
            certainty,
            first,
        })
    }

    fn vector(&self, ctx: &Contextionary) -> Result<Vector, FetchError> {
        Ok(ctx.vector(&self.name, &self.keywords)?)
    }
}

fn limit(value: &Value, what: &str) -> Result<usize, FetchError> {
    match value.as_u64().and_then(|l| usize::try_from(l).ok()) {
        Some(l) if l <= MAX_LIMIT => Ok(l),
        _ => bad(format!(
            "first of {what} must be an integer from 0 to {MAX_LIMIT}"
        )),
    }
}

/// One property condition of a Fetch: properties near `query` compared
/// with the operator and value of `compare` (a where filter without its
/// path: `{operator, valueString}`).
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The queried property name.
    pub query: NameQuery,
    /// `operator` and one `value<Type>`.
    pub compare: Map<String, Value>,
}

/// A Fetch's `where`: `{class: {...}, properties: [{..., operator, value<Type>}], first}`.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchWhere {
    /// The queried class.
    pub class: NameQuery,
    /// Every condition must hold.
    pub properties: Vec<Condition>,
    /// At most this many objects.
    pub first: usize,
}

const COMPARE_KEYS: [&str; 7] = [
    "operator",
    "valueString",
    "valueText",
    "valueInt",
    "valueNumber",
    "valueBoolean",
    "valueDate",
];

impl FetchWhere {
    /// Reads a Fetch's `where` argument.
    pub fn parse(value: &Value) -> Result<FetchWhere, FetchError> {
        let Some(map) = value.as_object() else {
            return bad("expected {class, properties, first}");
        };
        let class = NameQuery::parse(map.get("class").unwrap_or(&Value::Null), "class")?;
        let mut properties = Vec::new();
        for p in map
            .get("properties")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let query = NameQuery::parse(p, "a property")?;
            let compare: Map<String, Value> = COMPARE_KEYS
                .iter()
                .filter_map(|k| {
                    p.get(*k)
                        .filter(|v| !v.is_null())
                        .map(|v| ((*k).to_owned(), v.clone()))
                })
                .collect();
            if !compare.contains_key("operator") || compare.len() != 2 {
                return bad(format!(
                    "property {:?} needs an operator and exactly one value<Type>",
                    query.name
                ));
            }
            properties.push(Condition { query, compare });
        }
        let first = match map.get("first") {
            None | Some(Value::Null) => DEFAULT_LIMIT,
            Some(v) => limit(v, "where")?,
        };
        Ok(FetchWhere {
            class,
            properties,
            first,
        })
    }
}

/// A class of the peer to read for a Fetch, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassPlan {
    /// The class.
    pub class: String,
    /// How near it is to the queried class.
    pub certainty: f64,
    /// The objects to answer (`None`: every object of the class).
    pub filter: Option<Filter>,
}

/// The classes of `kind` to read for `fetch`, most certain first. A class
/// with no property near some condition's name, or none whose type takes
/// its value, cannot match and is left out.
pub fn plan(
    ctx: &Contextionary,
    schema: &Schema,
    kind: Kind,
    fetch: &FetchWhere,
) -> Result<Vec<ClassPlan>, FetchError> {
    let query = fetch.class.vector(ctx)?;
    let conditions = fetch
        .properties
        .iter()
        .map(|c| Ok((c, c.query.vector(ctx)?)))
        .collect::<Result<Vec<_>, FetchError>>()?;
    let mut classes = ctx.classes(schema, kind, &query, fetch.class.certainty);
    classes.truncate(fetch.class.first.unwrap_or(usize::MAX));
    let mut out = Vec::new();
    'classes: for (class, certainty) in classes {
        let mut all = Vec::new();
        for (condition, vector) in &conditions {
            let mut near = ctx.properties(class, vector, condition.query.certainty);
            near.truncate(condition.query.first.unwrap_or(usize::MAX));
            let any: Vec<Filter> = near
                .into_iter()
                .filter_map(|(p, _)| {
                    let mut f = condition.compare.clone();
                    f.insert("path".into(), json!([p.name]));
                    Filter::parse(&Value::Object(f), schema, &class.class).ok()
                })
                .collect();
            if any.is_empty() {
                continue 'classes;
            }
            all.push(match <[Filter; 1]>::try_from(any) {
                Ok([one]) => one,
                Err(any) => Filter::Or(any),
            });
        }
        out.push(ClassPlan {
            class: class.class.clone(),
            certainty,
            filter: match all.len() {
                0 => None,
                1 => all.pop(),
                _ => Some(Filter::And(all)),
            },
        });
    }
    Ok(out)
}

/// The words of a Fuzzy value, and the classes to read for them.
#[derive(Clone, Debug, PartialEq)]
pub struct FuzzyPlan {
    /// The words near the value, most certain first, with their certainty.
    pub words: Vec<(String, f64)>,
    /// Per class (of both kinds) with string or text properties: the
    /// objects whose values hold one of the words.
    pub classes: Vec<(Kind, String, Filter)>,
}

/// Fuzzy: the (at most [`FUZZY_MAX_WORDS`]) words within `certainty` of
/// `value`'s words' centroid, and per class a filter the indexes answer:
/// objects with a text value holding a word that starts with one of them,
/// or a string value starting with one (lower-case or capitalised). The
/// filter may pass more than the words themselves (`Rotterdamse`):
/// [`fuzzy_certainty`] keeps the objects that hold one as a whole word.
pub fn fuzzy(
    ctx: &Contextionary,
    schema: &Schema,
    value: &str,
    certainty: f64,
) -> Result<FuzzyPlan, FetchError> {
    if !(0.0..=1.0).contains(&certainty) {
        return bad("certainty must be from 0 to 1");
    }
    let words = split_name(value);
    if words.is_empty() {
        return bad("Fuzzy needs a value with a word");
    }
    let centroid = ctx.vector(&words.join("_"), &[])?;
    let near = ctx.nearest_words(&centroid, certainty, FUZZY_MAX_WORDS);
    let mut classes = Vec::new();
    for (kind, class) in schema.classes() {
        let mut any = Vec::new();
        for p in &class.properties {
            let patterns: &[&str] = match p.kind() {
                Ok(DataType::Text) => &["{}*", "* {}*"],
                Ok(DataType::String) => &["{}*"],
                _ => continue,
            };
            for (word, _) in &near {
                for form in [word.clone(), capitalised(word)] {
                    for pattern in patterns {
                        let text = pattern.replace("{}", &form);
                        let f = json!({"operator": "Like", "path": [p.name], "valueString": text});
                        if let Ok(f) = Filter::parse(&f, schema, &class.class) {
                            any.push(f);
                        }
                    }
                }
            }
        }
        if !any.is_empty() {
            classes.push((kind, class.class.clone(), Filter::Or(any)));
        }
    }
    Ok(FuzzyPlan {
        words: near,
        classes,
    })
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| {
            std::iter::once(c.to_ascii_uppercase())
                .chain(chars)
                .collect()
        })
        .unwrap_or_default()
}

/// The certainty of a Fuzzy match for `object`: that of the most certain
/// of `words` among the words of its string and text values.
pub fn fuzzy_certainty(object: &Object, words: &[(String, f64)]) -> Option<f64> {
    let mut best: Option<f64> = None;
    for value in object.schema.values() {
        let Some(text) = value.as_str() else { continue };
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let w = w.to_lowercase();
            if let Some((_, c)) = words.iter().find(|(near, _)| *near == w) {
                best = Some(best.map_or(*c, |b: f64| b.max(*c)));
            }
        }
    }
    best
}

/// One entry of an Introspect's `where`: class queries and property queries.
#[derive(Clone, Debug, PartialEq)]
pub struct IntrospectWhere {
    /// A class matches when it is near one of these.
    pub classes: Vec<NameQuery>,
    /// Its properties listed are those near one of these.
    pub properties: Vec<NameQuery>,
}

impl IntrospectWhere {
    /// Reads an Introspect's `where`: `[{class: [...], properties: [...]}]`.
    pub fn parse_list(value: &Value) -> Result<Vec<IntrospectWhere>, FetchError> {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one @ Value::Object(_) => vec![one],
            _ => return bad("expected a list of {class, properties}"),
        };
        let list = |v: Option<&Value>, what: &str| -> Result<Vec<NameQuery>, FetchError> {
            match v {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => {
                    items.iter().map(|i| NameQuery::parse(i, what)).collect()
                }
                Some(one) => Ok(vec![NameQuery::parse(one, what)?]),
            }
        };
        items
            .into_iter()
            .map(|item| {
                let classes = list(item.get("class"), "a class")?;
                if classes.is_empty() {
                    return bad("each where of Introspect needs a class");
                }
                Ok(IntrospectWhere {
                    classes,
                    properties: list(item.get("properties"), "a property")?,
                })
            })
            .collect()
    }
}

/// A class an Introspect found, with its matching properties.
#[derive(Clone, Debug, PartialEq)]
pub struct Introspected {
    /// The class.
    pub class: String,
    /// Its certainty (the best over the queries it matched).
    pub certainty: f64,
    /// Its properties near a property query, most certain first.
    pub properties: Vec<(String, f64)>,
}

/// The classes of `kind` near the queries of `wheres`, most certain first
/// (ties by name), each with its properties near the same entry's property
/// queries.
pub fn introspect(
    ctx: &Contextionary,
    schema: &Schema,
    kind: Kind,
    wheres: &[IntrospectWhere],
) -> Result<Vec<Introspected>, FetchError> {
    let mut found: Vec<Introspected> = Vec::new();
    for w in wheres {
        let props = w
            .properties
            .iter()
            .map(|q| Ok((q, q.vector(ctx)?)))
            .collect::<Result<Vec<_>, FetchError>>()?;
        for q in &w.classes {
            let mut classes = ctx.classes(schema, kind, &q.vector(ctx)?, q.certainty);
            classes.truncate(q.first.unwrap_or(usize::MAX));
            for (class, certainty) in classes {
                let mut properties: Vec<(String, f64)> = Vec::new();
                for (pq, v) in &props {
                    let mut near = ctx.properties(class, v, pq.certainty);
                    near.truncate(pq.first.unwrap_or(usize::MAX));
                    properties.extend(near.into_iter().map(|(p, c)| (p.name.clone(), c)));
                }
                let at = match found.iter().position(|f| f.class == class.class) {
                    Some(at) => at,
                    None => {
                        found.push(Introspected {
                            class: class.class.clone(),
                            certainty,
                            properties: Vec::new(),
                        });
                        found.len() - 1
                    }
                };
                let entry = &mut found[at];
                entry.certainty = entry.certainty.max(certainty);
                for (name, c) in properties {
                    match entry.properties.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, best)) => *best = best.max(c),
                        None => entry.properties.push((name, c)),
                    }
                }
            }
        }
    }
    for f in &mut found {
        let properties = std::mem::take(&mut f.properties);
        f.properties = crate::rank::sort(properties, |p| (p.1, p.0.as_str(), ""));
    }
    Ok(crate::rank::sort(found, |f| {
        (f.certainty, f.class.as_str(), "")
    }))
}

/// One question of a Network `Fetch` or `Introspect` (its arguments read),
/// to decide which peers are asked it ([`Question::may_answer`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Question {
    /// `Fetch { Things(where:) }` or `Actions`.
    Fetch(Kind, FetchWhere),
    /// `Fetch { Fuzzy(value:, certainty:) }`.
    Fuzzy,
    /// `Introspect { Things(where:) }` or `Actions`.
    Introspect(Kind, Vec<IntrospectWhere>),
}

impl Question {
    /// The queried names' vectors, once per query (an unknown word is an
    /// error here, before any peer is asked).
    pub fn vectors(&self, ctx: &Contextionary) -> Result<Vec<(Vector, f64)>, FetchError> {
        match self {
            Question::Fetch(_, w) => Ok(vec![(w.class.vector(ctx)?, w.class.certainty)]),
            Question::Fuzzy => Ok(Vec::new()),
            Question::Introspect(_, wheres) => wheres
                .iter()
                .flat_map(|w| &w.classes)
                .map(|q| Ok((q.vector(ctx)?, q.certainty)))
                .collect(),
        }
    }

    /// Whether a peer whose (cached) schema is `schema` may hold an answer:
    /// for Fetch and Introspect, a class of the kind at least the queried
    /// certainty near a queried class (the same search the peer runs, so a
    /// peer left out would have answered nothing), `ctx` being the
    /// contextionary and [`Question::vectors`]; without one (`None`), any
    /// class of the kind. For Fuzzy, a class with a string or text property.
    pub fn may_answer(
        &self,
        ctx: Option<(&Contextionary, &[(Vector, f64)])>,
        schema: &Schema,
    ) -> bool {
        let kind = match self {
            Question::Fuzzy => {
                return schema.classes().any(|(_, c)| {
                    c.properties
                        .iter()
                        .any(|p| matches!(p.kind(), Ok(DataType::String | DataType::Text)))
                });
            }
            Question::Fetch(kind, _) | Question::Introspect(kind, _) => *kind,
        };
        match ctx {
            None => !schema.list(kind).classes.is_empty(),
            Some((ctx, near)) => near
                .iter()
                .any(|(v, min)| !ctx.classes(schema, kind, v, *min).is_empty()),
        }
    }
}
