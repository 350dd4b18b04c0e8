//! Faults of the servers and services around one NATS server, under load,
//! against real servers. Each test stops by itself and prints one line
//! "load held / faults / lost / duplicated" with the figure that matters.
//! The faults of the NATS cluster itself are in `cluster.rs`; an SMTP
//! outage and a region cut off under each down policy in `downtime.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::proxy::Proxy;
use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use common::target::Target;
use common::{free_port, Db, Nats};
use poem::http::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The interval of every website of these tests (the shortest allowed).
const INTERVAL: Duration = Duration::from_secs(10);

/// Slots lost and slots checked twice over every website's checks from
/// `region`: after its first check (a new website's quick one) each
/// website is checked once per interval on its own grid, so a gap of two
/// intervals is a slot lost and a gap under one interval a slot doubled.
fn slot_faults(slots: &HashMap<(Uuid, String), Vec<DateTime<Utc>>>, region: &str) -> (usize, usize, usize) {
    let interval = chrono::Duration::from_std(INTERVAL).expect("interval");
    let (mut checked, mut lost, mut doubled) = (0, 0, 0);
    for ((_, r), times) in slots {
        if r != region {
            continue;
        }
        checked += times.len();
        for pair in times.windows(2).skip(1) {
            let gap = pair[1] - pair[0];
            if gap < interval {
                doubled += 1;
            } else {
                let missed = (gap.num_milliseconds() + 500) / interval.num_milliseconds() - 1;
                lost += usize::try_from(missed).unwrap_or(0);
            }
        }
    }
    (checked, lost, doubled)
}

/// The largest gap between two checks of one website from `region` that
/// straddles `at` (the longest a website went unchecked around a fault).
fn longest_gap_around(slots: &HashMap<(Uuid, String), Vec<DateTime<Utc>>>, at: DateTime<Utc>) -> Duration {
    slots
        .values()
        .flat_map(|times| times.windows(2).filter(|p| p[0] <= at && p[1] > at).map(|p| p[1] - p[0]))
        .max()
        .and_then(|gap| gap.to_std().ok())
        .unwrap_or_default()
}

/// A service binary started as its own process on the stack's servers,
/// killed (SIGKILL) on drop.
struct Service {
    child: tokio::process::Child,
    name: String,
    log: std::path::PathBuf,
}

