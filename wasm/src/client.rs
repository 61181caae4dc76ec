//! `NetworkClient`: the peer list, the watch stream, schemas and queries.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::join_all;
use gloo_net::http::Method;
use plexus_core::PeerName;
use plexus_core::client::Call;
use plexus_core::fanout::{FanoutLimits, peer_timeout};
use plexus_core::network::asks_every_peer;
use plexus_core::schema::Schema;
use serde_json::{Value as Json, json};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::error::ClientError;
use crate::fanout::{Driver, Reply, Sender};
use crate::http::{borrowed, send, token_headers};
use crate::pure::{
    ClientOptions, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_PER_PEER, DEFAULT_TIMEOUT_MS, Planned,
    QueryOptions, decode_answer, decode_graphql, find_peer, finish, named_peers, parse_base_url,
    plan_query, read_peer_list, resolve_peer,
};
use crate::watch::{WatchHandle, start};
use crate::{ClientOptionsArg, JsResult, QueryOptionsArg, from_js, to_js};
use plexus_core::PeerUri;
use plexus_core::wire::Peer;

/// A client of one Plexus network: asks its genesis server for the peers,
/// and the peers directly for their schemas and data.
#[wasm_bindgen]
pub struct NetworkClient {
    inner: Rc<Inner>,
}

struct Inner {
    genesis: PeerUri,
    token: Option<String>,
    timeout_ms: u32,
    /// The fan-out of this client's Network queries (`maxInFlight`, `maxPerPeer`).
    fanout: Driver,
    /// Schemas by their hash: peers with the same schema share one entry.
    schemas: RefCell<BTreeMap<String, Rc<Schema>>>,
}

#[wasm_bindgen]
impl NetworkClient {
    /// A client of the network whose genesis server is at `genesisUrl`.
    /// Throws a `PlexusError` of kind `invalid-input` on a bad URL or options.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = genesisUrl)] genesis_url: &str,
        options: Option<ClientOptionsArg>,
    ) -> JsResult<NetworkClient> {
        let genesis = parse_base_url(genesis_url, "genesis URL")?;
        let options: ClientOptions = from_js(options.map(JsValue::from), "client options")?;
        Ok(NetworkClient {
            inner: Rc::new(Inner {
                genesis,
                token: options.token.filter(|t| !t.is_empty()),
                timeout_ms: options.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1),
                fanout: Driver::new(FanoutLimits {
                    per_query: options.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
                    per_peer: options.max_per_peer.unwrap_or(DEFAULT_MAX_PER_PEER),
                }),
                schemas: RefCell::new(BTreeMap::new()),
            }),
        })
    }

    /// The genesis URL this client asks, without a trailing slash.
    #[wasm_bindgen(getter, js_name = genesisUrl)]
    pub fn genesis_url(&self) -> String {
        self.inner.genesis.as_str().to_owned()
    }

    /// The peers genesis lists now (`GET /peers`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Peer[]>")]
    pub fn peers(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        promise(async move { to_js(&inner.peers().await?) })
    }

    /// Calls `callback` with every change of the peer list, from genesis's
    /// watch stream (`GET /peers/watch`): first a `snapshot`, then each
    /// `change`; an `error` event when the stream breaks (the browser then
    /// reconnects and a new `snapshot` follows). Needs `EventSource`
    /// (browsers; not Node). The stream carries no token.
    pub fn watch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: WatchEvent) => void")]
        callback: js_sys::Function,
    ) -> JsResult<WatchHandle> {
        Ok(start(
            &self.inner.genesis.join(&Call::watch().path),
            callback,
        )?)
    }

    /// The schema of the peer named `peerName` (`GET {peerUri}/v1/schema`),
    /// cached by its schema hash.
    #[wasm_bindgen(unchecked_return_type = "Promise<Schema>")]
    pub fn schema(&self, #[wasm_bindgen(js_name = peerName)] peer_name: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        promise(async move {
            let peers = inner.peers().await?;
            let peer = find_peer(&peers, &peer_name)?;
            let schema = inner.schema_of(peer).await?;
            to_js(schema.as_ref())
        })
    }

    /// Runs a GraphQL query. With `via` (a peer name or URL) the query goes to
    /// that peer as it is. Without, a Network query is planned here against
    /// the peers' schemas, its Local queries go to the peers directly and in
    /// parallel, and the answers are merged exactly as a peer merges them: a
    /// peer that fails becomes an error (with its path) beside the data of
    /// the others. An invalid query resolves to a response with `errors`;
    /// the promise rejects only when nothing could be asked (genesis or the
    /// `via` peer unreachable, bad options).
    #[wasm_bindgen(unchecked_return_type = "Promise<GraphQLResponse>")]
    pub fn query(&self, graphql: String, options: Option<QueryOptionsArg>) -> js_sys::Promise {
        let inner = self.inner.clone();
        promise(async move {
            let options: QueryOptions = from_js(options.map(JsValue::from), "query options")?;
            to_js(&inner.query(&graphql, options).await?)
        })
    }
}

/// Runs `future` as a JavaScript promise.
fn promise(future: impl Future<Output = JsResult<JsValue>> + 'static) -> js_sys::Promise {
    future_to_promise(future)
}

