//! The projector as a real process against real NATS and PostgreSQL: killed
//! with SIGKILL mid-stream and restarted, it neither loses nor doubles an
//! event; events of unknown types are skipped, not fatal, by every reader
//! the runner drives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::stack::eventually;
use common::{config, last_sequence, snapshot, Db, Nats};
use events::{
    CheckCompleted, Envelope, Event, FailureCause, IntervalSecs, RegionAdded, RegionName, TimeoutMs, WebsiteAdded,
    WebsiteName, WebsiteRemoved, WebsiteUpdated, WebsiteUrl,
};
use projections::postgres::{self, PROJECTION};
use services::bus::Bus;
use services::projector;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn spawn_projector(nats: &Nats, db: &Db) -> Child {
    Command::new(env!("CARGO_BIN_EXE_projector"))
        .env("NATS_URL", &nats.url)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn projector")
}

async fn wait_offset(db: &Db, at_least: u64, timeout: Duration) -> bool {
    projections::cursor::wait_for(&db.pool, PROJECTION, at_least, timeout).await.expect("offset")
}

/// A WebsiteAdded of `id` named `name`, checked from `local`.
fn website_added(id: Uuid, name: &str) -> Event {
    Event::WebsiteAdded(WebsiteAdded {
        website_id: id,
        url: WebsiteUrl::parse(&format!("https://{}.example.com", id.simple())).expect("url"),
        name: WebsiteName::parse(name).expect("name"),
        regions: vec![RegionName::parse("local").expect("region")],
        interval_seconds: IntervalSecs::default(),
        timeout_ms: TimeoutMs::default(),
        notify_emails: vec![],
        failures_before_down: None,
        down_policy: None,
        channel_ids: vec![],
        check: None,
    })
}

/// Publishes `count` websites, renames each, removes every tenth; returns
/// the ids that should remain with their final names.
async fn publish_history(bus: Bus, count: usize) -> Vec<(Uuid, String)> {
    let mut remaining = Vec::new();
    for n in 0..count {
        let id = Uuid::now_v7();
        let added = Envelope::new(website_added(id, &format!("site {n}")), Utc::now());
        let seq = bus.publish(&added, Some(0)).await.expect("publish added");
        let final_name = format!("renamed {n}");
        let renamed = Envelope::new(
            Event::WebsiteUpdated(WebsiteUpdated {
                website_id: id,
                name: Some(WebsiteName::parse(&final_name).expect("name")),
                ..Default::default()
            }),
            Utc::now(),
        );
        let seq = bus.publish(&renamed, Some(seq)).await.expect("publish renamed");
        if n % 10 == 0 {
            let removed = Envelope::new(Event::WebsiteRemoved(WebsiteRemoved { website_id: id }), Utc::now());
            bus.publish(&removed, Some(seq)).await.expect("publish removed");
        } else {
            remaining.push((id, final_name));
        }
    }
    remaining
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_stream_loses_and_doubles_nothing() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let bus = services::runtime::connect_bus(&config(&nats, &db, &[])).await.expect("bus");
    let region = Envelope::new(
        Event::RegionAdded(RegionAdded { region: RegionName::parse("local").expect("region") }),
        Utc::now(),
    );
    bus.publish(&region, Some(0)).await.expect("region");

    let mut projector = spawn_projector(&nats, &db);
    let publisher = tokio::spawn(publish_history(bus.clone(), 1000));

    // Kill it twice while events are still arriving, restarting each time.
    for threshold in [300, 1200] {
        assert!(wait_offset(&db, threshold, Duration::from_secs(30)).await, "projector stalled before {threshold}");
        projector.kill().expect("kill");
        projector.wait().expect("reap");
        projector = spawn_projector(&nats, &db);
    }
    let remaining = publisher.await.expect("publisher");
    let last = last_sequence(&bus).await;
    assert!(wait_offset(&db, last, Duration::from_secs(60)).await, "projector did not catch up to {last}");
    projector.kill().expect("kill");
    projector.wait().expect("reap");

    // Exactly the websites that should remain, each with its final name and
    // the sequence of its own last event.
    let rows: Vec<(Uuid, String, i64)> = sqlx::query_as("select id, name, stream_seq from websites order by id")
        .fetch_all(&db.pool)
        .await
        .expect("rows");
    let mut expected = remaining.clone();
    expected.sort();
    let got: Vec<(Uuid, String)> = rows.iter().map(|(id, name, _)| (*id, name.clone())).collect();
    assert_eq!(got, expected);
    for (id, _, seq) in &rows {
        let subject_last = bus.last_subject_seq(&events::subject::website(*id)).await.expect("last");
        assert_eq!(*seq as u64, subject_last, "website {id} is at its last event");
    }
    let links: i64 =
        sqlx::query_scalar("select count(*) from website_regions").fetch_one(&db.pool).await.expect("count");
    assert_eq!(links as usize, remaining.len());

    // And the same rows as a projection that was never interrupted.
    let clean = Db::fresh().await;
    projector::replay(&bus, &clean.pool, projector::Projection::Monitor, &CancellationToken::new())
        .await
        .expect("replay");
    assert_eq!(snapshot(&clean.pool).await, snapshot(&db.pool).await);
}

