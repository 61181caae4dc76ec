//! Network queries: the engine plans them ([`plexus_graphql::Engine::begin`]),
//! the core's [`Fanout`] decides which Local query goes to which peer when
//! (at most `--network-max-per-query` of one query at once, at most
//! `--network-max-per-peer` to one peer across all queries, each peer
//! within the query's time), and [`plexus_core::network::merge`] merges.
//! This module only moves bytes: one task owns the machine, performs its
//! transmits (a remote peer through the outbound guard, this peer's own
//! part as an ordinary Local query on its query slots) and feeds the
//! answers back. At most `--network-max-in-flight` Network queries are
//! asked at once; one more waits for its turn within its per-peer time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use plexus_core::fanout::{
    Ask, AskId, Fanout, FanoutLimits, Outcome, QueryId, Transmit, peer_timeout,
};
use plexus_core::network::{Merged, NetworkPlan, merge};
use plexus_core::{PeerName, PeerUri};
use plexus_graphql::GraphQLRequest;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::{NetworkHandle, Peers, View, now};
use crate::NetworkAsk;
use plexus_server::error_chain;

/// The bounds of Network queries (docs/peer.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AskLimits {
    /// Network queries asked at once (`--network-max-in-flight`).
    pub queries: usize,
    /// Requests per query and per peer (`--network-max-per-query`, `--network-max-per-peer`).
    pub fanout: FanoutLimits,
    /// The per-peer time of a query without `networkTimeout` (`--query-timeout`).
    pub default_timeout: Duration,
    /// The most per-peer time a query may ask for (`--network-max-timeout`).
    pub max_timeout: Duration,
}

/// The default of `--network-max-in-flight`.
pub const DEFAULT_MAX_QUERIES: usize = 64;
/// The default of `--network-max-timeout`.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(10);

enum Input {
    Start {
        asks: Vec<Ask>,
        timeout: Duration,
        reply: oneshot::Sender<Vec<Outcome>>,
    },
    Reply {
        id: AskId,
        reply: Reply,
    },
    /// A query's caller went away.
    Gone,
}

enum Reply {
    Http {
        status: u16,
        body: Vec<u8>,
    },
    Own(serde_json::Value),
    Failed(String),
    /// The transmit's deadline came first: the machine times it out itself.
    Expired,
}

/// The handle of the fan-out task: what [`NetworkAsk::ask`] talks to.
#[derive(Clone, Debug)]
pub struct Asker {
    inputs: mpsc::UnboundedSender<Input>,
    queries: Arc<Semaphore>,
    limits: AskLimits,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Start { .. } => "Start",
            Input::Reply { .. } => "Reply",
            Input::Gone => "Gone",
        })
    }
}

/// What the task needs to move the bytes.
struct Mover {
    peers: Peers,
    view: watch::Receiver<Arc<View>>,
    name: PeerName,
    local: Arc<crate::PeerDb>,
    inputs: mpsc::UnboundedSender<Input>,
}

impl Asker {
    /// Starts the fan-out task (on the current tokio runtime, if any).
    pub(crate) fn start(
        limits: AskLimits,
        peers: Peers,
        view: watch::Receiver<Arc<View>>,
        name: PeerName,
        local: Arc<crate::PeerDb>,
    ) -> Asker {
        let (inputs, rx) = mpsc::unbounded_channel();
        let mover = Mover {
            peers,
            view,
            name,
            local,
            inputs: inputs.clone(),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(drive(Fanout::new(limits.fanout), rx, mover));
        }
        Asker {
            inputs,
            queries: Arc::new(Semaphore::new(limits.queries.max(1))),
            limits,
        }
    }

    /// Asks the peers of `plan` and merges their answers.
    pub async fn ask(&self, plan: NetworkPlan) -> Merged {
        let limits = self.limits;
        let timeout = peer_timeout(plan.timeout, limits.default_timeout, limits.max_timeout);
        let fail = |reason: String| {
            plan.queries
                .iter()
                .map(|_| Outcome::Failed(reason.clone()))
                .collect::<Vec<_>>()
        };
        let permit = tokio::time::timeout(timeout, self.queries.clone().acquire_owned()).await;
        let outcomes = match permit {
            Ok(Ok(_permit)) => {
                let (reply, answer) = oneshot::channel();
                let sent = self.inputs.send(Input::Start {
                    asks: plan.asks(),
                    timeout,
                    reply,
                });
                let _gone = Gone(self.inputs.clone());
                match sent {
                    Ok(()) => answer
                        .await
                        .unwrap_or_else(|_| fail("the peer's network task stopped".into())),
                    Err(_) => fail("the peer's network task stopped".into()),
                }
            }
            _ => fail(format!(
                "not asked within {timeout:?}: {} Network queries were in flight already (--network-max-in-flight)",
                limits.queries
            )),
        };
        merge(&plan, outcomes)
    }
}

