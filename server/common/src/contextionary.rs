//! The contextionary on the servers' side: the default file embedded in
//! both binaries, a file read from disk or downloaded (bounded, its hash
//! checked), and `GET /contextionary`'s answer (cacheable by its hash).

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plexus_core::contextionary::Contextionary;
use plexus_core::wire::ContextionaryHash;

/// The committed default (`data/contextionary/`, docs/peer.md): the 50,000
/// most frequent words of GloVe 6B 50-d, int8.
pub const DEFAULT: &[u8] = include_bytes!("../../../data/contextionary/glove-6b-50d-50k.ctx");

/// The default of `--contextionary-max-bytes` (core's, which the tab
/// peer's download uses too).
pub use plexus_core::contextionary::DEFAULT_MAX_BYTES;

/// The path genesis serves its contextionary at.
pub const PATH: &str = "/contextionary";

/// The default contextionary, parsed.
pub fn default() -> anyhow::Result<Arc<Contextionary>> {
    Ok(Arc::new(Contextionary::parse(DEFAULT.to_vec()).map_err(
        |e| anyhow::anyhow!("the embedded contextionary: {e}"),
    )?))
}

/// Reads and parses the contextionary file at `path`, at most `max` bytes.
pub fn load(path: &Path, max: u64) -> anyhow::Result<Arc<Contextionary>> {
    let size = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read contextionary {}: {e}", path.display()))?
        .len();
    if size > max {
        anyhow::bail!(
            "contextionary {} is {size} bytes, over --contextionary-max-bytes {max}",
            path.display()
        );
    }
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read contextionary {}: {e}", path.display()))?;
    Contextionary::parse(bytes)
        .map(Arc::new)
        .map_err(|e| anyhow::anyhow!("contextionary {}: {e}", path.display()))
}

/// Downloads the contextionary at `url` (no redirects, at most `max`
/// bytes) and parses it; refused unless its hash is `expected` (when given).
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    max: u64,
    expected: Option<&ContextionaryHash>,
) -> anyhow::Result<Arc<Contextionary>> {
    let fail =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot download contextionary {url}: {e}");
    let mut response = client
        .get(url)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| fail(&e))?;
    if !response.status().is_success() {
        return Err(fail(&format!("it answered {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > max) {
        return Err(fail(&format!("over --contextionary-max-bytes {max}")));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(&e))? {
        if bytes.len() as u64 + chunk.len() as u64 > max {
            return Err(fail(&format!("over --contextionary-max-bytes {max}")));
        }
        bytes.extend_from_slice(&chunk);
    }
    let parsed = Contextionary::parse(bytes).map_err(|e| fail(&e))?;
    if let Some(expected) = expected
        && parsed.hash() != expected
    {
        return Err(fail(&format!(
            "its hash is {}, expected {expected}",
            parsed.hash()
        )));
    }
    Ok(Arc::new(parsed))
}

/// A contextionary file as genesis serves it: its bytes shared by every
/// answer, its hash the `ETag`.
#[derive(Clone, Debug)]
pub struct Served {
    /// Its hash.
    pub hash: ContextionaryHash,
    bytes: axum::body::Bytes,
}

impl Served {
    /// The file of `contextionary`.
    pub fn new(contextionary: &Contextionary) -> Self {
        Served {
            hash: contextionary.hash().clone(),
            bytes: axum::body::Bytes::copy_from_slice(contextionary.bytes()),
        }
    }

    /// `GET /contextionary`: the file, with its hash as the `ETag` (a
    /// request with that `If-None-Match` gets 304) and a day of caching.
    pub fn response(&self, headers: &HeaderMap) -> Response {
        let etag = format!("\"{}\"", self.hash.value);
        let tag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
        let cache = [
            (header::ETAG, tag),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ];
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if matches {
            return (StatusCode::NOT_MODIFIED, cache).into_response();
        }
        (
            cache,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            self.bytes.clone(),
        )
            .into_response()
    }
}

/// `GET /contextionary` on a genesis that serves no file: 404.
pub fn not_served() -> Response {
    crate::AppError::not_found(
        "this genesis serves no contextionary file (it names one by --contextionary-url and --contextionary-hash)",
    )
    .into_response()
}
