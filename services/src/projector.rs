//! The projector: follows the streams into the read models.
//!
//! Postgres projections (websites/regions from MONITOR, latest status from
//! CHECKS) keep their cursor in Postgres, committed with the writes it
//! covers (`projection_offsets`), not in a JetStream consumer: a pass reads
//! the position, opens an ordered consumer at the next sequence, and applies
//! whatever is ready in one transaction per batch. A crash loses the open
//! transaction and nothing else; the restart resumes at the committed
//! position, so no event is applied twice or skipped. A replay resets the
//! position to 0 and a running projector follows it.
//!
//! InfluxDB cannot commit a cursor with its writes, so it uses a durable
//! JetStream consumer instead and acknowledges a batch only after InfluxDB
//! accepted it; a redelivered batch rewrites the same points.

use crate::bus::Bus;
use crate::config::ProjectorConfig;
use crate::follow;
use crate::Deps;
use anyhow::Context;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use events::subject::{CHECKS_STREAM, MONITOR_STREAM};
use events::{DecodeError, Envelope, Event};
use futures::StreamExt;
use projections::cursor;
use projections::influx::Influx;
use projections::postgres::{self, BatchOutcome, StreamEvent};
use projections::status;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events per transaction during a replay.
const MAX_BATCH: usize = 5000;
/// The durable consumer feeding InfluxDB.
pub const INFLUX_CONSUMER: &str = "influx-checks";

/// Which Postgres projection a pass drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Websites and regions, from MONITOR.
    Monitor,
    /// Latest status per (website, region), from CHECKS.
    Status,
}

impl Projection {
    pub fn name(self) -> &'static str {
        match self {
            Projection::Monitor => postgres::PROJECTION,
            Projection::Status => status::PROJECTION,
        }
    }

    fn stream(self) -> &'static str {
        match self {
            Projection::Monitor => MONITOR_STREAM,
            Projection::Status => CHECKS_STREAM,
        }
    }

    async fn apply(self, pool: &PgPool, cursor: u64, batch: &[StreamEvent]) -> projections::Result<BatchOutcome> {
        match self {
            Projection::Monitor => postgres::apply_batch(pool, self.name(), cursor, batch).await,
            Projection::Status => status::apply_batch(pool, cursor, batch).await,
        }
    }

    async fn reset(self, pool: &PgPool) -> projections::Result<()> {
        match self {
            Projection::Monitor => postgres::reset(pool, self.name()).await,
            Projection::Status => status::reset(pool).await,
        }
    }
}

/// Why one pass over the stream ended.
enum Pass {
    Cancelled,
    /// The projection reached the requested sequence.
    Reached,
    /// Someone else moved the cursor; start again from the stored one.
    Moved,
}

/// Runs every projection until `cancel` fires.
pub async fn serve(deps: Deps, config: ProjectorConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    let Deps { bus, pool, influx, .. } = deps;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run(bus.clone(), pool.clone(), Projection::Monitor, config.batch, cancel.clone()));
    tasks.spawn(run(bus.clone(), pool, Projection::Status, config.batch, cancel.clone()));
    tasks.spawn(run_influx(bus, influx, config.batch, cancel.clone()));
    while let Some(joined) = tasks.join_next().await {
        joined.context("projection task panicked")??;
    }
    Ok(())
}

/// Runs one Postgres projection until `cancel` fires, restarting with
/// backoff after any error.
pub async fn run(
    bus: Bus,
    pool: PgPool,
    projection: Projection,
    batch: usize,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(projection = projection.name(), "projector following {}", projection.stream());
    follow::supervise(projection.name(), &cancel, || async {
        Ok(matches!(pass(&bus, &pool, projection, None, batch, &cancel).await?, Pass::Cancelled))
    })
    .await
}

/// Empties a Postgres projection and rebuilds it from sequence 1 up to the
/// stream's last sequence at the time of the call. Returns that sequence.
pub async fn replay(
    bus: &Bus,
    pool: &PgPool,
    projection: Projection,
    cancel: &CancellationToken,
) -> anyhow::Result<u64> {
    let mut stream = bus.js.get_stream(projection.stream()).await.context("opening stream")?;
    let target = stream.info().await.context("reading stream info")?.state.last_sequence;
    projection.reset(pool).await?;
    tracing::info!(projection = projection.name(), target, "projection reset; replaying");
    loop {
        if cursor::offset(pool, projection.name()).await? >= target {
            return Ok(target);
        }
        match pass(bus, pool, projection, Some(target), MAX_BATCH, cancel).await? {
            Pass::Cancelled => anyhow::bail!("replay cancelled"),
            Pass::Reached | Pass::Moved => {}
        }
    }
}

