//! Benchmark of the checking pipeline (`./dev bench [options]`).
//!
//! Starts a target server on many loopback addresses (configurable latency
//! and failure rate), measures a baseline (the same check code in a bare
//! loop, no queue, no events), then registers N websites as events and runs
//! every component in this process (projector, scheduler, one worker,
//! detector)
//! against the test set's NATS, PostgreSQL, Redis and InfluxDB. It prints
//! sustained checks/s, check-start lateness p50/p99, check-to-InfluxDB and
//! check-to-Postgres lag p99, memory and CPU per process, and the ratio to
//! the baseline.
//!
//! It resets what it uses: the NATS streams of the test set, its Redis, and
//! a fresh Postgres database and InfluxDB database per run.

use anyhow::Context;
use chrono::Utc;
use events::{
    Envelope, Event, IntervalSecs, RegionAdded, RegionName, TimeoutMs, WebsiteAdded, WebsiteName, WebsiteUrl,
};
use futures::StreamExt;
use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::Data;
use poem::{get, handler, EndpointExt, Response, Route, Server};
use services::bus::Bus;
use services::worker::check::{Checker, CheckerOptions};
use services::{cron, detector, projector, worker, Config, Deps};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Benchmark of the checking pipeline against the test set's servers.
/// Target rate = websites / interval checks/s (1,000,000 / 180 = 5,556).
#[derive(clap::Parser)]
struct Options {
    /// Websites registered.
    #[arg(long, default_value_t = 20_000)]
    websites: usize,
    /// Seconds between two checks of one website.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(10..=86_400))]
    interval: u32,
    /// Seconds measured after the warm-up.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Milliseconds the target takes to answer.
    #[arg(long, default_value_t = 5)]
    latency_ms: u64,
    /// Every K-th answer is a 500 (0: never).
    #[arg(long, default_value_t = 100)]
    fail_every: u64,
    /// Loopback addresses the target listens on (127.0.0.1..A).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=250))]
    addresses: u8,
    /// Checks in flight at once, in the worker and the baseline.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Seconds the bare check loop (the baseline) runs.
    #[arg(long, default_value_t = 15)]
    baseline_secs: u64,
    /// Only the replays, on what an earlier run left: its database
    /// (`bench_...`, also its InfluxDB database) and the streams on the
    /// test set's NATS.
    #[arg(long, value_name = "DATABASE")]
    replays_of: Option<String>,
}

#[derive(Clone)]
struct TargetState {
    latency: Duration,
    fail_every: u64,
    answered: Arc<AtomicU64>,
}

#[handler]
async fn answer(state: Data<&TargetState>) -> Response {
    let n = state.answered.fetch_add(1, Ordering::Relaxed) + 1;
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let status = if state.fail_every > 0 && n.is_multiple_of(state.fail_every) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    Response::builder().status(status).body("ok")
}

/// Serves the target on 127.0.0.1..127.0.0.A, one port; returns the URLs.
async fn start_target(options: &Options) -> anyhow::Result<(Vec<String>, Arc<AtomicU64>)> {
    let state = TargetState {
        latency: Duration::from_millis(options.latency_ms),
        fail_every: options.fail_every,
        answered: Arc::new(AtomicU64::new(0)),
    };
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = first.local_addr()?.port();
    let mut listeners = vec![first];
    for last in 2..=options.addresses {
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port);
        listeners.push(tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?);
    }
    let mut urls = Vec::new();
    for listener in listeners {
        urls.push(format!("http://{}/", listener.local_addr()?));
        let app = Route::new().at("/", get(answer)).data(state.clone());
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
    }
    Ok((urls, state.answered))
}

