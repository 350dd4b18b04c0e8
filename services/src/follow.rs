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
use tokio_util::sync::CancellationToken;

/// Batches of messages after a position, in stream order.
pub struct Batches {
    inner: ReadyChunks<Ordered>,
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
    Ok(Batches { inner: messages.ready_chunks(max_batch) })
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
            let seq = message.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?.stream_sequence;
            messages.push((seq, message));
        }
        Ok(Some(messages))
    }
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
