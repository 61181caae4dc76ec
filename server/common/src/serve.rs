//! Serving an axum app with every connection bounded: a header-read
//! timeout, an idle timeout, a request timeout, a body timeout, a cap on
//! open connections (upgraded ones included), on HTTP/2 streams per
//! connection and on requests in flight (`axum::serve` exposes none of the
//! first and no cap).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use plexus_core::time::parse_duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::AppError;
use crate::tls::Listener;

/// The connection bounds every server has, as flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// A client must send a request's line and headers within this long of
    /// the server waiting for them (from the connection's start, its TLS
    /// handshake included, or from the previous answer on a kept-alive
    /// HTTP/1.1 one), or the connection is closed.
    #[arg(long, env = "PLEXUS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A request body must keep arriving: a wait of more than this long for
    /// its next bytes fails the request (408).
    #[arg(long, env = "PLEXUS_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// A request must be answered (its status and headers; a stream's events
    /// may follow for longer) within this long, or it gets 503.
    #[arg(long, env = "PLEXUS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A connection over which no byte moved either way for this long is
    /// closed (a stalled upload, a stream whose client stopped reading).
    #[arg(long, env = "PLEXUS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// At most this many connections are open at once; one more is answered
    /// 503 and closed. Keep it below the process's open-file limit.
    /// A connection upgraded to a WebSocket counts until it closes.
    #[arg(long, env = "PLEXUS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Requests being answered at once, over all connections; one more is
    /// answered 503 at once. (A stream counts until its headers are sent.)
    #[arg(long, env = "PLEXUS_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,

    /// Concurrent streams (requests) an HTTP/2 connection may open.
    #[arg(long, env = "PLEXUS_HTTP2_MAX_STREAMS", default_value_t = 32)]
    pub http2_max_streams: u32,
}

impl Default for ConnectionArgs {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_in_flight: 512,
            http2_max_streams: 32,
        }
    }
}

tokio::task_local! {
    /// The request the current task serves ([`Bounded`] sets it while the
    /// app is called and while its future is polled): its client's address
    /// and its commit gate. A task-local, not a request extension: an
    /// extension costs the request a map, made and dropped (about 800
    /// instructions of a ping's 18,000: BENCHMARKS.md).
    static REQUEST: Served;
}

/// What [`REQUEST`] holds.
#[derive(Clone)]
struct Served {
    client: SocketAddr,
    commit: Commit,
}

/// Whether a request's write may still commit, decided once, between the
/// write and `--request-timeout`: a write asks [`Commit::begin`] right
/// before it commits, and the timeout asks too before it answers 503.
/// Whoever asks first wins: a write answered 503 never commits, and a write
/// that began to commit is answered with its outcome, however long its
/// commit takes (a disk's fsync; the work before it is under the timeout).
#[derive(Clone, Debug, Default)]
pub struct Commit(Arc<AtomicU8>);

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const TIMED_OUT: u8 = 2;

impl Commit {
    /// The gate of the request the current task serves (`None` outside
    /// [`serve`], e.g. a test that calls the app directly: no timeout).
    pub fn current() -> Option<Commit> {
        REQUEST.try_with(|served| served.commit.clone()).ok()
    }

