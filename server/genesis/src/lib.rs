//! `plexus-genesis`: the genesis registry of [`plexus_core::registry`] on
//! HTTP.
//!
//! The shell is thin. One [`Genesis`] holds the [`Registry`] behind a mutex
//! that is only ever held for a handful of registry calls, never across an
//! await. Handlers call `begin_register`/`complete_register`, `handle_ping`
//! and `handle_leave`, then drain the registry's events (to the watch
//! stream, the metrics and the store) before they let go of the lock, so
//! that every consumer sees changes in version order. One driver task calls
//! `handle_timeout` when `poll_timeout` says, drains the broadcasts it
//! produces and sends them, each round concurrently with a per-peer timeout.
//!
//! See `docs/genesis.md` for the HTTP and SSE shapes.

mod config;
pub mod etcd;
mod metrics;
pub mod relay;
mod routes;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures::StreamExt as _;
use plexus_core::Timestamp;
use plexus_core::auth::{Message, SignatureHeaders};
use plexus_core::registry::{Broadcast, Registry};
use plexus_core::wire::{ChangeKind, PEERS_VERSION_HEADER, PeerChange};
use tokio::sync::{Notify, broadcast, watch};

pub use self::config::{Args, Settings};
use self::etcd::{Applied, KeySource, Replication};
pub use self::metrics::Metrics;
pub use self::routes::app;
use self::store::{Change, Committed, Store, Writer};

/// The wall clock, as the protocol sees it.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A running genesis: the registry and everything around it.
#[derive(Debug)]
pub struct Genesis {
    registry: Mutex<Registry>,
    settings: Settings,
    metrics: Metrics,
    /// Wakes the driver when the registry's next deadline may have moved.
    wake: Notify,
    changes: broadcast::Sender<PeerChange>,
    writer: Option<Writer>,
    /// The guarded client of the probe and the pushes.
    outbound: plexus_server::outbound::Outbound,
    shutdown: watch::Sender<bool>,
    /// With `--etcd`: the link to the shared list; the registry mirrors it.
    replication: Option<Arc<Replication>>,
    /// The header values of the registry's shared ping stamp.
    ping_stamp: plexus_server::keys::SharedSignature,
}

impl Genesis {
    /// Starts a genesis with `settings`, restoring its peer list from `store`
    /// if given, and spawns its driver (call inside a tokio runtime).
    pub fn start(settings: Settings, store: Option<Store>) -> anyhow::Result<Arc<Self>> {
        let now = now();
        let registry = match &store {
            Some(store) => {
                let (peers, version) = store.load()?;
                tracing::info!(peers = peers.len(), version, "restored the peer list");
                Registry::restore(settings.registry.clone(), peers, version, now)
            }
            None => Registry::new(settings.registry.clone(), now),
        };
        let genesis = Self::build(settings, registry, store.map(Writer::spawn), None)?;
        tokio::spawn(Arc::clone(&genesis).drive());
        Ok(genesis)
    }

    /// Starts a replica whose list lives in etcd: loads it, then follows
    /// etcd's changes, keeps its own lease and the peers' alive, and pushes
    /// to its share of the peers (call inside a tokio runtime).
    pub async fn start_replica(
        settings: Settings,
        replication: Replication,
    ) -> anyhow::Result<Arc<Self>> {
        let (loaded, at) = replication.load(Vec::new).await?;
        let mut peers = Vec::new();
        let mut reports = Vec::new();
        for applied in loaded {
            match applied {
                Applied::Put { saved, .. } => peers.push(saved),
                Applied::Report(report) => reports.push(report),
                Applied::Removed { .. } => {}
            }
        }
        tracing::info!(
            peers = peers.len(),
            revision = at,
            "loaded the peer list from etcd"
        );
        let mut registry = Registry::mirror_restore(settings.registry.clone(), peers, at, now());
        for report in reports {
            replication.run(&mut registry, |replica, mirror| {
                replica.handle_report(report, mirror)
            });
        }
        let replication = Arc::new(replication);
        let genesis = Self::build(settings, registry, None, Some(Arc::clone(&replication)))?;
        genesis.apply(&replication, Vec::new(), true);
        let from = at + 1;
        tokio::spawn(Arc::clone(&replication).keep_alive_loop());
        tokio::spawn(Arc::clone(&replication).watch_members());
        tokio::spawn(Arc::clone(&genesis).follow(replication, from));
        tokio::spawn(Arc::clone(&genesis).drive());
        Ok(genesis)
    }

