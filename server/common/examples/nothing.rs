//! The floor of the ping benchmark (BENCHMARKS.md): an axum server that
//! answers every request 200 with an empty body and does nothing else, on
//! the runtime and hyper stack genesis uses. Prints `listening on
//! http://HOST:PORT` like the servers.
//!
//! ```sh
//! cargo run --release -p plexus-server --example nothing -- 127.0.0.1:0
//! ```

use axum::Router;
use axum::http::StatusCode;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let (listener, _) = plexus_server::bind(addr, None).await?;
    let app = Router::new().fallback(|| async { StatusCode::OK });
    axum::serve(listener.tcp, app).await?;
    Ok(())
}
