//! The one runner of every [`Handler`]: the Postgres projections, the
//! detector and the notifier's planner are all driven by it.
//!
//! A pass reads the handler's position, opens an ordered consumer after it
//! ([`follow::after`]), and per batch of whatever is ready (or arrives
//! within the handler's [`Handler::LINGER`]): decodes it, then
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
use events::{DecodeError, Envelope};
use projections::handler::{Handler, StreamEvent};
use projections::{cursor, indexes};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
        indexes::restore(&pool).await.context("building indexes set aside")?;
        Ok(matches!(pass(&bus, &pool, &handler, None, max_batch, None, &cancel).await?, Pass::Cancelled))
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
    // Held by a session of its own for the whole replay, so that readers
    // starting meanwhile leave what it set aside to it; closing the session
    // frees it, also when the process dies. Replays run one at a time.
    let mut replaying = pool.acquire().await?.detach();
    sqlx::query("select pg_advisory_lock(hashtext($1))")
        .bind(indexes::REPLAY_LOCK)
        .execute(&mut replaying)
        .await
        .context("waiting for another replay")?;
    let replayed = async {
        // The stream is read from its start while the reset empties the
        // tables: the first events are decoded by the time it commits.
        let mut ahead = Some(Reader::open::<H>(bus, 0, Some(target), H::REPLAY_BATCH, cancel).await?);
        reset(pool, handler).await?;
        tracing::info!(handler = H::NAME, target, "reset; replaying");
        loop {
            if cursor::offset(pool, H::NAME).await? >= target {
                return Ok(target);
            }
            match pass(bus, pool, handler, Some(target), H::REPLAY_BATCH, ahead.take(), cancel).await? {
                Pass::Cancelled => anyhow::bail!("replay of {} cancelled", H::NAME),
                Pass::Reached | Pass::Moved => {}
            }
        }
    }
    .await;
    // Unlocked before the session closes: its end is not waited for, and
    // the builds below must find the lock free.
    sqlx::query("select pg_advisory_unlock(hashtext($1))").bind(indexes::REPLAY_LOCK).execute(&mut replaying).await?;
    sqlx::Connection::close(replaying).await?;
    // Also after a failed replay: readers go on with what it reached.
    indexes::restore(pool).await.context("building indexes set aside")?;
    replayed
}

/// Empties what `handler` wrote, sets aside the indexes the replay's bulk
/// load would keep up row by row ([`Handler::SET_ASIDE`]), and moves it back to the start of its
/// stream, in one transaction.
async fn reset<H: Handler>(pool: &PgPool, handler: &H) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // Lock the position first so a reader mid-batch finishes (or waits)
    // before its rows are emptied under it.
    cursor::lock(&mut tx, H::NAME).await?;
    handler.reset(&mut tx).await.with_context(|| format!("resetting {}", H::NAME))?;
    indexes::set_aside(&mut tx, H::SET_ASIDE).await.context("setting indexes aside")?;
    cursor::store(&mut tx, H::NAME, 0).await?;
    tx.commit().await?;
    Ok(())
}