#[tokio::test]
async fn an_event_type_from_a_newer_build_is_skipped_and_the_rest_applied() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let bus = services::runtime::connect_bus(&config(&nats, &db, &[])).await.expect("bus");
    let future = serde_json::json!({
        "id": Uuid::now_v7(), "type": "WebsiteArchived", "version": 1,
        "occurred_at": Utc::now(), "aggregate_id": "x", "data": {}
    });
    bus.js
        .publish("monitor.website.future", serde_json::to_vec(&future).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let region = Envelope::new(
        Event::RegionAdded(RegionAdded { region: RegionName::parse("europe").expect("region") }),
        Utc::now(),
    );
    bus.publish(&region, Some(0)).await.expect("region");

    let cancel = CancellationToken::new();
    tokio::spawn(projector::run(bus.clone(), db.pool.clone(), projector::Projection::Monitor, 5000, cancel.clone()));

    assert!(wait_offset(&db, 2, Duration::from_secs(10)).await);
    let regions = postgres::regions(&db.pool).await.expect("regions");
    assert_eq!(regions.len(), 1);
    assert_eq!(projections::cursor::offset(&db.pool, PROJECTION).await.expect("offset"), 2);
    cancel.cancel();
}

#[tokio::test]
async fn the_detector_skips_an_unknown_check_type_like_every_other_reader() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let bus = services::runtime::connect_bus(&config(&nats, &db, &[])).await.expect("bus");
    let website = Uuid::now_v7();
    let future = serde_json::json!({
        "id": Uuid::now_v7(), "type": "CheckSampled", "version": 1,
        "occurred_at": Utc::now(), "aggregate_id": website, "data": {}
    });
    bus.js
        .publish(format!("checks.local.{website}"), serde_json::to_vec(&future).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let region = RegionName::parse("local").expect("region");
    let scheduled_at = Utc::now();
    let check = CheckCompleted {
        website_id: website,
        region: region.clone(),
        scheduled_at,
        started_at: scheduled_at,
        up: false,
        status_code: Some(503),
        response_ms: Some(5),
        cause: Some(FailureCause::HttpStatus),
        message: None,
        cert_not_after: None,
    };
    let id = CheckCompleted::event_id(website, &region, scheduled_at);
    bus.publish(&Envelope::with_id(id, Event::CheckCompleted(check), Utc::now()), None).await.expect("check");

    let cancel = CancellationToken::new();
    let detector = services::detector::Detector::new(bus.clone(), Default::default());
    tokio::spawn(services::runner::run(bus.clone(), db.pool.clone(), detector, 100, cancel.clone()));

    let reached = projections::cursor::wait_for(&db.pool, services::detector::POSITION, 2, Duration::from_secs(10))
        .await
        .expect("offset");
    assert!(reached, "the detector stopped at the unknown type");
    let failures: serde_json::Value =
        sqlx::query_scalar("select state->'failures' from detector_state where website_id = $1")
            .bind(website)
            .fetch_one(&db.pool)
            .await
            .expect("state");
    assert_eq!(failures, 1);
    cancel.cancel();
}

#[tokio::test]
async fn a_retried_publish_of_the_same_event_is_stored_once() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let bus = services::runtime::connect_bus(&config(&nats, &db, &[])).await.expect("bus");
    let region = Envelope::new(
        Event::RegionAdded(RegionAdded { region: RegionName::parse("europe").expect("region") }),
        Utc::now(),
    );
    let first = bus.publish(&region, None).await.expect("first");
    let second = bus.publish(&region, None).await.expect("second");
    assert_eq!(first, second);
    assert_eq!(last_sequence(&bus).await, 1);
}

