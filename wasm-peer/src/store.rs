//! What a tab keeps across reloads, in IndexedDB: one record per network
//! and name (`{genesis} {name}`) in the object store `tabs` of a database
//! (`plexus-peer` unless the page names another), holding the JSON of
//! [`Record`]: the key's seed, the schema and the objects; and each
//! contextionary it fetched, as bytes under `contextionary {hash}`.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

use crate::data::Saved;

/// The database a tab uses unless told otherwise.
pub const DEFAULT_DATABASE: &str = "plexus-peer";
const STORE: &str = "tabs";

/// One tab's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The seed of its Ed25519 key, hex.
    pub seed: String,
    /// Its schema and objects.
    #[serde(default)]
    pub saved: Saved,
}

/// The record's key: the network and the name.
pub fn key(genesis: &str, name: &str) -> String {
    format!("{genesis} {name}")
}

fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Waits for `request` to succeed (its result) or fail.
async fn wait(request: &IdbRequest) -> Result<JsValue, String> {
    let (tx, rx) = oneshot::channel::<Result<JsValue, String>>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let (ok_tx, err_tx) = (tx.clone(), tx);
    let ok_request = request.clone();
    let on_success = Closure::<dyn FnMut()>::new(move || {
        if let Some(tx) = ok_tx.borrow_mut().take() {
            let _ = tx.send(ok_request.result().map_err(js_error));
        }
    });
    let err_request = request.clone();
    let on_error = Closure::<dyn FnMut()>::new(move || {
        if let Some(tx) = err_tx.borrow_mut().take() {
            let message = err_request
                .error()
                .ok()
                .flatten()
                .map_or_else(|| "IndexedDB failed".to_owned(), |e| e.message());
            let _ = tx.send(Err(message));
        }
    });
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let result = rx
        .await
        .unwrap_or_else(|_| Err("IndexedDB dropped the request".into()));
    request.set_onsuccess(None);
    request.set_onerror(None);
    result
}

async fn open(database: &str) -> Result<IdbDatabase, String> {
    let factory = web_sys::window()
        .ok_or("no window: IndexedDB needs a browser page")?
        .indexed_db()
        .map_err(js_error)?
        .ok_or("this browser has no IndexedDB")?;
    let request: IdbOpenDbRequest = factory.open_with_u32(database, 1).map_err(js_error)?;
    let upgrade_request = request.clone();
    let on_upgrade = Closure::<dyn FnMut()>::new(move || {
        if let Ok(db) = upgrade_request.result() {
            let db: IdbDatabase = db.unchecked_into();
            if !db.object_store_names().contains(STORE) {
                let _ = db.create_object_store(STORE);
            }
        }
    });
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let db = wait(&request).await;
    request.set_onupgradeneeded(None);
    Ok(db?.unchecked_into())
}

/// The value under `key` in `database` (undefined when there is none).
async fn get(database: &str, key: &str) -> Result<JsValue, String> {
    let db = open(database).await?;
    let result = async {
        let tx = db.transaction_with_str(STORE).map_err(js_error)?;
        let store = tx.object_store(STORE).map_err(js_error)?;
        wait(&store.get(&JsValue::from_str(key)).map_err(js_error)?).await
    }
    .await;
    db.close();
    result
}

/// Writes `value` under `key` in `database`.
async fn put(database: &str, key: &str, value: &JsValue) -> Result<(), String> {
    let db = open(database).await?;
    let result = async {
        let tx = db
            .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)
            .map_err(js_error)?;
        let store = tx.object_store(STORE).map_err(js_error)?;
        let request = store
            .put_with_key(value, &JsValue::from_str(key))
            .map_err(js_error)?;
        wait(&request).await.map(|_| ())
    }
    .await;
    db.close();
    result
}

/// The record under `key` in `database`, if any.
pub async fn load(database: &str, key: &str) -> Result<Option<Record>, String> {
    match get(database, key).await?.as_string() {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("the saved record of {key:?} is damaged: {e}")),
    }
}

/// Writes `record` under `key` in `database`.
pub async fn save(database: &str, key: &str, record: &Record) -> Result<(), String> {
    let text = serde_json::to_string(record).map_err(|e| e.to_string())?;
    put(database, key, &JsValue::from_str(&text)).await
}

/// The key a contextionary's bytes are kept under: its hash.
pub fn contextionary_key(hash: &str) -> String {
    format!("contextionary {hash}")
}

/// The bytes under `key` in `database`, if any.
pub async fn load_bytes(database: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    let value = get(database, key).await?;
    Ok(value
        .dyn_into::<js_sys::Uint8Array>()
        .ok()
        .map(|bytes| bytes.to_vec()))
}

/// Writes `bytes` under `key` in `database`.
pub async fn save_bytes(database: &str, key: &str, bytes: &[u8]) -> Result<(), String> {
    put(database, key, &js_sys::Uint8Array::from(bytes)).await
}
