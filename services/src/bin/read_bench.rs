//! Read benchmark of the overview (`./dev readbench [options]`).
//!
//! Registers websites as events (WebsiteAdded and one CheckCompleted per
//! website, every K-th down), lets the projector build the projection,
//! serves the API in this process and measures, with several clients at
//! once, the calls the dashboard makes: a page of `/monitor`,
//! `/monitor/summary`, a search, a status filter, and one website's
//! response-time series over 7 and 90 days (90 days of checks written to
//! InfluxDB, their rollups made by the projector's own `SELECT ... INTO`).
//! It measures at 1,000 websites, then grows the same system to
//! `--websites` and measures again, printing p50/p99 latency and requests/s
//! of each call beside the targets, and then both runs side by side.
//! At both sizes it also loads the overview in headless Chromium, signed in,
//! with the cache off (`e2e/render.mjs`): its first render and the bytes it
//! transferred.
//!
//! The API (and the projector) run on a runtime of their own, so the CPU time
//! each call costs is printed per request for the load generator (this
//! process's other threads), the API and the PostgreSQL backends of the
//! benchmark's database: on a small machine the generator shares the cores,
//! and this shows how much of them it takes.
//!
//! Then it puts `--page-websites` of them, each with a past outage, on a
//! public status page and offers `/status/<slug>.json` (the page's data, no
//! token) and `/status/<slug>` (its HTML) `--offered` requests a second
//! (open loop: a request every 1/offered s, whatever the answers do), and
//! prints p50/p99 and the requests/s answered beside the target (p99 <
//! 100 ms at 200 requests/s).
//!
//! It uses the test set's PostgreSQL (a fresh database per run), NATS
//! (`TEST_NATS_URL`; its streams are reset) and Redis (`TEST_REDIS_URL`).

use anyhow::Context;
use chrono::{Duration as ChronoDuration, Utc};
use events::status_page::{PageGroup, PageWebsite, Slug};
use events::{
    CheckCompleted, Envelope, Event, FailureCause, IntervalSecs, RegionAdded, RegionName, SiteDown, SiteUp,
    StatusPageCreated, TimeoutMs, WebsiteAdded, WebsiteName, WebsiteUrl,
};
use poem::listener::TcpAcceptor;
use poem::Server;
use services::api::{self, ApiState};
use services::bus::Bus;
use services::{projector, Config, Deps};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Read benchmark of `/monitor` and `/monitor/summary`.
#[derive(clap::Parser)]
struct Options {
    /// Websites at the second measurement (the first is at 1,000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1_000..))]
    websites: u64,
    /// Seconds each call is measured.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// Every K-th website is down.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    down_every: u64,
    /// Websites on the measured status page.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    page_websites: u32,
    /// Requests a second offered to the status page.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    offered: u32,
    /// Keep the PostgreSQL and InfluxDB databases afterwards (to look at
    /// their query plans); their name is printed.
    #[arg(long)]
    keep: bool,
}

/// The status page's p99 target in milliseconds, at 200 requests/s.
const PAGE_TARGET_MS: f64 = 100.0;

/// The calls measured, with the p99 target in milliseconds. `{id}`
/// stands for the website whose series was written ([`seed_series`]).
const CALLS: &[(&str, &str, f64)] = &[
    ("page of 50", "/monitor?limit=50", 50.0),
    ("summary", "/monitor/summary", 50.0),
    ("search q=", "/monitor?limit=50&q=site-0042", 100.0),
    ("down, by name", "/monitor?limit=50&status=down&sort=name", 100.0),
    ("series 7 days", "/monitor/{id}?days=7", 200.0),
    ("series 90 days", "/monitor/{id}?days=90", 200.0),
];

/// The page's throughput target (requests/s).
const PAGE_RATE_TARGET: f64 = 1000.0;

/// The overview's first render in Chromium: its targets (ms, bytes
/// transferred), the script that measures it and how long it may take.
const RENDER_TARGET_MS: f64 = 1500.0;
const RENDER_TARGET_BYTES: u64 = 500_000;
const RENDER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../e2e/render.mjs");
const RENDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The most points a series should have per region.
const SERIES_POINTS_TARGET: usize = 2000;

