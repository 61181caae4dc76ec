//! `Fetch` and `Introspect`, the original's questions by meaning, under
//! `Local` (answered here from the peer's objects) and `Network` (the same
//! types, answered by the fan-out).
//!
//! `Local { Fetch { Things(where: {class, properties, first}) { className
//! beacon certainty } Actions(…) Fuzzy(value:, certainty:) { … } }
//! Introspect { Things(where: [{class, properties}]) { weaviate className
//! certainty properties { propertyName certainty } } Actions(…)
//! Beacon(id:) { weaviate className properties { propertyName } } } }`.
//!
//! Resolvers stay thin: the core reads the arguments, searches the schema
//! in the contextionary and turns each class's conditions into one
//! [`plexus_core::filter::Filter`] ([`plexus_core::fetch`]); the resolver
//! asks [`crate::Source::query`] once per class and shapes the answer.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, TypeRef,
};
use plexus_core::contextionary::Contextionary;
use plexus_core::fetch::{self, FetchWhere, IntrospectWhere};
use plexus_core::graphql::DEFAULT_LIMIT;
use plexus_core::schema::{Kind, Schema, parse_beacon};
use serde_json::{Value, json};

use crate::RequestData;
use crate::build::data_field;

/// What Fetch and Introspect need beyond the schema: the contextionary,
/// and the peer's name for beacons (`weaviate://{peer}/things/{uuid}`).
#[derive(Clone, Debug)]
pub struct Meaning {
    /// The network's contextionary.
    pub contextionary: Arc<Contextionary>,
    /// The peer's name (`localhost` for a peer in no network).
    pub peer: String,
}

/// The error of Fetch or Introspect on an engine built without a contextionary.
pub const NO_CONTEXTIONARY: &str =
    "Fetch and Introspect need a contextionary: this engine has none";

