//! The fan-out of Network queries: which Local query goes to which peer
//! when, and what became of each.
//!
//! One [`Fanout`] serves every Network query of a host (a native peer, a
//! tab, a browser client). A query is a list of [`Ask`]s (a peer and the
//! Local query text for it) with a per-peer time; the machine decides:
//!
//! - at most [`FanoutLimits::per_query`] requests of one query at once, and
//!   at most [`FanoutLimits::per_peer`] requests to one peer at once across
//!   all of the host's queries (the oldest query's waiting asks go first
//!   when a request ends);
//! - each ask has until the query's deadline (`start + timeout`), whether
//!   it waits or is in flight; at the deadline it is [`Outcome::TimedOut`];
//! - an answer is decoded once, here ([`Fanout::handle_reply`]): a 2xx JSON
//!   GraphQL response, or why not.
//!
//! Merging the outcomes is a separate step that depends on the query's form
//! ([`crate::network::merge`] for Get and GetMeta), so another form can
//! merge the same outcomes its own way.
//!
//! The shape is that of the other machines: [`Fanout::start`],
//! `handle_*(…, now)` and [`Fanout::handle_timeout`] in;
//! [`Fanout::poll_transmit`], [`Fanout::poll_event`] and
//! [`Fanout::poll_timeout`] out. After any input, drain `poll_transmit`
//! (perform each: POST its [`Transmit::body`] to the peer's `/v1/graphql`,
//! or run it on the host's own engine when the peer is the host, and bound
//! the I/O by [`Transmit::deadline`]), then `poll_event`, then sleep until
//! `poll_timeout`. No clock, no I/O.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::names::PeerName;
use crate::time::Timestamp;

/// How many requests may be in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutLimits {
    /// Requests of one query at once (`--network-max-per-query`).
    pub per_query: usize,
    /// Requests to one peer at once, across all queries (`--network-max-per-peer`).
    pub per_peer: usize,
}

impl Default for FanoutLimits {
    fn default() -> Self {
        FanoutLimits {
            per_query: 32,
            per_peer: 8,
        }
    }
}

/// The per-peer time of a query: `asked` (its `networkTimeout`, in ms) or
/// `default`, never more than `ceiling`, at least 1 ms.
pub fn peer_timeout(asked: Option<u64>, default: Duration, ceiling: Duration) -> Duration {
    asked
        .map_or(default, Duration::from_millis)
        .min(ceiling)
        .max(Duration::from_millis(1))
}

/// One request of a query: ask `peer` the Local query `query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The peer to ask.
    pub peer: PeerName,
    /// The Local query text.
    pub query: String,
}

/// A query of the fan-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// One ask of one query: its index in the query's asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AskId {
    /// The query.
    pub query: QueryId,
    /// The index of the ask in it.
    pub index: usize,
}

/// A request to perform now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Which ask it is: pass it back with the answer.
    pub id: AskId,
    /// The peer to ask.
    pub peer: PeerName,
    /// The Local query text (the host's own part runs it on its engine).
    pub query: String,
    /// When the answer is no longer wanted: the host stops its I/O then.
    pub deadline: Timestamp,
}

impl Transmit {
    /// The body to `POST {peer}/v1/graphql` (`Content-Type` and `Accept`:
    /// `application/json`).
    pub fn body(&self) -> String {
        json!({ "query": self.query }).to_string()
    }
}

/// What became of one ask.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The peer answered this GraphQL response (an object; its parts are
    /// the merger's to judge).
    Answered(Json),
    /// No usable answer: why (connection refused, a bad status, not JSON).
    Failed(String),
    /// No answer by the query's deadline.
    TimedOut {
        /// The query's per-peer time.
        after: Duration,
        /// Whether the request had been sent (else it waited for the
        /// per-peer bound the whole time).
        sent: bool,
    },
}

impl Outcome {
    /// Why there is no answer, as a per-peer error says it; `None` when answered.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Answered(_) => None,
            Outcome::Failed(reason) => Some(reason.clone()),
            Outcome::TimedOut { after, sent: true } => Some(format!("no answer within {after:?}")),
            Outcome::TimedOut { after, sent: false } => Some(format!(
                "not asked within {after:?}: as many requests to it as allowed were in flight"
            )),
        }
    }
}

