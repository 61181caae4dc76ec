//! `Network`: the engine validates the whole query against the remote
//! peers' types, then the core splits it into one Local query per distinct
//! peer ([`plexus_core::network::plan`]), the host's [`Remote`] asks them,
//! and the core merges the answers ([`plexus_core::network::merge`]). The
//! merged data is served to the query's fields by response key; a field
//! without data gets the error the merger reported at its path.
//!
//! The plan runs once per request, whatever the number of `Network` root
//! fields: the first one to resolve asks, the others wait for its answer.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_graphql::Error;
use async_graphql::dynamic::{Field, FieldValue, ResolverContext, TypeRef};
use futures::lock::Mutex;
use serde_json::{Map, Value};

use crate::build::json_value;
use crate::{Remote as Asker, RequestData};

/// The error of a `Network` field on a peer in no network.
pub const NO_NETWORK: &str = "Network queries need a network: this peer runs stand-alone";

/// An object of a remote peer's answer, read by response key: the fields
/// below `Network` borrow it from the merged answer (a JSON object is a
/// remote part; a whole [`Value`] is a local computed one, read by name).
pub(crate) type Remote = Map<String, Value>;

/// The merged answer of the request's Network query.
#[derive(Default)]
pub(crate) struct Merged {
    data: Map<String, Value>,
    /// Errors by response path (segments as text).
    errors: HashMap<Vec<String>, String>,
    /// Why nothing could be asked (the plan failed).
    failure: Option<String>,
}

/// Per request: the merged answer, once asked.
#[derive(Default)]
pub(crate) struct Shared {
    /// Held by the field that asks; the others wait for its answer.
    asking: Mutex<()>,
    merged: OnceLock<Merged>,
}

impl Shared {
    async fn get(&self, data: &RequestData, remote: &Arc<dyn Asker>) -> &Merged {
        let _asking = self.asking.lock().await;
        if let Some(merged) = self.merged.get() {
            return merged;
        }
        let merged = ask(data, remote).await;
        self.merged.get_or_init(|| merged)
    }
}

async fn ask(data: &RequestData, remote: &Arc<dyn Asker>) -> Merged {
    let empty = Map::new();
    let request = &data.request;
    let plan = match plexus_core::network::plan(
        &request.query,
        request.operation_name.as_deref(),
        request.variables.as_ref().unwrap_or(&empty),
        &*data.network_peers,
    ) {
        Ok(plan) => plan,
        Err(errors) => {
            let text: Vec<String> = errors.into_iter().map(|e| e.message).collect();
            return Merged {
                failure: Some(text.join("; ")),
                ..Merged::default()
            };
        }
    };
    let answers = remote.ask(plan.queries.clone()).await;
    let mut merged = plexus_core::network::merge(&plan, answers);
    let mut out = Merged {
        data: match merged.get_mut("data").map(Value::take) {
            Some(Value::Object(data)) => data,
            _ => Map::new(),
        },
        ..Merged::default()
    };
    for e in merged
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path: Vec<String> = e
            .get("path")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned();
        out.errors
            .entry(path)
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&message);
            })
            .or_insert(message);
    }
    out
}

/// The `Network` root field.
pub(crate) fn root_field() -> Field {
    Field::new("Network", TypeRef::named("WeaviateNetworkObj"), |ctx| {
        crate::caught!(ctx, {
            let data = ctx.data::<RequestData>()?;
            let Some(remote) = &data.remote else {
                return Err(Error::new(NO_NETWORK));
            };
            let merged = data.network.get(data, remote).await;
            if let Some(failure) = &merged.failure {
                return Err(Error::new(failure.clone()));
            }
            let key = ctx.ctx.item.node.response_key().node.as_str();
            match json_value(merged.data.get(key), true) {
                Some(v) => Ok(Some(v)),
                None => error_at(&ctx).map_or(Ok(None), Err),
            }
        })
    })
}

/// The error the merger reported at this field's path, if any.
pub(crate) fn error_at(ctx: &ResolverContext<'_>) -> Option<Error> {
    let data = ctx.data::<RequestData>().ok()?;
    let merged = data.network.merged.get()?;
    let path = ctx.path_node?.to_string_vec();
    merged.errors.get(&path).map(|m| Error::new(m.clone()))
}

/// A reference property of a remote object: each referenced object is
/// typed by the `__typename` its peer answered (the core asks for it).
pub(crate) fn reference(name: &str, ty: TypeRef, peer: String) -> Field {
    Field::new(name, ty, move |ctx| {
        let peer = peer.clone();
        crate::caught!(ctx, {
            let parent = ctx.parent_value.try_downcast_ref::<Remote>()?;
            let key = ctx.ctx.item.node.response_key().node.as_str();
            let Some(Value::Array(items)) = parent.get(key) else {
                return error_at(&ctx).map_or(Ok(None), Err);
            };
            let mut out = Vec::new();
            for item in items {
                let (Some(object), Some(class)) = (
                    item.as_object(),
                    item.get("__typename").and_then(Value::as_str),
                ) else {
                    return Err(Error::new(format!(
                        "peer {peer} answered a reference without its __typename"
                    )));
                };
                let ty = format!("{peer}_{class}");
                out.push(FieldValue::borrowed_any(object).with_type(ty));
            }
            Ok(Some(FieldValue::list(out)))
        })
    })
}
