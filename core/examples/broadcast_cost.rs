//! Bytes genesis sends for one join and one eviction in a network of N
//! peers: the original whole-list broadcast against Plexus's deltas.
//!
//! Deterministic (no I/O, virtual time): `cargo run --release -p plexus-core --example broadcast_cost`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plexus_core::registry::{Registry, RegistryConfig};
use plexus_core::wire::{Contextionary, PeerId, PeerUpdate};
use plexus_core::{PeerName, PeerUri, Timestamp};

fn update(i: usize) -> PeerUpdate {
    PeerUpdate {
        peer_name: PeerName::new(format!("Peer{i}")).expect("valid name"),
        peer_uri: PeerUri::new(format!("http://10.0.{}.{}:8081", i / 250, i % 250))
            .expect("valid uri"),
    }
}

/// Runs the registry at `now` and once its coalescing window has passed,
/// and returns the bytes of the bodies of the round it sent.
fn round_bytes(registry: &mut Registry, now: Timestamp) -> u64 {
    registry.handle_timeout(now);
    registry.handle_timeout(now + registry.config().broadcast_delay);
    while registry.poll_event().is_some() {}
    let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
    let mut total = 0;
    while let Some(b) = registry.poll_transmit() {
        let shared = match &b.delta {
            Some(d) => Arc::as_ptr(d) as *const () as usize,
            None => Arc::as_ptr(&b.list) as *const () as usize,
        };
        total += *sizes
            .entry(shared)
            .or_insert_with(|| b.body().map_or(0, |v| v.len() as u64));
    }
    registry.handle_round_sent(registry.version(), now);
    total
}

fn cost(n: usize, deltas: bool) -> (u64, u64) {
    let contextionary = Contextionary {
        url: "http://c.invalid".into(),
        hash: "sha256:x".parse().expect("hash"),
    };
    let mut config = RegistryConfig::new(contextionary, 1);
    config.peer_timeout = Duration::from_secs(30);
    let mut now = Timestamp(0);
    let mut registry = Registry::new(config, now);
    let mut ids: Vec<PeerId> = (0..n)
        .map(|i| {
            let probe = registry.begin_register(update(i)).with_deltas(deltas);
            registry
                .complete_register(probe, Ok(()), now)
                .expect("admitted")
                .peer
                .id
        })
        .collect();
    now = now + Duration::from_secs(1);
    round_bytes(&mut registry, now);

    // One join.
    let probe = registry.begin_register(update(n)).with_deltas(deltas);
    ids.push(
        registry
            .complete_register(probe, Ok(()), now)
            .expect("admitted")
            .peer
            .id,
    );
    now = now + Duration::from_secs(1);
    let join = round_bytes(&mut registry, now);

    // One eviction: everyone but peer 0 pings, then peer 0's timeout passes.
    now = now + Duration::from_secs(20);
    for id in &ids[1..] {
        registry.handle_ping(*id, "", now).expect("known");
    }
    round_bytes(&mut registry, now + Duration::from_millis(100));
    let evict = round_bytes(
        &mut registry,
        Timestamp(30_000) + Duration::from_millis(100),
    );
    assert_eq!(registry.len(), n, "exactly one peer evicted");
    (join, evict)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / f64::from(1 << 30)),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn main() {
    println!(
        "| peers | join: whole list | join: delta | eviction: whole list | eviction: delta | join ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [100, 1_000, 10_000] {
        let (full_join, full_evict) = cost(n, false);
        let (delta_join, delta_evict) = cost(n, true);
        println!(
            "| {n} | {} | {} | {} | {} | {:.0}× |",
            human(full_join),
            human(delta_join),
            human(full_evict),
            human(delta_evict),
            full_join as f64 / delta_join as f64
        );
    }
}