/// A query is over: one outcome per ask, in the order of its asks.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    /// The query.
    pub query: QueryId,
    /// Its outcomes.
    pub outcomes: Vec<Outcome>,
}

enum AskState {
    Waiting(Ask),
    InFlight(PeerName),
    Over(Outcome),
}

struct Query {
    asks: Vec<AskState>,
    in_flight: usize,
    timeout: Duration,
    deadline: Timestamp,
}

/// The fan-out of one host: its queries, their requests in flight, and the
/// requests in flight to each peer.
pub struct Fanout {
    limits: FanoutLimits,
    next: u64,
    queries: BTreeMap<QueryId, Query>,
    /// Requests in flight to each peer (of live and of cancelled queries).
    per_peer: BTreeMap<PeerName, usize>,
    /// Requests of cancelled queries still in flight: they count against
    /// their peer's bound until answered or their deadline.
    orphans: BTreeMap<AskId, (PeerName, Timestamp)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Done>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("limits", &self.limits)
            .field("queries", &self.queries.len())
            .field("per_peer", &self.per_peer)
            .finish()
    }
}

impl Fanout {
    /// A fan-out with these bounds (each at least 1).
    pub fn new(limits: FanoutLimits) -> Self {
        Fanout {
            limits: FanoutLimits {
                per_query: limits.per_query.max(1),
                per_peer: limits.per_peer.max(1),
            },
            next: 0,
            queries: BTreeMap::new(),
            per_peer: BTreeMap::new(),
            orphans: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> FanoutLimits {
        self.limits
    }

    /// Starts a query: each ask has `timeout` from `now`. Its transmits
    /// (those the bounds allow now) are ready at once; a query without
    /// asks is [`Done`] at once.
    pub fn start(&mut self, asks: Vec<Ask>, timeout: Duration, now: Timestamp) -> QueryId {
        let id = QueryId(self.next);
        self.next += 1;
        self.queries.insert(
            id,
            Query {
                asks: asks.into_iter().map(AskState::Waiting).collect(),
                in_flight: 0,
                timeout,
                deadline: now + timeout,
            },
        );
        self.pump();
        self.finish(id);
        id
    }

    /// The peer answered `id` with `status` and `body`: decoded here.
    pub fn handle_reply(&mut self, id: AskId, status: u16, body: &[u8], now: Timestamp) {
        self.handle_outcome(id, decode(status, body), now);
    }

    /// The host's own engine answered `id` with this GraphQL response.
    pub fn handle_response(&mut self, id: AskId, response: Json, now: Timestamp) {
        self.handle_outcome(id, Outcome::Answered(response), now);
    }

    /// The request `id` failed without an answer (no connection, the
    /// answer was too large or cut off): why.
    pub fn handle_failure(&mut self, id: AskId, reason: String, now: Timestamp) {
        self.handle_outcome(id, Outcome::Failed(reason), now);
    }

    fn handle_outcome(&mut self, id: AskId, outcome: Outcome, now: Timestamp) {
        if let Some((peer, _)) = self.orphans.remove(&id) {
            self.release(&peer);
        } else if let Some(query) = self.queries.get_mut(&id.query)
            && let Some(ask) = query.asks.get_mut(id.index)
            && let AskState::InFlight(peer) = ask
        {
            let peer = peer.clone();
            *ask = AskState::Over(outcome);
            query.in_flight -= 1;
            self.release(&peer);
        }
        // Else a late answer (the ask timed out) or an unknown id: nothing.
        self.handle_timeout(now);
        self.pump();
        self.finish(id.query);
    }

    /// The caller no longer wants query `id`: its waiting asks are dropped,
    /// and its requests in flight count against their peers' bound until
    /// they end (their answer or failure) or their deadline. No [`Done`].
    pub fn cancel(&mut self, id: QueryId) {
        let Some(query) = self.queries.remove(&id) else {
            return;
        };
        for (index, ask) in query.asks.into_iter().enumerate() {
            if let AskState::InFlight(peer) = ask {
                self.orphans
                    .insert(AskId { query: id, index }, (peer, query.deadline));
            }
        }
        self.pump();
    }

    /// Time has come to `now`: asks past their deadline time out.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let expired: Vec<AskId> = self
            .orphans
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((peer, _)) = self.orphans.remove(&id) {
                self.release(&peer);
            }
        }
        let due: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(query) = self.queries.get_mut(&id) else {
                continue;
            };
            let mut freed = Vec::new();
            for ask in &mut query.asks {
                let sent = match ask {
                    AskState::Over(_) => continue,
                    AskState::Waiting(_) => false,
                    AskState::InFlight(peer) => {
                        freed.push(peer.clone());
                        true
                    }
                };
                *ask = AskState::Over(Outcome::TimedOut {
                    after: query.timeout,
                    sent,
                });
            }
            query.in_flight = 0;
            for peer in freed {
                self.release(&peer);
            }
            self.finish(id);
        }
        self.pump();
    }

    /// The next request to perform. Changes after [`Fanout::start`] and
    /// every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next query that is over. Changes after [`Fanout::start`] and
    /// every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Done> {
        self.events.pop_front()
    }

    /// When [`Fanout::handle_timeout`] is due: the earliest deadline of a
    /// query or of a cancelled query's request in flight.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let queries = self.queries.values().map(|q| q.deadline);
        let orphans = self.orphans.values().map(|(_, d)| *d);
        queries.chain(orphans).min()
    }

    /// Queries not over yet.
    pub fn queries(&self) -> usize {
        self.queries.len()
    }

    /// Requests in flight to `peer` now.
    pub fn in_flight(&self, peer: &PeerName) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    fn release(&mut self, peer: &PeerName) {
        if let Some(n) = self.per_peer.get_mut(peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(peer);
            }
        }
    }

    /// Sends every waiting ask the bounds allow, oldest query first.
    fn pump(&mut self) {
        let limits = self.limits;
        for (&qid, query) in &mut self.queries {
            if query.in_flight >= limits.per_query {
                continue;
            }
            for (index, ask) in query.asks.iter_mut().enumerate() {
                if query.in_flight >= limits.per_query {
                    break;
                }
                let AskState::Waiting(waiting) = ask else {
                    continue;
                };
                let count = self.per_peer.entry(waiting.peer.clone()).or_insert(0);
                if *count >= limits.per_peer {
                    continue;
                }
                *count += 1;
                query.in_flight += 1;
                let peer = waiting.peer.clone();
                let AskState::Waiting(Ask { query: text, .. }) =
                    std::mem::replace(ask, AskState::InFlight(peer.clone()))
                else {
                    continue;
                };
                self.transmits.push_back(Transmit {
                    id: AskId { query: qid, index },
                    peer,
                    query: text,
                    deadline: query.deadline,
                });
            }
        }
        self.per_peer.retain(|_, n| *n > 0);
    }

    /// Emits `id`'s [`Done`] when every ask of it is over.
    fn finish(&mut self, id: QueryId) {
        let over = self
            .queries
            .get(&id)
            .is_some_and(|q| q.asks.iter().all(|a| matches!(a, AskState::Over(_))));
        if !over {
            return;
        }
        let Some(query) = self.queries.remove(&id) else {
            return;
        };
        let outcomes = query
            .asks
            .into_iter()
            .map(|a| match a {
                AskState::Over(outcome) => outcome,
                _ => Outcome::Failed("internal: the ask did not end".into()),
            })
            .collect();
        self.events.push_back(Done {
            query: id,
            outcomes,
        });
    }
}

/// What an answer of `POST /v1/graphql` means: a 2xx whose body is a JSON
/// object is a GraphQL response; anything else is why not.
pub fn decode(status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return Outcome::Failed(format!("it answered {status}"));
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(response @ Json::Object(_)) => Outcome::Answered(response),
        Ok(_) => Outcome::Failed("its answer is not a GraphQL response (not an object)".into()),
        Err(e) => Outcome::Failed(format!("its answer is not JSON: {e}")),
    }
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
