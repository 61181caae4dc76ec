//! Peer names, URIs (and their length bound), schema-hash bounds, durations
//! and contextionary hashes from any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_core::{Limits, PeerName, PeerUri};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(name) = PeerName::new(text) {
        assert!(!name.as_str().is_empty() && name.as_str().len() <= 63);
    }
    if let Ok(uri) = PeerUri::new(text) {
        assert!(uri.as_str().starts_with("http"));
        let _ = uri.join("/p2p/ping");
        let limits = Limits::default();
        assert_eq!(limits.check_uri(&uri).is_ok(), uri.as_str().len() <= limits.max_uri_bytes);
    }
    let limits = Limits::default();
    assert_eq!(
        limits.check_schema_hash(text).is_ok(),
        text.chars().count() <= limits.max_schema_hash_chars
    );
    let _ = plexus_core::time::parse_duration(text);
    let _ = text.parse::<plexus_core::wire::ContextionaryHash>();
    let _ = plexus_core::schema::parse_beacon(text);
});
