//! GraphiQL, served by the peer itself: the page a browser's
//! `GET /v1/graphql` gets, and every file it loads, under `/v1/graphiql/`.
//!
//! GraphiQL, React and ReactDOM are compiled into the binary at pinned
//! versions (`server/peer/assets/graphiql/`, whose README says where they come
//! from and how to update them), so the page works in a network without
//! internet access. The page names no other host, and its
//! `Content-Security-Policy` lets the browser load nothing from one.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use plexus_server::AppError;

/// Where the files are served.
pub const PREFIX: &str = "/v1/graphiql/";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Browsers keep a file whose name holds its version for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page and its start script change with the peer: asked again each time.
const NO_CACHE: &str = "no-cache";

/// What the page may load: only this peer's files, inline styles (GraphiQL
/// sets them) and `data:` fonts and images (its CSS inlines its fonts).
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
    font-src 'self' data:; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// One file under [`PREFIX`].
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    cache: &'static str,
}

/// A file of `server/peer/assets/graphiql/`, embedded.
macro_rules! vendored {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/graphiql/", $name)),
            cache: IMMUTABLE,
        }
    };
}

/// Renders GraphiQL into the page, pointed at the path the page came from.
/// A file rather than an inline script, so the CSP allows no inline script.
const START: &str = "const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });\n\
ReactDOM.createRoot(document.getElementById('graphiql'))\n  \
.render(React.createElement(GraphiQL, { fetcher }));\n";

/// Every file under [`PREFIX`] (the vendored ones are every file of the
/// assets folder but its README, `fetch.sh` and `SHA256SUMS`: a test checks).
const ASSETS: &[Asset] = &[
    vendored!("graphiql-3.9.0.min.css", CSS),
    vendored!("react-18.3.1.production.min.js", JS),
    vendored!("react-dom-18.3.1.production.min.js", JS),
    vendored!("graphiql-3.9.0.min.js", JS),
    vendored!("graphiql-3.9.0.LICENSE.txt", TEXT),
    vendored!("react-18.3.1.LICENSE.txt", TEXT),
    vendored!("react-dom-18.3.1.LICENSE.txt", TEXT),
    Asset {
        name: "start.js",
        content_type: JS,
        body: START.as_bytes(),
        cache: NO_CACHE,
    },
];

/// The GraphiQL page: its styles, licences and scripts, all under [`PREFIX`].
pub fn page() -> Response {
    let mut head = String::new();
    let mut scripts = String::new();
    for asset in ASSETS {
        let href = format!("{PREFIX}{}", asset.name);
        if asset.content_type == CSS {
            head.push_str(&format!("<link rel=\"stylesheet\" href=\"{href}\">\n"));
        } else if asset.content_type == TEXT {
            head.push_str(&format!("<link rel=\"license\" href=\"{href}\">\n"));
        } else {
            scripts.push_str(&format!("<script src=\"{href}\"></script>\n"));
        }
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Plexus peer: GraphiQL</title>\n{head}</head>\n<body style=\"margin:0\">\n\
         <div id=\"graphiql\" style=\"height:100vh\"></div>\n{scripts}</body>\n</html>\n"
    );
    let mut response = axum::response::Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// `GET /v1/graphiql/{file}`: one of the page's files, else 404.
pub async fn asset(Path(file): Path<String>) -> Result<Response, AppError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| AppError::not_found(format!("no GraphiQL file {file:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, asset.cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::{PeerDb, PeerState, router};

    /// The values of every `src="…"` and `href="…"` attribute of `html`.
    fn references(html: &str) -> Vec<String> {
        let mut found = Vec::new();
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attribute) {
                let rest = &html[at + attribute.len()..];
                found.push(rest[..rest.find('"').expect("closing quote")].to_owned());
            }
        }
        found
    }

    async fn get(
        app: &axum::Router,
        uri: &str,
        accept: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let request = Request::get(uri)
            .header("accept", accept)
            .body(Body::empty())
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[tokio::test]
    async fn every_file_the_page_references_is_served_by_the_peer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = router(PeerState::standalone(Arc::new(
            PeerDb::open(dir.path()).expect("open"),
        )));
        let (status, headers, page) = get(&app, "/v1/graphql", "text/html").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let page = String::from_utf8(page).unwrap();
        assert!(!page.contains("//"), "the page names another host: {page}");
        let references = references(&page);
        assert_eq!(references.len(), ASSETS.len(), "{page}");
        for reference in references {
            let name = reference
                .strip_prefix(PREFIX)
                .unwrap_or_else(|| panic!("{reference} is not one of the peer's GraphiQL files"));
            let asset = ASSETS.iter().find(|a| a.name == name).unwrap();
            let (status, headers, body) = get(&app, &reference, "*/*").await;
            assert_eq!(status, StatusCode::OK, "{reference}");
            assert_eq!(
                headers[header::CONTENT_TYPE],
                asset.content_type,
                "{reference}"
            );
            assert_eq!(headers[header::CACHE_CONTROL], asset.cache, "{reference}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body, asset.body, "{reference}");
        }
        let (status, _, _) = get(&app, "/v1/graphiql/graphiql.min.js", "*/*").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_embedded_files_are_the_assets_folder() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/graphiql");
        let mut on_disk: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !matches!(n.as_str(), "README.md" | "fetch.sh" | "SHA256SUMS"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS
            .iter()
            .filter(|a| a.cache == IMMUTABLE)
            .map(|a| a.name.to_owned())
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "ASSETS and {} differ", folder.display());
        // fetch.sh checks each file against SHA256SUMS, which must list them all.
        let sums = std::fs::read_to_string(folder.join("SHA256SUMS")).unwrap();
        let mut listed: Vec<String> = sums
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, embedded, "SHA256SUMS lists other files");
    }
}
