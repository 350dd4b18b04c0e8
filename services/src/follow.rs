//! Following a stream from a position kept outside JetStream (a Postgres
//! row, a Redis key): an ephemeral consumer opened after that position,
//! delivering whatever is ready as one batch, and the loop that restarts a
//! follower with backoff after an error. The [`crate::runner`] (projections,
//! detector, notifier) and the scheduler follow streams this way.
//!
//! The consumer is a one-replica ephemeral pull consumer without acks,
//! which lives on one server of a cluster. When that server dies (or is
//! cut off) the consumer is gone with it and nothing tells the reader, so
//! the reader asks the server for a heartbeat every [`HEARTBEAT`] while it
//! waits. When heartbeats stop, it asks whether the consumer still exists
//! and, if not (or on any gap in the delivered sequence), opens a new one
//! after the last message it delivered: a follower resumes within a few
//! seconds of losing its server, not after the library's ordered
//! consumer's two missed 15 s heartbeats.

use crate::bus::Bus;
use crate::runtime::Backoff;
use anyhow::Context;
use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::message::Info;
use async_nats::jetstream::{self, Message};
use futures::stream::ReadyChunks;
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the server confirms a waiting pull request; two missed in a
/// row make the reader check its consumer.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one pull request waits on the server before the reader sends
/// another.
const EXPIRES: Duration = Duration::from_secs(5);
/// How long the reader waits for the server to say whether its consumer
/// still exists.
const INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long creating a consumer may take before it is asked again: while
/// a cluster elects a new leader after losing a server, a request may go
/// unanswered, and the next one is answered once the leader is there.
const CREATE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a consumer nobody reads any more stays on the server.
const INACTIVE: Duration = Duration::from_secs(30);
/// Messages asked for per pull request.
const PULL_BATCH: usize = 500;

/// Batches of messages after a position, in stream order.
pub struct Batches {
    js: jetstream::Context,
    stream: String,
    filter: String,
    max_batch: usize,
    consumer: Consumer<pull::Config>,
    inner: ReadyChunks<pull::Stream>,
    /// The stream sequence of the last message delivered (the start: the
    /// position opened after).
    last: u64,
    /// The consumer sequence of the last message delivered by `consumer`.
    delivered: u64,
    /// Why the consumer must be replaced before the next batch, if it must.
    broken: Option<String>,
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
    let (js, stream) = (bus.js.clone(), stream.to_owned());
    let filter = filter.unwrap_or_default().to_owned();
    let (consumer, inner) =
        open(&js, &stream, &filter, cursor, max_batch).await.with_context(|| format!("following {stream}"))?;
    Ok(Batches {
        js,
        stream,
        filter,
        max_batch,
        consumer,
        inner,
        last: cursor,
        delivered: 0,
        broken: None,
        lag: Lag::default(),
    })
}

/// A consumer of `stream` after `cursor` and its messages.
async fn open(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    cursor: u64,
    max_batch: usize,
) -> anyhow::Result<(Consumer<pull::Config>, ReadyChunks<pull::Stream>)> {
    let deliver_policy =
        if cursor == 0 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: cursor + 1 } };
    let config = pull::Config {
        deliver_policy,
        filter_subject: filter.to_owned(),
        ack_policy: AckPolicy::None,
        max_deliver: 1,
        inactive_threshold: INACTIVE,
        num_replicas: 1,
        memory_storage: true,
        ..Default::default()
    };
    let consumer = tokio::time::timeout(CREATE_TIMEOUT, js.create_consumer_on_stream(config, stream))
        .await
        .map_err(|_| anyhow::anyhow!("creating a consumer: no answer within {CREATE_TIMEOUT:?}"))?
        .context("creating a consumer")?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .expires(EXPIRES)
        .heartbeat(HEARTBEAT)
        .messages()
        .await
        .context("opening message stream")?;
    Ok((consumer, messages.ready_chunks(max_batch)))
}

impl Batches {
    /// The next batch with each message's stream sequence; `None` once
    /// `cancel` fires. A consumer lost with its server is replaced on the
    /// way; an error means a new one could not be made (yet).
    pub async fn next(&mut self, cancel: &CancellationToken) -> anyhow::Result<Option<Vec<(u64, Message)>>> {
        loop {
            if let Some(reason) = self.broken.take() {
                tracing::info!(stream = self.stream, after = self.last, reason, "reopening the consumer");
                let (consumer, inner) = open(&self.js, &self.stream, &self.filter, self.last, self.max_batch)
                    .await
                    .with_context(|| format!("following {}", self.stream))?;
                (self.consumer, self.inner, self.delivered) = (consumer, inner, 0);
            }
            let batch = tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                batch = self.inner.next() => batch,
            };
            let Some(batch) = batch else {
                self.broken = Some("the message stream ended".into());
                continue;
            };
            let mut messages = Vec::with_capacity(batch.len());
            for message in batch {
                match message {
                    Ok(message) => {
                        let info = message.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?;
                        if info.consumer_sequence != self.delivered + 1 {
                            self.broken =
                                Some(format!("delivered {} after {}", info.consumer_sequence, self.delivered));
                            break;
                        }
                        let (seq, lag) = position(&info);
                        (self.delivered, self.last, self.lag) = (info.consumer_sequence, seq, lag);
                        messages.push((seq, message));
                    }
                    Err(e) if e.kind() == MessagesErrorKind::MissingHeartbeat => {
                        // Missed heartbeats may only mean this reader was
                        // busy; the server says whether the consumer lives.
                        if !self.alive().await {
                            self.broken = Some("heartbeats stopped and the consumer is gone".into());
                            break;
                        }
                    }
                    Err(e) => {
                        self.broken = Some(e.to_string());
                        break;
                    }
                }
            }
            if !messages.is_empty() {
                return Ok(Some(messages));
            }
        }
    }

    /// Whether the server still has this reader's consumer.
    async fn alive(&mut self) -> bool {
        matches!(tokio::time::timeout(INFO_TIMEOUT, self.consumer.info()).await, Ok(Ok(_)))
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
    Ok(position(&info))
}

/// [`position_of`] a message whose metadata is read already.
fn position(info: &Info<'_>) -> (u64, Lag) {
    let now_nanos = i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    let age_nanos = (now_nanos - info.published.unix_timestamp_nanos()).max(0);
    let age = Duration::from_nanos(u64::try_from(age_nanos).unwrap_or(u64::MAX));
    (info.stream_sequence, Lag { waiting: info.pending, age })
}

/// How long a pass must have run for its failure to count as a new one.
const FRESH_FAILURE: Duration = Duration::from_secs(30);

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
        let started = std::time::Instant::now();
        match pass().await {
            Ok(true) => return Ok(()),
            Ok(false) => backoff.reset(),
            Err(e) => {
                // A pass that ran a while before failing starts the backoff
                // afresh: the failure is new, not the last one repeating.
                if started.elapsed() >= FRESH_FAILURE {
                    backoff.reset();
                }
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
