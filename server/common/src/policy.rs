//! Who may write: a rate limit per client address on write calls (429 with
//! `Retry-After`, by `tower_governor`) and CORS that keeps reads open to any
//! origin and lets only the origins named with `--cors-origin` write.
//!
//! A write is any request but `GET`, `HEAD` and `OPTIONS`, except
//! `POST /v1/graphql`, which is a read ([`is_write`]): Plexus's GraphQL has
//! no mutations.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::header::{ORIGIN, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;
use tower::util::Oneshot;
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::AppError;
use crate::serve::client_addr;

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

/// The [`client_key`] of a request; one that did not come through
/// [`crate::serve`] (an in-process test) has `0.0.0.0`.
pub fn request_client_key<T>(request: &axum::http::Request<T>) -> IpAddr {
    client_key(client_addr(request).map_or(IpAddr::V4([0, 0, 0, 0].into()), |a| a.ip()))
}

/// The rate limit's key: [`request_client_key`].
#[derive(Debug, Clone, Copy)]
struct ClientKey;

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(request_client_key(request))
    }
}

/// Sends writes through the rate limit and reads around it.
#[derive(Clone)]
struct WritesThrough {
    plain: Router,
    governed: Router,
}

impl tower::Service<Request> for WritesThrough {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Oneshot<Router, Request>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let router = if is_write(request.method(), request.uri().path()) {
            self.governed.clone()
        } else {
            self.plain.clone()
        };
        router.oneshot(request)
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

/// `router` behind the rate limit of `args` (`--rate-limit`,
/// `--rate-burst`), per key of `key`: 429 with `Retry-After` past it.
/// `None` when the limit is off (`--rate-limit 0`). Spawns the task that
/// forgets idle keys (call inside a tokio runtime).
pub fn rate_limit<K>(router: Router, args: &PolicyArgs, key: K) -> Option<Router>
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
    Some(router.layer(tower_governor::GovernorLayer::new(config).error_handler(too_many)))
}

/// Wraps `router` with the write policy of `args`: CORS (reads from any
/// origin; preflights of writes answered only for the named origins), 403
/// for a write that carries another `Origin` (a browser sends a simple
/// `POST` without a preflight), and the rate limit on writes.
pub fn guard_writes(router: Router, args: &PolicyArgs, expose: &[&'static str]) -> Router {
    let allowed: Arc<[HeaderValue]> = args
        .cors_origin
        .iter()
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    let limited = match rate_limit(router.clone(), args, ClientKey) {
        Some(governed) => Router::new().fallback_service(WritesThrough {
            plain: router,
            governed,
        }),
        None => router,
    };
    let for_cors = Arc::clone(&allowed);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            !is_write(&intended_method(parts), parts.uri.path())
                || origin_allowed(&for_cors, origin)
        }))
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(ExposeHeaders::list(
            expose
                .iter()
                .map(|h| axum::http::HeaderName::from_static(h)),
        ))
        .max_age(Duration::from_secs(600));
    Router::new().fallback_service(Policy {
        plain: limited.clone(),
        cors: limited.layer(cors),
        allowed,
    })
}

/// The write policy in front of the routes: a request with an `Origin`
/// (a browser's), a `GET`/`HEAD` (a cacheable answer, whose `Vary` must
/// be right) or an `OPTIONS` goes through CORS, and a write from a page of
/// another origin gets 403; any other request (a peer's, a script's: no
/// `Origin`, not cacheable) needs no CORS headers and skips them.
#[derive(Clone)]
struct Policy {
    plain: Router,
    cors: Router,
    allowed: Arc<[HeaderValue]>,
}

impl tower::Service<Request> for Policy {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        <Router as tower::Service<Request>>::Future,
        std::future::Ready<Result<Response, std::convert::Infallible>>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method();
        let Some(origin) = request.headers().get(ORIGIN) else {
            let router = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                &mut self.cors
            } else {
                &mut self.plain
            };
            return futures::future::Either::Left(router.call(request));
        };
        if *method != Method::OPTIONS
            && is_write(method, request.uri().path())
            && !origin_allowed(&self.allowed, origin)
        {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            return futures::future::Either::Right(std::future::ready(Ok(AppError::new(
                StatusCode::FORBIDDEN,
                format!("a page of origin {origin} may not write here (--cors-origin)"),
            )
            .into_response())));
        }
        futures::future::Either::Left(self.cors.call(request))
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
}
