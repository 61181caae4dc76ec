//! Who may write: a rate limit per client address on write calls (429 with
//! `Retry-After`, by `tower_governor`) and CORS that keeps reads open to any
//! origin and lets only the origins named with `--cors-origin` write.
//!
//! A write is any request but `GET`, `HEAD` and `OPTIONS`, except
//! `POST /v1/graphql`, which is a read ([`is_write`]): Plexus's GraphQL has
//! no mutations.
//!
//! A page of an origin that may not write learns it from the
//! [`REFUSED_ORIGIN_HEADER`] of any answer (the browser hides why its write
//! failed), and the server logs each refused origin, at most once a minute
//! ([`RefusalLog`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ORIGIN, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use governor::middleware::NoOpMiddleware;
use tower::Layer as _;
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, Cors, CorsLayer, ExposeHeaders};

use crate::AppError;
use crate::serve::{App, client_addr};
pub use plexus_core::wire::REFUSED_ORIGIN_HEADER;

/// The path of GraphQL queries: a `POST` that only reads.
pub const GRAPHQL_PATH: &str = "/v1/graphql";

/// The default of `--rate-limit`: write calls per second per client address.
pub const DEFAULT_RATE_LIMIT: u32 = 50;
/// The default of `--rate-burst`.
pub const DEFAULT_RATE_BURST: u32 = 100;

/// The flags of the write policy, shared by both servers.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Write calls allowed per second per client address (IPv6: per /64),
    /// on average; more get 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "PLEXUS_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,

    /// Write calls a client address may make at once before --rate-limit
    /// applies.
    #[arg(long, env = "PLEXUS_RATE_BURST", default_value_t = DEFAULT_RATE_BURST)]
    pub rate_burst: u32,

    /// A web page of this origin (e.g. https://app.example) may write;
    /// repeatable or comma-separated. Reads are open to any origin; writes
    /// from an origin not named here get 403. Default: none.
    #[arg(
        long = "cors-origin",
        env = "PLEXUS_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origin: Vec<String>,
}

impl Default for PolicyArgs {
    fn default() -> Self {
        Self {
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_burst: DEFAULT_RATE_BURST,
            cors_origin: Vec::new(),
        }
    }
}

/// Whether a request of `method` on `path` changes state.
pub fn is_write(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => false,
        Method::POST => path != GRAPHQL_PATH,
        _ => true,
    }
}

/// The key of the rate limit (and of every bound per client address): the
/// client's address, an IPv6 address by its /64, which one host usually
/// holds whole; an IPv4-mapped IPv6 address as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let high = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(high))
            }
        },
        v4 => v4,
    }
}

/// The [`client_key`] of the request the current task serves; one that did
/// not come through [`crate::serve`] (an in-process test) has `0.0.0.0`.
pub fn request_client_key() -> IpAddr {
    client_key(client_addr().map_or(IpAddr::V4([0, 0, 0, 0].into()), |a| a.ip()))
}

/// The rate limit's key: [`request_client_key`].
#[derive(Debug, Clone, Copy)]
pub struct ClientKey;

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, _: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(request_client_key())
    }
}

/// A service behind a rate limit of `K`'s keys ([`rate_limit`]).
pub type Governed<K, S> = tower_governor::governor::Governor<K, NoOpMiddleware, S, Body>;

/// Sends writes through the rate limit (when it is on) and reads around it.
#[derive(Clone)]
pub struct WritesThrough<S> {
    plain: S,
    governed: Option<Governed<ClientKey, S>>,
}

impl<S> tower::Service<Request> for WritesThrough<S>
where
    S: App,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, <Governed<ClientKey, S> as tower::Service<Request>>::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match &mut self.governed {
            Some(governed) if is_write(request.method(), request.uri().path()) => {
                Either::Right(governed.call(request))
            }
            _ => Either::Left(self.plain.call(request)),
        }
    }
}

