//! `Network`: the engine serves a Network query in two steps that never
//! wait on a peer. [`Engine::begin`](crate::Engine::begin) validates the
//! request against the remote peers' types (a run in which `Local` and
//! `Network` resolve to nothing) and plans it with
//! [`plexus_core::network::plan`]; the host then asks the peers (the core's
//! [`plexus_core::fanout`]) and merges ([`plexus_core::network::merge`]),
//! and [`Engine::execute`](crate::Engine::execute) runs the request with
//! the typed [`Merged`] answer in hand. Its data is served to the query's
//! fields by response key; a field without data gets the merger's error at
//! its path.

use std::collections::HashMap;

use async_graphql::Error;
use async_graphql::dynamic::{Field, FieldValue, InputValue, ResolverContext, TypeRef};
use plexus_core::network::{Merged, TIMEOUT_ARGUMENT};
use serde_json::{Map, Value};

use crate::RequestData;
use crate::build::json_value;

/// The error of a `Network` field on a peer in no network.
pub const NO_NETWORK: &str = "Network queries need a network: this peer runs stand-alone";

/// An object of a remote peer's answer, read by response key: the fields
/// below `Network` borrow it from the merged answer (a JSON object is a
/// remote part; a whole [`Value`] is a local computed one, read by name).
pub(crate) type Remote = Map<String, Value>;

/// How `Network` resolves in one run of the engine.
pub(crate) enum Mode {
    /// The peer is in no network: an error.
    Off,
    /// Validating before the peers are asked: `Local` and `Network` resolve
    /// to nothing, nothing is read.
    Planning,
    /// The peers' answers, merged.
    Served(Served),
}

/// The merged answer, with its errors by response path.
pub(crate) struct Served {
    data: Map<String, Value>,
    /// Errors by response path (segments as text), in the merger's order.
    errors: HashMap<Vec<String>, Vec<String>>,
}

impl From<Merged> for Served {
    fn from(merged: Merged) -> Self {
        let mut errors: HashMap<Vec<String>, Vec<String>> = HashMap::new();
        for e in merged.errors {
            let path: Vec<String> = e
                .path
                .into_iter()
                .map(|p| match p {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect();
            errors.entry(path).or_default().push(e.message);
        }
        Served {
            data: merged.data,
            errors,
        }
    }
}

/// The `Network` root field.
pub(crate) fn root_field() -> Field {
    Field::new("Network", TypeRef::named("WeaviateNetworkObj"), |ctx| {
        crate::now!(ctx, {
            let data = ctx.data::<RequestData>()?;
            let served = match &data.network {
                Mode::Off => return Err(Error::new(NO_NETWORK)),
                Mode::Planning => return Ok(None),
                Mode::Served(served) => served,
            };
            let key = ctx.ctx.item.node.response_key().node.as_str();
            match json_value(served.data.get(key), true) {
                Some(v) => Ok(Some(v)),
                None => error_at(&ctx).map_or(Ok(None), Err),
            }
        })
    })
    .argument(
        InputValue::new(TIMEOUT_ARGUMENT, TypeRef::named(TypeRef::INT)).description(
            "How long each peer may take to answer, in milliseconds (the peer's default and ceiling apply)",
        ),
    )
}

/// The error the merger reported at this field's path, if any.
pub(crate) fn error_at(ctx: &ResolverContext<'_>) -> Option<Error> {
    let data = ctx.data::<RequestData>().ok()?;
    let Mode::Served(served) = &data.network else {
        return None;
    };
    let path = ctx.path_node?.to_string_vec();
    served.errors.get(&path).map(|m| Error::new(m.join("; ")))
}

/// A ranked list of Network Fetch or Introspect: the items of every peer
/// that answered, and beside them every error the merger reported at this
/// path (one per peer that did not answer), each a GraphQL error of its own.
#[cfg_attr(not(feature = "meaning"), allow(dead_code))]
pub(crate) fn ranked(name: &str, ty: TypeRef) -> Field {
    Field::new(name, ty, |ctx| {
        crate::now!(ctx, {
            let data = ctx.data::<RequestData>()?;
            let Mode::Served(served) = &data.network else {
                return Ok(None);
            };
            let remote = ctx.parent_value.try_downcast_ref::<Remote>()?;
            if let Some(path) = ctx.path_node.map(|p| p.to_string_vec())
                && let Some(messages) = served.errors.get(&path)
            {
                for m in messages {
                    let error = Error::new(m.clone()).into_server_error(ctx.ctx.item.pos);
                    ctx.ctx.add_error(ctx.ctx.set_error_path(error));
                }
            }
            let key = ctx.ctx.item.node.response_key().node.as_str();
            Ok(json_value(remote.get(key), true))
        })
    })
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
