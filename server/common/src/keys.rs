//! Key files, and the signature headers of HTTP messages.
//!
//! A key file holds the 32-byte seed of an Ed25519 key pair as one line of
//! base64. It is created with owner-only permissions (0600) on first start,
//! from the operating system's randomness, and reused afterwards; a key file
//! that others may read is refused, as ssh refuses a private key.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use plexus_core::auth::{self, Identity, Received, ReceivedRef, SignatureHeaders};

/// A key pair drawn from the operating system's randomness.
pub fn random_identity() -> Identity {
    let mut seed = [0u8; 32];
    // Only fails on a system without a random source, where nothing is safe.
    getrandom::fill(&mut seed).expect("the operating system gives random bytes");
    Identity::from_seed(seed)
}

/// The key pair kept at `path`, made (and saved with mode 0600) if the file
/// does not exist yet. The flag tells whether it was made now.
pub fn load_or_create(path: &Path) -> anyhow::Result<(Identity, bool)> {
    match load(path) {
        Ok(identity) => return Ok((identity, false)),
        Err(e) if path.exists() => return Err(e),
        Err(_) => {}
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder of key file {}", path.display()))?;
    }
    let identity = random_identity();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        // Another process made it meanwhile: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return load(path).map(|i| (i, false));
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create key file {}", path.display()));
        }
    };
    writeln!(file, "{}", STANDARD.encode(identity.seed()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok((identity, true))
}

/// The key pair kept at `path`.
pub fn load(path: &Path) -> anyhow::Result<Identity> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "key file {} may be read by others (mode {mode:o}): make it owner-only with chmod 600",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let seed: [u8; 32] = STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| {
            format!(
                "key file {} does not hold a key (one line: the base64 of a 32-byte Ed25519 seed)",
                path.display()
            )
        })?;
    Ok(Identity::from_seed(seed))
}

/// The signature headers of a received message.
pub fn received(headers: &HeaderMap) -> Received {
    received_ref(headers).into()
}

/// The signature headers of a received message, borrowed from it.
pub fn received_ref(headers: &HeaderMap) -> ReceivedRef<'_> {
    // One pass over the request's few headers (at most hyper's 100): a
    // lookup by name hashes it, and three of them were a fifth of a keyless
    // ping's own work. The first value of a name counts, as `get` has it.
    let mut found = ReceivedRef::default();
    let mut seen = [false; 3];
    for (name, value) in headers {
        let (slot, seen) = match name.as_str() {
            auth::SIGNATURE_INPUT => (&mut found.signature_input, &mut seen[0]),
            auth::SIGNATURE => (&mut found.signature, &mut seen[1]),
            auth::CONTENT_DIGEST => (&mut found.content_digest, &mut seen[2]),
            _ => continue,
        };
        if !std::mem::replace(seen, true) {
            *slot = value.to_str().ok();
        }
    }
    found
}

/// A message's headers whose signature headers are read only when they are
/// needed (`Into<ReceivedRef>`: a keyless ping's are not).
#[derive(Clone, Copy, Debug)]
pub struct Unread<'a>(pub &'a HeaderMap);

impl<'a> From<Unread<'a>> for ReceivedRef<'a> {
    fn from(Unread(headers): Unread<'a>) -> Self {
        received_ref(headers)
    }
}

/// Adds `signature` to `headers`.
pub fn insert(headers: &mut HeaderMap, signature: &SignatureHeaders) {
    for (name, value) in values(signature) {
        headers.insert(name, value);
    }
}

/// The headers of `signature`, ready for a message.
fn values(signature: &SignatureHeaders) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
    signature.pairs().into_iter().filter_map(|(name, value)| {
        HeaderValue::from_str(value)
            .ok()
            .map(|value| (HeaderName::from_static(name), value))
    })
}

/// The header values of a signature that many answers share (genesis's
/// stamp of the list version on ping answers, one per version and
/// second), made once per signature instead of once per answer.
#[derive(Debug, Default)]
pub struct SharedSignature(Mutex<Option<Made>>);

type Made = (Arc<SignatureHeaders>, Arc<[(HeaderName, HeaderValue)]>);

impl SharedSignature {
    /// Adds `signature` to `headers`, as [`insert`] does.
    pub fn insert(&self, headers: &mut HeaderMap, signature: &Arc<SignatureHeaders>) {
        let values = {
            let mut made = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match &*made {
                Some((shared, values)) if Arc::ptr_eq(shared, signature) => Arc::clone(values),
                _ => {
                    let values: Arc<[_]> = values(signature).collect();
                    *made = Some((Arc::clone(signature), Arc::clone(&values)));
                    values
                }
            }
        };
        for (name, value) in values.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_signature_gives_the_headers_of_insert_and_follows_a_new_one() {
        use plexus_core::Timestamp;
        use plexus_core::auth::Message;
        let identity = random_identity();
        let now = Timestamp::from_millis(1_700_000_000_000);
        let first = Arc::new(identity.sign(&Message::response(b""), now));
        let second = Arc::new(identity.sign(&Message::response(b"changed"), now));
        assert_ne!(first, second);
        let shared = SharedSignature::default();
        for signature in [&first, &first, &second, &first] {
            let mut expected = HeaderMap::new();
            insert(&mut expected, signature);
            let mut got = HeaderMap::new();
            shared.insert(&mut got, signature);
            assert_eq!(got, expected);
            assert_eq!(got.len(), 3);
        }
    }

    #[test]
    fn the_received_headers_are_those_a_lookup_by_name_finds() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        assert_eq!(received_ref(&headers), ReceivedRef::default());
        headers.append(auth::SIGNATURE, HeaderValue::from_static("sig=:first:"));
        headers.append(auth::SIGNATURE, HeaderValue::from_static("sig=:second:"));
        headers.insert(
            auth::CONTENT_DIGEST,
            HeaderValue::from_static("sha-256=:d:"),
        );
        // Not text: no value, as `to_str` has it, and not the next one.
        headers.append(
            auth::SIGNATURE_INPUT,
            HeaderValue::from_bytes(b"\xff").expect("opaque"),
        );
        headers.append(auth::SIGNATURE_INPUT, HeaderValue::from_static("sig=()"));
        let by_name =
            ReceivedRef::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()));
        assert_eq!(received_ref(&headers), by_name);
        assert_eq!(ReceivedRef::from(Unread(&headers)), by_name);
        assert_eq!(by_name.signature, Some("sig=:first:"));
        assert_eq!(by_name.signature_input, None);
        assert_eq!(by_name.content_digest, Some("sha-256=:d:"));
    }

    #[test]
    fn a_key_is_made_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("peer.key");
        let (made, created) = load_or_create(&path).expect("made");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&path).expect("loaded");
        assert!(!created);
        assert_eq!(again.public(), made.public());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = load_or_create(&path).expect_err("readable by others");
        assert!(refused.to_string().contains("chmod 600"), "{refused}");

        let garbage = dir.path().join("bad.key");
        std::fs::write(&garbage, "not a key").expect("write");
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(
            load_or_create(&garbage).is_err(),
            "a bad key file is never replaced"
        );
    }
}
