//! Pausing websites and maintenance windows against real servers: a paused
//! website leaves the schedule and comes back on resume; a window (one-off
//! or recurring) suppresses the outage alert, marks the incident and keeps
//! its time out of the uptime figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use common::target::Target;
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

fn rfc3339(offset: ChronoDuration) -> String {
    (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_website_is_not_checked_until_it_is_resumed() {
    let system = Stack::start(&[]).await;
    let target = Target::start().await;
    system.start_pipeline();
    let id = system
        .add_website_id(json!({ "url": target.url("/status"), "name": "paused later", "interval_seconds": 10 }))
        .await;
    eventually(Duration::from_secs(15), "a first check", || async { (target.hits() > 0).then_some(()) }).await;

    let (status, website) = system.call(Method::POST, &format!("/websites/{id}/pause"), None).await;
    assert_eq!(status, StatusCode::OK, "{website}");
    assert_eq!(website["paused"], true);
    eventually(Duration::from_secs(5), "the schedule entry gone", || async {
        (!system.store.is_scheduled(id, "local").await.expect("redis")).then_some(())
    })
    .await;
    let (_, overview) = system.call(Method::GET, "/monitor", None).await;
    let entry = overview.as_array().and_then(|all| all.iter().find(|w| w["id"] == id.to_string()).cloned());
    assert_eq!(entry.map(|e| e["status"].clone()), Some(json!("paused")));
    // Pausing again records nothing.
    let (status, _) = system.call(Method::POST, &format!("/websites/{id}/pause"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = system.call(Method::GET, &format!("/websites/{id}/history"), None).await;
    let paused = history.as_array().map_or(0, |h| h.iter().filter(|e| e["type"] == "WebsitePaused").count());
    assert_eq!(paused, 1, "{history}");

    let hits = target.hits();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(target.hits() <= hits + 1, "at most a check already queued runs after the pause");
    let quiet = target.hits();

    let (status, website) = system.call(Method::POST, &format!("/websites/{id}/resume"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(website["paused"], false);
    eventually(Duration::from_secs(15), "a check after resuming", || async { (target.hits() > quiet).then_some(()) })
        .await;
    let (status, _) = system.call(Method::POST, &format!("/websites/{}/pause", Uuid::now_v7()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn window(system: &Stack, body: Value) -> Value {
    let (status, window) = system.call(Method::POST, "/maintenance", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{window}");
    window
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_a_one_off_window_alerts_nobody_and_does_not_count_against_uptime() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "notify_emails": ["ops@example.com"] }))
        .await;
    let planned = window(
        &system,
        json!({ "name": "deploy", "website_ids": [id], "starts_at": rfc3339(-ChronoDuration::minutes(10)), "ends_at": rfc3339(ChronoDuration::hours(1)) }),
    )
    .await;
    assert_eq!(planned["active"], true, "{planned}");
    assert_eq!(planned["kind"], "once");
    system.start_detector();
    system.start_notifier();
    let at = |secs: i64| Utc::now() - ChronoDuration::minutes(5) + ChronoDuration::seconds(secs);
    system.check(id, "local", at(0), false).await;
    system.check(id, "local", at(10), false).await;
    system.notifier_settled().await;

    let alerts = eventually(Duration::from_secs(10), "the decision", || async {
        let (_, alerts) = system.call(Method::GET, &format!("/monitor/{id}/alerts"), None).await;
        (alerts.as_array().map_or(0, Vec::len) == 1).then_some(alerts)
    })
    .await;
    assert_eq!(alerts[0]["alerted"], false, "{alerts}");
    assert!(alerts[0]["suppressed"].as_str().unwrap_or_default().contains("maintenance"), "{alerts}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(system.smtp.messages().is_empty(), "no email during maintenance");
    let (_, incidents) = system.call(Method::GET, &format!("/monitor/{id}/downtime"), None).await;
    assert_eq!(incidents[0]["in_maintenance"], true, "{incidents}");
    let (_, uptime) = system.call(Method::GET, &format!("/monitor/{id}/uptime"), None).await;
    assert_eq!(uptime["uptime_percent"]["1d"], 100.0, "maintenance is not downtime: {uptime}");
    assert_eq!(uptime["down"], true, "but the website is down: {uptime}");

    // Ended early: the window is off from now on.
    let window_id = planned["id"].as_str().expect("id");
    let (status, ended) = system.call(Method::POST, &format!("/maintenance/{window_id}/end"), None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["active"], false, "{ended}");
    let (status, _) = system.call(Method::POST, &format!("/maintenance/{window_id}/end"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "not on any more");
    let (_, listed) = system.call(Method::GET, &format!("/maintenance?website={id}"), None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (status, _) = system.call(Method::DELETE, &format!("/maintenance/{window_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = system.call(Method::GET, &format!("/maintenance/{window_id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_window_for_all_websites_suppresses_the_alert_too() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "notify_emails": ["ops@example.com"] }))
        .await;
    // Every minute, for a minute, in Berlin time: always on.
    let recurring = window(
        &system,
        json!({ "name": "always", "all_websites": true, "cron": "* * * * *", "duration_minutes": 1, "timezone": "Europe/Berlin" }),
    )
    .await;
    assert_eq!(recurring["kind"], "recurring");
    assert_eq!(recurring["active"], true, "{recurring}");
    system.start_detector();
    system.start_notifier();
    let at = |secs: i64| Utc::now() - ChronoDuration::seconds(30) + ChronoDuration::seconds(secs);
    system.check(id, "local", at(0), false).await;
    system.check(id, "local", at(10), false).await;
    system.notifier_settled().await;
    let alerts = eventually(Duration::from_secs(10), "the decision", || async {
        let (_, alerts) = system.call(Method::GET, &format!("/monitor/{id}/alerts"), None).await;
        (alerts.as_array().map_or(0, Vec::len) == 1).then_some(alerts)
    })
    .await;
    assert!(alerts[0]["suppressed"].as_str().unwrap_or_default().contains("'always'"), "{alerts}");
    assert!(system.smtp.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_windows_are_refused_naming_the_field() {
    let system = Stack::start(&[]).await;
    let id = system.add_website_id(json!({ "url": "https://example.com", "name": "x" })).await;
    let soon = rfc3339(ChronoDuration::hours(1));
    let later = rfc3339(ChronoDuration::hours(2));
    for (body, field) in [
        (json!({ "name": "x", "website_ids": [id], "starts_at": later, "ends_at": soon }), "ends_at"),
        (json!({ "name": "x", "website_ids": [id], "starts_at": soon }), "ends_at"),
        (json!({ "name": "x", "website_ids": [id], "cron": "every day", "duration_minutes": 5 }), "cron"),
        (
            json!({ "name": "x", "website_ids": [id], "cron": "0 2 * * *", "duration_minutes": 5, "timezone": "Mars/Base" }),
            "timezone",
        ),
        (json!({ "name": "x", "website_ids": [id], "cron": "0 2 * * *" }), "duration_minutes"),
        (json!({ "name": "x", "website_ids": [id], "starts_at": soon, "ends_at": later, "cron": "0 2 * * *" }), "cron"),
        (json!({ "name": "x", "starts_at": soon, "ends_at": later }), "website_ids"),
        (json!({ "name": "x", "website_ids": [Uuid::now_v7()], "starts_at": soon, "ends_at": later }), "website_ids"),
        (
            json!({ "name": "x", "website_ids": [id], "all_websites": true, "starts_at": soon, "ends_at": later }),
            "website_ids",
        ),
        (json!({ "name": " ", "website_ids": [id], "starts_at": soon, "ends_at": later }), "name"),
        (json!({ "name": "x", "website_ids": [id] }), "starts_at"),
    ] {
        let (status, error) = system.call(Method::POST, "/maintenance", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
    }
    let planned =
        window(&system, json!({ "name": "later", "website_ids": [id], "starts_at": soon, "ends_at": later })).await;
    assert_eq!(planned["active"], false);
    assert!(planned["next"]["starts_at"].is_string(), "{planned}");
    let path = format!("/maintenance/{}", planned["id"].as_str().expect("id"));
    let (status, changed) =
        system.call(Method::PATCH, &path, Some(json!({ "cron": "0 3 * * Sat", "duration_minutes": 30 }))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["kind"], "recurring");
    assert_eq!(changed["timezone"], "UTC");
    let (status, error) = system.call(Method::PATCH, &path, Some(json!({ "ends_at": soon }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a recurring window cannot take only an end: {error}");
    let (status, _) = system.call(Method::POST, &format!("{path}/end"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "not on now");
}
