//! The browser's host of the core's fan-out ([`plexus_core::fanout`]): the
//! query client and the tab peer both ask the peers of their Network
//! queries through one [`Driver`], which owns the machine, performs its
//! transmits with the sender each query brought (`fetch`, or the tab's own
//! engine for its own part), feeds the answers back and wakes at the
//! machine's deadlines (gloo timers). No decision is taken here.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use gloo_timers::future::TimeoutFuture;
use plexus_core::Timestamp;
use plexus_core::fanout::{Ask, Fanout, FanoutLimits, Outcome, QueryId, Transmit};
use serde_json::Value as Json;
use wasm_bindgen_futures::spawn_local;

/// What became of one transmit, as the host saw it.
pub enum Reply {
    /// The peer's HTTP answer: its status and body.
    Http {
        /// The status.
        status: u16,
        /// The body.
        body: String,
    },
    /// The host's own engine answered this GraphQL response.
    Own(Json),
    /// No answer: why (no connection, too large).
    Failed(String),
    /// The transmit's deadline came first: the machine times it out itself.
    Expired,
}

/// How one query's transmits are sent.
pub type Sender = Rc<dyn Fn(Transmit) -> LocalBoxFuture<'static, Reply>>;

/// The current time as the core counts it (`Date.now()`).
pub fn now() -> Timestamp {
    Timestamp(js_sys::Date::now().max(0.0) as u64)
}

struct State {
    fanout: Fanout,
    waiting: BTreeMap<QueryId, (Sender, oneshot::Sender<Vec<Outcome>>)>,
    /// The earliest wake-up a timer is set for.
    armed: Option<Timestamp>,
}

/// One fan-out for all the Network queries of a page (or of a tab peer).
#[derive(Clone)]
pub struct Driver(Rc<RefCell<State>>);

impl Driver {
    /// A fan-out with these bounds.
    pub fn new(limits: FanoutLimits) -> Self {
        Driver(Rc::new(RefCell::new(State {
            fanout: Fanout::new(limits),
            waiting: BTreeMap::new(),
            armed: None,
        })))
    }

    /// Asks `asks`, each within `timeout`, sending with `send`: one outcome
    /// per ask, in order. Dropping the future cancels the query.
    pub async fn ask(&self, asks: Vec<Ask>, timeout: Duration, send: Sender) -> Vec<Outcome> {
        let count = asks.len();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.0.borrow_mut();
            let id = state.fanout.start(asks, timeout, now());
            state.waiting.insert(id, (send, tx));
            id
        };
        let _cancel = Cancel(self.clone(), id);
        self.drain();
        rx.await.unwrap_or_else(|_| {
            (0..count)
                .map(|_| Outcome::Failed("the page stopped before the answers came".into()))
                .collect()
        })
    }

    /// Performs the machine's transmits, hands over its finished queries,
    /// and sets a timer for its next deadline.
    fn drain(&self) {
        let mut sends = Vec::new();
        let wake = {
            let mut state = self.0.borrow_mut();
            while let Some(transmit) = state.fanout.poll_transmit() {
                let q = transmit.id.query;
                // A cancelled query's asks are never sent: each transmit
                // belongs to a query still waiting.
                if let Some(sender) = state.waiting.get(&q).map(|(s, _)| s.clone()) {
                    sends.push((sender, transmit));
                }
            }
            while let Some(done) = state.fanout.poll_event() {
                if let Some((_, reply)) = state.waiting.remove(&done.query) {
                    let _ = reply.send(done.outcomes);
                }
            }
            let wake = state.fanout.poll_timeout();
            match (wake, state.armed) {
                (Some(at), Some(armed)) if armed <= at => None,
                (Some(at), _) => {
                    state.armed = Some(at);
                    Some(at)
                }
                (None, _) => None,
            }
        };
        for (sender, transmit) in sends {
            let (driver, id) = (self.clone(), transmit.id);
            let reply = sender(transmit);
            spawn_local(async move {
                let reply = reply.await;
                {
                    let mut state = driver.0.borrow_mut();
                    let fanout = &mut state.fanout;
                    match reply {
                        Reply::Http { status, body } => {
                            fanout.handle_reply(id, status, body.as_bytes(), now())
                        }
                        Reply::Own(response) => fanout.handle_response(id, response, now()),
                        Reply::Failed(reason) => fanout.handle_failure(id, reason, now()),
                        Reply::Expired => fanout.handle_timeout(now()),
                    }
                }
                driver.drain();
            });
        }
        if let Some(at) = wake {
            let driver = self.clone();
            let ms = at.saturating_since(now()).as_millis();
            spawn_local(async move {
                TimeoutFuture::new(u32::try_from(ms).unwrap_or(u32::MAX)).await;
                {
                    let mut state = driver.0.borrow_mut();
                    if state.armed == Some(at) {
                        state.armed = None;
                    }
                    state.fanout.handle_timeout(now());
                }
                driver.drain();
            });
        }
    }
}

/// Cancels its query when the caller's future is dropped before the end.
struct Cancel(Driver, QueryId);

impl Drop for Cancel {
    fn drop(&mut self) {
        let gone = {
            let mut state = (self.0).0.borrow_mut();
            let gone = state.waiting.remove(&self.1).is_some();
            if gone {
                state.fanout.cancel(self.1);
            }
            gone
        };
        if gone {
            self.0.drain();
        }
    }
}