    fn build(
        settings: Settings,
        registry: Registry,
        writer: Option<Writer>,
        replication: Option<Arc<Replication>>,
    ) -> anyhow::Result<Arc<Self>> {
        let outbound = plexus_server::outbound::Outbound::new(
            settings.guard.clone(),
            &settings.trust,
            settings.max_answer_bytes,
            settings.probe_timeout.max(settings.broadcast_timeout),
            concat!("plexus-genesis/", env!("CARGO_PKG_VERSION")),
        )?;
        let (changes, _) = broadcast::channel(settings.watch_buffer);
        Ok(Arc::new(Self {
            registry: Mutex::new(registry),
            settings,
            metrics: Metrics::default(),
            wake: Notify::new(),
            changes,
            writer,
            outbound,
            shutdown: watch::channel(false).0,
            replication,
            ping_stamp: Default::default(),
        }))
    }

    /// The link to etcd, when this genesis is a replica.
    pub fn replication(&self) -> Option<&Arc<Replication>> {
        self.replication.as_ref()
    }

    /// Loads the whole list from etcd into the mirror again (after etcd
    /// compacted past the watch): applies the difference; returns the
    /// revision to watch from.
    async fn load(&self, replication: &Replication) -> anyhow::Result<u64> {
        let (applied, at) = replication
            .load(|| self.lock().peers().map(|p| p.id).collect())
            .await?;
        tracing::info!(
            peers = applied.len(),
            revision = at,
            "loaded the peer list from etcd"
        );
        self.apply(replication, applied, true);
        Ok(at + 1)
    }

    /// Applies etcd's changes to the mirror, in order, and hands the
    /// registry the peers this replica takes over when the replicas changed.
    fn apply(&self, replication: &Replication, applied: Vec<Applied>, replicas_changed: bool) {
        let now = now();
        let mut registry = self.lock();
        for change in applied {
            match change {
                Applied::Put {
                    saved,
                    registered,
                    revision,
                } => registry.apply_upsert(saved, registered, revision, now),
                Applied::Removed { id, kind, revision } => {
                    registry.apply_removal(id, kind, revision, now)
                }
                Applied::Report(report) => replication.run(&mut registry, |replica, mirror| {
                    replica.handle_report(report, mirror)
                }),
            }
        }
        if replicas_changed {
            let taken = replication.takeover(&mut registry, now);
            if taken > 0 {
                tracing::info!(
                    peers = taken,
                    replicas = replication.live_replicas(),
                    "took over peers of a replica that left; they get the whole list"
                );
            }
        }
        let _ = self.publish(&mut registry, false);
        self.wake.notify_one();
    }

