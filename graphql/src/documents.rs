//! Parsed documents by their query text: clients send the same few queries
//! again and again, and async-graphql's parser costs more than the rest of
//! a small query's work. The least recently used go first, once the text
//! of the documents held passes [`Limits::max_cached_query_bytes`](crate::Limits).
//!
//! With each document the engine notes whether it passed async-graphql's
//! validation: a request of the same text without variables need not be
//! validated again (the GraphQL spec allows it: "a GraphQL service may
//! execute a request without immediately validating it if that exact same
//! request is known to have been validated before"). The engine is built
//! for one schema and its documents drop with it. Every request still
//! checks its cost, and async-graphql still checks depth and complexity.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_graphql::ServerError;
use async_graphql::parser::parse_query;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// The documents of one engine.
pub(crate) struct Documents {
    max_bytes: usize,
    held: Mutex<Held>,
}

/// A parsed document, and whether it passed validation.
struct Kept {
    document: ExecutableDocument,
    validated: bool,
}

struct Held {
    lru: LruCache<String, Kept>,
    /// The bytes of the texts in `lru`.
    bytes: usize,
}

impl Documents {
    /// Holds documents whose texts add up to at most `max_bytes` (0: none).
    pub(crate) fn new(max_bytes: usize) -> Self {
        Documents {
            max_bytes,
            held: Mutex::new(Held {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The document of `query` and whether it passed validation: a copy of
    /// the one held, or parsed (and held when it parses and its text fits).
    pub(crate) fn parse(&self, query: &str) -> Result<(ExecutableDocument, bool), ServerError> {
        if query.len() > self.max_bytes {
            return Ok((parse_query(query)?, false));
        }
        if let Some(kept) = self.held().lru.get(query) {
            return Ok((kept.document.clone(), kept.validated));
        }
        let document = parse_query(query)?;
        let mut held = self.held();
        let kept = Kept {
            document: document.clone(),
            validated: false,
        };
        if held.lru.put(query.to_owned(), kept).is_none() {
            held.bytes += query.len();
        }
        while held.bytes > self.max_bytes {
            let Some((text, _)) = held.lru.pop_lru() else {
                break;
            };
            held.bytes -= text.len();
        }
        Ok((document, false))
    }

    /// Notes that the document of `query` (if held) passed validation.
    pub(crate) fn validated(&self, query: &str) {
        if let Some(kept) = self.held().lru.peek_mut(query) {
            kept.validated = true;
        }
    }

    /// How many documents are held, how many of them passed validation,
    /// and the bytes of their texts.
    #[cfg(test)]
    pub(crate) fn held_now(&self) -> (usize, usize, usize) {
        let held = self.held();
        let validated = held.lru.iter().filter(|(_, k)| k.validated).count();
        (held.lru.len(), validated, held.bytes)
    }
}
