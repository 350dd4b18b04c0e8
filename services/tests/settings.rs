//! Check settings through the API and the whole pipeline: validation that
//! names each bad field, secret header values sealed (masked in answers,
//! absent from events, sent by the worker), a keyword failure and a TCP
//! check seen in `/monitor`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::receiver::Receiver;
use common::stack::{eventually, Stack};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn region_status(system: &Stack, id: &str) -> Value {
    let (_, overview) = system.call(Method::GET, "/monitor", None).await;
    overview
        .as_array()
        .and_then(|all| all.iter().find(|w| w["id"] == id))
        .map(|w| w["regions"][0].clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_check_settings_are_refused_naming_each_field() {
    let system = Stack::start(&[]).await;
    let base = json!({ "url": "https://example.com", "name": "x" });
    for (extra, field) in [
        (json!({ "method": "FETCH" }), "method"),
        (json!({ "expected_status": ["700"] }), "expected_status"),
        (json!({ "expected_status": ["300-200"] }), "expected_status"),
        (json!({ "keyword": "/(unclosed/" }), "keyword"),
        (json!({ "keyword_absent": true }), "keyword_absent"),
        (json!({ "headers": { "X-Evil": "a\r\nInjected: 1" } }), "headers"),
        (json!({ "headers": { "Bad Name": "x" } }), "headers"),
        (json!({ "body": "x".repeat(9000) }), "body"),
        (json!({ "kind": "tcp" }), "kind"),
        (json!({ "url": "tcp://db.example.com:0" }), "url"),
        (json!({ "url": "tcp://db.example.com:5432/path" }), "url"),
        (json!({ "url": "tcp://db.example.com:5432", "method": "POST" }), "method"),
    ] {
        let mut body = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, error) = system.call(Method::POST, "/websites", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
    }
    let (status, website) =
        system.call(Method::POST, "/websites", Some(json!({ "url": "tcp://db.example.com:5432", "name": "db" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{website}");
    assert_eq!(website["kind"], "tcp");
    assert_eq!(website["url"], "tcp://db.example.com:5432");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_headers_are_sealed_masked_and_still_sent_by_the_worker() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    system.start_pipeline();
    let (status, website) = system
        .call(
            Method::POST,
            "/websites",
            Some(json!({
                "url": receiver.url("/ok/probe"), "name": "api", "interval_seconds": 10, "method": "POST",
                "headers": { "Authorization": "Bearer TOPSECRETVALUE", "X-Probe": "visible" },
                "body": "ping", "expected_status": ["200-204"],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{website}");
    assert_eq!(website["headers"]["Authorization"], "***");
    assert_eq!(website["headers"]["X-Probe"], "visible");
    assert_eq!(website["expected_status"], json!(["200-204"]));
    let id = website["id"].as_str().expect("id").to_owned();
    let got = eventually(Duration::from_secs(15), "a check of the probe", || async {
        receiver.at("/ok/probe").first().cloned()
    })
    .await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("authorization"), "Bearer TOPSECRETVALUE", "the worker sends the opened secret");
    assert_eq!(got.body, "ping");
    let (_, events) = system.call(Method::GET, &format!("/events?website={id}"), None).await;
    let (_, history) = system.call(Method::GET, &format!("/websites/{id}/history"), None).await;
    for text in [events.to_string(), history.to_string(), website.to_string()] {
        assert!(!text.contains("TOPSECRETVALUE"), "the secret leaked: {text}");
    }
    // Sending the mask back keeps the secret; changing another header too.
    let (status, changed) = system
        .call(
            Method::PATCH,
            &format!("/websites/{id}"),
            Some(json!({ "headers": { "Authorization": "***", "X-Probe": "changed" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let before = receiver.at("/ok/probe").len();
    let again = eventually(Duration::from_secs(20), "a check after the change", || async {
        receiver.at("/ok/probe").get(before).cloned().filter(|r| r.header("x-probe") == "changed")
    })
    .await;
    assert_eq!(again.header("authorization"), "Bearer TOPSECRETVALUE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_keyword_and_a_closed_tcp_port_show_as_down_with_their_cause() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    system.start_pipeline();
    let keyword = system
        .add_website(
            json!({ "url": receiver.url("/ok/page"), "name": "page", "keyword": "Welcome", "interval_seconds": 10 }),
        )
        .await;
    let tcp_up = system
        .add_website(
            json!({ "url": format!("tcp://127.0.0.1:{}", receiver.port()), "name": "port", "interval_seconds": 10 }),
        )
        .await;
    let tcp_down =
        system.add_website(json!({ "url": "tcp://127.0.0.1:1", "name": "closed", "interval_seconds": 10 })).await;
    let (page, open, closed) = eventually(Duration::from_secs(20), "a check of each", || async {
        let (a, b, c) = (
            region_status(&system, &keyword).await,
            region_status(&system, &tcp_up).await,
            region_status(&system, &tcp_down).await,
        );
        (a["checked_at"].is_string() && b["checked_at"].is_string() && c["checked_at"].is_string()).then_some((a, b, c))
    })
    .await;
    assert_eq!(page["status"], "down", "{page}");
    assert_eq!(page["cause"], "keyword", "{page}");
    assert_eq!(open["status"], "up", "{open}");
    assert_eq!(closed["cause"], "connect", "{closed}");
}

/// Publishes a successful HTTPS check that saw a certificate expiring at
/// `not_after`.
async fn check_with_certificate(
    system: &Stack,
    website: uuid::Uuid,
    region: &str,
    secs: i64,
    not_after: chrono::DateTime<chrono::Utc>,
) {
    let scheduled_at = chrono::Utc::now() - chrono::Duration::minutes(5) + chrono::Duration::seconds(secs);
    let region = common::stack::region_name(region);
    let check = events::CheckCompleted {
        website_id: website,
        region: region.clone(),
        scheduled_at,
        started_at: scheduled_at,
        up: true,
        status_code: Some(200),
        response_ms: Some(10),
        cause: None,
        message: None,
        cert_not_after: Some(not_after),
    };
    let id = events::CheckCompleted::event_id(website, &region, scheduled_at);
    let envelope = events::Envelope::with_id(id, events::Event::CheckCompleted(check), chrono::Utc::now());
    system.bus.publish(&envelope, None).await.expect("publish check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_certificate_is_announced_once_per_threshold_and_mailed() {
    let system = Stack::start_with_smtp(common::smtp::Smtp::start().await, &[]).await;
    let (status, _) = system.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let website = system
        .add_website_id(json!({ "url": "https://example.com", "name": "shop", "regions": ["local", "europe"], "notify_emails": ["ops@example.com"] }))
        .await;
    system.start_detector();
    system.start_notifier();
    let now = chrono::Utc::now();
    let soon = now + chrono::Duration::days(5) + chrono::Duration::hours(1);
    // Seen by both regions, several times: one warning (7 days).
    for (secs, region) in [(0, "local"), (1, "europe"), (10, "local"), (11, "europe")] {
        check_with_certificate(&system, website, region, secs, soon).await;
    }
    system.detector_settled().await;
    system.notifier_settled().await;
    let warnings = || async {
        let (_, feed) =
            system.call(Method::GET, &format!("/events?types=CertificateExpiring&website={website}"), None).await;
        feed["items"].as_array().cloned().unwrap_or_default()
    };
    let first = warnings().await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["data"]["threshold_days"], 7);
    assert_eq!(first[0]["data"]["days_left"], 5, "5 days and an hour after a check 5 minutes ago: 5 whole days");
    eventually(Duration::from_secs(10), "the certificate email", || async { system.emails("CERT").first().cloned() })
        .await;

    // Crossing the last threshold warns again; a renewed one does not.
    check_with_certificate(&system, website, "local", 20, now + chrono::Duration::hours(12)).await;
    check_with_certificate(&system, website, "local", 30, now + chrono::Duration::days(90)).await;
    system.detector_settled().await;
    let all = warnings().await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["data"]["threshold_days"], 1);
    let (_, uptime) = system.call(Method::GET, &format!("/monitor/{website}/uptime"), None).await;
    assert_eq!(uptime["certificate"]["days_left"], 89, "{uptime}");
    let shown = system.monitor(&website.to_string()).await;
    assert_eq!(shown["cert_days_left"], 89, "{shown}");
    let (_, alerts) = system.call(Method::GET, &format!("/monitor/{website}/alerts"), None).await;
    assert!(
        alerts.as_array().is_some_and(|a| a.iter().any(|d| d["type"] == "CertificateExpiring" && d["alerted"] == true)),
        "{alerts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_refused_by_the_api_and_cannot_stop_the_projection() {
    let system = Stack::start(&[]).await;
    let (status, error) = system
        .call(Method::POST, "/websites", Some(json!({ "url": "https://example.com", "name": "x", "body": "a\u{0}b" })))
        .await;
    assert_eq!((status, error["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("body")), "{error}");
    // An event carrying one anyway (written by another tool) is projected.
    let id = uuid::Uuid::now_v7();
    let added = events::Event::WebsiteAdded(events::WebsiteAdded {
        website_id: id,
        url: events::WebsiteUrl::parse("https://example.com").expect("url"),
        name: events::WebsiteName::parse("nul").expect("name"),
        regions: vec![common::stack::region_name("local")],
        interval_seconds: events::IntervalSecs::default(),
        timeout_ms: events::TimeoutMs::DEFAULT,
        notify_emails: vec![],
        failures_before_down: None,
        down_policy: None,
        channel_ids: vec![],
        check: Some(events::check::CheckSpec { body: Some("a\u{0}b".into()), ..Default::default() }),
    });
    system.bus.publish(&events::Envelope::new(added, chrono::Utc::now()), Some(0)).await.expect("publish");
    system.settle().await;
    let (status, shown) = system.call(Method::GET, &format!("/websites/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["body"], "ab");
}
