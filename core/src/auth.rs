//! Who may do what: key pairs, signed messages and per-registration secrets.
//!
//! # Signatures (after RFC 9421, HTTP Message Signatures)
//!
//! A signed message carries three headers:
//!
//! ```text
//! content-digest:  sha-256=:<base64 of SHA-256(body)>:
//! signature-input: plexus=("@method" "@path" "content-digest");created=1700000000;keyid="<key>";alg="ed25519"
//! signature:       plexus=:<base64 of the signature>:
//! ```
//!
//! The signature covers the *signature base* of RFC 9421 §2.5: one line per
//! covered component (`"@method": POST`, `"@path": /peers/register`, the list
//! version header when the message has one, `"content-digest": ...`) and the
//! `"@signature-params"` line, which holds `created` (Unix seconds) and the
//! key id. So a signature cannot be moved to another method, path, version
//! or body, and a verifier refuses one whose `created` is outside its window
//! around `now` (old or from the future). Responses cover `"@status"` instead
//! of the method and path.
//!
//! Only one form is accepted: the covered components are fixed by what the
//! message is (see [`Message`]), and the `signature-input` value must be
//! exactly the one this module writes for its parameters.
//!
//! # Keys
//!
//! - A peer's [`Identity`] (Ed25519) proves it owns its name: it signs its
//!   registration, with its public key as the key id (`alg="ed25519"`).
//! - Genesis's [`Identity`] signs every peer list it pushes or answers.
//! - Pings and leaves of a keyed registration are authenticated with an
//!   HMAC-SHA256 under a per-registration [`SessionKey`]
//!   (`alg="hmac-sha256"`), which genesis hands out in the registration
//!   answer: one HMAC costs far less than one Ed25519 verification.
//! - Genesis stores nothing per peer for any of this: the [`Authority`]
//!   (a secret derived from genesis's key) writes a keyed registration's id
//!   so that the id itself tells which public key holds it (a UUID of
//!   version 8 with a MAC of the key), and derives the session key from the
//!   id. Replicas that share the key agree on both.
//!
//! Nothing here reads a clock or draws randomness: keys come from seed
//! bytes, instants and random id bits are arguments.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;
use crate::wire::{PEERS_VERSION_HEADER, PUSH_PATH, PeerId};

/// Header with the signature's covered components and parameters.
pub const SIGNATURE_INPUT: &str = "signature-input";
/// Header with the signature itself.
pub const SIGNATURE: &str = "signature";
/// Header with the SHA-256 digest of the body (RFC 9530).
pub const CONTENT_DIGEST: &str = "content-digest";
/// Header of a keyed registration's answer: the session key (base64) that
/// authenticates the registration's pings and leave.
pub const SESSION_KEY_HEADER: &str = "x-plexus-session-key";
/// The label of Plexus's signature in `signature-input` and `signature`.
pub const LABEL: &str = "plexus";
/// How far `created` may be from the verifier's clock, either way, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

/// An Ed25519 key pair, made from 32 seed bytes that the caller draws from
/// the operating system (and keeps, to be the same after a restart).
#[derive(Clone)]
pub struct Identity(SigningKey);

impl Identity {
    /// The key pair of `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The seed, to save.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message` as created at `now`, with the public key as key id.
    pub fn sign(&self, message: &Message<'_>, now: Timestamp) -> SignatureHeaders {
        let keyid = self.public().to_string();
        let (params, base) = signature_base(message, now.as_millis() / 1000, &keyid, Alg::Ed25519);
        let signature = self.0.sign(base.as_bytes()).to_bytes();
        SignatureHeaders::new(params, &signature, message.body)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public())
    }
}

/// An Ed25519 public key; as text, the unpadded base64url of its 32 bytes
/// (43 characters), which is also its key id in signatures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError(text.to_owned()))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError(text.to_owned()))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A text that is not an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 public key {0:?}: expected the unpadded base64url of 32 bytes")]
pub struct KeyError(pub String);