/// Days of checks written for the series website, one every
/// [`SERIES_INTERVAL_SECS`].
const SERIES_DAYS: i64 = 90;
const SERIES_INTERVAL_SECS: i64 = 180;

/// The name of the API runtime's threads, by which their CPU time is told
/// apart from the load generator's.
const SERVER_THREADS: &str = "api-server";

fn setting(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run the benchmark with ./dev readbench"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A check of `website_id` scheduled at `scheduled_at`: 200 when up, 503
/// when down.
fn check(
    website_id: uuid::Uuid,
    region: &RegionName,
    scheduled_at: chrono::DateTime<Utc>,
    up: bool,
    response_ms: u32,
) -> CheckCompleted {
    CheckCompleted {
        website_id,
        region: region.clone(),
        scheduled_at,
        started_at: scheduled_at + ChronoDuration::milliseconds(2),
        up,
        status_code: Some(if up { 200 } else { 503 }),
        response_ms: Some(response_ms),
        cause: (!up).then_some(FailureCause::HttpStatus),
        message: None,
        cert_not_after: None,
    }
}

/// Publishes websites `from..to` and a check of each, many publishes in
/// flight, and waits until both projections have applied them.
async fn seed(
    bus: &Bus,
    pool: &sqlx::PgPool,
    region: &RegionName,
    from: u64,
    to: u64,
    down_every: u64,
) -> anyhow::Result<()> {
    let interval = IntervalSecs::parse(86_400).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ids: Vec<u64> = (from..to).collect();
    for chunk in ids.chunks(2000) {
        let mut acks = Vec::with_capacity(chunk.len() * 2);
        let mut checks = Vec::with_capacity(chunk.len());
        for n in chunk {
            let website_id = uuid::Uuid::now_v7();
            let event = Event::WebsiteAdded(WebsiteAdded {
                website_id,
                url: WebsiteUrl::parse(&format!("https://site-{n:06}.example.com/"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                name: WebsiteName::parse(&format!("Website {n}")).map_err(|e| anyhow::anyhow!("{e}"))?,
                regions: vec![region.clone()],
                interval_seconds: interval,
                timeout_ms: TimeoutMs::DEFAULT,
                notify_emails: vec![],
                failures_before_down: None,
                down_policy: None,
                channel_ids: vec![],
                check: None,
            });
            acks.push(publish(bus, &Envelope::new(event, Utc::now())).await?);
            let up = n % down_every != 0;
            let scheduled_at = Utc::now();
            checks.push(check(website_id, region, scheduled_at, up, 20 + (n % 200) as u32));
        }
        for ack in acks.drain(..) {
            ack.await?;
        }
        // The checks after their websites: a check of a website not yet
        // projected is not projected either.
        for check in checks {
            let id = CheckCompleted::event_id(check.website_id, &check.region, check.scheduled_at);
            acks.push(publish(bus, &Envelope::with_id(id, Event::CheckCompleted(check), Utc::now())).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    let monitor_last = bus.monitor_stream().await?.info().await?.state.last_sequence;
    projections::cursor::wait_for(pool, projections::postgres::PROJECTION, monitor_last, Duration::from_secs(1800))
        .await?;
    let checks_last = bus.js.get_stream("CHECKS").await?.info().await?.state.last_sequence;
    projections::cursor::wait_for(pool, projections::status::PROJECTION, checks_last, Duration::from_secs(1800))
        .await?;
    Ok(())
}

async fn publish(bus: &Bus, envelope: &Envelope) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(envelope.to_json().into())
        .message_id(envelope.id.to_string());
    Ok(bus.js.send_publish(envelope.subject(), publish).await?)
}

/// CPU seconds used so far: this process's threads (the load generator, and
/// the API runtime's apart), the PostgreSQL backends serving the
/// benchmark's database and the InfluxDB server.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    client: f64,
    server: f64,
    postgres: f64,
    influx: f64,
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            client: self.client - before.client,
            server: self.server - before.server,
            postgres: self.postgres - before.postgres,
            influx: self.influx - before.influx,
        }
    }
}

/// CPU seconds (user and system) of a process's or a thread's `stat`.
fn seconds_of(stat: &procfs::process::Stat) -> f64 {
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// The PostgreSQL backends connected to the benchmark's database.
async fn backends(pool: &sqlx::PgPool) -> Vec<i32> {
    sqlx::query_scalar("select pid from pg_stat_activity where datname = current_database()")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

fn cpu_of(pid: i32) -> Option<f64> {
    procfs::process::Process::new(pid).and_then(|p| p.stat()).ok().map(|stat| seconds_of(&stat))
}

fn cpu_now(backends: &[i32], influx: Option<i32>) -> Cpu {
    let mut cpu = Cpu::default();
    let tasks = procfs::process::Process::myself().and_then(|p| p.tasks());
    for stat in tasks.into_iter().flatten().flatten().filter_map(|task| task.stat().ok()) {
        if stat.comm.starts_with(SERVER_THREADS) {
            cpu.server += seconds_of(&stat);
        } else {
            cpu.client += seconds_of(&stat);
        }
    }
    cpu.postgres = backends.iter().filter_map(|pid| cpu_of(*pid)).sum();
    cpu.influx = influx.and_then(cpu_of).unwrap_or(0.0);
    cpu
}

/// One call measured.
#[derive(Debug, Clone)]
struct Measured {
    /// Latency of every request (ms), sorted.
    times: Vec<f64>,
    /// Requests answered a second.
    rate: f64,
    failed: u64,
    /// CPU milliseconds per request.
    cpu: Cpu,
}

impl Measured {
    fn p(&self, p: f64) -> f64 {
        percentile(&self.times, p)
    }
}

/// Runs `path` with `options.clients` requests in flight for
/// `options.seconds`, on connections kept alive; the CPU counted is that of
/// this process, of `pool`'s backends and of the InfluxDB process `influx`.
async fn measure(
    base: &str,
    token: &str,
    path: &str,
    pool: &sqlx::PgPool,
    influx: Option<i32>,
    options: &Options,
) -> anyhow::Result<Measured> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients as usize).build()?;
    let url = format!("{base}{path}");
    // Warm the connections (and the pool's), and the server's caches.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..options.clients {
        let (client, url, token) = (client.clone(), url.clone(), token.to_owned());
        warm.spawn(async move {
            for _ in 0..5 {
                client.get(&url).bearer_auth(&token).send().await?.bytes().await?;
            }
            Ok::<_, reqwest::Error>(())
        });
    }
    while let Some(done) = warm.join_next().await {
        done??;
    }
    let backends = backends(pool).await;
    let cpu_before = cpu_now(&backends, influx);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.clients {
        let (client, url, token) = (client.clone(), url.clone(), token.to_owned());
        tasks.spawn(async move {
            let (mut times, mut failed) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                times.push(sent.elapsed().as_secs_f64() * 1000.0);
                failed += u64::from(!ok);
            }
            (times, failed)
        });
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (times, f) = done?;
        all.extend(times);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_now(&backends, influx).since(cpu_before);
    let per_request = |seconds: f64| seconds * 1000.0 / all.len().max(1) as f64;
    let cpu = Cpu {
        client: per_request(cpu.client),
        server: per_request(cpu.server),
        postgres: per_request(cpu.postgres),
        influx: per_request(cpu.influx),
    };
    let rate = all.len() as f64 / elapsed;
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(Measured { times: all, rate, failed, cpu })
}

/// Whether a call met its targets: p99, and for the page its throughput.
fn verdict(name: &str, target: f64, measured: &Measured) -> String {
    let mut met = measured.p(99.0) < target && measured.failed == 0;
    let mut what = format!("p99 < {target} ms");
    if name == CALLS[0].0 {
        met &= measured.rate >= PAGE_RATE_TARGET;
        what.push_str(&format!(", >= {PAGE_RATE_TARGET} req/s"));
    }
    format!("{what}: {}", if met { "met" } else { "missed" })
}

async fn report(
    base: &str,
    token: &str,
    series_id: uuid::Uuid,
    websites: u64,
    pool: &sqlx::PgPool,
    influx: Option<i32>,
    options: &Options,
) -> anyhow::Result<Vec<Measured>> {
    println!("\nat {websites} websites ({} clients, {} s per call):", options.clients, options.seconds);
    println!(
        "  {:<15} {:>7} {:>7} {:>7} {:>6}  {:>29}  target",
        "call", "p50 ms", "p99 ms", "req/s", "failed", "CPU ms/req gen/api/pg/influx"
    );
    let mut all = Vec::new();
    for (name, path, target) in CALLS {
        let path = path.replace("{id}", &series_id.to_string());
        let m = measure(base, token, &path, pool, influx, options).await?;
        println!(
            "  {name:<15} {:>7.1} {:>7.1} {:>7.0} {:>6}  {:>8.2} {:>6.2} {:>6.2} {:>6.2}  {}",
            m.p(50.0),
            m.p(99.0),
            m.rate,
            m.failed,
            m.cpu.client,
            m.cpu.server,
            m.cpu.postgres,
            m.cpu.influx,
            verdict(name, *target, &m)
        );
        all.push(m);
    }
    Ok(all)
}

/// The overview's first render, as `e2e/render.mjs` measured it: every
/// load's time (ms) and bytes transferred, with the browser's cache off.
#[derive(Debug, Clone, serde::Deserialize)]
struct Render {
    times_ms: Vec<f64>,
    bytes: Vec<u64>,
}

impl Render {
    fn slowest(&self) -> f64 {
        self.times_ms.iter().copied().fold(0.0, f64::max)
    }

    fn heaviest(&self) -> u64 {
        self.bytes.iter().copied().max().unwrap_or(0)
    }

    fn verdict(&self) -> &'static str {
        if self.slowest() < RENDER_TARGET_MS && self.heaviest() < RENDER_TARGET_BYTES {
            "met"
        } else {
            "missed"
        }
    }
}

