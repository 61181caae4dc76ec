//! What a ping costs genesis's registry, keyless and keyed: the keyed one
//! verifies the request's HMAC under its session key, and its answer
//! carries genesis's signature of the list version (made once per version
//! and second). No I/O; the HTTP layer's cost (headers) is not counted.
//!
//! `cargo run --release -p plexus-core --example ping_cost`; for counts that
//! no other load on the machine changes, run the binary under
//! `valgrind --tool=callgrind` with `PINGS=20000`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use plexus_core::auth::{Identity, Message, Received};
use plexus_core::registry::{Registry, RegistryConfig};
use plexus_core::wire::{Contextionary, PeerUpdate, ping_path};
use plexus_core::{PeerName, PeerUri, Timestamp};

fn main() {
    let pings: usize = std::env::var("PINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let contextionary = Contextionary {
        url: "http://c.invalid".into(),
        hash: "sha256:x".parse().expect("hash"),
    };
    let mut config = RegistryConfig::new(contextionary, 1);
    config.peer_timeout = Duration::from_secs(3600);
    let now = Timestamp(1_700_000_000_000);
    let mut registry = Registry::new(config, now);
    let genesis = Identity::from_seed([1; 32]);
    let mut peers = Vec::new();
    for (i, keyed) in [(0, false), (1, true)] {
        let update = PeerUpdate {
            peer_name: PeerName::new(format!("Peer{i}")).expect("name"),
            peer_uri: PeerUri::new(format!("http://10.0.0.{i}:8081")).expect("uri"),
        };
        let key = keyed.then(|| Identity::from_seed([7; 32]).public());
        let probe = registry.begin_register(update).with_key(key);
        let answer = registry
            .complete_register(probe, Ok(()), now)
            .expect("admitted");
        let id = answer.peer.id;
        let body = br#"{"schemaHash":"abc"}"#.to_vec();
        let received = registry
            .session_key(id)
            .map(|key| key.sign(&Message::request("POST", &ping_path(id), &body), now))
            .map(|s| Received::from(&s))
            .unwrap_or_default();
        peers.push((if keyed { "keyed" } else { "keyless" }, id, body, received));
    }
    let mut times = Vec::new();
    for (what, id, body, received) in &peers {
        let start = Instant::now();
        for _ in 0..pings {
            let keyed = registry
                .handle_signed_ping(*id, "abc", received, body, now)
                .expect("accepted");
            // A keyed ping's answer carries genesis's signed list version.
            black_box(keyed.then(|| registry.ping_answer(&genesis, now)));
        }
        let per = start.elapsed() / pings as u32;
        println!("{what}: {per:?} per ping in the registry ({pings} pings)");
        times.push(per);
    }
    println!(
        "keyed costs {:?} more than keyless per ping",
        times[1].saturating_sub(times[0])
    );
}