/// The secret of one keyed registration: its pings and leave carry an
/// HMAC-SHA256 under it. As text, standard base64.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Signs `message` as created at `now` (key id `session`).
    pub fn sign(&self, message: &Message<'_>, now: Timestamp) -> SignatureHeaders {
        let (params, base) =
            signature_base(message, now.as_millis() / 1000, "session", Alg::HmacSha256);
        let tag = self.mac(base.as_bytes());
        SignatureHeaders::new(params, &tag, message.body)
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, &[data])
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl FromStr for SessionKey {
    type Err = AuthError;
    fn from_str(text: &str) -> Result<Self, AuthError> {
        STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(Self)
            .ok_or_else(|| {
                AuthError::Malformed(format!("{SESSION_KEY_HEADER} is not 32 bytes of base64"))
            })
    }
}

/// Genesis's secret for keyed registrations: it writes their ids and
/// derives their session keys, so that genesis keeps nothing per peer.
#[derive(Clone)]
pub struct Authority(HmacSha256);

impl Authority {
    /// An authority with `secret`.
    pub fn new(secret: [u8; 32]) -> Self {
        // The HMAC's key schedule, done once: each derivation clones it.
        Self(<HmacSha256 as Mac>::new_from_slice(&secret).unwrap_or_else(|_| unreachable!()))
    }

    /// The authority of genesis's key pair (a secret derived from its seed),
    /// so that it is the same after a restart with the same key.
    pub fn of(identity: &Identity) -> Self {
        Self::new(hmac_sha256(&identity.seed(), &[b"plexus registry secret"]))
    }

    /// Whether `id` is the id of a keyed registration (a UUID of version 8):
    /// its name is held by a key, and its pings need a session signature.
    pub fn is_keyed(id: PeerId) -> bool {
        id.0.get_version_num() == 8
    }

    /// The id of a keyed registration of `key`, from 128 random bits: a UUID
    /// of version 8 whose first half is random and whose second half is a
    /// MAC of the first and of `key` (62 bits of it survive the variant bits).
    pub fn keyed_id(&self, random: u128, key: &PublicKey) -> PeerId {
        let mut bytes = random.to_le_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        let tag = self.id_tag(&bytes[..8], key);
        bytes[8..].copy_from_slice(&tag);
        PeerId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// Whether the keyed registration `id` was made for `key`.
    pub fn holds(&self, id: PeerId, key: &PublicKey) -> bool {
        if !Self::is_keyed(id) {
            return false;
        }
        let bytes = id.0.as_bytes();
        let mut tag = self.id_tag(&bytes[..8], key);
        tag[0] = (tag[0] & 0x3f) | 0x80;
        constant_time_eq(&tag, &bytes[8..])
    }

    /// The session key of the keyed registration `id`.
    pub fn session_key(&self, id: PeerId) -> SessionKey {
        SessionKey(self.mac(&[b"plexus session", id.0.as_bytes()]))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn id_tag(&self, half: &[u8], key: &PublicKey) -> [u8; 8] {
        let mac = self.mac(&[b"plexus id", half, key.as_bytes()]);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&mac[..8]);
        tag
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authority(..)")
    }
}

/// What a signed message is: a request (method and path) or a response (status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A request: its method and the API path (e.g. `/peers/register`,
    /// without a prefix the base URL may have).
    Request {
        /// E.g. `POST`.
        method: &'a str,
        /// E.g. `/peers/register`.
        path: &'a str,
    },
    /// A response, by its status code.
    Response {
        /// E.g. 200.
        status: u16,
    },
}

