//! What both servers share on the HTTP side: the error type every handler
//! returns, start-up (tracing, the `listening on` line), serving with
//! bounded connections ([`serve`]), the write policy (rate limit and CORS,
//! [`policy`]), the outbound guard ([`outbound`]), join tokens, and graceful
//! shutdown.

pub mod contextionary;
pub mod genesis_call;
pub mod outbound;
pub mod policy;
pub mod serve;
pub mod tls;

pub use self::serve::{ConnectionArgs, serve};

pub mod keys;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use plexus_core::wire::ErrorBody;
use tokio::net::TcpListener;

/// An error answered to an HTTP client: a status and `{"error": {"message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// The status code (always 4xx or 5xx).
    pub status: StatusCode,
    /// What went wrong, for a person; never internal details.
    pub message: String,
}

impl AppError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 422 Unprocessable Entity.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 500, logged with its cause and answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.message))).into_response()
    }
}

/// Turns axum's own refusals (bad JSON, bad path, body too large) into the
/// project's JSON error body, keeping their status: the layer of
/// [`JsonErrors`]. Typed, unlike `axum::middleware::from_fn`: an answer
/// that needs no rewriting costs no boxed future.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonErrorsLayer;

impl<S> tower::Layer<S> for JsonErrorsLayer {
    type Service = JsonErrors<S>;

    fn layer(&self, inner: S) -> JsonErrors<S> {
        JsonErrors { inner }
    }
}

/// The service of [`JsonErrorsLayer`].
#[derive(Clone, Debug)]
pub struct JsonErrors<S> {
    inner: S,
}

