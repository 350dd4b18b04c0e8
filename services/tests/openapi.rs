//! The API description: valid OpenAPI 3 by a real validator, and it lists
//! exactly the endpoints the API serves. The dashboard and the docs are
//! served from the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stack::Stack;
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every endpoint of the API, as (method, OpenAPI path).
const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/websites"),
    ("post", "/websites"),
    ("get", "/websites/{id}"),
    ("patch", "/websites/{id}"),
    ("delete", "/websites/{id}"),
    ("get", "/regions"),
    ("post", "/regions"),
    ("delete", "/regions/{name}"),
    ("get", "/monitor"),
    ("get", "/monitor/summary"),
    ("get", "/monitor/{id}"),
    ("get", "/monitor/{id}/downtime"),
    ("get", "/monitor/{id}/last_downtime"),
    ("get", "/monitor/{id}/uptime"),
    ("get", "/health"),
    ("get", "/tokens"),
    ("post", "/tokens"),
    ("delete", "/tokens/{id}"),
    ("get", "/websites/{id}/history"),
    ("get", "/audit"),
    ("get", "/events"),
    ("get", "/events/stream"),
    ("get", "/schemas/events.json"),
    ("get", "/channels"),
    ("post", "/channels"),
    ("get", "/channels/{id}"),
    ("patch", "/channels/{id}"),
    ("delete", "/channels/{id}"),
    ("post", "/channels/{id}/rotate-secret"),
    ("post", "/channels/{id}/test"),
    ("get", "/channels/{id}/deliveries"),
    ("get", "/monitor/{id}/alerts"),
    ("post", "/websites/{id}/pause"),
    ("post", "/websites/{id}/resume"),
    ("get", "/maintenance"),
    ("post", "/maintenance"),
    ("get", "/maintenance/{id}"),
    ("patch", "/maintenance/{id}"),
    ("delete", "/maintenance/{id}"),
    ("post", "/maintenance/{id}/end"),
    ("get", "/status-pages"),
    ("post", "/status-pages"),
    ("get", "/status-pages/{slug}"),
    ("patch", "/status-pages/{slug}"),
    ("delete", "/status-pages/{slug}"),
    ("get", "/status-pages/{slug}/incidents"),
    ("post", "/status-pages/{slug}/incidents/{id}/updates"),
];

async fn spec(app: &Stack) -> Value {
    let response = app.client.get("/openapi.json").send().await;
    response.assert_status_is_ok();
    response.assert_content_type("application/json");
    let bytes = response.0.into_body().into_vec().await.expect("body");
    serde_json::from_slice(&bytes).expect("openapi.json is JSON")
}

#[tokio::test]
async fn the_description_is_valid_openapi_3_by_a_real_validator() {
    let app = Stack::start(&[]).await;
    let spec = spec(&app).await;
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&spec).expect("json")).expect("write");
    let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the description (installed by ./dev test):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_description_lists_exactly_the_endpoints_the_api_serves() {
    let app = Stack::start(&[]).await;
    let spec = spec(&app).await;
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter(|(method, _)| *method != "parameters")
                .map(move |(method, _)| (method.clone(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ENDPOINTS.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected);

    // And each of them is a route of the API (not "no such endpoint").
    let id = uuid::Uuid::now_v7().to_string();
    for (method, path) in ENDPOINTS {
        let path = path.replace("{id}", &id).replace("{slug}", "no-such-page");
        let method: Method = method.to_uppercase().parse().expect("method");
        let response =
            app.client.request(method.clone(), &path).body("{}").content_type("application/json").send().await;
        let status = response.0.status();
        // A live stream has no end to read to: its 200 says it is served.
        if response.0.content_type() == Some("text/event-stream") {
            assert_eq!(status, StatusCode::OK, "{method} {path}");
            continue;
        }
        let body = response.0.into_body().into_string().await.unwrap_or_default();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!body.contains("no such endpoint"), "{method} {path} is not served: {body}");
    }
}

#[tokio::test]
async fn every_request_body_is_described_as_refusing_unknown_fields() {
    let app = Stack::start(&[]).await;
    let spec = spec(&app).await;
    let mut bodies = 0;
    for item in spec["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            for media in operation["requestBody"]["content"].as_object().into_iter().flat_map(|c| c.values()) {
                let reference = media["schema"]["$ref"].as_str().expect("a named schema");
                let name = reference.rsplit('/').next().expect("name");
                let schema = &spec["components"]["schemas"][name];
                assert_eq!(schema["additionalProperties"], Value::Bool(false), "{name}");
                bodies += 1;
            }
        }
    }
    assert_eq!(
        bodies, 11,
        "POST and PATCH of websites, channels, maintenance and status pages, POST /regions, POST /tokens, an incident update"
    );
}

#[tokio::test]
async fn the_dashboard_and_the_docs_are_served_from_the_binary() {
    let app = Stack::start(&[]).await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/docs", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/styles.css", "text/css; charset=utf-8"),
        ("/assets/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ] {
        let response = app.client.get(path).send().await;
        response.assert_status_is_ok();
        response.assert_content_type(content_type);
    }
    let response = app.client.get("/assets/nothing.js").send().await;
    response.assert_status(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_paged_lists_describe_their_parameters_and_the_link_header() {
    let app = Stack::start(&[]).await;
    let spec = spec(&app).await;
    for path in ["/monitor", "/websites"] {
        let operation = &spec["paths"][path]["get"];
        let parameters = operation["parameters"].as_array().expect("parameters");
        let named = |name: &str| parameters.iter().find(|p| p["name"] == name).cloned().unwrap_or(Value::Null);
        let names: Vec<&str> = parameters.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["limit", "cursor", "status", "region", "q", "sort"], "{path}");
        assert_eq!(named("limit")["schema"]["minimum"], 1.0, "{path}");
        assert_eq!(named("limit")["schema"]["maximum"], 500.0, "{path}");
        assert_eq!(named("status")["schema"]["enum"], json!(["up", "down", "pending", "paused"]), "{path}");
        assert_eq!(
            named("sort")["schema"]["enum"],
            json!(["name", "status", "last_change", "uptime_24h", "created"]),
            "{path}"
        );
        let headers = &operation["responses"]["200"]["headers"];
        assert!(
            headers.as_object().is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("link"))),
            "{path}: {headers}"
        );
        for status in ["400", "422"] {
            assert!(operation["responses"][status].is_object(), "{path} documents {status}");
        }
    }
}