/// What a signature covers: the subject, the list version when the message
/// carries one (`x-plexus-peers-version`), and the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// A request or a response.
    pub subject: Subject<'a>,
    /// The list version header, when the message carries one.
    pub version: Option<u64>,
    /// The body (empty for none).
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    /// A request `method path` with `body`.
    pub fn request(method: &'a str, path: &'a str, body: &'a [u8]) -> Self {
        Self {
            subject: Subject::Request { method, path },
            version: None,
            body,
        }
    }

    /// A 200 response with `body`.
    pub fn response(body: &'a [u8]) -> Self {
        Self {
            subject: Subject::Response { status: 200 },
            version: None,
            body,
        }
    }

    /// The same message, carrying list `version`.
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.version = version;
        self
    }

    /// `PUT /p2p/genesis` with `body` at list `version`: what genesis pushes.
    pub fn push(version: Option<u64>, body: &'a [u8]) -> Self {
        Self::request("PUT", PUSH_PATH, body).with_version(version)
    }

    /// The covered components, as `signature-input` lists them.
    fn components(&self) -> &'static str {
        match (self.subject, self.version.is_some()) {
            (Subject::Request { .. }, false) => r#"("@method" "@path" "content-digest")"#,
            (Subject::Request { .. }, true) => {
                r#"("@method" "@path" "x-plexus-peers-version" "content-digest")"#
            }
            (Subject::Response { .. }, false) => r#"("@status" "content-digest")"#,
            (Subject::Response { .. }, true) => {
                r#"("@status" "x-plexus-peers-version" "content-digest")"#
            }
        }
    }
}

/// The headers that carry a signature, to add to the signed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// Value of `signature-input`.
    pub signature_input: String,
    /// Value of `signature`.
    pub signature: String,
    /// Value of `content-digest`.
    pub content_digest: String,
}

impl SignatureHeaders {
    fn new(params: String, signature: &[u8], body: &[u8]) -> Self {
        let mut signature_input = String::with_capacity(LABEL.len() + 1 + params.len());
        signature_input.push_str(LABEL);
        signature_input.push('=');
        signature_input.push_str(&params);
        let mut text = String::with_capacity(LABEL.len() + 4 + signature.len() * 4 / 3 + 4);
        text.push_str(LABEL);
        text.push_str("=:");
        STANDARD.encode_string(signature, &mut text);
        text.push(':');
        Self {
            signature_input,
            signature: text,
            content_digest: content_digest(body),
        }
    }

    /// The (name, value) pairs to add to the message.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (SIGNATURE_INPUT, &self.signature_input),
            (SIGNATURE, &self.signature),
            (CONTENT_DIGEST, &self.content_digest),
        ]
    }
}

/// The signature headers of a received message, as text; `None` for a
/// header that is absent (or not text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Value of `signature-input`.
    pub signature_input: Option<String>,
    /// Value of `signature`.
    pub signature: Option<String>,
    /// Value of `content-digest`.
    pub content_digest: Option<String>,
}

impl Received {
    /// The headers found by `get` (a header name in, its value out).
    pub fn from_headers<'h>(get: impl Fn(&str) -> Option<&'h str>) -> Self {
        ReceivedRef::from_headers(get).into()
    }

    /// Whether the message carries no signature header at all (an original
    /// client's request).
    pub fn is_unsigned(&self) -> bool {
        ReceivedRef::from(self).is_unsigned()
    }
}

/// The signature headers of a received message, borrowed from it: what
/// [`verify`] reads, with no copy (a server checks one on every signed
/// ping). [`Received`] is the owned form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceivedRef<'a> {
    /// Value of `signature-input`.
    pub signature_input: Option<&'a str>,
    /// Value of `signature`.
    pub signature: Option<&'a str>,
    /// Value of `content-digest`.
    pub content_digest: Option<&'a str>,
}

impl<'a> ReceivedRef<'a> {
    /// The headers found by `get` (a header name in, its value out).
    pub fn from_headers(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            signature_input: get(SIGNATURE_INPUT),
            signature: get(SIGNATURE),
            content_digest: get(CONTENT_DIGEST),
        }
    }

    /// Whether the message carries no signature header at all (an original
    /// client's request).
    pub fn is_unsigned(&self) -> bool {
        self.signature_input.is_none() && self.signature.is_none()
    }
}

