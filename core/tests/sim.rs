//! Whole-network properties, in the deterministic simulator.

use std::time::Duration;

use plexus_core::sim::{Sim, SimConfig};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn every_live_peer_converges_to_the_same_list() {
    let mut sim = Sim::new(SimConfig::new(50, 1));
    sim.run_for(secs(30));
    assert_eq!(sim.registry().map(|r| r.len()), Some(50));
    assert!(sim.converged());
    // Every peer also cached every other peer's schema, once per hash.
    for i in 0..50 {
        let view = sim.membership(i).view();
        assert!(view.values().all(|p| p.is_cached()), "peer {i}");
    }
}

#[test]
fn a_dead_peer_is_evicted_and_everyone_is_told_and_no_one_else_goes() {
    let mut sim = Sim::new(SimConfig::new(20, 2));
    sim.run_for(secs(20));
    sim.kill(7);
    let id = sim.membership(7).id().expect("registered");
    let last_contact = sim
        .registry()
        .and_then(|r| r.peer(id))
        .expect("listed")
        .last_contact_at;
    let deadline = last_contact + secs(30);
    sim.run_until(deadline - Duration::from_millis(1));
    assert!(
        sim.registry_names().contains(&Sim::name(7)),
        "not before the timeout"
    );
    sim.run_until(deadline + Duration::from_millis(50));
    let names = sim.registry_names();
    assert_eq!(names.len(), 19, "no false eviction: {names:?}");
    assert!(!names.contains(&Sim::name(7)));
    assert!(sim.converged());
    assert!(
        (0..20)
            .filter(|&i| i != 7)
            .all(|i| !sim.membership(i).view().contains_key(&Sim::name(7)))
    );
}

#[test]
fn graceful_leave_is_told_at_once() {
    let mut sim = Sim::new(SimConfig::new(5, 3));
    sim.run_for(secs(5));
    sim.stop(2);
    sim.run_for(Duration::from_millis(100));
    assert!(!sim.registry_names().contains(&Sim::name(2)));
    assert!(sim.converged());
}

#[test]
fn a_genesis_restart_brings_each_peer_back_once_without_a_storm() {
    let n = 100;
    let mut config = SimConfig::new(n, 4);
    config.ping_interval = secs(10);
    let mut sim = Sim::new(config);
    sim.run_for(secs(30));
    sim.reset_stats();
    sim.restart_genesis();
    // Pings are jittered, so the 404s and the registrations they cause are spread.
    sim.run_for(secs(1));
    let first_second = sim.stats.registrations;
    assert!(
        first_second < n as u64 / 4,
        "{first_second} of {n} registered again within 1 s: a storm"
    );
    sim.run_for(secs(12));
    assert_eq!(sim.registry().map(|r| r.len()), Some(n));
    assert_eq!(
        sim.stats.registrations, n as u64,
        "each peer registers again exactly once"
    );
    sim.run_for(secs(12));
    assert!(sim.converged());
}

#[test]
fn with_lost_messages_views_still_converge() {
    let mut config = SimConfig::new(30, 5);
    config.loss = 0.05;
    let mut sim = Sim::new(config);
    sim.run_for(secs(60));
    sim.kill(3);
    sim.run_for(secs(120));
    assert!(sim.stats.lost > 0, "the simulation lost messages");
    assert_eq!(sim.registry().map(|r| r.len()), Some(29));
    assert!(
        sim.converged(),
        "a peer that missed a broadcast fetched the list"
    );
}

#[test]
fn a_schema_change_is_downloaded_once_by_every_other_peer() {
    let mut sim = Sim::new(SimConfig::new(10, 6));
    sim.run_for(secs(20));
    sim.change_schema(4, "hash-4-1");
    sim.run_for(secs(1));
    for i in (0..10).filter(|&i| i != 4) {
        let remote = &sim.membership(i).view()[&Sim::name(4)];
        assert_eq!(remote.schema_hash, "hash-4-1");
        assert!(remote.is_cached(), "peer {i}");
    }
}

#[test]
fn the_simulation_is_deterministic() {
    let run = || {
        let mut config = SimConfig::new(25, 9);
        config.loss = 0.02;
        let mut sim = Sim::new(config);
        sim.run_for(secs(40));
        sim.kill(1);
        sim.run_for(secs(40));
        (sim.stats.clone(), sim.registry_names())
    };
    assert_eq!(run(), run());
}

#[test]
fn peers_of_the_original_protocol_converge_too() {
    let mut config = SimConfig::new(20, 10);
    config.deltas = false;
    config.loss = 0.02;
    let mut sim = Sim::new(config);
    sim.run_for(secs(30));
    sim.kill(5);
    sim.run_for(secs(60));
    assert_eq!(sim.registry().map(|r| r.len()), Some(19));
    assert!(sim.converged());
}