    /// Follows etcd's changes from revision `from` for as long as the
    /// process runs: a broken watch resumes where it stopped, a compacted
    /// one loads the list again.
    async fn follow(self: Arc<Self>, replication: Arc<Replication>, mut from: u64) {
        let stopped = self.stopped();
        tokio::pin!(stopped);
        loop {
            let watched = replication.watch(from, |applied, replicas_changed| {
                self.apply(&replication, applied, replicas_changed)
            });
            let next = tokio::select! {
                next = watched => next,
                () = &mut stopped => return,
            };
            match next {
                Ok(Some(next)) => from = next,
                Ok(None) => match self.load(&replication).await {
                    Ok(next) => from = next,
                    Err(e) => tracing::warn!(error = %e, "cannot load the list from etcd"),
                },
                Err(e) => tracing::warn!(error = %e, from, "etcd watch lost; resuming"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Its counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops the driver, ends watch streams and stops sending broadcasts.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once [`Genesis::shut_down`] was called.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drains the registry's events to the watch stream, the metrics and the
    /// store. Called with the lock held, so that every consumer sees the
    /// changes in version order; the answer resolves once they are saved.
    fn publish(&self, registry: &mut Registry, wait: bool) -> Option<Committed> {
        let mut changes = Vec::new();
        while let Some(change) = registry.poll_event() {
            match change.kind {
                ChangeKind::Evicted => metrics::inc(&self.metrics.evictions),
                ChangeKind::Left => metrics::inc(&self.metrics.leaves),
                ChangeKind::Joined | ChangeKind::Updated => {}
            }
            tracing::info!(kind = ?change.kind, peer = %change.peer.peer_name, id = %change.peer.id, version = change.version, "peer list changed");
            let _ = self.changes.send(change.clone());
            let deltas = registry.wants_deltas(change.peer.id);
            changes.push(Change { change, deltas });
        }
        if changes.is_empty() {
            return None;
        }
        self.wake.notify_one();
        self.writer.as_ref().and_then(|w| w.submit(changes, wait))
    }

    /// The driver: evictions and broadcast rounds, when the registry says.
    async fn drive(self: Arc<Self>) {
        let stopped = self.stopped();
        tokio::pin!(stopped);
        loop {
            let (round, deadline) = {
                let now = now();
                let mut registry = self.lock();
                // Self-preservation of a replica: its share's leases.
                if let Some(replication) = &self.replication {
                    let kept = replication.run(&mut registry, |replica, mirror| {
                        replica.handle_timeout(mirror, now)
                    });
                    if kept > 0 {
                        tracing::warn!(
                            leases = kept,
                            "no replica heard a peer: keeping this replica's share alive"
                        );
                    }
                }
                registry.handle_timeout(now);
                let _ = self.publish(&mut registry, false);
                let round: Vec<Broadcast> =
                    std::iter::from_fn(|| registry.poll_transmit()).collect();
                let deadline = registry.poll_timeout().map(|at| at.saturating_since(now));
                (round, deadline)
            };
            // A replica pushes to its share of the peers only.
            let round = match &self.replication {
                Some(replication) if !round.is_empty() => {
                    let version = round[0].version;
                    let mine = replication.own_share(round);
                    if mine.is_empty() {
                        self.lock().handle_round_sent(version, now());
                    }
                    mine
                }
                _ => round,
            };
            if !round.is_empty() {
                tokio::spawn(Arc::clone(&self).send_round(round));
            }
            // Wake at least every second, so that a jump of the wall clock
            // is noticed promptly.
            let sleep = deadline
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                () = &mut stopped => return,
            }
        }
    }

    /// Sends one broadcast round, concurrently, each with its own timeout.
    ///
    /// Each body is serialised and signed once per round: the whole list
    /// (only if some peer gets it) and the round's delta (only if some peer
    /// asked for deltas). A broadcast still unsent when the registry calls it
    /// superseded ([`Registry::is_superseded`]) is skipped.
    async fn send_round(self: Arc<Self>, round: Vec<Broadcast>) {
        let Some(first) = round.first() else { return };
        let version = first.version;
        metrics::inc(&self.metrics.broadcast_rounds);
        let full = if round.iter().any(|b| b.delta.is_none()) {
            serde_json::to_vec(&*first.list).map(Bytes::from).map(Some)
        } else {
            Ok(None)
        };
        let delta = round
            .iter()
            .find_map(|b| b.delta.as_deref())
            .map(|d| serde_json::to_vec(d).map(Bytes::from))
            .transpose();
        let (full, delta) = match (full, delta) {
            (Ok(full), Ok(delta)) => (full, delta),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot serialise a broadcast");
                return;
            }
        };
        let signed_at = now();
        let sign = |body: Bytes| {
            let message = Message::push(Some(version), &body);
            let signature = Arc::new(self.settings.identity.sign(&message, signed_at));
            (body, signature)
        };
        let (full, delta) = (full.map(sign), delta.map(sign));
        tracing::debug!(
            version,
            peers = round.len(),
            full_bytes = full.as_ref().map_or(0, |(b, _)| b.len()),
            delta_bytes = delta.as_ref().map_or(0, |(b, _)| b.len()),
            "broadcast round"
        );
        let stopped = self.stopped();
        let sends = futures::stream::iter(round).for_each_concurrent(
            self.settings.broadcast_concurrency,
            |b| {
                let this = Arc::clone(&self);
                let body = if b.delta.is_some() {
                    delta.clone()
                } else {
                    full.clone()
                };
                async move {
                    if let Some((body, signature)) = body {
                        this.send_one(b, body, &signature).await;
                    }
                }
            },
        );
        tokio::select! {
            () = sends => {
                // The next round, held while this one was sent, may go now.
                self.lock().handle_round_sent(version, now());
                self.wake.notify_one();
            }
            () = stopped => {}
        }
    }

    /// The registration probe, `GET {peerUri}/p2p/ping`: `Err` says only
    /// "it answered N" or "it is unreachable" (no port scanner's oracle).
    /// A pooled keep-alive connection that the peer closed just as the
    /// probe went out ("connection closed before message completed", a
    /// reset) is not the peer's fault: the probe is sent again, at most
    /// [`PROBE_RETRIES`] times (each such failure takes a stale connection
    /// out of the pool), all within one `--probe-timeout`.
    pub(crate) async fn probe(&self, url: &str) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.settings.probe_timeout;
        let mut retries = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let sent = self.outbound.client().get(url).timeout(left).send().await;
            return match sent {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("it answered {}", response.status().as_u16())),
                Err(e) if retries < PROBE_RETRIES && cut_off(&e) => {
                    tracing::debug!(url, error = %plexus_server::error_chain(&e), "probe: a pooled connection was closed; again");
                    retries += 1;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(url, error = %plexus_server::error_chain(&e), "probe failed");
                    Err("it is unreachable".to_owned())
                }
            };
        }
    }

    async fn send_one(&self, broadcast: Broadcast, body: Bytes, signature: &SignatureHeaders) {
        if self.lock().is_superseded(&broadcast) {
            metrics::inc(&self.metrics.broadcasts_superseded);
            return;
        }
        let mut request = self
            .outbound
            .client()
            .put(&broadcast.url)
            .timeout(self.settings.broadcast_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(PEERS_VERSION_HEADER, broadcast.version)
            .body(body);
        // Signed by genesis: the join token is not needed (nor sent) to
        // authenticate a push.
        for (name, value) in signature.pairs() {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                metrics::inc(&self.metrics.broadcasts_sent)
            }
            Ok(response) => {
                metrics::inc(&self.metrics.broadcasts_failed);
                tracing::warn!(peer = %broadcast.to, url = %broadcast.url, status = %response.status(), "broadcast refused");
            }
            Err(e) => {
                metrics::inc(&self.metrics.broadcasts_failed);
                tracing::warn!(peer = %broadcast.to, url = %broadcast.url, error = %e, "broadcast failed");
            }
        }
    }
}

