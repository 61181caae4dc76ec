//! The network tasks: they talk HTTP and send [`Message`]s, and decide nothing.

use std::time::{Duration, Instant};

use plexus_core::Timestamp;
use plexus_core::client::{Call, CallError, Failover, RETRY_MAX, RETRY_MIN, WatchEvent};
use plexus_core::schema::Schema;
use plexus_core::time::backoff;
use plexus_core::wire::Peer;
use plexus_server::genesis_call;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::model::{Command, QueryOutcome, Source};
use crate::sse::SseParser;
use crate::update::Message;

/// How often `GET /peers` is polled when the watch stream is not available,
/// and how often contact times are refreshed while it is.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a request other than the watch stream or a query may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Network query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence on the watch stream after which it is dropped (genesis sends a
/// keep-alive every 15 s).
const STREAM_IDLE: Duration = Duration::from_secs(40);

/// The HTTP client every task shares: the system's roots and `trust`'s
/// (`--ca-file`).
pub fn client(trust: &plexus_server::outbound::Trust) -> reqwest::Result<reqwest::Client> {
    plexus_server::outbound::client_builder(trust)
        .connect_timeout(Duration::from_secs(3))
        .build()
}

/// The current time as the protocol counts it.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(ms)
}

/// The most bytes of an error's body that the watcher reads (its message).
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// The most bytes of a polled peer list (as a peer's `--max-list-bytes`).
fn max_list_bytes() -> usize {
    plexus_core::membership::default_max_list_bytes()
}

/// The genesis URLs of `--genesis`: one, or replicas comma-separated.
pub fn replicas(genesis: &str) -> Vec<String> {
    let urls: Vec<String> = genesis
        .split(',')
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    if urls.is_empty() {
        vec![genesis.to_owned()]
    } else {
        urls
    }
}

/// Follows genesis forever: its watch stream when it can, polling otherwise.
/// With several replicas (`a,b`), a replica that fails is left for the
/// next one, at once until every one has failed since the last answer,
/// then after the core's backoff ([`Failover`], [`backoff`]: the rule of
/// every client of genesis), polling meanwhile. Ends when the receiving
/// side of `tx` is gone.
pub async fn watch_genesis(client: reqwest::Client, genesis: String, tx: UnboundedSender<Message>) {
    let replicas = replicas(&genesis);
    let mut failover = Failover::new(replicas.len());
    let mut rng = fastrand::Rng::new();
    // Rounds of every replica failing since the last answer.
    let mut rounds = 0;
    loop {
        let genesis = &replicas[failover.current() % replicas.len()];
        let polling = match follow_stream(&client, genesis, &tx).await {
            StreamEnd::Closed => return,
            StreamEnd::NotSupported => {
                failover.answered();
                rounds = 0;
                POLL_INTERVAL * 30
            }
            StreamEnd::Failed { reason, answered } => {
                if answered {
                    failover.answered();
                    rounds = 0;
                }
                if failover.fail_over() {
                    tracing::info!(%reason, %genesis, "watch stream failed; trying the next replica");
                    continue;
                }
                tracing::info!(%reason, "watch stream failed; polling");
                let delay = backoff(RETRY_MIN, RETRY_MAX, rounds, rng.f64());
                rounds = rounds.saturating_add(1);
                delay
            }
        };
        // Poll until the stream is tried again: at once, then every POLL_INTERVAL.
        let until = Instant::now() + polling;
        loop {
            let genesis = &replicas[failover.current() % replicas.len()];
            let message = match fetch_peers(&client, genesis).await {
                Ok((version, peers)) => Message::Snapshot {
                    version,
                    peers,
                    source: Source::Poll,
                },
                Err(reason) => Message::Disconnected(reason),
            };
            if tx.send(message).is_err() {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(POLL_INTERVAL)).await;
            if left <= POLL_INTERVAL {
                break;
            }
        }
    }
}

enum StreamEnd {
    /// The dashboard is gone.
    Closed,
    /// Genesis has no watch stream.
    NotSupported,
    /// It failed or ended: why, and whether genesis answered first.
    Failed {
        /// Why.
        reason: String,
        /// Whether the replica answered (opened the stream) first.
        answered: bool,
    },
}

