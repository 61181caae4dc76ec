//! plexus-wasm-peer: a browser tab as a Plexus peer, as a second npm module
//! beside the query client (it holds the GraphQL engine, so it is the
//! larger of the two; pages that only query load `plexus-wasm`).
//!
//! `await PlexusPeer.join({genesis, name, token})` opens a WebSocket to
//! genesis's relay (`plexus-genesis --relay`), proves the tab's Ed25519 key,
//! and registers the tab at `{genesis}/relay/{name}`; then `plexus-core`'s
//! membership machine runs in the tab (pings with the schema hash, signed
//! pushed lists, a new registration on a 404) and the tab answers what the
//! relay brings: genesis's probe and pushes, `GET /v1/schema`, and
//! `POST /v1/graphql` with the peer's own engine (`plexus-graphql`) over its
//! objects. `createClass` and `addObject` take the JSON of a peer's REST
//! API and run the same checks (`plexus-core`'s schema). The key, schema and
//! objects are kept in IndexedDB, so a reload rejoins under the same name
//! with the same key. `NetworkClient` and the rest of `plexus-wasm` are
//! exported from this module too.
//!
//! The decisions live in [`data`] (tested natively) and in plexus-core; the
//! other modules move bytes between the browser, the relay and the machine.

pub mod data;
mod net;
pub mod store;
mod tab;

use std::rc::Rc;

use plexus_graphql::GraphQLRequest;
use plexus_wasm::{ClientError, JsResult, from_js, to_js};
use serde_json::Value as Json;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

pub use plexus_wasm::{NetworkClient, WatchHandle};
pub use tab::{
    DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_SERVING, DEFAULT_PING_INTERVAL_MS,
    DEFAULT_TIMEOUT_MS, PeerOptions,
};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `PlexusPeer.join(options)`. Every bound has a default. */
export interface PeerOptions {
  /** Genesis's URL; genesis must run with `--relay`. */
  genesis: string;
  /** The tab's name in the network (what Network queries call it). */
  name: string;
  /** The network's join token, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** How long each HTTP call, the relay's handshake and the wait for the
   * registration may take, in ms (default 10000). */
  timeoutMs?: number;
  /** Mean time between pings to genesis, in ms (default 10000, at least 100). */
  pingIntervalMs?: number;
  /** Local queries of one Network query sent at once (default 8). */
  maxInFlight?: number;
  /** Requests to one peer at once, across this tab's Network queries (default 8). */
  maxPerPeer?: number;
  /** Relayed requests this tab answers at once; more get 503 (default 32). */
  maxServing?: number;
  /** Largest answer read from genesis or a peer, and largest answer this tab
   * sends, in bytes (default 1048576, the relay's own bound). */
  maxAnswerBytes?: number;
  /** Objects this tab holds at most; more are refused with status 507 (default 10000). */
  maxObjects?: number;
  /** Reconnects of a dropped relay socket (genesis restarted, the network
   * went away) before giving up (default 10; 0 never reconnects). Each one
   * opens a new socket and proves the key again; a connection that stays up
   * for `reconnectMaxMs` forgets the earlier ones. */
  reconnectAttempts?: number;
  /** The first delay before reconnecting, in ms (default 500); it doubles,
   * with jitter, up to `reconnectMaxMs`. */
  reconnectMinMs?: number;
  /** The longest delay between reconnects, in ms (default 30000). */
  reconnectMaxMs?: number;
  /** The IndexedDB database that keeps the tab's key, schema and objects
   * (default "plexus-peer"); `null` keeps nothing: a fresh key each time. */
  database?: string | null;
}

/** An object as a peer's REST API returns it (`POST /v1/things`). */
export interface PlexusObject {
  id: string;
  class: string;
  schema: Record<string, unknown>;
  creationTimeUnix: number;
  lastUpdateTimeUnix: number;
}

/** A peer this tab sees in the network (genesis's pushed list). */
export interface ViewPeer {
  peerName: string;
  peerUri: string;
  /** The schema hash genesis announced (empty before its first ping). */
  schemaHash: string;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// `PeerOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "PeerOptions")]
    pub type PeerOptionsArg;
}

/// A browser tab that is a peer of a Plexus network.
#[wasm_bindgen]
pub struct PlexusPeer {
    tab: Rc<tab::Tab>,
    pagehide: Option<Closure<dyn FnMut()>>,
}

fn rest_error(tab: &tab::Tab, what: &str, e: data::RestError) -> JsValue {
    ClientError::Http {
        url: format!("tab {} {what}", tab.name()),
        status: e.status,
        message: e.message,
    }
    .into()
}

/// A class or object given as an object or as JSON text, as JSON text.
fn json_text(value: JsValue, what: &str) -> Result<String, ClientError> {
    match value.as_string() {
        Some(text) => Ok(text),
        None => {
            let json: Json = from_js(Some(value), what)?;
            Ok(json.to_string())
        }
    }
}

#[wasm_bindgen]
impl PlexusPeer {
    /// Joins the network of `options.genesis` as `options.name`: loads the
    /// tab's key, schema and objects from IndexedDB (a new key the first
    /// time), opens the relay socket and proves the key, registers at
    /// `{genesis}/relay/{name}`, and resolves once genesis registered it.
    /// Leaves when the page goes away (`pagehide`). Rejects with a
    /// `PlexusError` of kind `invalid-input` (bad options) or `network`
    /// (the relay or genesis refused, e.g. another tab holds the name).
    pub async fn join(options: PeerOptionsArg) -> Result<PlexusPeer, JsValue> {
        let options: tab::PeerOptions = from_js(Some(options.into()), "peer options")?;
        let tab = tab::Tab::join(options).await.map_err(ClientError::from)?;
        let pagehide = web_sys::window().map(|window| {
            let for_page = tab.clone();
            let closure = Closure::<dyn FnMut()>::new(move || for_page.leave_on_pagehide());
            let _ = window
                .add_event_listener_with_callback("pagehide", closure.as_ref().unchecked_ref());
            closure
        });
        Ok(PlexusPeer { tab, pagehide })
    }