/// The last sequence of the handler's stream, or of its subjects when it
/// reads only some (0: none yet).
async fn last_sequence<H: Handler>(bus: &Bus) -> anyhow::Result<u64> {
    match H::FILTER {
        None => {
            bus.last_sequence(H::STREAM).await.with_context(|| format!("reading the last sequence of {}", H::STREAM))
        }
        Some(subjects) => bus
            .last_subject_seq_in(H::STREAM, subjects)
            .await
            .with_context(|| format!("reading the last message on {subjects}")),
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

/// The stream read and decoded after a position in a task of its own
/// ([`read_ahead`]); dropping it stops the task.
struct Reader {
    from: u64,
    chunks: tokio::sync::mpsc::Receiver<anyhow::Result<Chunk>>,
    _stop: tokio_util::sync::DropGuard,
}

impl Reader {
    async fn open<H: Handler>(
        bus: &Bus,
        from: u64,
        until: Option<u64>,
        max_batch: usize,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let batches = follow::after(bus, H::STREAM, from, H::FILTER, max_batch).await?;
        let reading = cancel.child_token();
        let chunks = read_ahead::<H>(batches, from, until, max_batch, reading.clone());
        Ok(Self { from, chunks, _stop: reading.drop_guard() })
    }
}

/// One pass: from the stored position to `until` (or until cancelled).
/// Reading and decoding run ahead in a task of their own ([`read_ahead`]),
/// so the next events are ready when a transaction commits; `ahead` is a
/// reader opened already, used if it reads from the stored position.
async fn pass<H: Handler>(
    bus: &Bus,
    pool: &PgPool,
    handler: &H,
    until: Option<u64>,
    max_batch: usize,
    ahead: Option<Reader>,
    cancel: &CancellationToken,
) -> anyhow::Result<Pass> {
    let name = H::NAME;
    let mut position = cursor::offset(pool, name).await?;
    if until.is_some_and(|target| position >= target) {
        return Ok(Pass::Reached);
    }
    let mut reader = match ahead {
        Some(reader) if reader.from == position => reader,
        _ => Reader::open::<H>(bus, position, until, max_batch, cancel).await?,
    };
    let chunks = &mut reader.chunks;
    let linger = if until.is_none() { H::LINGER } else { Duration::ZERO };
    // When the last batch started, and a chunk that did not fit in it.
    let (mut applied, mut carried) = (Instant::now().checked_sub(linger).unwrap_or_else(Instant::now), None);
    loop {
        let chunk = match carried.take() {
            Some(chunk) => chunk,
            None => match chunks.recv().await {
                Some(chunk) => chunk?,
                None => break,
            },
        };
        let Chunk { mut events, mut last, mut lag } = chunk;
        if !linger.is_zero() {
            tokio::time::sleep_until(applied + linger).await;
            while let Ok(more) = chunks.try_recv() {
                let more = more?;
                if events.len() + more.events.len() > max_batch {
                    carried = Some(more);
                    break;
                }
                events.extend(more.events);
                (last, lag) = (more.last, more.lag);
            }
        }
        applied = Instant::now();
        match apply_batch(pool, handler, position, last, &events).await? {
            Batch::Applied { offset } => {
                tracing::debug!(handler = name, offset, events = events.len(), "applied");
                position = offset;
                crate::metrics::reader_at(name, position, lag);
            }
            Batch::Moved { offset } => {
                tracing::info!(handler = name, from = position, to = offset, "moved by another writer; resuming there");
                return Ok(Pass::Moved);
            }
        }
        if until.is_some_and(|target| position >= target) {
            return Ok(Pass::Reached);
        }
    }
    Ok(Pass::Cancelled)
}

/// Chunks a follower's reader keeps ready while a batch is gathered or
/// applied: each is what one read found, a message or a few.
const FOLLOWER_CHUNKS: usize = 64;

/// Decoded events of whole messages, up to the message at `last`.
struct Chunk {
    events: Vec<StreamEvent>,
    last: u64,
    lag: follow::Lag,
}

/// Reads `batches` after `from` and decodes them in a task of its own,
/// handing over whole messages' events up to `max_batch` at a time (a
/// message may hold many events: a batch of checks). A follower gets what
/// is ready at once; a replay (`until`) gets full chunks until the target.
/// An error is handed over and ends the reading; so does `cancel`.
fn read_ahead<H: Handler>(
    mut batches: follow::Batches,
    from: u64,
    until: Option<u64>,
    max_batch: usize,
    cancel: CancellationToken,
) -> tokio::sync::mpsc::Receiver<anyhow::Result<Chunk>> {
    // A follower may gather several chunks into one batch (`LINGER`); a
    // replay's chunks are full ones, one ahead.
    let (sender, receiver) = tokio::sync::mpsc::channel(if until.is_none() { FOLLOWER_CHUNKS } else { 1 });
    tokio::spawn(async move {
        let mut events = Vec::new();
        let first_chunk = (max_batch / 8).max(1);
        // The last message read, and the last handed over.
        let (mut last, mut handed) = (from, from);
        loop {
            let batch = match batches.next(&cancel).await {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err(e) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            };
            // Anything at or before the position is already applied.
            for (seq, message) in batch.into_iter().filter(|(seq, _)| *seq > from) {
                match decode(H::STREAM, seq, &message.subject, &message.payload) {
                    Ok(envelopes) => events.extend(envelopes.into_iter().map(|envelope| StreamEvent { seq, envelope })),
                    Err(e) => {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                }
                last = seq;
                // The first chunk is smaller, so that writing starts while
                // the rest is read.
                let full = events.len() >= if handed == from { first_chunk } else { max_batch };
                let ready = until.is_some_and(|target| last >= target);
                if full || ready {
                    let chunk = Chunk { events: std::mem::take(&mut events), last, lag: batches.lag() };
                    handed = last;
                    if sender.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            }
            // A follower applies what is ready (also a position past
            // events this build skips).
            if until.is_none() && last > handed {
                let chunk = Chunk { events: std::mem::take(&mut events), last, lag: batches.lag() };
                handed = last;
                if sender.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver
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
