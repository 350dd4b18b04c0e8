//! Bounded shutdown: the real `monitor` binary, busy with a website, exits
//! within 10 s of SIGTERM whichever of its servers has just gone away. NATS,
//! Redis and SMTP are servers of the test's own and are killed; the shared
//! PostgreSQL and InfluxDB are reached through a proxy that is stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::proxy::Proxy;
use common::smtp::Smtp;
use common::{free_port, influx_settings, Db, Nats, Redis};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What SIGTERM to exit may take (SHUTDOWN_GRACE is 8 s).
const LIMIT: Duration = Duration::from_secs(10);

/// The admin secret the monitor is started with.
const ADMIN_TOKEN: &str = "wm_shutdown-test-admin-token-0123456789";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    Nats,
    Postgres,
    Redis,
    Influx,
    Smtp,
}

/// Runs the monitor on servers of its own, makes `gone` go away, sends
/// SIGTERM and returns how long the process took to exit.
async fn exit_time_after_losing(gone: Gone) -> Duration {
    let mut nats = Nats::start().await;
    let mut redis = Some(Redis::start().await);
    let mut smtp = Smtp::start().await;
    let db = Db::fresh().await;
    let pg_target = url::Url::parse(&db.url).expect("database URL");
    let postgres =
        Proxy::start(&format!("{}:{}", pg_target.host_str().unwrap_or("127.0.0.1"), pg_target.port().unwrap_or(5432)))
            .await;
    let mut database_url = pg_target.clone();
    database_url.set_host(Some("127.0.0.1")).expect("host");
    database_url.set_port(Some(postgres.port)).expect("port");
    let (influx_url, bucket) = influx_settings();
    let influx_target = url::Url::parse(&influx_url).expect("TEST_INFLUXDB_URL");
    let influx = Proxy::start(&format!(
        "{}:{}",
        influx_target.host_str().unwrap_or("127.0.0.1"),
        influx_target.port_or_known_default().unwrap_or(8086)
    ))
    .await;
    let api_port = free_port();
    let work = tempfile::tempdir().expect("tempdir");
    let log_path = work.path().join("monitor.log");
    let log = std::fs::File::create(&log_path).expect("log file");

    // A clean environment in a directory without a .env: only these settings.
    let mut monitor = tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .current_dir(work.path())
        .env_clear()
        .envs([
            ("NATS_URL", nats.url.clone()),
            ("DATABASE_URL", database_url.to_string()),
            ("REDIS_URL", redis.as_ref().map(|r| r.url.clone()).unwrap_or_default()),
            ("INFLUXDB_URL", format!("http://127.0.0.1:{}", influx.port)),
            ("INFLUXDB_BUCKET", bucket),
            ("API_PORT", api_port.to_string()),
            ("ALLOW_PRIVATE_TARGETS", "true".into()),
            ("SMTP_HOST", "127.0.0.1".into()),
            ("SMTP_PORT", smtp.port.to_string()),
            ("DETECTOR_DOWN_AFTER", "1".into()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("RUST_LOG", "info,sqlx=warn".into()),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start the monitor binary");
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    let base = format!("http://127.0.0.1:{api_port}");
    let started = Instant::now();
    loop {
        if http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "/health did not answer within 30 s:\n{}", log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Work for every server: a website that is down (a closed port) is
    // scheduled (Redis), checked, projected (PostgreSQL, InfluxDB) and
    // mailed about (SMTP), all through NATS.
    let website = serde_json::json!({
        "url": format!("http://127.0.0.1:{}/", free_port()),
        "name": "shutdown",
        "interval_seconds": 10,
        "notify_emails": ["ops@example.com"],
    });
    // The first start's default region may still be on its way in.
    let started = Instant::now();
    loop {
        let created = http
            .post(format!("{base}/websites"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&website)
            .send()
            .await
            .expect("POST /websites");
        if created.status().is_success() {
            break;
        }
        let status = created.status();
        let body = created.text().await.unwrap_or_default();
        assert!(started.elapsed() < Duration::from_secs(10), "POST /websites: {status} {body}\n{}", log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    match gone {
        Gone::Nats => nats.stop(),
        Gone::Postgres => postgres.stop().await,
        Gone::Redis => drop(redis.take()),
        Gone::Influx => influx.stop().await,
        Gone::Smtp => smtp.stop(),
    }
    // Long enough for the services to run into the missing server.
    tokio::time::sleep(Duration::from_millis(500)).await;

    if let Some(status) = monitor.try_wait().expect("monitor status") {
        panic!("the monitor exited ({status}) before SIGTERM with {gone:?} gone:\n{}", log_tail());
    }
    let pid = monitor.id().expect("the monitor is running");
    let signal = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
    assert!(signal.success(), "kill -TERM {pid} failed");
    let signalled = Instant::now();
    let status = match tokio::time::timeout(LIMIT + Duration::from_secs(5), monitor.wait()).await {
        Ok(status) => status.expect("wait for the monitor"),
        Err(_) => panic!("monitor still running 15 s after SIGTERM with {gone:?} gone:\n{}", log_tail()),
    };
    let took = signalled.elapsed();
    eprintln!("{gone:?} gone: monitor exited {status} {:.2} s after SIGTERM", took.as_secs_f64());
    if took > Duration::from_secs(5) || !status.success() {
        eprintln!("what it logged last:\n{}", log_tail());
    }
    assert!(took < LIMIT, "{gone:?} gone: the monitor took {took:?} to exit after SIGTERM:\n{}", log_tail());
    took
}

#[tokio::test]
async fn the_monitor_exits_within_ten_seconds_of_sigterm_with_nats_gone() {
    exit_time_after_losing(Gone::Nats).await;
}

#[tokio::test]
async fn the_monitor_exits_within_ten_seconds_of_sigterm_with_postgres_gone() {
    exit_time_after_losing(Gone::Postgres).await;
}

#[tokio::test]
async fn the_monitor_exits_within_ten_seconds_of_sigterm_with_redis_gone() {
    exit_time_after_losing(Gone::Redis).await;
}

#[tokio::test]
async fn the_monitor_exits_within_ten_seconds_of_sigterm_with_influxdb_gone() {
    exit_time_after_losing(Gone::Influx).await;
}

#[tokio::test]
async fn the_monitor_exits_within_ten_seconds_of_sigterm_with_smtp_gone() {
    exit_time_after_losing(Gone::Smtp).await;
}
