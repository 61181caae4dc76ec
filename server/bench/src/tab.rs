//! A browser tab's part of the relay, in Rust: the client that the relay's
//! end-to-end tests and `relay-bench` use in place of a browser. It speaks
//! the frames of [`plexus_core::relay`] over a WebSocket to
//! `plexus-genesis --relay`, and answers relayed requests with a peer
//! router (as a tab answers with its engine).

use std::time::Instant;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::{Body, to_bytes};
use futures::{SinkExt as _, StreamExt as _};
use plexus_core::auth::{self, Expect, Identity, SessionKey};
use plexus_core::client::{Answer, Call, CallError};
use plexus_core::relay::{FromTab, RelayRequest, RelayResponse, ToTab, hello_message, tab_path};
use plexus_core::wire::{PeerId, PeerPing, PeerUpdate};
use plexus_core::{PeerName, PeerUri};
use plexus_peer::network::now;
use plexus_server::genesis_call;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Ws;
use tower::ServiceExt as _;

/// A tab's WebSocket to the relay.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Largest answer body the client reads from its router.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Opens the relay socket of `genesis` and says hello as `name` with
/// `identity`. Returns the socket and the relay's answer (`welcome`, or
/// `refused` and the socket is closing); when the relay refuses before its
/// challenge (it is full), that refusal.
pub async fn hello(
    genesis: &str,
    name: &str,
    identity: &Identity,
) -> anyhow::Result<(Socket, ToTab)> {
    let url = plexus_core::relay::socket_url(genesis);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let nonce = match next_frame(&mut socket).await? {
        ToTab::Challenge { nonce } => nonce,
        other => return Ok((socket, other)),
    };
    let name = PeerName::new(name)?;
    let path = tab_path(&name);
    let signature = identity.sign(&hello_message(&path, &nonce), now());
    let frame = serde_json::to_string(&FromTab::hello(name, signature))?;
    socket.send(Ws::Text(frame.into())).await?;
    let answer = next_frame(&mut socket).await?;
    Ok((socket, answer))
}

/// The next frame from the relay.
pub async fn next_frame(socket: &mut Socket) -> anyhow::Result<ToTab> {
    loop {
        match socket
            .next()
            .await
            .context("the relay closed the socket")??
        {
            Ws::Text(text) => return Ok(serde_json::from_str(&text)?),
            Ws::Close(_) => bail!("the relay closed the socket"),
            _ => {}
        }
    }
}

/// Answers `request` with `app` (`/p2p/ping` and `/p2p/genesis`: 200).
pub async fn answer(app: &Router, request: &RelayRequest) -> anyhow::Result<RelayResponse> {
    if request.path.starts_with("/p2p/") {
        return Ok(RelayResponse {
            id: request.id,
            status: 200,
            headers: vec![],
            body: String::new(),
        });
    }
    let mut builder = axum::http::Request::builder()
        .method(request.method.as_str())
        .uri(&request.path);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(request.body.clone()))?)
        .await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = to_bytes(response.into_body(), MAX_ANSWER_BYTES).await?;
    Ok(RelayResponse {
        id: request.id,
        status,
        headers,
        body: String::from_utf8(body.to_vec())?,
    })
}

