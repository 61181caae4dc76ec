//! The demo app of `--devnet`: `wasm/www/` and the built wasm modules
//! (`wasm/pkg/`) served over HTTP, so that a browser tab opened at its URL
//! joins the devnet as a peer.
//!
//! | path | answer |
//! |---|---|
//! | `/`, `/main.js`, … | the files of `{dir}/www/` (`index.html` for `/`) |
//! | `/pkg/…` | the files of `{dir}/pkg/` (what `wasm/build.sh` builds) |
//! | `/plexus-config.json` | `{"genesis": URL}`: the devnet's genesis, which the page reads when its URL has no `?genesis=` |
//!
//! Files are served by tower-http's `ServeDir` (content types from the file
//! extension: `application/wasm`, `text/javascript`, `text/html`); nothing
//! outside those two folders is reachable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::services::ServeDir;

/// Where the demo app is looked for unless `--demo-dir` says otherwise: the
/// `wasm/` folder of the source tree `plexus-dash` was built from.
pub const DEFAULT_DEMO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wasm");

/// Where the page reads the devnet's genesis URL.
pub const CONFIG_PATH: &str = "/plexus-config.json";

/// The command that builds the wasm modules the page loads.
pub const BUILD_COMMAND: &str = "bash wasm/build.sh";

/// The files the page cannot work without, relative to the demo folder.
const REQUIRED: [&str; 4] = [
    "www/index.html",
    "www/main.js",
    "pkg/peer/index.js",
    "pkg/peer/plexus_wasm_peer_bg.wasm",
];

/// A demo folder with the page and the built modules in it.
#[derive(Clone, Debug)]
pub struct DemoFiles {
    www: PathBuf,
    pkg: PathBuf,
}

impl DemoFiles {
    /// Checks that `dir` holds the page (`www/`) and the built peer module
    /// (`pkg/peer/`); the error names what is missing and how to build it.
    pub fn find(dir: &Path) -> anyhow::Result<Self> {
        let missing: Vec<String> = REQUIRED
            .iter()
            .map(|file| dir.join(file))
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "the demo app is not built (missing {}): build it with `{BUILD_COMMAND}` \
                 in the source tree, or point --demo-dir at a folder holding www/ and pkg/",
                missing.join(", ")
            );
        }
        Ok(Self {
            www: dir.join("www"),
            pkg: dir.join("pkg"),
        })
    }

    /// The routes of the demo app, pointing the page at `genesis`.
    pub fn router(&self, genesis: &str) -> Router {
        let config = serde_json::json!({ "genesis": genesis }).to_string();
        Router::new()
            .route(
                CONFIG_PATH,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        config,
                    )
                        .into_response()
                }),
            )
            .nest_service("/pkg", ServeDir::new(&self.pkg))
            .fallback_service(ServeDir::new(&self.www))
    }
}

/// A bound listener for the demo app; its origin is known before genesis
/// starts, so that genesis can let that origin write (`--cors-origin`).
pub struct DemoListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl DemoListener {
    /// Binds `addr` (port 0: one the OS picks).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the demo app's address {addr}"))?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The page's origin, as a browser sends it (`http://IP:PORT`; an
    /// unspecified address is reached as loopback).
    pub fn origin(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }

    /// Serves `files` until the task is aborted or the runtime ends, with
    /// the connection bounds genesis and the peer have (at their defaults:
    /// header-read, body, request and idle timeouts, at most 1,024
    /// connections); returns the page's URL and the server's task.
    pub fn serve(
        self,
        files: &DemoFiles,
        genesis: &str,
    ) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
        let url = format!("{}/", self.origin());
        let app = files.router(genesis);
        let task = tokio::spawn(async move {
            let limits = plexus_server::ConnectionArgs::default();
            plexus_server::serve(self.listener, app, &limits, std::future::pending()).await
        });
        (url, task)
    }
}
