//! Following a stream from a position kept outside JetStream (a Postgres
//! row, a Redis key): an ordered consumer opened after that position,
//! delivering whatever is ready as one batch, and the loop that restarts a
//! follower with backoff after an error. The [`crate::runner`] (projections,
//! detector, notifier) and the scheduler follow streams this way.

use crate::bus::Bus;
use crate::runtime::Backoff;
use anyhow::Context;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::Message;
use futures::stream::ReadyChunks;
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Batches of messages after a position, in stream order.
pub struct Batches {
    inner: ReadyChunks<Ordered>,
    lag: Lag,
}

/// How far behind its stream a follower was at its last batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Messages (on the follower's subjects) after the batch's last one.
    pub waiting: u64,
    /// How long before the batch was received its last message was stored.
    pub age: Duration,
}

/// Opens `stream` after sequence `cursor` (0: from the start), optionally
/// filtered to `filter`; batches hold at most `max_batch` messages.
pub async fn after(
    bus: &Bus,
    stream: &str,
    cursor: u64,
    filter: Option<&str>,
    max_batch: usize,
) -> anyhow::Result<Batches> {
    let stream = bus.js.get_stream(stream).await.with_context(|| format!("opening stream {stream}"))?;
    let deliver_policy =
        if cursor == 0 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: cursor + 1 } };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            filter_subject: filter.unwrap_or_default().to_owned(),
            ..Default::default()
        })
        .await
        .context("creating ordered consumer")?;
    let messages = consumer.messages().await.context("opening message stream")?;
    Ok(Batches { inner: messages.ready_chunks(max_batch), lag: Lag::default() })
}

impl Batches {
    /// The next batch with each message's stream sequence; `None` once
    /// `cancel` fires.
    pub async fn next(&mut self, cancel: &CancellationToken) -> anyhow::Result<Option<Vec<(u64, Message)>>> {
        let batch = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            batch = self.inner.next() => batch,
        };
        let Some(batch) = batch else { anyhow::bail!("message stream ended") };
        let mut messages = Vec::with_capacity(batch.len());
        for message in batch {
            let message = message.context("receiving")?;
            let (seq, lag) = position_of(&message)?;
            self.lag = lag;
            messages.push((seq, message));
        }
        Ok(Some(messages))
    }

    /// How far behind the stream the last batch was (for metrics).
    pub fn lag(&self) -> Lag {
        self.lag
    }
}

/// A message's stream sequence, and how far behind the stream its reader
/// is once it has the message.
pub fn position_of(message: &Message) -> anyhow::Result<(u64, Lag)> {
    let info = message.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?;
    let now_nanos = i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    let age_nanos = (now_nanos - info.published.unix_timestamp_nanos()).max(0);
    let age = Duration::from_nanos(u64::try_from(age_nanos).unwrap_or(u64::MAX));
    Ok((info.stream_sequence, Lag { waiting: info.pending, age }))
}

/// Runs `pass` until it returns `Ok(true)` (done or cancelled) or `cancel`
/// fires. `Ok(false)` starts a new pass at once (the position moved); an
/// error is logged and retried after a backoff that doubles up to 10 s.
pub async fn supervise<F, Fut>(what: &'static str, cancel: &CancellationToken, mut pass: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let mut backoff = Backoff::default();
    loop {
        match pass().await {
            Ok(true) => return Ok(()),
            Ok(false) => backoff.reset(),
            Err(e) => {
                tracing::warn!(task = what, error = format!("{e:#}"), retry_in = ?backoff.delay(), "pass failed; retrying");
                if !backoff.wait(cancel).await {
                    return Ok(());
                }
            }
        }
        if cancel.is_cancelled() {
            return Ok(());
        }
    }
}