impl Service {
    fn start(stack: &Stack, bin: &str, name: &str, dir: &std::path::Path, extra: &[(&str, String)]) -> Service {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let influx = std::env::var("TEST_INFLUXDB_URL").expect("TEST_INFLUXDB_URL");
        let child = tokio::process::Command::new(bin)
            .current_dir(dir)
            .env_clear()
            .envs([
                ("NATS_URL", stack.nats.url.clone()),
                ("DATABASE_URL", stack.db.url.clone()),
                ("REDIS_URL", stack.redis.url.clone()),
                ("INFLUXDB_URL", influx),
                ("INFLUXDB_BUCKET", stack.config.influxdb.bucket.clone()),
                ("SMTP_HOST", "127.0.0.1".into()),
                ("SMTP_PORT", stack.smtp.port.to_string()),
                ("ADMIN_TOKEN", stack.admin_token.clone()),
                ("ALLOW_PRIVATE_TARGETS", "true".into()),
                ("WORKER_RECLAIM_IDLE_MS", "1000".into()),
                ("RUST_LOG", "info,sqlx=warn".into()),
            ])
            .envs(extra.iter().map(|(k, v)| (*k, v.clone())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Service { child, name: name.to_owned(), log }
    }

    /// kill -9.
    async fn kill(&mut self) {
        self.child.kill().await.expect("kill");
    }

    /// The end of its log, for a failure's message.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- {} ---\n{}", self.name, lines[lines.len().saturating_sub(15)..].join("\n"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_of_every_service_killed_under_load_loses_and_doubles_nothing() {
    let stack = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Two of every service as processes (the stack's own projector is the
    // second projector; its API client only reads).
    let api_ports = [free_port(), free_port()];
    let mut services = Vec::new();
    for (n, port) in api_ports.iter().enumerate() {
        services.push(Service::start(
            &stack,
            env!("CARGO_BIN_EXE_api"),
            &format!("api-{n}"),
            dir.path(),
            &[("API_PORT", port.to_string())],
        ));
    }
    for n in 0..2 {
        for (bin, name) in [
            (env!("CARGO_BIN_EXE_cron"), "cron"),
            (env!("CARGO_BIN_EXE_worker"), "worker"),
            (env!("CARGO_BIN_EXE_detector"), "detector"),
            (env!("CARGO_BIN_EXE_notification"), "notification"),
        ] {
            services.push(Service::start(
                &stack,
                bin,
                &format!("{name}-{n}"),
                dir.path(),
                &[("REGION", "local".into())],
            ));
        }
    }
    services.push(Service::start(&stack, env!("CARGO_BIN_EXE_projector"), "projector", dir.path(), &[]));
    let logs = |services: &[Service]| services.iter().map(Service::tail).collect::<Vec<_>>().join("\n");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    for port in api_ports {
        let health = format!("http://127.0.0.1:{port}/health");
        let started = Instant::now();
        while !http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(started.elapsed() < Duration::from_secs(30), "API {port} not up:\n{}", logs(&services));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Load: websites checked every interval, one of them down until the
    // fault, written to through both APIs all along.
    let (healthy, flaky) = (Target::start().await, Target::start().await);
    flaky.status.store(503, Ordering::SeqCst);
    let post = |n: usize, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("http://127.0.0.1:{}/websites", api_ports[n % 2]);
        let token = stack.admin_token.clone();
        async move {
            let response = http.post(url).bearer_auth(token).json(&body).send().await.ok()?;
            if response.status() != reqwest::StatusCode::CREATED {
                return None;
            }
            let created: serde_json::Value = response.json().await.ok()?;
            created["id"].as_str().map(str::to_owned)
        }
    };
    let flaky_id = post(
        0,
        json!({ "url": flaky.url("/status"), "name": "flaky", "interval_seconds": 10, "notify_emails": ["ops@example.com"] }),
    )
    .await
    .expect("flaky website");
    let (mut created, mut refused) = (Vec::new(), 0);
    for n in 0..20 {
        match post(n, json!({ "url": healthy.url("/status"), "name": format!("w{n}"), "interval_seconds": 10 })).await {
            Some(id) => created.push(id),
            None => refused += 1,
        }
    }
    eventually(Duration::from_secs(40), "the down email", || async { (stack.emails("DOWN").len() == 1).then_some(()) })
        .await;

    // The website recovers and, at once, one of every service dies.
    flaky.status.store(200, Ordering::SeqCst);
    let killed_at = Utc::now();
    let killed = Instant::now();
    for name in ["api-1", "cron-1", "worker-1", "detector-1", "notification-1", "projector"] {
        let service = services.iter_mut().find(|s| s.name == name).expect("service");
        service.kill().await;
    }
    // Writes go on through the surviving API while the rest takes over.
    let mut n = 20;
    let up_email = loop {
        if stack.emails("UP").len() == 1 {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(40), "no recovery email:\n{}", logs(&services));
        n += 1;
        let body = json!({ "url": healthy.url("/status"), "name": format!("w{n}"), "interval_seconds": 10 });
        match post(0, body).await {
            Some(id) => created.push(id),
            None => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Two more intervals with the survivors alone.
    let observed = killed + 2 * INTERVAL + Duration::from_secs(2);
    tokio::time::sleep(observed.saturating_duration_since(Instant::now())).await;

    let slots = stack.check_slots().await;
    let (checked, lost, doubled) = slot_faults(&slots, "local");
    let (writes_lost, writes_doubled) = stack.writes_lost_and_doubled(&created).await;
    let flaky_uuid: Uuid = flaky_id.parse().expect("uuid");
    let recovered = slots
        .get(&(flaky_uuid, "local".to_owned()))
        .and_then(|times| times.iter().find(|t| **t > killed_at).copied())
        .expect("a check of the flaky website after the kill");
    let takeover = up_email.saturating_sub((recovered - killed_at).to_std().unwrap_or_default());
    let (downs, ups) = (stack.emails("DOWN").len(), stack.emails("UP").len());
    println!(
        "kill -9 of one of two api, cron, worker, detector, notifier and projector: load held ({} websites, \
         {checked} checks, {} writes, {refused} refused) / faults 6 / lost {} / duplicated {}; \
         recovery email {:.1} s after the kill, {:.1} s after the check that saw the recovery (detector and \
         notifier taking over), emails {downs} down {ups} up",
        created.len() + 1,
        created.len(),
        lost + writes_lost,
        doubled + writes_doubled + (downs - 1) + (ups - 1),
        up_email.as_secs_f64(),
        takeover.as_secs_f64(),
    );
    assert_eq!((lost, doubled), (0, 0), "check slots lost, doubled");
    assert_eq!((writes_lost, writes_doubled), (0, 0), "writes lost, doubled");
    assert_eq!((downs, ups), (1, 1), "one email down and one up");
    // The recovering check comes within an interval; the surviving detector
    // and notifier turn it into the email within 10 s more.
    assert!(takeover <= Duration::from_secs(10), "the recovery email {takeover:?} after its check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_is_rebuilt_within_an_interval_and_no_check_is_lost_for_longer() {
    let mut stack = Stack::start(&[]).await;
    let target = Target::start().await;
    stack.start_pipeline();
    let mut ids = Vec::new();
    for n in 0..10 {
        let body = json!({ "url": target.url("/status"), "name": format!("w{n}"), "interval_seconds": 10 });
        ids.push(stack.add_website(body).await.parse::<Uuid>().expect("uuid"));
    }
    // Every website on its slot (its quick first check, then one more).
    eventually(Duration::from_secs(30), "two checks of every website", || async {
        let slots = stack.check_slots().await;
        ids.iter().all(|id| slots.get(&(*id, "local".to_owned())).is_some_and(|t| t.len() >= 2)).then_some(())
    })
    .await;

    let restarted_at = Utc::now();
    let restarted = Instant::now();
    stack.redis.restart_empty().await;
    let rebuilt = eventually(Duration::from_secs(30), "the schedule to be rebuilt", || async {
        for id in &ids {
            if !stack.store.is_scheduled(*id, "local").await.unwrap_or(false) {
                return None;
            }
        }
        stack.store.offset().await.ok().flatten().filter(|o| *o > 0).map(|_| restarted.elapsed())
    })
    .await;
    // Every website checked again after the restart, then one interval more.
    eventually(Duration::from_secs(30), "a check of every website after the restart", || async {
        let slots = stack.check_slots().await;
        ids.iter()
            .all(|id| slots.get(&(*id, "local".to_owned())).is_some_and(|t| t.iter().any(|t| *t > restarted_at)))
            .then_some(())
    })
    .await;
    tokio::time::sleep(INTERVAL).await;

    let slots = stack.check_slots().await;
    let (checked, lost, doubled) = slot_faults(&slots, "local");
    let gap = longest_gap_around(&slots, restarted_at);
    println!(
        "redis restarted empty: load held ({} websites, {checked} checks) / faults 1 / lost {lost} slots / \
         duplicated {doubled}; schedule rebuilt {:.1} s after the restart, longest a website went unchecked {:.1} s",
        ids.len(),
        rebuilt.as_secs_f64(),
        gap.as_secs_f64()
    );
    assert!(rebuilt <= INTERVAL, "rebuilt {rebuilt:?} after the restart");
    // The slot each website waited for when the schedule vanished is made up.
    assert_eq!(lost, 0, "slots lost");
    assert!(gap <= 2 * INTERVAL, "a website went {gap:?} unchecked");
    assert_eq!(doubled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_unreachable_the_api_answers_503_and_everything_resumes_consistent_after() {
    let admin = url::Url::parse(&std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL")).expect("URL");
    let server = format!("{}:{}", admin.host_str().unwrap_or("127.0.0.1"), admin.port().unwrap_or(5432));
    let proxy = Proxy::start(&server).await;
    let db = Db::fresh().await;
    let mut through_proxy = url::Url::parse(&db.url).expect("URL");
    through_proxy.set_port(Some(proxy.port)).expect("port");
    let database_url = through_proxy.to_string();
    let stack =
        Stack::start_with_db(Nats::start().await, db, Smtp::stopped(), &[("DATABASE_URL", &database_url)]).await;
    let target = Target::start().await;
    stack.start_pipeline();
    stack.start_detector();
    let mut ids = Vec::new();
    for n in 0..10 {
        let body = json!({ "url": target.url("/status"), "name": format!("w{n}"), "interval_seconds": 10 });
        ids.push(stack.add_website(body).await);
    }
    eventually(Duration::from_secs(20), "every website checked", || async {
        let (_, all) = stack.call(Method::GET, "/monitor", None).await;
        let up = all.as_array().map_or(0, |a| a.iter().filter(|w| w["status"] == "up").count());
        (up == ids.len()).then_some(())
    })
    .await;

    // Postgres goes away for the stack (not for the test's own pool).
    proxy.stop().await;
    let cut = Instant::now();
    let cut_at = Utc::now();
    let (reads, reads_503) = {
        let (status, _) = stack.call(Method::GET, "/monitor", None).await;
        (1, usize::from(status == StatusCode::SERVICE_UNAVAILABLE))
    };
    // Writes are events on NATS: accepted or refused, never half done.
    let (mut created, mut refused) = (Vec::new(), 0);
    while cut.elapsed() < Duration::from_secs(12) {
        let body = json!({ "url": target.url("/status"), "name": "during", "interval_seconds": 10 });
        match stack.call(Method::POST, "/websites", Some(body)).await {
            (StatusCode::CREATED, website) => created.push(website["id"].as_str().expect("id").to_owned()),
            _ => refused += 1,
        }
    }
    let down_for = cut.elapsed();
    let proxy = Proxy::start_at(proxy.port, &server).await;

    // Everything resumes: reads answer, checks from during the cut and after
    // are projected, and the projections match the streams.
    let resumed = eventually(Duration::from_secs(30), "/monitor answering again", || async {
        let (status, _) = stack.call(Method::GET, "/monitor", None).await;
        (status == StatusCode::OK).then(|| cut.elapsed() - down_for)
    })
    .await;
    let everyone = [ids.clone(), created.clone()].concat();
    eventually(Duration::from_secs(40), "every website checked after the cut", || async {
        let (_, all) = stack.call(Method::GET, "/monitor", None).await;
        let all = all.as_array()?.clone();
        everyone
            .iter()
            .all(|id| {
                all.iter().any(|w| {
                    w["id"] == id.as_str()
                        && w["regions"][0]["checked_at"]
                            .as_str()
                            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                            .is_some_and(|t| t > cut_at)
                })
            })
            .then_some(())
    })
    .await;
    stack.settle().await;
    stack.detector_settled().await;
    let (lost, duplicated) = stack.writes_lost_and_doubled(&created).await;
    let listed: i64 =
        sqlx::query_scalar("select count(*) from websites").fetch_one(&stack.db.pool).await.expect("count");
    let listed = usize::try_from(listed).expect("count");
    println!(
        "postgres unreachable {:.1} s: load held ({} websites checked, {} written during the cut, {refused} refused) \
         / faults 1 / lost {lost} / duplicated {duplicated}; reads 503 while down ({reads_503} of {reads}), \
         answering {:.1} s after it returned",
        down_for.as_secs_f64(),
        ids.len(),
        created.len(),
        resumed.as_secs_f64()
    );
    assert_eq!(reads_503, reads, "reads answer 503 while Postgres is down");
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(listed, everyone.len(), "every accepted website projected once");
    assert!(resumed <= Duration::from_secs(10), "reads answered {resumed:?} after Postgres returned");
    drop(proxy);
}
