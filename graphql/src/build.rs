//! From Plexus schemas to one async-graphql dynamic schema.
//!
//! `Local` types are named as the classes are (`City`, its reference union
//! `CityInCountryObj`, its GetMeta type `MetaCity`); `Network` types are the
//! same prefixed with the peer's name and `_` (`PeerB_City`), so two peers'
//! classes of one name never clash. GetMeta's per-property types are shared
//! (`MetaNumber`, `MetaString`, `MetaBoolean`, `MetaProperty`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Scalar, SchemaBuilder,
    TypeRef, Union,
};
use async_graphql::{Error, Value as GqlValue};
use plexus_core::filter::Filter;
use plexus_core::graphql::parse_limit;
use plexus_core::names::PeerName;
use plexus_core::object::Object as Obj;
use plexus_core::schema::{Class, DataType, Kind, Schema, parse_beacon};
use serde_json::Value;

#[cfg(feature = "meaning")]
use crate::fetch;
use crate::network::Remote;
use crate::{ROOT_TYPE, RequestData, meta, network};

/// The scalar of a `where` argument: the original's filter object
/// (`{operator: Equal, path: ["name"], valueString: "Berlin"}`), checked
/// against the class by `plexus_core::filter`.
pub(crate) const WHERE: &str = "WhereFilter";

/// Whose types are being built: the peer's own, or a remote peer's.
#[derive(Clone)]
enum Side {
    Local(Arc<Schema>),
    Network(String),
}

impl Side {
    fn name(&self, base: &str) -> String {
        match self {
            Side::Local(_) => base.to_owned(),
            Side::Network(peer) => format!("{peer}_{base}"),
        }
    }
}

/// The schema builder with every type registered; the caller sets limits.
pub(crate) fn schema(local: &Schema, remotes: &BTreeMap<PeerName, Arc<Schema>>) -> SchemaBuilder {
    let mut types: Vec<Object> = Vec::new();
    let mut unions: Vec<Union> = Vec::new();
    let side = Side::Local(Arc::new(local.clone()));
    let mut root = Object::new(ROOT_TYPE);
    let mut local_obj = Object::new("WeaviateLocalObj");
    let mut has_local = false;
    if let Some(get) = get_type(&side, local, "WeaviateLocal", &mut types, &mut unions) {
        local_obj = local_obj.field(fixed("Get", &get));
        has_local = true;
    }
    if let Some(get) = meta_type(&side, local, "WeaviateLocal", &mut types) {
        local_obj = local_obj.field(fixed("GetMeta", &get));
        has_local = true;
    }
    #[cfg(feature = "meaning")]
    if let Side::Local(schema) = &side {
        let (fetch, introspect, objects) = fetch::local_fields(schema);
        local_obj = local_obj.field(fetch).field(introspect);
        types.extend(objects);
    }
    if !has_local {
        // An empty schema: `Local` still answers `__typename`, so the type
        // keeps one field, the peer's class count.
        local_obj = local_obj.field(Field::new(
            "classes",
            TypeRef::named_nn(TypeRef::INT),
            |_| FieldFuture::from_value(Some(GqlValue::from(0))),
        ));
    }
    types.push(local_obj);
    // `Local`, unless the run only validates a Network query before its
    // peers are asked (then nothing is read).
    root = root.field(Field::new(
        "Local",
        TypeRef::named("WeaviateLocalObj"),
        |ctx| {
            let planning = ctx
                .data::<RequestData>()
                .is_ok_and(|d| matches!(d.network, network::Mode::Planning));
            FieldFuture::Value((!planning).then(|| FieldValue::owned_any(())))
        },
    ));

    let mut net_get = Object::new("WeaviateNetworkGetObj");
    let mut net_meta = Object::new("WeaviateNetworkGetMetaObj");
    let (mut any_get, mut any_meta) = (false, false);
    for (peer, schema) in remotes {
        let side = Side::Network(peer.to_string());
        let prefix = format!("{peer}_");
        if let Some(get) = get_type(&side, schema, &prefix, &mut types, &mut unions) {
            net_get = net_get.field(data_field(peer.as_str(), TypeRef::named(get)));
            any_get = true;
        }
        if let Some(m) = meta_type(&side, schema, &prefix, &mut types) {
            net_meta = net_meta.field(data_field(peer.as_str(), TypeRef::named(m)));
            any_meta = true;
        }
    }
    // Fetch and Introspect ask every peer whose schema is known: they
    // exist as soon as one is.
    let by_meaning = cfg!(feature = "meaning") && !remotes.is_empty();
    if any_get || any_meta || by_meaning {
        let mut net = Object::new("WeaviateNetworkObj");
        #[cfg(feature = "meaning")]
        if by_meaning {
            let (fetch, introspect, objects) = fetch::network_fields();
            net = net.field(fetch).field(introspect);
            types.extend(objects);
        }
        if any_get {
            net = net.field(data_field("Get", TypeRef::named("WeaviateNetworkGetObj")));
            types.push(net_get);
        }
        if any_meta {
            net = net.field(data_field(
                "GetMeta",
                TypeRef::named("WeaviateNetworkGetMetaObj"),
            ));
            types.push(net_meta);
        }
        types.push(net);
        root = root.field(network::root_field());
    }

    let mut builder = async_graphql::dynamic::Schema::build(ROOT_TYPE, None, None)
        .register(root)
        .register(Scalar::new(WHERE).description(
            "A where filter: {operator, path, value<Type>} or {operator: And|Or, operands}",
        ));
    for ty in meta::types() {
        builder = builder.register(ty);
    }
    #[cfg(feature = "meaning")]
    {
        let (objects, inputs, enums) = fetch::types();
        for ty in objects {
            builder = builder.register(ty);
        }
        for ty in inputs {
            builder = builder.register(ty);
        }
        for ty in enums {
            builder = builder.register(ty);
        }
    }
    builder = builder.register(
        Object::new("GeoCoordinates")
            .field(data_field("latitude", TypeRef::named(TypeRef::FLOAT)))
            .field(data_field("longitude", TypeRef::named(TypeRef::FLOAT))),
    );
    for ty in types {
        builder = builder.register(ty);
    }
    for u in unions {
        builder = builder.register(u);
    }
    builder
}