/// The same check code in a bare loop: no queue, no events.
async fn baseline(options: &Options, urls: &[String]) -> anyhow::Result<f64> {
    let checker = Checker::new(CheckerOptions { allow_private_targets: true, ..Default::default() })?;
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.baseline_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..options.concurrency as usize {
        let (checker, done, urls) = (checker.clone(), done.clone(), urls.to_vec());
        tasks.spawn(async move {
            let mut n = t;
            while Instant::now() < deadline {
                checker.check(&urls[n % urls.len()], Duration::from_secs(10)).await;
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(done.load(Ordering::Relaxed) as f64 / options.baseline_secs as f64)
}

fn setting(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run the benchmark with ./dev bench"))
}

/// How many of the seconds with a late start are named.
const LATE_SECONDS_SHOWN: usize = 12;

/// Checks started in one second (unix time): how many, how many of them
/// over a second late, and the latest start's lateness in ms.
type Started = (u64, u64, f64);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Where the benchmark's NATS server keeps its JetStream store, as the
/// server reports it on its monitoring endpoint (`TEST_NATS_MONITOR_URL`).
async fn nats_store_dir() -> anyhow::Result<std::path::PathBuf> {
    let url = setting("TEST_NATS_MONITOR_URL")?;
    let varz: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/varz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let dir = varz
        .pointer("/jetstream/config/store_dir")
        .and_then(serde_json::Value::as_str)
        .context("the server's /varz names no JetStream store directory")?;
    Ok(dir.into())
}

/// Bytes of the files under `dir`, recursively (0 if it cannot be read).
fn directory_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The servers the benchmark uses, each found as the process listening on
/// the port of its URL (`TEST_*_URL`): servers of another set running
/// beside them (`./dev up`'s) are not counted.
struct Servers(Vec<(i32, &'static str)>);

impl Servers {
    fn find() -> anyhow::Result<Self> {
        let servers = [
            ("postgres", "TEST_DATABASE_URL"),
            ("redis-server", "TEST_REDIS_URL"),
            ("influxd", "TEST_INFLUXDB_URL"),
            ("nats-server", "TEST_NATS_URL"),
        ];
        let mut found = Vec::new();
        for (name, variable) in servers {
            let url = url::Url::parse(&setting(variable)?).with_context(|| format!("{variable} is not a URL"))?;
            let port = url.port_or_known_default().with_context(|| format!("{variable} names no port"))?;
            match listener_on(port) {
                Some(pid) => found.push((pid, name)),
                None => println!("no process of this user listens on :{port}: {name}'s cpu and memory are not counted"),
            }
        }
        Ok(Self(found))
    }

    /// This process and the servers' processes: (pid, name), PostgreSQL's
    /// backends and workers (its postmaster's children) under its name.
    fn processes(&self) -> Vec<(i32, &'static str)> {
        let mut list = vec![(std::process::id().cast_signed(), "pipeline (this process)")];
        list.extend(&self.0);
        if let Some(&(postmaster, name)) = self.0.iter().find(|(_, name)| *name == "postgres") {
            let children = procfs::process::all_processes()
                .into_iter()
                .flatten()
                .flatten()
                .filter(|process| process.stat().is_ok_and(|stat| stat.ppid == postmaster));
            list.extend(children.map(|process| (process.pid, name)));
        }
        list
    }
}

/// The process listening on TCP `port` (any address), as the kernel's
/// socket tables and the processes' open files tell.
fn listener_on(port: u16) -> Option<i32> {
    let sockets: std::collections::HashSet<u64> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.state == procfs::net::TcpState::Listen && entry.local_address.port() == port)
        .map(|entry| entry.inode)
        .collect();
    if sockets.is_empty() {
        return None;
    }
    procfs::process::all_processes().ok()?.flatten().find_map(|process| {
        let listens = process
            .fd()
            .ok()?
            .flatten()
            .any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(inode) if sockets.contains(&inode)));
        listens.then_some(process.pid)
    })
}

/// Resident memory of this process and of the servers, by name, in MiB.
fn memory(servers: &Servers) -> Vec<(String, u64)> {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for (pid, name) in servers.processes() {
        let rss = procfs::process::Process::new(pid).and_then(|p| p.status()).ok().and_then(|s| s.vmrss);
        *totals.entry(name).or_default() += rss.unwrap_or(0);
    }
    let mut list: Vec<(String, u64)> = totals.into_iter().map(|(k, v)| (k.to_owned(), v / 1024)).collect();
    list.sort();
    list
}

/// CPU time so far of each watched process, by pid: (name, clock ticks).
type CpuTimes = HashMap<i32, (&'static str, u64)>;

fn cpu_times(servers: &Servers) -> CpuTimes {
    let ticks = |pid| procfs::process::Process::new(pid).and_then(|p| p.stat()).map_or(0, |s| s.utime + s.stime);
    servers.processes().into_iter().map(|(pid, name)| (pid, (name, ticks(pid)))).collect()
}

/// The share of one core each of this process and the servers used
/// between two [`cpu_times`] readings `seconds` apart, by name: what each
/// process used since the first reading (all of it if it started since);
/// a process that ended in between is not counted.
fn cpu_shares(before: &CpuTimes, after: &CpuTimes, seconds: f64) -> Vec<(String, f64)> {
    let mut used: HashMap<&str, u64> = HashMap::new();
    for (pid, (name, ticks)) in after {
        let earlier = before.get(pid).map_or(0, |(_, t)| *t);
        *used.entry(name).or_default() += ticks.saturating_sub(earlier);
    }
    let mut list: Vec<(String, f64)> = used
        .into_iter()
        .map(|(name, ticks)| {
            (name.to_owned(), ticks as f64 / procfs::ticks_per_second() as f64 / seconds.max(f64::EPSILON))
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// Each watched process's share of a core in each second of the measured
/// window, by the second (Unix time) the reading was taken in.
#[derive(Default)]
struct CpuSeconds(Vec<(i64, Vec<(String, f64)>)>);

impl CpuSeconds {
    fn push(&mut self, at: chrono::DateTime<Utc>, shares: Vec<(String, f64)>) {
        self.0.push((at.timestamp(), shares));
    }

    /// `started` checks in `second`, with the CPU of each process in the
    /// second before it and in it (a reading covers the second before it
    /// was taken).
    fn around(&self, second: i64, started: u64) -> String {
        let at = chrono::DateTime::from_timestamp(second, 0).map(|t| t.format("%H:%M:%S").to_string());
        let readings: Vec<String> = [second, second + 1]
            .iter()
            .filter_map(|s| self.0.iter().find(|(taken, _)| taken == s))
            .map(|(_, shares)| {
                let parts: Vec<String> =
                    shares.iter().map(|(name, share)| format!("{} {:.0}%", short_name(name), share * 100.0)).collect();
                parts.join(", ")
            })
            .collect();
        format!("{} at {}; cpu then: {}", started, at.unwrap_or_default(), readings.join(" | "))
    }
}

/// A process's name without what it is in brackets.
fn short_name(name: &str) -> &str {
    name.split_once(' ').map_or(name, |(first, _)| first)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    services::runtime::init_tracing();
    let options = <Options as clap::Parser>::parse();
    if let Some(db_name) = &options.replays_of {
        let config = config_for(db_name, &options)?;
        let deps = Deps::connect(&config).await?;
        let checks = checks_in_stream(&deps.bus).await?;
        return replays(&deps, &config, checks).await;
    }
    let target_rate = options.websites as f64 / f64::from(options.interval);
    println!(
        "bench: {} websites every {} s (target {:.0} checks/s), target latency {} ms, 1 in {} fails, {} addresses, concurrency {}",
        options.websites, options.interval, target_rate, options.latency_ms, options.fail_every, options.addresses, options.concurrency
    );
    let (urls, answered) = start_target(&options).await?;

    let base = baseline(&options, &urls).await?;
    println!(
        "baseline: {base:.0} checks/s (bare check loop, {} in flight, {} s)",
        options.concurrency, options.baseline_secs
    );

    // Fresh state on the test set's servers.
    let stamp = Utc::now().format("%Y%m%d%H%M%S").to_string();
    let admin = sqlx::PgPool::connect(&setting("TEST_DATABASE_URL")?).await?;
    let db_name = format!("bench_{stamp}");
    sqlx::query(&format!("create database {db_name}")).execute(&admin).await?;
    let config = config_for(&db_name, &options)?;
    let mut redis = redis::Client::open(config.redis_url.as_str())?.get_multiplexed_async_connection().await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut redis).await?;
    let cancel = CancellationToken::new();
    {
        let bus = Bus::connect(&config.nats_url).await?;
        for stream in ["MONITOR", "CHECKS"] {
            let _ = bus.js.delete_stream(stream).await;
        }
    }
    let deps = Deps::connect(&config).await?;
    deps.database_ready(&cancel).await?;
    let (bus, pool) = (deps.bus.clone(), deps.pool.clone());

    // Register the websites as events, many publishes in flight.
    let started = Instant::now();
    let region = RegionName::parse("local").map_err(|e| anyhow::anyhow!("{e}"))?;
    bus.publish(&Envelope::new(Event::RegionAdded(RegionAdded { region: region.clone() }), Utc::now()), Some(0))
        .await?;
    let interval = IntervalSecs::parse(i64::from(options.interval)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = WebsiteName::parse("bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    for chunk in (0..options.websites).collect::<Vec<_>>().chunks(2000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for n in chunk {
            let url = WebsiteUrl::parse(&urls[n % urls.len()]).map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = Event::WebsiteAdded(WebsiteAdded {
                website_id: uuid::Uuid::now_v7(),
                url,
                name: name.clone(),
                regions: vec![region.clone()],
                interval_seconds: interval,
                timeout_ms: TimeoutMs::DEFAULT,
                notify_emails: vec![],
                failures_before_down: None,
                down_policy: None,
                channel_ids: vec![],
                check: None,
            });
            let envelope = Envelope::new(event, Utc::now());
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(envelope.to_json().into())
                .message_id(envelope.id.to_string());
            acks.push(bus.js.send_publish(envelope.subject(), publish).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    // The projector apart, so it can be stopped for the replays.
    let projecting = CancellationToken::new();
    tokio::spawn(projector::serve(deps.clone(), config.projector.clone(), projecting.clone()));
    let monitor_last = bus.monitor_stream().await?.info().await?.state.last_sequence;
    projections::cursor::wait_for(&pool, projections::postgres::PROJECTION, monitor_last, Duration::from_secs(600))
        .await?;
    println!(
        "setup: {} websites published and projected in {:.1} s",
        options.websites,
        started.elapsed().as_secs_f64()
    );

    // The detector follows the results as in production.
    tokio::spawn(detector::serve(deps.clone(), config.detector, cancel.clone()));
    // The scheduler builds its schedule from Postgres (each website at its
    // slot), then the worker starts checking.
    tokio::spawn(cron::serve(deps.clone(), config.cron.clone(), cancel.clone()));
    let mut worker_settings = config.worker.clone();
    worker_settings.region = Some(region.clone());
    tokio::spawn(worker::serve(deps.clone(), worker_settings, cancel.clone()));

    // Lateness of every check, from the events themselves.
    let lateness: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Checks published (a message may hold many).
    let counted = Arc::new(AtomicU64::new(0));
    // Checks started per second, while measuring.
    let started_per_second: Arc<Mutex<HashMap<i64, Started>>> = Arc::new(Mutex::new(HashMap::new()));
    {
        let mut subscription = bus.client.subscribe("checks.>").await?;
        let (lateness, measuring, counted, per_second) =
            (lateness.clone(), measuring.clone(), counted.clone(), started_per_second.clone());
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let Ok(envelopes) = events::batch::decode(&message.subject, &message.payload) else { continue };
                for envelope in envelopes {
                    if let Event::CheckCompleted(check) = envelope.event {
                        counted.fetch_add(1, Ordering::Relaxed);
                        if !measuring.load(Ordering::Relaxed) {
                            continue;
                        }
                        let late =
                            (check.started_at - check.scheduled_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                        if let Ok(mut all) = lateness.lock() {
                            all.push(late);
                        }
                        if let Ok(mut seconds) = per_second.lock() {
                            let second = seconds.entry(check.started_at.timestamp()).or_default();
                            second.0 += 1;
                            second.1 += u64::from(late > 1000.0);
                            second.2 = second.2.max(late);
                        }
                    }
                }
            }
        });
    }

    // Warm up one interval, and at least 30 s (the checks of websites all
    // added at once were still a second late 15 s in), then measure once
    // the queue holds less than a second of checks, waiting at most two
    // intervals more: every website's first check is also its first point
    // in InfluxDB (a new series), its first row of latest status and its
    // status leaving pending, which a million websites added at once pay
    // all in their first round and never again.
    let warmup = Duration::from_secs((u64::from(options.interval) + 5).max(30));
    let settle_at_most = Duration::from_secs(2 * u64::from(options.interval));
    println!(
        "warming up {} s and until the queue holds less than a second of checks (at most {} s more), then measuring {} s",
        warmup.as_secs(),
        settle_at_most.as_secs(),
        options.duration
    );
    tokio::time::sleep(warmup).await;
    let queue = services::queue::checks_key(&region);
    let settling = Instant::now();
    let second_of_checks = target_rate.ceil() as usize;
    loop {
        let queued: usize = redis::cmd("XLEN").arg(&queue).query_async(&mut redis).await?;
        if queued < second_of_checks {
            break;
        }
        if settling.elapsed() >= settle_at_most {
            println!("  the queue still held {queued} checks; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if settling.elapsed() >= Duration::from_secs(1) {
        println!("  warmed up {:.0} s in all", (warmup + settling.elapsed()).as_secs_f64());
    }
    measuring.store(true, Ordering::Relaxed);
    let mut checks_stream = bus.js.get_stream("CHECKS").await?;
    let influx_consumer_name = projector::INFLUX_CONSUMER;
    let start_seq = checks_stream.info().await?.state.last_sequence;
    let start_checks = counted.load(Ordering::Relaxed);
    let servers = Servers::find()?;
    let start_cpu = cpu_times(&servers);
    let start = Instant::now();
    // (sequence, when it was the stream's last) and the lags observed.
    let mut marks: Vec<(u64, Instant)> = Vec::new();
    let (mut pg_lags, mut influx_lags, mut detector_lags) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pg_next, mut influx_next, mut detector_next) = (0usize, 0usize, 0usize);
    let mut per_window = Vec::new();
    let mut window_start = (Instant::now(), start_checks);
    // Each process's CPU second by second, to set beside the seconds in
    // which checks started unevenly.
    let mut cpu_seconds = CpuSeconds::default();
    let mut last_cpu = (Instant::now(), start_cpu.clone());
    while start.elapsed() < Duration::from_secs(options.duration) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        if now - last_cpu.0 >= Duration::from_secs(1) {
            let times = cpu_times(&servers);
            cpu_seconds.push(Utc::now(), cpu_shares(&last_cpu.1, &times, (now - last_cpu.0).as_secs_f64()));
            last_cpu = (now, times);
        }
        let last = checks_stream.info().await?.state.last_sequence;
        marks.push((last, now));
        let pg = projections::cursor::offset(&pool, projections::status::PROJECTION).await?;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            checks_stream.get_consumer(influx_consumer_name).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let floor = consumer.info().await?.ack_floor.stream_sequence;
        let detected = projections::cursor::offset(&pool, detector::POSITION).await?;
        while detector_next < marks.len() && marks[detector_next].0 <= detected {
            detector_lags.push((now - marks[detector_next].1).as_secs_f64() * 1000.0);
            detector_next += 1;
        }
        while pg_next < marks.len() && marks[pg_next].0 <= pg {
            pg_lags.push((now - marks[pg_next].1).as_secs_f64() * 1000.0);
            pg_next += 1;
        }
        while influx_next < marks.len() && marks[influx_next].0 <= floor {
            influx_lags.push((now - marks[influx_next].1).as_secs_f64() * 1000.0);
            influx_next += 1;
        }
        if now - window_start.0 >= Duration::from_secs(10) {
            let checks = counted.load(Ordering::Relaxed);
            let rate = (checks - window_start.1) as f64 / (now - window_start.0).as_secs_f64();
            println!("  {:>4.0} s: {:>7.0} checks/s", start.elapsed().as_secs_f64(), rate);
            per_window.push(rate);
            window_start = (now, checks);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_shares(&start_cpu, &cpu_times(&servers), elapsed);
    let end_state = checks_stream.info().await?.state.clone();
    let end_seq = end_state.last_sequence;
    let end_checks = counted.load(Ordering::Relaxed);
    measuring.store(false, Ordering::Relaxed);
    let sustained = (end_checks - start_checks) as f64 / elapsed;
    let mut late = lateness.lock().map(|l| l.clone()).unwrap_or_default();
    late.sort_by(|a, b| a.total_cmp(b));
    pg_lags.sort_by(|a, b| a.total_cmp(b));
    influx_lags.sort_by(|a, b| a.total_cmp(b));
    detector_lags.sort_by(|a, b| a.total_cmp(b));
    let backlog: usize = redis::cmd("XLEN").arg(&queue).query_async(&mut redis).await?;

    println!();
    println!(
        "results over {elapsed:.0} s ({} checks stored in CHECKS in {} messages):",
        end_checks - start_checks,
        end_seq - start_seq
    );
    println!(
        "  sustained          {sustained:>8.0} checks/s   (target {target_rate:.0}; slowest 10 s window {:.0})",
        per_window.iter().copied().fold(f64::INFINITY, f64::min)
    );
    println!("  baseline           {base:>8.0} checks/s   (bare check loop)");
    println!("  pipeline/baseline  {:>8.2}", sustained / base);
    println!(
        "  start lateness     p50 {:.0} ms, p99 {:.0} ms ({} checks)",
        percentile(&late, 50.0),
        percentile(&late, 99.0),
        late.len()
    );
    println!(
        "  check -> postgres  lag p99 {:.0} ms (p50 {:.0})",
        percentile(&pg_lags, 99.0),
        percentile(&pg_lags, 50.0)
    );
    println!(
        "  check -> influxdb  lag p99 {:.0} ms (p50 {:.0})",
        percentile(&influx_lags, 99.0),
        percentile(&influx_lags, 50.0)
    );
    println!(
        "  check -> detector  lag p99 {:.0} ms (p50 {:.0})",
        percentile(&detector_lags, 99.0),
        percentile(&detector_lags, 50.0)
    );
    println!("  queue backlog      {backlog} jobs at the end");
    let mut seconds: Vec<(i64, Started)> =
        started_per_second.lock().map(|s| s.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default();
    seconds.sort_unstable_by_key(|(second, _)| *second);
    // The first and last seconds are partly outside the window.
    let full: Vec<f64> = seconds.iter().skip(1).rev().skip(1).map(|(_, (n, _, _))| *n as f64).collect();
    if !full.is_empty() {
        let mean = full.iter().sum::<f64>() / full.len() as f64;
        let peak = full.iter().copied().fold(f64::MIN, f64::max);
        let low = full.iter().copied().fold(f64::MAX, f64::min);
        println!(
            "  checks started/s   mean {mean:.0}, peak {peak:.0}, lowest {low:.0} (peak/mean {:.2}, over {} s)",
            peak / mean,
            full.len()
        );
        let inner = || seconds.iter().skip(1).take(full.len());
        let busiest = inner().max_by_key(|(_, (n, _, _))| *n);
        let slowest = inner().min_by_key(|(_, (n, _, _))| *n);
        for (what, second) in [("fewest", slowest), ("most", busiest)] {
            if let Some((second, (n, _, _))) = second {
                println!("  {what:<6} started    {}", cpu_seconds.around(*second, *n));
            }
        }
    }
    // Where the late starts fell: the seconds holding a check started more
    // than a second late, to set beside the services' logs.
    let late_seconds: Vec<String> = seconds
        .iter()
        .filter(|(_, (_, over, _))| *over > 0)
        .map(|(second, (n, over, latest))| {
            let at = chrono::DateTime::from_timestamp(*second, 0).map(|t| t.format("%H:%M:%S").to_string());
            format!("{} {over}/{n} (max {latest:.0} ms)", at.unwrap_or_default())
        })
        .collect();
    if late_seconds.is_empty() {
        println!("  started > 1 s late none");
    } else {
        // The first few: a queue that never empties makes every second late.
        let shown = late_seconds.len().min(LATE_SECONDS_SHOWN);
        let more = late_seconds.len() - shown;
        let rest = if more > 0 { format!(" and {more} more") } else { String::new() };
        println!("  started > 1 s late in {} seconds: {}{rest}", late_seconds.len(), late_seconds[..shown].join(", "));
    }
    // The stream's own count is of bytes before compression; the files
    // hold what the disk keeps. Both directories are the servers' own:
    // servers started by another checkout keep their data elsewhere.
    let per_check = |bytes: u64| format!("{:.0}", bytes as f64 / end_checks.max(1) as f64);
    let on_disk = match nats_store_dir().await {
        Ok(dir) => per_check(directory_bytes(&dir.join("$G/streams/CHECKS/msgs"))),
        Err(e) => format!("unknown ({e:#})"),
    };
    println!(
        "  CHECKS             {on_disk} bytes/check on disk, {} before compression ({} checks in {} messages)",
        per_check(end_state.bytes),
        end_checks,
        end_state.messages
    );
    let influx_bytes = match deps.influx.disk_bytes().await {
        Ok(bytes) => per_check(bytes),
        Err(e) => format!("unknown ({e})"),
    };
    println!("  InfluxDB           {influx_bytes} bytes/check on disk (TSM and WAL)");
    println!("  target answered    {} requests in all", answered.load(Ordering::Relaxed));
    for (name, mib) in memory(&servers) {
        println!("  memory             {name}: {mib} MiB");
    }
    for (name, share) in cpu {
        println!("  cpu                {name}: {:.0}% of a core", share * 100.0);
    }
    // Replays on the run's own data: stop checking, let the projections
    // catch up, note what they hold, then rebuild each from its stream.
    cancel.cancel();
    tokio::time::sleep(Duration::from_secs(6)).await;
    wait_for_projections(&deps).await?;
    projecting.cancel();
    replays(&deps, &config, counted.load(Ordering::Relaxed)).await
}

/// The services' settings on the test set's servers, with the Postgres and
/// InfluxDB databases `db_name`.
fn config_for(db_name: &str, options: &Options) -> anyhow::Result<Config> {
    let mut db_url = url::Url::parse(&setting("TEST_DATABASE_URL")?)?;
    db_url.set_path(db_name);
    let settings: HashMap<&str, String> = HashMap::from([
        ("NATS_URL", setting("TEST_NATS_URL")?),
        ("DATABASE_URL", db_url.to_string()),
        ("REDIS_URL", setting("TEST_REDIS_URL")?),
        ("INFLUXDB_URL", setting("TEST_INFLUXDB_URL")?),
        ("INFLUXDB_BUCKET", db_name.to_owned()),
        ("ALLOW_PRIVATE_TARGETS", "true".into()),
        ("WORKER_CONCURRENCY", options.concurrency.to_string()),
    ]);
    Ok(Config::from_lookup(|name| settings.get(name).cloned())?)
}

/// Waits until the latest status and InfluxDB have taken all of CHECKS.
async fn wait_for_projections(deps: &Deps) -> anyhow::Result<()> {
    let mut checks_stream = deps.bus.js.get_stream("CHECKS").await?;
    let checks_last = checks_stream.info().await?.state.last_sequence;
    projections::cursor::wait_for(&deps.pool, projections::status::PROJECTION, checks_last, Duration::from_secs(120))
        .await?;
    wait_for_influx(&mut checks_stream, checks_last).await
}

/// Rebuilds each projection from its stream, timed, and compares what it
/// holds after with what it held before (the projector stopped).
async fn replays(deps: &Deps, config: &Config, total_checks: u64) -> anyhow::Result<()> {
    let (bus, pool) = (&deps.bus, &deps.pool);
    let mut checks_stream = bus.js.get_stream("CHECKS").await?;
    let checks_last = checks_stream.info().await?.state.last_sequence;
    let live = Snapshot::take(pool, &deps.influx).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!();
    let monitor_events = bus.monitor_stream().await?.info().await?.state.last_sequence;
    println!("replays ({total_checks} checks in CHECKS, {monitor_events} events in MONITOR):");
    let replaying = CancellationToken::new();
    // MONITOR first: emptying the websites empties their status too.
    let timed = Instant::now();
    projector::replay(bus, pool, projector::Projection::Monitor, &replaying).await?;
    let monitor_rate = monitor_events as f64 / timed.elapsed().as_secs_f64();
    let timed = Instant::now();
    projector::replay(bus, pool, projector::Projection::Status, &replaying).await?;
    let status_rate = total_checks as f64 / timed.elapsed().as_secs_f64();
    let timed = Instant::now();
    projector::replay_influx(bus, &deps.influx).await?;
    tokio::spawn(projector::run_influx(bus.clone(), deps.influx.clone(), config.projector.batch, replaying.clone()));
    wait_for_influx(&mut checks_stream, checks_last).await?;
    let influx_rate = total_checks as f64 / timed.elapsed().as_secs_f64();
    let replayed = Snapshot::take(pool, &deps.influx).await?;
    let same = |a: &str, b: &str| if a == b { "equal to the live one" } else { "DIFFERENT from the live one" };
    println!(
        "  CHECKS  -> latest status  {status_rate:>9.0} events/s   (target 100000; table {})",
        same(&live.status, &replayed.status)
    );
    println!(
        "  CHECKS  -> influxdb       {influx_rate:>9.0} events/s   (target 100000; {} points of 200 websites, {})",
        replayed.points,
        same(&live.points, &replayed.points)
    );
    println!(
        "  MONITOR -> postgres       {monitor_rate:>9.0} events/s   (target 100000; websites {}; status_since is \
         dated by the batch that changed the status)",
        same(&live.websites, &replayed.websites)
    );
    replaying.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// The checks CHECKS holds (a message may hold many).
async fn checks_in_stream(bus: &Bus) -> anyhow::Result<u64> {
    let last = bus.js.get_stream("CHECKS").await?.info().await?.state.last_sequence;
    let mut batches = services::follow::after(bus, "CHECKS", 0, None, 1000).await?;
    let never = CancellationToken::new();
    let mut checks = 0u64;
    while let Some(batch) = batches.next(&never).await? {
        for (_, message) in &batch {
            checks += events::batch::decode(&message.subject, &message.payload)?.len() as u64;
        }
        if batch.last().is_none_or(|(seq, _)| *seq >= last) {
            break;
        }
    }
    Ok(checks)
}

/// Waits until the InfluxDB consumer has acknowledged `last`.
async fn wait_for_influx(checks: &mut async_nats::jetstream::stream::Stream, last: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
            checks.get_consumer(projector::INFLUX_CONSUMER).await;
        if let Ok(mut consumer) = consumer {
            if consumer.info().await?.ack_floor.stream_sequence >= last {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("InfluxDB did not catch up with CHECKS in 10 minutes")
}

/// What the projections hold, reduced to something comparable.
struct Snapshot {
    status: String,
    websites: String,
    points: String,
}

impl Snapshot {
    async fn take(pool: &sqlx::PgPool, influx: &projections::influx::Influx) -> anyhow::Result<Self> {
        let status: (i64, Option<String>) = sqlx::query_as(
            "select count(*), md5(string_agg(concat_ws('/', website_id, region, up, scheduled_at, checked_at, response_ms,
                    status_code, cause, message), ',' order by website_id, region)) from latest_status",
        )
        .fetch_one(pool)
        .await?;
        let websites: (i64, Option<String>) = sqlx::query_as(
            "select count(*), md5(string_agg(concat_ws('/', id, url, name, status, interval_seconds),
                    ',' order by id)) from websites",
        )
        .fetch_one(pool)
        .await?;
        // A sample: counting every website's points would visit every series.
        let sample: Vec<uuid::Uuid> =
            sqlx::query_scalar("select id from websites order by id limit 200").fetch_all(pool).await?;
        let points = influx.count_checks(&sample).await?;
        Ok(Self {
            status: format!("{} rows, {}", status.0, status.1.unwrap_or_default()),
            websites: format!("{} rows, {}", websites.0, websites.1.unwrap_or_default()),
            points: points.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_the_process_listening_on_its_port() -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        assert_eq!(listener_on(port), Some(std::process::id().cast_signed()));
        drop(listener);
        assert_eq!(listener_on(port), None);
        Ok(())
    }

    #[test]
    fn cpu_shares_are_of_the_window_and_count_what_each_process_used_in_it() {
        let times = |list: &[(i32, &'static str, u64)]| -> CpuTimes {
            list.iter().map(|(pid, name, ticks)| (*pid, (*name, *ticks))).collect()
        };
        let before = times(&[(1, "influxd", 1_000), (2, "postgres", 500), (3, "postgres", 4_000)]);
        // Backend 3 ended, backend 4 started within the window.
        let after = times(&[(1, "influxd", 1_150), (2, "postgres", 520), (4, "postgres", 30)]);
        let shares: HashMap<String, f64> = cpu_shares(&before, &after, 2.0).into_iter().collect();
        assert!((shares["influxd"] - 0.75).abs() < 1e-9);
        assert!((shares["postgres"] - 0.25).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn a_second_is_shown_with_the_readings_taken_in_it_and_the_next() {
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap_or_default();
        let mut seconds = CpuSeconds::default();
        seconds.push(at(99), vec![("influxd".into(), 0.1)]);
        seconds.push(at(100), vec![("influxd".into(), 0.5), ("pipeline (this process)".into(), 0.8)]);
        seconds.push(at(101), vec![("influxd".into(), 0.75)]);
        seconds.push(at(102), vec![("influxd".into(), 0.2)]);
        assert_eq!(seconds.around(100, 2883), "2883 at 00:01:40; cpu then: influxd 50%, pipeline 80% | influxd 75%");
        assert_eq!(seconds.around(500, 1), "1 at 00:08:20; cpu then: ");
    }
}
