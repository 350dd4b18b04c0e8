//! The shape of every stream reader that keeps its position in Postgres:
//! a [`Handler`] applies a batch of events inside a transaction it is
//! handed, and the runner (in `services`) does the rest: it reads the
//! position, opens the stream after it, decodes, locks the position row,
//! returns early when another writer moved it, calls [`Handler::apply`],
//! stores the new position and commits, all in that one transaction. So a
//! handler's writes and its position are committed together or not at all,
//! and two readers of one name are serialised on the row lock.
//!
//! A handler sees only events this build knows, in stream order, each after
//! the position; it must also accept a batch it has seen before (a replay
//! after a crash between its side effects and the commit) without changing
//! the result.

use crate::Result;
use events::Envelope;
use sqlx::{Postgres, Transaction};
use std::future::Future;

/// One decoded event off a stream, with its stream sequence.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub seq: u64,
    pub envelope: Envelope,
}

/// A transactional event handler: a projection, or a reader that decides
/// and records something per event (the detector, the notifier's planner).
pub trait Handler: Send + Sync {
    /// Why applying failed; the runner logs it and retries the batch.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name its position is stored under in `projection_offsets`.
    const NAME: &'static str;

    /// The stream it reads.
    const STREAM: &'static str;

    /// The subjects it reads within the stream (`None`: all of them).
    const FILTER: Option<&'static str> = None;

    /// Events per transaction during a replay, at most. A replay reads as
    /// fast as it can, and fewer, larger transactions write less (the
    /// latest status keeps one row per website and region however many
    /// results a batch has); a handler whose writes grow with its events
    /// takes smaller ones, so the next is read and decoded while one is
    /// written.
    const REPLAY_BATCH: usize = 100_000;

    /// How long a follower gathers what arrives before applying it: at most
    /// one batch per `LINGER`, however many messages came meanwhile (the
    /// first after a quiet spell is applied at once). A reader of
    /// thousands of checks a second that applied each message of a few
    /// dozen on its own would spend more of PostgreSQL on each
    /// transaction's locks, position and planning than on the rows; one
    /// whose writes someone waits on (the API waits for the monitor's
    /// projection) keeps zero.
    const LINGER: std::time::Duration = std::time::Duration::ZERO;

    /// Tables whose non-unique indexes a replay sets aside while it writes
    /// and builds again when it ends ([`crate::indexes`]).
    const SET_ASIDE: &'static [&'static str] = &[];

    /// Applies `events` (in stream order, never empty) within `tx`; the
    /// runner commits them with the new position.
    fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        events: &[StreamEvent],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Empties what it wrote, within `tx`; the runner moves its position
    /// back to the start of the stream in the same transaction.
    fn reset(&self, tx: &mut Transaction<'_, Postgres>) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Called after a batch was committed (e.g. to wake whoever acts on
    /// what it wrote); nothing by default.
    fn committed(&self, _events: &[StreamEvent]) {}
}
