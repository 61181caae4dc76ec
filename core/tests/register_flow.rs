//! Registration as one flow of steps (probe, store write, reply), and the
//! start of a leave, the same in one genesis and at a replica: driven with virtual instants, the store
//! being a log fed back to the mirror as etcd's watch feeds it.

use std::time::Duration;

use plexus_core::auth::{Authority, Identity, Message, PublicKey, Received};
use plexus_core::registry::{
    CallRefused, LeaveStart, PingStart, RegisterError, RegisterStep, Registered, Registry,
    RegistryConfig,
};
use plexus_core::wire::{PeerId, PeerUpdate, leave_path, ping_path};
use plexus_core::{PeerName, PeerUri, Timestamp};

const T0: Timestamp = Timestamp(1_000_000);

fn config() -> RegistryConfig {
    let contextionary = plexus_core::wire::Contextionary {
        url: "http://contextionary.example/c.bin".into(),
        hash: "sha256:abc".parse().expect("hash"),
    };
    let mut config = RegistryConfig::new(contextionary, 7);
    config.authority = Authority::of(&Identity::from_seed([0x9e; 32]));
    config.peer_timeout = Duration::from_secs(30);
    config
}

fn update(name: &str, host: &str) -> PeerUpdate {
    PeerUpdate {
        peer_name: PeerName::new(name).expect("name"),
        peer_uri: PeerUri::new(format!("http://{host}:8080")).expect("uri"),
    }
}

fn key(seed: u8) -> PublicKey {
    Identity::from_seed([seed; 32]).public()
}

/// A genesis as its shell drives the flow: one in memory, or a replica
/// whose writes go to a log that is fed back to its mirror in order.
struct Genesis {
    registry: Registry,
    log: Vec<plexus_core::registry::Admission>,
    revision: u64,
}

impl Genesis {
    fn memory() -> Self {
        Self {
            registry: Registry::new(config(), T0),
            log: Vec::new(),
            revision: 0,
        }
    }

    fn replica() -> Self {
        Self {
            registry: Registry::mirror(config(), T0),
            log: Vec::new(),
            revision: 0,
        }
    }

    /// Every step of one registration, the probe answering `reached`.
    fn register(
        &mut self,
        update: PeerUpdate,
        key: Option<PublicKey>,
        reached: Result<(), String>,
        now: Timestamp,
    ) -> Result<Registered, RegisterError> {
        let probe = self.registry.register(update, key, true)?;
        assert!(probe.url.ends_with("/p2p/ping"), "{}", probe.url);
        match self.registry.handle_probed(probe, reached, now)? {
            RegisterStep::Reply(reply) => {
                assert!(!self.registry.is_mirror());
                Ok(reply)
            }
            RegisterStep::Write { admission, reply } => {
                assert!(self.registry.is_mirror());
                assert_eq!(admission.response, reply.response);
                self.log.push(*admission);
                Ok(reply)
            }
        }
    }

    /// The store reports its writes (a no-op in memory).
    fn feed(&mut self, now: Timestamp) {
        for admission in std::mem::take(&mut self.log) {
            if let Some(old) = admission.replaces {
                self.revision += 1;
                let kind = plexus_core::wire::ChangeKind::Left;
                self.registry.apply_removal(old, kind, self.revision, now);
            }
            self.revision += 1;
            self.registry
                .apply_upsert(admission.peer, true, self.revision, now);
        }
    }

    fn listed(&self) -> Vec<(String, PeerId)> {
        self.registry
            .peers()
            .map(|p| (p.peer_name.to_string(), p.id))
            .collect()
    }
}

fn both() -> [Genesis; 2] {
    [Genesis::memory(), Genesis::replica()]
}

#[test]
fn one_flow_registers_in_one_genesis_and_at_a_replica_after_the_write() {
    for mut genesis in both() {
        let reply = genesis
            .register(update("PeerA", "a"), None, Ok(()), T0)
            .expect("registered");
        let id = reply.response.peer.id;
        assert_eq!(
            reply.session, None,
            "a keyless registration has no session key"
        );
        // A replica lists it once the store reports the write, not before.
        let before = genesis.listed();
        assert_eq!(before.is_empty(), genesis.registry.is_mirror());
        genesis.feed(T0 + Duration::from_millis(5));
        assert_eq!(genesis.listed(), vec![("PeerA".to_owned(), id)]);
        assert!(genesis.registry.wants_deltas(id), "it asked for deltas");
    }
}