/// How many times a probe cut off on a kept-alive connection is sent again.
const PROBE_RETRIES: usize = 2;

/// Whether `error` is a request cut off on a connection that was open (not
/// a refused connect, not a timeout): hyper's "connection closed before
/// message completed" or a reset, which a kept-alive connection the peer
/// just closed gives, and a fresh one would not.
fn cut_off(error: &reqwest::Error) -> bool {
    if error.is_timeout() || error.is_connect() || error.is_redirect() || error.is_body() {
        return false;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_incomplete_message()
                || hyper.is_canceled()
                || std::error::Error::source(hyper).is_some_and(|s| s.is::<std::io::Error>());
        }
        source = cause.source();
    }
    false
}

/// Runs `plexus-genesis` with `args` until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = Settings::from(&args);
    settings.join_token =
        plexus_server::join_token(args.join_token.as_deref(), args.join_token_file.as_deref())?;
    settings.trust = args.outbound.trust.load()?;
    let tls = args.tls.load()?;
    let given = match args.key_path() {
        Some(path) => {
            let (identity, made) = plexus_server::keys::load_or_create(&path)?;
            if made {
                tracing::info!(file = %path.display(), "made a new genesis key");
            }
            settings.set_identity(identity.clone());
            Some(identity)
        }
        None if !args.etcd.is_empty() => None,
        None => {
            tracing::info!(
                "no --key-file and no --state: genesis's key lives in memory; after a restart peers pin the new one when they register again"
            );
            None
        }
    };
    let replication = match args.etcd_config() {
        Some(config) => {
            let replication = Replication::connect(config).await?;
            // Replicas of one prefix share one key: the one in etcd.
            let (identity, source) = replication.agree_key(given).await?;
            match source {
                KeySource::Created => tracing::info!(
                    "this replica wrote the network's key to etcd: every replica of this prefix uses it"
                ),
                KeySource::Loaded => tracing::info!("loaded the network's key from etcd"),
            }
            settings.set_identity(identity);
            Some(replication)
        }
        None => None,
    };
    tracing::info!(key = %settings.identity.public(), "genesis key (give it to peers as --genesis-key)");
    // Bound first: the contextionary's default URL names the address.
    let (listener, local) = plexus_server::bind(args.listen, tls).await?;
    settings.resolve_contextionary(&args, listener.scheme(), local)?;
    tracing::info!(url = %settings.registry.contextionary.url, hash = %settings.registry.contextionary.hash, "the network's contextionary");
    let genesis = match replication {
        Some(replication) => {
            tracing::info!(replica = %replication.me(), etcd = ?args.etcd, "the peer list lives in etcd");
            Genesis::start_replica(settings, replication).await?
        }
        None => {
            let store = args.state.as_deref().map(Store::open).transpose()?;
            if store.is_none() {
                tracing::info!(
                    "no --state: the peer list lives in memory; after a restart peers register again on their next ping's 404"
                );
            }
            Genesis::start(settings, store)?
        }
    };
    let signalled = {
        let genesis = Arc::clone(&genesis);
        async move {
            plexus_server::shutdown_signal().await;
            genesis.shut_down();
        }
    };
    let serve = plexus_server::serve(
        listener,
        app(Arc::clone(&genesis)),
        &args.connection,
        signalled,
    );
    let grace = args.shutdown_grace;
    let stopped = genesis.stopped();
    tokio::select! {
        result = serve => result?,
        () = async { stopped.await; tokio::time::sleep(grace).await } => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; exiting");
        }
    }
    if let Some(replication) = genesis.replication() {
        replication.withdraw().await;
    }
    tracing::info!("stopped");
    Ok(())
}