/// The 429 of the rate limit, naming the bound.
fn too_many(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let wait = wait_time.max(1);
            let mut response = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many calls from this address (--rate-limit, --rate-burst): retry in {wait} s"
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(wait));
            response
        }
        other => AppError::internal(other).into_response(),
    }
}

fn origin_allowed(allowed: &[HeaderValue], origin: &HeaderValue) -> bool {
    allowed.iter().any(|a| a == origin)
}

/// How often the log names one refused origin at most.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Refused origins the log remembers at most (each up to
/// [`REFUSAL_LOG_ORIGIN_BYTES`]); past that, within a minute, it says how
/// many more it did not name instead.
pub const REFUSAL_LOG_ORIGINS: usize = 1024;
/// The longest origin the log keeps and prints (a longer one is cut).
pub const REFUSAL_LOG_ORIGIN_BYTES: usize = 256;

/// What [`RefusalLog::note`] says to log.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Name this origin (the first refusal of it in [`REFUSAL_LOG_EVERY`]).
    Name(String),
    /// Say that this many more origins were refused and not named, the log
    /// being full of ones named within the last minute.
    Unnamed(u64),
    /// Nothing to log now.
    Quiet,
}

/// The log of refused origins: each origin at most once per
/// [`REFUSAL_LOG_EVERY`], in at most [`REFUSAL_LOG_ORIGINS`] entries. Time
/// comes in as an argument.
#[derive(Debug, Default)]
pub struct RefusalLog {
    inner: Mutex<RefusalState>,
}

#[derive(Debug, Default)]
struct RefusalState {
    named: HashMap<String, Instant>,
    unnamed: u64,
    unnamed_since: Option<Instant>,
    /// When full entries were last swept (at most once a second: a flood of
    /// origins costs no sweep per request).
    swept_at: Option<Instant>,
}

impl RefusalLog {
    /// Notes a refusal of `origin` at `now`; what to log.
    pub fn note(&self, origin: &[u8], now: Instant) -> Refusal {
        let mut origin = String::from_utf8_lossy(origin).into_owned();
        if origin.len() > REFUSAL_LOG_ORIGIN_BYTES {
            let mut end = REFUSAL_LOG_ORIGIN_BYTES;
            while !origin.is_char_boundary(end) {
                end -= 1;
            }
            origin.truncate(end);
        }
        let recent = |at: &Instant| now.saturating_duration_since(*at) < REFUSAL_LOG_EVERY;
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if state.named.get(&origin).is_some_and(recent) {
            return Refusal::Quiet;
        }
        if state.named.len() >= REFUSAL_LOG_ORIGINS
            && !state.named.contains_key(&origin)
            && state
                .swept_at
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1))
        {
            state.swept_at = Some(now);
            state.named.retain(|_, at| recent(at));
        }
        if state.named.len() < REFUSAL_LOG_ORIGINS || state.named.contains_key(&origin) {
            state.named.insert(origin.clone(), now);
            return Refusal::Name(origin);
        }
        state.unnamed += 1;
        match state.unnamed_since {
            Some(since) if recent(&since) => Refusal::Quiet,
            _ => {
                state.unnamed_since = Some(now);
                Refusal::Unnamed(std::mem::take(&mut state.unnamed))
            }
        }
    }

    /// Notes a refusal of `origin` now, and logs it if [`Self::note`] says so.
    fn log(&self, origin: &HeaderValue) {
        match self.note(origin.as_bytes(), Instant::now()) {
            Refusal::Name(origin) => tracing::warn!(
                %origin,
                "refused a write from a web page of origin {origin}: it is not one of --cors-origin \
                 (logged once a minute per origin)"
            ),
            Refusal::Unnamed(count) => tracing::warn!(
                count,
                "refused writes from {count} more web page origins, not named: more than \
                 {REFUSAL_LOG_ORIGINS} origins were refused within a minute (--cors-origin)"
            ),
            Refusal::Quiet => {}
        }
    }
}

/// The method a request is, or (for a CORS preflight) asks to be.
fn intended_method(parts: &Parts) -> Method {
    if parts.method == Method::OPTIONS
        && let Some(asked) = parts
            .headers
            .get("access-control-request-method")
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
    {
        return asked;
    }
    parts.method.clone()
}