impl<'a> From<&'a Received> for ReceivedRef<'a> {
    fn from(received: &'a Received) -> Self {
        Self {
            signature_input: received.signature_input.as_deref(),
            signature: received.signature.as_deref(),
            content_digest: received.content_digest.as_deref(),
        }
    }
}

impl From<ReceivedRef<'_>> for Received {
    fn from(received: ReceivedRef<'_>) -> Self {
        Self {
            signature_input: received.signature_input.map(str::to_owned),
            signature: received.signature.map(str::to_owned),
            content_digest: received.content_digest.map(str::to_owned),
        }
    }
}

impl From<&SignatureHeaders> for Received {
    fn from(headers: &SignatureHeaders) -> Self {
        Self {
            signature_input: Some(headers.signature_input.clone()),
            signature: Some(headers.signature.clone()),
            content_digest: Some(headers.content_digest.clone()),
        }
    }
}

/// Which key must have signed.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    /// Any Ed25519 key, named by the key id: a proof of possession (a
    /// registration, or the first answer of genesis that a peer pins).
    AnyKey,
    /// This Ed25519 key.
    Key(&'a PublicKey),
    /// An HMAC under this session key.
    Session(&'a SessionKey),
}

/// Why a signature was refused. Every variant is an answer of 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No signature where one is needed.
    #[error(
        "this call needs a signature (headers signature-input, signature and content-digest; see docs/genesis.md)"
    )]
    Missing,
    /// A signature header does not have the one accepted form.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature covers other components than this message needs.
    #[error("the signature must cover exactly {expected}")]
    Components {
        /// The components it must cover.
        expected: &'static str,
    },
    /// `created` is too old or in the future.
    #[error(
        "signature created at {created}s is more than {max_age_s}s away from {now_s}s (the verifier's clock): too old, replayed or from the future"
    )]
    Stale {
        /// Its `created`, in Unix seconds.
        created: u64,
        /// The verifier's clock, in Unix seconds.
        now_s: u64,
        /// The window.
        max_age_s: u64,
    },
    /// `content-digest` is not the digest of the body.
    #[error("content-digest does not match the body")]
    Digest,
    /// Signed with another key or algorithm than the one required.
    #[error("signed with the wrong key: {0}")]
    WrongKey(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// A signature that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The Ed25519 key that signed (`None` for a session HMAC).
    pub key: Option<PublicKey>,
    /// When it was created.
    pub created: Timestamp,
}

/// Verifies that `received` (a [`Received`] or a [`ReceivedRef`]) signs
/// `message` with the key `expect` names, created at most `max_age` away
/// from `now`: [`check_digest`] of the body, then [`verify_before_body`].
pub fn verify<'r>(
    received: impl Into<ReceivedRef<'r>>,
    message: &Message<'_>,
    expect: Expect<'_>,
    now: Timestamp,
    max_age: Duration,
) -> Result<Verified, AuthError> {
    let received = received.into();
    if received.signature_input.is_none() || received.signature.is_none() {
        return Err(AuthError::Missing);
    }
    check_digest(received, message.body)?;
    verify_before_body(
        received,
        message.subject,
        message.version,
        expect,
        now,
        max_age,
    )
}

/// Whether `received`'s `content-digest` is the digest of `body`.
pub fn check_digest<'r>(
    received: impl Into<ReceivedRef<'r>>,
    body: &[u8],
) -> Result<(), AuthError> {
    let digest = DigestText::of(body);
    if received.into().content_digest.map(str::trim) != Some(digest.as_str()) {
        return Err(AuthError::Digest);
    }
    Ok(())
}