impl Inner {
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        let headers = token_headers(self.token.as_deref());
        let answer = send(Method::GET, url, &borrowed(&headers), None, self.timeout_ms).await?;
        decode_answer(url, answer.status, &answer.text)
    }

    /// `GET /peers` as core builds it ([`Call::peers`], with the token),
    /// read as core reads it ([`read_peer_list`]).
    async fn peers(&self) -> Result<Vec<Peer>, ClientError> {
        let call = Call::peers().with_token(self.token.as_deref());
        let url = self.genesis.join(&call.path);
        let headers: Vec<(&str, &str)> = call.headers().collect();
        let answer = send(Method::GET, &url, &headers, None, self.timeout_ms).await?;
        read_peer_list(&url, answer.status, &answer.text)
    }

    /// The schema of `peer`: from the cache when its hash is known, else fetched.
    async fn schema_of(&self, peer: &Peer) -> Result<Rc<Schema>, ClientError> {
        if let Some(schema) = self.schemas.borrow().get(peer.schema_hash.as_str()) {
            return Ok(schema.clone());
        }
        let schema: Schema = self.get_json(&peer.peer_uri.join("/v1/schema")).await?;
        let schema = Rc::new(schema);
        self.schemas
            .borrow_mut()
            .insert(schema.hash(), schema.clone());
        Ok(schema)
    }

    async fn post_graphql(&self, peer: &PeerUri, body: &Json) -> Result<Json, ClientError> {
        let url = peer.join("/v1/graphql");
        let headers = token_headers(self.token.as_deref());
        let answer = send(
            Method::POST,
            &url,
            &borrowed(&headers),
            Some(body),
            self.timeout_ms,
        )
        .await?;
        decode_graphql(&url, answer.status, &answer.text)
    }

    async fn query(&self, graphql: &str, options: QueryOptions) -> Result<Json, ClientError> {
        let variables = options.variables.unwrap_or_default();
        let operation_name = options.operation_name.as_deref();
        let peers = self.peers().await?;
        if let Some(via) = options.via {
            let uri = resolve_peer(&peers, &via)?;
            let mut body = json!({"query": graphql});
            if !variables.is_empty() {
                body["variables"] = Json::Object(variables);
            }
            if let Some(name) = operation_name {
                body["operationName"] = Json::String(name.to_owned());
            }
            return self.post_graphql(&uri, &body).await;
        }
        // Fetch (or find cached) the schemas of the peers the query names,
        // in parallel: of every listed peer for Fetch and Introspect, which
        // ask every peer whose schema is known.
        let named: Vec<&Peer> = if asks_every_peer(graphql, operation_name, &variables) {
            peers.iter().collect()
        } else {
            named_peers(graphql, operation_name, &variables)
                .iter()
                .filter_map(|name| peers.iter().find(|p| p.peer_name.as_str() == name))
                .collect()
        };
        let fetched = join_all(named.iter().map(|peer| self.schema_of(peer))).await;
        let mut schemas: BTreeMap<PeerName, Rc<Schema>> = BTreeMap::new();
        let mut unreachable = BTreeMap::new();
        for (peer, schema) in named.iter().zip(fetched) {
            match schema {
                Ok(schema) => {
                    schemas.insert(peer.peer_name.clone(), schema);
                }
                Err(e) => {
                    unreachable.insert(
                        peer.peer_name.as_str().to_owned(),
                        format!("cannot fetch its schema: {e}"),
                    );
                }
            }
        }
        let (plan, left_out) =
            match plan_query(graphql, operation_name, &variables, &schemas, &unreachable) {
                Planned::Answer(response) => return Ok(response),
                Planned::Send { plan, unreachable } => (plan, unreachable),
            };
        // The core's fan-out decides what is sent when; this only moves bytes.
        // extend, not collect: collecting into a BTree sorts first, and every
        // sort instantiated costs the tab module's size budget (wasm/build.sh).
        let mut uris: BTreeMap<PeerName, PeerUri> = BTreeMap::new();
        uris.extend(
            peers
                .iter()
                .map(|p| (p.peer_name.clone(), p.peer_uri.clone())),
        );
        let (token, timeout_ms) = (self.token.clone(), self.timeout_ms);
        let sender: Sender = Rc::new(move |transmit| {
            let uri = uris.get(&transmit.peer).cloned();
            let token = token.clone();
            Box::pin(async move {
                let Some(uri) = uri else {
                    return Reply::Failed(format!("genesis no longer lists {}", transmit.peer));
                };
                let left = transmit.deadline.saturating_since(crate::fanout::now());
                let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
                let body = json!({ "query": transmit.query });
                let url = uri.join("/v1/graphql");
                let headers = token_headers(token.as_deref());
                match send(Method::POST, &url, &borrowed(&headers), Some(&body), ms).await {
                    Ok(answer) => Reply::Http {
                        status: answer.status,
                        body: answer.text,
                    },
                    Err(ClientError::Timeout { .. }) => Reply::Expired,
                    Err(e) => Reply::Failed(e.to_string()),
                }
            })
        });
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
        let outcomes = self
            .fanout
            .ask(
                plan.asks(),
                peer_timeout(plan.timeout, timeout, timeout),
                sender,
            )
            .await;
        Ok(finish(&plan, outcomes, &left_out))
    }
}
