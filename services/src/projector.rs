//! The projector: follows the MONITOR stream and applies it to the Postgres
//! projection.
//!
//! The cursor lives in Postgres, committed with the writes it covers
//! (`projection_offsets`), not in a JetStream consumer: the projector reads
//! its position, opens an ordered consumer at the next sequence, and applies
//! whatever is ready in one transaction per batch. A crash loses the open
//! transaction and nothing else; the restart resumes at the committed
//! position, so no event is applied twice or skipped. A replay resets the
//! position to 0 and a running projector follows it.

use crate::bus::Bus;
use crate::runtime::pause;
use anyhow::Context;
use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use events::{DecodeError, Envelope};
use futures::StreamExt;
use projections::postgres::{self, BatchOutcome, StreamEvent, PROJECTION};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// At most this many events go into one transaction.
const MAX_BATCH: usize = 512;

/// Why one pass over the stream ended.
enum Pass {
    Cancelled,
    /// The projection reached the requested sequence.
    Reached,
    /// Someone else moved the cursor; start again from the stored one.
    Moved,
}

/// Runs until `cancel` fires, restarting with backoff after any error.
pub async fn run(bus: Bus, pool: PgPool, cancel: CancellationToken) -> anyhow::Result<()> {
    tracing::info!("projector following MONITOR");
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&bus, &pool, None, &cancel).await {
            Ok(Pass::Cancelled) => return Ok(()),
            Ok(Pass::Reached) | Ok(Pass::Moved) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), retry_in = ?backoff, "projector pass failed");
                if !pause(backoff, &cancel).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Empties the projection and rebuilds it from sequence 1 up to the stream's
/// last sequence at the time of the call. Returns that sequence.
pub async fn replay(bus: &Bus, pool: &PgPool, cancel: &CancellationToken) -> anyhow::Result<u64> {
    let mut stream = bus.monitor_stream().await?;
    let target = stream.info().await.context("reading MONITOR info")?.state.last_sequence;
    postgres::reset(pool, PROJECTION).await?;
    tracing::info!(target, "projection reset; replaying MONITOR");
    loop {
        if postgres::offset(pool, PROJECTION).await? >= target {
            return Ok(target);
        }
        match follow(bus, pool, Some(target), cancel).await? {
            Pass::Cancelled => anyhow::bail!("replay cancelled"),
            Pass::Reached | Pass::Moved => {}
        }
    }
}

/// One pass: from the stored cursor to `until` (or forever).
async fn follow(
    bus: &Bus,
    pool: &PgPool,
    until: Option<u64>,
    cancel: &CancellationToken,
) -> anyhow::Result<Pass> {
    let mut cursor = postgres::offset(pool, PROJECTION).await?;
    if until.is_some_and(|target| cursor >= target) {
        return Ok(Pass::Reached);
    }
    let stream = bus.monitor_stream().await?;
    let deliver_policy = if cursor == 0 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence { start_sequence: cursor + 1 }
    };
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy, ..Default::default() })
        .await
        .context("creating ordered consumer")?;
    let mut batches = consumer
        .messages()
        .await
        .context("opening message stream")?
        .ready_chunks(MAX_BATCH);
    loop {
        let batch = tokio::select! {
            _ = cancel.cancelled() => return Ok(Pass::Cancelled),
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else {
            anyhow::bail!("message stream ended");
        };
        let mut items = Vec::with_capacity(batch.len());
        for message in batch {
            let message = message.context("receiving")?;
            let seq = message.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?.stream_sequence;
            let envelope = match Envelope::from_json(&message.payload) {
                Ok(envelope) => Some(envelope),
                Err(DecodeError::UnknownType(kind)) => {
                    tracing::warn!(seq, kind, "skipping event type this build does not know");
                    None
                }
                // The stream is the system of record: a broken event stops the
                // projection loudly instead of being skipped.
                Err(e @ DecodeError::Malformed(_)) => {
                    return Err(e).with_context(|| format!("MONITOR sequence {seq}"));
                }
            };
            items.push(StreamEvent { seq, envelope });
        }
        match postgres::apply_batch(pool, PROJECTION, cursor, &items).await? {
            BatchOutcome::Applied { offset } => {
                tracing::debug!(offset, events = items.len(), "applied");
                cursor = offset;
            }
            BatchOutcome::Moved { offset } => {
                tracing::info!(from = cursor, to = offset, "projection moved by another writer; resuming there");
                return Ok(Pass::Moved);
            }
        }
        if until.is_some_and(|target| cursor >= target) {
            return Ok(Pass::Reached);
        }
    }
}

/// Waits until the projection has applied `seq`, up to `timeout`. Returns
/// whether it did.
pub async fn wait_for(pool: &PgPool, seq: u64, timeout: Duration) -> Result<bool, projections::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(2);
    loop {
        if postgres::offset(pool, PROJECTION).await? >= seq {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
