//! The REST API against real NATS JetStream and PostgreSQL: every endpoint's
//! success path, every kind of bad input, concurrent commands and replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stack::Stack;
use common::{last_sequence, snapshot};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use services::projector;
use tokio_util::sync::CancellationToken;

async fn call(app: &Stack, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.request(method, path);
    if let Some(body) = body {
        request = request.body_json(&body);
    }
    raw(request.send().await).await
}

async fn raw(response: poem::test::TestResponse) -> (StatusCode, Value) {
    let status = response.0.status();
    let bytes = response.0.into_body().into_vec().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, body)
}

async fn send_raw(app: &Stack, method: Method, path: &str, body: &'static str) -> (StatusCode, Value) {
    raw(app.client.request(method, path).content_type("application/json").body(body).send().await).await
}

async fn create(app: &Stack, body: Value) -> Value {
    let (status, website) = call(app, Method::POST, "/websites", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{website}");
    website
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn the_seed_payload_creates_a_website_checked_from_the_default_region() {
    let app = Stack::start(&[]).await;

    let website = create(&app, json!({ "url": "https://google.com", "name": "google" })).await;

    assert_eq!(website["url"], "https://google.com/");
    assert_eq!(website["name"], "google");
    assert_eq!(website["regions"], json!(["local"]));
    assert_eq!(website["interval_seconds"], 180);
    assert_eq!(website["timeout_ms"], 10000);
    assert_eq!(website["notify_emails"], json!([]));
    assert_eq!(website["failures_before_down"], Value::Null);
    assert_eq!(website["down_policy"], "any");
    assert!(website["created_at"].is_string());
    let id = website["id"].as_str().expect("id");
    assert_eq!(uuid::Uuid::parse_str(id).map(|u| u.get_version_num()), Ok(7));

    // A GET right after the POST sees the write.
    let (status, shown) = call(&app, Method::GET, &format!("/websites/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, website);
    let (status, listed) = call(&app, Method::GET, "/websites", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([website]));
}

#[tokio::test]
async fn every_optional_field_is_stored_and_returned() {
    let app = Stack::start(&[]).await;
    let (status, _) = call(&app, Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);

    let website = create(
        &app,
        json!({
            "url": "http://example.com/health",
            "name": "  example  ",
            "regions": ["local", "europe", "local"],
            "interval_seconds": 60,
            "timeout_ms": 5000,
            "notify_emails": ["ops@example.com", "ops@example.com", "dev@example.com"],
            "failures_before_down": 4,
            "down_policy": "majority"
        }),
    )
    .await;
    assert_eq!(website["failures_before_down"], 4);
    assert_eq!(website["down_policy"], "majority");

    assert_eq!(website["name"], "example");
    assert_eq!(website["regions"], json!(["europe", "local"]));
    assert_eq!(website["interval_seconds"], 60);
    assert_eq!(website["timeout_ms"], 5000);
    assert_eq!(website["notify_emails"], json!(["ops@example.com", "dev@example.com"]));
    let (_, shown) = call(&app, Method::GET, &format!("/websites/{}", website["id"].as_str().expect("id")), None).await;
    assert_eq!(shown, website);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_a_no_op_publishes_nothing() {
    let app = Stack::start(&[]).await;
    let website = create(&app, json!({ "url": "https://google.com", "name": "google" })).await;
    let path = format!("/websites/{}", website["id"].as_str().expect("id"));

    let (status, patched) =
        call(&app, Method::PATCH, &path, Some(json!({ "name": "Google", "interval_seconds": 30 }))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Google");
    assert_eq!(patched["interval_seconds"], 30);
    assert_eq!(patched["url"], website["url"]);
    assert_eq!(patched["created_at"], website["created_at"]);
    assert_ne!(patched["updated_at"], website["updated_at"]);
    let (_, shown) = call(&app, Method::GET, &path, None).await;
    assert_eq!(shown, patched);

    let before = last_sequence(&app.bus).await;
    let (status, same) = call(&app, Method::PATCH, &path, Some(json!({ "name": "Google" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same, patched);
    let (status, _) = call(&app, Method::PATCH, &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(last_sequence(&app.bus).await, before, "a no-op PATCH must not publish");

    let (status, cleared) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({ "url": "https://google.com/search", "notify_emails": ["a@example.com"], "timeout_ms": 2000 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["url"], "https://google.com/search");
    assert_eq!(cleared["notify_emails"], json!(["a@example.com"]));
    assert_eq!(cleared["timeout_ms"], 2000);
}

#[tokio::test]
async fn a_deleted_website_is_gone_everywhere() {
    let app = Stack::start(&[]).await;
    let kept = create(&app, json!({ "url": "https://a.example.com", "name": "a" })).await;
    let removed = create(&app, json!({ "url": "https://b.example.com", "name": "b" })).await;
    let path = format!("/websites/{}", removed["id"].as_str().expect("id"));

    let (status, body) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = call(&app, Method::GET, &path, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = call(&app, Method::PATCH, &path, Some(json!({ "name": "x" }))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = call(&app, Method::DELETE, &path, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (_, listed) = call(&app, Method::GET, "/websites", None).await;
    assert_eq!(listed, json!([kept]));
}

#[tokio::test]
async fn the_website_list_pages_in_creation_order() {
    let app = Stack::start(&[]).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let website =
            create(&app, json!({ "url": format!("https://{n}.example.com"), "name": format!("site {n}") })).await;
        ids.push(website["id"].clone());
    }
    let response = app.client.get("/websites?limit=2").send().await;
    let link = response.0.headers().get("link").and_then(|l| l.to_str().ok()).map(str::to_owned);
    let (status, page) = raw(response).await;
    assert_eq!(status, StatusCode::OK);
    let page_ids: Vec<Value> = page.as_array().expect("array").iter().map(|w| w["id"].clone()).collect();
    assert_eq!(page_ids, ids[0..2].to_vec());
    let link = link.expect("a Link to the next page");
    let next = link.strip_prefix('<').and_then(|l| l.strip_suffix(">; rel=\"next\"")).expect("<...>; rel=\"next\"");
    let (status, page) = call(&app, Method::GET, next, None).await;
    assert_eq!(status, StatusCode::OK);
    let page_ids: Vec<Value> = page.as_array().expect("array").iter().map(|w| w["id"].clone()).collect();
    assert_eq!(page_ids, ids[2..4].to_vec());

    let (status, body) = call(&app, Method::GET, "/websites?limit=0", None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, body) = call(&app, Method::GET, "/websites?cursor=nonsense", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = call(&app, Method::GET, "/websites?limit=ten", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn regions_are_added_listed_and_unique() {
    let app = Stack::start(&[]).await;

    let (status, region) = call(&app, Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{region}");
    assert_eq!(region["name"], "europe");
    assert!(region["created_at"].is_string());

    let (status, listed) = call(&app, Method::GET, "/regions", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed.as_array().expect("array").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["europe", "local"]);

    let (status, body) = call(&app, Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = call(&app, Method::POST, "/regions", Some(json!({ "name": "local" }))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = call(&app, Method::POST, "/regions", Some(json!({ "name": "Not Valid" }))).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(body["field"], "name");
    let (status, body) = call(&app, Method::POST, "/regions", Some(json!({}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_body");
}

#[tokio::test]
async fn two_concurrent_adds_of_one_region_create_it_once() {
    let app = Stack::start(&[]).await;
    let body = json!({ "name": "asia" });
    let (a, b) = tokio::join!(
        call(&app, Method::POST, "/regions", Some(body.clone())),
        call(&app, Method::POST, "/regions", Some(body.clone())),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "{a:?} {b:?}");
}

#[tokio::test]
async fn the_default_region_is_added_once_however_often_the_api_starts() {
    let app = Stack::start(&[]).await;
    let region = app.config.api.default_region.clone();
    let (a, b) = tokio::join!(
        services::api::ensure_default_region(&app.bus, &region),
        services::api::ensure_default_region(&app.bus, &region),
    );
    a.expect("first");
    b.expect("second");
    app.settle().await;
    let (_, listed) = call(&app, Method::GET, "/regions", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn malformed_or_misshapen_bodies_are_400_with_a_json_error() {
    let app = Stack::start(&[]).await;
    for (body, code) in [
        ("{not json", "malformed_json"),
        ("", "malformed_json"),
        ("[1, 2]", "invalid_body"),
        (r#"{"name": "google"}"#, "invalid_body"),
        (r#"{"url": "https://google.com"}"#, "invalid_body"),
        (r#"{"url": 42, "name": "google"}"#, "invalid_body"),
        (r#"{"url": "https://google.com", "name": "g", "interval_seconds": "often"}"#, "invalid_body"),
        (r#"{"url": "https://google.com", "name": "g", "colour": "red"}"#, "invalid_body"),
    ] {
        let (status, error) = send_raw(&app, Method::POST, "/websites", body).await;
        assert_error(status, &error, StatusCode::BAD_REQUEST, code);
    }
    let website = create(&app, json!({ "url": "https://google.com", "name": "google" })).await;
    let path = format!("/websites/{}", website["id"].as_str().expect("id"));
    let (status, error) = send_raw(&app, Method::PATCH, &path, "{\"name\":").await;
    assert_error(status, &error, StatusCode::BAD_REQUEST, "malformed_json");
    let (status, error) = send_raw(&app, Method::PATCH, &path, r#"{"id": "x"}"#).await;
    assert_error(status, &error, StatusCode::BAD_REQUEST, "invalid_body");
    assert_eq!(last_sequence(&app.bus).await, 2, "nothing but the region and the website was published");
}

#[tokio::test]
async fn invalid_values_are_422_naming_the_field() {
    let app = Stack::start(&[]).await;
    let long_name = "n".repeat(101);
    let long_url = format!("https://example.com/{}", "a".repeat(2048));
    for (body, field) in [
        (json!({ "url": "google.com", "name": "g" }), "url"),
        (json!({ "url": "/relative", "name": "g" }), "url"),
        (json!({ "url": "ftp://example.com", "name": "g" }), "url"),
        (json!({ "url": long_url, "name": "g" }), "url"),
        (json!({ "url": "https://google.com", "name": "" }), "name"),
        (json!({ "url": "https://google.com", "name": "   " }), "name"),
        (json!({ "url": "https://google.com", "name": long_name }), "name"),
        (json!({ "url": "https://google.com", "name": "g", "interval_seconds": 9 }), "interval_seconds"),
        (json!({ "url": "https://google.com", "name": "g", "interval_seconds": 86401 }), "interval_seconds"),
        (json!({ "url": "https://google.com", "name": "g", "timeout_ms": 0 }), "timeout_ms"),
        (json!({ "url": "https://google.com", "name": "g", "regions": ["mars"] }), "regions"),
        (json!({ "url": "https://google.com", "name": "g", "regions": [] }), "regions"),
        (json!({ "url": "https://google.com", "name": "g", "regions": ["Bad Name"] }), "regions"),
        (json!({ "url": "https://google.com", "name": "g", "notify_emails": ["nobody"] }), "notify_emails"),
        (json!({ "url": "https://google.com", "name": "g", "failures_before_down": 0 }), "failures_before_down"),
        (json!({ "url": "https://google.com", "name": "g", "failures_before_down": 11 }), "failures_before_down"),
        (json!({ "url": "https://google.com", "name": "g", "down_policy": "most" }), "down_policy"),
    ] {
        let (status, error) = call(&app, Method::POST, "/websites", Some(body.clone())).await;
        assert_error(status, &error, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(error["field"], field, "{body} -> {error}");
    }

    // Every refused field is named at once.
    let (status, error) =
        call(&app, Method::POST, "/websites", Some(json!({ "url": "nope", "name": "", "interval_seconds": 1 }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        error["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["url", "name", "interval_seconds"]);

    let website = create(&app, json!({ "url": "https://google.com", "name": "google" })).await;
    let path = format!("/websites/{}", website["id"].as_str().expect("id"));
    for (body, field) in [
        (json!({ "url": "mailto:x@example.com" }), "url"),
        (json!({ "name": "" }), "name"),
        (json!({ "interval_seconds": 100000 }), "interval_seconds"),
        (json!({ "regions": ["mars"] }), "regions"),
    ] {
        let (status, error) = call(&app, Method::PATCH, &path, Some(body)).await;
        assert_error(status, &error, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(error["field"], field);
    }
    let (_, shown) = call(&app, Method::GET, &path, None).await;
    assert_eq!(shown, website, "a refused PATCH changes nothing");
    assert_eq!(call(&app, Method::GET, "/websites", None).await.1.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn unknown_ids_routes_and_methods_get_json_errors() {
    let app = Stack::start(&[]).await;
    let unknown = format!("/websites/{}", uuid::Uuid::now_v7());
    for method in [Method::GET, Method::DELETE] {
        for path in [unknown.as_str(), "/websites/not-a-uuid", "/websites/123"] {
            let (status, error) = call(&app, method.clone(), path, None).await;
            assert_error(status, &error, StatusCode::NOT_FOUND, "not_found");
        }
    }
    let (status, error) = call(&app, Method::PATCH, &unknown, Some(json!({ "name": "x" }))).await;
    assert_error(status, &error, StatusCode::NOT_FOUND, "not_found");
    let (status, error) = call(&app, Method::GET, "/nothing-here", None).await;
    assert_error(status, &error, StatusCode::NOT_FOUND, "not_found");
    let (status, error) = call(&app, Method::PUT, "/websites", None).await;
    assert_error(status, &error, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // A 405 says what the path takes (RFC 9110).
    for (method, path, allowed) in [
        (Method::TRACE, "/websites", "GET HEAD POST"),
        (Method::PUT, unknown.as_str(), "DELETE GET HEAD PATCH"),
        (Method::POST, "/", "GET HEAD"),
    ] {
        let response = app.client.request(method.clone(), path).send().await;
        response.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        let allow = response.0.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mut methods: Vec<&str> = allow.split(", ").collect();
        methods.sort();
        assert_eq!(methods.join(" "), allowed, "{method} {path}");
    }

    let huge = format!(r#"{{"url": "https://google.com", "name": "{}"}}"#, "x".repeat(1_100_000));
    let response = app.client.post("/websites").content_type("application/json").body(huge).send().await;
    let (status, error) = raw(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert!(error["error"].is_string(), "{error}");
}

#[tokio::test]
async fn concurrent_patches_of_one_website_lose_nothing() {
    let app = Stack::start(&[]).await;
    let website = create(&app, json!({ "url": "https://google.com", "name": "google" })).await;
    let id = website["id"].as_str().expect("id").to_owned();
    let path = format!("/websites/{id}");
    let mut accepted = Vec::new();

    for round in 0..10 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let ((sa, ra), (sb, rb)) = tokio::join!(
            call(&app, Method::PATCH, &path, Some(json!({ "name": a }))),
            call(&app, Method::PATCH, &path, Some(json!({ "name": b }))),
        );
        for (status, body, name) in [(sa, ra, a), (sb, rb, b)] {
            match status {
                StatusCode::OK => accepted.push(name),
                StatusCode::CONFLICT => assert_eq!(body["error"], "conflict"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }

    // Every accepted change is an event on the website's subject, in order,
    // and the projection shows the last one.
    let names = updated_names(&app, &id).await;
    let mut sorted_accepted = accepted.clone();
    sorted_accepted.sort();
    let mut sorted_names = names.clone();
    sorted_names.sort();
    assert_eq!(sorted_names, sorted_accepted, "every 200 is one event and every event a 200");
    let (_, shown) = call(&app, Method::GET, &path, None).await;
    assert_eq!(shown["name"].as_str(), names.last().map(String::as_str));
}

async fn updated_names(app: &Stack, id: &str) -> Vec<String> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures::StreamExt;
    let stream = app.bus.monitor_stream().await.expect("stream");
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("monitor.website.{id}"),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut names = Vec::new();
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_millis(500), messages.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        let envelope = events::Envelope::from_json(&message.payload).expect("event");
        if let events::Event::WebsiteUpdated(update) = envelope.event {
            names.extend(update.name.map(|n| n.to_string()));
        }
    }
    names
}

#[tokio::test]
async fn replay_rebuilds_identical_tables_while_the_projector_runs() {
    let app = Stack::start(&[]).await;
    call(&app, Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let website =
            create(&app, json!({ "url": format!("https://{n}.example.com"), "name": format!("site {n}") })).await;
        ids.push(website["id"].as_str().expect("id").to_owned());
    }
    for id in ids.iter().step_by(3) {
        let (status, _) = call(
            &app,
            Method::PATCH,
            &format!("/websites/{id}"),
            Some(json!({ "regions": ["europe"], "interval_seconds": 20 })),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    for id in ids.iter().skip(1).step_by(4) {
        let (status, _) = call(&app, Method::DELETE, &format!("/websites/{id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    // A region removed by force: one website drops it, one is paused.
    call(&app, Method::POST, "/regions", Some(json!({ "name": "asia" }))).await;
    create(&app, json!({ "url": "https://asia.example.com", "name": "asia", "regions": ["asia"] })).await;
    create(&app, json!({ "url": "https://both.example.com", "name": "both", "regions": ["asia", "local"] })).await;
    let (status, removal) = call(&app, Method::DELETE, "/regions/asia?force=true", None).await;
    assert_eq!(status, StatusCode::OK, "{removal}");
    for (name, revoke) in [("kept", false), ("revoked", true)] {
        let (status, token) = call(&app, Method::POST, "/tokens", Some(json!({ "name": name, "scope": "read" }))).await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        if revoke {
            let path = format!("/tokens/{}", token["id"].as_str().expect("id"));
            assert_eq!(call(&app, Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
        }
    }
    app.settle().await;
    let before = snapshot(&app.db.pool).await;
    assert_eq!(before["tokens"].as_array().map(Vec::len), Some(2), "{before}");

    let reached = projector::replay(&app.bus, &app.db.pool, projector::Projection::Monitor, &CancellationToken::new())
        .await
        .expect("replay");
    app.settle().await;

    assert_eq!(reached, last_sequence(&app.bus).await);
    assert_eq!(snapshot(&app.db.pool).await, before);
    assert_eq!(before["websites"].as_array().map(Vec::len), Some(17));
    assert!(before["tokens"].as_array().into_iter().flatten().any(|t| t["revoked_at"].is_string()));
}

#[tokio::test]
async fn a_url_the_workers_would_refuse_is_422_when_private_targets_are_not_allowed() {
    let app = Stack::start(&[("ALLOW_PRIVATE_TARGETS", "false")]).await;
    for url in
        ["http://127.0.0.1:8080/", "http://169.254.169.254/latest/meta-data/", "http://localhost/", "http://[::1]/"]
    {
        let (status, error) = call(&app, Method::POST, "/websites", Some(json!({ "url": url, "name": "x" }))).await;
        assert_error(status, &error, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(error["field"], "url", "{url}: {error}");
    }
    // A name that does not resolve (yet) is accepted: it may resolve later.
    let website = create(&app, json!({ "url": "https://does-not-exist.invalid/", "name": "later" })).await;
    let path = format!("/websites/{}", website["id"].as_str().expect("id"));
    let (status, error) = call(&app, Method::PATCH, &path, Some(json!({ "url": "http://10.0.0.1/" }))).await;
    assert_error(status, &error, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[tokio::test]
async fn commands_are_refused_with_503_while_nats_is_down_and_work_again_after() {
    let mut app = Stack::start(&[("PROJECTION_WAIT_MS", "2000")]).await;
    app.nats.stop();

    let (status, error) =
        call(&app, Method::POST, "/websites", Some(json!({ "url": "https://a.example.com", "name": "a" }))).await;
    assert_error(status, &error, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(!error["message"].as_str().unwrap_or_default().contains("nats://"), "internal detail leaked: {error}");
    let (status, listed) = call(&app, Method::GET, "/websites", None).await;
    assert_eq!(status, StatusCode::OK, "queries still answer from postgres: {listed}");
    assert_eq!(listed, json!([]), "a refused command left nothing behind");

    app.nats.restart().await;
    let website = eventually_created(&app, json!({ "url": "https://a.example.com", "name": "a" })).await;
    assert_eq!(website["name"], "a");
}

/// Retries a create while the client reconnects to a restarted server.
async fn eventually_created(app: &Stack, body: Value) -> Value {
    for _ in 0..100 {
        let (status, website) = call(app, Method::POST, "/websites", Some(body.clone())).await;
        if status == StatusCode::CREATED {
            return website;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the API did not recover after NATS came back");
}
