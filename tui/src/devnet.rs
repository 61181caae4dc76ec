//! `--devnet`: a local genesis (with `--relay`, so that browser tabs join as
//! peers) and three sample peers as child processes.
//!
//! The children are stopped with SIGTERM (so that the peers deregister) and
//! waited for when the [`Devnet`] is dropped: on quit, on error and on panic.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value as Json, json};

/// How long a child may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Genesis's peer timeout in the devnet (peers ping every 2 s).
pub const DEVNET_PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// The query the editor starts with: sent through PeerA, answered by PeerB.
pub const EXAMPLE_QUERY: &str =
    "{ Network { Get { PeerB { Things { Country { name capital population } } } } } }";

/// Where to find the two server binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `plexus-genesis`.
    pub genesis: PathBuf,
    /// `plexus-peer`.
    pub peer: PathBuf,
}

impl Binaries {
    /// The given paths, else the binaries next to this executable, else on `PATH`.
    pub fn locate(genesis: Option<PathBuf>, peer: Option<PathBuf>) -> Self {
        Self {
            genesis: genesis.unwrap_or_else(|| sibling("plexus-genesis")),
            peer: peer.unwrap_or_else(|| sibling("plexus-peer")),
        }
    }
}

fn sibling(name: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        // Next to us, or one level up (a test binary lives in target/debug/deps).
        for candidate in [dir.join(&file), dir.join("..").join(&file)] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(file)
}

/// One sample peer: its name, class and objects.
struct Sample {
    name: &'static str,
    class: Json,
    objects: Vec<Json>,
}

fn samples() -> Vec<Sample> {
    let string = |name: &str| json!({"name": name, "dataType": ["string"]});
    let int = |name: &str| json!({"name": name, "dataType": ["int"]});
    let city = |name: &str, population: i64| json!({"class": "City", "schema": {"name": name, "population": population}});
    let country = |name: &str, capital: &str, population: i64| json!({"class": "Country", "schema": {"name": name, "capital": capital, "population": population}});
    let airport = |code: &str, name: &str, city: &str| json!({"class": "Airport", "schema": {"code": code, "name": name, "city": city}});
    vec![
        Sample {
            name: "PeerA",
            class: json!({"class": "City", "description": "A city", "properties": [string("name"), int("population")]}),
            objects: vec![
                city("Amsterdam", 905_234),
                city("Rotterdam", 655_468),
                city("Berlin", 3_755_251),
                city("Paris", 2_102_650),
            ],
        },
        Sample {
            name: "PeerB",
            class: json!({"class": "Country", "description": "A country",
                          "properties": [string("name"), string("capital"), int("population")]}),
            objects: vec![
                country("Netherlands", "Amsterdam", 17_811_291),
                country("Germany", "Berlin", 84_482_267),
                country("France", "Paris", 68_170_228),
            ],
        },
        Sample {
            name: "PeerC",
            class: json!({"class": "Airport", "description": "An airport",
                          "properties": [string("code"), string("name"), string("city")]}),
            objects: vec![
                airport("AMS", "Schiphol", "Amsterdam"),
                airport("BER", "Berlin Brandenburg", "Berlin"),
                airport("CDG", "Charles de Gaulle", "Paris"),
            ],
        },
    ]
}

/// A running devnet. Dropping it stops every child.
pub struct Devnet {
    /// The genesis URL.
    pub genesis: String,
    /// The peers: name and URL.
    pub peers: Vec<(String, String)>,
    children: Vec<(String, Child)>,
    dir: tempfile::TempDir,
}

impl Devnet {
    /// Starts genesis (with `--relay`; a page of `cors_origin` may write to
    /// it, as a tab joining from the demo app does) and the three sample
    /// peers, blocking until each listens.
    pub fn start(bins: &Binaries, cors_origin: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("plexus-devnet-")
            .tempdir()
            .context("creating the devnet's data folder")?;
        let mut devnet = Devnet {
            genesis: String::new(),
            peers: Vec::new(),
            children: Vec::new(),
            dir,
        };
        let timeout = format!("{}s", DEVNET_PEER_TIMEOUT.as_secs());
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--peer-timeout",
            &timeout,
            "--relay",
        ];
        if let Some(origin) = cors_origin {
            args.extend(["--cors-origin", origin]);
        }
        let (child, url) = spawn("genesis", &bins.genesis, &args, devnet.dir.path())?;
        devnet.children.push(("genesis".into(), child));
        devnet.genesis = url;
        for sample in samples() {
            let data = devnet.dir.path().join(sample.name);
            std::fs::create_dir_all(&data)
                .with_context(|| format!("creating {}", data.display()))?;
            let (child, url) =
                spawn_peer(bins, sample.name, &devnet.genesis, &data, devnet.dir.path())?;
            devnet.children.push((sample.name.into(), child));
            devnet.peers.push((sample.name.into(), url));
        }
        Ok(devnet)
    }

    /// Where the children's logs are.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Loads the sample schemas and objects into the peers over their REST API.
    pub async fn load_samples(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        for (sample, (_, url)) in samples().into_iter().zip(&self.peers) {
            post(client, &format!("{url}/v1/schema/things"), &sample.class).await?;
            for object in &sample.objects {
                post(client, &format!("{url}/v1/things"), object).await?;
            }
        }
        Ok(())
    }

    /// Stops every child: SIGTERM, then a bounded wait, then a kill. Peers
    /// first, so that genesis is still there when they deregister.
    pub fn stop(&mut self) {
        for (name, child) in self.children.iter_mut().rev() {
            terminate(child);
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        tracing::info!(%name, %status, "devnet child exited");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        tracing::warn!(%name, "devnet child did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(unix)]
fn terminate(child: &mut Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    match i32::try_from(child.id()) {
        Ok(pid) if kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok() => {}
        _ => {
            let _ = child.kill();
        }
    }
}

#[cfg(not(unix))]
fn terminate(child: &mut Child) {
    let _ = child.kill();
}

async fn post(client: &reqwest::Client, url: &str, body: &Json) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .timeout(Duration::from_secs(10))
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("POST {url} answered {status}: {text}");
    }
    Ok(())
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn spawn_peer(
    bins: &Binaries,
    name: &str,
    genesis: &str,
    data: &Path,
    logs: &Path,
) -> anyhow::Result<(Child, String)> {
    let mut last = anyhow!("no attempt");
    // The port is chosen before the peer binds it: another process may take
    // it in between, so try a few.
    for _ in 0..3 {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let public = format!("http://{listen}");
        let args = [
            "--listen",
            &listen,
            "--data",
            &data.to_string_lossy(),
            "--genesis-url",
            genesis,
            "--public-url",
            &public,
            "--peer-name",
            name,
            "--ping-interval",
            "2s",
        ]
        .map(str::to_owned);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match spawn(name, &bins.peer, &args, logs) {
            Ok(started) => return Ok(started),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Starts `bin` with `args`, stderr to `{logs}/{name}.log`, and waits for its
/// `listening on URL` line.
fn spawn(name: &str, bin: &Path, args: &[&str], logs: &Path) -> anyhow::Result<(Child, String)> {
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(bin);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // The dashboard's own PLEXUS_* settings are not the children's.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PLEXUS_") {
            command.env_remove(key);
        }
    }
    let mut child = command.spawn().with_context(|| {
        format!(
            "starting {} (set PLEXUS_GENESIS_BIN / PLEXUS_PEER_BIN, or build it)",
            bin.display()
        )
    })?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(url) => Ok((child, url)),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{name} ({}) did not start ({status}): {}",
                bin.display(),
                tail.join(" | ")
            )
        }
    }
}