/// Verifies everything of a signature that the headers hold, before the
/// body is read: that `received` signs `subject` at list `version` with
/// the key `expect` names, over the `content-digest` the message claims,
/// created at most `max_age` away from `now`. The signature covers that
/// digest, so a sender without the key cannot make a receiver read a body;
/// [`check_digest`] then checks the body against it.
pub fn verify_before_body<'r>(
    received: impl Into<ReceivedRef<'r>>,
    subject: Subject<'_>,
    version: Option<u64>,
    expect: Expect<'_>,
    now: Timestamp,
    max_age: Duration,
) -> Result<Verified, AuthError> {
    let received = received.into();
    let (Some(input), Some(signature)) = (received.signature_input, received.signature) else {
        return Err(AuthError::Missing);
    };
    let digest = received
        .content_digest
        .map(str::trim)
        .filter(|d| d.len() == DIGEST_TEXT_LEN && d.starts_with(DIGEST_PREFIX) && d.ends_with(':'))
        .ok_or_else(|| {
            AuthError::Malformed(format!("{CONTENT_DIGEST} must be {DIGEST_PREFIX}BASE64:"))
        })?;
    let message = &Message {
        subject,
        version,
        body: &[],
    };
    let params = input
        .trim()
        .strip_prefix(LABEL)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or_else(|| AuthError::Malformed(format!("{SIGNATURE_INPUT} must be {LABEL}=(...)")))?;
    let expected = message.components();
    let rest = params
        .strip_prefix(expected)
        .ok_or(AuthError::Components { expected })?;
    let parsed = parse_params(rest)?;
    // One form only: what this module would write for the same parameters.
    let canonical = writes_exactly(params, |part| {
        params_parts(expected, parsed.created, parsed.keyid, parsed.alg, part);
    });
    if !canonical {
        return Err(AuthError::Malformed(format!(
            "{SIGNATURE_INPUT} parameters must be ;created=N;keyid=\"...\";alg=\"...\""
        )));
    }
    let max_age_s = max_age.as_secs();
    let now_s = now.as_millis() / 1000;
    if parsed.created.abs_diff(now_s) > max_age_s {
        return Err(AuthError::Stale {
            created: parsed.created,
            now_s,
            max_age_s,
        });
    }
    // On the stack: the decoder's estimate for the 64 bytes of an Ed25519
    // signature is 66; a longer one is no signature of ours.
    let mut decoded = [0u8; 66];
    let sig = signature
        .trim()
        .strip_prefix(LABEL)
        .and_then(|rest| rest.strip_prefix("=:"))
        .and_then(|rest| rest.strip_suffix(':'))
        .and_then(|b64| STANDARD.decode_slice(b64, &mut decoded).ok())
        .and_then(|len| decoded.get(..len))
        .ok_or_else(|| AuthError::Malformed(format!("{SIGNATURE} must be {LABEL}=:BASE64:")))?;
    let created = Timestamp::from_millis(parsed.created.saturating_mul(1000));
    match (expect, parsed.alg) {
        (Expect::Session(key), Alg::HmacSha256) => {
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(&key.0).map_err(|_| AuthError::BadSignature)?;
            // The base goes into the MAC piece by piece, without a copy.
            base_parts(message, digest, params, &mut |part| {
                mac.update(part.as_bytes())
            });
            mac.verify_slice(sig).map_err(|_| AuthError::BadSignature)?;
            Ok(Verified { key: None, created })
        }
        (Expect::AnyKey | Expect::Key(_), Alg::Ed25519) => {
            let key: PublicKey = parsed
                .keyid
                .parse()
                .map_err(|e: KeyError| AuthError::Malformed(e.to_string()))?;
            if let Expect::Key(wanted) = expect
                && *wanted != key
            {
                return Err(AuthError::WrongKey(format!(
                    "expected key {wanted}, got {key}"
                )));
            }
            let sig = ed25519_dalek::Signature::from_slice(sig)
                .map_err(|_| AuthError::Malformed("an Ed25519 signature has 64 bytes".into()))?;
            let base = base_text(message, digest, params);
            key.0
                .verify_strict(base.as_bytes(), &sig)
                .map_err(|_| AuthError::BadSignature)?;
            Ok(Verified {
                key: Some(key),
                created,
            })
        }
        (_, alg) => Err(AuthError::WrongKey(format!(
            "algorithm {} is not the one this call needs",
            alg.name()
        ))),
    }
}