/// `inner` behind the rate limit of `args` (`--rate-limit`,
/// `--rate-burst`), per key of `key`: 429 with `Retry-After` past it.
/// `None` when the limit is off (`--rate-limit 0`). Spawns the task that
/// forgets idle keys (call inside a tokio runtime).
pub fn rate_limit<K, S>(inner: S, args: &PolicyArgs, key: K) -> Option<Governed<K, S>>
where
    K: KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync + 'static,
{
    if args.rate_limit == 0 {
        return None;
    }
    let period = Duration::from_nanos(1_000_000_000 / u64::from(args.rate_limit));
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(args.rate_burst.max(1))
        .key_extractor(key)
        .finish()?;
    let config = Arc::new(config);
    // The limiter keeps a state per key: forget idle ones.
    let limiter = Arc::clone(config.limiter());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
    Some(
        tower_governor::GovernorLayer::new(config)
            .error_handler(too_many)
            .layer(inner),
    )
}

/// Wraps `inner` (a `Router`, or layers around one) with the write policy
/// of `args`, as one typed service (no boxed future per layer): CORS (reads
/// from any origin; preflights of writes answered only for the named
/// origins), 403
/// for a write that carries another `Origin` (a browser sends a simple
/// `POST` without a preflight), [`REFUSED_ORIGIN_HEADER`] on every answer to
/// such an origin (exposed to pages with the headers of `expose`), each
/// refused origin logged ([`RefusalLog`]), and the rate limit on writes.
pub fn guard_writes<S: App>(inner: S, args: &PolicyArgs, expose: &[&'static str]) -> Policy<S> {
    let allowed: Arc<[HeaderValue]> = args
        .cors_origin
        .iter()
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    let limited = WritesThrough {
        governed: rate_limit(inner.clone(), args, ClientKey),
        plain: inner,
    };
    let refusals = Arc::new(RefusalLog::default());
    let for_cors = Arc::clone(&allowed);
    let cors_refusals = Arc::clone(&refusals);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            let write = is_write(&intended_method(parts), parts.uri.path());
            let allowed = !write || origin_allowed(&for_cors, origin);
            // The preflight of a refused write ends here (a write sent
            // without one is logged by `Policy`).
            if !allowed && parts.method == Method::OPTIONS {
                cors_refusals.log(origin);
            }
            allowed
        }))
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(ExposeHeaders::list(
            expose
                .iter()
                .chain(&[REFUSED_ORIGIN_HEADER])
                .map(|h| axum::http::HeaderName::from_static(h)),
        ))
        .max_age(Duration::from_secs(600));
    Policy {
        cors: cors.layer(limited.clone()),
        plain: limited,
        allowed,
        refusals,
    }
}

/// The write policy in front of the routes: a request with an `Origin`
/// (a browser's), a `GET`/`HEAD` (a cacheable answer, whose `Vary` must
/// be right) or an `OPTIONS` goes through CORS, and a write from a page of
/// another origin gets 403 (logged in `refusals`); any other request (a
/// peer's, a script's: no `Origin`, not cacheable) needs no CORS headers
/// and skips them. Every answer to a page of a refused origin carries
/// [`REFUSED_ORIGIN_HEADER`].
#[derive(Clone)]
pub struct Policy<S> {
    plain: WritesThrough<S>,
    cors: Cors<WritesThrough<S>>,
    allowed: Arc<[HeaderValue]>,
    refusals: Arc<RefusalLog>,
}

type PlainFuture<S> = <WritesThrough<S> as tower::Service<Request>>::Future;
type CorsFuture<S> = <Cors<WritesThrough<S>> as tower::Service<Request>>::Future;