/// Signs in to the dashboard with `token` in headless Chromium and loads
/// the overview a few times (`e2e/render.mjs`, which `./dev readbench`
/// installs what it needs for).
async fn first_render(base: &str, token: &str) -> anyhow::Result<Render> {
    let run = tokio::process::Command::new("node")
        .arg(RENDER_SCRIPT)
        .env("BASE_URL", base)
        .env("TOKEN", token)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RENDER_TIMEOUT, run)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {RENDER_TIMEOUT:?}"))?
        .context("running node")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        anyhow::bail!("{RENDER_SCRIPT} failed: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / "));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("the render script printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// Measures the first render and prints it; a machine without Chromium
/// gets the reason instead.
async fn report_render(base: &str, token: &str) -> Option<Render> {
    match first_render(base, token).await {
        Ok(render) => {
            let mut times = render.times_ms.clone();
            times.sort_by(|a, b| a.total_cmp(b));
            println!(
                "  first render (Chromium, cache off, {} loads): p50 {:.0} ms, slowest {:.0} ms, {} KiB transferred  \
                 < {RENDER_TARGET_MS} ms and < {} KB: {}",
                times.len(),
                percentile(&times, 50.0),
                render.slowest(),
                render.heaviest() / 1024,
                RENDER_TARGET_BYTES / 1000,
                render.verdict()
            );
            Some(render)
        }
        Err(e) => {
            println!("  first render: not measured ({e:#})");
            None
        }
    }
}

/// Both measurements side by side.
fn compare(first: (u64, &[Measured]), second: (u64, &[Measured])) {
    let head = |n: u64| format!("at {n} websites");
    println!("\nside by side (p99 ms, req/s):");
    println!("  {:<15} {:>20} {:>22}  target", "call", head(first.0), head(second.0));
    for (n, (name, _, target)) in CALLS.iter().enumerate() {
        let cell =
            |m: Option<&Measured>| m.map_or("-".to_owned(), |m| format!("{:.1} ms {:>6.0}/s", m.p(99.0), m.rate));
        let verdict = second.1.get(n).map(|m| verdict(name, *target, m)).unwrap_or_default();
        println!("  {name:<15} {:>20} {:>22}  {verdict}", cell(first.1.get(n)), cell(second.1.get(n)));
    }
}

/// Writes `SERIES_DAYS` of checks of `website` to InfluxDB (every
/// `SERIES_INTERVAL_SECS`, one in 50 down), as the projection writes them,
/// and makes their rollups with the projector's own statements over
/// the whole period (a projector's run only rolls up the interval that
/// just ended). The last hour's checks stay raw only, as they would be.
async fn seed_series(
    influx_url: &str,
    database: &str,
    influx: &projections::influx::Influx,
    website: uuid::Uuid,
    region: &RegionName,
) -> anyhow::Result<()> {
    influx.ensure_database().await?;
    let now = Utc::now();
    let first = now - ChronoDuration::days(SERIES_DAYS);
    let count = SERIES_DAYS * 86_400 / SERIES_INTERVAL_SECS;
    let checks: Vec<CheckCompleted> = (0..count)
        .map(|n| {
            let scheduled_at = first + ChronoDuration::seconds(n * SERIES_INTERVAL_SECS);
            let up = n % 50 != 0;
            check(website, region, scheduled_at, up, 40 + (n % 300) as u32)
        })
        .collect();
    for chunk in checks.chunks(5000) {
        influx.write(&chunk.iter().collect::<Vec<_>>()).await?;
    }
    let http = reqwest::Client::new();
    let hour = now.timestamp() / 3600 * 3600;
    for rollup in projections::influx::ROLLUP_LEVELS {
        let condition = format!("\"website_id\" = '{website}' AND time >= {}s AND time < {hour}s", first.timestamp());
        let statement = rollup.select_into(database, Some(&condition));
        let response = http
            .post(format!("{influx_url}/query"))
            .query(&[("db", database)])
            .form(&[("q", statement.as_str())])
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() || body.contains("\"error\"") {
            anyhow::bail!("rolling up {}: HTTP {status}: {body}", rollup.measurement);
        }
    }
    Ok(())
}

/// The most points one region's series has in `days`' answer.
async fn series_points(base: &str, token: &str, website: uuid::Uuid, days: u32) -> anyhow::Result<usize> {
    let points: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{base}/monitor/{website}?days={days}"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut per_region: HashMap<String, usize> = HashMap::new();
    for point in &points {
        *per_region.entry(point["region"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    Ok(per_region.into_values().max().unwrap_or(0))
}

/// Puts the first `count` websites on a status page `bench`, each with an
/// outage of ten minutes some days ago, as events, and waits for the
/// projection.
async fn status_page(bus: &Bus, pool: &sqlx::PgPool, region: &RegionName, count: u32) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("select id from websites order by created_at, id limit $1")
        .bind(i64::from(count))
        .fetch_all(pool)
        .await?;
    let now = Utc::now();
    for (n, id) in ids.iter().enumerate() {
        let started_at = now - ChronoDuration::days(1 + (n as i64 % 80)) - ChronoDuration::minutes(n as i64);
        let ended_at = started_at + ChronoDuration::minutes(10);
        let down = SiteDown {
            website_id: *id,
            region: region.clone(),
            started_at,
            cause: Some(FailureCause::Timeout),
            status_code: None,
            message: None,
        };
        let up = SiteUp { website_id: *id, region: region.clone(), started_at, ended_at, downtime_seconds: 600 };
        bus.publish(&Envelope::new(Event::SiteDown(down), now), None).await?;
        bus.publish(&Envelope::new(Event::SiteUp(up), now), None).await?;
    }
    let websites = ids
        .iter()
        .enumerate()
        .map(|(n, id)| PageWebsite { website_id: *id, name: format!("Service {n}"), show_url: false })
        .collect();
    let page = Event::StatusPageCreated(StatusPageCreated {
        page_id: uuid::Uuid::now_v7(),
        slug: Slug::parse("bench").map_err(|e| anyhow::anyhow!("{e}"))?,
        title: "Bench status".into(),
        description: None,
        logo_url: None,
        groups: vec![PageGroup { name: "Services".into(), websites }],
    });
    let seq = bus.publish(&Envelope::new(page, now), None).await?;
    projections::cursor::wait_for(pool, projections::postgres::PROJECTION, seq, Duration::from_secs(60)).await?;
    Ok(())
}

/// Latencies (ms), requests/s answered and failures of `path` offered
/// `rate` requests a second for `seconds`, without a token.
async fn measure_offered(base: &str, path: &str, rate: u32, seconds: u64) -> anyhow::Result<(Vec<f64>, f64, u64)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let url = format!("{base}{path}");
    client.get(&url).send().await?.bytes().await?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let ok = match client.get(&url).send().await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            (sent.elapsed().as_secs_f64() * 1000.0, ok)
        });
    }
    let (mut all, mut failed) = (Vec::new(), 0u64);
    while let Some(done) = tasks.join_next().await {
        let (ms, ok) = done?;
        all.push(ms);
        failed += u64::from(!ok);
    }
    let answered = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((all, answered, failed))
}