/// The types Fetch and Introspect use, Local and Network alike.
pub(crate) fn types() -> (Vec<Object>, Vec<InputObject>, Vec<Enum>) {
    let keyword = InputObject::new("FetchKeyword")
        .field(InputValue::new("value", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("weight", TypeRef::named_nn(TypeRef::FLOAT)));
    let name_fields = |o: InputObject| {
        o.field(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
            .field(InputValue::new(
                "certainty",
                TypeRef::named_nn(TypeRef::FLOAT),
            ))
            .field(InputValue::new(
                "keywords",
                TypeRef::named_nn_list("FetchKeyword"),
            ))
            .field(InputValue::new("first", TypeRef::named(TypeRef::INT)))
    };
    let class = name_fields(InputObject::new("FetchClassWhere"));
    let mut property = name_fields(InputObject::new("FetchPropertyWhere")).field(InputValue::new(
        "operator",
        TypeRef::named_nn("FetchOperator"),
    ));
    for (key, ty) in [
        ("valueString", TypeRef::STRING),
        ("valueText", TypeRef::STRING),
        ("valueInt", TypeRef::INT),
        ("valueNumber", TypeRef::FLOAT),
        ("valueBoolean", TypeRef::BOOLEAN),
        ("valueDate", TypeRef::STRING),
    ] {
        property = property.field(InputValue::new(key, TypeRef::named(ty)));
    }
    let fetch_where = InputObject::new("FetchWhere")
        .field(InputValue::new(
            "class",
            TypeRef::named_nn("FetchClassWhere"),
        ))
        .field(InputValue::new(
            "properties",
            TypeRef::named_nn_list("FetchPropertyWhere"),
        ))
        .field(InputValue::new("first", TypeRef::named(TypeRef::INT)));
    let introspect_name = name_fields(InputObject::new("IntrospectNameWhere"));
    let introspect_where = InputObject::new("IntrospectWhere")
        .field(InputValue::new(
            "class",
            TypeRef::named_nn_list_nn("IntrospectNameWhere"),
        ))
        .field(InputValue::new(
            "properties",
            TypeRef::named_nn_list("IntrospectNameWhere"),
        ));
    let operator = Enum::new("FetchOperator").items([
        "Equal",
        "NotEqual",
        "GreaterThan",
        "GreaterThanEqual",
        "LessThan",
        "LessThanEqual",
        "Like",
    ]);
    let leaf = |name: &str, ty: &str| data_field(name, TypeRef::named(ty));
    let result = Object::new("FetchResult")
        .field(leaf("className", TypeRef::STRING))
        .field(leaf("beacon", TypeRef::STRING))
        .field(leaf("certainty", TypeRef::FLOAT));
    let prop = Object::new("IntrospectProperty")
        .field(leaf("propertyName", TypeRef::STRING))
        .field(leaf("certainty", TypeRef::FLOAT));
    let introspected = Object::new("IntrospectResult")
        .field(leaf("weaviate", TypeRef::STRING))
        .field(leaf("className", TypeRef::STRING))
        .field(leaf("certainty", TypeRef::FLOAT))
        .field(data_field(
            "properties",
            TypeRef::named_list("IntrospectProperty"),
        ));
    let beacon_prop =
        Object::new("IntrospectBeaconProperty").field(leaf("propertyName", TypeRef::STRING));
    let beacon = Object::new("IntrospectBeaconResult")
        .field(leaf("weaviate", TypeRef::STRING))
        .field(leaf("className", TypeRef::STRING))
        .field(data_field(
            "properties",
            TypeRef::named_list("IntrospectBeaconProperty"),
        ));
    (
        vec![result, prop, introspected, beacon_prop, beacon],
        vec![
            keyword,
            class,
            property,
            fetch_where,
            introspect_name,
            introspect_where,
        ],
        vec![operator],
    )
}

/// `Things(where: FetchWhere!)`'s argument (Local resolves it here,
/// Network through the fan-out).
pub(crate) fn fetch_arguments(field: Field) -> Field {
    field.argument(InputValue::new("where", TypeRef::named_nn("FetchWhere")))
}

/// `Fuzzy(value:, certainty:)`'s arguments.
pub(crate) fn fuzzy_arguments(field: Field) -> Field {
    field
        .argument(InputValue::new("value", TypeRef::named_nn(TypeRef::STRING)))
        .argument(InputValue::new(
            "certainty",
            TypeRef::named_nn(TypeRef::FLOAT),
        ))
}

/// `Things(where: [IntrospectWhere!]!)`'s argument.
pub(crate) fn introspect_arguments(field: Field) -> Field {
    field.argument(InputValue::new(
        "where",
        TypeRef::named_nn_list_nn("IntrospectWhere"),
    ))
}

/// `Beacon(id:)`'s argument.
pub(crate) fn beacon_arguments(field: Field) -> Field {
    field.argument(InputValue::new("id", TypeRef::named_nn(TypeRef::STRING)))
}

fn arg(ctx: &ResolverContext<'_>, name: &str) -> async_graphql::Result<Value> {
    Ok(ctx
        .args
        .get(name)
        .map(|v| v.as_value().clone().into_json())
        .transpose()?
        .unwrap_or_default())
}

fn meaning(data: &RequestData) -> async_graphql::Result<&Meaning> {
    data.meaning
        .as_deref()
        .ok_or_else(|| Error::new(NO_CONTEXTIONARY))
}

fn json_list(items: Vec<Value>) -> Option<FieldValue<'static>> {
    Some(FieldValue::list(
        items.into_iter().map(FieldValue::owned_any),
    ))
}

/// The beacon of an object of this peer.
fn beacon(peer: &str, kind: Kind, id: uuid::Uuid) -> String {
    format!("weaviate://{peer}/{kind}/{id}")
}

/// A Local field of Fetch or Introspect: `body` gets the request's data,
/// the engine's contextionary (an error without one) and the schema; its
/// error is a field error.
fn resolver<F>(name: &str, ty: TypeRef, schema: &Arc<Schema>, body: F) -> Field
where
    F: Fn(
            &ResolverContext<'_>,
            &RequestData,
            &Meaning,
            &Schema,
        ) -> async_graphql::Result<Option<FieldValue<'static>>>
        + Send
        + Sync
        + 'static,
{
    let schema = schema.clone();
    Field::new(name, ty, move |ctx| {
        let result = ctx
            .data::<RequestData>()
            .and_then(|data| body(&ctx, data, meaning(data)?, &schema));
        FieldFuture::Value(crate::field_error(&ctx, result))
    })
}

/// `Local { Fetch }` and `Local { Introspect }`, and their types.
pub(crate) fn local_fields(schema: &Arc<Schema>) -> (Field, Field, Vec<Object>) {
    let mut fetch_obj = Object::new("WeaviateLocalFetchObj");
    let mut introspect_obj = Object::new("WeaviateLocalIntrospectObj");
    for kind in Kind::ALL {
        let things = TypeRef::named_list("FetchResult");
        fetch_obj = fetch_obj.field(fetch_arguments(resolver(
            kind.graphql_field(),
            things,
            schema,
            move |ctx, data, m, s| {
                let w = FetchWhere::parse(&arg(ctx, "where")?)
                    .map_err(|e| Error::new(e.to_string()))?;
                let plans = fetch::plan(&m.contextionary, s, kind, &w)
                    .map_err(|e| Error::new(e.to_string()))?;
                let mut out = Vec::new();
                for plan in plans {
                    let left = w.first.saturating_sub(out.len());
                    if left == 0 {
                        break;
                    }
                    let objects = data
                        .source
                        .query(kind, &plan.class, plan.filter.as_ref(), left)
                        .map_err(|e| Error::new(e.to_string()))?;
                    data.count(objects.len())?;
                    out.extend(objects.into_iter().map(|o| {
                        json!({"className": plan.class, "beacon": beacon(&m.peer, kind, o.id),
                           "certainty": plan.certainty})
                    }));
                }
                Ok(json_list(out))
            },
        )));
        let found = TypeRef::named_list("IntrospectResult");
        introspect_obj = introspect_obj.field(introspect_arguments(resolver(
            kind.graphql_field(),
            found,
            schema,
            move |ctx, _, m, s| {
                let wheres = IntrospectWhere::parse_list(&arg(ctx, "where")?)
                    .map_err(|e| Error::new(e.to_string()))?;
                let found = fetch::introspect(&m.contextionary, s, kind, &wheres)
                    .map_err(|e| Error::new(e.to_string()))?;
                Ok(json_list(
                    found
                        .into_iter()
                        .map(|f| {
                            let props: Vec<Value> = f
                                .properties
                                .into_iter()
                                .map(|(p, c)| json!({"propertyName": p, "certainty": c}))
                                .collect();
                            json!({"weaviate": m.peer, "className": f.class,
                               "certainty": f.certainty, "properties": props})
                        })
                        .collect(),
                ))
            },
        )));
    }
    fetch_obj = fetch_obj.field(fuzzy_arguments(resolver(
        "Fuzzy",
        TypeRef::named_list("FetchResult"),
        schema,
        |ctx, data, m, s| {
            let value = arg(ctx, "value")?;
            let certainty = arg(ctx, "certainty")?.as_f64().unwrap_or(-1.0);
            let plan = fetch::fuzzy(
                &m.contextionary,
                s,
                value.as_str().unwrap_or_default(),
                certainty,
            )
            .map_err(|e| Error::new(e.to_string()))?;
            let mut found = Vec::new();
            for (kind, class, filter) in &plan.classes {
                let objects = data
                    .source
                    .query(*kind, class, Some(filter), DEFAULT_LIMIT)
                    .map_err(|e| Error::new(e.to_string()))?;
                for o in objects {
                    if let Some(c) = fetch::fuzzy_certainty(&o, &plan.words) {
                        found.push((c, beacon(&m.peer, *kind, o.id), class.clone()));
                    }
                }
            }
            found.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            found.truncate(DEFAULT_LIMIT);
            data.count(found.len())?;
            Ok(json_list(
                found
                    .into_iter()
                    .map(|(c, b, class)| json!({"className": class, "beacon": b, "certainty": c}))
                    .collect(),
            ))
        },
    )));
    introspect_obj = introspect_obj.field(beacon_arguments(resolver(
        "Beacon",
        TypeRef::named("IntrospectBeaconResult"),
        schema,
        |ctx, data, m, s| {
            let id = arg(ctx, "id")?;
            let Some((kind, id)) = id.as_str().and_then(parse_beacon) else {
                return Err(Error::new(format!(
                    "{id} is not a beacon (weaviate://PEER/things/UUID)"
                )));
            };
            let Some(object) = data.source.get(id).map_err(|e| Error::new(e.to_string()))? else {
                return Ok(None);
            };
            let Some(class) = s.class(kind, &object.class).filter(|_| object.kind == kind) else {
                return Ok(None);
            };
            let props: Vec<Value> = class
                .properties
                .iter()
                .map(|p| json!({"propertyName": p.name}))
                .collect();
            Ok(Some(FieldValue::owned_any(json!({
                "weaviate": m.peer, "className": class.class, "properties": props
            }))))
        },
    )));
    let fixed = |name: &str, ty: &str| {
        Field::new(name, TypeRef::named(ty), |_| {
            FieldFuture::Value(Some(FieldValue::owned_any(())))
        })
    };
    (
        fixed("Fetch", "WeaviateLocalFetchObj"),
        fixed("Introspect", "WeaviateLocalIntrospectObj"),
        vec![fetch_obj, introspect_obj],
    )
}

/// `Network { Fetch Introspect }` and their types: the same arguments and
/// result types as Local's, answered from the merged answer of every peer
/// asked ([`plexus_core::network`] plans and merges); each list carries
/// one error per peer that did not answer.
pub(crate) fn network_fields() -> (Field, Field, Vec<Object>) {
    let mut fetch_obj = Object::new("WeaviateNetworkFetchObj");
    let mut introspect_obj = Object::new("WeaviateNetworkIntrospectObj");
    for kind in Kind::ALL {
        let name = kind.graphql_field();
        fetch_obj = fetch_obj.field(fetch_arguments(crate::network::ranked(
            name,
            TypeRef::named_list("FetchResult"),
        )));
        introspect_obj = introspect_obj.field(introspect_arguments(crate::network::ranked(
            name,
            TypeRef::named_list("IntrospectResult"),
        )));
    }
    fetch_obj = fetch_obj.field(fuzzy_arguments(crate::network::ranked(
        "Fuzzy",
        TypeRef::named_list("FetchResult"),
    )));
    introspect_obj = introspect_obj.field(beacon_arguments(data_field(
        "Beacon",
        TypeRef::named("IntrospectBeaconResult"),
    )));
    (
        data_field("Fetch", TypeRef::named("WeaviateNetworkFetchObj")),
        data_field("Introspect", TypeRef::named("WeaviateNetworkIntrospectObj")),
        vec![fetch_obj, introspect_obj],
    )
}