#[tokio::test]
async fn the_streams_survive_a_nats_restart_and_are_reapplied_idempotently() {
    let mut nats = Nats::start().await;
    let db = Db::fresh().await;
    let config = config(&nats, &db, &[]);
    let bus = services::runtime::connect_bus(&config).await.expect("bus");
    let region = Envelope::new(
        Event::RegionAdded(RegionAdded { region: RegionName::parse("europe").expect("region") }),
        Utc::now(),
    );
    bus.publish(&region, Some(0)).await.expect("publish");

    nats.restart().await;
    let bus = services::runtime::connect_bus(&config).await.expect("bus after restart");
    bus.ensure_streams(config.checks_max_age).await.expect("re-apply definitions");
    assert_eq!(last_sequence(&bus).await, 1, "the acknowledged event is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earlier_influxdb_consumer_is_replaced_from_where_it_stood() {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    use futures::StreamExt;
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let config = config(&nats, &db, &[]);
    let bus = services::runtime::connect_bus(&config).await.expect("bus");
    let website = Uuid::now_v7();
    let start = Utc::now() - chrono::Duration::minutes(10);
    for minute in 0..3 {
        let scheduled_at = start + chrono::Duration::minutes(minute);
        let check = CheckCompleted {
            website_id: website,
            region: RegionName::parse("local").expect("region"),
            scheduled_at,
            started_at: scheduled_at,
            up: true,
            status_code: Some(200),
            response_ms: Some(10),
            cause: None,
            message: None,
            cert_not_after: None,
        };
        let id = CheckCompleted::event_id(website, &check.region, scheduled_at);
        bus.publish(&Envelope::with_id(id, Event::CheckCompleted(check), Utc::now()), None).await.expect("check");
    }
    // The consumer of an earlier version acknowledged the first two.
    let checks = bus.js.get_stream("CHECKS").await.expect("CHECKS");
    let earlier = checks
        .create_consumer(pull::Config {
            durable_name: Some("influx-checks".into()),
            ack_policy: AckPolicy::All,
            ..Default::default()
        })
        .await
        .expect("earlier consumer");
    let pulled: Vec<_> = earlier.fetch().max_messages(2).messages().await.expect("fetch").collect().await;
    pulled.last().expect("two messages").as_ref().expect("message").double_ack().await.expect("ack");

    let influx = projections::influx::Influx::new(&config.influxdb.url, &config.influxdb.bucket, None);
    let cancel = CancellationToken::new();
    tokio::spawn(projector::run_influx(bus.clone(), influx.clone(), 100, cancel.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(info) = checks.consumer_info(projector::INFLUX_CONSUMER).await {
            if info.ack_floor.stream_sequence >= 3 {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the new consumer did not reach the third check");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The third only: the first two were written by the earlier version.
    assert_eq!(influx.count_checks(&[website]).await.expect("count"), 1);
    assert!(checks.consumer_info("influx-checks").await.is_err(), "the earlier consumer is deleted");
    cancel.cancel();
}

/// The indexes of the tables MONITOR's projection fills, as the catalogue
/// has them, with their columns' statistics targets.
async fn indexes(pool: &sqlx::PgPool) -> Vec<(String, String, Vec<i32>)> {
    sqlx::query_as(
        "select c.relname::text, pg_get_indexdef(i.indexrelid),
                array(select a.attstattarget::int from pg_attribute a where a.attrelid = i.indexrelid order by a.attnum)
         from pg_index i join pg_class c on c.oid = i.indexrelid
         where i.indrelid in ('websites'::regclass, 'website_regions'::regclass)
         order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("indexes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_builds_its_indexes_again_and_one_cut_short_leaves_them_to_the_next_reader() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let bus = services::runtime::connect_bus(&config(&nats, &db, &[])).await.expect("bus");
    let region = |name: &str| {
        Envelope::new(Event::RegionAdded(RegionAdded { region: RegionName::parse(name).expect("region") }), Utc::now())
    };
    bus.publish(&region("local"), Some(0)).await.expect("region");
    publish_history(bus.clone(), 30).await;
    let built = indexes(&db.pool).await;
    assert!(built.len() >= 8, "{built:?}");
    let deferred = || async {
        let n: i64 =
            sqlx::query_scalar("select count(*) from deferred_indexes").fetch_one(&db.pool).await.expect("count");
        n
    };

    // A whole replay: the same indexes afterwards, statistics targets too;
    // also after a replay of the checks' projection (which sets aside
    // those of websites while it marks each one's status).
    for projection in [projector::Projection::Monitor, projector::Projection::Status] {
        projector::replay(&bus, &db.pool, projection, &CancellationToken::new()).await.expect("replay");
        assert_eq!(indexes(&db.pool).await, built, "{projection:?}");
        assert_eq!(deferred().await, 0);
    }

    // A replay that died after its reset: only the unique indexes are left.
    let mut tx = db.pool.begin().await.expect("begin");
    projections::indexes::set_aside(&mut tx, &["websites", "website_regions"]).await.expect("set aside");
    tx.commit().await.expect("commit");
    let left = indexes(&db.pool).await;
    assert_eq!(left.len(), 2, "the two primary keys: {left:?}");
    assert!(deferred().await >= 5);

    // A reader starting while another replay holds the lock leaves them to it.
    let mut replaying = db.pool.acquire().await.expect("connection").detach();
    sqlx::query("select pg_advisory_lock(hashtext($1))")
        .bind(projections::indexes::REPLAY_LOCK)
        .execute(&mut replaying)
        .await
        .expect("lock");
    let cancel = CancellationToken::new();
    let reader =
        tokio::spawn(projector::run(bus.clone(), db.pool.clone(), projector::Projection::Monitor, 100, cancel.clone()));
    let last = bus.publish(&region("second"), None).await.expect("region");
    assert!(wait_offset(&db, last, Duration::from_secs(30)).await, "reader did not apply the new event");
    assert_eq!(indexes(&db.pool).await, left);
    cancel.cancel();
    reader.await.expect("reader").expect("reader ran");
    // Unlocked first: a closed session's end is not waited for.
    sqlx::query("select pg_advisory_unlock(hashtext($1))")
        .bind(projections::indexes::REPLAY_LOCK)
        .execute(&mut replaying)
        .await
        .expect("unlock");
    sqlx::Connection::close(replaying).await.expect("close");

    // The next reader to start builds them again.
    let cancel = CancellationToken::new();
    let reader =
        tokio::spawn(projector::run(bus.clone(), db.pool.clone(), projector::Projection::Monitor, 100, cancel.clone()));
    eventually(Duration::from_secs(30), "the set-aside indexes to be built", || async {
        (deferred().await == 0).then_some(())
    })
    .await;
    assert_eq!(indexes(&db.pool).await, built);
    assert_eq!(deferred().await, 0);
    cancel.cancel();
    reader.await.expect("reader").expect("reader ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_plan_each_statement_for_the_values_it_runs_with() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let deps = services::Deps::connect(&config(&nats, &db, &[])).await.expect("deps");
    // A generic plan made while a replay had emptied a table would go on
    // planning for an empty table once it is full again.
    let mode: String = sqlx::query_scalar("show plan_cache_mode").fetch_one(&deps.pool).await.expect("show");
    assert_eq!(mode, "force_custom_plan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_projector_of_several_makes_the_rollups_and_another_takes_over_when_it_is_gone() {
    use projector::{lead_rollups, Lead};
    let db = Db::fresh().await;
    let mut first = None;
    assert_eq!(lead_rollups(&db.pool, &mut first).await, Lead::Held);
    assert_eq!(lead_rollups(&db.pool, &mut first).await, Lead::Held, "it keeps them");
    let mut second = None;
    assert_eq!(lead_rollups(&db.pool, &mut second).await, Lead::Elsewhere, "a second one waits");
    assert!(second.is_none());
    // The first one's session ends (its process died, its connection broke).
    drop(first.take());
    eventually(Duration::from_secs(10), "another projector to take the rollups over", || async {
        let mut held = None;
        (lead_rollups(&db.pool, &mut held).await == Lead::Held).then_some(held)
    })
    .await;
    // PostgreSQL away: nobody can say.
    let away = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("pool");
    assert_eq!(lead_rollups(&away, &mut None).await, Lead::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_taking_the_rollups_over_owes_what_fell_due_since_the_last_runs_made() {
    use projector::{record_rollups, RollupRuns};
    let db = Db::fresh().await;
    let [minutes, hours] = projections::influx::ROLLUP_LEVELS;
    let now = chrono::Utc::now();
    let ago = |minutes: i64| now - chrono::Duration::minutes(minutes);
    // Nothing made yet (a new installation): nothing owed.
    assert_eq!(RollupRuns::resume(&db.pool, now).await.expect("resume").owed(), 0);
    // Slice 3 of the minutes made last 130 minutes ago (a note of an
    // earlier run, later, does not move it back), slice 5 of the hours in
    // the last turn it was due in (within the hour).
    let turn_secs = projections::influx::ROLLUP_TURN_SECS;
    let turn = now.timestamp().div_euclid(turn_secs);
    let hour_due = hours.due_turns(5, turn - 3600 / turn_secs, turn).last().expect("due within the hour");
    let hour_made = chrono::DateTime::from_timestamp(hour_due * turn_secs + 5, 0).expect("time");
    record_rollups(&db.pool, &[(minutes, 3, ago(130)), (hours, 5, hour_made)]).await.expect("note");
    record_rollups(&db.pool, &[(minutes, 3, ago(200))]).await.expect("note an earlier one");
    let resumed = RollupRuns::resume(&db.pool, now).await.expect("resume");
    let expected = RollupRuns::owed_after(&[(minutes, 3, ago(130)), (hours, 5, hour_made)], now);
    assert_eq!(resumed.owed(), expected.owed());
    // Two periods of the minutes (64 minutes each) and more: two runs at
    // least; the hours' slice is not due again yet.
    assert!(resumed.owed() >= 2, "{} owed", resumed.owed());
    assert_eq!(RollupRuns::owed_after(&[(hours, 5, hour_made)], now).owed(), 0);
    // Once made up to now, nothing.
    record_rollups(&db.pool, &[(minutes, 3, now)]).await.expect("note");
    assert_eq!(RollupRuns::resume(&db.pool, now).await.expect("resume").owed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_making_the_rollups_notes_each_run_it_makes() {
    let db = Db::fresh().await;
    let (url, database) = common::influx_settings();
    let influx = projections::influx::Influx::new(&url, &database, None);
    influx.ensure_database().await.expect("database");
    let cancel = CancellationToken::new();
    let rollups = tokio::spawn(projector::run_rollups(influx, db.pool.clone(), cancel.clone()));
    // Its first turn comes within 20 s (a turn is 15 s, run 5 s into it),
    // and a slice of the minutes is due every fourth turn.
    let noted: (String, i32, chrono::DateTime<Utc>) =
        eventually(Duration::from_secs(90), "a rollup run noted", || async {
            sqlx::query_as("select measurement, slice, due_at from rollup_runs")
                .fetch_optional(&db.pool)
                .await
                .expect("read")
        })
        .await;
    cancel.cancel();
    rollups.await.expect("rollups").expect("rollups ran");
    let (measurement, slice, due_at) = noted;
    let level = projections::influx::ROLLUP_LEVELS.into_iter().find(|r| r.measurement == measurement).expect("a level");
    let turn = due_at.timestamp().div_euclid(projections::influx::ROLLUP_TURN_SECS);
    assert_eq!(level.due(turn), u32::try_from(slice).ok(), "noted in the turn it was due in");
}

/// Applies `events` to the MONITOR projection in one transaction, as the
/// runner does.
async fn apply_monitor(pool: &sqlx::PgPool, events: Vec<projections::handler::StreamEvent>) {
    use projections::handler::Handler;
    let mut tx = pool.begin().await.expect("begin");
    postgres::MonitorProjection.apply(&mut tx, &events).await.expect("apply");
    tx.commit().await.expect("commit");
}

fn region_added(seq: u64, name: &str) -> projections::handler::StreamEvent {
    let region = RegionName::parse(name).expect("region");
    projections::handler::StreamEvent {
        seq,
        envelope: Envelope::new(Event::RegionAdded(RegionAdded { region }), Utc::now()),
    }
}

#[tokio::test]
async fn a_website_with_every_setting_is_stored_alike_by_a_long_run_and_by_a_short_one() {
    use projections::handler::StreamEvent;
    let db = Db::fresh().await;
    apply_monitor(&db.pool, vec![region_added(1, "local"), region_added(2, "europe")]).await;
    let at = Utc::now();
    let channels = [Uuid::now_v7(), Uuid::now_v7()];
    // Text that needs quoting or escaping in any text form, every list
    // non-empty, every optional setting given, and a region that does not
    // exist (left out).
    let full = |seq: u64, id: Uuid| -> StreamEvent {
        let added: WebsiteAdded = serde_json::from_value(serde_json::json!({
            "website_id": id,
            "url": "https://example.com/a,b?q=%22x%22&t={1}",
            "name": "Every \"setting\", \\ {here}",
            "regions": ["europe", "gone", "local"],
            "interval_seconds": 60,
            "timeout_ms": 2500,
            "notify_emails": ["ops@example.com", "o'neil+\"x\"@example.org"],
            "failures_before_down": 3,
            "down_policy": "all",
            "channel_ids": channels,
            "check": {"method": "HEAD", "keyword": "o\tk", "verify_tls": false, "body": "line\nnext",
                      "expected_status": [{"from": 200, "to": 204}]},
        }))
        .expect("event");
        StreamEvent { seq, envelope: Envelope::new(Event::WebsiteAdded(added), at) }
    };
    let (short, long) = (Uuid::now_v7(), Uuid::now_v7());
    apply_monitor(&db.pool, vec![full(3, short)]).await;
    // A run long enough to be copied in without checking each row.
    let mut run: Vec<StreamEvent> = (10..1_510)
        .map(|seq| StreamEvent { seq, envelope: Envelope::new(website_added(Uuid::now_v7(), "plain"), at) })
        .collect();
    run.push(full(1_510, long));
    apply_monitor(&db.pool, run).await;

    let stored = |id: Uuid| {
        let pool = db.pool.clone();
        async move { postgres::website(&pool, id).await.expect("read").expect("stored").website }
    };
    let (by_insert, by_copy) = (stored(short).await, stored(long).await);
    let Event::WebsiteAdded(given) = full(3, short).envelope.event else { panic!("not a WebsiteAdded") };
    assert_eq!(
        (&by_insert.url, &by_insert.name, &by_insert.notify_emails, by_insert.failures_before_down),
        (&given.url, &given.name, &given.notify_emails, given.failures_before_down)
    );
    assert_eq!((Some(&by_insert.check), by_insert.down_policy), (given.check.as_ref(), events::DownPolicy::All));
    assert_eq!(by_insert.regions.iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["europe", "local"]);
    assert_eq!(by_insert.channel_ids, channels);
    assert_eq!(events::website::Website { id: short, ..by_copy }, by_insert);
    let row = |id: Uuid| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, chrono::DateTime<Utc>, chrono::DateTime<Utc>)>(
                "select status, check_spec::text, status_since, created_at from websites where id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    assert_eq!(row(long).await, row(short).await);
}

#[tokio::test]
async fn a_long_run_of_added_websites_takes_their_known_status_and_keeps_those_already_there() {
    use projections::handler::StreamEvent;
    let db = Db::fresh().await;
    let added = |seq: u64, id: Uuid, name: &str| StreamEvent {
        seq,
        envelope: Envelope::new(website_added(id, name), Utc::now()),
    };
    let apply = |events: Vec<StreamEvent>| apply_monitor(&db.pool, events);
    apply(vec![region_added(1, "local")]).await;
    let (known, twice, stray) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    apply(vec![added(2, known, "added first")]).await;
    // A region row of a website not (yet) there, as an older database may hold.
    sqlx::query("insert into website_regions (website_id, region) values ($1, 'local')")
        .bind(stray)
        .execute(&db.pool)
        .await
        .expect("stray region");

    // Long runs, as a bulk import or a replay applies them: one with nothing
    // there yet, one repeating a website, one with a website twice in it and
    // one meeting the stray region row, each numbered on from `first`.
    let sites =
        |label: &str| -> Vec<(Uuid, String)> { (0..1_500).map(|n| (Uuid::now_v7(), format!("{label} {n}"))).collect() };
    let run = |first: u64, sites: Vec<(Uuid, String)>| -> Vec<StreamEvent> {
        sites.iter().zip(first..).map(|((id, name), seq)| added(seq, *id, name)).collect()
    };
    // What is known of some of them already, as in a replay of this
    // projection alone: their status comes from it, and the result of a
    // website in their range of ids but not among them changes nothing.
    let mut first = sites("site");
    let (outsider, _) = first.remove(750);
    first.push((Uuid::now_v7(), "site 1500".to_owned()));
    let (down, up) = (first[5].0, first[900].0);
    for (id, result) in [(down, false), (up, true), (outsider, false)] {
        sqlx::query(
            "insert into latest_status (website_id, region, up, scheduled_at, checked_at) values ($1, 'local', $2, now(), now())",
        )
        .bind(id)
        .bind(result)
        .execute(&db.pool)
        .await
        .expect("latest status");
    }
    apply(run(10, first)).await;
    let statuses: Vec<(String, i64)> = sqlx::query_as(
        "select status, count(*) from websites where stream_seq between 10 and 1509 group by status order by status",
    )
    .fetch_all(&db.pool)
    .await
    .expect("statuses");
    assert_eq!(statuses, vec![("down".to_owned(), 1), ("pending".to_owned(), 1_498), ("up".to_owned(), 1)]);
    let status = |id: Uuid| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("select status from websites where id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await
                .expect("status")
        }
    };
    assert_eq!((status(down).await, status(up).await), (Some("down".to_owned()), Some("up".to_owned())));
    assert_eq!(status(outsider).await, None, "a result alone adds no website");
    let mut repeating = sites("more");
    repeating.insert(700, (known, "added again".to_owned()));
    apply(run(2_000, repeating)).await;
    let mut doubled = sites("other");
    doubled.insert(3, (twice, "first of two".to_owned()));
    doubled.push((twice, "second of two".to_owned()));
    apply(run(4_000, doubled)).await;
    let mut meeting = sites("last");
    meeting.push((stray, "stray".to_owned()));
    apply(run(6_000, meeting)).await;

    let count: i64 = sqlx::query_scalar("select count(*) from websites").fetch_one(&db.pool).await.expect("count");
    assert_eq!(count, 1 + 4 * 1_500 + 2);
    let name = |id: Uuid| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, i64)>("select name, stream_seq from websites where id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("website")
        }
    };
    assert_eq!(name(known).await, ("added first".to_owned(), 2), "the repeat changed nothing");
    assert_eq!(name(twice).await, ("first of two".to_owned(), 4_003), "the first of a run wins");
    assert_eq!(name(stray).await.0, "stray");
    let regions: Vec<(Uuid, i64)> = sqlx::query_as(
        "select w.id, count(wr.region) from websites w left join website_regions wr on wr.website_id = w.id
         group by w.id having count(wr.region) <> 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("regions");
    assert_eq!(regions, vec![], "every website has its one region, once");
}

#[tokio::test]
async fn incidents_in_one_batch_see_the_maintenance_windows_of_their_place_in_it() {
    use projections::handler::StreamEvent;
    let db = Db::fresh().await;
    let at = Utc::now();
    let later = at + chrono::Duration::minutes(1);
    let window = Uuid::now_v7();
    let websites = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let event = |seq: u64, event: Event| StreamEvent { seq, envelope: Envelope::new(event, at) };
    let down = |seq: u64, website: usize, started_at| {
        event(
            seq,
            Event::SiteDown(events::SiteDown {
                website_id: websites[website],
                region: RegionName::parse("local").expect("region"),
                started_at,
                cause: None,
                status_code: Some(503),
                message: None,
            }),
        )
    };
    let scheduled = |seq: u64, all_websites: bool| {
        let timing =
            events::maintenance::Timing::once(at - chrono::Duration::hours(1), at + chrono::Duration::hours(1));
        event(
            seq,
            Event::MaintenanceScheduled(events::MaintenanceScheduled {
                window_id: window,
                name: "upgrade".into(),
                website_ids: if all_websites { vec![] } else { websites[1..3].to_vec() },
                all_websites,
                timing: timing.expect("timing"),
            }),
        )
    };
    let removed = |seq: u64| event(seq, Event::MaintenanceRemoved(events::MaintenanceRemoved { window_id: window }));
    // One batch: website 0 down before the window exists; 1 and 2 during
    // it (one run of incidents: the windows are read once for both); 1
    // again once it is removed; 3 after it is scheduled again for all.
    apply_monitor(
        &db.pool,
        vec![
            down(1, 0, at),
            scheduled(2, false),
            down(3, 1, at),
            down(4, 2, at),
            removed(5),
            down(6, 1, later),
            scheduled(7, true),
            down(8, 3, at),
        ],
    )
    .await;
    let rows: Vec<(Uuid, chrono::DateTime<Utc>, bool)> =
        sqlx::query_as("select website_id, started_at, in_maintenance from incidents")
            .fetch_all(&db.pool)
            .await
            .expect("incidents");
    let mut flags: Vec<(usize, bool, bool)> = rows
        .into_iter()
        .map(|(id, started_at, flag)| {
            let website = websites.iter().position(|w| *w == id).expect("a website of the test");
            (website, started_at > at, flag)
        })
        .collect();
    flags.sort();
    assert_eq!(flags, vec![(0, false, false), (1, false, true), (1, true, false), (2, false, true), (3, false, true)]);
}

#[tokio::test]
async fn a_run_of_incidents_in_one_batch_leaves_what_one_batch_each_leaves() {
    use projections::handler::StreamEvent;
    let at = Utc::now();
    let seconds = |s: i64| at + chrono::Duration::seconds(s);
    let [a, b, c] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let region = |name: &str| RegionName::parse(name).expect("region");
    let down = |website_id: Uuid, name: &str, started: i64| {
        Event::SiteDown(events::SiteDown {
            website_id,
            region: region(name),
            started_at: seconds(started),
            cause: Some(FailureCause::HttpStatus),
            status_code: Some(503),
            message: Some(format!("down from {started}")),
        })
    };
    let up = |website_id: Uuid, name: &str, started: i64, ended: i64| {
        Event::SiteUp(events::SiteUp {
            website_id,
            region: region(name),
            started_at: seconds(started),
            ended_at: seconds(ended),
            downtime_seconds: ended - started,
        })
    };
    let timing = events::maintenance::Timing::once(seconds(-3600), seconds(3600)).expect("timing");
    let history = vec![
        Event::MaintenanceScheduled(events::MaintenanceScheduled {
            window_id: Uuid::now_v7(),
            name: "upgrade".into(),
            website_ids: vec![b],
            all_websites: false,
            timing,
        }),
        down(a, "europe", 0),
        down(b, "europe", 0),
        down(a, "asia", 1),
        up(a, "europe", 0, 10),
        down(a, "europe", 20),
        // Down before this projection's history began.
        up(c, "europe", -3600, 0),
        up(a, "asia", 1, 30),
        // Published twice.
        down(b, "europe", 0),
        up(b, "europe", 0, 5),
        up(a, "europe", 20, 40),
        down(c, "europe", 50),
        down(a, "asia", 60),
    ];
    let batch = |events: &[Event], first: u64| -> Vec<StreamEvent> {
        (first..).zip(events).map(|(seq, e)| StreamEvent { seq, envelope: Envelope::new(e.clone(), at) }).collect()
    };
    let tables = |pool: sqlx::PgPool| async move {
        let incidents: Option<String> = sqlx::query_scalar(
            "select string_agg(concat_ws('/', website_id, region, started_at, ended_at, duration_seconds, cause,
                    status_code, message, in_maintenance), ',' order by website_id, region, started_at)
             from incidents",
        )
        .fetch_one(&pool)
        .await
        .expect("incidents");
        let public: Vec<(Uuid, chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>)> = sqlx::query_as(
            "select website_id, started_at, ended_at from status_incidents order by website_id, started_at",
        )
        .fetch_all(&pool)
        .await
        .expect("status incidents");
        (incidents.unwrap_or_default(), public)
    };
    let one_each = Db::fresh().await;
    for (seq, event) in (1..).zip(&history) {
        apply_monitor(&one_each.pool, batch(std::slice::from_ref(event), seq)).await;
    }
    let all_at_once = Db::fresh().await;
    apply_monitor(&all_at_once.pool, batch(&history, 1)).await;
    let (incidents, public) = tables(one_each.pool.clone()).await;
    assert_eq!(tables(all_at_once.pool.clone()).await, (incidents.clone(), public.clone()));
    // What they agree on: a's public incident closed at 40 s with both of
    // its regions up, and one open from its second outage in asia; b's
    // under maintenance; c's open.
    let in_maintenance: Vec<&str> = incidents.split(',').filter(|row| row.ends_with("/t")).collect();
    assert_eq!(in_maintenance.len(), 1, "{incidents}");
    assert!(in_maintenance[0].starts_with(&b.to_string()), "{incidents}");
    let micros = |t: chrono::DateTime<Utc>| t.timestamp_micros();
    let mut public: Vec<(usize, i64, Option<i64>)> = public
        .into_iter()
        .map(|(w, s, e)| {
            ([a, b, c].iter().position(|x| *x == w).expect("a website of the test"), micros(s), e.map(micros))
        })
        .collect();
    public.sort();
    assert_eq!(
        public,
        vec![
            (0, micros(seconds(0)), Some(micros(seconds(40)))),
            (0, micros(seconds(60)), None),
            (1, micros(seconds(0)), Some(micros(seconds(5)))),
            (2, micros(seconds(50)), None),
        ]
    );
}

#[tokio::test]
async fn a_result_is_kept_only_if_newer_and_only_a_changed_region_moves_the_status() {
    use projections::handler::{Handler, StreamEvent};
    let db = Db::fresh().await;
    apply_monitor(&db.pool, vec![region_added(1, "local")]).await;
    let (site, gone) = (Uuid::now_v7(), Uuid::now_v7());
    apply_monitor(
        &db.pool,
        vec![StreamEvent { seq: 2, envelope: Envelope::new(website_added(site, "site"), Utc::now()) }],
    )
    .await;
    // Whole seconds, as PostgreSQL keeps them to the microsecond.
    let start = chrono::DateTime::from_timestamp(Utc::now().timestamp() - 3_600, 0).expect("time");
    let at = |secs: i64| start + chrono::Duration::seconds(secs);
    let check = |id: Uuid, secs: i64, up: bool| StreamEvent {
        seq: 0,
        envelope: Envelope::new(
            Event::CheckCompleted(CheckCompleted {
                website_id: id,
                region: RegionName::parse("local").expect("region"),
                scheduled_at: at(secs),
                started_at: at(secs),
                up,
                status_code: up.then_some(200),
                response_ms: up.then_some(12),
                cause: (!up).then_some(FailureCause::Connect),
                message: None,
                cert_not_after: None,
            }),
            at(secs),
        ),
    };
    let apply = |batch: Vec<StreamEvent>| {
        let pool = db.pool.clone();
        async move {
            let mut tx = pool.begin().await.expect("begin");
            projections::status::StatusProjection.apply(&mut tx, &batch).await.expect("apply");
            tx.commit().await.expect("commit");
        }
    };
    let state = || {
        let pool = db.pool.clone();
        async move {
            let row: (String, chrono::DateTime<Utc>, bool, chrono::DateTime<Utc>) = sqlx::query_as(
                "select w.status, w.status_since, l.up, l.scheduled_at
                 from websites w join latest_status l on l.website_id = w.id where w.id = $1",
            )
            .bind(site)
            .fetch_one(&pool)
            .await
            .expect("state");
            let rows: i64 =
                sqlx::query_scalar("select count(*) from latest_status").fetch_one(&pool).await.expect("rows");
            (row, rows)
        }
    };
    let up = |since: i64, latest: i64| (("up".to_owned(), at(since), true, at(latest)), 1);
    let down = |since: i64, latest: i64| (("down".to_owned(), at(since), false, at(latest)), 1);

    // The first result is written (and moves the status from pending);
    // one of a website that is not there is not.
    apply(vec![check(site, 0, true), check(gone, 0, true)]).await;
    assert_eq!(state().await, up(0, 0));
    // An older result changes nothing.
    apply(vec![check(site, -10, false)]).await;
    assert_eq!(state().await, up(0, 0));
    // The newest of a batch counts.
    apply(vec![check(site, 20, false), check(site, 10, true)]).await;
    assert_eq!(state().await, down(20, 20));
    // The same up/down again is written, and the status stays as it was since.
    apply(vec![check(site, 30, false)]).await;
    assert_eq!(state().await, down(20, 30));
    apply(vec![check(site, 40, true), check(gone, 40, false)]).await;
    assert_eq!(state().await, up(40, 40));
}

/// The linger of [`Batching`].
const BATCHING_LINGER: Duration = Duration::from_secs(3);

/// A reader that only notes the size and time of each batch it is handed.
#[derive(Clone, Default)]
struct Batching {
    batches: std::sync::Arc<std::sync::Mutex<Vec<(usize, std::time::Instant)>>>,
}

impl Batching {
    fn seen(&self) -> Vec<(usize, std::time::Instant)> {
        self.batches.lock().expect("batches").clone()
    }

    fn sizes(&self) -> Vec<usize> {
        self.seen().into_iter().map(|(size, _)| size).collect()
    }
}

impl projections::handler::Handler for Batching {
    type Error = projections::Error;
    const NAME: &'static str = "batching";
    const STREAM: &'static str = events::subject::MONITOR_STREAM;
    // Long, so that the test tells a gathered batch from a prompt one on a
    // busy machine.
    const LINGER: Duration = BATCHING_LINGER;

    async fn apply(
        &self,
        _tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        events: &[projections::handler::StreamEvent],
    ) -> Result<(), Self::Error> {
        self.batches.lock().expect("batches").push((events.len(), std::time::Instant::now()));
        Ok(())
    }

    async fn reset(&self, _tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_applies_an_event_after_a_quiet_spell_at_once_and_gathers_what_follows_for_its_linger() {
    let nats = Nats::start().await;
    let db = Db::fresh().await;
    let bus = services::runtime::connect_bus(&config(&nats, &db, &[])).await.expect("bus");
    let publish = |n: usize| {
        let bus = bus.clone();
        async move {
            for _ in 0..n {
                let added = Envelope::new(website_added(Uuid::now_v7(), "site"), Utc::now());
                bus.publish(&added, Some(0)).await.expect("publish");
            }
        }
    };
    let reader = Batching::default();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(services::runner::run(bus.clone(), db.pool.clone(), reader.clone(), 10, cancel.clone()));
    let batches = |n: usize| {
        let reader = reader.clone();
        move || {
            let seen = reader.seen();
            async move { (seen.len() >= n).then_some(seen) }
        }
    };
    publish(1).await;
    eventually(Duration::from_secs(30), "the reader to start", batches(1)).await;

    // After a quiet spell an event is applied without waiting.
    tokio::time::sleep(BATCHING_LINGER + Duration::from_millis(500)).await;
    let published = std::time::Instant::now();
    publish(1).await;
    let seen = eventually(Duration::from_secs(10), "the event after a quiet spell", batches(2)).await;
    let prompt = seen[1].1.duration_since(published);
    assert!(prompt < BATCHING_LINGER / 2, "applied {prompt:?} after it was published");
    // Fifteen published one by one right after it are gathered into a batch
    // or a few (none over the reader's largest), a linger later.
    publish(15).await;
    eventually(Duration::from_secs(30), "every event", || async {
        (reader.sizes().iter().sum::<usize>() == 17).then_some(())
    })
    .await;
    let (seen, sizes) = (reader.seen(), reader.sizes());
    assert!((2..=4).contains(&sizes[2..].len()) && sizes[2..].iter().all(|&size| size <= 10), "{sizes:?}");
    let gathered = seen[2].1.duration_since(seen[1].1);
    assert!(gathered >= BATCHING_LINGER - Duration::from_millis(500), "gathered for {gathered:?}");
    cancel.cancel();
    running.await.expect("runner").expect("runner ran");
}