impl<S: App> tower::Service<Request> for Policy<S>
where
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        Either<PlainFuture<S>, CorsFuture<S>>,
        BoxFuture<'static, Result<Response, Infallible>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures::FutureExt as _;
        let method = request.method();
        let Some(origin) = request.headers().get(ORIGIN) else {
            let answer = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                Either::Right(self.cors.call(request))
            } else {
                Either::Left(self.plain.call(request))
            };
            return Either::Left(answer);
        };
        if origin_allowed(&self.allowed, origin) {
            return Either::Left(Either::Right(self.cors.call(request)));
        }
        let origin = origin.clone();
        if *method != Method::OPTIONS && is_write(method, request.uri().path()) {
            self.refusals.log(&origin);
            let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let mut response = AppError::new(
                StatusCode::FORBIDDEN,
                format!("a page of origin {text} may not write here (--cors-origin)"),
            )
            .into_response();
            response.headers_mut().insert(REFUSED_ORIGIN_HEADER, origin);
            return Either::Right(std::future::ready(Ok(response)).boxed());
        }
        let answer = self.cors.call(request);
        Either::Right(
            async move {
                let mut response = answer.await?;
                response.headers_mut().insert(REFUSED_ORIGIN_HEADER, origin);
                Ok(response)
            }
            .boxed(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_queries_are_reads_other_posts_are_writes() {
        assert!(!is_write(&Method::GET, "/v1/things"));
        assert!(!is_write(&Method::OPTIONS, "/v1/things"));
        assert!(!is_write(&Method::POST, GRAPHQL_PATH));
        assert!(is_write(&Method::POST, "/v1/things"));
        assert!(is_write(&Method::POST, "/v1/graphql/x"));
        assert!(is_write(&Method::PUT, "/p2p/genesis"));
        assert!(is_write(&Method::DELETE, "/peers/x"));
    }

    #[test]
    fn the_refusal_log_names_an_origin_once_a_minute() {
        let log = RefusalLog::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            log.note(b"http://a.example", at(0)),
            Refusal::Name("http://a.example".into())
        );
        assert_eq!(log.note(b"http://a.example", at(1)), Refusal::Quiet);
        assert_eq!(log.note(b"http://a.example", at(59)), Refusal::Quiet);
        assert_eq!(
            log.note(b"http://b.example", at(59)),
            Refusal::Name("http://b.example".into())
        );
        assert_eq!(
            log.note(b"http://a.example", at(60)),
            Refusal::Name("http://a.example".into())
        );
        assert_eq!(log.note(b"http://b.example", at(61)), Refusal::Quiet);
        // A long origin is cut, on a character boundary.
        let long = format!("http://{}.example", "\u{e9}".repeat(300));
        let Refusal::Name(named) = log.note(long.as_bytes(), at(61)) else {
            panic!("the long origin was not named");
        };
        assert!(named.len() <= REFUSAL_LOG_ORIGIN_BYTES && long.starts_with(&named));
    }

    #[test]
    fn the_refusal_log_holds_a_bounded_number_of_origins() {
        let log = RefusalLog::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for i in 0..REFUSAL_LOG_ORIGINS {
            let origin = format!("http://{i}.example");
            assert_eq!(log.note(origin.as_bytes(), at(0)), Refusal::Name(origin));
        }
        // Full of origins named this minute: the next ones are counted, and
        // said once a minute.
        assert_eq!(log.note(b"http://x.example", at(1)), Refusal::Unnamed(1));
        assert_eq!(log.note(b"http://y.example", at(2)), Refusal::Quiet);
        assert_eq!(log.note(b"http://z.example", at(3)), Refusal::Quiet);
        assert_eq!(log.note(b"http://0.example", at(4)), Refusal::Quiet);
        assert_eq!(
            log.inner.lock().expect("lock").named.len(),
            REFUSAL_LOG_ORIGINS
        );
        // A minute on, the old entries make room.
        assert_eq!(
            log.note(b"http://x.example", at(61)),
            Refusal::Name("http://x.example".into())
        );
        assert!(log.inner.lock().expect("lock").named.len() <= REFUSAL_LOG_ORIGINS);
        assert_eq!(
            log.note(b"http://y.example", at(62)),
            Refusal::Name("http://y.example".into())
        );
    }
}
