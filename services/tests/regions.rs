//! Removing a region against real servers: its workers stop checking, its
//! schedule and queue leave Redis, websites drop it, and what it recorded
//! stays readable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::stack::{eventually, Stack};
use common::target::Target;
use poem::http::{Method, StatusCode};
use redis::AsyncCommands;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

async fn checks_of(stack: &Stack, region: &str, id: Uuid) -> usize {
    stack.checks_per_subject().await.get(&format!("checks.{region}.{id}")).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_region_stops_its_checks_within_seconds_and_keeps_its_history() {
    let stack = Stack::start(&[]).await;
    stack.start_cron();
    let (status, body) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    stack.start_worker("local");
    stack.start_worker("europe");
    stack.start_detector();
    let target = Target::start().await;
    let id = stack
        .add_website_id(
            json!({ "url": target.url("/status"), "name": "target", "regions": ["local", "europe"], "interval_seconds": 10 }),
        )
        .await;
    eventually(Duration::from_secs(10), "a check from europe", || async {
        (checks_of(&stack, "europe", id).await > 0).then_some(())
    })
    .await;
    // An outage seen from europe (dated after any real check, so the
    // worker's own results cannot end it), open when the region goes.
    let later = Utc::now() + chrono::Duration::hours(1);
    stack.check(id, "europe", later, false).await;
    stack.check(id, "europe", later + chrono::Duration::seconds(1), false).await;
    stack.detector_settled().await;
    stack.settle().await;

    let (status, removal) = stack.call(Method::DELETE, "/regions/europe", None).await;
    assert_eq!(status, StatusCode::OK, "{removal}");
    assert_eq!(removal["websites_changed"], json!([id.to_string()]));
    assert_eq!(removal["websites_paused"], json!([]));

    // In-flight checks may still land for a moment; after that, none.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let europe_after = checks_of(&stack, "europe", id).await;
    let local_before = checks_of(&stack, "local", id).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(checks_of(&stack, "europe", id).await, europe_after, "europe must not check any more");
    assert!(checks_of(&stack, "local", id).await > local_before, "local keeps checking");

    let mut redis = stack.store.connection();
    let due: bool = redis.exists("due:europe").await.unwrap();
    let queue: bool = redis.exists("checks:europe").await.unwrap();
    let removed: bool = redis.sismember("regions:removed", "europe").await.unwrap();
    let known: bool = redis.sismember("regions", "europe").await.unwrap();
    assert!(!due && !queue && removed && !known, "due {due} queue {queue} removed {removed} known {known}");

    let (_, website) = stack.call(Method::GET, &format!("/websites/{id}"), None).await;
    assert_eq!(website["regions"], json!(["local"]));
    let (_, regions) = stack.call(Method::GET, "/regions", None).await;
    assert_eq!(regions.as_array().map(|r| r.len()), Some(1), "{regions}");
    let (status, incidents) = stack.call(Method::GET, &format!("/monitor/{id}/downtime?days=1"), None).await;
    assert_eq!(status, StatusCode::OK, "{incidents}");
    let europe = incidents.as_array().into_iter().flatten().find(|i| i["region"] == "europe").expect("europe outage");
    assert_eq!(europe["ongoing"], false, "the open outage ends at the removal: {europe}");
    let (status, points) = stack.call(Method::GET, &format!("/monitor/{id}?days=1"), None).await;
    assert_eq!(status, StatusCode::OK, "{points}");
    assert!(points.as_array().into_iter().flatten().any(|p| p["region"] == "europe"), "{points}");
    let (status, only_europe) =
        stack.call(Method::GET, &format!("/monitor/{id}/downtime?days=1&region=europe"), None).await;
    assert_eq!(status, StatusCode::OK, "a removed region's history can be asked for by name: {only_europe}");
    assert_eq!(only_europe.as_array().map(Vec::len), Some(1), "{only_europe}");

    // The name can be used again.
    let (status, body) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually(Duration::from_secs(10), "europe back in the schedule's regions", || async {
        let mut redis = stack.store.connection();
        let removed: bool = redis.sismember("regions:removed", "europe").await.unwrap();
        (!removed).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_region_is_not_found_and_the_last_region_cannot_be_removed() {
    let stack = Stack::start(&[]).await;
    for name in ["mars", "Not%20Valid"] {
        let (status, body) = stack.call(Method::DELETE, &format!("/regions/{name}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {body}");
    }
    let (status, body) = stack.call(Method::DELETE, "/regions/local?force=true", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("last region")), "{body}");
    let (status, body) = stack.call(Method::DELETE, "/regions/local?force=maybe", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "force", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_website_left_without_a_region_refuses_the_removal_unless_forced_and_is_then_paused() {
    let stack = Stack::start(&[]).await;
    let (status, _) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let only = stack.add_website(json!({ "url": "https://example.com", "name": "only", "regions": ["europe"] })).await;
    let both = stack
        .add_website(json!({ "url": "https://example.org", "name": "both", "regions": ["europe", "local"] }))
        .await;

    let (status, body) = stack.call(Method::DELETE, "/regions/europe", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains(&only) && !m.contains(&both)), "{body}");
    let (_, website) = stack.call(Method::GET, &format!("/websites/{both}"), None).await;
    assert_eq!(website["regions"], json!(["europe", "local"]), "a refused removal changes nothing");

    let (status, removal) = stack.call(Method::DELETE, "/regions/europe?force=true", None).await;
    assert_eq!(status, StatusCode::OK, "{removal}");
    assert_eq!(removal["websites_paused"], json!([only]));
    assert_eq!(removal["websites_changed"], json!([both]));
    let (_, website) = stack.call(Method::GET, &format!("/websites/{only}"), None).await;
    assert_eq!((website["paused"].clone(), website["regions"].clone()), (json!(true), json!([])), "{website}");
    let (_, website) = stack.call(Method::GET, &format!("/websites/{both}"), None).await;
    assert_eq!(website["regions"], json!(["local"]));
    let (status, _) = stack.call(Method::DELETE, "/regions/europe", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "removed once");

    // Resuming needs a region first.
    let (status, body) = stack.call(Method::POST, &format!("/websites/{only}/resume"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) =
        stack.call(Method::PATCH, &format!("/websites/{only}"), Some(json!({ "regions": ["local"] }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = stack.call(Method::POST, &format!("/websites/{only}/resume"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["paused"], false);
}
