//! What-if uptime against real servers: incidents recomputed from the
//! stored checks under other rules, without changing anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::stack::Stack;
use events::{Envelope, Event, IntervalSecs, RegionName, TimeoutMs, WebsiteAdded, WebsiteName, WebsiteUrl};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// A website added two days ago (so two answers a moment apart count the
/// same seconds) and, an hour later, a target that flaps once a minute:
/// two failed checks, one good, two failed, one good (two outages when two
/// failures confirm one, none when three must).
async fn flapping_website(stack: &Stack) -> Uuid {
    let id = Uuid::now_v7();
    let created: DateTime<Utc> = Utc::now() - ChronoDuration::days(2);
    let added = Event::WebsiteAdded(WebsiteAdded {
        website_id: id,
        url: WebsiteUrl::parse("https://example.com").unwrap(),
        name: WebsiteName::parse("flapping").unwrap(),
        regions: vec![RegionName::parse("local").unwrap()],
        interval_seconds: IntervalSecs::parse(60).unwrap(),
        timeout_ms: TimeoutMs::DEFAULT,
        notify_emails: vec![],
        failures_before_down: None,
        down_policy: None,
        channel_ids: vec![],
        check: None,
    });
    stack.bus.publish(&Envelope::new(added, created), Some(0)).await.unwrap();
    for (i, up) in [true, false, false, true, false, false, true].into_iter().enumerate() {
        let at = created + ChronoDuration::hours(1) + ChronoDuration::minutes(i as i64);
        stack.check(id, "local", at, up).await;
    }
    stack.detector_settled().await;
    stack.influx_settled().await;
    stack.settle().await;
    id
}

async fn get(stack: &Stack, path: &str) -> Value {
    let (status, body) = stack.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

fn incidents(list: &Value) -> Vec<(Value, Value, Value, Value)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|i| (i["region"].clone(), i["started_at"].clone(), i["ended_at"].clone(), i["duration_seconds"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_what_if_under_the_websites_own_rules_equals_the_live_figures() {
    let stack = Stack::start(&[]).await;
    stack.start_detector();
    let id = flapping_website(&stack).await;

    let live = get(&stack, &format!("/monitor/{id}/uptime")).await;
    let what_if = get(&stack, &format!("/monitor/{id}/uptime?failures_before_down=2&down_policy=any")).await;
    let downtime = get(&stack, &format!("/monitor/{id}/downtime?days=7")).await;

    assert!(live.get("what_if").is_none(), "no what-if without its parameters: {live}");
    assert_eq!(incidents(&downtime).len(), 2, "{downtime}");
    assert_eq!(incidents(&what_if["what_if"]["incidents"]), incidents(&downtime));
    for field in ["down", "incidents_in_window", "last_downtime_at"] {
        assert_eq!(what_if[field], live[field], "{field}");
    }
    for window in ["1d", "7d", "30d", "90d"] {
        let (a, b) = (live["uptime_percent"][window].as_f64(), what_if["uptime_percent"][window].as_f64());
        let (Some(a), Some(b)) = (a, b) else { panic!("{live} {what_if}") };
        // Two answers a moment apart, over two days: equal to the rounding.
        assert!((a - b).abs() <= 0.001, "{window}: live {a}, what-if {b}");
        assert!(window == "1d" || a < 100.0, "{window}: the outages count: {a}");
    }
    let rules = &what_if["what_if"];
    assert_eq!((rules["failures_before_down"].clone(), rules["down_policy"].clone()), (json!(2), json!("any")));
    let (from, to) = (rules["covered_from"].as_str().unwrap(), rules["covered_to"].as_str().unwrap());
    let (_, website) = stack.call(Method::GET, &format!("/websites/{id}"), None).await;
    assert_eq!(from, website["created_at"].as_str().unwrap(), "younger than 90 days: covered since added");
    assert!(to > from);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_failures_before_down_reports_fewer_incidents_on_a_flapping_target_and_changes_nothing() {
    let stack = Stack::start(&[]).await;
    stack.start_detector();
    let id = flapping_website(&stack).await;
    let before = common::last_sequence(&stack.bus).await;

    let stricter = get(&stack, &format!("/monitor/{id}/uptime?failures_before_down=3")).await;
    assert_eq!(stricter["what_if"]["incidents"], json!([]), "{stricter}");
    assert_eq!(stricter["what_if"]["down_policy"], "any", "the website's own policy");
    assert_eq!(stricter["incidents_in_window"], 0);
    assert_eq!(stricter["uptime_percent"]["7d"], 100.0);
    let laxer = get(&stack, &format!("/monitor/{id}/uptime?failures_before_down=1")).await;
    assert_eq!(laxer["what_if"]["incidents"].as_array().map(Vec::len), Some(2), "{laxer}");

    let live = get(&stack, &format!("/monitor/{id}/downtime?days=7")).await;
    assert_eq!(incidents(&live).len(), 2, "the live incidents are untouched");
    assert_eq!(common::last_sequence(&stack.bus).await, before, "nothing was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_what_if_parameters_are_refused_naming_the_field() {
    let stack = Stack::start(&[]).await;
    let id = stack.add_website(json!({ "url": "https://example.com", "name": "example" })).await;
    for (query, status, field) in [
        ("failures_before_down=0", StatusCode::UNPROCESSABLE_ENTITY, "failures_before_down"),
        ("failures_before_down=11", StatusCode::UNPROCESSABLE_ENTITY, "failures_before_down"),
        ("failures_before_down=three", StatusCode::BAD_REQUEST, "failures_before_down"),
        ("down_policy=most", StatusCode::UNPROCESSABLE_ENTITY, "down_policy"),
        ("down_policy=", StatusCode::UNPROCESSABLE_ENTITY, "down_policy"),
    ] {
        let (got, body) = stack.call(Method::GET, &format!("/monitor/{id}/uptime?{query}"), None).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (got, body) =
        stack.call(Method::GET, &format!("/monitor/{}/uptime?down_policy=all", Uuid::now_v7()), None).await;
    assert_eq!(got, StatusCode::NOT_FOUND, "{body}");
    let ok = get(&stack, &format!("/monitor/{id}/uptime?down_policy=majority")).await;
    assert_eq!(ok["what_if"]["down_policy"], "majority");
    assert_eq!(ok["what_if"]["failures_before_down"], 2, "the detector's default");
}
