//! Genesis replicas sharing their registry through a real three-member etcd
//! cluster on loopback, started by each test (ports from the OS). Needs
//! Debian's `etcd-server` (scripts/setup.sh installs it): without an `etcd`
//! on the PATH these tests fail, they do not pass silently.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use support::{
    PORT_TRIES, Proc, free_port, genesis_command, get, peer_command, poll, spawn, view_of,
};

const SETTLE: Duration = Duration::from_secs(10);
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// One etcd member, killed when dropped.
struct Member {
    child: Child,
    client_url: String,
}

impl Member {
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A three-member etcd cluster on loopback, in `dir`.
struct Cluster {
    members: Vec<Member>,
    /// The genesis key every replica is given.
    key_file: std::path::PathBuf,
}

impl Cluster {
    async fn start(dir: &Path) -> Self {
        let found = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "these tests need etcd on the PATH (Debian's etcd-server; scripts/setup.sh installs it)"
        );
        // The ports were free a moment ago; a member that cannot bind its
        // port exits, and the whole cluster starts again on fresh ones.
        for attempt in 0..PORT_TRIES {
            let members = Self::spawn_members(&dir.join(format!("try{attempt}")));
            let mut cluster = Self {
                members,
                key_file: dir.join("genesis.key"),
            };
            if cluster.healthy().await {
                return cluster;
            }
        }
        panic!("etcd did not start on any of {PORT_TRIES} sets of free ports");
    }

    /// Three members on ports that were free a moment ago, their data in `dir`.
    fn spawn_members(dir: &Path) -> Vec<Member> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let child = Command::new("etcd")
                    .args(["--name", &format!("e{i}")])
                    .arg("--data-dir")
                    .arg(dir.join(format!("e{i}")))
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--log-level", "error"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start etcd");
                Member { child, client_url }
            })
            .collect()
    }

    /// Waits until every member is healthy (`true`), or one has exited
    /// (`false`); fails the test after [`SETTLE`].
    async fn healthy(&mut self) -> bool {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let mut all = true;
            for member in &mut self.members {
                if member.child.try_wait().expect("try_wait").is_some() {
                    return false;
                }
                let health = get(&client, &format!("{}/health", member.client_url)).await;
                all &= health.is_some_and(|h| h["health"] == "true");
            }
            if all {
                return true;
            }
            assert!(
                start.elapsed() < SETTLE,
                "the etcd members were not healthy after {SETTLE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn endpoints(&self) -> String {
        let urls: Vec<&str> = self.members.iter().map(|m| m.client_url.as_str()).collect();
        urls.join(",")
    }

    /// A genesis replica on this cluster.
    fn replica(&self) -> Proc {
        self.replica_with_ttl("2s")
    }

    /// A replica as `--help` suggests: no `--key-file` (the replicas share
    /// the network's key in etcd).
    fn keyless_command(&self) -> Command {
        let mut command = genesis_command("127.0.0.1:0");
        command
            .args(["--etcd", &self.endpoints()])
            .args(["--peer-timeout", "3s", "--replica-ttl", "2s"])
            .args(["--broadcast-delay", "5ms"]);
        command
    }

    /// A genesis replica on this cluster whose lease lives `ttl`.
    fn replica_with_ttl(&self, ttl: &str) -> Proc {
        let mut command = genesis_command("127.0.0.1:0");
        command
            .args(["--etcd", &self.endpoints()])
            .arg("--key-file")
            .arg(&self.key_file)
            .args(["--peer-timeout", "3s", "--replica-ttl", ttl])
            .args(["--broadcast-delay", "5ms"]);
        spawn(command)
    }
}

/// A peer named `name` registered through `genesis_urls` (comma-separated).
fn peer(genesis_urls: &str, name: &str, dir: &Path) -> Proc {
    spawn(peer_command(genesis_urls, name, 0, &dir.join(name)))
}

