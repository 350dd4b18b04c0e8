//! A regional worker. Reads due checks from `checks:<region>` through the
//! `workers` consumer group, runs up to `WORKER_CONCURRENCY` checks at once,
//! and hands each result (a CheckCompleted) to the [`batch::Batcher`],
//! which stores the results that are ready as one message and only then
//! XACKs (and XDELs) their jobs. A check's place among those at once is
//! free as soon as its result is handed over: a slow store (a disk busy
//! with something else delaying JetStream's fsync) holds up results, not
//! the checks due meanwhile, up to [`batch::STORING`] results waiting.
//!
//! Nothing is lost when a worker dies: its jobs stay pending and, once idle
//! for `WORKER_RECLAIM_IDLE_MS`, another worker takes them over with
//! XAUTOCLAIM and checks them again. The event id is derived from (website,
//! region, scheduled time), so a result stored twice (stored, then the
//! worker died before acknowledging) is the same event twice, which every
//! reader takes once. A job delivered `WORKER_MAX_DELIVERIES` times goes to
//! `checks:dead:<region>` and is logged.
//!
//! A worker of a removed region (RegionRemoved: the scheduler marks it in
//! `regions:removed` and deletes its queue) stops reading within about two
//! seconds and idles, without exiting (the all-in-one run would stop with
//! it, and a supervisor would only restart it); if the region is added
//! again, it picks up where it stopped.

pub mod batch;
pub mod check;

use crate::config::WorkerConfig;
use crate::queue::{self, Job, GROUP};
use crate::runtime::Backoff;
use crate::Deps;
use anyhow::Context;
use check::{CheckOutcome, Checker, CheckerOptions};
use chrono::Utc;
use events::check::CheckSpec;
use events::{CheckCompleted, RegionName};
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Everything a check task needs, shared.
struct Shared {
    region: RegionName,
    key: String,
    acks: ConnectionManager,
    batcher: batch::Batcher,
    /// Places of results handed over and not yet stored.
    storing: Arc<Semaphore>,
    checker: Checker,
    sealer: crate::secrets::Sealer,
}

/// How long checks in flight may take to finish after a shutdown request;
/// well inside the process's own shutdown grace.
const DRAIN: Duration = Duration::from_secs(5);

/// Checks the queue of `settings.region` until cancelled.
pub async fn serve(deps: Deps, settings: WorkerConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let region =
        settings.region.clone().context("REGION is not set: a worker checks from one region (e.g. REGION=local)")?;
    let checker =
        Checker::new(CheckerOptions { allow_private_targets: settings.allow_private_targets, ..Default::default() })
            .context("building the HTTP client")?;
    // Blocking reads get a connection of their own, so acks never queue
    // behind an XREADGROUP ... BLOCK.
    let mut reads = deps.redis_connection(&cancel).await?;
    let acks = deps.redis_connection(&cancel).await?;
    let sealer = deps.sealer;
    let bus = deps.bus;
    let key = queue::checks_key(&region);
    if !queue::is_region_removed(&mut reads, &region).await? {
        ensure_group(&mut reads, &key).await?;
    }
    let consumer = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let batcher = batch::Batcher::start(bus, region.clone(), key.clone(), acks.clone());
    let storing = Arc::new(Semaphore::new(batch::STORING));
    let shared = Arc::new(Shared { region: region.clone(), key: key.clone(), acks, batcher, storing, checker, sealer });
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    tracing::info!(%region, consumer, concurrency = settings.concurrency, "worker reading {key}");

    let reclaim_every = (settings.reclaim_idle / 2).max(Duration::from_millis(100));
    let mut last_reclaim = tokio::time::Instant::now();
    let mut removed = RemovedWatch::default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !cancel.is_cancelled() {
        let step = async {
            if removed.check(&mut reads, &region, &key).await? {
                crate::runtime::pause(REMOVED_POLL, &cancel).await;
                return Ok(());
            }
            // While results cannot be stored, reclaimed jobs would fail
            // again and only move closer to the dead letters.
            if last_reclaim.elapsed() >= reclaim_every && !shared.batcher.failing() {
                last_reclaim = tokio::time::Instant::now();
                reclaim(&shared, &mut reads, &consumer, &settings, &permits).await?;
            }
            // Wait for room before reading, so jobs are never taken from the
            // group just to sit in this process.
            let permit = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                permit = permits.clone().acquire_owned() => permit?,
            };
            let room = permits.available_permits() + 1;
            let options = StreamReadOptions::default().group(GROUP, &consumer).count(room).block(1000);
            let reply: Option<StreamReadReply> = reads.xread_options(&[&key], &[">"], &options).await?;
            let entries: Vec<StreamId> = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
            let mut permit = Some(permit);
            for entry in entries {
                let permit = match permit.take() {
                    Some(p) => p,
                    None => permits.clone().acquire_owned().await?,
                };
                let shared = shared.clone();
                tokio::spawn(async move { process(&shared, entry, permit).await });
            }
            Ok::<(), anyhow::Error>(())
        };
        match step.await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(%region, error = format!("{e:#}"), retry_in = ?backoff.delay(), "worker step failed");
                // A flushed Redis loses the group too; recreate it (a no-op
                // when it exists), unless the region was removed (its queue
                // was deleted on purpose; the next step notices).
                let gone = queue::is_region_removed(&mut reads, &region).await.unwrap_or(false);
                if gone {
                    removed.expire();
                } else if let Err(e) = ensure_group(&mut reads, &key).await {
                    tracing::warn!(%region, error = format!("{e:#}"), "recreating the consumer group failed");
                }
                if !backoff.wait(&cancel).await {
                    break;
                }
            }
        }
    }
    // Let checks in flight finish and their results be stored; what does
    // not finish in time stays pending and is reclaimed by another worker.
    let all = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(DRAIN, async {
        let _checked = permits.acquire_many(all(settings.concurrency)).await;
        let _stored = shared.storing.acquire_many(all(batch::STORING)).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(%region, "stopped with checks still in flight; they will be reclaimed");
    }
    Ok(())
}

