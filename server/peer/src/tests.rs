//! Router tests: every REST call's success and error statuses, without a socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{PeerDb, PeerState, router};

struct App {
    _dir: tempfile::TempDir,
    db: Arc<PeerDb>,
    router: axum::Router,
}

fn app() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(PeerDb::open(dir.path()).expect("open"));
    let router = router(PeerState::standalone(db.clone()));
    App {
        _dir: dir,
        db,
        router,
    }
}

impl App {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(uri);
        let request = match body {
            Some(b) => request
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        (status, value)
    }
}

fn country() -> Value {
    json!({"class": "Country", "properties": [{"name": "name", "dataType": ["string"]}]})
}

fn city() -> Value {
    json!({"class": "City", "description": "A city", "properties": [
        {"name": "name", "dataType": ["string"]},
        {"name": "population", "dataType": ["int"]},
        {"name": "inCountry", "dataType": ["Country"]}]})
}

#[tokio::test]
async fn schema_calls() {
    let app = app();
    let mut hashes = app.db.subscribe_schema();
    let empty_hash = app.db.schema_hash();
    assert_eq!(
        app.call(Method::GET, "/v1/schema", None).await,
        (
            StatusCode::OK,
            json!({"things": {"classes": []}, "actions": {"classes": []}})
        )
    );
    assert_eq!(
        app.call(Method::POST, "/v1/schema/things", Some(country()))
            .await
            .0,
        StatusCode::OK
    );
    assert!(hashes.has_changed().expect("open"));
    assert_ne!(*hashes.borrow_and_update(), empty_hash);
    let (status, body) = app
        .call(Method::POST, "/v1/schema/things", Some(city()))
        .await;
    assert_eq!((status, body), (StatusCode::OK, city()));
    // Duplicate, bad name, unknown type, missing reference target, unknown kind, bad body.
    for (uri, body, expected) in [
        (
            "/v1/schema/actions",
            city(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/schema/things",
            json!({"class": "lower"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/schema/things",
            json!({"class": "A", "properties": [{"name": "x", "dataType": ["varchar"]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/schema/things",
            json!({"class": "B", "properties": [{"name": "x", "dataType": ["Nope"]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/schema/people", country(), StatusCode::NOT_FOUND),
        (
            "/v1/schema/things",
            json!({"klass": "C"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = app.call(Method::POST, uri, Some(body.clone())).await;
        assert_eq!(status, expected, "{uri} {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let property = json!({"name": "area", "dataType": ["number"]});
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/schema/things/City/properties",
            Some(property.clone())
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/schema/things/City/properties",
            Some(property.clone())
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/schema/things/Town/properties",
            Some(property)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (_, schema) = app.call(Method::GET, "/v1/schema", None).await;
    assert_eq!(
        schema["things"]["classes"][1]["properties"][3]["name"],
        "area"
    );
    // Country is referenced by City: refused; City can go, then Country.
    assert_eq!(
        app.call(Method::DELETE, "/v1/schema/things/Country", None)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/schema/things/City", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/schema/things/City", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/schema/things/Country", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.db.schema_hash(), empty_hash);
}

#[tokio::test]
async fn object_calls() {
    let app = app();
    app.call(Method::POST, "/v1/schema/things", Some(country()))
        .await;
    app.call(Method::POST, "/v1/schema/things", Some(city()))
        .await;
    let (status, nl) = app
        .call(
            Method::POST,
            "/v1/things",
            Some(json!({"class": "Country", "schema": {"name": "Netherlands"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let nl_id = nl["id"].as_str().expect("id").to_owned();
    assert!(nl["creationTimeUnix"].as_u64().expect("time") > 0);
    let beacon = json!({"beacon": format!("weaviate://localhost/things/{nl_id}")});
    let (status, ams) = app
        .call(Method::POST, "/v1/things", Some(json!({"class": "City", "schema": {"name": "Amsterdam", "population": 905234, "inCountry": beacon}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ams_id = ams["id"].as_str().expect("id").to_owned();
    for bad in [
        json!({"class": "City", "schema": {"population": "many"}}),
        json!({"class": "City", "schema": {"mayor": "x"}}),
        json!({"class": "Town", "schema": {}}),
        json!({"class": "City", "schema": {}, "id": nl_id}),
    ] {
        let (status, body) = app
            .call(Method::POST, "/v1/things", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(body["error"]["message"].is_string());
    }
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/actions",
            Some(json!({"class": "City", "schema": {}}))
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let (status, got) = app
        .call(Method::GET, &format!("/v1/things/{ams_id}"), None)
        .await;
    assert_eq!((status, &got), (StatusCode::OK, &ams));
    assert_eq!(
        app.call(Method::GET, &format!("/v1/actions/{ams_id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::GET, "/v1/things/not-a-uuid", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            Method::GET,
            &format!("/v1/things/{}", uuid::Uuid::new_v4()),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    let (status, listed) = app.call(Method::GET, "/v1/things?limit=1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["things"].as_array().expect("list").len(), 1);
    let (_, all) = app.call(Method::GET, "/v1/things", None).await;
    assert_eq!(all["things"].as_array().expect("list").len(), 2);
    assert_eq!(
        app.call(Method::GET, "/v1/things?limit=many", None).await.0,
        StatusCode::BAD_REQUEST
    );

    let replace = json!({"class": "City", "schema": {"name": "Amsterdam", "population": 921402}});
    let (status, replaced) = app
        .call(Method::PUT, &format!("/v1/things/{ams_id}"), Some(replace))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["schema"]["population"], 921402);
    assert_eq!(replaced["creationTimeUnix"], ams["creationTimeUnix"]);
    let bad = json!({"class": "City", "schema": {"population": 1.5}});
    assert_eq!(
        app.call(Method::PUT, &format!("/v1/things/{ams_id}"), Some(bad))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let missing = json!({"class": "City", "schema": {}});
    assert_eq!(
        app.call(
            Method::PUT,
            &format!("/v1/things/{}", uuid::Uuid::new_v4()),
            Some(missing)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // A class with objects cannot be removed.
    let (status, body) = app
        .call(Method::DELETE, "/v1/schema/things/City", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("objects")
    );

    assert_eq!(
        app.call(Method::DELETE, &format!("/v1/things/{ams_id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::DELETE, &format!("/v1/things/{ams_id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/schema/things/City", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn graphql_and_protocol_errors() {
    let app = app();
    app.call(Method::POST, "/v1/schema/things", Some(country()))
        .await;
    app.call(
        Method::POST,
        "/v1/things",
        Some(json!({"class": "Country", "schema": {"name": "Netherlands"}})),
    )
    .await;
    let query = json!({"query": "query($n: String) { Local { Get { Things { Country(where: {operator: Equal, path: [\"name\"], valueString: $n}) { name } } } } }",
                       "variables": {"n": "Netherlands"}});
    let (status, body) = app.call(Method::POST, "/v1/graphql", Some(query)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"data": {"Local": {"Get": {"Things": {"Country": [{"name": "Netherlands"}]}}}}})
    );

    // Malformed JSON and an oversized body get a JSON error body.
    let request = Request::post("/v1/graphql")
        .header("content-type", "application/json")
        .body(Body::from("{bad"))
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let big = json!({"query": "x".repeat(super::MAX_BODY + 1)});
    let (status, body) = app.call(Method::POST, "/v1/graphql", Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"]["message"].is_string());

    // CORS: any origin may query (a GraphQL POST is a read)...
    let preflight = |method: &str, path: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(path)
            .header("origin", "http://elsewhere.example")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .body(Body::empty())
            .expect("request")
    };
    let response = app
        .router
        .clone()
        .oneshot(preflight("POST", "/v1/graphql"))
        .await
        .expect("infallible");
    assert!(response.status().is_success());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://elsewhere.example"
    );
    // ...but not write (no --cors-origin): no preflight of a write is allowed,
    for (method, path) in [
        ("POST", "/v1/things"),
        ("DELETE", "/v1/schema/things/City"),
        ("PUT", "/p2p/genesis"),
    ] {
        let response = app
            .router
            .clone()
            .oneshot(preflight(method, path))
            .await
            .expect("infallible");
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin"),
            "{method} {path}"
        );
    }
    // and a write sent without a preflight is refused before any handler.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/schema/things")
        .header("origin", "http://elsewhere.example")
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"class": "Evil"}"#))
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        !app.db
            .schema()
            .await
            .list(plexus_core::schema::Kind::Things)
            .classes
            .iter()
            .any(|c| c.class == "Evil")
    );
}

fn app_with(limits: crate::batch::BatchLimits) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(
        PeerDb::open(dir.path())
            .expect("open")
            .with_batch_limits(limits),
    );
    let router = router(PeerState::standalone(db.clone()));
    App {
        _dir: dir,
        db,
        router,
    }
}

#[tokio::test]
async fn a_batch_stores_the_good_objects_and_answers_each_one() {
    let app = app();
    app.call(Method::POST, "/v1/schema/things", Some(country()))
        .await;
    app.call(Method::POST, "/v1/schema/things", Some(city()))
        .await;
    let taken = "00000000-0000-0000-0000-000000000007";
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/things",
            Some(json!({"class": "City", "id": taken, "schema": {"name": "Old"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let fresh = "00000000-0000-0000-0000-000000000008";
    let body = json!({"things": [
        {"class": "City", "schema": {"name": "Paris", "population": 2_100_000}},
        {"class": "City", "schema": {"name": "Lyon", "mayor": "x"}},
        {"class": "City", "id": taken, "schema": {"name": "Taken"}},
        {"class": "City", "id": fresh, "schema": {"name": "Nice", "population": 340_000}},
        {"class": "City", "id": fresh, "schema": {"name": "Twice"}},
        {"class": "Town", "schema": {}},
        "not an object",
    ]});
    let (status, answers) = app
        .call(Method::POST, "/v1/batching/things", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<&str> = answers
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| a["result"]["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        [
            "SUCCESS", "FAILED", "FAILED", "SUCCESS", "FAILED", "FAILED", "FAILED"
        ]
    );
    assert_eq!(answers[3]["id"], json!(fresh));
    assert_eq!(answers[2]["id"], json!(taken));
    let message = answers[1]["result"]["errors"]["error"][0]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("mayor"), "{message}");
    // The good objects are stored and found by an indexed filter.
    let paris = answers[0]["id"].as_str().expect("id");
    let (status, got) = app
        .call(Method::GET, &format!("/v1/things/{paris}"), None)
        .await;
    assert_eq!(
        (status, &got["schema"]["name"]),
        (StatusCode::OK, &json!("Paris"))
    );
    let query = r#"{ Local { Get { Things { City(where: {operator: GreaterThan, path: ["population"], valueInt: 300000}) { name } } } } }"#;
    let (_, found) = app
        .call(Method::POST, "/v1/graphql", Some(json!({ "query": query })))
        .await;
    let mut names: Vec<&str> = found["data"]["Local"]["Get"]["Things"]["City"]
        .as_array()
        .expect("cities")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Nice", "Paris"]);
    let (_, got) = app
        .call(Method::GET, &format!("/v1/things/{taken}"), None)
        .await;
    assert_eq!(
        got["schema"]["name"],
        json!("Old"),
        "a taken id is not overwritten"
    );
}

#[tokio::test]
async fn a_batch_over_its_bounds_or_of_the_wrong_shape_is_refused_whole() {
    let app = app_with(crate::batch::BatchLimits {
        max_objects: 3,
        max_bytes: 1_000,
        ..Default::default()
    });
    app.call(Method::POST, "/v1/schema/things", Some(country()))
        .await;
    let one = json!({"class": "Country", "schema": {"name": "France"}});
    let cases = [
        (
            "/v1/batching/things",
            json!({"things": [one, one, one, one]}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/v1/batching/things",
            json!({"things": [{"class": "Country", "schema": {"name": "x".repeat(2_000)}}]}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/v1/batching/things",
            json!({"actions": [one]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/batching/things",
            json!({"things": one}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/batching/things", json!([one]), StatusCode::BAD_REQUEST),
        (
            "/v1/batching/people",
            json!({"people": [one]}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (uri, body, expected) in cases {
        let (status, answer) = app.call(Method::POST, uri, Some(body)).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let (_, listed) = app.call(Method::GET, "/v1/things", None).await;
    assert_eq!(listed["things"], json!([]), "nothing stored");
    let (status, answers) = app
        .call(
            Method::POST,
            "/v1/batching/things",
            Some(json!({"things": [one, one, one], "fields": ["ALL"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answers.as_array().map(Vec::len), Some(3));
}