/// (name, id) of every peer `genesis` lists, by name.
async fn listing(client: &reqwest::Client, genesis: &Proc) -> Option<Vec<(String, String)>> {
    let peers = get(client, &genesis.at("/peers")).await?;
    let mut listed: Vec<(String, String)> = peers
        .as_array()?
        .iter()
        .map(|p| {
            (
                p["peerName"].as_str().unwrap_or_default().to_owned(),
                p["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    listed.sort();
    Some(listed)
}

fn names(listed: &[(String, String)]) -> Vec<&str> {
    listed.iter().map(|(n, _)| n.as_str()).collect()
}

/// Waits until every replica lists exactly `expected` names, with the same ids.
async fn all_list(
    client: &reqwest::Client,
    replicas: &[&Proc],
    expected: &[&str],
    limit: Duration,
) -> Vec<(String, String)> {
    poll(
        limit,
        &format!("every replica lists {expected:?}"),
        || async {
            let first = listing(client, replicas[0]).await?;
            if names(&first) != expected {
                return None;
            }
            for other in &replicas[1..] {
                if listing(client, other).await? != first {
                    return None;
                }
            }
            Some(first)
        },
    )
    .await
}

/// Waits until the peer at `url` sees each of `others` (itself aside).
async fn sees(client: &reqwest::Client, url: &str, others: &[&str], limit: Duration) {
    let own = get(client, &format!("{url}/v1/network/peers")).await;
    let own = own
        .as_ref()
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default();
    poll(limit, &format!("{url} sees {others:?}"), || async {
        for other in others.iter().filter(|o| **o != own) {
            view_of(client, url, other).await?;
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn two_replicas_list_the_same_peers_push_to_all_and_sigterm_leaves_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let cluster = Cluster::start(dir.path()).await;
    let a = cluster.replica();
    let b = cluster.replica();
    let p1 = peer(&a.url, "PeerOne", dir.path());
    let p2 = peer(&b.url, "PeerTwo", dir.path());
    let listed = all_list(&client, &[&a, &b], &["PeerOne", "PeerTwo"], SETTLE).await;
    assert!(listed.iter().all(|(_, id)| !id.is_empty()));

    // A registration at one replica is listed by the other within 1 s.
    let p3 = peer(&a.url, "PeerThree", dir.path());
    poll(SETTLE, "A lists PeerThree", || async {
        names(&listing(&client, &a).await?)
            .contains(&"PeerThree")
            .then_some(())
    })
    .await;
    let start = Instant::now();
    all_list(
        &client,
        &[&b, &a],
        &["PeerOne", "PeerThree", "PeerTwo"],
        Duration::from_secs(1),
    )
    .await;
    eprintln!("listed by the other replica after {:?}", start.elapsed());

    // Each peer is pushed the others, whichever replica owns it.
    for p in [&p1, &p2, &p3] {
        sees(
            &client,
            &p.url,
            &["PeerOne", "PeerTwo", "PeerThree"],
            SETTLE,
        )
        .await;
    }

    // The watch stream of one replica carries a join made at the other.
    let mut stream = client
        .get(b.at("/peers/watch"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let p4 = peer(&a.url, "PeerFour", dir.path());
    let seen = tokio::time::timeout(SETTLE, async {
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("PeerFour") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(seen, Ok(true)), "B's watch stream told A's join");

    // Both replicas give the same list the same version, once each has
    // applied etcd's changes (a replica's mirror follows etcd's watch, so
    // the two may differ for a moment, as a listing may).
    let version = |replica: &Proc| {
        let request = client.get(replica.at("/peers")).send();
        async move {
            let response = request.await.ok()?;
            let version = response.headers().get("x-plexus-peers-version")?.clone();
            let listed: serde_json::Value = response.json().await.ok()?;
            Some((version, listed.as_array()?.len()))
        }
    };
    poll(
        Duration::from_secs(1),
        "the same list has the same version at every replica",
        || async {
            let at_a = version(&a).await?;
            let at_b = version(&b).await?;
            (at_a == at_b && at_a.1 == 4).then_some(())
        },
    )
    .await;

    // Peers stopped with SIGTERM leave every replica's list, at once.
    for p in [&p1, &p2, &p3, &p4] {
        p.terminate();
    }
    all_list(&client, &[&a, &b], &[], PEER_TIMEOUT / 2).await;
}

#[tokio::test]
async fn a_killed_replica_evicts_no_live_peer_and_the_survivor_takes_over_its_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let cluster = Cluster::start(dir.path()).await;
    let mut a = cluster.replica();
    let b = cluster.replica();
    // The peers register and ping through A, then B; about half of them
    // are pushed to by A.
    let both = format!("{},{}", a.url, b.url);
    let peers: Vec<Proc> = ["PeerA1", "PeerA2", "PeerA3", "PeerA4"]
        .iter()
        .map(|n| peer(&both, n, dir.path()))
        .collect();
    let expected = ["PeerA1", "PeerA2", "PeerA3", "PeerA4"];
    let before = all_list(&client, &[&a, &b], &expected, SETTLE).await;
    for p in &peers {
        sees(&client, &p.url, &expected, SETTLE).await;
    }
    a.kill9();
    // A peer joining through the survivor reaches every other peer, those
    // that A pushed to included, once B has taken them over.
    let late = peer(&b.url, "PeerLate", dir.path());
    for p in &peers {
        sees(&client, &p.url, &["PeerLate"], SETTLE).await;
    }
    sees(&client, &late.url, &expected, SETTLE).await;
    // No live peer is evicted: past a whole peer timeout, all are listed,
    // with the ids they had: they moved to B without registering again.
    tokio::time::sleep(PEER_TIMEOUT + Duration::from_secs(1)).await;
    let listed = listing(&client, &b).await.unwrap();
    assert_eq!(
        names(&listed),
        ["PeerA1", "PeerA2", "PeerA3", "PeerA4", "PeerLate"]
    );
    assert!(
        before.iter().all(|entry| listed.contains(entry)),
        "same ids"
    );
    for p in &peers {
        let view = get(&client, &p.at("/v1/network/peers")).await.unwrap();
        assert_eq!(view["genesis"], b.url.as_str(), "{view}");
    }
}

#[tokio::test]
async fn an_etcd_member_killed_changes_nothing_and_a_killed_peer_is_evicted_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut cluster = Cluster::start(dir.path()).await;
    let a = cluster.replica();
    let b = cluster.replica();
    let p1 = peer(&a.url, "PeerOne", dir.path());
    let mut p2 = peer(&b.url, "PeerTwo", dir.path());
    let before = all_list(&client, &[&a, &b], &["PeerOne", "PeerTwo"], SETTLE).await;

    cluster.members[0].kill9();
    // Registrations, pings and pushes go on through the other members.
    let p3 = peer(&b.url, "PeerThree", dir.path());
    let after = all_list(
        &client,
        &[&a, &b],
        &["PeerOne", "PeerThree", "PeerTwo"],
        SETTLE,
    )
    .await;
    assert!(before.iter().all(|entry| after.contains(entry)), "same ids");
    sees(&client, &p1.url, &["PeerThree"], SETTLE).await;
    sees(&client, &p3.url, &["PeerOne", "PeerTwo"], SETTLE).await;

    // A killed peer is evicted by every replica within peer timeout + 2 s.
    p2.kill9();
    let start = Instant::now();
    all_list(
        &client,
        &[&a, &b],
        &["PeerOne", "PeerThree"],
        PEER_TIMEOUT + Duration::from_secs(2),
    )
    .await;
    eprintln!("evicted after {:?}", start.elapsed());
    let view = get(&client, &b.at("/peers")).await.unwrap();
    assert_eq!(view.as_array().map(Vec::len), Some(2), "{view}");
}

#[tokio::test]
async fn a_restarted_replica_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let cluster = Cluster::start(dir.path()).await;
    let a = cluster.replica();
    let mut b = cluster.replica();
    let p1 = peer(&a.url, "PeerOne", dir.path());
    all_list(&client, &[&a, &b], &["PeerOne"], SETTLE).await;
    b.kill9();
    let p2 = peer(&a.url, "PeerTwo", dir.path());
    p1.terminate();
    let expected = all_list(&client, &[&a], &["PeerTwo"], SETTLE).await;
    let b = cluster.replica();
    let caught_up = all_list(&client, &[&b, &a], &["PeerTwo"], SETTLE).await;
    assert_eq!(caught_up, expected, "the same peer with the same id");
    let watched: Value = get(&client, &b.at("/peers")).await.unwrap();
    assert_eq!(watched[0]["peerName"], "PeerTwo");
    drop(p2);
}

/// How many replicas `genesis` says etcd lists (`GET /healthz`).
async fn replicas_seen(client: &reqwest::Client, genesis: &Proc) -> Option<u64> {
    get(client, &genesis.at("/healthz")).await?["replicas"].as_u64()
}

#[tokio::test]
async fn a_replica_stopped_with_sigterm_leaves_etcd_at_once_not_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let cluster = Cluster::start(dir.path()).await;
    // Leases of a minute: only a revoke can make a replica go sooner.
    let mut a = cluster.replica_with_ttl("60s");
    let b = cluster.replica_with_ttl("60s");
    poll(SETTLE, "both replicas listed", || async {
        (replicas_seen(&client, &b).await == Some(2)).then_some(())
    })
    .await;
    a.terminate();
    assert!(a.wait_exit(Duration::from_secs(10)).is_some(), "A exited");
    poll(Duration::from_secs(5), "B sees A gone", || async {
        (replicas_seen(&client, &b).await == Some(1)).then_some(())
    })
    .await;
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(proc: &Proc, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn while_no_replica_hears_any_peer_their_leases_are_held_up_to_the_hold_limit() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let cluster = Cluster::start(dir.path()).await;
    let hold = Duration::from_secs(8);
    let replica = || {
        let mut command = genesis_command("127.0.0.1:0");
        command
            .args(["--etcd", &cluster.endpoints()])
            .arg("--key-file")
            .arg(&cluster.key_file)
            .args(["--peer-timeout", "3s", "--replica-ttl", "2s"])
            .args(["--hold-limit", "8s", "--broadcast-delay", "5ms"]);
        spawn(command)
    };
    let (a, b) = (replica(), replica());
    // Every peer pings A only: B hears no one itself, and must not hold
    // (keep its share of leases alive) while A hears peers.
    let names_all = ["PeerA", "PeerB", "PeerC", "PeerD"];
    let peers: Vec<Proc> = names_all
        .iter()
        .map(|n| peer(&a.url, n, dir.path()))
        .collect();
    all_list(&client, &[&a, &b], &names_all, SETTLE).await;
    for p in &peers[2..] {
        signal(p, "STOP");
    }
    let stopped = Instant::now();
    poll(
        PEER_TIMEOUT + Duration::from_secs(2),
        "two evicted in time",
        || async {
            let listed = listing(&client, &b).await?;
            (names(&listed) == ["PeerA", "PeerB"]).then_some(())
        },
    )
    .await;
    assert!(stopped.elapsed() >= PEER_TIMEOUT - Duration::from_millis(500));
    // Then every peer falls silent at once, as when the replicas' side of
    // the network is cut: no replica hears anyone.
    for p in &peers[..2] {
        signal(p, "STOP");
    }
    let silent = Instant::now();
    tokio::time::sleep(PEER_TIMEOUT + Duration::from_secs(2)).await;
    for g in [&a, &b] {
        let listed = listing(&client, g).await.unwrap();
        assert_eq!(
            names(&listed),
            ["PeerA", "PeerB"],
            "held past the peer timeout"
        );
    }
    // A network that stays dead is let go after the hold limit.
    poll(SETTLE + hold, "both evicted after the hold", || async {
        let listed = listing(&client, &b).await?;
        listed.is_empty().then_some(())
    })
    .await;
    assert!(silent.elapsed() >= hold, "not before the hold limit");
    for p in &peers {
        signal(p, "CONT");
    }
}

/// `last_contact_at` of every peer `genesis` lists, by name.
async fn contacts(client: &reqwest::Client, genesis: &Proc) -> Option<Vec<(String, u64)>> {
    let peers = get(client, &genesis.at("/peers")).await?;
    let mut listed: Vec<(String, u64)> = peers
        .as_array()?
        .iter()
        .map(|p| {
            let name = p["peerName"].as_str().unwrap_or_default().to_owned();
            (name, p["last_contact_at"].as_u64().unwrap_or_default())
        })
        .collect();
    listed.sort();
    Some(listed)
}

/// Waits until every peer's `last_contact_at` at `genesis` is past `after`
/// (ms since the epoch): its pings count there, wherever they arrive.
async fn contacts_advance(client: &reqwest::Client, genesis: &Proc, expected: &[&str], after: u64) {
    poll(
        SETTLE,
        &format!("{} sees pings of {expected:?} after {after}", genesis.url),
        || async {
            let listed = contacts(client, genesis).await?;
            let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
            (names == expected && listed.iter().all(|(_, at)| *at > after)).then_some(())
        },
    )
    .await;
}

fn epoch_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// Issue 22, the operator's scenario with default flags: two replicas
/// without `--key-file` on a three-member cluster, three peers; `kill -9`
/// one replica, then one etcd member. No peer exits, none is evicted, a
/// peer that joins through the survivor is reached by the others, pings
/// move `last_contact_at` on both replicas, and a replica restarted while
/// that member is still down starts and catches up.
#[tokio::test]
async fn replicas_with_default_flags_survive_a_killed_replica_and_a_killed_etcd_member() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut cluster = Cluster::start(dir.path()).await;
    let mut a = spawn(cluster.keyless_command());
    let b = spawn(cluster.keyless_command());
    // One key for both, with nothing copied.
    let key_a = get(&client, &a.at("/healthz")).await.unwrap()["key"].clone();
    let key_b = get(&client, &b.at("/healthz")).await.unwrap()["key"].clone();
    assert_eq!(key_a, key_b, "the replicas share the network's key");
    let (ab, ba) = (
        format!("{},{}", a.url, b.url),
        format!("{},{}", b.url, a.url),
    );
    let expected = ["PeerOne", "PeerThree", "PeerTwo"];
    let mut peers = vec![
        peer(&ab, "PeerOne", dir.path()),
        peer(&ba, "PeerTwo", dir.path()),
        peer(&ab, "PeerThree", dir.path()),
    ];
    let before = all_list(&client, &[&a, &b], &expected, SETTLE).await;
    for p in &peers {
        sees(&client, &p.url, &expected, SETTLE).await;
    }
    // Pings count at both replicas, whichever replica they reach.
    let now = epoch_ms();
    contacts_advance(&client, &a, &expected, now).await;
    contacts_advance(&client, &b, &expected, now).await;

    a.kill9();
    cluster.members[0].kill9();
    // A peer joining through the survivor reaches everyone, and everyone it.
    let late = peer(&b.url, "PeerLate", dir.path());
    for p in &peers {
        sees(&client, &p.url, &["PeerLate"], SETTLE).await;
    }
    sees(&client, &late.url, &expected, SETTLE).await;
    peers.push(late);
    let all = ["PeerLate", "PeerOne", "PeerThree", "PeerTwo"];
    // Past a whole peer timeout no one is evicted, and no one exited: the
    // peers of A moved to B with the ids they had.
    tokio::time::sleep(PEER_TIMEOUT + Duration::from_secs(1)).await;
    let listed = all_list(&client, &[&b], &all, SETTLE).await;
    assert!(
        before.iter().all(|e| listed.contains(e)),
        "same ids: {listed:?}"
    );
    for p in &mut peers {
        assert!(p.child.try_wait().unwrap().is_none(), "{} exited", p.url);
    }
    // A replica restarted while that etcd member is still down starts,
    // catches up, and its peers' pings count there too.
    let restarted = spawn(cluster.keyless_command());
    let caught_up = all_list(&client, &[&restarted, &b], &all, SETTLE).await;
    assert_eq!(caught_up, listed, "the same peers with the same ids");
    let now = epoch_ms();
    contacts_advance(&client, &b, &all, now).await;
    contacts_advance(&client, &restarted, &all, now).await;
    let key = get(&client, &restarted.at("/healthz")).await.unwrap()["key"].clone();
    assert_eq!(key, key_b, "the restarted replica loaded the network's key");
}

/// A replica whose `--key-file` holds another key than the network's (in
/// etcd) refuses to start, and says why.
#[tokio::test]
async fn a_replica_whose_key_file_differs_from_the_networks_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path()).await;
    let first = spawn(cluster.keyless_command());
    let mut command = cluster.keyless_command();
    command
        .arg("--key-file")
        .arg(dir.path().join("other.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > SETTLE {
            let _ = child.kill();
            panic!("a replica with another key kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("differs from the network's key"),
        "the reason is told: {stderr}"
    );
    drop(first);
}