/// The `content-digest` value of `body`: `sha-256=:BASE64:`.
pub fn content_digest(body: &[u8]) -> String {
    DigestText::of(body).as_str().to_owned()
}

const DIGEST_PREFIX: &str = "sha-256=:";
/// `sha-256=:`, the 44 characters of a 32-byte digest in padded base64, `:`.
const DIGEST_TEXT_LEN: usize = DIGEST_PREFIX.len() + 44 + 1;

/// A `content-digest` value, written on the stack (it is checked on every
/// signed ping).
struct DigestText([u8; DIGEST_TEXT_LEN]);

impl DigestText {
    fn of(body: &[u8]) -> Self {
        let mut text = [b':'; DIGEST_TEXT_LEN];
        text[..DIGEST_PREFIX.len()].copy_from_slice(DIGEST_PREFIX.as_bytes());
        // 32 bytes are exactly 44 characters of padded base64: this fits.
        let _ = STANDARD.encode_slice(
            Sha256::digest(body),
            &mut text[DIGEST_PREFIX.len()..DIGEST_TEXT_LEN - 1],
        );
        Self(text)
    }

    fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Ed25519,
    HmacSha256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Ed25519 => "ed25519",
            Alg::HmacSha256 => "hmac-sha256",
        }
    }
}

struct Params<'a> {
    created: u64,
    keyid: &'a str,
    alg: Alg,
}

/// Parses `;created=N;keyid="K";alg="A"` (in this order; the caller checks
/// the text is exactly the canonical one).
fn parse_params(text: &str) -> Result<Params<'_>, AuthError> {
    let bad = || {
        AuthError::Malformed(format!(
            "{SIGNATURE_INPUT} parameters must be ;created=N;keyid=\"...\";alg=\"...\""
        ))
    };
    let rest = text.strip_prefix(";created=").ok_or_else(bad)?;
    let (created, rest) = rest.split_once(';').ok_or_else(bad)?;
    let created: u64 = created.parse().map_err(|_| bad())?;
    let rest = rest.strip_prefix("keyid=\"").ok_or_else(bad)?;
    let (keyid, rest) = rest.split_once('"').ok_or_else(bad)?;
    let alg = match rest {
        r#";alg="ed25519""# => Alg::Ed25519,
        r#";alg="hmac-sha256""# => Alg::HmacSha256,
        _ => return Err(bad()),
    };
    if keyid.is_empty() || !keyid.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Err(bad());
    }
    Ok(Params {
        created,
        keyid,
        alg,
    })
}

/// The `signature-input` parameters: `(components);created=N;keyid="K";alg="A"`.
fn params_text(components: &str, created: u64, keyid: &str, alg: Alg) -> String {
    let mut text = String::with_capacity(components.len() + keyid.len() + 48);
    params_parts(components, created, keyid, alg, &mut |part| {
        text.push_str(part)
    });
    text
}

/// The pieces of the `signature-input` parameters, in order: the one rule
/// that [`params_text`] writes and [`verify`] checks them by.
fn params_parts(components: &str, created: u64, keyid: &str, alg: Alg, part: &mut dyn FnMut(&str)) {
    part(components);
    part(";created=");
    part(itoa::Buffer::new().format(created));
    part(";keyid=\"");
    part(keyid);
    part("\";alg=\"");
    part(alg.name());
    part("\"");
}

/// Whether `text` is exactly the pieces that `write` hands out, in order
/// (compared in place, with no copy).
fn writes_exactly(text: &str, write: impl FnOnce(&mut dyn FnMut(&str))) -> bool {
    let mut rest = Some(text);
    write(&mut |part| rest = rest.and_then(|r| r.strip_prefix(part)));
    rest == Some("")
}

fn signature_base(message: &Message<'_>, created: u64, keyid: &str, alg: Alg) -> (String, String) {
    let params = params_text(message.components(), created, keyid, alg);
    let base = base_text(message, DigestText::of(message.body).as_str(), &params);
    (params, base)
}

