//! The contextionary: a space of word vectors in which a class `City`
//! is near a `Town`, as the original network's was.
//!
//! [`Contextionary::parse`] reads the file format of docs/peer.md ("The
//! contextionary"; every byte is checked, sizes against the file's length
//! before anything is allocated). A name's vector is the centroid of its
//! camelCase words' vectors, each of weight 1, and of its keywords' with
//! their weights ([`Contextionary::vector`]); the certainty of two vectors
//! is `1 − d/12`, `d` their Euclidean distance ([`certainty`]), as the
//! original's `contextionary/schema` computed it. Pure: no I/O.

use std::cmp::Ordering;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::schema::{Class, Keyword, Kind, Property, Schema};
use crate::wire::ContextionaryHash;

/// The first bytes of a contextionary file.
pub const MAGIC: [u8; 4] = *b"PLXC";
/// The format version this code reads and writes.
pub const VERSION: u16 = 1;
/// The longest vector a file may hold.
pub const MAX_DIMS: usize = 1024;
/// The distance at which certainty reaches 0 (the original's 12).
pub const DISTANCE_SCALE: f64 = 12.0;

const HEADER: usize = 12;

/// Why a contextionary file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than its header, or than its header says.
    #[error("contextionary file truncated: {0}")]
    Truncated(&'static str),
    /// Not a contextionary file.
    #[error("not a contextionary file (magic {0:?}, expected \"PLXC\")")]
    Magic([u8; 4]),
    /// A format version this peer cannot read.
    #[error("contextionary format version {0}, this peer reads version 1")]
    Version(u16),
    /// A vector length of 0 or over [`MAX_DIMS`].
    #[error("contextionary vectors of {0} dimensions (1 to 1024 allowed)")]
    Dims(u16),
    /// No word at all.
    #[error("contextionary holds no word")]
    Empty,
    /// A word of length 0, or with a byte outside `a`-`z`.
    #[error("contextionary word {0} is not a word of a-z")]
    Word(usize),
    /// Words not in strictly increasing byte order (or one twice).
    #[error("contextionary word {0} is out of order (words must be sorted and distinct)")]
    Order(usize),
    /// A vector scale that is negative or not finite.
    #[error("contextionary vector {0} has a scale that is negative or not finite")]
    Scale(usize),
    /// Bytes after the last vector.
    #[error("contextionary file has {0} bytes after its last vector")]
    Trailing(usize),
}

/// A word of a query outside the contextionary's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the contextionary has no word {word:?} (in {name:?})")]
pub struct UnknownWord {
    /// The word.
    pub word: String,
    /// The name or keyword it came from.
    pub name: String,
}

/// A point of the contextionary's space.
#[derive(Clone, Debug, PartialEq)]
pub struct Vector(pub Vec<f64>);

/// The certainty that two vectors mean the same: `1 − d/12`, `d` their
/// Euclidean distance, clamped to 0 to 1.
pub fn certainty(a: &Vector, b: &Vector) -> f64 {
    let d2: f64 = a.0.iter().zip(&b.0).map(|(x, y)| (x - y) * (x - y)).sum();
    (1.0 - d2.sqrt() / DISTANCE_SCALE).clamp(0.0, 1.0)
}

/// The words of a camelCase (or snake_case) name, lower-cased: `inCountry`
/// → `in`, `country`; `HTTPServer` → `http`, `server`; digits and `_`
/// separate words and are dropped. The vocabulary is a-z words, so ASCII
/// rules suffice (and keep Unicode's tables out of the browser modules): a
/// non-ASCII character stays in its word, which is then no word of the
/// contextionary, an error naming it.
pub fn split_name(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii() && !c.is_ascii_alphabetic() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let starts = c.is_ascii_uppercase()
            && (prev.is_some_and(|p| p.is_ascii_lowercase())
                || prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(char::is_ascii_lowercase));
        if starts && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// A parsed contextionary file: its words, their vectors and its hash.
#[derive(Clone)]
pub struct Contextionary {
    bytes: Box<[u8]>,
    dims: usize,
    /// Offset of each word's length byte, in the words' (sorted) order.
    words: Vec<u32>,
    vectors_at: usize,
    hash: ContextionaryHash,
}

impl fmt::Debug for Contextionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contextionary")
            .field("words", &self.words.len())
            .field("dims", &self.dims)
            .field("hash", &self.hash.to_string())
            .finish()
    }
}

