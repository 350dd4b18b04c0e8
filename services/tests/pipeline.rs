//! The checking pipeline end to end against real NATS, PostgreSQL, Redis
//! and InfluxDB: API -> MONITOR -> cron (Redis) -> workers -> CHECKS ->
//! InfluxDB and Postgres -> /monitor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stack::{eventually, region_name, Stack};
use common::target::Target;
use poem::http::{Method, StatusCode};
use projections::influx::Influx;
use redis::AsyncCommands;
use serde_json::json;
use services::{cron, projector, queue, worker};
use std::time::Duration;
use uuid::Uuid;

/// The stack with its scheduler running (workers are started per test).
async fn start(extra: &[(&str, &str)]) -> Stack {
    let stack = Stack::start(extra).await;
    stack.start_cron();
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_website_added_through_the_api_is_checked_from_each_region_within_seconds() {
    let stack = start(&[]).await;
    let target = Target::start().await;
    let (status, _) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    stack.start_worker("local");
    stack.start_worker("europe");

    let id = stack
        .add_website(json!({ "url": target.url("/status"), "name": "target", "regions": ["local", "europe"], "interval_seconds": 10 }))
        .await;

    let entry = eventually(Duration::from_secs(10), "both regions up in /monitor", || async {
        let entry = stack.monitor(&id).await;
        (entry["status"] == "up").then_some(entry)
    })
    .await;
    let regions: Vec<&str> =
        entry["regions"].as_array().expect("regions").iter().filter_map(|r| r["region"].as_str()).collect();
    assert_eq!(regions, ["europe", "local"]);
    for region in entry["regions"].as_array().expect("regions") {
        assert_eq!(region["status_code"], 200);
        assert!(region["response_ms"].is_number());
    }

    let points = eventually(Duration::from_secs(10), "points of both regions in influxdb", || async {
        let (status, points) = stack.call(Method::GET, &format!("/monitor/{id}?days=1"), None).await;
        assert_eq!(status, StatusCode::OK, "{points}");
        let regions: std::collections::BTreeSet<String> =
            points.as_array().into_iter().flatten().filter_map(|p| p["region"].as_str().map(str::to_owned)).collect();
        (regions.len() == 2).then_some(points)
    })
    .await;
    let first = &points[0];
    assert_eq!(first["up"], true);
    assert_eq!(first["status_code"], 200);
    assert!(first["response_ms"].is_number());
    assert!(first["time"].is_string());

    let (status, only_europe) = stack.call(Method::GET, &format!("/monitor/{id}?region=europe&days=7"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(only_europe.as_array().expect("array").iter().all(|p| p["region"] == "europe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_targets_are_down_in_monitor_with_their_cause() {
    let stack = start(&[]).await;
    let target = Target::start().await;
    target.answer(500);
    stack.start_worker("local");
    let refused = format!("http://127.0.0.1:{}/", common::free_port());
    let cases = [
        (target.url("/status"), 10_000, "http_status"),
        (refused, 10_000, "connect"),
        (target.url("/slow/5000"), 300, "timeout"),
        ("http://does-not-exist.invalid/".to_owned(), 10_000, "dns"),
    ];
    let mut ids = Vec::new();
    for (url, timeout_ms, cause) in &cases {
        let id = stack
            .add_website(json!({ "url": url, "name": cause, "timeout_ms": timeout_ms, "interval_seconds": 10 }))
            .await;
        ids.push((id, *cause));
    }
    for (id, cause) in ids {
        let entry = eventually(Duration::from_secs(10), cause, || async {
            let entry = stack.monitor(&id).await;
            (entry["status"] == "down").then_some(entry)
        })
        .await;
        assert_eq!(entry["regions"][0]["cause"], cause, "{entry}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_series_refuses_bad_days_unknown_regions_and_unknown_websites() {
    let stack = start(&[]).await;
    let id = stack.add_website(json!({ "url": "https://example.com", "name": "example" })).await;
    for (query, status, field) in [
        ("days=0", StatusCode::UNPROCESSABLE_ENTITY, "days"),
        ("days=91", StatusCode::UNPROCESSABLE_ENTITY, "days"),
        // Not a number at all is a malformed parameter, like `limit=ten`.
        ("days=week", StatusCode::BAD_REQUEST, "days"),
        ("region=mars", StatusCode::UNPROCESSABLE_ENTITY, "region"),
        ("region=Not%20Valid", StatusCode::UNPROCESSABLE_ENTITY, "region"),
    ] {
        let (got, body) = stack.call(Method::GET, &format!("/monitor/{id}?{query}"), None).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (got, body) = stack.call(Method::GET, &format!("/monitor/{}", Uuid::now_v7()), None).await;
    assert_eq!(got, StatusCode::NOT_FOUND, "{body}");
    let (got, _) = stack.call(Method::GET, "/monitor/not-a-uuid", None).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    let (got, points) = stack.call(Method::GET, &format!("/monitor/{id}?days=90"), None).await;
    assert_eq!(got, StatusCode::OK, "{points}");
    assert_eq!(points, json!([]));
}

/// Queues `count` checks of `url` on `key` by hand (so nothing else
/// schedules them); returns their websites' ids.
async fn queue_jobs(conn: &mut redis::aio::ConnectionManager, key: &str, url: &str, count: i64) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for n in 0..count {
        let id = Uuid::now_v7();
        let fields = [
            ("id", id.to_string()),
            ("url", url.to_owned()),
            ("timeout_ms", "5000".to_owned()),
            ("scheduled_ms", (1_700_000_000_000i64 + n).to_string()),
        ];
        let _: String = conn.xadd(key, "*", &fields).await.expect("xadd");
        ids.push(id);
    }
    ids
}

/// Waits (up to `limit`) until the queue `key` is empty, every job
/// acknowledged, then asserts each of `ids` was stored exactly once.
async fn each_stored_once(stack: &Stack, key: &str, ids: &[Uuid], limit: Duration, what: &str) {
    eventually(limit, what, || async {
        let mut conn = stack.store.connection();
        let len: usize = conn.xlen(key).await.expect("xlen");
        (len == 0).then_some(())
    })
    .await;
    let counts = stack.checks_per_subject().await;
    for id in ids {
        assert_eq!(counts.get(&format!("checks.local.{id}")), Some(&1), "one event for {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_jobs_in_flight_loses_none() {
    let stack = start(&[("WORKER_RECLAIM_IDLE_MS", "500")]).await;
    let target = Target::start().await;
    let key = queue::checks_key(&region_name("local"));
    let mut conn = stack.store.connection();
    worker::ensure_group(&mut conn, &key).await.expect("group");
    // Ten slow jobs queued by hand, so nothing else schedules them.
    let ids = queue_jobs(&mut conn, &key, &target.url("/slow/1500"), 10).await;

    // The first worker takes them all and dies mid-check.
    let (_, first) = stack.start_worker("local");
    eventually(Duration::from_secs(5), "the first worker to start checking", || async {
        (target.hits() >= 10).then_some(())
    })
    .await;
    first.abort();
    let pending: redis::streams::StreamPendingReply = conn.xpending(&key, queue::GROUP).await.expect("pending");
    assert_eq!(pending.count(), 10, "the dead worker's jobs are pending");

    // Another worker reclaims, checks and publishes each exactly once.
    stack.start_worker("local");
    each_stored_once(&stack, &key, &ids, Duration::from_secs(15), "every job reclaimed and acknowledged").await;
    let dead: usize = conn.xlen(queue::dead_key(&region_name("local"))).await.expect("xlen");
    assert_eq!(dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_go_on_while_their_results_wait_for_a_stalled_store_and_each_is_stored_once() {
    let stack = start(&[("WORKER_CONCURRENCY", "2")]).await;
    let target = Target::start().await;
    let key = queue::checks_key(&region_name("local"));
    let mut conn = stack.store.connection();
    worker::ensure_group(&mut conn, &key).await.expect("group");
    stack.start_worker("local");
    // JetStream stops answering (frozen, as a store held up by its disk
    // would): no result can be stored meanwhile.
    stack.nats.pause();
    let ids = queue_jobs(&mut conn, &key, &target.url("/status"), 40).await;
    // Two checks at once, yet all forty are made while none can be stored:
    // a check's place is free once its result is handed over.
    eventually(Duration::from_secs(10), "every job checked with the store stalled", || async {
        (target.hits() >= 40).then_some(())
    })
    .await;
    let pending: redis::streams::StreamPendingReply = conn.xpending(&key, queue::GROUP).await.expect("pending");
    stack.nats.resume();
    assert_eq!(pending.count(), 40, "no job is acknowledged before its result is stored");
    each_stored_once(&stack, &key, &ids, Duration::from_secs(30), "every result stored and its job acknowledged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_job_goes_to_the_dead_letter_stream() {
    let stack = start(&[]).await;
    let key = queue::checks_key(&region_name("local"));
    let mut conn = stack.store.connection();
    worker::ensure_group(&mut conn, &key).await.expect("group");
    let _: String = conn.xadd(&key, "*", &[("id", "not-a-uuid"), ("url", "x")]).await.expect("xadd");
    stack.start_worker("local");
    let dead_key = queue::dead_key(&region_name("local"));
    let reason: String = eventually(Duration::from_secs(5), "the dead letter", || async {
        let mut conn = stack.store.connection();
        let entries: redis::streams::StreamRangeReply = conn.xrange_all(&dead_key).await.expect("xrange");
        entries.ids.first().and_then(|e| e.get::<String>("reason"))
    })
    .await;
    assert!(reason.contains("malformed job"), "{reason}");
    let len: usize = conn.xlen(&key).await.expect("xlen");
    assert_eq!(len, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_never_queue_a_check_twice() {
    let stack = start(&[]).await;
    // A second scheduler on the same Redis.
    stack.start_cron();
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(
            stack
                .add_website(json!({ "url": format!("https://{n}.example.com"), "name": "x", "interval_seconds": 10 }))
                .await,
        );
    }
    // Without workers, every queued check stays in the stream: over 12 s
    // each website is due a few times (its quick first check, then its
    // slots), never twice for one slot.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut conn = stack.store.connection();
    let entries: redis::streams::StreamRangeReply =
        conn.xrange_all(queue::checks_key(&region_name("local"))).await.expect("xrange");
    let mut seen = std::collections::HashSet::new();
    for entry in &entries.ids {
        let key = (entry.get::<String>("id"), entry.get::<String>("scheduled_ms"));
        assert!(seen.insert(key.clone()), "queued twice: {key:?}");
    }
    for id in &ids {
        let checks = entries.ids.iter().filter(|e| e.get::<String>("id").as_deref() == Some(id)).count();
        assert!((1..=3).contains(&checks), "{id} queued {checks} times in 12 s at a 10 s interval");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_adds_what_redis_lost_and_drops_what_postgres_no_longer_has() {
    let stack = start(&[]).await;
    let lost = stack.add_website(json!({ "url": "https://lost.example.com", "name": "lost" })).await;
    let kept = stack.add_website(json!({ "url": "https://kept.example.com", "name": "kept" })).await;
    eventually(Duration::from_secs(5), "both scheduled", || async {
        let a = stack.store.is_scheduled(lost.parse().expect("uuid"), "local").await.expect("zscore");
        let b = stack.store.is_scheduled(kept.parse().expect("uuid"), "local").await.expect("zscore");
        (a && b).then_some(())
    })
    .await;
    let mut conn = stack.store.connection();
    let _: () = conn.del(format!("site:{lost}")).await.expect("del");
    let _: () = conn.zrem("due:local", &lost).await.expect("zrem");
    let _: () = conn.zrem("due:local", &kept).await.expect("zrem");
    let stale = Uuid::now_v7();
    let _: () = conn
        .hset_multiple(
            format!("site:{stale}"),
            &[("url", "https://stale.example.com/"), ("seq", "1"), ("regions", "local")],
        )
        .await
        .expect("hset");
    let _: () = conn.zadd("due:local", stale.to_string(), 1).await.expect("zadd");

    let report = cron::reconcile(&stack.store, &stack.db.pool).await.expect("reconcile");

    assert_eq!((report.added, report.removed, report.repaired), (1, 1, 1));
    for id in [&lost, &kept] {
        assert!(stack.store.is_scheduled(id.parse().expect("uuid"), "local").await.expect("zscore"));
    }
    assert!(!stack.store.is_scheduled(stale, "local").await.expect("zscore"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_website_is_never_checked_again() {
    let stack = start(&[]).await;
    let target = Target::start().await;
    stack.start_worker("local");
    let id = stack.add_website(json!({ "url": target.url("/status"), "name": "t", "interval_seconds": 10 })).await;
    eventually(Duration::from_secs(10), "the first check", || async { (target.hits() >= 1).then_some(()) }).await;

    let (status, _) = stack.call(Method::DELETE, &format!("/websites/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), "the schedule to drop it", || async {
        let scheduled = stack.store.is_scheduled(id.parse().expect("uuid"), "local").await.expect("zscore");
        (!scheduled).then_some(())
    })
    .await;
    let hits = target.hits();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(target.hits(), hits, "checked after removal");
    assert!(stack.monitor(&id).await.is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_url_is_used_from_the_next_check() {
    let stack = start(&[]).await;
    let first = Target::start().await;
    let second = Target::start().await;
    stack.start_worker("local");
    let id = stack.add_website(json!({ "url": first.url("/status"), "name": "t", "interval_seconds": 10 })).await;
    eventually(Duration::from_secs(10), "the first check", || async { (first.hits() >= 1).then_some(()) }).await;
    let (status, _) =
        stack.call(Method::PATCH, &format!("/websites/{id}"), Some(json!({ "url": second.url("/status") }))).await;
    assert_eq!(status, StatusCode::OK);
    eventually(Duration::from_secs(15), "a check of the new url", || async { (second.hits() >= 1).then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_dropped_and_replayed_from_checks_gives_the_same_points() {
    let stack = start(&[]).await;
    let target = Target::start().await;
    stack.start_worker("local");
    let id = stack.add_website(json!({ "url": target.url("/status"), "name": "t", "interval_seconds": 10 })).await;
    let before = eventually(Duration::from_secs(20), "two points", || async {
        let (_, points) = stack.call(Method::GET, &format!("/monitor/{id}"), None).await;
        (points.as_array().map_or(0, Vec::len) >= 2).then_some(points)
    })
    .await;
    // Stop checking so the series stays put, then rebuild InfluxDB.
    let (status, _) = stack.call(Method::DELETE, &format!("/websites/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let influx = stack.deps.influx.clone();
    let (_, all_before) = stack.call(Method::GET, "/monitor", None).await;
    assert!(all_before.as_array().is_some_and(|a| a.is_empty()));
    projector::replay_influx(&stack.bus, &influx).await.expect("replay");

    let id: Uuid = id.parse().expect("uuid");
    let after = eventually(Duration::from_secs(20), "the points back", || async {
        let points = influx.series(id, None, 1).await.expect("series");
        (points.len() >= before.as_array().map_or(0, Vec::len)).then_some(points)
    })
    .await;
    let after = serde_json::to_value(&after).expect("json");
    for point in before.as_array().expect("array") {
        assert!(after.as_array().expect("array").contains(point), "{point} missing after replay: {after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_influxdb_keeps_on_disk_are_counted_by_database() {
    let (url, database) = common::influx_settings();
    let (ours, other) = (Influx::new(&url, &database, None), Influx::new(&url, &format!("{database}_other"), None));
    for influx in [&ours, &other] {
        influx.ensure_database().await.expect("database");
    }
    assert_eq!(ours.disk_bytes().await.expect("stats"), 0, "no shard before a point");
    let lines: String = (0..2_000)
        .map(|i| format!("checks,region=r{},website_id=w{} up=1i,response_ms={i}i {}\n", i % 3, i % 100, i + 1))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{url}/write"))
        .query(&[("db", database.as_str()), ("precision", "s")])
        .body(lines)
        .send()
        .await
        .expect("write");
    assert!(response.status().is_success(), "{:?}", response.text().await);
    let written = ours.disk_bytes().await.expect("stats");
    assert!(written > 1_000, "2,000 points in {written} bytes");
    assert_eq!(other.disk_bytes().await.expect("stats"), 0, "another database's shards are not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_names_its_own_process() {
    let (url, database) = common::influx_settings();
    let pid = Influx::new(&url, &database, None).server_pid().await.expect("diagnostics").expect("a pid");
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("a running process");
    assert_eq!(name.trim(), "influxd");
}

/// Writes `lines` of line protocol into the stack's InfluxDB database, in
/// retention policy `rp`.
async fn write_influx(stack: &Stack, rp: &str, lines: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/write", stack.config.influxdb.url))
        .query(&[("db", stack.config.influxdb.bucket.as_str()), ("rp", rp), ("precision", "ms")])
        .body(lines.to_owned())
        .send()
        .await
        .expect("write");
    assert!(response.status().is_success(), "{:?}", response.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_is_read_from_the_rollup_as_far_as_it_reaches_and_from_the_raw_points_after() {
    let stack = start(&[]).await;
    let id = stack.add_website(json!({ "url": "https://example.com", "name": "rolled", "interval_seconds": 60 })).await;
    let website: Uuid = id.parse().expect("uuid");
    stack.deps.influx.ensure_database().await.expect("database");
    // Three days ago, only in the minute rollup (as if the raw points had
    // expired); an hour ago, only raw.
    let old = chrono::Utc::now() - chrono::Duration::days(3);
    let rollup = format!(
        "checks_1m,website_id={id},region=local response_ms=250.0,up=0i,status_code=503i,checks=1i {}",
        old.timestamp_millis()
    );
    write_influx(&stack, projections::influx::ROLLUPS, &rollup).await;
    stack.check(website, "local", chrono::Utc::now() - chrono::Duration::hours(1), true).await;
    stack.influx_settled().await;

    let (status, points) = stack.call(Method::GET, &format!("/monitor/{id}?days=7"), None).await;
    assert_eq!(status, StatusCode::OK, "{points}");
    let points = points.as_array().expect("array");
    assert_eq!(points.len(), 2, "{points:?}");
    assert_eq!((points[0]["response_ms"].as_f64(), points[0]["up"].as_bool()), (Some(250.0), Some(false)));
    assert_eq!((points[1]["response_ms"].as_f64(), points[1]["up"].as_bool()), (Some(12.0), Some(true)));
    let (_, day) = stack.call(Method::GET, &format!("/monitor/{id}?days=1"), None).await;
    assert_eq!(day.as_array().map(Vec::len), Some(1), "a day is every raw check: {day}");
}

/// Runs an InfluxQL statement on the stack's InfluxDB server and returns
/// its answer (times in seconds).
async fn influxql(stack: &Stack, statement: &str) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(format!("{}/query", stack.config.influxdb.url))
        .query(&[("db", stack.config.influxdb.bucket.as_str()), ("epoch", "s")])
        .form(&[("q", statement)])
        .send()
        .await
        .expect("statement");
    let answer: serde_json::Value = answer.json().await.expect("json");
    assert!(answer["results"][0]["error"].is_null(), "{statement}: {answer}");
    answer
}

/// The points of `website` in the rollup `measurement`: time, checks, up
/// and response time.
async fn rollup_points(stack: &Stack, measurement: &str, website: &str) -> Vec<serde_json::Value> {
    let db = &stack.config.influxdb.bucket;
    let answer = influxql(
        stack,
        &format!("SELECT checks, up, response_ms FROM {db}.rollups.{measurement} WHERE website_id = '{website}'"),
    )
    .await;
    answer["results"][0]["series"][0]["values"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_are_made_a_slice_of_the_websites_at_a_time_in_place_of_continuous_queries() {
    let stack = start(&[]).await;
    let influx = stack.deps.influx.clone();
    let db = stack.config.influxdb.bucket.clone();
    influx.ensure_database().await.expect("database");
    // A continuous query an earlier version made is dropped at start.
    influxql(
        &stack,
        &format!(
            "CREATE CONTINUOUS QUERY checks_1m ON {db} BEGIN SELECT count(up) AS checks INTO {db}.rollups.checks_1m \
             FROM checks GROUP BY time(1m), * END"
        ),
    )
    .await;
    assert_eq!(influx.continuous_queries().await.expect("queries"), ["checks_1m"]);
    influx.ensure_database().await.expect("a second start");
    assert!(influx.continuous_queries().await.expect("queries").is_empty());

    // Two checks in one minute and one in the next, half an hour into the
    // hour before this one.
    let id = stack.add_website(json!({ "url": "https://example.com", "name": "rolled", "interval_seconds": 60 })).await;
    let website: Uuid = id.parse().expect("uuid");
    let hour = chrono::Utc::now().timestamp() / 3600 * 3600;
    let first = hour - 1800;
    let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).expect("time");
    stack.check(website, "local", at(first), true).await;
    stack.check(website, "local", at(first + 20), false).await;
    stack.check(website, "local", at(first + 60), true).await;
    stack.influx_settled().await;

    let slice = projections::influx::rollup_slice(website);
    let [minutes, hours] = projections::influx::ROLLUP_LEVELS;
    // Other slices' runs leave this website alone.
    for other in [(slice + 1) % 64, (slice + 16) % 64] {
        influx.roll_up(minutes, other, at(first + 300)).await.expect("another slice");
    }
    assert!(rollup_points(&stack, "checks_1m", &id).await.is_empty());
    // Its own slice, a few minutes after: a point per minute.
    influx.roll_up(minutes, slice, at(first + 300)).await.expect("minute rollup");
    assert_eq!(
        rollup_points(&stack, "checks_1m", &id).await,
        [json!([first, 2, 0, 12]), json!([first + 60, 1, 1, 12])]
    );
    // Run again (a restart, a second projector): the same points.
    influx.roll_up(minutes, slice, at(first + 360)).await.expect("minute rollup again");
    assert_eq!(rollup_points(&stack, "checks_1m", &id).await.len(), 2);
    // The hour, from the minute points, once it has ended.
    influx.roll_up(hours, slice, at(hour - 60)).await.expect("hour rollup, the hour still open");
    assert!(rollup_points(&stack, "checks_1h", &id).await.is_empty());
    influx.roll_up(hours, slice, at(hour + 60)).await.expect("hour rollup");
    assert_eq!(rollup_points(&stack, "checks_1h", &id).await, [json!([hour - 3600, 3, 0, 12])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_run_that_failed_is_made_up_later_over_the_buckets_it_was_due_for() {
    let stack = start(&[]).await;
    let influx = stack.deps.influx.clone();
    influx.ensure_database().await.expect("database");
    let id = stack.add_website(json!({ "url": "https://example.com", "name": "owed", "interval_seconds": 60 })).await;
    let website: Uuid = id.parse().expect("uuid");
    let first = (chrono::Utc::now().timestamp() / 60 - 40) * 60;
    let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).expect("time");
    stack.check(website, "local", at(first), true).await;
    stack.check(website, "local", at(first + 20), false).await;
    stack.influx_settled().await;

    // The first turn after the checks' minute in which the website's slice
    // of the minute rollup is due.
    let slice = projections::influx::rollup_slice(website);
    let [minutes, _] = projections::influx::ROLLUP_LEVELS;
    let turn = projections::influx::ROLLUP_TURN_SECS;
    let due = (first / turn + 60 / turn..).find(|t| minutes.due(*t) == Some(slice)).expect("due within a period");
    // InfluxDB does not answer then: the run is owed.
    let away = projections::influx::Influx::new("http://127.0.0.1:1", &stack.config.influxdb.bucket, None);
    let mut runs = projector::RollupRuns::default();
    assert!(runs.turn(&away, at(due * turn + 5)).await.is_empty(), "none made");
    assert!(runs.owed() >= 1, "owed {}", runs.owed());
    assert!(rollup_points(&stack, "checks_1m", &id).await.is_empty());
    // Twenty minutes on it does, before the slice's next run (an hour
    // after): the run is made over the buckets it was due for.
    // (An owed run is made up each turn besides the ones due.)
    let mut made = Vec::new();
    for later in 0..3 {
        made.extend(runs.turn(&influx, at(due * turn + 20 * 60 + 5 + later * turn)).await);
    }
    assert_eq!(runs.owed(), 0);
    // Made as of the time it was due (what a projector taking over reads).
    assert!(made.contains(&(minutes, slice, at(due * turn + 5))), "{made:?}");
    assert_eq!(rollup_points(&stack, "checks_1m", &id).await, [json!([first, 2, 0, 12])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_older_than_the_raw_retention_are_dropped_without_stopping_the_projection() {
    let stack = start(&[("INFLUXDB_RETENTION_DAYS", "2")]).await;
    let id = stack.add_website(json!({ "url": "https://example.com", "name": "old", "interval_seconds": 60 })).await;
    let website: Uuid = id.parse().expect("uuid");
    stack.deps.influx.ensure_database().await.expect("database");
    stack.check(website, "local", chrono::Utc::now() - chrono::Duration::days(5), false).await;
    stack.check(website, "local", chrono::Utc::now() - chrono::Duration::minutes(5), true).await;
    stack.influx_settled().await;
    let (_, day) = stack.call(Method::GET, &format!("/monitor/{id}?days=1"), None).await;
    assert_eq!(day.as_array().map(Vec::len), Some(1), "{day}");
}
