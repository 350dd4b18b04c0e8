//! The scheduler. Keeps, per region, a Redis sorted set of website ids by
//! next due time and moves due checks into the region's queue
//! `checks:<region>` (see [`store`] for the atomic claim, [`schedule`] for
//! the spreading maths).
//!
//! Three loops:
//! - follower: applies the MONITOR stream to the schedule, so an added,
//!   changed or removed website takes effect within seconds, and a removed
//!   region loses its schedule and queues (its workers then idle). Its position
//!   (`cron:offset`) is stored in Redis beside the schedule; when it is
//!   missing (new or flushed Redis) the schedule is rebuilt from a
//!   consistent Postgres snapshot and following resumes after its sequence.
//! - claimer: queues due checks, pausing a region whose queue is full
//!   (back-pressure: queued jobs are never trimmed), and samples the
//!   queues' depth for the metrics every 2 s.
//! - reconciler: at start and on `CRON_RECONCILE` (default midnight UTC),
//!   compares Redis with the Postgres projection, repairs the difference and
//!   logs it.
//!
//! Any number of schedulers may run: claims are atomic and applying an
//! event is guarded by the website's sequence.

pub mod schedule;
pub mod store;

use crate::bus::Bus;
use crate::config::CronConfig;
use crate::runtime::{pause, Backoff};
use crate::Deps;
use anyhow::Context;
use chrono::Utc;
use events::subject::MONITOR_STREAM;
use events::{DecodeError, Envelope, Event};
use projections::postgres::{self, PROJECTION};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use store::{Applied, Claim, OffsetMove, ScheduleStore, SiteChange};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub async fn serve(deps: Deps, config: CronConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    let store = ScheduleStore::new(deps.redis_connection(&cancel).await?);
    let Deps { bus, pool, .. } = deps;
    let mut tasks = tokio::task::JoinSet::new();
    let rebuilding = Arc::new(Mutex::new(()));
    tasks.spawn(follow(bus, pool.clone(), store.clone(), rebuilding.clone(), cancel.clone()));
    tasks.spawn(claim_loop(config.clone(), pool.clone(), store.clone(), rebuilding, cancel.clone()));
    tasks.spawn(reconcile_loop(config, pool, store, cancel.clone()));
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!(error = format!("{e:#}"), "scheduler task failed");
            result = Err(e);
            cancel.cancel();
        }
    }
    result
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// The schedule's offset, rebuilding the schedule first if it has none.
/// One rebuild at a time per process: whoever comes second finds the offset.
async fn offset_or_rebuild(store: &ScheduleStore, pool: &PgPool, rebuilding: &Mutex<()>) -> anyhow::Result<u64> {
    let _guard = rebuilding.lock().await;
    match store.offset().await? {
        Some(offset) => Ok(offset),
        None => rebuild(store, pool).await,
    }
}

/// Follows MONITOR into the schedule until cancelled.
async fn follow(
    bus: Bus,
    pool: PgPool,
    store: ScheduleStore,
    rebuilding: Arc<Mutex<()>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    crate::follow::supervise("schedule follower", &cancel, || async {
        let offset = offset_or_rebuild(&store, &pool, &rebuilding).await?;
        follow_from(&bus, &store, offset, &cancel).await
    })
    .await
}

/// Rebuilds the schedule from the Postgres projection, each website at its
/// next slot or at the slot just gone if the lost schedule missed it (the
/// latest status tells); returns the MONITOR sequence the snapshot
/// reflects.
pub async fn rebuild(store: &ScheduleStore, pool: &PgPool) -> anyhow::Result<u64> {
    let (offset, websites, regions) = postgres::websites_at_offset(pool, PROJECTION).await?;
    for region in &regions {
        store.add_region(region).await?;
    }
    let last_checked = projections::status::oldest_latest_checks(pool).await?;
    let last_checked = |id| last_checked.get(&id).and_then(|at| u64::try_from(at.timestamp_millis()).ok());
    let now = now_ms();
    let entries: Vec<_> = websites.into_iter().map(|w| (w.website, w.stream_seq)).collect();
    for chunk in entries.chunks(1000) {
        store.upsert_many(chunk, now, last_checked).await?;
    }
    store.set_offset(offset, true).await?;
    tracing::info!(offset, websites = entries.len(), regions = regions.len(), "schedule rebuilt from postgres");
    Ok(offset)
}