/// Serves `socket` with `app` in a task until the returned sender is used
/// (or dropped); then the socket is dropped. Every request it answers is
/// also sent to the returned receiver.
pub fn serve(
    mut socket: Socket,
    app: Router,
) -> (oneshot::Sender<()>, mpsc::UnboundedReceiver<RelayRequest>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let (seen, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                frame = socket.next() => {
                    let Some(Ok(Ws::Text(text))) = frame else { return };
                    let Ok(ToTab::Request(request)) = serde_json::from_str(&text) else { continue };
                    let _ = seen.send(request.clone());
                    let Ok(response) = answer(&app, &request).await else { return };
                    let Ok(frame) = serde_json::to_string(&FromTab::Response(response)) else { return };
                    if socket.send(Ws::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (stop, requests)
}

/// A registration's id and session key, or what genesis's refusal means.
pub type Registration = Result<(PeerId, SessionKey), CallError>;

/// Sends `call` to `genesis` and reads the answer as the core does.
async fn send(client: &reqwest::Client, genesis: &str, call: Call) -> Result<Answer, CallError> {
    let request = genesis_call::request(client, genesis, call);
    genesis_call::send(request, MAX_ANSWER_BYTES, "the answer cap").await
}

/// Registers `name` at `{genesis}/relay/{name}`, signed with `identity`;
/// genesis's answer checked as every peer checks it (signed, with its
/// session key), its key pinned. `Ok(Err(_))`: genesis refused.
pub async fn register(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    identity: &Identity,
) -> anyhow::Result<Registration> {
    let update = PeerUpdate {
        peer_name: PeerName::new(name)?,
        peer_uri: PeerUri::new(format!("{genesis}/relay/{name}"))?,
    };
    let call = Call::register(&update, Some(identity), now());
    let answer = match send(client, genesis, call).await {
        Ok(answer) => answer,
        Err(refused) => return Ok(Err(refused)),
    };
    let registered = answer.registration(Expect::AnyKey, true, now(), auth::DEFAULT_MAX_AGE)?;
    let session = registered.session.context("no session key")?;
    Ok(Ok((registered.response.peer.id, session)))
}

/// Pings genesis as registration `id` with `hash`, signed with `session`:
/// the list version it told, or what its refusal means.
pub async fn ping(
    client: &reqwest::Client,
    genesis: &str,
    id: PeerId,
    session: &SessionKey,
    hash: &str,
) -> Result<Option<u64>, CallError> {
    let ping = PeerPing {
        schema_hash: hash.to_owned(),
    };
    let call = Call::ping(id, &ping, Some(session), now());
    send(client, genesis, call)
        .await
        .map(|answer| answer.version)
}

/// A tab that joined: its registration, and its serving task.
#[derive(Debug)]
pub struct Tab {
    /// Its id at genesis.
    pub id: PeerId,
    /// Its session key (pings and leave).
    pub session: SessionKey,
    /// Stops serving and drops the socket.
    pub stop: oneshot::Sender<()>,
    /// The requests it answered.
    pub requests: mpsc::UnboundedReceiver<RelayRequest>,
}

/// Joins as `name`: socket, hello, registration (genesis probes the tab
/// over the socket), and a first ping with `schema_hash`.
pub async fn join(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    identity: &Identity,
    app: Router,
    schema_hash: &str,
) -> anyhow::Result<Tab> {
    let (socket, welcome) = hello(genesis, name, identity).await?;
    if !matches!(welcome, ToTab::Welcome { .. }) {
        bail!("the relay refused {name}: {welcome:?}");
    }
    let (stop, requests) = serve(socket, app);
    let (id, session) = register(client, genesis, name, identity)
        .await?
        .map_err(|status| anyhow::anyhow!("genesis refused the registration: {status}"))?;
    ping(client, genesis, id, &session, schema_hash)
        .await
        .map_err(|refused| anyhow::anyhow!("ping refused: {refused}"))?;
    Ok(Tab {
        id,
        session,
        stop,
        requests,
    })
}

/// Whether genesis's `GET /peers` lists `name`.
pub async fn is_listed(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
) -> anyhow::Result<bool> {
    let answer = send(client, genesis, Call::peers()).await?;
    let (peers, _) = answer.listed_peers()?;
    Ok(peers.iter().any(|p| p.peer_name.as_str() == name))
}

/// Joins as `name` and waits until genesis lists it; the time it took.
pub async fn join_until_listed(
    client: &reqwest::Client,
    genesis: &str,
    name: &str,
    identity: &Identity,
    app: Router,
    schema_hash: &str,
) -> anyhow::Result<(Tab, std::time::Duration)> {
    let started = Instant::now();
    let tab = join(client, genesis, name, identity, app, schema_hash).await?;
    while !is_listed(client, genesis, name).await? {
        anyhow::ensure!(
            started.elapsed().as_secs() < 10,
            "{name} not listed after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    Ok((tab, started.elapsed()))
}