/// Tells the task that a caller went away (its query is cancelled unless
/// it is over already).
struct Gone(mpsc::UnboundedSender<Input>);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = self.0.send(Input::Gone);
    }
}

impl NetworkAsk for NetworkHandle {
    fn ask(&self, plan: NetworkPlan) -> BoxFuture<'static, Merged> {
        let asker = self.asker.clone();
        async move { asker.ask(plan).await }.boxed()
    }
}

/// The fan-out task: owns the machine, performs its transmits, feeds back
/// their answers, wakes at its deadlines. No decision is taken here.
async fn drive(mut fanout: Fanout, mut inputs: mpsc::UnboundedReceiver<Input>, mover: Mover) {
    let mover = Arc::new(mover);
    let mut waiting: BTreeMap<QueryId, oneshot::Sender<Vec<Outcome>>> = BTreeMap::new();
    loop {
        while let Some(transmit) = fanout.poll_transmit() {
            tokio::spawn(perform(mover.clone(), transmit));
        }
        while let Some(done) = fanout.poll_event() {
            if let Some(reply) = waiting.remove(&done.query) {
                let _ = reply.send(done.outcomes);
            }
        }
        let wake = fanout.poll_timeout();
        let sleep = wake.map_or(Duration::from_secs(3600), |at| at.saturating_since(now()));
        tokio::select! {
            input = inputs.recv() => match input {
                // Never: the task's movers hold a sender.
                None => return,
                Some(Input::Start { asks, timeout, reply }) => {
                    let id = fanout.start(asks, timeout, now());
                    waiting.insert(id, reply);
                }
                Some(Input::Reply { id, reply }) => match reply {
                    Reply::Http { status, body } => fanout.handle_reply(id, status, &body, now()),
                    Reply::Own(response) => fanout.handle_response(id, response, now()),
                    Reply::Failed(reason) => fanout.handle_failure(id, reason, now()),
                    Reply::Expired => fanout.handle_timeout(now()),
                },
                Some(Input::Gone) => waiting.retain(|id, reply| {
                    let live = !reply.is_closed();
                    if !live {
                        fanout.cancel(*id);
                    }
                    live
                }),
            },
            () = tokio::time::sleep(sleep), if wake.is_some() => fanout.handle_timeout(now()),
        }
    }
}

/// Performs one transmit by its deadline and hands the answer back (or
/// that the deadline came: the machine's own timer says what that means).
async fn perform(mover: Arc<Mover>, transmit: Transmit) {
    let left = transmit.deadline.saturating_since(now());
    let reply = if transmit.peer == mover.name {
        // This peer's own part: an ordinary Local query on its slots.
        let own = mover
            .local
            .graphql(GraphQLRequest::new(transmit.query.clone()), None);
        match tokio::time::timeout(left, own).await {
            Ok(answer) => Reply::Own(answer.body),
            Err(_) => Reply::Expired,
        }
    } else {
        let uri = mover.view.borrow().uri(&transmit.peer).cloned();
        send(&mover.peers, uri.as_ref(), transmit.body(), left).await
    };
    let _ = mover.inputs.send(Input::Reply {
        id: transmit.id,
        reply,
    });
}

/// Sends one Local query through the outbound guard: its status and body
/// (at most `--max-answer-bytes`), or why there is none.
async fn send(peers: &Peers, uri: Option<&PeerUri>, body: String, timeout: Duration) -> Reply {
    let Some(uri) = uri else {
        return Reply::Failed("it left the network".to_owned());
    };
    let outbound = &peers.outbound;
    if let Err(e) = outbound.guard().check_literal(uri) {
        return Reply::Failed(e.to_string());
    }
    let url = uri.join("/v1/graphql");
    let exchange = async {
        let response = outbound
            .client()
            .post(&url)
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = outbound.read(response).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(Reply::Http {
            status,
            body: body.to_vec(),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(reason)) => Reply::Failed(reason),
        Err(_) => Reply::Expired,
    }
}