/// Applies MONITOR events after `offset`. Returns true when cancelled,
/// false when the schedule vanished and must be rebuilt.
async fn follow_from(
    bus: &Bus,
    store: &ScheduleStore,
    offset: u64,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut batches = crate::follow::after(bus, MONITOR_STREAM, offset, Some("monitor.>"), 256).await?;
    while let Some(batch) = batches.next(cancel).await? {
        let mut last = None;
        for (seq, message) in batch {
            match Envelope::from_json(&message.payload) {
                Ok(envelope) => apply(store, seq, &envelope.event).await?,
                Err(DecodeError::UnknownType(kind)) => tracing::debug!(seq, kind, "not a scheduling event"),
                Err(e) => return Err(e).with_context(|| format!("MONITOR sequence {seq}")),
            }
            last = Some(seq);
        }
        if let Some(seq) = last {
            if store.set_offset(seq, false).await? == OffsetMove::Missing {
                tracing::warn!("schedule offset vanished (redis flushed?); rebuilding");
                return Ok(false);
            }
            crate::metrics::reader_at("schedule", seq, batches.lag());
        }
    }
    Ok(true)
}

/// One event's effect on the schedule.
async fn apply(store: &ScheduleStore, seq: u64, event: &Event) -> anyhow::Result<()> {
    let now = now_ms();
    let applied = match event {
        Event::WebsiteAdded(e) => {
            let change = SiteChange {
                id: e.website_id,
                url: Some(e.url.to_string()),
                timeout_ms: Some(e.timeout_ms.get()),
                interval_seconds: Some(e.interval_seconds.get()),
                regions: Some(e.regions.clone()),
                paused: Some(false),
                check: Some(serde_json::to_string(&e.check.clone().unwrap_or_default())?),
            };
            store.upsert(&change, seq, now).await?
        }
        Event::WebsiteUpdated(e) => {
            let change = SiteChange {
                id: e.website_id,
                url: e.url.as_ref().map(|u| u.to_string()),
                timeout_ms: e.timeout_ms.map(|t| t.get()),
                interval_seconds: e.interval_seconds.map(|i| i.get()),
                regions: e.regions.clone(),
                paused: None,
                check: e.check.as_ref().map(serde_json::to_string).transpose()?,
            };
            store.upsert(&change, seq, now).await?
        }
        Event::WebsitePaused(e) => {
            store.upsert(&SiteChange { id: e.website_id, paused: Some(true), ..Default::default() }, seq, now).await?
        }
        Event::WebsiteResumed(e) => {
            store.upsert(&SiteChange { id: e.website_id, paused: Some(false), ..Default::default() }, seq, now).await?
        }
        Event::WebsiteRemoved(e) => {
            store.remove(e.website_id, seq).await?;
            Applied::Changed
        }
        Event::RegionAdded(e) => {
            store.region_added(&e.region).await?;
            Applied::Changed
        }
        Event::RegionRemoved(e) => {
            store.remove_region(&e.region).await?;
            tracing::info!(region = %e.region, "region removed: its schedule and queue are gone");
            Applied::Changed
        }
        // Not about the schedule.
        Event::CheckCompleted(_)
        | Event::SiteDown(_)
        | Event::SiteUp(_)
        | Event::TokenCreated(_)
        | Event::TokenRevoked(_)
        | Event::ChannelAdded(_)
        | Event::ChannelUpdated(_)
        | Event::ChannelDisabled(_)
        | Event::ChannelRemoved(_)
        | Event::MaintenanceScheduled(_)
        | Event::MaintenanceUpdated(_)
        | Event::MaintenanceEnded(_)
        | Event::MaintenanceRemoved(_)
        | Event::CertificateExpiring(_)
        | Event::StatusPageCreated(_)
        | Event::StatusPageUpdated(_)
        | Event::StatusPageRemoved(_)
        | Event::StatusSubscriberAdded(_)
        | Event::StatusSubscriberConfirmed(_)
        | Event::StatusSubscriberRemoved(_)
        | Event::IncidentUpdatePosted(_) => Applied::AlreadyApplied,
    };
    if applied == Applied::Unknown {
        tracing::warn!(seq, "change for a website the schedule does not know; reconciliation will repair it");
    }
    Ok(())
}

/// The pause between two rounds of claims that found less than a batch. A
/// check is queued by the first round after its time, so it waits up to
/// this long, and the checks started in a second are those of the rounds
/// that fall in it: at 100 ms, up to a tenth of a second's checks slipped
/// into the next one.
const CLAIM_EVERY: Duration = Duration::from_millis(25);

