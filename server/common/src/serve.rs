//! Serving an axum app with every connection bounded: hyper's header-read
//! timeout, an idle timeout, a request timeout, a body timeout and a cap on
//! open connections (`axum::serve` exposes none of the first and no cap).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use plexus_core::time::parse_duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::AppError;

/// The connection bounds every server has, as flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// A client must send a request's line and headers within this long of
    /// the server waiting for them (on a new connection, or after the
    /// previous answer on a kept-alive one), or the connection is closed.
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
    #[arg(long, env = "PLEXUS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
}

impl Default for ConnectionArgs {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

tokio::task_local! {
    static COMMIT: Commit;
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
        COMMIT.try_with(Clone::clone).ok()
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

/// Serves `app` on `listener` with the bounds of `limits` until `shutdown`
/// resolves, then stops accepting and waits for open connections to end
/// (bound the wait with a timeout: a stream may last).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let request_timeout = limits.request_timeout;
    let app = app
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                let commit = Commit::default();
                let run = COMMIT.scope(commit.clone(), next.run(request));
                tokio::pin!(run);
                match tokio::time::timeout(request_timeout, &mut run).await {
                    Ok(response) => response,
                    // Its write began to commit before the deadline: its
                    // answer, whatever it is, is the truth.
                    Err(_) if !commit.time_out() => run.await,
                    Err(_) => AppError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("no answer within {request_timeout:?} (--request-timeout)"),
                    )
                    .into_response(),
                }
            },
        ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let max = limits.max_connections.max(1);
    let idle = limits.idle_timeout;
    let graceful = GracefulShutdown::new();
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
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            });
        let io = TokioIo::new(IdleIo::new(stream, idle));
        let builder = Arc::clone(&builder);
        let connection = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
            drop(permit);
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

/// A stream that fails with `TimedOut` once no byte moved either way for
/// `idle` while the server waits to read.
struct IdleIo {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleIo {
    fn new(inner: TcpStream, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        // Resetting costs a timer-wheel update: do it at most every 1/8 idle.
        if next.saturating_duration_since(self.deadline.deadline()) > self.idle / 8 {
            self.deadline.as_mut().reset(next);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle connection (--idle-timeout)")
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
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
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
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
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
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The address of the client of `request`, when it came through [`serve`].
pub fn client_addr<B>(request: &axum::http::Request<B>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
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
