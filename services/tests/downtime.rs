//! Downtime detection, incidents and email against the real servers and a
//! real SMTP server: one email per outage and one per recovery, never a
//! flood, never a missed one, through restarts, SMTP outages and replays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use common::target::Target;
use events::{Envelope, Event};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use services::notification::plan::Planner;
use services::{projector, runner};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn at(offset_secs: i64) -> DateTime<Utc> {
    // Recent, so the notifier does not treat them as old history.
    let base = Utc::now() - ChronoDuration::minutes(5);
    base - ChronoDuration::nanoseconds(base.timestamp_subsec_nanos() as i64) + ChronoDuration::seconds(offset_secs)
}

fn kinds(events: &[Envelope]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.type_name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_fails_and_recovers_gives_one_incident_and_two_emails() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let target = Target::start().await;
    system.start_pipeline();
    system.start_detector();
    system.start_notifier();
    let id = system
        .add_website_id(json!({ "url": target.url("/status"), "name": "shop", "interval_seconds": 10, "notify_emails": ["ops@example.com"] }))
        .await;
    eventually(Duration::from_secs(15), "a first successful check", || async { (target.hits() >= 1).then_some(()) })
        .await;

    // The site starts failing.
    target.answer(500);
    let failing_since = Instant::now();
    let incident = eventually(Duration::from_secs(40), "an open incident", || async {
        let (status, incidents) = system.call(Method::GET, &format!("/monitor/{id}/downtime"), None).await;
        assert_eq!(status, StatusCode::OK, "{incidents}");
        incidents.as_array().and_then(|list| list.first().cloned())
    })
    .await;
    let incident_visible = failing_since.elapsed();
    assert_eq!(incident["ongoing"], true, "{incident}");
    assert_eq!(incident["region"], "local");
    assert_eq!(incident["cause"], "http_status");
    assert_eq!(incident["status_code"], 500);
    assert!(incident["ended_at"].is_null());
    eventually(Duration::from_secs(10), "the down email", || async {
        (system.emails("DOWN").len() == 1).then_some(())
    })
    .await;
    let down_mailed: DateTime<Utc> = system.smtp.last_received().expect("received").into();
    let down = &system.emails("DOWN")[0];
    assert!(down.contains("shop") && down.contains(&target.url("/status")), "{down}");
    assert!(down.contains("local") && down.contains("http_status") && down.contains("500"), "{down}");
    assert!(down.contains("To: ops@example.com"), "{down}");
    let transitions = system.transitions(id).await;
    let Event::SiteDown(site_down) = &transitions[0].event else { panic!("{transitions:?}") };

    // It recovers.
    target.answer(200);
    let closed = eventually(Duration::from_secs(25), "the incident to close", || async {
        let (_, last) = system.call(Method::GET, &format!("/monitor/{id}/last_downtime"), None).await;
        (last["ongoing"] == false).then_some(last)
    })
    .await;
    assert_eq!(closed["started_at"], incident["started_at"]);
    assert!(closed["ended_at"].is_string());
    assert!(closed["duration_seconds"].as_i64().is_some_and(|d| d >= 10), "{closed}");
    eventually(Duration::from_secs(10), "the recovery email", || async {
        (system.emails("UP").len() == 1).then_some(())
    })
    .await;
    let up = &system.emails("UP")[0];
    assert!(up.contains("back up after") && up.contains("Regions:     local"), "{up}");

    // Nothing more: one incident, one SiteDown, one SiteUp, two emails.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kinds(&system.transitions(id).await), ["SiteDown", "SiteUp"]);
    assert_eq!(system.smtp.messages().len(), 2);
    let (_, all) = system.call(Method::GET, &format!("/monitor/{id}/downtime?days=1"), None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));

    let (status, uptime) = system.call(Method::GET, &format!("/monitor/{id}/uptime?days=1"), None).await;
    assert_eq!(status, StatusCode::OK, "{uptime}");
    assert_eq!(uptime["down"], false);
    assert!(uptime["uptime_percent"]["1d"].as_f64().is_some_and(|p| p < 100.0), "{uptime}");
    assert!(uptime["response_ms"]["p50"].is_number(), "{uptime}");

    // Detection latency, for the record (not asserted: the machine is noisy).
    let first_failure = site_down.started_at;
    let down_event_at = transitions[0].occurred_at;
    println!(
        "detection: first failed check -> SiteDown {} ms (interval 10 s, 2 checks); target failing -> incident visible {} ms; SiteDown -> email received {} ms",
        (down_event_at - first_failure).num_milliseconds(),
        incident_visible.as_millis(),
        (down_mailed - down_event_at).num_milliseconds(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_flaky_check_raises_nothing() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    system.start_detector();
    system.start_notifier();
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "notify_emails": ["ops@example.com"] }))
        .await;
    for (secs, up) in [(0, true), (10, false), (20, true), (30, true)] {
        system.check(id, "local", at(secs), up).await;
    }
    system.detector_settled().await;
    system.notifier_settled().await;
    assert!(system.transitions(id).await.is_empty());
    let (_, incidents) = system.call(Method::GET, &format!("/monitor/{id}/downtime"), None).await;
    assert_eq!(incidents, json!([]));
    let (_, last) = system.call(Method::GET, &format!("/monitor/{id}/last_downtime"), None).await;
    assert_eq!(last, Value::Null);
    assert!(system.smtp.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_detector_and_the_notifier_mid_outage_sends_no_duplicate_and_misses_nothing() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "notify_emails": ["ops@example.com"] }))
        .await;
    let (detector, detector_task) = system.start_detector();
    let (notifier, notifier_task) = system.start_notifier();
    system.check(id, "local", at(0), false).await;
    system.check(id, "local", at(10), false).await;
    eventually(Duration::from_secs(10), "the down email", || async {
        (system.emails("DOWN").len() == 1).then_some(())
    })
    .await;

    // Both stop mid-outage; more failures and the recovery arrive meanwhile.
    detector.cancel();
    notifier.cancel();
    detector_task.abort();
    notifier_task.abort();
    system.check(id, "local", at(20), false).await;
    system.check(id, "local", at(30), true).await;
    // The detector's state is wiped from memory; what it committed remains.
    let (_, detector_task) = system.start_detector();
    system.detector_settled().await;
    // The detector dies again and restarts with nothing new to do.
    detector_task.abort();
    system.start_detector();
    system.detector_settled().await;
    system.start_notifier();
    eventually(Duration::from_secs(10), "the recovery email", || async {
        (system.emails("UP").len() == 1).then_some(())
    })
    .await;
    system.notifier_settled().await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(kinds(&system.transitions(id).await), ["SiteDown", "SiteUp"]);
    assert_eq!(system.emails("DOWN").len(), 1);
    assert_eq!(system.emails("UP").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_delays_the_email_but_does_not_drop_it() {
    let mut system = Stack::start(&[]).await;
    system.start_detector();
    system.start_notifier();
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "notify_emails": ["ops@example.com"] }))
        .await;
    system.check(id, "local", at(0), false).await;
    system.check(id, "local", at(10), false).await;
    system.notifier_settled().await;
    eventually(Duration::from_secs(10), "a failed attempt", || async {
        let attempts: Option<i32> = sqlx::query_scalar("select attempts from deliveries where delivered_at is null")
            .fetch_optional(&system.db.pool)
            .await
            .expect("query");
        attempts.filter(|a| *a >= 1)
    })
    .await;

    // The endpoint stays down a while (retries back off 1, 2, 4, 8 s ...
    // up to five minutes apart, so after a five-minute outage the email
    // comes within five minutes of the return; ten seconds show the same).
    let down_since = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    system.smtp.resume().await;
    let back = std::time::Instant::now();
    eventually(Duration::from_secs(30), "the delayed email", || async {
        (system.emails("DOWN").len() == 1).then_some(())
    })
    .await;
    let after = back.elapsed();
    system.notifier_settled().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("select attempts, last_error from deliveries").fetch_one(&system.db.pool).await.expect("row");
    let emails = system.smtp.messages().len();
    println!(
        "smtp down {:.1} s during an outage: load held (1 outage, {attempts} attempts) / faults 1 / lost {} / \
         duplicated {}; the email {:.1} s after the server returned",
        (back - down_since).as_secs_f64(),
        1 - emails.min(1),
        emails.saturating_sub(1),
        after.as_secs_f64()
    );
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(error, None);
    assert_eq!(emails, 1, "one email after the server returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_the_whole_stream_sends_no_email() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "notify_emails": ["ops@example.com"] }))
        .await;
    let (notifier, notifier_task) = system.start_notifier();
    system.start_detector();
    for (secs, up) in [(0, false), (10, false), (20, true)] {
        system.check(id, "local", at(secs), up).await;
    }
    eventually(Duration::from_secs(10), "both emails", || async { (system.smtp.messages().len() == 2).then_some(()) })
        .await;
    notifier.cancel();
    notifier_task.abort();

    // Replay everything: projections from sequence 1, the notifier too.
    projector::replay(&system.bus, &system.db.pool, projector::Projection::Monitor, &CancellationToken::new())
        .await
        .expect("replay");
    let planner = Planner::new(system.config.notify.clone(), Arc::new(Notify::new()));
    let reached = runner::replay(&system.bus, &system.db.pool, &planner, &CancellationToken::new())
        .await
        .expect("replay planner");
    assert_eq!(reached, system.bus.last_subject_seq("incidents.>").await.expect("last incident"));
    system.start_notifier();
    system.notifier_settled().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(system.smtp.messages().len(), 2, "a replay must not mail again");
    let (_, incidents) = system.call(Method::GET, &format!("/monitor/{id}/downtime"), None).await;
    assert_eq!(incidents.as_array().map(Vec::len), Some(1), "{incidents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_two_regions_is_one_email_down_and_one_when_all_are_back() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let (status, _) = system.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = system
        .add_website_id(json!({ "url": "https://example.com", "name": "x", "regions": ["local", "europe"], "notify_emails": ["ops@example.com"] }))
        .await;
    system.start_detector();
    system.start_notifier();
    for secs in [0, 10] {
        system.check(id, "local", at(secs), false).await;
        system.check(id, "europe", at(secs + 1), false).await;
    }
    system.check(id, "local", at(20), true).await;
    system.detector_settled().await;
    system.notifier_settled().await;
    eventually(Duration::from_secs(10), "the down email", || async {
        (system.emails("DOWN").len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(system.emails("UP").is_empty(), "europe is still down");

    system.check(id, "europe", at(21), true).await;
    eventually(Duration::from_secs(10), "the recovery email", || async {
        (system.emails("UP").len() == 1).then_some(())
    })
    .await;
    let up = &system.emails("UP")[0];
    assert!(up.contains("local") && up.contains("europe"), "{up}");
    assert_eq!(system.smtp.messages().len(), 2);

    let (_, incidents) = system.call(Method::GET, &format!("/monitor/{id}/downtime?region=europe"), None).await;
    assert_eq!(incidents.as_array().map(Vec::len), Some(1), "{incidents}");
    assert_eq!(incidents[0]["region"], "europe");
    let (_, uptime) = system.call(Method::GET, &format!("/monitor/{id}/uptime"), None).await;
    assert_eq!(uptime["down"], false, "{uptime}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downtime_endpoints_refuse_bad_input() {
    let system = Stack::start(&[]).await;
    let id = system.add_website_id(json!({ "url": "https://example.com", "name": "x" })).await;
    for path in ["downtime", "last_downtime", "uptime"] {
        let (status, body) = system.call(Method::GET, &format!("/monitor/{id}/{path}?days=0"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        let (status, body) = system.call(Method::GET, &format!("/monitor/{id}/{path}?region=mars"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        let (status, _) = system.call(Method::GET, &format!("/monitor/{}/{path}", Uuid::now_v7()), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let (status, _) = system.call(Method::GET, &format!("/monitor/nope/{path}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, uptime) = system.call(Method::GET, &format!("/monitor/{id}/uptime"), None).await;
    assert_eq!(status, StatusCode::OK, "{uptime}");
    assert_eq!(uptime["uptime_percent"]["90d"], 100.0);
    assert_eq!(uptime["days"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_website_can_require_more_failures_before_it_is_down() {
    let system = Stack::start(&[]).await;
    let id =
        system.add_website_id(json!({ "url": "https://example.com", "name": "x", "failures_before_down": 3 })).await;
    let (_, website) = system.call(Method::GET, &format!("/websites/{id}"), None).await;
    assert_eq!(website["failures_before_down"], 3);
    system.start_detector();
    // `at` follows the clock; keep the first time to compare with.
    let first = at(0);
    system.check(id, "local", first, false).await;
    system.check(id, "local", first + ChronoDuration::seconds(10), false).await;
    system.detector_settled().await;
    assert!(system.transitions(id).await.is_empty(), "two failures are not enough for this website");
    system.check(id, "local", first + ChronoDuration::seconds(20), false).await;
    system.detector_settled().await;
    let transitions = system.transitions(id).await;
    let [Envelope { event: Event::SiteDown(down), .. }] = transitions.as_slice() else { panic!("{transitions:?}") };
    assert_eq!(down.started_at, first + ChronoDuration::milliseconds(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_majority_policy_the_website_is_down_only_while_most_regions_are() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    for name in ["europe", "asia"] {
        let (status, _) = system.call(Method::POST, "/regions", Some(json!({ "name": name }))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let website = |name: &str, policy: &str| {
        json!({
            "url": "https://example.com", "name": name, "regions": ["local", "europe", "asia"],
            "down_policy": policy, "notify_emails": ["ops@example.com"]
        })
    };
    let id = system.add_website_id(website("majority", "majority")).await;
    let any = system.add_website_id(website("any", "any")).await;
    system.start_detector();
    system.start_notifier();
    let emails = |kind: &str, name: &str| {
        system.emails(kind).into_iter().filter(|m| m.contains(&format!("] {name} is"))).count()
    };

    // One region of three cut off from the websites (its checks fail, the
    // other regions' pass): not the website under a majority, the website
    // under `any`.
    for website in [id, any] {
        system.check(website, "local", at(0), false).await;
        system.check(website, "local", at(10), false).await;
        system.check(website, "europe", at(1), true).await;
        system.check(website, "asia", at(2), true).await;
    }
    system.detector_settled().await;
    system.notifier_settled().await;
    eventually(Duration::from_secs(10), "the down email under any", || async {
        (emails("DOWN", "any") == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (majority_alerts, any_alerts) = (emails("DOWN", "majority"), emails("DOWN", "any"));
    println!(
        "one region of three cut off: load held (2 websites, 3 regions) / faults 1 / lost 0 / duplicated {}; \
         alerts: {majority_alerts} under majority, {any_alerts} under any",
        any_alerts.saturating_sub(1)
    );
    assert_eq!(majority_alerts, 0, "one region of three is not a majority");
    assert_eq!(any_alerts, 1, "under any, one region down is one alert");
    let (_, uptime) = system.call(Method::GET, &format!("/monitor/{id}/uptime"), None).await;
    assert_eq!(uptime["down"], false, "{uptime}");

    // Two of three: the website is down.
    system.check(id, "europe", at(11), false).await;
    system.check(id, "europe", at(21), false).await;
    eventually(Duration::from_secs(10), "the down email", || async { (emails("DOWN", "majority") == 1).then_some(()) })
        .await;
    let (_, uptime) = system.call(Method::GET, &format!("/monitor/{id}/uptime"), None).await;
    assert_eq!(uptime["down"], true, "{uptime}");
    let down = system.emails("DOWN").into_iter().find(|m| m.contains("] majority is")).expect("email");
    assert!(down.contains("local, europe"), "{down}");

    // One recovers: back to one of three, the website is up again.
    system.check(id, "local", at(30), true).await;
    eventually(Duration::from_secs(10), "the recovery email", || async {
        (emails("UP", "majority") == 1).then_some(())
    })
    .await;
    let up = system.emails("UP").into_iter().find(|m| m.contains("] majority is")).expect("email");
    assert!(up.contains("local, europe"), "{up}");
    assert_eq!(system.smtp.messages().len(), 3, "two for the majority website, one for the other");
}