    /// Its name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.tab.name().to_owned()
    }

    /// The URI genesis lists for it: `{genesis}/relay/{name}`.
    #[wasm_bindgen(getter)]
    pub fn uri(&self) -> String {
        self.tab.uri().to_owned()
    }

    /// The hash of its schema, as peers compute it.
    #[wasm_bindgen(getter, js_name = schemaHash)]
    pub fn schema_hash(&self) -> String {
        self.tab.schema_hash()
    }

    /// Its Ed25519 public key (base64), which holds its name at genesis.
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.tab.public_key()
    }

    /// The genesis URL, without a trailing slash.
    #[wasm_bindgen(getter, js_name = genesisUrl)]
    pub fn genesis_url(&self) -> String {
        self.tab.genesis().to_owned()
    }

    /// Its schema, as `GET /v1/schema` answers it.
    #[wasm_bindgen(unchecked_return_type = "Schema")]
    pub fn schema(&self) -> JsResult<JsValue> {
        to_js(&self.tab.schema())
    }

    /// The other peers it sees, from genesis's signed pushes.
    #[wasm_bindgen(unchecked_return_type = "ViewPeer[]")]
    pub fn view(&self) -> JsResult<JsValue> {
        to_js(&self.tab.view())
    }

    /// Adds a class, as `POST /v1/schema/{kind}` on a peer: `kind` is
    /// `"things"` or `"actions"`, `class` the same JSON (an object or its
    /// text). Rejects with a `PlexusError` of kind `http` and the status that
    /// API answers (404 for a bad kind, 422 for a broken rule, 400 for text
    /// that is not JSON).
    #[wasm_bindgen(js_name = createClass, unchecked_return_type = "Promise<Class>")]
    pub fn create_class(
        &self,
        kind: String,
        #[wasm_bindgen(unchecked_param_type = "Class | string")] class: JsValue,
    ) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let text = json_text(class, "class")?;
            let class = tab
                .create_class(&kind, &text)
                .await
                .map_err(|e| rest_error(&tab, &format!("POST /v1/schema/{kind}"), e))?;
            to_js(&class)
        })
    }

    /// Adds an object, as `POST /v1/{kind}` on a peer (`{class, schema, id?}`);
    /// checked against the schema as a peer checks it. Rejects like
    /// `createClass` (422 for values that do not fit, 507 past `maxObjects`).
    #[wasm_bindgen(js_name = addObject, unchecked_return_type = "Promise<PlexusObject>")]
    pub fn add_object(
        &self,
        kind: String,
        #[wasm_bindgen(
            unchecked_param_type = "{class: string, schema?: Record<string, unknown>, id?: string} | string"
        )]
        object: JsValue,
    ) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let text = json_text(object, "object")?;
            let object = tab
                .add_object(&kind, &text)
                .await
                .map_err(|e| rest_error(&tab, &format!("POST /v1/{kind}"), e))?;
            to_js(&object)
        })
    }

    /// Runs a GraphQL query on this tab's engine, as a peer's
    /// `POST /v1/graphql` does: `Local` from its objects, `Network` planned
    /// against the schemas of the peers it sees, sent to them through the
    /// core's fan-out (at most `maxInFlight` of one query and `maxPerPeer`
    /// to one peer at once, each within `timeoutMs` or the query's
    /// `Network(networkTimeout:)`, whichever is shorter) and merged; its own
    /// part is answered here. Resolves to the response, errors included.
    #[wasm_bindgen(unchecked_return_type = "Promise<GraphQLResponse>")]
    pub fn query(
        &self,
        graphql: String,
        #[wasm_bindgen(unchecked_param_type = "ValidateOptions | undefined")] options: JsValue,
    ) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let options: plexus_wasm::pure::ValidateOptions =
                from_js(Some(options), "query options")?;
            let request = GraphQLRequest {
                query: graphql,
                variables: options.variables,
                operation_name: options.operation_name,
            };
            to_js(&tab.query(request).await.body)
        })
    }

    /// Leaves the network (`DELETE /peers/{id}` at genesis, signed), closes
    /// the socket and stops the timers. Resolves within `timeoutMs`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&mut self) -> js_sys::Promise {
        self.unlisten();
        let tab = self.tab.clone();
        future_to_promise(async move {
            tab.leave().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops without leaving, as a crashed or frozen page would: the socket
    /// closes, the pings stop, and genesis evicts the tab after its peer
    /// timeout unless it joins again (with its kept key) first.
    pub fn close(&mut self) {
        self.unlisten();
        self.tab.close();
    }

    /// Whether it has left or closed.
    #[wasm_bindgen(getter)]
    pub fn stopped(&self) -> bool {
        self.tab.is_stopped()
    }

    /// Whether its relay socket is up. While it is down (genesis restarted,
    /// the network went away) the tab reconnects on its own, within
    /// `reconnectAttempts`, and nobody can reach it meanwhile.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.tab.is_connected()
    }
}

impl PlexusPeer {
    fn unlisten(&mut self) {
        if let (Some(window), Some(closure)) = (web_sys::window(), self.pagehide.take()) {
            let _ = window
                .remove_event_listener_with_callback("pagehide", closure.as_ref().unchecked_ref());
        }
    }
}