async fn follow_stream(
    client: &reqwest::Client,
    genesis: &str,
    tx: &UnboundedSender<Message>,
) -> StreamEnd {
    let failed = |reason: String| StreamEnd::Failed {
        reason,
        answered: false,
    };
    let sent = genesis_call::request(client, genesis, Call::watch())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            return match genesis_call::answer(r, MAX_ERROR_BYTES, "the answer cap").await {
                Err(CallError::NotFound) => StreamEnd::NotSupported,
                Err(e) => failed(e.to_string()),
                Ok(_) => failed("the watch stream ended at once".into()),
            };
        }
        Err(e) => {
            let reason = describe(&e);
            if tx.send(Message::Disconnected(reason.clone())).is_err() {
                return StreamEnd::Closed;
            }
            return failed(reason);
        }
    };
    let failed = |reason: String| StreamEnd::Failed {
        reason,
        answered: true,
    };
    let mut parser = SseParser::new();
    let mut refresh = tokio::time::interval(POLL_INTERVAL * 2);
    loop {
        tokio::select! {
            chunk = tokio::time::timeout(STREAM_IDLE, response.chunk()) => {
                let chunk = match chunk {
                    Ok(Ok(Some(chunk))) => chunk,
                    Ok(Ok(None)) => return failed("genesis closed the watch stream".into()),
                    Ok(Err(e)) => return failed(describe(&e)),
                    Err(_) => return failed("watch stream silent".into()),
                };
                for event in parser.push(&chunk) {
                    let message = match WatchEvent::read(&event.event, &event.data) {
                        Ok(Some(WatchEvent::Snapshot(s))) => Message::Snapshot {
                            version: s.version,
                            peers: s.peers,
                            source: Source::Watch,
                        },
                        Ok(Some(WatchEvent::Change(change))) => Message::Change(change),
                        Ok(None) => continue,
                        Err(e) => return failed(e.to_string()),
                    };
                    if tx.send(message).is_err() {
                        return StreamEnd::Closed;
                    }
                }
            }
            _ = refresh.tick() => {
                // Pings are not changes: refresh the contact times now and then.
                if let Ok((version, peers)) = fetch_peers(client, genesis).await
                    && tx.send(Message::Contacts { version, peers }).is_err()
                {
                    return StreamEnd::Closed;
                }
            }
        }
    }
}

/// `GET {genesis}/peers`: the list version (0 when not told) and the
/// peers, read as the core reads them (a dashboard only shows the list:
/// its signature is not checked).
pub async fn fetch_peers(
    client: &reqwest::Client,
    genesis: &str,
) -> Result<(u64, Vec<Peer>), String> {
    let request = genesis_call::request(client, genesis, Call::peers());
    let call = async {
        let answer = genesis_call::send(request, max_list_bytes(), "the answer cap").await?;
        answer.listed_peers()
    };
    let (peers, version) = tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok((version.unwrap_or(0), peers))
}

/// Performs `command`, sending its answer on `tx`.
pub fn perform(client: &reqwest::Client, command: Command, tx: &UnboundedSender<Message>) {
    let client = client.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let message = match command {
            Command::FetchSchema { peer, uri, hash } => {
                let result = fetch_schema(&client, uri.as_str()).await;
                Message::SchemaLoaded { peer, hash, result }
            }
            Command::SendQuery { via, query } => {
                let started = Instant::now();
                let result = send_query(&client, &via, &query).await;
                Message::QueryAnswered(QueryOutcome {
                    via,
                    elapsed: started.elapsed(),
                    result,
                })
            }
        };
        let _ = tx.send(message);
    });
}

async fn fetch_schema(client: &reqwest::Client, uri: &str) -> Result<Schema, String> {
    let response = client
        .get(format!("{uri}/v1/schema"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        return Err(format!("GET /v1/schema answered {}", response.status()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("bad schema: {e}"))
}

async fn send_query(client: &reqwest::Client, via: &str, query: &str) -> Result<Json, String> {
    let response = client
        .post(format!("{}/v1/graphql", via.trim_end_matches('/')))
        .timeout(QUERY_TIMEOUT)
        .json(&json!({ "query": query }))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let body: Json = response
        .json()
        .await
        .map_err(|e| format!("{status}: bad response: {e}"))?;
    if status.is_success() || body.get("data").is_some() || body.get("errors").is_some() {
        Ok(body)
    } else {
        let message = body
            .pointer("/error/message")
            .and_then(Json::as_str)
            .unwrap_or("no message");
        Err(format!("{status}: {message}"))
    }
}

/// One line about a request error, with its cause.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_connect() {
        "cannot connect".to_owned()
    } else if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = cause.source();
    }
    text
}
