//! The one runner of every [`Handler`]: the Postgres projections, the
//! detector and the notifier's planner are all driven by it.
//!
//! A pass reads the handler's position, opens an ordered consumer after it
//! ([`follow::after`]), and per batch of whatever is ready: decodes it, then
//! in one transaction locks the position row, stops the pass if the row no
//! longer holds the position the pass started from (a replay or a second
//! reader moved it; the next pass starts from the row), lets the handler
//! apply the events, stores the new position and commits. A crash loses the
//! open transaction and nothing else: no event is applied twice or skipped.
//!
//! Decoding policy, shared with the InfluxDB feed ([`decode`]): an event
//! type this build does not know (written by a newer build) is skipped and
//! logged once per type per process; a malformed event stops the reader
//! with a loud error, since the streams are the system of record and
//! skipping would silently lose data. Errors are retried with backoff
//! ([`follow::supervise`]).

use crate::bus::Bus;
use crate::follow;
use anyhow::Context;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use events::{DecodeError, Envelope};
use projections::cursor;
use projections::handler::{Handler, StreamEvent};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Events per transaction during a replay, at most: a replay reads as fast
/// as it can, and fewer, larger transactions write less (the latest status
/// keeps one row per website and region however many results a batch has).
pub const REPLAY_BATCH: usize = 100_000;
/// Messages a replay gathers before applying them.
const REPLAY_MESSAGES: usize = 20_000;

/// Runs `handler` until `cancel` fires, restarting with backoff after any
/// error; batches hold at most `max_batch` events.
pub async fn run<H: Handler>(
    bus: Bus,
    pool: PgPool,
    handler: H,
    max_batch: usize,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(handler = H::NAME, "following {}", H::STREAM);
    follow::supervise(H::NAME, &cancel, || async {
        Ok(matches!(pass(&bus, &pool, &handler, None, max_batch, &cancel).await?, Pass::Cancelled))
    })
    .await
}

/// Empties what `handler` wrote and runs it from the start of its stream
/// up to the stream's last sequence (on its subjects) at the time of the
/// call; returns that sequence. A running reader of the same name notices
/// the reset and follows.
pub async fn replay<H: Handler>(
    bus: &Bus,
    pool: &PgPool,
    handler: &H,
    cancel: &CancellationToken,
) -> anyhow::Result<u64> {
    let target = last_sequence::<H>(bus).await?;
    reset(pool, handler).await?;
    tracing::info!(handler = H::NAME, target, "reset; replaying");
    loop {
        if cursor::offset(pool, H::NAME).await? >= target {
            return Ok(target);
        }
        match pass(bus, pool, handler, Some(target), REPLAY_BATCH, cancel).await? {
            Pass::Cancelled => anyhow::bail!("replay of {} cancelled", H::NAME),
            Pass::Reached | Pass::Moved => {}
        }
    }
}

/// Empties what `handler` wrote and moves it back to the start of its
/// stream, in one transaction.
pub async fn reset<H: Handler>(pool: &PgPool, handler: &H) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // Lock the position first so a reader mid-batch finishes (or waits)
    // before its rows are emptied under it.
    cursor::lock(&mut tx, H::NAME).await?;
    handler.reset(&mut tx).await.with_context(|| format!("resetting {}", H::NAME))?;
    cursor::store(&mut tx, H::NAME, 0).await?;
    tx.commit().await?;
    Ok(())
}

/// The last sequence of the handler's stream, or of its subjects when it
/// reads only some (0: none yet).
async fn last_sequence<H: Handler>(bus: &Bus) -> anyhow::Result<u64> {
    let mut stream = bus.js.get_stream(H::STREAM).await.with_context(|| format!("opening stream {}", H::STREAM))?;
    let Some(subjects) = H::FILTER else {
        return Ok(stream.info().await.context("reading stream info")?.state.last_sequence);
    };
    match stream.get_last_raw_message_by_subject(subjects).await {
        Ok(message) => Ok(message.sequence),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading the last message on {subjects}")),
    }
}

/// Why one pass over the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Cancelled,
    /// The handler reached the requested sequence.
    Reached,
    /// Someone else moved the position; start again from the stored one.
    Moved,
}

/// What became of one batch.
enum Batch {
    /// Applied; the handler now stands at `offset`.
    Applied { offset: u64 },
    /// The position row holds `offset`, not the position the pass had.
    Moved { offset: u64 },
}