#[test]
fn an_unreachable_peer_is_refused_after_its_probe_and_nothing_is_written() {
    for mut genesis in both() {
        let refused = genesis.register(update("PeerA", "a"), None, Err("refused".into()), T0);
        assert!(
            matches!(refused, Err(RegisterError::Unreachable { .. })),
            "{refused:?}"
        );
        assert!(genesis.log.is_empty());
        genesis.feed(T0);
        assert!(genesis.listed().is_empty());
        assert!(genesis.registry.poll_event().is_none());
    }
}

#[test]
fn a_name_held_by_another_key_is_refused_before_any_probe() {
    for mut genesis in both() {
        let reply = genesis
            .register(update("PeerA", "a"), Some(key(1)), Ok(()), T0)
            .expect("registered");
        genesis.feed(T0);
        assert!(Authority::is_keyed(reply.response.peer.id));
        for other in [Some(key(2)), None] {
            let probe = genesis.registry.register(update("PeerA", "a"), other, true);
            assert_eq!(
                probe,
                Err(RegisterError::NameHeld(
                    PeerName::new("PeerA").expect("name")
                ))
            );
        }
    }
}

#[test]
fn a_name_taken_by_a_key_during_the_probe_is_refused_after_it() {
    for mut genesis in both() {
        // A keyless registration starts its probe while the name is free...
        let probe = genesis
            .registry
            .register(update("PeerA", "a"), None, false)
            .expect("free");
        // ...and a key takes the name meanwhile.
        genesis
            .register(update("PeerA", "b"), Some(key(1)), Ok(()), T0)
            .expect("registered");
        genesis.feed(T0);
        let late = genesis
            .registry
            .handle_probed(probe, Ok(()), T0 + Duration::from_millis(1));
        assert!(matches!(late, Err(RegisterError::NameHeld(_))), "{late:?}");
    }
}

#[test]
fn a_keyed_registration_gets_its_session_key_and_keeps_its_id_at_its_uri() {
    for mut genesis in both() {
        let first = genesis
            .register(update("PeerA", "a"), Some(key(1)), Ok(()), T0)
            .expect("registered");
        genesis.feed(T0);
        let id = first.response.peer.id;
        assert_eq!(first.session, genesis.registry.session_key(id));
        assert!(first.session.is_some());
        // A restart registers again at the same URI: the same id, nothing replaced.
        let later = T0 + Duration::from_secs(5);
        let again = genesis
            .register(update("PeerA", "a"), Some(key(1)), Ok(()), later)
            .expect("registered");
        assert_eq!(again.response.peer.id, id);
        assert!(genesis.log.iter().all(|a| a.replaces.is_none()));
        genesis.feed(later);
        // At another URI: a new id, the old one replaced.
        let moved = genesis
            .register(update("PeerA", "elsewhere"), Some(key(1)), Ok(()), later)
            .expect("registered");
        assert_ne!(moved.response.peer.id, id);
        genesis.feed(later);
        assert_eq!(
            genesis.listed(),
            vec![("PeerA".to_owned(), moved.response.peer.id)]
        );
    }
}

#[test]
fn a_genesis_that_requires_keys_refuses_a_keyless_registration_before_any_probe() {
    for genesis in both() {
        let mut config = config();
        config.require_keys = true;
        let registry = if genesis.registry.is_mirror() {
            Registry::mirror(config, T0)
        } else {
            Registry::new(config, T0)
        };
        assert_eq!(
            registry.register(update("PeerA", "a"), None, true),
            Err(RegisterError::KeyRequired)
        );
        assert!(
            registry
                .register(update("PeerA", "a"), Some(key(1)), true)
                .is_ok()
        );
    }
}