async fn report_page(base: &str, options: &Options) -> anyhow::Result<()> {
    let offered = options.offered;
    println!(
        "
status page of {} websites, {offered} req/s offered for {} s (no token):",
        options.page_websites, options.seconds
    );
    println!("  {:<16} {:>9} {:>9} {:>10} {:>8}  target", "call", "p50 ms", "p99 ms", "req/s", "failed");
    for (name, path) in [("page data .json", "/status/bench.json"), ("page HTML", "/status/bench")] {
        let (times, rate, failed) = measure_offered(base, path, offered, options.seconds).await?;
        let p99 = percentile(&times, 99.0);
        let verdict = if p99 < PAGE_TARGET_MS && rate >= 0.95 * f64::from(offered) { "met" } else { "missed" };
        println!(
            "  {name:<16} {:>9.1} {:>9.1} {:>10.0} {:>8}  p99 < {PAGE_TARGET_MS} ms at 200 req/s: {verdict}",
            percentile(&times, 50.0),
            p99,
            rate,
            failed
        );
    }
    let html = reqwest::Client::new().get(format!("{base}/status/bench")).send().await?.bytes().await?;
    println!("  the page's HTML is {} KiB (target < 50 KB)", html.len() / 1024);
    Ok(())
}

/// A `read` token, as the dashboard would sign in with: every request
/// authenticates as a real token does, not as the bootstrap token.
async fn read_token(base: &str, admin: &str) -> anyhow::Result<String> {
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/tokens"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "name": "readbench", "scope": "read" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    created["secret"].as_str().map(str::to_owned).context("the new token has no secret")
}