impl<S, B> tower::Service<axum::http::Request<B>> for JsonErrors<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = JsonErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        JsonErrorsFuture {
            state: JsonErrorsState::Inner {
                inner: self.inner.call(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`JsonErrors`]: the inner one, or its rewriting.
    pub struct JsonErrorsFuture<F> {
        #[pin]
        state: JsonErrorsState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = JsonErrorsProj]
    enum JsonErrorsState<F> {
        Inner { #[pin] inner: F },
        Rewrite { rewrite: futures::future::BoxFuture<'static, Response> },
    }
}

impl<F> Future for JsonErrorsFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                JsonErrorsProj::Inner { inner } => {
                    let Ok(response) = ready!(inner.poll(cx));
                    if !needs_json_error(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    state.set(JsonErrorsState::Rewrite {
                        rewrite: Box::pin(json_error(response)),
                    });
                }
                JsonErrorsProj::Rewrite { rewrite } => {
                    return rewrite.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

/// Whether `response` is an error whose body is not JSON.
fn needs_json_error(response: &Response) -> bool {
    let status = response.status();
    // The status first: most answers are no error, and need no header lookup.
    (status.is_client_error() || status.is_server_error())
        && !response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                // GraphQL over HTTP's media type is JSON too.
                let v = v.as_bytes();
                v.starts_with(b"application/json")
                    || v.starts_with(b"application/graphql-response+json")
            })
}

/// The JSON error of a non-JSON error answer: its text (or its status's
/// reason) as the message.
async fn json_error(response: Response) -> Response {
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    AppError::new(status, message).into_response()
}

/// Reads a whole request body of at most `limit` bytes: 413 past it (at
/// once when its declared size is over), 400 when it fails on the way (a
/// stall past `--body-timeout`, a cut connection). A body of one frame, as
/// small ones come, is taken as it is, without a copy or a buffer: the
/// extractors' `Collect` costs a ping thousands of instructions more.
pub async fn read_body(mut body: axum::body::Body, limit: usize) -> Result<Bytes, AppError> {
    use http_body::Body as _;
    let too_large = || {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {limit} bytes"),
        )
    };
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| AppError::bad_request(format!("cannot read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len() > limit {
            return Err(too_large());
        }
        if first.is_none() && joined.is_empty() {
            first = Some(data);
        } else {
            if let Some(first) = first.take() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&data);
        }
        // A body of known length that has come whole needs no poll more to
        // say that it ended (a ping's: one frame).
        if body.is_end_stream() {
            break;
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// `app`, with a trace of every request (tower-http's `TraceLayer`: a span
/// and a line per request and answer) when the log shows them, that is when
/// `RUST_LOG` enables `tower_http` at `debug`; without it, as by default,
/// the layer would cost every request and write nothing (call after
/// [`init_tracing`]; errors are logged where they happen either way).
pub fn trace_requests<S>(app: S) -> tower::util::Either<Traced<S>, S>
where
    S: serve::App,
    S::Future: Send + 'static,
{
    use tower::ServiceExt as _;
    if tracing::enabled!(target: "tower_http::trace::on_request", tracing::Level::DEBUG) {
        let traced = tower::Layer::layer(&tower_http::trace::TraceLayer::new_for_http(), app);
        tower::util::Either::Left(traced.map_response(IntoResponse::into_response as fn(_) -> _))
    } else {
        tower::util::Either::Right(app)
    }
}

/// An app with its requests traced ([`trace_requests`]).
pub type Traced<S> = tower::util::MapResponse<
    tower_http::trace::Trace<
        S,
        tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    >,
    fn(
        Response<
            tower_http::trace::ResponseBody<
                axum::body::Body,
                tower_http::classify::NeverClassifyEos<
                    tower_http::classify::ServerErrorsFailureClass,
                >,
            >,
        >,
    ) -> Response,
>;

/// Sets up `tracing` from `RUST_LOG` (default `info`), logging to stderr so
/// that stdout carries only the `listening on` line.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Binds `addr` and prints `listening on http://HOST:PORT` (`https` with
/// `tls`) once, so that a script can read the port the OS chose for
/// `127.0.0.1:0`.
pub async fn bind(
    addr: SocketAddr,
    tls: Option<tls::Tls>,
) -> anyhow::Result<(tls::Listener, SocketAddr)> {
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = tcp.local_addr()?;
    let listener = tls::Listener { tcp, tls };
    println!("listening on {}://{local}", listener.scheme());
    Ok((listener, local))
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The credentials of `Authorization: Bearer <token>`; the scheme's name is
/// case-insensitive (RFC 9110, 11.1), the token is not.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The join token: `--join-token` (or `PLEXUS_JOIN_TOKEN`), or the first
/// line of `--join-token-file`, which keeps it out of the process's
/// arguments. An empty token means none.
pub fn join_token(
    given: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    let token = match (given, file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give the join token once: --join-token or --join-token-file")
        }
        (Some(token), None) => token.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --join-token-file {}: {e}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    Ok(Some(token).filter(|t| !t.is_empty()))
}

/// An error and its sources, in one line: reqwest's own display is terse
/// ("error sending request"), the cause ("connection refused") is below it.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_bearer_scheme_is_case_insensitive_the_token_is_not() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        for (value, token) in [
            ("Bearer s3cret", Some("s3cret")),
            ("bearer s3cret", Some("s3cret")),
            ("BEARER  S3cret ", Some("S3cret")),
            ("Basic s3cret", None),
            ("Bearer", None),
            ("Bearer ", None),
        ] {
            headers.insert(
                axum::http::header::AUTHORIZATION,
                value.parse().expect("header"),
            );
            assert_eq!(bearer(&headers), token, "{value:?}");
        }
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn the_join_token_comes_from_a_flag_or_a_file() {
        let dir = std::env::temp_dir().join(format!("plexus-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        assert_eq!(
            join_token(None, Some(&file)).expect("read"),
            Some("s3cret".into())
        );
        assert_eq!(join_token(Some("t"), None).expect("flag"), Some("t".into()));
        assert_eq!(join_token(Some(""), None).expect("empty"), None);
        assert_eq!(join_token(None, None).expect("none"), None);
        assert!(join_token(Some("t"), Some(&file)).is_err());
        assert!(join_token(None, Some(&dir.join("missing"))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_chain_names_every_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(
            error_chain(&Outer(inner)),
            "error sending request: connection refused"
        );
    }
}