    /// Asked by a write right before it commits: `true`, commit (the
    /// timeout now waits for the answer); `false`, the request has had its
    /// 503 already: abort.
    pub fn begin(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == COMMITTING,
        }
    }

    /// Asked by the timeout: `true` when no commit began (answer 503).
    fn time_out(&self) -> bool {
        self.0
            .compare_exchange(OPEN, TIMED_OUT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Serves `app` (a `Router`, or the typed stack of layers around one) on
/// `listener` with the bounds of `limits` until `shutdown` resolves, then
/// stops accepting and waits for open connections to end (bound the wait
/// with a timeout: a stream may last).
pub async fn serve<S>(
    listener: impl Into<Listener>,
    app: S,
    limits: &ConnectionArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: App,
    S::Future: Send + 'static,
{
    let bounds = Arc::new(Bounds {
        in_flight: AtomicUsize::new(0),
        max_in_flight: limits.max_in_flight.max(1),
        body_timeout: limits.body_timeout,
        request_timeout: limits.request_timeout,
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header-read timeout of hyper's: IdleIo holds it (HeadWait).
    builder.http1().keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams.max(1));
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let max = limits.max_connections.max(1);
    let timeouts = (limits.idle_timeout, limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let Listener { tcp: listener, tls } = listener.into();
    let handshake = limits.header_read_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a reset before accept:
                    // wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(stream, max);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let wait = Arc::new(HeadWait::new(Instant::now()));
        let service = Bounded {
            app: std::sync::Mutex::new(app.clone()),
            remote,
            bounds: Arc::clone(&bounds),
            wait: Arc::clone(&wait),
        };
        // The socket holds its connection's permit, upgraded ones too.
        let io = IdleIo::new(stream, timeouts, wait, permit);
        let (builder, watcher, tls) = (Arc::clone(&builder), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            // With TLS, the handshake first (bounded like a request's headers).
            match crate::tls::accept(tls.as_ref(), io, handshake).await {
                Ok(io) => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(%remote, error = %e, "connection ended");
                    }
                }
                Err(e) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over the cap with 503 (if its socket takes the
/// bytes at once) and closes it.
fn refuse(stream: TcpStream, max: usize) {
    // Under a flood, log the 1st, 2nd, 4th, 8th… refusal, not every one.
    static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if count.is_power_of_two() {
        tracing::warn!(
            max,
            refused = count,
            "connection refused: --max-connections reached"
        );
    }
    let body =
        format!(r#"{{"error":{{"message":"too many connections (--max-connections {max})"}}}}"#);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    drop(stream);
}

/// Whether a connection waits for a request's line and headers, and since
/// when: what holds `--header-read-timeout` in place of hyper's own timer,
/// which made, armed and dropped a timer for every request (about 1,500
/// instructions of a ping's 22,500: BENCHMARKS.md). [`Bounded`] tells it
/// when headers arrive and when an answer has been sent; [`IdleIo`], which
/// reads for hyper, closes the connection once the wait is over.
#[derive(Debug)]
struct HeadWait {
    /// Times are counted from here, in nanoseconds.
    start: Instant,
    /// [`WAITING_NOT`], [`WAITING_NEVER`], or 1 + when the wait began.
    since: AtomicU64,
}

/// A request is being read or answered.
const WAITING_NOT: u64 = 0;
/// HTTP/2 (its streams are bounded by `--http2-max-streams` and the idle
/// timeout) or upgraded (a WebSocket): no more request headers to wait for.
const WAITING_NEVER: u64 = u64::MAX;

/// Where [`HeadWait`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// For headers, since this instant.
    Since(Instant),
    /// Not now: a request is open (its answer may end at any time).
    Open,
    /// Never again.
    Never,
}

impl HeadWait {
    /// A new connection waits for its first request from `now`.
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            since: AtomicU64::new(1),
        }
    }

    fn state(&self) -> Wait {
        match self.since.load(Ordering::Relaxed) {
            WAITING_NOT => Wait::Open,
            WAITING_NEVER => Wait::Never,
            since => Wait::Since(self.start + Duration::from_nanos(since - 1)),
        }
    }

    /// A request's headers arrived (over HTTP/2, the last wait is over).
    fn headers_came(&self, http2: bool) {
        let to = if http2 { WAITING_NEVER } else { WAITING_NOT };
        // One connection's requests are read one after the other (HTTP/1)
        // or end the waiting for good (HTTP/2): no compare-and-swap needed.
        if self.since.load(Ordering::Relaxed) != WAITING_NEVER {
            self.since.store(to, Ordering::Relaxed);
        }
    }

    /// The answer is sent: a kept-alive connection waits for the next
    /// request from `now`; an upgraded one, for none.
    fn answered(&self, upgraded: bool, now: Instant) {
        if self.since.load(Ordering::Relaxed) == WAITING_NEVER {
            return;
        }
        let since = if upgraded {
            WAITING_NEVER
        } else {
            let nanos = now.saturating_duration_since(self.start).as_nanos();
            u64::try_from(nanos).map_or(WAITING_NEVER - 1, |n| n.saturating_add(1))
        };
        self.since.store(since, Ordering::Relaxed);
    }
}

/// A stream that fails with `TimedOut` once no byte moved either way for
/// `idle` while the server waits to read, or once it has waited for a
/// request's headers for `head` ([`HeadWait`]); it holds its connection's
/// permit (`--max-connections`) until it is dropped.
///
/// One timer serves both bounds and is never moved per request: it fires at
/// the nearer bound, or while a request is open within `head` (so that the
/// wait that follows its answer is checked in time), and when it fires the
/// bounds are looked at and it is set again. A busy connection's timer fires
/// once every `head`; a ping costs no timer work.
struct IdleIo {
    inner: TcpStream,
    idle: Duration,
    head: Duration,
    /// When the idle bound falls; each byte moves it.
    idle_at: Instant,
    wait: Arc<HeadWait>,
    timer: Pin<Box<Sleep>>,
    /// The waker the timer was last polled with: the timer holds it until
    /// it fires or is set again, so a poll by the same task is spared (a
    /// read waits several times per request).
    armed: Option<Waker>,
    _permit: OwnedSemaphorePermit,
}

impl IdleIo {
    fn new(
        inner: TcpStream,
        (idle, head): (Duration, Duration),
        wait: Arc<HeadWait>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            head,
            idle_at: now + idle,
            wait,
            timer: Box::pin(tokio::time::sleep_until(now + idle.min(head))),
            armed: None,
            _permit: permit,
        }
    }

    fn moved(&mut self) {
        self.idle_at = Instant::now() + self.idle;
    }

    /// The bound that is over, if one is (call when the stream waits).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) && !self.timer.is_elapsed()
        {
            return None;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                self.armed = Some(cx.waker().clone());
                return None;
            }
            let now = Instant::now();
            if now >= self.idle_at {
                return Some(timed_out("idle connection (--idle-timeout)"));
            }
            let next = match self.wait.state() {
                Wait::Since(since) if now >= since + self.head => {
                    return Some(timed_out(
                        "no request headers in time (--header-read-timeout)",
                    ));
                }
                Wait::Since(since) => since + self.head,
                Wait::Open => now + self.head,
                Wait::Never => self.idle_at,
            };
            self.timer.as_mut().reset(next.min(self.idle_at));
            self.armed = None;
        }
    }
}

fn timed_out(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // A client that stopped reading blocks writes: idle too.
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The bounds every request of a server shares ([`Bounded`] applies them).
struct Bounds {
    /// Requests in flight: a count, not a semaphore, since no request waits
    /// for room (a semaphore's release takes its waiters' lock every time).
    in_flight: AtomicUsize,
    max_in_flight: usize,
    body_timeout: Duration,
    request_timeout: Duration,
}

/// A request's place among those in flight ([`Bounds::in_flight`]), given
/// back when it is dropped.
struct InFlight(Arc<Bounds>);

impl InFlight {
    /// A place, unless `--max-in-flight` requests hold one.
    fn take(bounds: &Arc<Bounds>) -> Option<Self> {
        let before = bounds.in_flight.fetch_add(1, Ordering::Relaxed);
        let place = Self(Arc::clone(bounds));
        (before < bounds.max_in_flight).then_some(place)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bounds of every request, in one service around the app (no boxed
/// future, no timer unless one is needed): the cap on requests in flight
/// (`--max-in-flight`: one over it is answered 503 at once), the request
/// timeout and the body timeout. Each timer is made only once its future
/// or body has to wait: a request answered at its first poll, as most pings
/// are, costs no timer. It also tells the app the request's client's
/// address ([`client_addr`]).
///
/// One per connection, called by hyper through `&self`: its copy of the app
/// is called under a lock of its own (contended by an HTTP/2 connection's
/// streams only) instead of cloned for every request as tower's adapter
/// does. A clone writes the count of every `Arc` in the app, cache lines
/// that each worker thread then takes from the other: pings ran at 0.70x
/// the floor with a clone per request, 0.74x without (BENCHMARKS.md).
struct Bounded<S> {
    app: std::sync::Mutex<S>,
    remote: SocketAddr,
    bounds: Arc<Bounds>,
    wait: Arc<HeadWait>,
}

/// What [`serve`] serves: a service of requests that always answers (a
/// `Router`, or layers around one), ready at once (every bound of its
/// own answers instead of making callers wait), cheap to clone (one per
/// connection).
pub trait App:
    tower::Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

impl<S: App> hyper::service::Service<axum::http::Request<Incoming>> for Bounded<S> {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = BoundedFuture<tokio::task::futures::TaskLocalFuture<Served, Pin<Box<S::Future>>>>;

    fn call(&self, request: axum::http::Request<Incoming>) -> Self::Future {
        self.wait
            .headers_came(request.version() == axum::http::Version::HTTP_2);
        BoundedFuture {
            state: self.admit(request),
            wait: Arc::clone(&self.wait),
        }
    }
}

impl<S: App> Bounded<S> {
    fn admit(
        &self,
        request: axum::http::Request<Incoming>,
    ) -> BoundedState<tokio::task::futures::TaskLocalFuture<Served, Pin<Box<S::Future>>>> {
        let Some(permit) = InFlight::take(&self.bounds) else {
            return BoundedState::Refused {
                max: self.bounds.max_in_flight,
            };
        };
        let timeout = self.bounds.body_timeout;
        let request = request.map(|body| {
            axum::body::Body::new(LazyTimeoutBody {
                body,
                timeout,
                sleep: None,
            })
        });
        let served = Served {
            client: self.remote,
            commit: Commit::default(),
        };
        // A layer may read the client's address when it is called (a rate
        // limit does) or when its future is polled.
        let inner = REQUEST.sync_scope(served.clone(), || {
            let mut app = self
                .app
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Boxed: hyper moves a request's future whole, several times,
            // and an app's future is a kilobyte or more (BENCHMARKS.md).
            Box::pin(tower::Service::call(&mut *app, request))
        });
        let commit = served.commit.clone();
        BoundedState::Admitted {
            inner: REQUEST.scope(served, inner),
            timeout: self.bounds.request_timeout,
            sleep: None,
            permit: Some(permit),
            commit,
            committing: false,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer ([`BoundedState`]), which tells its connection's
    /// [`HeadWait`] when it is sent.
    struct BoundedFuture<F> {
        #[pin] state: BoundedState<F>,
        wait: Arc<HeadWait>,
    }
}

impl<F> Future for BoundedFuture<F>
where
    F: Future<Output = Result<axum::response::Response, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(answer) = ready!(this.state.poll(cx));
        Poll::Ready(Ok(sending(this.wait, answer)))
    }
}

/// `answer`, whose sending `wait` learns of: at once when it has no body
/// (a ping's) or upgrades the connection, else when hyper drops its body.
fn sending(wait: &Arc<HeadWait>, answer: axum::response::Response) -> axum::response::Response {
    use http_body::Body as _;
    if wait.state() == Wait::Never {
        return answer;
    }
    let upgraded = answer.status() == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded || answer.body().is_end_stream() {
        wait.answered(upgraded, Instant::now());
        return answer;
    }
    answer.map(|body| {
        axum::body::Body::new(Sending {
            body,
            wait: Arc::clone(wait),
        })
    })
}

/// An answer's body, which tells [`HeadWait`] when it is dropped: hyper
/// drops it once it is sent (or the connection is gone).
struct Sending {
    body: axum::body::Body,
    wait: Arc<HeadWait>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.wait.answered(false, Instant::now());
    }
}

impl http_body::Body for Sending {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request's answer: it holds its permit until it is ready, and
    /// gets 503 once it has waited `timeout`, unless its write began to
    /// commit by then ([`Commit`]): then its answer is the commit's outcome.
    #[project = BoundedProj]
    enum BoundedState<F> {
        Admitted {
            #[pin] inner: F,
            timeout: Duration,
            #[pin] sleep: Option<Sleep>,
            permit: Option<InFlight>,
            commit: Commit,
            committing: bool,
        },
        Refused { max: usize },
    }
}

impl<F> Future for BoundedState<F>
where
    F: Future<Output = Result<axum::response::Response, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BoundedProj::Admitted {
                inner,
                timeout,
                mut sleep,
                permit,
                commit,
                committing,
            } => {
                if let Poll::Ready(answer) = inner.poll(cx) {
                    drop(permit.take());
                    return Poll::Ready(answer);
                }
                if *committing {
                    return Poll::Pending;
                }
                if sleep.is_none() {
                    sleep.set(Some(tokio::time::sleep(*timeout)));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                }
                if !commit.time_out() {
                    // Its write began to commit before the deadline: its
                    // answer, whatever it is, is the truth.
                    *committing = true;
                    return Poll::Pending;
                }
                drop(permit.take());
                Poll::Ready(Ok(AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no answer within {timeout:?} (--request-timeout)"),
                )
                .into_response()))
            }
            BoundedProj::Refused { max } => Poll::Ready(Ok(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many requests in flight (--max-in-flight {max})"),
            )
            .into_response())),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body whose next bytes must come within `timeout`
    /// (`--body-timeout`); the timer is made only when the body has to wait.
    struct LazyTimeoutBody<B> {
        #[pin] body: B,
        timeout: Duration,
        #[pin] sleep: Option<Sleep>,
    }
}

/// The error of a body whose next bytes did not come in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled (--body-timeout)")]
struct BodyTimedOut;

impl<B> http_body::Body for LazyTimeoutBody<B>
where
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            this.sleep.set(None);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The address of the client of the request the current task serves,
/// when it came through [`serve`] (`None` for an app called directly).
pub fn client_addr() -> Option<SocketAddr> {
    REQUEST.try_with(|served| served.client).ok()
}

#[cfg(test)]
mod commit_tests {
    use super::Commit;

    #[test]
    fn a_commit_and_a_timeout_are_decided_once_whoever_asks_first() {
        let write_first = Commit::default();
        assert!(write_first.begin());
        assert!(!write_first.time_out(), "the timeout waits for the commit");
        assert!(write_first.begin(), "a second look keeps the decision");
        let timeout_first = Commit::default();
        assert!(timeout_first.time_out());
        assert!(!timeout_first.begin(), "a write answered 503 aborts");
        assert_eq!(
            Commit::current().map(|_| ()),
            None,
            "outside serve: no gate"
        );
    }
}

#[cfg(test)]
mod idle_tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    use super::{ConnectionArgs, HeadWait, IdleIo};

    const HOUR: Duration = Duration::from_secs(3600);

    /// A client socket, and the server's side wrapped in `IdleIo` read in
    /// a task: it gives back how many bytes it read, and how its read ended
    /// and when.
    type Ended = (usize, Result<(), (std::io::ErrorKind, String, Instant)>);
    async fn pair(
        bounds: (Duration, Duration),
        wait: Arc<HeadWait>,
    ) -> (TcpStream, tokio::task::JoinHandle<Ended>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("permit");
        let reader = tokio::spawn(async move {
            let mut io = IdleIo::new(server, bounds, wait, permit);
            let mut buf = [0u8; 16];
            let mut got = 0;
            loop {
                match io.read(&mut buf).await {
                    Ok(0) => return (got, Ok(())),
                    Ok(n) => got += n,
                    Err(e) => return (got, Err((e.kind(), e.to_string(), Instant::now()))),
                }
            }
        });
        (client, reader)
    }

    async fn ended(reader: tokio::task::JoinHandle<Ended>, within: Duration) -> Ended {
        tokio::time::timeout(within, reader)
            .await
            .expect("the connection was never closed")
            .expect("reader")
    }

    /// Bytes that keep coming keep a connection open past its idle
    /// timeout, and silence closes it one timeout after the last byte.
    #[tokio::test]
    async fn a_connection_lives_while_bytes_move_and_closes_once_idle() {
        let idle = Duration::from_secs(1);
        let wait = Arc::new(HeadWait::new(Instant::now()));
        wait.headers_came(false);
        let (mut client, reader) = pair((idle, HOUR), wait).await;
        let start = Instant::now();
        for _ in 0..7 {
            client.write_all(b"x").await.expect("write");
            tokio::time::sleep(idle / 4).await;
        }
        let last = Instant::now() - idle / 4;
        let (got, closed) = ended(reader, idle * 5).await;
        let (kind, why, at) = closed.expect_err("closed by the idle timeout");
        assert_eq!(kind, std::io::ErrorKind::TimedOut);
        assert!(why.contains("--idle-timeout"), "{why}");
        assert_eq!(got, 7, "every byte was read, over {:?}", last - start);
        assert!(
            at - last >= idle - idle / 8,
            "closed {:?} after the last byte",
            at - last
        );
        assert!(
            at - last < idle * 3,
            "closed {:?} after the last byte",
            at - last
        );
    }

    /// Headers that trickle in, a byte at a time, do not hold a connection
    /// open: the wait for them is bounded from its start, whatever moves.
    #[tokio::test]
    async fn headers_that_trickle_are_cut_at_the_header_read_timeout() {
        let head = Duration::from_secs(1);
        let start = Instant::now();
        let (mut client, reader) = pair((HOUR, head), Arc::new(HeadWait::new(start))).await;
        let trickle = tokio::spawn(async move {
            for _ in 0..20 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(head / 4).await;
            }
        });
        let (got, closed) = ended(reader, head * 5).await;
        trickle.abort();
        let (kind, why, at) = closed.expect_err("closed by the header-read timeout");
        assert_eq!(kind, std::io::ErrorKind::TimedOut);
        assert!(why.contains("--header-read-timeout"), "{why}");
        assert!(got >= 2, "bytes were moving: {got}");
        assert!(at - start >= head, "closed after {:?}", at - start);
        assert!(at - start < head * 3, "closed after {:?}", at - start);
    }

    /// A request open for longer than the header-read timeout is not cut
    /// (its own bounds are the request and body timeouts); once answered,
    /// the wait for the next request's headers is: one timer, set while the
    /// request was open, checks it in time. An upgraded connection waits
    /// for no headers.
    #[tokio::test]
    async fn the_wait_for_headers_starts_at_each_answer_and_never_after_an_upgrade() {
        let head = Duration::from_millis(500);
        let wait = Arc::new(HeadWait::new(Instant::now()));
        wait.headers_came(false);
        let (_client, reader) = pair((HOUR, head), Arc::clone(&wait)).await;
        tokio::time::sleep(head * 5).await;
        assert!(!reader.is_finished(), "an open request was cut");
        let answered = Instant::now();
        wait.answered(false, answered);
        let (_, closed) = ended(reader, head * 6).await;
        let (_, why, at) = closed.expect_err("closed by the header-read timeout");
        assert!(why.contains("--header-read-timeout"), "{why}");
        assert!(
            at - answered >= head,
            "closed {:?} after the answer",
            at - answered
        );
        assert!(
            at - answered < head * 3,
            "closed {:?} after the answer",
            at - answered
        );

        let wait = Arc::new(HeadWait::new(Instant::now()));
        wait.headers_came(false);
        wait.answered(true, Instant::now());
        let (_client, reader) = pair((HOUR, head), wait).await;
        tokio::time::sleep(head * 4).await;
        assert!(!reader.is_finished(), "an upgraded connection was cut");
        reader.abort();
    }

    /// Through `serve` and hyper: a kept-alive connection is closed one
    /// header-read timeout after its last answer, an answer that streams
    /// for longer is not cut, and a request's answer comes in full.
    #[tokio::test]
    async fn served_connections_wait_for_headers_after_each_answer_only() {
        use axum::routing::get;
        let head = Duration::from_millis(600);
        let app = axum::Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/slow",
                get(|| async {
                    let chunks = futures::stream::unfold(0, |n| async move {
                        (n < 5).then_some(())?;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Some((Ok::<_, std::io::Error>(format!("chunk {n}\n")), n + 1))
                    });
                    axum::body::Body::from_stream(chunks)
                }),
            );
        let limits = ConnectionArgs {
            header_read_timeout: head,
            ..ConnectionArgs::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            async move { super::serve(listener, app, &limits, std::future::pending()).await },
        );
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let start = Instant::now();
        let closed_at = loop {
            match tokio::time::timeout(head * 10, stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break Instant::now(),
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the kept-alive connection was never closed"),
            }
        };
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.contains("chunk 4"),
            "the streamed answer was cut: {answer}"
        );
        assert!(
            answer.ends_with("hello"),
            "the second answer is missing: {answer}"
        );
        let took = closed_at - start;
        assert!(
            took >= Duration::from_millis(1500) + head,
            "closed after {took:?}"
        );
        assert!(
            took < Duration::from_millis(1500) + head * 4,
            "closed after {took:?}"
        );
    }

    /// Through `serve`: the app learns its client's address both when it is
    /// called (where a rate limit reads it) and while its future runs (a
    /// handler), and nothing outside a served request does.
    #[tokio::test]
    async fn the_app_knows_its_clients_address_when_called_and_while_answering() {
        use axum::response::IntoResponse as _;
        let app = tower::service_fn(|_: axum::extract::Request| {
            let called = super::client_addr();
            async move {
                tokio::task::yield_now().await;
                let answering = super::client_addr();
                Ok::<_, Infallible>(format!("{called:?} {answering:?}").into_response())
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ConnectionArgs::default();
        tokio::spawn(
            async move { super::serve(listener, app, &limits, std::future::pending()).await },
        );
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let client = stream.local_addr().expect("client address");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.ends_with(&format!("Some({client}) Some({client})")),
            "{answer}"
        );
        assert_eq!(super::client_addr(), None, "outside a served request");
    }
}