/// A field whose value is a fixed object with no data of its own.
fn fixed(name: &str, type_name: &str) -> Field {
    Field::new(name, TypeRef::named(type_name), |_| {
        FieldFuture::Value(Some(FieldValue::owned_any(())))
    })
}

/// Builds `{prefix}GetObj { Things { City … } Actions { … } }`; `None` when
/// there is no class at all.
fn get_type(
    side: &Side,
    schema: &Schema,
    prefix: &str,
    types: &mut Vec<Object>,
    unions: &mut Vec<Union>,
) -> Option<String> {
    let get_name = format!("{prefix}GetObj");
    let mut get = Object::new(&get_name);
    let mut any = false;
    for kind in Kind::ALL {
        let classes = &schema.list(kind).classes;
        if classes.is_empty() {
            continue;
        }
        let kind_name = format!("{prefix}Get{}Obj", kind.graphql_field());
        let mut kind_obj = Object::new(&kind_name);
        for class in classes {
            kind_obj = kind_obj.field(class_field(side, kind, class));
            let (ty, refs) = class_type(side, schema, class);
            types.push(ty);
            unions.extend(refs);
        }
        types.push(kind_obj);
        get = get.field(kind_field(side, kind, &kind_name));
        any = true;
    }
    if !any {
        return None;
    }
    types.push(get);
    Some(get_name)
}

/// `Things` / `Actions` under a `Get` or `GetMeta`.
fn kind_field(side: &Side, kind: Kind, type_name: &str) -> Field {
    match side {
        Side::Local(_) => fixed(kind.graphql_field(), type_name),
        Side::Network(_) => data_field(kind.graphql_field(), TypeRef::named(type_name)),
    }
}

/// The arguments of a class field: `where` and (for Get) `limit`.
fn with_arguments(field: Field, limit: bool) -> Field {
    let field = field.argument(InputValue::new("where", TypeRef::named(WHERE)));
    if limit {
        field.argument(InputValue::new("limit", TypeRef::named(TypeRef::INT)))
    } else {
        field
    }
}

