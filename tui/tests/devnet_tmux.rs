//! End to end: `plexus-dash --devnet` in tmux, read with `capture-pane`.
//!
//! It waits for the three sample peers with their schema hashes, types a
//! Network query that PeerA (the `--peer` of the devnet) sends on to PeerC,
//! sees PeerC's airports, quits, and checks that the devnet was stopped.
//! On the way it fetches the tab peer demo app from the URL the header shows:
//! the page, the wasm modules with their content types, and the devnet's
//! genesis (with its relay on, letting the page's origin write).
//! It needs tmux (scripts/setup.sh installs it) and the built wasm modules
//! (`bash wasm/build.sh`): without them it fails (to leave it out on a
//! machine without tmux: `cargo test -- --skip devnet_in_tmux`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A private tmux server, killed on drop (which hangs up on the dashboard).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    fn text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "e2e", "-l", text])
                .status
                .success(),
            "send-keys -l"
        );
    }

    /// Polls the screen until `ok` holds, for at most `limit`.
    fn wait_for(&self, what: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out after {limit:?} waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The server binaries, built first (a no-op when they are fresh).
fn server_binaries(dash: &Path) -> (PathBuf, PathBuf) {
    let dir = dash.parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "-p",
        "plexus-genesis",
        "-p",
        "plexus-peer",
        "--bins",
    ]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let genesis = dir.join("plexus-genesis");
    let peer = dir.join("plexus-peer");
    let status = build.status().expect("running cargo build");
    if !status.success() {
        assert!(
            genesis.is_file() && peer.is_file(),
            "cargo build -p plexus-genesis -p plexus-peer --bins failed and there are no binaries"
        );
        eprintln!(
            "warning: building plexus-genesis and plexus-peer failed; using the binaries already in {}",
            dir.display()
        );
    }
    (genesis, peer)
}

/// A table row of `name` with a state of alive and a (short) schema hash.
fn row_with_hash(screen: &str, name: &str) -> bool {
    screen.lines().any(|line| {
        line.contains(name)
            && line.contains("alive")
            && line.split_whitespace().any(|word| {
                word.len() >= 12
                    && word
                        .trim_end_matches('│')
                        .chars()
                        .all(|c| c.is_ascii_hexdigit())
            })
    })
}

#[test]
fn devnet_in_tmux_shows_three_peers_and_answers_a_network_query() {
    if Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("tmux is not installed: apt-get install tmux (scripts/setup.sh does)");
    }
    let dash = PathBuf::from(env!("CARGO_BIN_EXE_plexus-dash"));
    let (genesis, peer) = server_binaries(&dash);
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("dash.log");
    let command = format!(
        "'{}' --devnet --genesis-bin '{}' --peer-bin '{}' --log-file '{}'; echo DASH-EXITED $?; sleep 120",
        dash.display(),
        genesis.display(),
        peer.display(),
        log.display()
    );
    let tmux = Tmux {
        socket: format!("plexus-dash-e2e-{}", std::process::id()),
    };
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "160",
        "-y",
        "45",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    let screen = tmux.wait_for(
        "the three peers with their hashes",
        Duration::from_secs(60),
        |s| {
            ["PeerA", "PeerB", "PeerC"]
                .iter()
                .all(|name| row_with_hash(s, name))
        },
    );
    assert!(
        screen.contains("live"),
        "following the watch stream:\n{screen}"
    );
    check_demo_app(&screen);

    // To the query view, where a working example waits; replace it with ours.
    tmux.keys(&["Tab", "Tab"]);
    tmux.wait_for("the query view", Duration::from_secs(10), |s| {
        s.contains("Network query →")
    });
    tmux.keys(&["C-u"]);
    tmux.text("{ Network { Get { PeerC { Things { Airport { code name } } } } } }");
    tmux.wait_for("the planner's approval", Duration::from_secs(30), |s| {
        s.contains("valid: asks PeerC")
    });
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(
        "PeerC's airports, through PeerA",
        Duration::from_secs(30),
        |s| s.contains("Schiphol") && s.contains("CDG"),
    );
    assert!(screen.contains("\"PeerC\""), "{screen}");
    assert!(screen.contains("(0 errors)"), "{screen}");

    // Esc quits from the query view; the devnet is stopped with it.
    tmux.keys(&["Escape"]);
    let screen = tmux.wait_for("the dashboard to exit", Duration::from_secs(60), |s| {
        s.contains("DASH-EXITED")
    });
    assert!(screen.contains("DASH-EXITED 0"), "{screen}");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    for name in ["PeerA", "PeerB", "PeerC", "genesis"] {
        assert!(
            log.lines()
                .any(|l| l.contains("devnet child exited") && l.contains(&format!("name={name}"))),
            "{name} was not stopped cleanly; log:\n{log}"
        );
    }
}

/// The word after `label` on the screen's header line.
fn header_url(screen: &str, label: &str) -> String {
    let header = screen.lines().next().unwrap_or_default();
    header
        .split_once(label)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "no `{label}` URL in the header (is the demo app built? `bash wasm/build.sh`):\n{screen}"
            )
        })
        .to_owned()
}

/// Fetches the demo app from the URL in the header: its page, its modules
/// with the content types browsers need, and the genesis it points at, which
/// is the devnet's, has its relay on and lets the page's origin write.
fn check_demo_app(screen: &str) {
    let genesis = header_url(screen, "│ genesis ");
    let demo = header_url(screen, "tab peer app ");
    let origin = demo.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let get = |path: String| {
            let client = client.clone();
            async move {
                let response = client.get(&path).send().await.unwrap();
                let status = response.status().as_u16();
                let kind = response
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let body = response.bytes().await.unwrap();
                assert_eq!(status, 200, "GET {path}");
                (kind, body)
            }
        };
        let (kind, page) = get(demo.clone()).await;
        assert_eq!(kind, "text/html");
        assert!(String::from_utf8_lossy(&page).contains("this tab as a peer"));
        for path in [
            "/main.js",
            "/pkg/peer/index.js",
            "/pkg/peer/plexus_wasm_peer.js",
        ] {
            let (kind, _) = get(format!("{origin}{path}")).await;
            assert_eq!(kind, "text/javascript", "{path}");
        }
        let (kind, wasm) = get(format!("{origin}/pkg/peer/plexus_wasm_peer_bg.wasm")).await;
        assert_eq!(kind, "application/wasm");
        assert!(wasm.starts_with(b"\0asm"), "a wasm module");
        let (_, config) = get(format!("{origin}/plexus-config.json")).await;
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["genesis"], genesis.as_str(), "the devnet's genesis");

        // Genesis relays: an unknown tab is a 502, not the 404 of a genesis without --relay.
        let relayed = client
            .get(format!("{genesis}/relay/NoSuchTab/p2p/ping"))
            .send()
            .await
            .unwrap();
        assert_eq!(relayed.status().as_u16(), 502, "genesis runs with --relay");
        // And lets the page write (a tab's registration).
        let preflight = client
            .request(reqwest::Method::OPTIONS, format!("{genesis}/peers"))
            .header("origin", &origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(
            preflight
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some(origin.clone()),
            "genesis lets the demo app's origin write"
        );
    });
}
