//! Read benchmark of the overview (`./dev readbench [options]`).
//!
//! Registers websites as events (WebsiteAdded and one CheckCompleted per
//! website, every K-th down), lets the projector build the projection,
//! serves the API in this process and measures, with several clients at
//! once, the calls the dashboard makes: a page of `/monitor`,
//! `/monitor/summary`, a search, and a status filter. It measures at 1,000
//! websites, then grows the same system to `--websites` and measures again,
//! printing p50/p99 latency and requests/s of each call beside the issue's
//! targets.
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
}

/// The status page's p99 target in milliseconds, at 200 requests/s.
const PAGE_TARGET_MS: f64 = 100.0;

/// The calls measured, with the p99 target in milliseconds.
const CALLS: &[(&str, &str, f64)] = &[
    ("page of 50", "/monitor?limit=50", 50.0),
    ("summary", "/monitor/summary", 50.0),
    ("search q=", "/monitor?limit=50&q=site-0042", 100.0),
    ("down, by name", "/monitor?limit=50&status=down&sort=name", 100.0),
];

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
            checks.push(CheckCompleted {
                website_id,
                region: region.clone(),
                scheduled_at,
                started_at: scheduled_at + ChronoDuration::milliseconds(2),
                up,
                status_code: Some(if up { 200 } else { 503 }),
                response_ms: Some(20 + (n % 200) as u32),
                cause: (!up).then_some(FailureCause::HttpStatus),
                message: None,
                cert_not_after: None,
            });
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
    let publish = async_nats::jetstream::context::Publish::build()
        .payload(envelope.to_json().into())
        .message_id(envelope.id.to_string());
    Ok(bus.js.send_publish(envelope.subject(), publish).await?)
}

/// Latency of every request (ms), requests/s and failures of one call.
async fn measure(base: &str, token: &str, path: &str, options: &Options) -> anyhow::Result<(Vec<f64>, f64, u64)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients as usize).build()?;
    let url = format!("{base}{path}");
    // Warm the connections and the server's caches.
    for _ in 0..options.clients {
        client.get(&url).bearer_auth(token).send().await?.bytes().await?;
    }
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
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((all, rate, failed))
}

async fn report(base: &str, token: &str, websites: u64, options: &Options) -> anyhow::Result<()> {
    println!("\nat {websites} websites ({} clients, {} s per call):", options.clients, options.seconds);
    println!("  {:<16} {:>9} {:>9} {:>10} {:>8}  target", "call", "p50 ms", "p99 ms", "req/s", "failed");
    for (name, path, target) in CALLS {
        let (times, rate, failed) = measure(base, token, path, options).await?;
        let p99 = percentile(&times, 99.0);
        let verdict = if p99 < *target { "met" } else { "missed" };
        println!(
            "  {name:<16} {:>9.1} {:>9.1} {:>10.0} {:>8}  p99 < {target} ms: {verdict}",
            percentile(&times, 50.0),
            p99,
            rate,
            failed
        );
    }
    Ok(())
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    services::runtime::init_tracing();
    let options = <Options as clap::Parser>::parse();
    let stamp = Utc::now().format("%Y%m%d%H%M%S").to_string();
    let admin = sqlx::PgPool::connect(&setting("TEST_DATABASE_URL")?).await?;
    let db_name = format!("bench_read_{stamp}");
    sqlx::query(&format!("create database {db_name}")).execute(&admin).await?;
    let mut db_url = url::Url::parse(&setting("TEST_DATABASE_URL")?)?;
    db_url.set_path(&db_name);
    let token = format!("wm_readbench_{}", uuid::Uuid::new_v4().simple());
    let settings: HashMap<&str, String> = HashMap::from([
        ("NATS_URL", setting("TEST_NATS_URL")?),
        ("DATABASE_URL", db_url.to_string()),
        ("REDIS_URL", setting("TEST_REDIS_URL")?),
        ("INFLUXDB_URL", setting("TEST_INFLUXDB_URL")?),
        ("INFLUXDB_BUCKET", db_name.clone()),
        ("ADMIN_TOKEN", token.clone()),
    ]);
    let config = Config::from_lookup(|name| settings.get(name).cloned())?;
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
    let region = RegionName::parse("local").map_err(|e| anyhow::anyhow!("{e}"))?;
    bus.publish(&Envelope::new(Event::RegionAdded(RegionAdded { region: region.clone() }), Utc::now()), Some(0))
        .await?;
    tokio::spawn(projector::serve(deps.clone(), config.projector.clone(), cancel.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = api::app(Arc::new(ApiState::new(deps.clone(), &config.api)));
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });

    let mut seeded = 0;
    for target in [1_000, options.websites] {
        let started = Instant::now();
        seed(&bus, &pool, &region, seeded, target, options.down_every).await?;
        println!(
            "\nseeded {} websites (and a check of each) as events, projected in {:.1} s",
            target - seeded,
            started.elapsed().as_secs_f64()
        );
        seeded = target;
        sqlx::query("analyze").execute(&pool).await?;
        report(&base, &token, seeded, &options).await?;
        if seeded >= options.websites {
            break;
        }
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
    sqlx::query(&format!("drop database if exists {db_name} with (force)")).execute(&admin).await.ok();
    Ok(())
}
