//! Property tests of the signature and replay checks of `plexus_core::auth`:
//! a signature verifies only for the message, key and time window it was
//! made for.

use std::time::Duration;

use plexus_core::Timestamp;
use plexus_core::auth::{
    AuthError, Authority, DEFAULT_MAX_AGE, Expect, Identity, Message, Received, verify,
};
use plexus_core::wire::PeerId;
use proptest::prelude::*;

/// Instants from 2001 to 2286: far from zero, so windows never saturate.
fn instant() -> impl Strategy<Value = Timestamp> {
    (1_000_000_000_000u64..10_000_000_000_000).prop_map(Timestamp::from_millis)
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["POST", "PUT", "DELETE", "GET"])
}

fn path() -> impl Strategy<Value = String> {
    "/[a-z0-9/-]{0,40}"
}

/// One way to change a signed message.
#[derive(Clone, Debug)]
enum Change {
    Body(usize, u8),
    Method(&'static str),
    Path(String),
    Version(Option<u64>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Change::Body(i, x)),
        method().prop_map(Change::Method),
        path().prop_map(Change::Path),
        any::<Option<u64>>().prop_map(Change::Version),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_signature_verifies_only_for_its_own_message(
        seed in any::<[u8; 32]>(),
        method in method(),
        path in path(),
        version in any::<Option<u64>>(),
        body in prop::collection::vec(any::<u8>(), 0..200),
        now in instant(),
        change in change(),
    ) {
        let identity = Identity::from_seed(seed);
        let message = Message::request(method, &path, &body).with_version(version);
        let received = Received::from(&identity.sign(&message, now));
        let verified = verify(&received, &message, Expect::Key(&identity.public()), now, DEFAULT_MAX_AGE);
        prop_assert_eq!(verified.map(|v| v.key), Ok(Some(identity.public())));

        let mut body2 = body.clone();
        let (mut method2, mut path2, mut version2) = (method, path.clone(), version);
        match change {
            Change::Body(i, x) if !body2.is_empty() => {
                let i = i % body2.len();
                body2[i] ^= x;
            }
            Change::Body(_, x) => body2.push(x),
            Change::Method(m) => method2 = m,
            Change::Path(p) => path2 = p,
            Change::Version(v) => version2 = v,
        }
        let changed = Message::request(method2, &path2, &body2).with_version(version2);
        prop_assume!(changed != message);
        prop_assert!(verify(&received, &changed, Expect::AnyKey, now, DEFAULT_MAX_AGE).is_err());
        // A response is never taken for a request, nor the other way round.
        let response = Message::response(&body).with_version(version);
        prop_assert!(verify(&received, &response, Expect::AnyKey, now, DEFAULT_MAX_AGE).is_err());
    }

    #[test]
    fn another_key_never_verifies(
        seed in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        secret in any::<[u8; 32]>(),
        random in any::<u128>(),
        body in prop::collection::vec(any::<u8>(), 0..100),
        now in instant(),
    ) {
        prop_assume!(seed != other);
        let (signer, stranger) = (Identity::from_seed(seed), Identity::from_seed(other));
        let message = Message::push(Some(7), &body);
        let received = Received::from(&signer.sign(&message, now));
        prop_assert!(matches!(
            verify(&received, &message, Expect::Key(&stranger.public()), now, DEFAULT_MAX_AGE),
            Err(AuthError::WrongKey(_))
        ));
        // The signature of one key under the other's key id.
        let claimed = Received {
            signature_input: received.signature_input.as_ref().map(|s| {
                s.replace(&signer.public().to_string(), &stranger.public().to_string())
            }),
            ..received.clone()
        };
        prop_assert_eq!(
            verify(&claimed, &message, Expect::AnyKey, now, DEFAULT_MAX_AGE),
            Err(AuthError::BadSignature)
        );
        // Session keys: only the registration's own; an Ed25519 signature is no session one.
        let authority = Authority::new(secret);
        let id = authority.keyed_id(random, &signer.public());
        let other_id = authority.keyed_id(random.wrapping_add(1), &signer.public());
        let session = authority.session_key(id);
        let by_session = Received::from(&session.sign(&message, now));
        prop_assert!(verify(&by_session, &message, Expect::Session(&session), now, DEFAULT_MAX_AGE).is_ok());
        let foreign = authority.session_key(other_id);
        prop_assert!(verify(&by_session, &message, Expect::Session(&foreign), now, DEFAULT_MAX_AGE).is_err());
        prop_assert!(verify(&received, &message, Expect::Session(&session), now, DEFAULT_MAX_AGE).is_err());
        prop_assert!(verify(&by_session, &message, Expect::AnyKey, now, DEFAULT_MAX_AGE).is_err());
        // The id tells its key, and no other.
        prop_assert!(authority.holds(id, &signer.public()));
        prop_assert!(!authority.holds(id, &stranger.public()));
        prop_assert!(Authority::is_keyed(id));
        prop_assert!(!Authority::is_keyed(PeerId(uuid::Uuid::from_u128(random & !(0xf << 76)))));
    }

    #[test]
    fn only_signatures_created_within_the_window_verify(
        seed in any::<[u8; 32]>(),
        signed_at in instant(),
        offset_s in -600i64..600,
        window_s in 1u64..300,
    ) {
        let identity = Identity::from_seed(seed);
        let message = Message::request("DELETE", "/peers/x", b"");
        let received = Received::from(&identity.sign(&message, signed_at));
        // `created` is in whole seconds.
        let created_s = signed_at.as_millis() / 1000;
        let now_s = created_s.saturating_add_signed(offset_s);
        let now = Timestamp::from_millis(now_s * 1000 + 999);
        let result = verify(&received, &message, Expect::AnyKey, now, Duration::from_secs(window_s));
        if offset_s.unsigned_abs() <= window_s {
            prop_assert!(result.is_ok(), "{result:?}");
        } else {
            prop_assert!(matches!(result, Err(AuthError::Stale { .. })), "old and future signatures are refused: {result:?}");
        }
    }

    #[test]
    fn mangled_headers_never_verify_and_never_panic(
        seed in any::<[u8; 32]>(),
        now in instant(),
        input in "\\PC{0,120}",
        signature in "\\PC{0,120}",
        cut in any::<usize>(),
    ) {
        let identity = Identity::from_seed(seed);
        let message = Message::request("POST", "/peers/register", b"{}");
        let good = Received::from(&identity.sign(&message, now));
        let random = Received { signature_input: Some(input), signature: Some(signature), ..good.clone() };
        prop_assert!(verify(&random, &message, Expect::AnyKey, now, DEFAULT_MAX_AGE).is_err());
        // Any strict prefix of a good header is refused too.
        let text = good.signature_input.clone().unwrap_or_default();
        let cut = cut % text.len();
        let truncated = Received { signature_input: Some(text[..cut].to_owned()), ..good.clone() };
        prop_assert!(verify(&truncated, &message, Expect::AnyKey, now, DEFAULT_MAX_AGE).is_err());
        let no_digest = Received { content_digest: None, ..good };
        prop_assert_eq!(verify(&no_digest, &message, Expect::AnyKey, now, DEFAULT_MAX_AGE), Err(AuthError::Digest));
    }
}
