//! `POST /v1/batching/things` and `POST /v1/batching/actions`: many objects
//! in one request and one transaction (one fsync), in the original's shape.
//!
//! The body is `{"things": [object, …]}` (or `{"actions": […]}`), each object
//! as the body of `POST /v1/things`. The answer lists one result per object,
//! in order: the stored object with `"result": {"status": "SUCCESS"}`, or its
//! class and id with `"result": {"status": "FAILED", "errors": {"error":
//! [{"message": …}]}}`, so a bad object does not lose the good ones. A body
//! over [`BatchLimits::max_bytes`] or with more than
//! [`BatchLimits::max_objects`] objects is refused whole (413).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{NewObject, PeerState};
use plexus_server::AppError;

/// The default of [`BatchLimits::max_objects`].
pub const DEFAULT_BATCH_OBJECTS: usize = 1_000;
/// The default of [`BatchLimits::max_bytes`] (8 MiB).
pub const DEFAULT_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// The default of [`BatchLimits::max_running`]: redb writes one
/// transaction at a time anyway, so two batches at once keep the disk busy
/// (one parses while the other commits) and bound what waiting batches
/// hold in memory (a parsed body is a few times its bytes).
pub const DEFAULT_BATCH_RUNNING: usize = 2;

/// The bounds of one batch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many objects in one request.
    pub max_objects: usize,
    /// At most this many bytes of body in one request.
    pub max_bytes: usize,
    /// At most this many batch requests are read and written at once; the
    /// others wait, their bodies unread (`--batch-max-running`).
    pub max_running: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_objects: DEFAULT_BATCH_OBJECTS,
            max_bytes: DEFAULT_BATCH_BYTES,
            max_running: DEFAULT_BATCH_RUNNING,
        }
    }
}

/// The batch routes.
pub fn routes() -> Router<PeerState> {
    Router::new().route("/v1/batching/{kind}", post(batch))
}

/// `"result": {"status": "SUCCESS"}`.
#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// One object's answer: the stored object, or why it was not stored.
#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Stored {
        #[serde(flatten)]
        object: super::Object,
        result: Status,
    },
    Failed(Value),
}

/// The answer of an object that was not stored.
fn failed(given: &Value, message: &str) -> Value {
    let mut out = Map::new();
    for key in ["class", "id"] {
        if let Some(v) = given.get(key).filter(|v| v.is_string()) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert(
        "result".into(),
        json!({ "status": "FAILED", "errors": { "error": [{ "message": message }] } }),
    );
    Value::Object(out)
}

async fn batch(
    State(state): State<PeerState>,
    Path(segment): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Vec<Answer>>), AppError> {
    let kind = super::api::kind(&segment)?;
    let limits = state.db.batch_limits();
    let too_large = || {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch body holds at most {} bytes (--batch-max-bytes)",
                limits.max_bytes
            ),
        )
    };
    // A turn first: a waiting batch holds no body in memory.
    let _turn = state.db.batch_turn().await;
    let bytes = axum::body::to_bytes(body, limits.max_bytes)
        .await
        .map_err(|_| too_large())?;
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(AppError::bad_request(format!(
            "expected a JSON object {{\"{kind}\": [object, ...]}}"
        )));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| *k != kind.as_str() && *k != "fields")
    {
        return Err(AppError::unprocessable(format!(
            "unknown field {other:?}: the body is {{\"{kind}\": [object, ...]}}"
        )));
    }
    let Some(Value::Array(items)) = fields.remove(kind.as_str()) else {
        return Err(AppError::unprocessable(format!(
            "{kind:?} must be a list of objects"
        )));
    };
    if items.len() > limits.max_objects {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch holds at most {} objects (--batch-max-objects); this one has {}",
                limits.max_objects,
                items.len()
            ),
        ));
    }
    let parsed: Vec<Result<NewObject, String>> = items
        .iter()
        .map(|v| NewObject::deserialize(v).map_err(|e| e.to_string()))
        .collect();
    let results = state.db.create_batch(kind, parsed).await?;
    let answers = items
        .iter()
        .zip(results)
        .map(|(given, result)| match result {
            Ok(object) => Answer::Stored {
                object,
                result: Status { status: "SUCCESS" },
            },
            Err(e) => Answer::Failed(failed(given, &e)),
        })
        .collect();
    Ok((StatusCode::OK, Json(answers)))
}