/// The most bytes of a contextionary file a peer reads or downloads by
/// default (`--contextionary-max-bytes`; the tab peer's bound): a larger
/// one is refused.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The SHA-256 of a contextionary file, as genesis names it.
pub fn hash_of(bytes: &[u8]) -> ContextionaryHash {
    let digest = Sha256::digest(bytes);
    ContextionaryHash {
        algorithm: "sha256".into(),
        value: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

impl Contextionary {
    /// Reads a contextionary file; every rule of the format is checked.
    pub fn parse(bytes: impl Into<Box<[u8]>>) -> Result<Contextionary, FormatError> {
        let bytes: Box<[u8]> = bytes.into();
        let header = bytes
            .get(..HEADER)
            .ok_or(FormatError::Truncated("shorter than its 12-byte header"))?;
        let magic = [header[0], header[1], header[2], header[3]];
        if magic != MAGIC {
            return Err(FormatError::Magic(magic));
        }
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let dims16 = u16::from_le_bytes([header[6], header[7]]);
        let dims = usize::from(dims16);
        if dims == 0 || dims > MAX_DIMS {
            return Err(FormatError::Dims(dims16));
        }
        let count = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if count == 0 {
            return Err(FormatError::Empty);
        }
        // Each word takes at least 2 bytes, each vector 4 + dims: check the
        // length before allocating anything for `count`.
        let least = count
            .checked_mul(2 + 4 + dims)
            .and_then(|n| n.checked_add(HEADER))
            .ok_or(FormatError::Truncated(
                "its word count does not fit its length",
            ))?;
        if bytes.len() < least || u32::try_from(bytes.len()).is_err() {
            return Err(FormatError::Truncated(
                "shorter than its word count needs (or over 4 GiB)",
            ));
        }
        let mut words = Vec::with_capacity(count);
        let mut at = HEADER;
        let mut previous: &[u8] = &[];
        for i in 0..count {
            let len = usize::from(*bytes.get(at).ok_or(FormatError::Truncated("in a word"))?);
            let word = bytes
                .get(at + 1..at + 1 + len)
                .ok_or(FormatError::Truncated("in a word"))?;
            if len == 0 || !word.iter().all(u8::is_ascii_lowercase) {
                return Err(FormatError::Word(i));
            }
            if i > 0 && word <= previous {
                return Err(FormatError::Order(i));
            }
            words.push(at as u32);
            previous = word;
            at += 1 + len;
        }
        let vectors_at = at;
        let stride = 4 + dims;
        let end = count
            .checked_mul(stride)
            .and_then(|n| n.checked_add(vectors_at))
            .ok_or(FormatError::Truncated("in the vectors"))?;
        match bytes.len().cmp(&end) {
            Ordering::Less => return Err(FormatError::Truncated("in the vectors")),
            Ordering::Greater => return Err(FormatError::Trailing(bytes.len() - end)),
            Ordering::Equal => {}
        }
        for i in 0..count {
            let s = vectors_at + i * stride;
            let scale = f32::from_le_bytes([bytes[s], bytes[s + 1], bytes[s + 2], bytes[s + 3]]);
            if !scale.is_finite() || scale < 0.0 {
                return Err(FormatError::Scale(i));
            }
        }
        let hash = hash_of(&bytes);
        Ok(Contextionary {
            bytes,
            dims,
            words,
            vectors_at,
            hash,
        })
    }

    /// Its hash (`sha256` of the file).
    pub fn hash(&self) -> &ContextionaryHash {
        &self.hash
    }

    /// The file it was parsed from.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Never: a file holds at least one word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The vectors' length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The `i`-th word, in byte order.
    pub fn word(&self, i: usize) -> &str {
        let at = self.words[i] as usize;
        let len = usize::from(self.bytes[at]);
        // Checked to be a-z when parsed.
        std::str::from_utf8(&self.bytes[at + 1..at + 1 + len]).unwrap_or_default()
    }

    /// The index of `word`, if the contextionary holds it.
    pub fn index(&self, word: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.words.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.word(mid).as_bytes().cmp(word.as_bytes()) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Adds `weight` × the vector of word `i` to `sum`.
    fn add(&self, i: usize, weight: f64, sum: &mut [f64]) {
        let s = self.vectors_at + i * (4 + self.dims);
        let b = &self.bytes;
        let scale = f64::from(f32::from_le_bytes([b[s], b[s + 1], b[s + 2], b[s + 3]]));
        for (x, q) in sum.iter_mut().zip(&b[s + 4..s + 4 + self.dims]) {
            *x += weight * scale * f64::from(*q as i8);
        }
    }

    /// The vector of one word, if it is known.
    pub fn word_vector(&self, word: &str) -> Option<Vector> {
        let i = self.index(word)?;
        let mut sum = vec![0.0; self.dims];
        self.add(i, 1.0, &mut sum);
        Some(Vector(sum))
    }

    /// The vector of `name`: the centroid of its camelCase words (weight 1
    /// each) and of `keywords`' words (each with its weight). A word the
    /// contextionary lacks is an error naming it; a name of no words is
    /// the origin's vector only when its keywords weigh nothing (an error
    /// too: nothing to place).
    pub fn vector(&self, name: &str, keywords: &[Keyword]) -> Result<Vector, UnknownWord> {
        let mut sum = vec![0.0; self.dims];
        let mut total = 0.0;
        let parts =
            std::iter::once((name, 1.0)).chain(keywords.iter().map(|k| (&*k.keyword, k.weight)));
        for (text, weight) in parts {
            for word in split_name(text) {
                let i = self.index(&word).ok_or_else(|| UnknownWord {
                    word: word.clone(),
                    name: text.to_owned(),
                })?;
                self.add(i, weight, &mut sum);
                total += weight;
            }
        }
        if total <= 0.0 {
            return Err(UnknownWord {
                word: String::new(),
                name: name.to_owned(),
            });
        }
        Ok(Vector(sum.into_iter().map(|x| x / total).collect()))
    }

    /// The words within `min` certainty of `near`, most certain first (ties
    /// by word), at most `max`.
    pub fn nearest_words(&self, near: &Vector, min: f64, max: usize) -> Vec<(String, f64)> {
        let stride = 4 + self.dims;
        let b = &self.bytes;
        let mut found: Vec<(usize, f64)> = Vec::new();
        for i in 0..self.len() {
            let s = self.vectors_at + i * stride;
            let scale = f64::from(f32::from_le_bytes([b[s], b[s + 1], b[s + 2], b[s + 3]]));
            let d2: f64 = b[s + 4..s + stride]
                .iter()
                .zip(&near.0)
                .map(|(q, x)| {
                    let d = scale * f64::from(*q as i8) - x;
                    d * d
                })
                .sum();
            let c = (1.0 - d2.sqrt() / DISTANCE_SCALE).clamp(0.0, 1.0);
            if c >= min {
                found.push((i, c));
            }
        }
        // Words are stored sorted: a tie by word is a tie by index.
        let ranks: Vec<_> = found.iter().map(|&(i, c)| (c, self.word(i), "")).collect();
        let mut found = crate::rank::arrange(found, &crate::rank::order(&ranks));
        found.truncate(max);
        found
            .into_iter()
            .map(|(i, c)| (self.word(i).to_owned(), c))
            .collect()
    }

    /// The classes of `kind` in `schema` within `min` certainty of the
    /// query's vector, most certain first (ties by name). A class whose
    /// name holds a word outside the contextionary is near nothing.
    pub fn classes<'s>(
        &self,
        schema: &'s Schema,
        kind: Kind,
        query: &Vector,
        min: f64,
    ) -> Vec<(&'s Class, f64)> {
        let found = schema.list(kind).classes.iter().filter_map(|class| {
            let v = self.vector(&class.class, &class.keywords).ok()?;
            Some((class, certainty(query, &v)))
        });
        ranked(found, min, |c| &c.class)
    }

    /// The properties of `class` within `min` certainty of the query's
    /// vector, ranked as [`Contextionary::classes`] ranks classes.
    pub fn properties<'c>(
        &self,
        class: &'c Class,
        query: &Vector,
        min: f64,
    ) -> Vec<(&'c Property, f64)> {
        let found = class.properties.iter().filter_map(|p| {
            let v = self.vector(&p.name, &p.keywords).ok()?;
            Some((p, certainty(query, &v)))
        });
        ranked(found, min, |p| &p.name)
    }
}

fn ranked<'a, T>(
    found: impl Iterator<Item = (&'a T, f64)>,
    min: f64,
    name: impl Fn(&T) -> &str,
) -> Vec<(&'a T, f64)> {
    let out: Vec<(&T, f64)> = found.filter(|(_, c)| *c >= min).collect();
    crate::rank::sort(out, |(item, c)| (*c, name(item), ""))
}