/// How often a worker asks whether its region was removed, and how long it
/// waits between asks while it is.
const REMOVED_POLL: Duration = Duration::from_secs(1);

/// Whether the worker's region is removed, asked at most every
/// [`REMOVED_POLL`].
#[derive(Default)]
struct RemovedWatch {
    asked: Option<tokio::time::Instant>,
    removed: bool,
}

impl RemovedWatch {
    /// Whether the region is removed now. Logs the changes, and recreates
    /// the consumer group when the region comes back.
    async fn check(&mut self, conn: &mut ConnectionManager, region: &RegionName, key: &str) -> anyhow::Result<bool> {
        if self.asked.is_some_and(|at| at.elapsed() < REMOVED_POLL) {
            return Ok(self.removed);
        }
        let removed = queue::is_region_removed(conn, region).await?;
        self.asked = Some(tokio::time::Instant::now());
        match (self.removed, removed) {
            (false, true) => tracing::info!(%region, "region removed: this worker stops checking"),
            (true, false) => {
                ensure_group(conn, key).await?;
                tracing::info!(%region, "region added again: this worker checks again");
            }
            _ => {}
        }
        self.removed = removed;
        Ok(removed)
    }

    /// Asks again at the next check.
    fn expire(&mut self) {
        self.asked = None;
    }
}

/// Creates the consumer group (and the stream) unless it exists.
pub async fn ensure_group(conn: &mut ConnectionManager, key: &str) -> anyhow::Result<()> {
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(key, GROUP, "0").await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating group {GROUP} on {key}")),
    }
}

/// Dead-letters jobs delivered too often, then takes over the rest of the
/// jobs other workers left idle.
async fn reclaim(
    shared: &Arc<Shared>,
    conn: &mut ConnectionManager,
    consumer: &str,
    settings: &WorkerConfig,
    permits: &Arc<Semaphore>,
) -> anyhow::Result<()> {
    let idle_ms = u64::try_from(settings.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
    let pending: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&shared.key)
        .arg(GROUP)
        .arg("IDLE")
        .arg(idle_ms)
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(conn)
        .await?;
    let exhausted: Vec<&str> =
        pending.ids.iter().filter(|p| p.times_delivered >= settings.max_deliveries).map(|p| p.id.as_str()).collect();
    if !exhausted.is_empty() {
        let claimed: redis::streams::StreamClaimReply =
            conn.xclaim(&shared.key, GROUP, consumer, idle_ms, &exhausted).await?;
        for entry in claimed.ids {
            dead_letter(shared, conn, &entry, &format!("failed {} deliveries", settings.max_deliveries)).await?;
        }
    }
    let mut start = "0-0".to_owned();
    loop {
        let options = StreamAutoClaimOptions::default().count(100);
        let reply: StreamAutoClaimReply =
            conn.xautoclaim_options(&shared.key, GROUP, consumer, idle_ms, &start, options).await?;
        if !reply.claimed.is_empty() {
            tracing::info!(region = %shared.region, jobs = reply.claimed.len(), "reclaimed jobs of a silent worker");
        }
        for entry in reply.claimed {
            let permit = permits.clone().acquire_owned().await?;
            let shared = shared.clone();
            tokio::spawn(async move { process(&shared, entry, permit).await });
        }
        if reply.next_stream_id == "0-0" {
            return Ok(());
        }
        start = reply.next_stream_id;
    }
}

