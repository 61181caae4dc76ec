//! Where GraphQL queries run: at most `--graphql-max-running` at once, on
//! tokio's blocking pool, off the async workers that answer pings.
//!
//! A thread that finishes a query takes the next waiting one itself, so a
//! busy peer runs its queue back to back. (A semaphore in front of
//! `spawn_blocking` wakes an async worker for every released slot, which
//! then wakes a blocking thread: two thread switches per queued query.)
//! A query whose caller has gone (it ran out of time waiting, or the client
//! left) is dropped from the queue unrun: when a slot reaches it, or
//! earlier, when the queue has doubled since it was last swept. So the
//! queue holds the queries of callers still waiting (each an open request,
//! within the server's connection bounds), not every query asked while the
//! slots were busy.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// A queued query: its caller can be asked whether it still waits.
trait Job: Send {
    /// Its caller has gone: the job would be run for nobody.
    fn gone(&self) -> bool;
    /// Runs it, unless its caller has gone, and tells the caller.
    fn run(self: Box<Self>);
}

struct Pending<F, T> {
    job: F,
    tx: oneshot::Sender<Outcome<T>>,
}

impl<F: FnOnce() -> T + Send, T: Send> Job for Pending<F, T> {
    fn gone(&self) -> bool {
        self.tx.is_closed()
    }

    fn run(self: Box<Self>) {
        if self.gone() {
            return;
        }
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(self.job)) {
            Ok(value) => Outcome::Done(value),
            Err(_) => Outcome::Panicked,
        };
        let _ = self.tx.send(outcome);
    }
}

/// The shortest queue that is swept of gone callers' jobs.
const SWEEP_FROM: usize = 16;

/// The query slots of one database.
pub(crate) struct Slots {
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: usize,
    waiting: VecDeque<Box<dyn Job>>,
    /// The queue's length after its last sweep.
    swept: usize,
}

impl State {
    /// Queues `job`, first dropping the jobs of gone callers when the
    /// queue has doubled since the last sweep (so each job is looked at a
    /// bounded number of times on average).
    fn queue(&mut self, job: Box<dyn Job>) {
        if self.waiting.len() >= (2 * self.swept).max(SWEEP_FROM) {
            self.waiting.retain(|job| !job.gone());
            self.swept = self.waiting.len();
        }
        self.waiting.push_back(job);
    }
}

/// A submitted job's outcome.
pub(crate) enum Outcome<T> {
    /// It ran and returned this.
    Done(T),
    /// It panicked.
    Panicked,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Slots")
            .field("max", &self.max)
            .field("running", &state.running)
            .field("waiting", &state.waiting.len())
            .finish()
    }
}

impl Slots {
    /// At most `max` jobs at once (at least one).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots {
            max: max.max(1),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` in a free slot, or when one frees up. The receiver gets
    /// its outcome; dropping the receiver before the job starts drops the
    /// job unrun.
    pub(crate) fn run<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<Outcome<T>> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(Pending { job, tx });
        let mut state = self.lock();
        if state.running < self.max {
            state.running += 1;
            drop(state);
            let slots = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                job.run();
                slots.drain();
            });
        } else {
            state.queue(job);
        }
        rx
    }

    /// Runs the waiting jobs on this thread until none is left, then frees
    /// the slot.
    fn drain(&self) {
        loop {
            let next = {
                let mut state = self.lock();
                match state.waiting.pop_front() {
                    Some(job) => job,
                    None => {
                        state.running -= 1;
                        return;
                    }
                }
            };
            next.run();
        }
    }

    /// Jobs running and waiting now.
    #[cfg(test)]
    pub(crate) fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.running, state.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Waits (at most 1 s) until every slot is free: a job's caller hears
    /// from it a moment before its thread frees the slot.
    async fn freed(slots: &Slots) {
        for _ in 0..100 {
            if slots.load() == (0, 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("slots still held: {:?}", slots.load());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_max_jobs_run_at_once_and_every_one_runs() {
        let slots = Slots::new(2);
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let receivers: Vec<_> = (0..20)
            .map(|i| {
                let (now, most) = (now.clone(), most.clone());
                slots.run(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    now.fetch_sub(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();
        for (i, rx) in receivers.into_iter().enumerate() {
            assert!(matches!(rx.await, Ok(Outcome::Done(n)) if n == i));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        freed(&slots).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_caller_left_is_not_run_and_a_panic_frees_its_slot() {
        let slots = Slots::new(1);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = slots.run(move || hold.recv().is_ok());
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let gone = slots.run(move || counted.fetch_add(1, Ordering::SeqCst));
        let panics = slots.run(|| -> usize { panic!("a resolver bug") });
        let after = slots.run(|| 7);
        assert_eq!(slots.load(), (1, 3));
        drop(gone);
        release.send(()).expect("the first job waits");
        assert!(matches!(first.await, Ok(Outcome::Done(true))));
        assert!(matches!(panics.await, Ok(Outcome::Panicked)));
        assert!(matches!(after.await, Ok(Outcome::Done(7))));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "the dropped job never ran");
        freed(&slots).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_of_gone_callers_do_not_pile_up_while_the_slots_are_busy() {
        let slots = Slots::new(1);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = slots.run(move || hold.recv().is_ok());
        // A caller that stays, then 1,000 that each give up at once, as
        // clients do when every slot is busy for longer than they wait.
        let stays = slots.run(|| 1);
        for _ in 0..1_000 {
            drop(slots.run(|| 0));
        }
        let (_, waiting) = slots.load();
        assert!(
            waiting <= SWEEP_FROM,
            "{waiting} jobs queued for one waiting caller"
        );
        release.send(()).expect("the first job waits");
        assert!(matches!(first.await, Ok(Outcome::Done(true))));
        assert!(matches!(stays.await, Ok(Outcome::Done(1))));
        freed(&slots).await;
    }
}