/// Bytes genesis sends for one join into a settled network of `n` peers.
fn bytes_per_join(n: usize, deltas: bool) -> u64 {
    let mut config = SimConfig::new(n, 11);
    config.deltas = deltas;
    let mut sim = Sim::new(config);
    sim.run_for(secs(15));
    sim.reset_stats();
    sim.join();
    sim.run_for(Duration::from_millis(100));
    assert!(sim.converged());
    sim.stats.broadcast_bytes
}

#[test]
fn with_deltas_a_join_costs_genesis_linear_bytes_not_quadratic() {
    let (small, large) = (50, 200);
    let delta_ratio = bytes_per_join(large, true) as f64 / bytes_per_join(small, true) as f64;
    let full_ratio = bytes_per_join(large, false) as f64 / bytes_per_join(small, false) as f64;
    // 4× the peers: about 4× the bytes with deltas, about 16× with whole lists.
    assert!(
        delta_ratio < 6.0,
        "delta cost grew {delta_ratio:.1}× for 4× peers"
    );
    assert!(
        full_ratio > 12.0,
        "whole-list cost grew {full_ratio:.1}× for 4× peers"
    );
}

// ---- replicas over a shared store ----

use plexus_core::replica_sim::{ReplicaSim, ReplicaSimConfig};

#[test]
fn replicas_over_a_store_lose_no_live_peer_and_no_push_when_one_is_killed() {
    let config = ReplicaSimConfig::new(3, 100, 7);
    let (peer_timeout, replica_ttl) = (config.registry.peer_timeout, config.replica_ttl);
    let mut sim = ReplicaSim::new(config);
    sim.run_for(secs(10));
    for r in 0..3 {
        assert_eq!(sim.mirror(r).len(), 100, "replica {r}");
        assert!(sim.converged(r), "replica {r}");
    }
    assert!(sim.evicted().is_empty());
    // Every replica's last_contact_at follows the pings, wherever they went.
    let now = sim.now();
    for r in 0..3 {
        for peer in sim.mirror(r).peers() {
            let age = now.saturating_since(peer.last_contact_at);
            assert!(
                age <= secs(2),
                "replica {r}: {} last heard {age:?} ago",
                peer.peer_name
            );
        }
    }
    // Steady state: pings cost keep-alives, not writes.
    let (writes, pings) = (sim.store_writes(), sim.stats.pings);
    sim.run_for(secs(10));
    let per_ping = (sim.store_writes() - writes) as f64 / (sim.stats.pings - pings).max(1) as f64;
    eprintln!("store writes per ping at steady state: {per_ping:.4}");
    assert!(per_ping < 0.05, "{per_ping}");

    // kill -9 replica 0, then a peer joins (its first replica is the dead one).
    sim.kill_replica(0);
    let killed = sim.now();
    sim.run_for(Duration::from_millis(1));
    let late = sim.join();
    // Within the takeover bound every live peer knows the newcomer, those
    // that replica 0 pushed to included, and it knows them.
    sim.run_until(killed + replica_ttl + secs(2));
    for r in 1..3 {
        assert_eq!(sim.mirror(r).len(), 101, "replica {r}");
        assert!(sim.converged(r), "replica {r}: a push was lost");
    }
    assert_eq!(sim.membership(late).view().len(), 100);
    // Pushed, not only fetched after a ping told of the gap: every peer got
    // a push of the latest version, from whichever replica owns it now.
    let version = sim.mirror(1).version();
    for i in 0..=late {
        let pushed = sim.last_push(i).map(|(_, v)| v);
        assert_eq!(pushed, Some(version), "peer {i} was not pushed the join");
    }
    // Past several peer timeouts no one was evicted.
    sim.run_for(peer_timeout * 4);
    assert!(sim.evicted().is_empty(), "{:?}", sim.evicted());
    assert_eq!(sim.stored(), 101);
    assert!(sim.converged(1) && sim.converged(2));
}

#[test]
fn a_dead_peer_is_evicted_by_the_store_in_time_and_every_replica_tells_its_share() {
    let config = ReplicaSimConfig::new(2, 20, 8);
    let peer_timeout = config.registry.peer_timeout;
    let mut sim = ReplicaSim::new(config);
    sim.run_for(secs(5));
    let id = sim.membership(4).id().expect("registered");
    sim.kill_peer(4);
    let killed = sim.now();
    sim.run_until(killed + peer_timeout + secs(1) + Duration::from_millis(100));
    assert_eq!(sim.evicted(), [id], "only the dead one");
    for r in 0..2 {
        assert_eq!(sim.mirror(r).len(), 19);
        assert!(sim.converged(r));
    }
}
