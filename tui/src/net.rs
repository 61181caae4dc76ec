//! The network tasks: they talk HTTP and send [`Message`]s, and decide nothing.

use std::time::{Duration, Instant};

use plexus_core::Timestamp;
use plexus_core::schema::Schema;
use plexus_core::wire::{PEERS_VERSION_HEADER, Peer, PeerChange};
use serde::Deserialize;
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

/// The first event of the watch stream.
#[derive(Debug, Deserialize)]
struct WatchSnapshot {
    version: u64,
    peers: Vec<Peer>,
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
/// With several replicas (`a,b`), a replica that fails is left for the next
/// one. Ends when the receiving side of `tx` is gone.
pub async fn watch_genesis(client: reqwest::Client, genesis: String, tx: UnboundedSender<Message>) {
    let replicas = replicas(&genesis);
    let mut current = 0;
    loop {
        let genesis = &replicas[current % replicas.len()];
        let polls = match follow_stream(&client, genesis, &tx).await {
            StreamEnd::Closed => return,
            StreamEnd::NotSupported => 30,
            // The next replica at once, until every one failed in a row.
            StreamEnd::Failed(reason) if (current + 1) % replicas.len() != 0 => {
                tracing::info!(%reason, %genesis, "watch stream failed; trying the next replica");
                current += 1;
                continue;
            }
            StreamEnd::Failed(reason) => {
                tracing::info!(%reason, "watch stream failed; polling");
                current += 1;
                3
            }
        };
        for _ in 0..polls {
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
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

enum StreamEnd {
    /// The dashboard is gone.
    Closed,
    /// Genesis has no watch stream.
    NotSupported,
    /// It failed or ended: why.
    Failed(String),
}

async fn follow_stream(
    client: &reqwest::Client,
    genesis: &str,
    tx: &UnboundedSender<Message>,
) -> StreamEnd {
    let response = client
        .get(format!("{genesis}/peers/watch"))
        .header("accept", "text/event-stream")
        .send()
        .await;
    let mut response = match response {
        Ok(r) if r.status().is_success() => r,
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return StreamEnd::NotSupported,
        Ok(r) => return StreamEnd::Failed(format!("watch stream answered {}", r.status())),
        Err(e) => {
            let reason = describe(&e);
            if tx.send(Message::Disconnected(reason.clone())).is_err() {
                return StreamEnd::Closed;
            }
            return StreamEnd::Failed(reason);
        }
    };
    let mut parser = SseParser::new();
    let mut refresh = tokio::time::interval(POLL_INTERVAL * 2);
    loop {
        tokio::select! {
            chunk = tokio::time::timeout(STREAM_IDLE, response.chunk()) => {
                let chunk = match chunk {
                    Ok(Ok(Some(chunk))) => chunk,
                    Ok(Ok(None)) => return StreamEnd::Failed("genesis closed the watch stream".into()),
                    Ok(Err(e)) => return StreamEnd::Failed(describe(&e)),
                    Err(_) => return StreamEnd::Failed("watch stream silent".into()),
                };
                for event in parser.push(&chunk) {
                    let message = match event.event.as_str() {
                        "snapshot" => match serde_json::from_str::<WatchSnapshot>(&event.data) {
                            Ok(s) => Message::Snapshot { version: s.version, peers: s.peers, source: Source::Watch },
                            Err(e) => return StreamEnd::Failed(format!("bad snapshot: {e}")),
                        },
                        "change" => match serde_json::from_str::<PeerChange>(&event.data) {
                            Ok(change) => Message::Change(change),
                            Err(e) => return StreamEnd::Failed(format!("bad change: {e}")),
                        },
                        _ => continue,
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

/// `GET {genesis}/peers`: the list version (0 when not told) and the peers.
pub async fn fetch_peers(
    client: &reqwest::Client,
    genesis: &str,
) -> Result<(u64, Vec<Peer>), String> {
    let response = client
        .get(format!("{genesis}/peers"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        return Err(format!("GET /peers answered {}", response.status()));
    }
    let version = response
        .headers()
        .get(PEERS_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let peers = response
        .json()
        .await
        .map_err(|e| format!("bad peer list: {e}"))?;
    Ok((version, peers))
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