/// One pass: from the stored position to `until` (or until cancelled).
async fn pass<H: Handler>(
    bus: &Bus,
    pool: &PgPool,
    handler: &H,
    until: Option<u64>,
    max_batch: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<Pass> {
    let name = H::NAME;
    let mut position = cursor::offset(pool, name).await?;
    if until.is_some_and(|target| position >= target) {
        return Ok(Pass::Reached);
    }
    let mut batches = follow::after(bus, H::STREAM, position, H::FILTER, max_batch).await?;
    while let Some(mut batch) = batches.next(cancel).await? {
        // A replay knows there is more: it gathers messages up to a large
        // batch (each pull delivers only a few hundred), where a follower
        // applies what is ready at once.
        if let Some(target) = until {
            let gathering = std::time::Instant::now();
            while batch.len() < REPLAY_MESSAGES && batch.last().is_some_and(|(seq, _)| *seq < target) {
                match batches.next(cancel).await? {
                    Some(more) => batch.extend(more),
                    None => break,
                }
            }
            tracing::debug!(handler = name, messages = batch.len(), took = ?gathering.elapsed(), "gathered");
        }
        // A message may hold many events (a batch of checks): a
        // transaction takes whole messages up to `max_batch` events.
        // Anything at or before the position is already applied.
        let from = position;
        let mut messages = batch.into_iter().filter(|(seq, _)| *seq > from).peekable();
        while messages.peek().is_some() {
            let mut events = Vec::new();
            let mut last = position;
            while events.len() < max_batch {
                let Some((seq, message)) = messages.next() else { break };
                last = seq;
                for envelope in decode(H::STREAM, seq, &message.subject, &message.payload)? {
                    events.push(StreamEvent { seq, envelope });
                }
            }
            match apply_batch(pool, handler, position, last, &events).await? {
                Batch::Applied { offset } => {
                    tracing::debug!(handler = name, offset, events = events.len(), "applied");
                    position = offset;
                    crate::metrics::reader_at(name, position, batches.lag());
                }
                Batch::Moved { offset } => {
                    tracing::info!(
                        handler = name,
                        from = position,
                        to = offset,
                        "moved by another writer; resuming there"
                    );
                    return Ok(Pass::Moved);
                }
            }
        }
        if until.is_some_and(|target| position >= target) {
            return Ok(Pass::Reached);
        }
    }
    Ok(Pass::Cancelled)
}

/// In one transaction: checks the handler still stands at `position`,
/// applies `events` and moves it to `reached`.
async fn apply_batch<H: Handler>(
    pool: &PgPool,
    handler: &H,
    position: u64,
    reached: u64,
    events: &[StreamEvent],
) -> anyhow::Result<Batch> {
    let mut tx = pool.begin().await?;
    let stored = cursor::lock(&mut tx, H::NAME).await?;
    if stored != position {
        return Ok(Batch::Moved { offset: stored });
    }
    if !events.is_empty() {
        handler.apply(&mut tx, events).await.with_context(|| {
            let first = events.first().map_or(0, |e| e.seq);
            format!("{} applying {} sequences {first}..={reached}", H::NAME, H::STREAM)
        })?;
    }
    cursor::store(&mut tx, H::NAME, reached).await?;
    tx.commit().await?;
    if !events.is_empty() {
        handler.committed(events);
    }
    Ok(Batch::Applied { offset: reached })
}

/// Decodes one message off `stream` into its events (several for a batch of
/// checks, see [`events::batch`]): none for an event type this build does
/// not know (skipped; logged the first time the type is seen in this
/// process), an error for a malformed event.
pub fn decode(stream: &str, seq: u64, subject: &str, payload: &[u8]) -> anyhow::Result<Vec<Envelope>> {
    match events::batch::decode(subject, payload) {
        Ok(envelopes) => Ok(envelopes),
        Err(DecodeError::UnknownType(kind)) => {
            if first_sighting(&kind) {
                tracing::warn!(stream, seq, kind, "skipping events of a type this build does not know (logged once)");
            } else {
                tracing::debug!(stream, seq, kind, "skipping an event of an unknown type");
            }
            Ok(Vec::new())
        }
        Err(e @ DecodeError::Malformed(_)) => Err(e).with_context(|| format!("{stream} sequence {seq}")),
    }
}

/// Unknown event types already logged by this process.
static UNKNOWN_TYPES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether this process sees the unknown type `kind` for the first time.
fn first_sighting(kind: &str) -> bool {
    // A poisoned set only means a panic elsewhere while inserting; the set
    // itself is still usable.
    let mut seen = UNKNOWN_TYPES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    seen.insert(kind.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of_type(kind: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": uuid::Uuid::now_v7(), "type": kind, "version": 1,
            "occurred_at": "2026-01-01T00:00:00Z", "aggregate_id": "x", "data": {}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn an_unknown_event_type_is_skipped_and_logged_only_the_first_time() {
        let payload = event_of_type("WebsiteHibernatedForTheRunnerTest");
        assert!(decode("MONITOR", 7, "monitor.website.x", &payload).is_ok_and(|e| e.is_empty()));
        assert!(!first_sighting("WebsiteHibernatedForTheRunnerTest"), "the first decode logged it already");
        assert!(decode("MONITOR", 8, "monitor.website.x", &payload).is_ok_and(|e| e.is_empty()), "later ones too");
        assert!(first_sighting("AnotherTypeForTheRunnerTest"), "each type is logged once");
    }

    #[test]
    fn a_malformed_event_is_an_error_naming_stream_and_sequence() {
        // A known type with data of the wrong shape.
        let payload = event_of_type("WebsiteAdded");
        let error =
            decode("MONITOR", 42, "monitor.website.x", &payload).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("MONITOR sequence 42") && error.contains("malformed"), "{error}");
        assert!(decode("CHECKS", 1, "checks.local.x", b"not json").is_err());
        assert!(decode("CHECKS", 2, "checks.local.batch", b"{}").is_err());
    }

    #[test]
    fn a_known_event_decodes() {
        let envelope = Envelope::new(
            events::Event::RegionAdded(events::RegionAdded {
                region: events::RegionName::parse("europe").unwrap_or_else(|e| panic!("{e}")),
            }),
            chrono::Utc::now(),
        );
        let decoded = decode("MONITOR", 1, &envelope.subject(), &envelope.to_json()).ok();
        assert_eq!(decoded, Some(vec![envelope]));
    }
}
