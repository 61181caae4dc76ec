//! The v1 REST API: the schema (`/v1/schema/...`), the objects
//! (`/v1/things`, `/v1/actions`), `/v1/graphql` and GraphiQL's files
//! (`/v1/graphiql/…`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use plexus_core::schema::{Class, Kind, Property, Schema};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{NewObject, Object, PeerState};
use plexus_graphql::MAX_LIMIT;
use plexus_server::AppError;

/// The REST routes and `POST /v1/graphql`.
pub fn routes() -> Router<PeerState> {
    Router::new()
        .route("/v1/schema", get(get_schema))
        .route("/v1/schema/{kind}", post(add_class))
        .route("/v1/schema/{kind}/{class}", delete(remove_class))
        .route("/v1/schema/{kind}/{class}/properties", post(add_property))
        .route(
            "/v1/graphql",
            get(super::graphql_http::get).post(super::graphql_http::post),
        )
        .route("/v1/graphiql/{file}", get(super::graphiql::asset))
        .merge(super::batch::routes())
        .route("/v1/{kind}", get(list_objects).post(create_object))
        .route(
            "/v1/{kind}/{id}",
            get(get_object).put(replace_object).delete(delete_object),
        )
}

/// The kind named by a path segment: `things` or `actions` (404 otherwise).
pub(crate) fn kind(segment: &str) -> Result<Kind, AppError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == segment)
        .ok_or_else(|| {
            AppError::not_found(format!(
                "no such resource {segment:?}: use things or actions"
            ))
        })
}

async fn get_schema(State(state): State<PeerState>) -> Json<Schema> {
    Json(Schema::clone(&*state.db.schema().await))
}

async fn add_class(
    State(state): State<PeerState>,
    Path(segment): Path<String>,
    Json(class): Json<Class>,
) -> Result<Json<Class>, AppError> {
    let kind = kind(&segment)?;
    Ok(Json(state.db.add_class(kind, class).await?))
}

async fn remove_class(
    State(state): State<PeerState>,
    Path((segment, class)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let kind = kind(&segment)?;
    state.db.remove_class(kind, &class).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_property(
    State(state): State<PeerState>,
    Path((segment, class)): Path<(String, String)>,
    Json(property): Json<Property>,
) -> Result<Json<Property>, AppError> {
    let kind = kind(&segment)?;
    Ok(Json(state.db.add_property(kind, &class, property).await?))
}

/// `?limit=` of a listing.
#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn list_objects(
    State(state): State<PeerState>,
    Path(segment): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, AppError> {
    let kind = kind(&segment)?;
    let limit = params.limit.unwrap_or(plexus_graphql::DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(AppError::unprocessable(format!(
            "limit must be at most {MAX_LIMIT}"
        )));
    }
    let objects = state.db.list_objects(kind, limit).await?;
    Ok(Json(json!({ kind.as_str(): objects })))
}

async fn create_object(
    State(state): State<PeerState>,
    Path(segment): Path<String>,
    Json(new): Json<NewObject>,
) -> Result<Json<Object>, AppError> {
    let kind = kind(&segment)?;
    Ok(Json(state.db.create_object(kind, new).await?))
}

async fn get_object(
    State(state): State<PeerState>,
    Path((segment, id)): Path<(String, String)>,
) -> Result<Json<Object>, AppError> {
    let kind = kind(&segment)?;
    Ok(Json(state.db.get_object(kind, &id).await?))
}

async fn replace_object(
    State(state): State<PeerState>,
    Path((segment, id)): Path<(String, String)>,
    Json(new): Json<NewObject>,
) -> Result<Json<Object>, AppError> {
    let kind = kind(&segment)?;
    Ok(Json(state.db.replace_object(kind, &id, new).await?))
}

async fn delete_object(
    State(state): State<PeerState>,
    Path((segment, id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let kind = kind(&segment)?;
    state.db.delete_object(kind, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
