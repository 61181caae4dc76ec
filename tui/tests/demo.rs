//! The demo app server of `--devnet` on a real socket: content types, the
//! genesis it points the page at, nothing served from outside its folders,
//! and the refusal (with the build command) when the modules are not built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use plexus_tui::demo::{BUILD_COMMAND, CONFIG_PATH, DemoFiles, DemoListener};

const WASM: &[u8] = b"\0asm\x01\0\0\0";

fn write(dir: &Path, file: &str, body: &[u8]) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

fn built_demo(dir: &Path) {
    write(dir, "www/index.html", b"<!doctype html><title>demo</title>");
    write(dir, "www/main.js", b"import './x.js';");
    write(dir, "pkg/peer/index.js", b"export {};");
    write(dir, "pkg/peer/plexus_wasm_peer_bg.wasm", WASM);
    write(dir, "secret.txt", b"not for the page");
}

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn the_demo_app_serves_its_page_modules_and_genesis() {
    let dir = tempfile::tempdir().unwrap();
    built_demo(dir.path());
    let files = DemoFiles::find(dir.path()).unwrap();
    let listener = DemoListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let origin = listener.origin();
    assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");
    assert!(!origin.ends_with(":0"), "the OS picked a port: {origin}");
    let genesis = "http://127.0.0.1:8111";
    let (url, server) = listener.serve(&files, genesis);
    assert_eq!(url, format!("{origin}/"));

    let (status, kind, body) = get(&url).await;
    assert_eq!((status, kind.as_str()), (200, "text/html"));
    assert!(body.starts_with(b"<!doctype html>"));
    let (status, kind, _) = get(&format!("{origin}/main.js")).await;
    assert_eq!((status, kind.as_str()), (200, "text/javascript"));
    let (status, kind, _) = get(&format!("{origin}/pkg/peer/index.js")).await;
    assert_eq!((status, kind.as_str()), (200, "text/javascript"));
    let (status, kind, body) = get(&format!("{origin}/pkg/peer/plexus_wasm_peer_bg.wasm")).await;
    assert_eq!((status, kind.as_str()), (200, "application/wasm"));
    assert_eq!(body, WASM);

    let (status, kind, body) = get(&format!("{origin}{CONFIG_PATH}")).await;
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["genesis"], genesis);

    // Only www/ and pkg/ are served: not the folder above them.
    assert_eq!(get(&format!("{origin}/secret.txt")).await.0, 404);
    assert_eq!(get(&format!("{origin}/pkg/..%2fsecret.txt")).await.0, 404);
    assert_eq!(get(&format!("{origin}/www/index.html")).await.0, 404);
    server.abort();
}

#[test]
fn an_unbuilt_demo_app_is_refused_with_the_command_that_builds_it() {
    let dir = tempfile::tempdir().unwrap();
    built_demo(dir.path());
    std::fs::remove_file(dir.path().join("pkg/peer/plexus_wasm_peer_bg.wasm")).unwrap();
    let error = format!("{:#}", DemoFiles::find(dir.path()).unwrap_err());
    assert!(error.contains(BUILD_COMMAND), "{error}");
    assert!(error.contains("plexus_wasm_peer_bg.wasm"), "{error}");
    assert!(!error.contains("index.js"), "index.js is there: {error}");
}
