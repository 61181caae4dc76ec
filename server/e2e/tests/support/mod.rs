//! Support of the end-to-end tests: real `plexus-genesis` and `plexus-peer`
//! processes on loopback, HTTP helpers, and bounded polling.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Reads the `listening on http://HOST:PORT` line of a freshly spawned server.
fn listening_url(child: &mut Child) -> Option<String> {
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    Some(line.trim().strip_prefix("listening on ")?.to_owned())
}

/// The path of a binary of this workspace, built beside the test binary
/// (`target/<profile>/NAME`; `cargo test --workspace` builds it).
pub fn bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --bins`, or run `cargo test --workspace`)",
        path.display()
    );
    path
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
/// Another process may take it before a server binds it: start servers with
/// [`spawn_on_free_port`], which tries again on a fresh port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `plexus-genesis` listening on `listen`, quiet; add flags before spawning it.
pub fn genesis_command(listen: &str) -> Command {
    let mut command = Command::new(bin("plexus-genesis"));
    command.args(["--listen", listen]).env("RUST_LOG", "warn");
    command
}

/// Starts `plexus-genesis` on a free port with `args`, broadcasting after 5 ms.
pub fn genesis(args: &[&str]) -> Proc {
    let mut command = genesis_command("127.0.0.1:0");
    command.args(["--broadcast-delay", "5ms"]).args(args);
    spawn(command)
}

/// The command of a peer named `name` in the network of `genesis_url`, on
/// `port` (0: one the OS picks, which the peer then tells genesis), with
/// its data in `data`; add more flags before spawning it.
pub fn peer_command(genesis_url: &str, name: &str, port: u16, data: &Path) -> Command {
    let mut command = Command::new(bin("plexus-peer"));
    command.args(["--listen", &format!("127.0.0.1:{port}")]);
    if port != 0 {
        command.args(["--public-url", &format!("http://127.0.0.1:{port}")]);
    }
    command
        .args(["--genesis-url", genesis_url, "--peer-name", name])
        .args(["--ping-interval", "500ms"])
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn");
    command
}

/// Spawns a server and waits for its `listening on` line; `None` if it
/// exited without one (it is reaped).
pub fn try_spawn(mut command: Command) -> Option<Proc> {
    command.stderr(Stdio::inherit());
    try_spawn_logging(command)
}

/// [`try_spawn`] for a command whose stderr is already set (a log file).
pub fn try_spawn_logging(mut command: Command) -> Option<Proc> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", command.get_program()));
    match listening_url(&mut child) {
        Some(url) => Some(Proc { child, url }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// Spawns a server and waits for its `listening on` line.
pub fn spawn(command: Command) -> Proc {
    let program = command.get_program().to_owned();
    try_spawn(command).unwrap_or_else(|| panic!("{program:?} did not start listening"))
}

/// How many fresh ports [`spawn_on_free_port`] tries.
pub const PORT_TRIES: usize = 8;

/// Spawns the server `command_on(port)` makes, on a port that was free a
/// moment ago. If it exits without listening (another process took the port
/// in between: the ports the OS hands out for `:0` are the ones outgoing
/// connections use too), it tries again on a fresh port. Returns the server
/// and its port.
pub fn spawn_on_free_port(mut command_on: impl FnMut(u16) -> Command) -> (Proc, u16) {
    let mut program = None;
    for _ in 0..PORT_TRIES {
        let port = free_port();
        let command = command_on(port);
        program = Some(command.get_program().to_owned());
        if let Some(proc) = try_spawn(command) {
            return (proc, port);
        }
    }
    panic!("{program:?} did not start listening on any of {PORT_TRIES} free ports")
}

/// Spawns the server `command()` makes on a port it had before (a restart
/// where its peers look for it), trying again for a few seconds while the
/// port is still taken.
pub fn respawn(mut command: impl FnMut() -> Command) -> Proc {
    let start = Instant::now();
    loop {
        let next = command();
        let program = next.get_program().to_owned();
        if let Some(proc) = try_spawn(next) {
            return proc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{program:?} could not listen again on its port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a peer named `name` in the network of `genesis`.
pub fn peer(genesis: &Proc, name: &str, data: &Path, extra: &[&str]) -> Proc {
    let mut command = peer_command(&genesis.url, name, 0, data);
    command.args(extra);
    spawn(command)
}

/// Polls `check` every 20 ms until it returns `Some`, at most `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    response.json().await.ok()
}