fn main() -> anyhow::Result<()> {
    services::runtime::init_tracing();
    let options = <Options as clap::Parser>::parse();
    // The API and the projector on threads of their own (see Cpu); the
    // load generator on the others.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;
    let client =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("load").enable_all().build()?;
    let outcome = client.block_on(run(options, server.handle().clone()));
    server.shutdown_background();
    outcome
}

async fn run(options: Options, server: tokio::runtime::Handle) -> anyhow::Result<()> {
    let stamp = Utc::now().format("%Y%m%d%H%M%S").to_string();
    let admin = sqlx::PgPool::connect(&setting("TEST_DATABASE_URL")?).await?;
    let db_name = format!("bench_read_{stamp}");
    sqlx::query(&format!("create database {db_name}")).execute(&admin).await?;
    let mut db_url = url::Url::parse(&setting("TEST_DATABASE_URL")?)?;
    db_url.set_path(&db_name);
    let admin_token = format!("wm_readbench_{}", uuid::Uuid::new_v4().simple());
    let influx_url = setting("TEST_INFLUXDB_URL")?;
    let settings: HashMap<&str, String> = HashMap::from([
        ("NATS_URL", setting("TEST_NATS_URL")?),
        ("DATABASE_URL", db_url.to_string()),
        ("REDIS_URL", setting("TEST_REDIS_URL")?),
        ("INFLUXDB_URL", influx_url.clone()),
        ("INFLUXDB_BUCKET", db_name.clone()),
        ("ADMIN_TOKEN", admin_token.clone()),
    ]);
    let config = Config::from_lookup(|name| settings.get(name).cloned())?;
    let cancel = CancellationToken::new();
    {
        let bus = Bus::connect(&config.nats_url).await?;
        for stream in ["MONITOR", "CHECKS"] {
            let _ = bus.js.delete_stream(stream).await;
        }
    }
    // Connected on the server's runtime, so the connections' own tasks
    // (NATS) count as the server's.
    let deps = {
        let config = config.clone();
        server.spawn(async move { Deps::connect(&config).await }).await??
    };
    deps.database_ready(&cancel).await?;
    let (bus, pool) = (deps.bus.clone(), deps.pool.clone());
    let region = RegionName::parse("local").map_err(|e| anyhow::anyhow!("{e}"))?;
    bus.publish(&Envelope::new(Event::RegionAdded(RegionAdded { region: region.clone() }), Utc::now()), Some(0))
        .await?;
    server.spawn(projector::serve(deps.clone(), config.projector.clone(), cancel.clone()));

    let app = api::app(Arc::new(ApiState::new(deps.clone(), &config.api)));
    let listener = server.spawn(tokio::net::TcpListener::bind("127.0.0.1:0")).await??;
    let base = format!("http://{}", listener.local_addr()?);
    server.spawn(async move {
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        Server::new_with_acceptor(acceptor).run(app).await
    });
    let token = read_token(&base, &admin_token).await?;
    // Whichever checkout started it: the server's word, not a pid file.
    let influx_pid = deps.influx.server_pid().await.ok().flatten();

    let mut seeded = 0;
    let mut runs = Vec::new();
    let mut series_id = None;
    for target in [1_000, options.websites] {
        let started = Instant::now();
        seed(&bus, &pool, &region, seeded, target, options.down_every).await?;
        println!(
            "\nseeded {} websites (and a check of each) as events, projected in {:.1} s",
            target - seeded,
            started.elapsed().as_secs_f64()
        );
        seeded = target;
        let website = match series_id {
            Some(id) => id,
            None => {
                let id: uuid::Uuid = sqlx::query_scalar("select id from websites order by created_at, id limit 1")
                    .fetch_one(&pool)
                    .await?;
                *series_id.insert(id)
            }
        };
        // Written again before each measurement (the same points): what is
        // measured is the whole 90 days, whatever happened to the database.
        let started = Instant::now();
        seed_series(&influx_url, &db_name, &deps.influx, website, &region).await?;
        println!(
            "wrote {SERIES_DAYS} days of checks of one website to InfluxDB (one every {SERIES_INTERVAL_SECS} s) and their rollups in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for days in [7, 90] {
            let points = series_points(&base, &token, website, days).await?;
            let verdict = if points <= SERIES_POINTS_TARGET { "met" } else { "missed" };
            println!("  days={days}: {points} points per series (target <= {SERIES_POINTS_TARGET}: {verdict})");
        }
        sqlx::query("analyze").execute(&pool).await?;
        let measured = report(&base, &token, website, seeded, &pool, influx_pid, &options).await?;
        let render = report_render(&base, &token).await;
        runs.push((seeded, measured, render));
        if seeded >= options.websites {
            break;
        }
    }
    if let [first, second] = runs.as_slice() {
        compare((first.0, &first.1), (second.0, &second.1));
        let cell = |render: &Option<Render>| {
            render.as_ref().map_or("-".to_owned(), |r| format!("{:.0} ms {:>4} KiB", r.slowest(), r.heaviest() / 1024))
        };
        let verdict = second.2.as_ref().map_or("not measured", Render::verdict);
        println!(
            "  {:<15} {:>20} {:>22}  < {RENDER_TARGET_MS} ms, < {} KB: {verdict}",
            "first render",
            cell(&first.2),
            cell(&second.2),
            RENDER_TARGET_BYTES / 1000
        );
    }
    let bytes = reqwest::Client::new()
        .get(format!("{base}/monitor?limit=50"))
        .bearer_auth(&token)
        .send()
        .await?
        .bytes()
        .await?;
    println!("\n  a page of 50 is {} KiB; the summary answers in one small body", bytes.len() / 1024);
    status_page(&bus, &pool, &region, options.page_websites).await?;
    report_page(&base, &options).await?;
    cancel.cancel();
    if options.keep {
        println!("\nkept the databases {db_name} (PostgreSQL and InfluxDB)");
        return Ok(());
    }
    sqlx::query(&format!("drop database if exists {db_name} with (force)")).execute(&admin).await.ok();
    reqwest::Client::new()
        .post(format!("{influx_url}/query"))
        .form(&[("q", format!("DROP DATABASE \"{db_name}\""))])
        .send()
        .await
        .ok();
    Ok(())
}
