//! The bounds async-graphql's dynamic schema cannot weigh, checked by
//! [`check`] on the parsed document before validation: fields with every fragment expanded
//! (so a fragment bomb is refused in linear time, before any rule walks
//! it), aliases, and objects (a field with a `limit` argument weighs its
//! value, times the fields above it).
//!
//! Each fragment's cost is computed once and reused for every spread of it.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, ServerError, Value as ConstValue, Variables};
use async_graphql_value::Value;

use crate::{DEFAULT_LIMIT, Limits};

/// What a document would cost, fragments expanded. Saturating counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Fields.
    pub fields: u64,
    /// Aliased fields.
    pub aliases: u64,
    /// Objects: each field with a `limit` weighs its value, times its parents' limits.
    pub objects: u64,
}

impl Cost {
    fn add(self, other: Cost) -> Cost {
        Cost {
            fields: self.fields.saturating_add(other.fields),
            aliases: self.aliases.saturating_add(other.aliases),
            objects: self.objects.saturating_add(other.objects),
        }
    }
}

/// The cost of every operation of `document` together.
pub fn cost(document: &ExecutableDocument, variables: &Variables) -> Cost {
    let mut walk = Walk {
        document,
        variables,
        memo: HashMap::new(),
    };
    document
        .operations
        .iter()
        .fold(Cost::default(), |acc, (_, op)| {
            acc.add(walk.set(&op.node.selection_set.node))
        })
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// A fragment's cost; `None` while it is being computed (a cycle, which
    /// validation refuses later, counts nothing).
    memo: HashMap<&'a Name, Option<Cost>>,
}

impl<'a> Walk<'a> {
    fn set(&mut self, set: &'a SelectionSet) -> Cost {
        let mut total = Cost::default();
        for item in &set.items {
            let c = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let below = self.set(&field.selection_set.node);
                    let limit = field
                        .arguments
                        .iter()
                        .find(|(name, _)| name.node == "limit")
                        .map(|(_, value)| self.number(&value.node));
                    Cost {
                        fields: below.fields.saturating_add(1),
                        aliases: below.aliases + u64::from(field.alias.is_some()),
                        objects: match limit {
                            Some(l) => l.saturating_mul(below.objects.saturating_add(1)),
                            None => below.objects,
                        },
                    }
                }
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    match self.memo.get(name) {
                        Some(Some(c)) => *c,
                        Some(None) => Cost::default(),
                        None => match self.document.fragments.get(name) {
                            None => Cost::default(),
                            Some(def) => {
                                self.memo.insert(name, None);
                                let c = self.set(&def.node.selection_set.node);
                                self.memo.insert(name, Some(c));
                                c
                            }
                        },
                    }
                }
            };
            total = total.add(c);
        }
        total
    }

    /// A `limit` value: a number, or a variable's; the default otherwise.
    fn number(&self, value: &Value) -> u64 {
        let resolved = match value {
            Value::Variable(name) => self.variables.get(name).cloned(),
            other => other.clone().into_const(),
        };
        match resolved {
            Some(ConstValue::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
            _ => DEFAULT_LIMIT as u64,
        }
    }
}

/// Refuses a document past `limits`: the message names the bound and its
/// flag. Run on the parsed document before anything else walks it
/// (async-graphql's recursion check follows every fragment spread, so a
/// fragment bomb must be refused first).
pub fn check(
    document: &ExecutableDocument,
    variables: &Variables,
    limits: &Limits,
) -> Result<(), ServerError> {
    let c = cost(document, variables);
    for (got, max, what, flag) in [
        (
            c.fields,
            limits.max_complexity,
            "fields with its fragments expanded",
            "graphql-max-complexity",
        ),
        (
            c.aliases,
            limits.max_aliases,
            "aliases",
            "graphql-max-aliases",
        ),
        (
            c.objects,
            limits.max_objects,
            "objects by its limits",
            "graphql-max-objects",
        ),
    ] {
        if got > max as u64 {
            return Err(ServerError::new(
                format!("the query has {got} {what}, more than this peer allows ({max}, --{flag})"),
                None,
            ));
        }
    }
    Ok(())
}
