//! Load generation shared by the bench binaries (`genesis-bench`,
//! `plexus-load`, `peer-bench`): a genesis child process, POST workers,
//! percentiles and resident memory, so that every figure is measured the
//! same way.

pub mod certs;
pub mod tab;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use reqwest::header::{HeaderName, HeaderValue};

/// A `plexus-genesis` child process on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct GenesisProcess {
    server: Server,
    /// Its base URL.
    pub url: String,
}

impl GenesisProcess {
    /// Starts `binary` with a peer timeout of an hour and `args`, and waits
    /// for its `listening on` line. The load comes from one address, so the
    /// rate limit of write calls is off (`PLEXUS_RATE_LIMIT=0`, which a
    /// genesis older than the limit ignores, so it can be benched side by
    /// side) unless `args` set `--rate-limit`.
    pub fn start(binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0", "--peer-timeout", "1h"])
            .env("PLEXUS_RATE_LIMIT", "0")
            .args(args);
        let server =
            spawn_server(command).with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            url: server.url.clone(),
            server,
        })
    }

    /// CPU time it has used so far (see [`cpu_ticks`]).
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        cpu_ticks(self.server.child.id())
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.server.child.id())
    }

    /// Stops it with SIGTERM (so that `--state` is closed cleanly) and waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.server.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        self.server.child.wait()?;
        Ok(())
    }
}

/// The `plexus-genesis` next to the running binary.
pub fn sibling_genesis() -> anyhow::Result<std::path::PathBuf> {
    sibling("plexus-genesis")
}

/// The binary `name` next to the running one, or an error saying how to
/// build it.
pub fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it first (cargo build --release --workspace --bins)",
        path.display()
    );
    Ok(path)
}

/// A server process (its `listening on` URL), killed when dropped.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` as JSON to `url`: the answer's JSON, or an error naming
/// the status when it is not a success.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let response = client.post(url).json(&body).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
    Ok(body)
}

/// Spawns `command` (logs quiet, stdout piped) and waits for its one line
/// `listening on URL` (every Plexus server prints it once it listens).
pub fn spawn_server(mut command: Command) -> anyhow::Result<Server> {
    let mut child = command
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("no stdout")?;
    let read = BufReader::new(stdout).read_line(&mut line);
    // Killed when dropped from here on, if its first line is wrong too.
    let mut server = Server {
        child,
        url: String::new(),
    };
    read?;
    line.trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .clone_into(&mut server.url);
    Ok(server)
}

/// What one load phase measured.
#[derive(Debug, Clone)]
pub struct Load {
    /// Answered requests per second.
    pub ops_per_s: f64,
    /// Latency of each answered request, in ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// Requests that failed or got a non-2xx status.
    pub errors: u64,
}

impl Load {
    /// The `p`th percentile (0–100) of the latencies, in ms.
    #[must_use]
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }
}

/// The `p`th percentile (0–100) of `sorted`, by nearest rank; NaN when empty.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One request of [`post_signed_workers`]: URL, JSON body and extra headers
/// (made once, before the load: a worker only clones them, so that the load
/// generator's own cost does not grow with the headers it sends).
pub type Post = (String, Bytes, Vec<(HeaderName, HeaderValue)>);

/// POSTs `requests` (URL, JSON body) from `workers` workers for `duration`:
/// [`post_signed_workers`] without extra headers.
pub async fn post_workers(
    client: &reqwest::Client,
    requests: Arc<[(String, Bytes)]>,
    workers: usize,
    duration: Duration,
    period: Option<Duration>,
) -> Load {
    let requests: Arc<[Post]> = requests
        .iter()
        .map(|(url, body)| (url.clone(), body.clone(), Vec::new()))
        .collect();
    post_signed_workers(client, requests, workers, duration, period).await
}

/// POSTs `requests` (URL, JSON body) from `workers` workers for `duration`.
///
/// Worker `w` sends requests `w`, `w + workers`, … in turn: the next as soon
/// as one is answered (closed loop), or at each tick of `period` (paced; the
/// workers' first ticks are spread over one period).
pub async fn post_signed_workers(
    client: &reqwest::Client,
    requests: Arc<[Post]>,
    workers: usize,
    duration: Duration,
    period: Option<Duration>,
) -> Load {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (client, requests, errors) =
                (client.clone(), Arc::clone(&requests), Arc::clone(&errors));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut ticker = period.map(|p| {
                    let first = tokio::time::Instant::now() + p.mul_f64(w as f64 / workers as f64);
                    let mut ticker = tokio::time::interval_at(first, p);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    ticker
                });
                let mut k = w;
                while start.elapsed() < duration && !requests.is_empty() {
                    if let Some(ticker) = ticker.as_mut() {
                        ticker.tick().await;
                    }
                    let (url, body, headers) = &requests[k % requests.len()];
                    k += workers;
                    let sent = Instant::now();
                    let mut request = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    for (name, value) in headers {
                        request = request.header(name.clone(), value.clone());
                    }
                    let ok = match request.send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for task in tasks {
        latencies_ms.extend(task.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    Load {
        ops_per_s: latencies_ms.len() as f64 / elapsed,
        latencies_ms,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// CPU time process `pid` has used so far (user + system), in clock ticks
/// of `/proc/PID/stat` (Linux only; 100 per second on common kernels).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat")?.parse()?)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after ')'.
    Ok(field(11)? + field(12)?)
}

/// The resident memory (`VmRSS`) of process `pid`, in KiB (Linux only).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&sorted, 50.0), 51.0);
        assert_eq!(percentile(&sorted, 99.0), 100.0);
        assert_eq!(percentile(&sorted, 100.0), 101.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn rss_of_this_process_is_some_kib() {
        let kib = rss_kib(std::process::id()).expect("VmRSS");
        assert!(kib > 0);
    }
}