pub async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs `query` on the peer at `url`.
pub async fn graphql(client: &reqwest::Client, url: &str, query: &str) -> Value {
    let (status, body) = post(
        client,
        &format!("{url}/v1/graphql"),
        json!({ "query": query }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Adds a Things class `class` with string property `name` and an int `size`.
pub async fn add_class(client: &reqwest::Client, url: &str, class: &str) {
    let body = json!({"class": class, "properties": [
        {"name": "name", "dataType": ["string"]}, {"name": "size", "dataType": ["int"]}]});
    let (status, answer) = post(client, &format!("{url}/v1/schema/things"), body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Adds a Things object of `class`.
pub async fn add_thing(client: &reqwest::Client, url: &str, class: &str, name: &str, size: i64) {
    let body = json!({"class": class, "schema": {"name": name, "size": size}});
    let (status, answer) = post(client, &format!("{url}/v1/things"), body).await;
    assert_eq!(status, 200, "{answer}");
}

/// The names of the peers genesis lists.
pub async fn genesis_names(client: &reqwest::Client, genesis: &Proc) -> Option<Vec<String>> {
    let peers = get(client, &genesis.at("/peers")).await?;
    let mut names: Vec<String> = peers
        .as_array()?
        .iter()
        .filter_map(|p| p["peerName"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

/// The peer at `url`'s view of `other`, when it has one.
pub async fn view_of(client: &reqwest::Client, url: &str, other: &str) -> Option<Value> {
    let view = get(client, &format!("{url}/v1/network/peers")).await?;
    view["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == other)
        .cloned()
}

/// Waits until the peer at `url` has the schema of each of `others` cached.
pub async fn wait_cached(client: &reqwest::Client, url: &str, others: &[&str], limit: Duration) {
    poll(
        limit,
        &format!("{url} caches the schemas of {others:?}"),
        || async {
            for other in others {
                let seen = view_of(client, url, other).await?;
                if seen["schemaCached"] != true {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

/// Genesis's key file for a test that pushes as genesis would: pass
/// `["--key-file", path]` to genesis and sign with the key.
pub fn genesis_key(dir: &Path) -> (plexus_core::auth::Identity, String) {
    let file = dir.join("genesis.key");
    let (key, _) = plexus_server::keys::load_or_create(&file).expect("genesis key");
    (key, file.to_str().expect("a UTF-8 path").to_owned())
}

/// `PUT {peer}/p2p/genesis` with the whole list `body`, signed by genesis's
/// `key` as genesis signs its pushes, one version after the peer's view;
/// returns the status.
pub async fn signed_push(peer: &Proc, key: &plexus_core::auth::Identity, body: &Value) -> u16 {
    let client = reqwest::Client::new();
    let view = get(&client, &peer.at("/v1/network/peers"))
        .await
        .expect("the peer's view");
    let version = view["listVersion"].as_u64().unwrap_or(0) + 1;
    let bytes = serde_json::to_vec(body).expect("JSON");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let now = plexus_core::Timestamp::from_millis(u64::try_from(now).expect("ms fit u64"));
    let signature = key.sign(
        &plexus_core::auth::Message::push(Some(version), &bytes),
        now,
    );
    let mut request = client
        .put(peer.at("/p2p/genesis"))
        .header("content-type", "application/json")
        .header(plexus_core::wire::PEERS_VERSION_HEADER, version)
        .body(bytes);
    for (name, value) in signature.pairs() {
        request = request.header(name, value);
    }
    request
        .send()
        .await
        .expect("PUT /p2p/genesis")
        .status()
        .as_u16()
}
