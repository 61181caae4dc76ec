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
        let outbound = plexus_server::outbound::Outbound::new(
            settings.guard.clone(),
            settings.max_answer_bytes,
            settings.probe_timeout.max(settings.broadcast_timeout),
            concat!("plexus-genesis/", env!("CARGO_PKG_VERSION")),
        )?;
        let (changes, _) = broadcast::channel(settings.watch_buffer);
        let genesis = Arc::new(Self {
            registry: Mutex::new(registry),
            settings,
            metrics: Metrics::default(),
            wake: Notify::new(),
            changes,
            writer: store.map(Writer::spawn),
            outbound,
            shutdown: watch::channel(false).0,
        });
        tokio::spawn(Arc::clone(&genesis).drive());
        Ok(genesis)
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
                registry.handle_timeout(now);
                let _ = self.publish(&mut registry, false);
                let round: Vec<Broadcast> =
                    std::iter::from_fn(|| registry.poll_transmit()).collect();
                let deadline = registry.poll_timeout().map(|at| at.saturating_since(now));
                (round, deadline)
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

/// Runs `plexus-genesis` with `args` until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = Settings::from(&args);
    settings.join_token =
        plexus_server::join_token(args.join_token.as_deref(), args.join_token_file.as_deref())?;
    match args.key_path() {
        Some(path) => {
            let (identity, made) = plexus_server::keys::load_or_create(&path)?;
            if made {
                tracing::info!(file = %path.display(), "made a new genesis key");
            }
            settings.set_identity(identity);
        }
        None => tracing::info!(
            "no --key-file and no --state: genesis's key lives in memory; after a restart peers pin the new one when they register again"
        ),
    }
    tracing::info!(key = %settings.identity.public(), "genesis key (give it to peers as --genesis-key)");
    let store = args.state.as_deref().map(Store::open).transpose()?;
    if store.is_none() {
        tracing::info!(
            "no --state: the peer list lives in memory; after a restart peers register again on their next ping's 404"
        );
    }
    let genesis = Genesis::start(settings, store)?;
    let (listener, _) = plexus_server::bind(args.listen).await?;
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
    tracing::info!("stopped");
    Ok(())
}
