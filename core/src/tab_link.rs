//! A browser tab's link to the relay: when to open its socket again after it
//! dropped (genesis restarted, the network went away, the relay closed it).
//!
//! [`TabLink`] is sans-IO, in the shape of the other machines: the tab
//! reports [`TabLink::handle_closed`] when its socket ends,
//! [`TabLink::handle_welcomed`] / [`TabLink::handle_failed`] for each
//! [`LinkAction::Connect`] it performed (a new socket and a hello that proves
//! its key again), and [`TabLink::handle_timeout`] when
//! [`TabLink::poll_timeout`] is due; after each call it drains
//! [`TabLink::poll_action`] and [`TabLink::poll_event`].
//!
//! The membership is not this machine's business: the tab's registration
//! stays as it is while the socket is down (genesis's probes and pushes fail
//! meanwhile), and if genesis dropped it, the next ping's 404 makes
//! [`crate::membership::Membership`] register again, as for any peer.
//!
//! # Bounds
//!
//! Reconnects wait [`crate::time::backoff`] (from `retry_min`, doubling up
//! to `retry_max`, with full jitter). A link counts its reconnects since it
//! last stayed up for `retry_max`; past `max_attempts` of them (failed
//! attempts and short-lived connections alike) it gives up for good. So a
//! tab whose socket keeps being replaced (the same key open in two tabs)
//! stops after a bounded number of tries instead of flapping forever.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::{Timestamp, backoff};

/// How a tab reconnects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// The first delay before reconnecting; it doubles up to `retry_max`.
    pub retry_min: Duration,
    /// The longest delay, and how long a connection must last to count as
    /// stable (which forgets the earlier reconnects).
    pub retry_max: Duration,
    /// Reconnects (attempts that failed, and connections that dropped again
    /// before they were stable) before giving up; 0 never reconnects.
    pub max_attempts: u32,
    /// Seed of the jitter, so that tests are reproducible.
    pub seed: u64,
}

impl LinkConfig {
    /// The defaults: from 500 ms up to 30 s, 10 attempts.
    pub fn new(seed: u64) -> Self {
        Self {
            retry_min: DEFAULT_RETRY_MIN,
            retry_max: DEFAULT_RETRY_MAX,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            seed,
        }
    }
}

/// Default of [`LinkConfig::retry_min`].
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_millis(500);
/// Default of [`LinkConfig::retry_max`].
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
/// Default of [`LinkConfig::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Where the link stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The socket is open and the relay welcomed the tab.
    Connected {
        /// Since when.
        since: Timestamp,
        /// Reconnects since the link was last stable (0 after the first join).
        attempts: u32,
    },
    /// The socket is down; the next attempt is at `retry_at`.
    Waiting {
        /// Reconnects so far (this next one not included).
        attempts: u32,
        /// When to try.
        retry_at: Timestamp,
    },
    /// A [`LinkAction::Connect`] is in flight.
    Connecting {
        /// Reconnects so far (this one not included).
        attempts: u32,
    },
    /// Gave up after `max_attempts` reconnects (or reconnecting is off).
    GaveUp,
    /// The tab stopped (left or closed): no more sockets.
    Stopped,
}

/// What the tab must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Open a new socket to the relay and prove the key; then report
    /// [`TabLink::handle_welcomed`] or [`TabLink::handle_failed`].
    Connect,
}

/// What happened, for the page to tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The socket is down (it dropped, or a reconnect failed); the next
    /// attempt is at `retry_at`.
    Retrying {
        /// Reconnects so far (the next one not included).
        attempts: u32,
        /// When the next attempt is.
        retry_at: Timestamp,
    },
    /// The relay welcomed the tab again.
    Reconnected {
        /// Reconnects since the link was last stable, this one included.
        attempts: u32,
    },
    /// No more reconnects: the tab is unreachable until it joins again
    /// (genesis evicts it after its peer timeout).
    GaveUp {
        /// Reconnects tried.
        attempts: u32,
    },
}

/// The reconnect machine of one tab.
#[derive(Debug)]
pub struct TabLink {
    config: LinkConfig,
    state: LinkState,
    rng: fastrand::Rng,
    actions: VecDeque<LinkAction>,
    events: VecDeque<LinkEvent>,
}

impl TabLink {
    /// A link whose first socket was just welcomed at `now`.
    pub fn new(config: LinkConfig, now: Timestamp) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            state: LinkState::Connected {
                since: now,
                attempts: 0,
            },
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Where it stands.
    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// Whether the socket is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, LinkState::Connected { .. })
    }

    /// The socket ended (closed by either side, or failed). Ignored unless
    /// connected: a late close of a replaced socket changes nothing.
    pub fn handle_closed(&mut self, now: Timestamp) {
        let LinkState::Connected { since, attempts } = self.state else {
            return;
        };
        let stable = now.saturating_since(since) >= self.config.retry_max;
        self.wait(if stable { 0 } else { attempts }, now);
    }

    /// The relay welcomed the socket of the [`LinkAction::Connect`] in flight.
    pub fn handle_welcomed(&mut self, now: Timestamp) {
        let LinkState::Connecting { attempts } = self.state else {
            return;
        };
        let attempts = attempts + 1;
        self.state = LinkState::Connected {
            since: now,
            attempts,
        };
        self.events.push_back(LinkEvent::Reconnected { attempts });
    }

    /// The [`LinkAction::Connect`] in flight failed (no socket, the relay
    /// refused the hello, or it did not answer in time).
    pub fn handle_failed(&mut self, now: Timestamp) {
        let LinkState::Connecting { attempts } = self.state else {
            return;
        };
        self.wait(attempts + 1, now);
    }

    /// Time passed: a due reconnect starts.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let LinkState::Waiting { attempts, retry_at } = self.state
            && retry_at <= now
        {
            self.state = LinkState::Connecting { attempts };
            self.actions.push_back(LinkAction::Connect);
        }
    }

    /// The tab stopped: nothing more to do, ever.
    pub fn handle_stop(&mut self) {
        self.state = LinkState::Stopped;
        self.actions.clear();
    }

    /// The next thing to do. Changes after every `handle_*` call.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<LinkAction> {
        self.actions.pop_front()
    }

    /// The next thing that happened. Changes after every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`TabLink::handle_timeout`] has something to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            LinkState::Waiting { retry_at, .. } => Some(retry_at),
            _ => None,
        }
    }

    fn wait(&mut self, attempts: u32, now: Timestamp) {
        if attempts >= self.config.max_attempts {
            self.state = LinkState::GaveUp;
            self.events.push_back(LinkEvent::GaveUp { attempts });
            return;
        }
        let delay = backoff(
            self.config.retry_min,
            self.config.retry_max,
            attempts,
            self.rng.f64(),
        );
        let retry_at = now + delay;
        self.state = LinkState::Waiting { attempts, retry_at };
        self.events
            .push_back(LinkEvent::Retrying { attempts, retry_at });
    }
}

#[cfg(test)]
#[path = "tab_link_tests.rs"]
mod tests;