/// One pass: from the stored cursor to `until` (or forever).
async fn pass(
    bus: &Bus,
    pool: &PgPool,
    projection: Projection,
    until: Option<u64>,
    max_batch: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<Pass> {
    let mut cursor = cursor::offset(pool, projection.name()).await?;
    if until.is_some_and(|target| cursor >= target) {
        return Ok(Pass::Reached);
    }
    let mut batches = follow::after(bus, projection.stream(), cursor, None, max_batch).await?;
    while let Some(batch) = batches.next(cancel).await? {
        let mut items = Vec::with_capacity(batch.len());
        for (seq, message) in batch {
            items.push(StreamEvent { seq, envelope: decode(projection.stream(), seq, &message.payload)? });
        }
        match projection.apply(pool, cursor, &items).await? {
            BatchOutcome::Applied { offset } => {
                tracing::debug!(projection = projection.name(), offset, events = items.len(), "applied");
                cursor = offset;
            }
            BatchOutcome::Moved { offset } => {
                tracing::info!(
                    projection = projection.name(),
                    from = cursor,
                    to = offset,
                    "projection moved by another writer; resuming there"
                );
                return Ok(Pass::Moved);
            }
        }
        if until.is_some_and(|target| cursor >= target) {
            return Ok(Pass::Reached);
        }
    }
    Ok(Pass::Cancelled)
}

/// Decodes one message; `None` for an event type this build does not know.
/// A malformed event stops the projection loudly: the streams are the
/// system of record and skipping would silently lose data.
fn decode(stream: &str, seq: u64, payload: &[u8]) -> anyhow::Result<Option<Envelope>> {
    match Envelope::from_json(payload) {
        Ok(envelope) => Ok(Some(envelope)),
        Err(DecodeError::UnknownType(kind)) => {
            tracing::warn!(stream, seq, kind, "skipping event type this build does not know");
            Ok(None)
        }
        Err(e @ DecodeError::Malformed(_)) => Err(e).with_context(|| format!("{stream} sequence {seq}")),
    }
}

/// Feeds CHECKS into InfluxDB until cancelled, restarting after errors.
pub async fn run_influx(bus: Bus, influx: Influx, batch: usize, cancel: CancellationToken) -> anyhow::Result<()> {
    tracing::info!("projector following CHECKS into influxdb");
    follow::supervise("influxdb projection", &cancel, || async {
        follow_influx(&bus, &influx, batch, &cancel).await.map(|()| true)
    })
    .await
}

fn influx_consumer_config() -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(INFLUX_CONSUMER.into()),
        description: Some("CHECKS into InfluxDB; acknowledged after each write".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::All,
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 100_000,
        ..Default::default()
    }
}

async fn follow_influx(bus: &Bus, influx: &Influx, max_batch: usize, cancel: &CancellationToken) -> anyhow::Result<()> {
    influx.ensure_database().await?;
    let stream = bus.js.get_stream(CHECKS_STREAM).await.context("opening CHECKS")?;
    let consumer = stream
        .get_or_create_consumer(INFLUX_CONSUMER, influx_consumer_config())
        .await
        .context("creating the influxdb consumer")?;
    let mut batches = consumer.messages().await.context("opening message stream")?.ready_chunks(max_batch);
    loop {
        let batch = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            batch = batches.next() => batch,
        };
        let Some(batch) = batch else { anyhow::bail!("message stream ended") };
        let mut messages = Vec::with_capacity(batch.len());
        for message in batch {
            messages.push(message.map_err(|e| anyhow::anyhow!("receiving: {e}"))?);
        }
        let mut envelopes = Vec::with_capacity(messages.len());
        for message in &messages {
            let seq = message.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?.stream_sequence;
            envelopes.extend(decode(CHECKS_STREAM, seq, &message.payload)?);
        }
        let checks: Vec<_> = envelopes
            .iter()
            .filter_map(|e| match &e.event {
                Event::CheckCompleted(check) => Some(check),
                _ => None,
            })
            .collect();
        influx.write(&checks).await?;
        // AckPolicy::All: acknowledging the last acknowledges the batch.
        if let Some(last) = messages.last() {
            last.ack().await.map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
        }
    }
}

/// Rebuilds InfluxDB from CHECKS: drops the points and restarts the
/// consumer from the first retained check.
pub async fn replay_influx(bus: &Bus, influx: &Influx) -> anyhow::Result<()> {
    influx.ensure_database().await?;
    influx.drop_checks().await?;
    let stream = bus.js.get_stream(CHECKS_STREAM).await.context("opening CHECKS")?;
    match stream.delete_consumer(INFLUX_CONSUMER).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => return Err(anyhow::anyhow!("deleting the influxdb consumer: {e}")),
    }
    tracing::info!("influxdb dropped; the projector re-reads CHECKS from its first retained message");
    Ok(())
}
