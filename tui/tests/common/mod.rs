//! Fixtures shared by the dashboard's tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use plexus_core::schema::Schema;
use plexus_core::wire::{ChangeKind, Peer, PeerChange, PeerId};
use plexus_core::{PeerName, PeerUri, Timestamp};
use plexus_tui::app::dispatch;
use plexus_tui::model::{Config, Model, Source};
use plexus_tui::update::Message;
use serde_json::json;

/// The instant every test starts at: 2023-11-14 22:13:20 UTC.
pub const T0: u64 = 1_700_000_000_000;

pub fn now(plus_ms: u64) -> Timestamp {
    Timestamp::from_millis(T0 + plus_ms)
}

pub fn config() -> Config {
    Config {
        genesis: "http://127.0.0.1:8111".into(),
        peer: Some("http://127.0.0.1:8081".into()),
        peer_timeout: Duration::from_secs(30),
        demo: None,
    }
}

pub fn peer(n: u128, name: &str, port: u16, age_ms: u64, hash: &str) -> Peer {
    Peer {
        id: PeerId(uuid::Uuid::from_u128(n)),
        peer_name: PeerName::new(name).unwrap(),
        peer_uri: PeerUri::new(format!("http://127.0.0.1:{port}")).unwrap(),
        last_contact_at: Timestamp::from_millis(T0 - age_ms),
        schema_hash: hash.into(),
    }
}

pub const HASH_A: &str = "aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
pub const HASH_B: &str = "bbbb1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
pub const HASH_C: &str = "cccc1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";

pub fn three_peers() -> Vec<Peer> {
    vec![
        peer(1, "PeerA", 8081, 1_200, HASH_A),
        peer(2, "PeerB", 8082, 17_000, HASH_B),
        peer(3, "PeerC", 8083, 26_000, HASH_C),
    ]
}

pub fn city_schema() -> Schema {
    serde_json::from_value(
        json!({"things": {"classes": [{"class": "City", "description": "A city", "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "population", "dataType": ["int"]}]}]}}),
    )
    .unwrap()
}

pub fn country_schema() -> Schema {
    serde_json::from_value(
        json!({"things": {"classes": [{"class": "Country", "properties": [
        {"name": "name", "dataType": ["string"]}]}]}}),
    )
    .unwrap()
}

/// A model that saw the three peers in a watch snapshot at version 3, and
/// their schemas.
pub fn watched_model() -> Model {
    let mut model = Model::new(config(), now(0));
    dispatch(
        &mut model,
        Message::Snapshot {
            version: 3,
            peers: three_peers(),
            source: Source::Watch,
        },
    );
    let _ = model.drain_commands();
    for (name, hash, schema) in [
        ("PeerA", HASH_A, city_schema()),
        ("PeerB", HASH_B, country_schema()),
        ("PeerC", HASH_C, Schema::default()),
    ] {
        dispatch(
            &mut model,
            Message::SchemaLoaded {
                peer: PeerName::new(name).unwrap(),
                hash: hash.into(),
                result: Ok(schema),
            },
        );
    }
    model
}

pub fn change(version: u64, kind: ChangeKind, peer: Peer) -> Message {
    Message::Change(PeerChange {
        version,
        kind,
        peer,
    })
}