/// The signature base of RFC 9421 §2.5, as one text (what Ed25519 signs).
fn base_text(message: &Message<'_>, digest: &str, params: &str) -> String {
    let mut base = String::with_capacity(160 + digest.len() + params.len());
    base_parts(message, digest, params, &mut |part| base.push_str(part));
    base
}

/// The pieces of the signature base of RFC 9421 §2.5, in order, with no
/// formatting machinery: it is on the path of every signed ping, whose
/// HMAC takes the pieces as they come.
fn base_parts(message: &Message<'_>, digest: &str, params: &str, part: &mut dyn FnMut(&str)) {
    let mut numbers = itoa::Buffer::new();
    match message.subject {
        Subject::Request { method, path } => {
            part("\"@method\": ");
            part(method);
            part("\n\"@path\": ");
            part(path);
        }
        Subject::Response { status } => {
            part("\"@status\": ");
            part(numbers.format(status));
        }
    }
    part("\n");
    if let Some(version) = message.version {
        part("\"");
        part(PEERS_VERSION_HEADER);
        part("\": ");
        part(numbers.format(version));
        part("\n");
    }
    part("\"content-digest\": ");
    part(digest);
    part("\n\"@signature-params\": ");
    part(params);
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // An HMAC takes a key of any length: this cannot fail.
    let mut mac = match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    #[test]
    fn a_signed_request_verifies_and_names_its_key() {
        let id = Identity::from_seed([7; 32]);
        let body = br#"{"peerName":"A","peerUri":"http://h:1"}"#;
        let message = Message::request("POST", "/peers/register", body);
        let headers = id.sign(&message, NOW);
        assert!(headers.signature_input.starts_with(
            r#"plexus=("@method" "@path" "content-digest");created=1700000000;keyid=""#
        ));
        let verified = verify(
            &Received::from(&headers),
            &message,
            Expect::AnyKey,
            NOW,
            DEFAULT_MAX_AGE,
        )
        .expect("verifies");
        assert_eq!(verified.key, Some(id.public()));
        assert_eq!(
            id.public().to_string().parse::<PublicKey>(),
            Ok(id.public())
        );
    }

    #[test]
    fn borrowed_headers_verify_as_owned_ones_and_an_oversized_signature_is_refused() {
        let key = SessionKey([5; 32]);
        let message = Message::request("POST", "/peers/x/ping", b"{}");
        let mut received = Received::from(&key.sign(&message, NOW));
        let check = |received: ReceivedRef<'_>| {
            verify(
                received,
                &message,
                Expect::Session(&key),
                NOW,
                DEFAULT_MAX_AGE,
            )
        };
        assert!(check(ReceivedRef::from(&received)).is_ok());
        assert_eq!(
            check(ReceivedRef::from(&received)),
            verify(
                &received,
                &message,
                Expect::Session(&key),
                NOW,
                DEFAULT_MAX_AGE
            )
        );
        // Longer than any signature of ours: refused, whatever it holds.
        received.signature = Some(format!("{LABEL}=:{}:", STANDARD.encode([0u8; 200])));
        assert!(matches!(
            check(ReceivedRef::from(&received)),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn keyed_ids_tell_their_key_and_only_theirs() {
        let authority = Authority::new([1; 32]);
        let (a, b) = (Identity::from_seed([2; 32]), Identity::from_seed([3; 32]));
        let id = authority.keyed_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef, &a.public());
        assert!(Authority::is_keyed(id));
        assert!(authority.holds(id, &a.public()));
        assert!(!authority.holds(id, &b.public()));
        assert!(!Authority::new([9; 32]).holds(id, &a.public()));
        let plain = PeerId(uuid::Builder::from_random_bytes([5; 16]).into_uuid());
        assert!(!Authority::is_keyed(plain));
        assert!(!authority.holds(plain, &a.public()));
        assert_ne!(authority.session_key(id), authority.session_key(plain));
    }
}
