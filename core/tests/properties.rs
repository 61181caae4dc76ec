//! Property tests: the canonical schema hash, and registry invariants under
//! any sequence of events.

use std::collections::BTreeMap;
use std::time::Duration;

use plexus_core::registry::{Registry, RegistryConfig};
use plexus_core::schema::{Class, ClassList, Property, Schema};
use plexus_core::wire::{Contextionary, PeerId, PeerUpdate};
use plexus_core::{PeerName, PeerUri, Timestamp};
use proptest::prelude::*;

fn class_strategy() -> impl Strategy<Value = Class> {
    let property = (
        "[a-z][a-zA-Z0-9]{0,6}",
        prop::sample::select(vec!["string", "int", "text", "number", "boolean", "date"]),
    )
        .prop_map(|(name, t)| Property {
            name,
            data_type: vec![t.to_owned()],
            description: String::new(),
            keywords: Vec::new(),
        });
    (
        "[A-Z][a-zA-Z0-9]{0,6}",
        prop::collection::vec(property, 0..5),
    )
        .prop_map(|(class, mut properties)| {
            properties.sort_by(|a, b| a.name.cmp(&b.name));
            properties.dedup_by(|a, b| a.name == b.name);
            Class {
                class,
                description: String::new(),
                properties,
                keywords: Vec::new(),
            }
        })
}

fn schema_strategy() -> impl Strategy<Value = Schema> {
    prop::collection::vec(class_strategy(), 0..6).prop_map(|mut classes| {
        classes.sort_by(|a, b| a.class.cmp(&b.class));
        classes.dedup_by(|a, b| a.class == b.class);
        let actions = classes.split_off(classes.len() / 2);
        Schema {
            things: ClassList { classes },
            actions: ClassList { classes: actions },
        }
    })
}

proptest! {
    #[test]
    fn the_hash_ignores_the_order_of_classes_and_properties(schema in schema_strategy(), seed in any::<u64>()) {
        let mut shuffled = schema.clone();
        let mut rng = fastrand::Rng::with_seed(seed);
        rng.shuffle(&mut shuffled.things.classes);
        rng.shuffle(&mut shuffled.actions.classes);
        for class in shuffled.things.classes.iter_mut().chain(shuffled.actions.classes.iter_mut()) {
            rng.shuffle(&mut class.properties);
        }
        prop_assert_eq!(schema.hash(), shuffled.hash());
        // The JSON round trip (as a remote peer sees it) keeps the hash.
        let text = serde_json::to_string(&shuffled).expect("serialise");
        let parsed: Schema = serde_json::from_str(&text).expect("parse");
        prop_assert_eq!(parsed.hash(), schema.hash());
    }

    #[test]
    fn different_schemas_have_different_hashes(a in schema_strategy(), b in schema_strategy()) {
        prop_assume!(a.canonical_json() != b.canonical_json());
        prop_assert_ne!(a.hash(), b.hash());
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register { name: usize, reachable: bool },
    Ping { name: usize, hash: u8 },
    Leave { name: usize },
    Advance { ms: u64 },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize, prop::bool::weighted(0.8))
            .prop_map(|(name, reachable)| Op::Register { name, reachable }),
        (0..6usize, 0..3u8).prop_map(|(name, hash)| Op::Ping { name, hash }),
        (0..6usize).prop_map(|name| Op::Leave { name }),
        (0..20_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No sequence of events lists a peer twice, lists one that left or was
    /// replaced, or loses one that was heard within the peer timeout.
    #[test]
    fn the_registry_never_lists_a_peer_twice_nor_loses_a_live_one(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let contextionary = Contextionary { url: "u".into(), hash: "a:b".parse().expect("hash") };
        let timeout = Duration::from_secs(30);
        let mut config = RegistryConfig::new(contextionary, 1);
        config.peer_timeout = timeout;
        let mut now = Timestamp(1_000);
        let mut registry = Registry::new(config, now);
        // What the registry must hold: name → (id, last contact).
        let mut model: BTreeMap<usize, (PeerId, Timestamp)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Register { name, reachable } => {
                    let update = PeerUpdate {
                        peer_name: PeerName::new(format!("P{name}")).expect("name"),
                        peer_uri: PeerUri::new(format!("http://p{name}.local")).expect("uri"),
                    };
                    let probe = registry.begin_register(update);
                    let result = registry.complete_register(probe, if reachable { Ok(()) } else { Err("down".into()) }, now);
                    prop_assert_eq!(result.is_ok(), reachable);
                    if let Ok(response) = result {
                        model.insert(name, (response.peer.id, now));
                    }
                }
                Op::Ping { name, hash } => {
                    if let Some((id, _)) = model.get(&name).copied() {
                        if registry.handle_ping(id, &hash.to_string(), now).is_ok() {
                            model.insert(name, (id, now));
                        } else {
                            model.remove(&name);
                        }
                    }
                }
                Op::Leave { name } => {
                    if let Some((id, _)) = model.remove(&name) {
                        let _ = registry.handle_leave(id, now);
                    }
                }
                Op::Advance { ms } => {
                    now = now + Duration::from_millis(ms);
                    registry.handle_timeout(now);
                    while registry.poll_transmit().is_some() {}
                    while registry.poll_event().is_some() {}
                    // Evicted peers leave the model.
                    model.retain(|_, (id, _)| registry.peer(*id).is_some());
                }
            }
            let names: Vec<String> = registry.peers().map(|p| p.peer_name.to_string()).collect();
            let mut unique = names.clone();
            unique.dedup();
            prop_assert_eq!(&names, &unique, "a name listed twice");
            prop_assert_eq!(names.len(), registry.len());
            for (name, (id, contact)) in &model {
                if now < *contact + timeout {
                    prop_assert!(registry.peer(*id).is_some(), "live peer P{} lost", name);
                }
            }
            for peer in registry.peers() {
                prop_assert!(model.values().any(|(id, _)| *id == peer.id), "{} listed but left or replaced", peer.peer_name);
            }
        }
    }
}
