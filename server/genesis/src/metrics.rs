//! Counters for `GET /metrics`, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept by genesis; gauges are read from the registry at scrape time.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Successful registrations.
    pub registrations: AtomicU64,
    /// Refused registrations (unreachable, denied, invalid, token).
    pub registrations_refused: AtomicU64,
    /// Accepted pings.
    pub pings: AtomicU64,
    /// Pings of unknown ids (404).
    pub pings_unknown: AtomicU64,
    /// Peers that left.
    pub leaves: AtomicU64,
    /// Peers evicted for silence.
    pub evictions: AtomicU64,
    /// Broadcasts answered with 2xx.
    pub broadcasts_sent: AtomicU64,
    /// Broadcasts that failed or timed out.
    pub broadcasts_failed: AtomicU64,
    /// Broadcasts not sent because a newer round had started.
    pub broadcasts_superseded: AtomicU64,
    /// Broadcast rounds started.
    pub broadcast_rounds: AtomicU64,
    /// Watch streams ended because their client fell behind.
    pub watchers_ended: AtomicU64,
}

/// Adds one to `counter`.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The gauges read from the registry.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Registered peers.
    pub peers: usize,
    /// The list version.
    pub version: u64,
    /// Whether evictions are held.
    pub holding: bool,
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        line(
            "plexus_genesis_peers",
            "gauge",
            "Registered peers.",
            gauges.peers as u64,
        );
        line(
            "plexus_genesis_peers_version",
            "gauge",
            "Version of the peer list.",
            gauges.version,
        );
        line(
            "plexus_genesis_holding",
            "gauge",
            "1 while evictions are held because no peer at all is heard.",
            u64::from(gauges.holding),
        );
        line(
            "plexus_genesis_registrations_total",
            "counter",
            "Successful registrations.",
            get(&self.registrations),
        );
        line(
            "plexus_genesis_registrations_refused_total",
            "counter",
            "Refused registrations.",
            get(&self.registrations_refused),
        );
        line(
            "plexus_genesis_pings_total",
            "counter",
            "Accepted pings.",
            get(&self.pings),
        );
        line(
            "plexus_genesis_watchers_ended_total",
            "counter",
            "Watch streams ended because their client fell more than --watch-buffer changes behind.",
            get(&self.watchers_ended),
        );
        line(
            "plexus_genesis_pings_unknown_total",
            "counter",
            "Pings of unknown peers (404).",
            get(&self.pings_unknown),
        );
        line(
            "plexus_genesis_leaves_total",
            "counter",
            "Peers that deregistered.",
            get(&self.leaves),
        );
        line(
            "plexus_genesis_evictions_total",
            "counter",
            "Peers evicted for silence.",
            get(&self.evictions),
        );
        line(
            "plexus_genesis_broadcast_rounds_total",
            "counter",
            "Broadcast rounds started.",
            get(&self.broadcast_rounds),
        );
        line(
            "plexus_genesis_broadcasts_sent_total",
            "counter",
            "Broadcasts a peer accepted (2xx).",
            get(&self.broadcasts_sent),
        );
        line(
            "plexus_genesis_broadcasts_failed_total",
            "counter",
            "Broadcasts that failed, were refused or timed out.",
            get(&self.broadcasts_failed),
        );
        line(
            "plexus_genesis_broadcasts_superseded_total",
            "counter",
            "Broadcasts skipped because a newer round carries a newer list.",
            get(&self.broadcasts_superseded),
        );
        out
    }
}
