//! plexus-wasm: the Plexus network client for browsers and Node, as an npm module.
//!
//! `new NetworkClient(genesisUrl, {token})` lists the peers, watches the
//! list live, fetches schemas, and runs Network queries: planned in the
//! browser by `plexus-core` exactly as a peer plans them, sent to the peers
//! directly and in parallel, and merged as a peer merges them. Whether a
//! query fits a peer's classes is that peer's engine to judge (it answers
//! with errors and paths); `validateQuery` checks what the planner checks:
//! syntax, shape and known peers. `schemaHash` hashes as the servers do. Errors reach JavaScript as `Error` objects named `PlexusError`
//! with a `kind`; panics (there should be none) are logged by
//! `console_error_panic_hook`.
//!
//! The decisions live in [`pure`] and are tested natively; the other
//! modules move bytes between JavaScript, `fetch` and `EventSource`.

mod client;
pub mod error;
pub mod fanout;
mod http;
pub mod pure;
mod watch;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

pub use client::NetworkClient;
pub use error::ClientError;
pub use watch::WatchHandle;

/// The result of a function exported to JavaScript.
pub type JsResult<T> = Result<T, JsValue>;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A registered peer, as genesis lists it (`GET /peers`). */
export interface Peer {
  /** Its id (a UUID), new on every registration. */
  id: string;
  /** Its name: the field that names it in Network queries. */
  peerName: string;
  /** Where it listens, without a trailing slash. */
  peerUri: string;
  /** When genesis last heard from it, in ms since the Unix epoch. */
  last_contact_at: number;
  /** The hash of its schema (empty before its first ping); `schema_hash`
   * like `last_contact_at`, as the original genesis's `Peer` says. */
  schema_hash: string;
}

/** What happened to a peer. */
export type ChangeKind = "joined" | "left" | "evicted" | "updated";

/** One change of the peer list. */
export interface PeerChange {
  /** The list version after the change. */
  version: number;
  kind: ChangeKind;
  /** The peer, as it was at that moment. */
  peer: Peer;
}

/** What `watch(callback)` calls its callback with. */
export type WatchEvent =
  | { type: "snapshot"; version: number; peers: Peer[] }
  | ({ type: "change" } & PeerChange)
  | { type: "error"; message: string };

/** A property of a class. */
export interface Property {
  name: string;
  /** One primitive type (`["int"]`) or the class names of a reference. */
  dataType: string[];
  description?: string;
}

/** A class of Things or Actions. */
export interface Class {
  class: string;
  description?: string;
  properties: Property[];
}

/** A peer's schema, as `GET /v1/schema` returns it. */
export interface Schema {
  things?: { classes: Class[] };
  actions?: { classes: Class[] };
}

/** A GraphQL error. */
export interface GraphQLError {
  message: string;
  locations?: { line: number; column: number }[];
  path?: (string | number)[];
}

/** A GraphQL response: data, and an error per failed part (e.g. per peer). */
export interface GraphQLResponse {
  data?: any;
  errors?: GraphQLError[];
}

/** Options of `new NetworkClient(genesisUrl, options)`. */
export interface ClientOptions {
  /** The network's join token, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** How long each request may take, in ms (default 10000); also the
   * per-peer time of a Network query, which `Network(networkTimeout:)`
   * may shorten. */
  timeoutMs?: number;
  /** Local queries of one Network query sent at once (default 8). */
  maxInFlight?: number;
  /** Requests to one peer at once, across this client's Network queries (default 8). */
  maxPerPeer?: number;
}

/** Options of `client.query(graphql, options)`. */
export interface QueryOptions {
  /** Send the query through this peer (a name genesis lists, or its URL) instead of planning it here. */
  via?: string;
  variables?: Record<string, unknown>;
  operationName?: string;
}

/** Options of `validateQuery(query, schemas, options)`. */
export interface ValidateOptions {
  variables?: Record<string, unknown>;
  operationName?: string;
}

/** What every function of this module throws or rejects with. */
export interface PlexusError extends Error {
  name: "PlexusError";
  kind: "invalid-input" | "unknown-peer" | "network" | "http" | "timeout" | "decode" | "unsupported";
  /** The HTTP status, for kind `http`. */
  status?: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// `ClientOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "ClientOptions")]
    pub type ClientOptionsArg;
    /// `QueryOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "QueryOptions")]
    pub type QueryOptionsArg;
    /// `ValidateOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "ValidateOptions")]
    pub type ValidateOptionsArg;
}

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Checks a Network query as the planner does: syntax, shape, and that every
/// peer it names is among `schemas` (`{peerName: schema}`); the errors, an
/// empty array when it can be planned. Classes and properties are judged by
/// each named peer's GraphQL engine when the query runs. Throws (kind `invalid-input`) when
/// `schemas` or `options` are malformed.
#[wasm_bindgen(js_name = validateQuery, unchecked_return_type = "GraphQLError[]")]
pub fn validate_query(
    query: &str,
    #[wasm_bindgen(unchecked_param_type = "Record<string, Schema>")] schemas: JsValue,
    options: Option<ValidateOptionsArg>,
) -> JsResult<JsValue> {
    let schemas = pure::parse_schemas(from_js(Some(schemas), "schemas")?)?;
    let options: pure::ValidateOptions = from_js(options.map(JsValue::from), "validate options")?;
    to_js(&pure::validate(query, &options, &schemas))
}

/// The schema hash of a schema (an object, or its JSON text), exactly as
/// peers compute it: hex SHA-256 of its canonical JSON. Throws (kind
/// `invalid-input`) when it is not a Plexus schema.
#[wasm_bindgen(js_name = schemaHash)]
pub fn schema_hash(
    #[wasm_bindgen(unchecked_param_type = "Schema | string")] schema: JsValue,
) -> JsResult<String> {
    let hash = match schema.as_string() {
        Some(text) => pure::schema_hash_of_text(&text)?,
        None => pure::schema_hash_of_json(from_js(Some(schema), "schema")?)?,
    };
    Ok(hash)
}

/// The version of this module.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// A Rust value as a plain JavaScript value (objects, not `Map`s).
#[doc(hidden)]
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> JsResult<JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            ClientError::Decode {
                url: "(result)".to_owned(),
                reason: e.to_string(),
            }
            .into()
        })
}

/// A JavaScript argument as a Rust value; `undefined` and `null` give the default.
#[doc(hidden)]
pub fn from_js<T: DeserializeOwned + Default>(
    value: Option<JsValue>,
    what: &str,
) -> Result<T, ClientError> {
    match value {
        None => Ok(T::default()),
        Some(v) if v.is_undefined() || v.is_null() => Ok(T::default()),
        Some(v) => {
            // Through a JSON value: serde-wasm-bindgen reads only the fields a
            // struct names, so `deny_unknown_fields` would not see a typo.
            let json: serde_json::Value = serde_wasm_bindgen::from_value(v)
                .map_err(|e| ClientError::invalid(format!("{what}: {e}")))?;
            serde_json::from_value(json).map_err(|e| ClientError::invalid(format!("{what}: {e}")))
        }
    }
}