async fn dead_letter(
    shared: &Shared,
    conn: &mut ConnectionManager,
    entry: &StreamId,
    reason: &str,
) -> anyhow::Result<()> {
    let mut fields: Vec<(String, String)> =
        entry.map.iter().map(|(k, v)| (k.clone(), redis::from_redis_value::<String>(v).unwrap_or_default())).collect();
    fields.push(("reason".into(), reason.into()));
    fields.push(("original_id".into(), entry.id.clone()));
    let dead_key = queue::dead_key(&shared.region);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .xadd(&dead_key, "*", &fields)
        .ignore()
        .xack(&shared.key, GROUP, &[&entry.id])
        .ignore()
        .xdel(&shared.key, &[&entry.id])
        .ignore();
    pipe.query_async::<()>(conn).await?;
    tracing::error!(region = %shared.region, job = entry.id, reason, "job moved to {dead_key}");
    Ok(())
}

/// Checks one job and hands the result to the batcher, which stores it and
/// then acknowledges the job. Any failure leaves the job pending, to be
/// reclaimed and checked again. `checking` is the job's place among the
/// checks at once, given up once the result has a place among those being
/// stored.
async fn process(shared: &Shared, entry: StreamId, checking: OwnedSemaphorePermit) {
    let job = match Job::from_fields(&entry.map) {
        Ok(job) => job,
        Err(reason) => {
            let mut conn = shared.acks.clone();
            if let Err(e) = dead_letter(shared, &mut conn, &entry, &format!("malformed job: {reason}")).await {
                tracing::warn!(error = format!("{e:#}"), "could not dead-letter a malformed job");
            }
            return;
        }
    };
    let timeout = Duration::from_millis(u64::from(job.timeout_ms));
    let outcome = match settings(shared, &job).await {
        Ok((spec, secrets)) => shared.checker.check_with(&job.url, timeout, &spec, &secrets).await,
        Err(reason) => CheckOutcome {
            started_at: Utc::now(),
            up: false,
            status_code: None,
            response_ms: None,
            cause: Some(events::FailureCause::Other),
            message: Some(reason),
            cert_not_after: None,
        },
    };
    let check = completed(&job, &shared.region, outcome);
    // Never closed: the worker owns it for as long as it runs.
    let Ok(_storing) = shared.storing.clone().acquire_owned().await else { return };
    drop(checking);
    if !shared.batcher.store(check, entry.id).await {
        tracing::debug!(website_id = %job.website_id, "the result was not stored; the job will be retried");
    }
}

/// The job's check settings and its secret header values, opened.
async fn settings(shared: &Shared, job: &Job) -> Result<(CheckSpec, Vec<(String, String)>), String> {
    let spec: CheckSpec = if job.check.is_empty() {
        CheckSpec::default()
    } else {
        serde_json::from_str(&job.check).map_err(|e| format!("unreadable check settings: {e}"))?
    };
    let secrets = match &spec.sealed_headers {
        None => Vec::new(),
        Some(sealed) => {
            let plain =
                shared.sealer.open(sealed).await.map_err(|e| format!("the secret headers cannot be opened: {e}"))?;
            serde_json::from_slice(&plain).map_err(|e| format!("unreadable secret headers: {e}"))?
        }
    };
    Ok((spec, secrets))
}

/// The CheckCompleted of a job's outcome.
pub fn completed(job: &Job, region: &RegionName, outcome: CheckOutcome) -> CheckCompleted {
    let scheduled_at = job.scheduled_at();
    CheckCompleted {
        website_id: job.website_id,
        region: region.clone(),
        scheduled_at,
        started_at: outcome.started_at,
        up: outcome.up,
        status_code: outcome.status_code,
        response_ms: outcome.response_ms,
        cause: outcome.cause,
        message: outcome.message,
        cert_not_after: outcome.cert_not_after,
    }
}
