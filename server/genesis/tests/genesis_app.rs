//! The genesis router in-process, with `oneshot` (no socket).
#![allow(clippy::unwrap_used)]

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use plexus_core::wire::Contextionary;
use plexus_genesis::{Genesis, Settings, app};
use serde_json::Value;
use tower::ServiceExt;

fn genesis() -> std::sync::Arc<Genesis> {
    let settings = Settings::new(Contextionary {
        url: "http://c.example/c.bin".into(),
        hash: "sha256:abc".parse().unwrap(),
    });
    Genesis::start(settings, None).unwrap()
}

async fn call(request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app(genesis()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let (status, headers, body) = call(get("/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/peers/register",
        "/peers/{peerId}/ping",
        "/peers/{peerId}",
        "/peers",
        "/peers/watch",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
}

#[tokio::test]
async fn list_carries_its_version_and_cors_exposes_it() {
    let request = Request::get("/peers")
        .header("origin", "http://dash.example")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(request).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-plexus-peers-version"], "0");
    // Reads are open to any origin.
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://dash.example"
    );
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-plexus-peers-version")
    );
    assert_eq!(body, b"[]");
}

fn preflight(origin: &str, method: &str, path: &str) -> Request<Body> {
    Request::options(path)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_lets_named_origins_write_and_others_only_read() {
    let mut settings = Settings::new(Contextionary {
        url: "http://c.example/c.bin".into(),
        hash: "sha256:abc".parse().unwrap(),
    });
    settings.policy.cors_origin = vec!["http://dash.example".into()];
    let app = app(Genesis::start(settings, None).unwrap());
    // A named origin may write: its preflight allows the method and headers.
    let response = app
        .clone()
        .oneshot(preflight("http://dash.example", "POST", "/peers/register"))
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://dash.example"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    // Another origin's preflight of a write is not allowed...
    let response = app
        .clone()
        .oneshot(preflight("http://evil.example", "DELETE", "/peers/x"))
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // ...nor its write without a preflight (a simple POST), before any handler.
    let response = app
        .clone()
        .oneshot(
            Request::post("/peers/register")
                .header("origin", "http://evil.example")
                .header("content-type", "text/plain")
                .body(Body::from(
                    r#"{"peerName":"X","peerUri":"http://10.0.0.1"}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--cors-origin")
    );
    // Its reads are allowed.
    let response = app
        .oneshot(preflight("http://evil.example", "GET", "/peers"))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://evil.example"
    );
}

#[tokio::test]
async fn metrics_and_health() {
    let (status, headers, body) = call(get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    for name in [
        "plexus_genesis_peers 0",
        "plexus_genesis_registrations_total 0",
        "plexus_genesis_pings_total 0",
        "plexus_genesis_evictions_total 0",
        "plexus_genesis_broadcasts_sent_total 0",
        "plexus_genesis_broadcasts_failed_total 0",
        "plexus_genesis_holding 0",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    let (status, _, body) = call(get("/healthz")).await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn an_empty_ping_body_is_accepted_as_no_hash_and_unknown_ids_get_404() {
    let request = Request::post("/peers/00000000-0000-0000-0000-000000000001/ping")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(request).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("register again")
    );
}

/// The ping, matched before the router, refuses as the router's routes
/// do: JSON errors, 405 with `Allow`, 400 for a bad id, 413 past the body
/// limit; a path that only looks like a ping's goes on to the router.
#[tokio::test]
async fn the_ping_route_refuses_like_the_others() {
    let id = "00000000-0000-0000-0000-000000000001";
    let error = |body: &[u8]| -> String {
        let error: Value = serde_json::from_slice(body).unwrap();
        error["error"]["message"].as_str().unwrap().to_owned()
    };
    let (status, headers, body) = call(get(&format!("/peers/{id}/ping"))).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert!(error(&body).contains("POST"), "{}", error(&body));

    let request = Request::post("/peers/not-a-uuid/ping")
        .body(Body::from("{}"))
        .unwrap();
    let (status, headers, body) = call(request).await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/json");
    assert!(error(&body).contains("peer id"), "{}", error(&body));

    // Over the 64 KiB default, declared or not.
    let big = format!(r#"{{"schemaHash":"{}"}}"#, "a".repeat(70 * 1024));
    let request = Request::post(format!("/peers/{id}/ping"))
        .body(Body::from(big.clone()))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 413, "{}", error(&body));
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8 * 1024)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let request = Request::post(format!("/peers/{id}/ping"))
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 413, "{}", error(&body));

    // A body in several frames is read whole: this one parses, and the id
    // is unknown.
    let chunks: Vec<Result<&str, std::io::Error>> =
        vec![Ok(r#"{"schema"#), Ok(r#"Hash":"#), Ok(r#""abc"}"#)];
    let request = Request::post(format!("/peers/{id}/ping"))
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 404, "{}", error(&body));
    let request = Request::post(format!("/peers/{id}/ping"))
        .body(Body::from(r#"{"schemaHash":"#))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 400, "{}", error(&body));
    // Bytes that are not UTF-8 are refused, even in a field no one reads;
    // text beyond ASCII is not.
    let request = Request::post(format!("/peers/{id}/ping"))
        .body(Body::from(&b"{\"schemaHash\":\"abc\",\"x\":\"\xff\"}"[..]))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 400, "{}", error(&body));
    assert!(error(&body).contains("not UTF-8"), "{}", error(&body));
    let request = Request::post(format!("/peers/{id}/ping"))
        .body(Body::from(r#"{"schemaHash":"abc","x":"é"}"#))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 404, "{}", error(&body));

    for path in [format!("/peers/{id}/ping/"), format!("/peers/{id}/x/ping")] {
        let request = Request::post(&path).body(Body::from("{}")).unwrap();
        let (status, headers, _) = call(request).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
    }
}

#[tokio::test]
async fn ssrf_refusal_in_process() {
    let request = Request::post("/peers/register")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"peerName":"Meta","peerUri":"http://169.254.169.254"}"#,
        ))
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, 422);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("169.254.0.0/16")
    );
}