/// The `limit` and `where` arguments of a class field, checked.
pub(crate) fn arguments(
    ctx: &ResolverContext<'_>,
    schema: &Schema,
    class: &str,
) -> async_graphql::Result<(usize, Option<Filter>)> {
    let json = |name: &str| {
        ctx.args
            .get(name)
            .map(|v| v.as_value().clone().into_json())
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let limit = parse_limit(&json("limit")?).map_err(Error::new)?;
    let filter = match json("where")? {
        Value::Null => None,
        value => Some(Filter::parse(&value, schema, class).map_err(|e| Error::new(e.to_string()))?),
    };
    Ok((limit, filter))
}

/// A class field of Get: `City(where:, limit:): [City]`.
fn class_field(side: &Side, kind: Kind, class: &Class) -> Field {
    let ty = TypeRef::named_list(side.name(&class.class));
    let field = match side {
        Side::Network(_) => data_field(&class.class, ty),
        Side::Local(schema) => {
            let (schema, name) = (schema.clone(), class.class.clone());
            Field::new(&class.class, ty, move |ctx| {
                crate::now!(ctx, {
                    let data = ctx.data::<RequestData>()?;
                    let (limit, filter) = arguments(&ctx, &schema, &name)?;
                    let objects = data
                        .source
                        .query(kind, &name, filter.as_ref(), limit)
                        .map_err(|e| Error::new(e.to_string()))?;
                    data.count(objects.len())?;
                    Ok(Some(FieldValue::list(
                        objects.into_iter().map(FieldValue::owned_any),
                    )))
                })
            })
        }
    };
    with_arguments(field.description(class.description.clone()), true)
}

/// The object type of a class, and the unions of its reference properties.
fn class_type(side: &Side, schema: &Schema, class: &Class) -> (Object, Vec<Union>) {
    let mut obj = Object::new(side.name(&class.class)).description(class.description.clone());
    let mut unions = Vec::new();
    let leaf = |name: &str, ty: &str| data_field(name, TypeRef::named(ty));
    obj = obj.field(leaf("uuid", TypeRef::STRING));
    for p in &class.properties {
        let Ok(data_type) = p.kind() else { continue };
        let field = match data_type {
            DataType::String | DataType::Text | DataType::Date => leaf(&p.name, TypeRef::STRING),
            DataType::Int => leaf(&p.name, TypeRef::INT),
            DataType::Number => leaf(&p.name, TypeRef::FLOAT),
            DataType::Boolean => leaf(&p.name, TypeRef::BOOLEAN),
            DataType::GeoCoordinates => leaf(&p.name, "GeoCoordinates"),
            DataType::Ref(targets) => {
                let mut cap = p.name.clone();
                cap[..1].make_ascii_uppercase();
                let union_name = side.name(&format!("{}{cap}Obj", class.class));
                let mut u = Union::new(&union_name);
                let mut members = Vec::new();
                for t in &targets {
                    if schema.find_class(t).is_some() {
                        u = u.possible_type(side.name(t));
                        members.push(t.clone());
                    }
                }
                if members.is_empty() {
                    continue;
                }
                unions.push(u);
                let ty = TypeRef::named_list(&union_name);
                match side {
                    Side::Local(_) => reference(&p.name, ty, members),
                    Side::Network(peer) => network::reference(&p.name, ty, peer.clone()),
                }
            }
        };
        obj = obj.field(field.description(p.description.clone()));
    }
    (obj, unions)
}

/// A reference property of a Local object: the referenced objects of the
/// union's `members`, each typed by its class.
fn reference(name: &str, ty: TypeRef, members: Vec<String>) -> Field {
    let key = name.to_owned();
    Field::new(name, ty, move |ctx| {
        crate::now!(ctx, {
            let o = ctx.parent_value.try_downcast_ref::<Obj>()?;
            let Some(value) = o.schema.get(&key).filter(|v| !v.is_null()) else {
                return Ok(None);
            };
            let data = ctx.data::<RequestData>()?;
            let beacons: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            let mut out = Vec::new();
            for beacon in beacons {
                let Some((kind, id)) = beacon
                    .get("beacon")
                    .and_then(Value::as_str)
                    .and_then(parse_beacon)
                else {
                    continue;
                };
                let found = data.source.get(id).map_err(|e| Error::new(e.to_string()))?;
                if let Some(target) = found
                    && target.kind == kind
                    && members.contains(&target.class)
                {
                    let class = target.class.clone();
                    out.push(FieldValue::owned_any(target).with_type(class));
                }
            }
            data.count(out.len())?;
            Ok(Some(FieldValue::list(out)))
        })
    })
}

/// A field that reads its parent's data: a Local object's property (or
/// uuid) by name, a computed JSON value (GeoCoordinates, GetMeta) by name,
/// or a remote peer's answer ([`Remote`]) by response key, with the error
/// the merger reported at this path when there is no value.
pub(crate) fn data_field(name: &str, ty: TypeRef) -> Field {
    let name = name.to_owned();
    Field::new(name.clone(), ty, move |ctx| {
        crate::now!(ctx, {
            let parent = ctx.parent_value;
            if let Some(o) = parent.downcast_ref::<Obj>() {
                if name == "uuid" {
                    return Ok(Some(FieldValue::value(o.id.to_string())));
                }
                return Ok(json_value(o.schema.get(&name), false));
            }
            if let Some(v) = parent.downcast_ref::<Value>() {
                return Ok(json_value(v.get(&name), false));
            }
            let remote = parent.try_downcast_ref::<Remote>()?;
            let key = ctx.ctx.item.node.response_key().node.as_str();
            match json_value(remote.get(key), true) {
                Some(v) => Ok(Some(v)),
                None => network::error_at(&ctx).map_or(Ok(None), Err),
            }
        })
    })
}

/// A JSON value as a field's value: objects stay JSON, borrowed (as the
/// [`Remote`] map when `remote`, else as a [`Value`]), lists become lists,
/// scalars GraphQL values.
pub(crate) fn json_value(value: Option<&Value>, remote: bool) -> Option<FieldValue<'_>> {
    match value? {
        Value::Null => None,
        Value::Object(map) if remote => Some(FieldValue::borrowed_any(map)),
        object @ Value::Object(_) => Some(FieldValue::borrowed_any(object)),
        Value::Array(items) => {
            Some(FieldValue::list(items.iter().map(|v| {
                json_value(Some(v), remote).unwrap_or(FieldValue::NULL)
            })))
        }
        Value::String(s) => Some(FieldValue::value(GqlValue::String(s.clone()))),
        Value::Number(n) => Some(FieldValue::value(GqlValue::Number(n.clone()))),
        Value::Bool(b) => Some(FieldValue::value(GqlValue::Boolean(*b))),
    }
}

/// Builds `{prefix}GetMetaObj { Things { City: MetaCity … } … }`.
fn meta_type(
    side: &Side,
    schema: &Schema,
    prefix: &str,
    types: &mut Vec<Object>,
) -> Option<String> {
    let name = format!("{prefix}GetMetaObj");
    let mut get = Object::new(&name);
    let mut any = false;
    for kind in Kind::ALL {
        let classes = &schema.list(kind).classes;
        if classes.is_empty() {
            continue;
        }
        let kind_name = format!("{prefix}GetMeta{}Obj", kind.graphql_field());
        let mut kind_obj = Object::new(&kind_name);
        for class in classes {
            let type_name = side.name(&format!("Meta{}", class.class));
            let ty = TypeRef::named(&type_name);
            let field = match side {
                Side::Network(_) => data_field(&class.class, ty),
                Side::Local(schema) => meta::class_field(&class.class, ty, kind, schema.clone()),
            };
            kind_obj = kind_obj.field(with_arguments(field, false));
            types.push(meta::class_type(&type_name, class));
        }
        types.push(kind_obj);
        get = get.field(kind_field(side, kind, &kind_name));
        any = true;
    }
    if !any {
        return None;
    }
    types.push(get);
    Some(name)
}