#[test]
fn a_signed_leave_removes_the_peer_in_one_genesis_and_goes_to_the_store_at_a_replica() {
    for mut genesis in both() {
        let reply = genesis
            .register(update("PeerA", "a"), Some(key(1)), Ok(()), T0)
            .expect("registered");
        genesis.feed(T0);
        let id = reply.response.peer.id;
        let session = reply.session.expect("a session key");
        let now = T0 + Duration::from_secs(1);
        // Unsigned, or signed for another path: refused, nothing changes.
        let unsigned = genesis.registry.leave(id, &Received::default(), now);
        assert!(
            matches!(unsigned, Err(CallRefused::Denied(_))),
            "{unsigned:?}"
        );
        let elsewhere = session.sign(&Message::request("DELETE", "/peers/other", b""), now);
        let moved = genesis.registry.leave(id, &(&elsewhere).into(), now);
        assert!(matches!(moved, Err(CallRefused::Denied(_))), "{moved:?}");
        assert_eq!(genesis.listed().len(), 1);
        let signed = session.sign(&Message::request("DELETE", &leave_path(id), b""), now);
        let start = genesis.registry.leave(id, &(&signed).into(), now);
        if genesis.registry.is_mirror() {
            // The store removes it; the mirror follows when told.
            assert_eq!(start, Ok(LeaveStart::AtStore));
            assert_eq!(genesis.listed().len(), 1);
        } else {
            assert_eq!(start, Ok(LeaveStart::Removed));
            assert!(genesis.listed().is_empty());
            // Again: unknown (404).
            let again = genesis.registry.leave(id, &(&signed).into(), now);
            assert!(matches!(again, Err(CallRefused::Unknown(_))), "{again:?}");
        }
    }
}

#[test]
fn a_ping_counts_in_one_genesis_and_goes_to_the_store_at_a_replica() {
    for mut genesis in both() {
        let keyed = genesis
            .register(update("PeerA", "a"), Some(key(1)), Ok(()), T0)
            .expect("registered");
        let keyless = genesis
            .register(update("PeerB", "b"), None, Ok(()), T0)
            .expect("registered");
        genesis.feed(T0);
        let (id, session) = (keyed.response.peer.id, keyed.session.expect("session"));
        let now = T0 + Duration::from_secs(1);
        let body = br#"{"schemaHash":"h2"}"#;
        let check = |genesis: &Genesis, id, received: &Received| {
            genesis
                .registry
                .config()
                .check_ping(id, received, body, now)
        };
        // A keyed ping without its session's signature: 403.
        let unsigned = check(&genesis, id, &Received::default());
        assert!(matches!(
            genesis.registry.ping(unsigned, "h2", now),
            Err(CallRefused::Denied(_))
        ));
        let signed: Received =
            (&session.sign(&Message::request("POST", &ping_path(id), body), now)).into();
        let start = genesis
            .registry
            .ping(check(&genesis, id, &signed), "h2", now);
        let plain = check(&genesis, keyless.response.peer.id, &Received::default());
        let plain = genesis.registry.ping(plain, "h2", now);
        // An id no one registered: unsigned, as a keyless one's.
        let stranger = PeerId(uuid::Uuid::from_u128(99));
        let unknown =
            genesis
                .registry
                .ping(check(&genesis, stranger, &Received::default()), "", now);
        if genesis.registry.is_mirror() {
            assert_eq!(start, Ok(PingStart::AtStore { keyed: true }));
            assert_eq!(plain, Ok(PingStart::AtStore { keyed: false }));
            // The store may hold it (registered a moment ago elsewhere).
            assert_eq!(unknown, Ok(PingStart::AtStore { keyed: false }));
        } else {
            assert_eq!(start, Ok(PingStart::Counted { keyed: true }));
            assert_eq!(plain, Ok(PingStart::Counted { keyed: false }));
            assert_eq!(
                unknown,
                Err(CallRefused::Unknown(plexus_core::registry::UnknownPeer(
                    stranger
                )))
            );
            let hash = genesis.registry.peer(id).map(|p| p.schema_hash.to_string());
            assert_eq!(hash.as_deref(), Some("h2"));
        }
    }
}