/// Queues due checks of every region until cancelled. Also notices a
/// flushed Redis (no offset) and rebuilds the schedule at once, rather than
/// waiting for the next event or the daily reconciliation.
async fn claim_loop(
    config: CronConfig,
    pool: PgPool,
    store: ScheduleStore,
    rebuilding: Arc<Mutex<()>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut regions = Vec::new();
    let mut regions_read = tokio::time::Instant::now() - Duration::from_secs(60);
    let mut had_schedule = false;
    let mut full_warned: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut queued_since_report = 0u64;
    let mut last_report = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !cancel.is_cancelled() {
        let round = async {
            if regions_read.elapsed() >= Duration::from_secs(2) {
                if store.offset().await?.is_none() {
                    if had_schedule {
                        tracing::warn!("schedule is gone (redis flushed?); rebuilding from postgres");
                    }
                    offset_or_rebuild(&store, &pool, &rebuilding).await?;
                }
                had_schedule = true;
                regions = store.regions().await?;
                regions_read = tokio::time::Instant::now();
                for region in &regions {
                    let (length, pending) = store.queue_depth(region).await?;
                    crate::metrics::queue_depth(region.as_str(), length, pending);
                }
            }
            let mut busy = false;
            for region in &regions {
                match store.claim(region, now_ms(), config.batch, config.max_queue).await? {
                    Claim::Queued(n) => {
                        queued_since_report += n;
                        busy |= n as usize >= config.batch;
                    }
                    Claim::QueueFull => {
                        let warned = full_warned.get(region.as_str());
                        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
                            tracing::warn!(%region, max_queue = config.max_queue, "queue full: holding due checks until workers catch up");
                            full_warned.insert(region.to_string(), tokio::time::Instant::now());
                        }
                    }
                }
            }
            Ok::<bool, anyhow::Error>(busy)
        };
        match round.await {
            Ok(busy) => {
                backoff.reset();
                if !busy && !pause(CLAIM_EVERY, &cancel).await {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), retry_in = ?backoff.delay(), "claiming due checks failed");
                if !backoff.wait(&cancel).await {
                    break;
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            tracing::info!(queued = queued_since_report, "checks queued in the last minute");
            queued_since_report = 0;
            last_report = tokio::time::Instant::now();
        }
    }
    Ok(())
}

/// Reconciles at start and then on the configured schedule.
async fn reconcile_loop(
    config: CronConfig,
    pool: PgPool,
    store: ScheduleStore,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match reconcile(&store, &pool).await {
            Ok(report) => tracing::info!(
                added = report.added,
                removed = report.removed,
                repaired = report.repaired,
                "schedule reconciled with postgres"
            ),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "reconciliation failed; next run will retry"),
        }
        let Some(next) = config.reconcile.upcoming(Utc).next() else {
            return Ok(());
        };
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !pause(wait, &cancel).await {
            return Ok(());
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciliation {
    /// Websites in Postgres the schedule had lost.
    pub added: usize,
    /// Websites scheduled that Postgres no longer has.
    pub removed: usize,
    /// Missing per-region entries of known websites.
    pub repaired: usize,
}

/// Compares the schedule with the Postgres projection and repairs it. Only
/// differences both sides have had time to see are acted on: a website is
/// added back only if the schedule has followed past its last event, and
/// dropped only if Postgres has applied past the schedule's last event of it.
pub async fn reconcile(store: &ScheduleStore, pool: &PgPool) -> anyhow::Result<Reconciliation> {
    let Some(schedule_offset) = store.offset().await? else {
        // No schedule yet: the follower (or the claimer, after a flush)
        // builds it from the same snapshot; building it here too would only
        // repeat the work.
        return Ok(Reconciliation::default());
    };
    let (pg_offset, websites, regions) = postgres::websites_at_offset(pool, PROJECTION).await?;
    for region in &regions {
        store.add_region(region).await?;
    }
    let sites = store.sites().await?;
    let now = now_ms();
    let mut report = Reconciliation::default();
    let mut known = HashSet::with_capacity(websites.len());
    let mut lost = Vec::new();
    for stored in websites {
        let id = stored.website.id;
        known.insert(id);
        match sites.get(&id) {
            None if stored.stream_seq <= schedule_offset => lost.push((stored.website, stored.stream_seq)),
            Some(site) if !site.removed && !stored.website.paused && site.seq == stored.stream_seq => {
                for region in &stored.website.regions {
                    if store.ensure_due(id, region.as_str(), now).await? {
                        report.repaired += 1;
                    }
                }
            }
            _ => {}
        }
    }
    report.added = lost.len();
    for chunk in lost.chunks(1000) {
        store.upsert_many(chunk, now, |_| None).await?;
    }
    for (id, site) in &sites {
        if !known.contains(id) && site.seq <= pg_offset {
            store.forget(*id, &site.regions).await?;
            if !site.removed {
                report.removed += 1;
            }
        }
    }
    Ok(report)
}
