//! Publishing a worker's results several to a message.
//!
//! NATS stores and fsyncs each message of a one-replica stream on its own,
//! so results published one per message are bounded by the disk's fsyncs.
//! Check tasks hand their results to one [`Batcher`]; it packs whatever is
//! ready, up to [`MAX_CHECKS`] results or [`MAX_BYTES`], into a
//! [`CheckBatch`], publishes it (a few batches in flight, so a batch fills
//! while the previous one is stored), and once JetStream has acknowledged
//! it, acknowledges (XACK, XDEL) all its jobs in one pipeline and answers
//! each task. Nothing is acknowledged before it is on disk; a batch that
//! cannot be stored leaves its jobs pending, to be reclaimed and checked
//! again. A retried publish carries the batch's derived message id, so it
//! is stored once.

use crate::bus::Bus;
use crate::queue::GROUP;
use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use events::batch::CheckBatch;
use events::{CheckCompleted, RegionName};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Results in one message at most.
pub const MAX_CHECKS: usize = 1000;
/// Bytes of results in one message at most (the stream allows 1 MiB).
pub const MAX_BYTES: usize = 512 * 1024;
/// Batches being stored at once.
const IN_FLIGHT: usize = 4;
/// Results a worker holds that are handed over and not yet stored, at
/// most: as many as fill the batches being stored and the queue before
/// them. A check whose result finds no place keeps its place among the
/// checks at once, so a store that stays slow holds up new checks.
pub const STORING: usize = MAX_CHECKS * IN_FLIGHT * 2;
/// How long a small batch waits for more results when a publish slot is
/// free: long enough to gather a burst, short against the check itself.
const LINGER: Duration = Duration::from_millis(2);
/// How long one batch is retried (same message id, backoff up to
/// [`RETRY_MAX`]) before its jobs are left to be reclaimed: long enough to
/// outlast a cluster electing a new stream leader after losing a server,
/// so a short NATS outage delays results instead of spending the jobs'
/// deliveries (a job delivered `WORKER_MAX_DELIVERIES` times is
/// dead-lettered).
const PATIENCE: Duration = Duration::from_secs(30);
/// The longest pause between two attempts of one batch.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// One result waiting to be stored, with its job and who waits for it.
struct Pending {
    check: CheckCompleted,
    bytes: usize,
    job: String,
    done: oneshot::Sender<bool>,
}

/// Hands results to the batching task.
#[derive(Clone)]
pub struct Batcher {
    sender: mpsc::Sender<Pending>,
    failing: Arc<AtomicBool>,
}

impl Batcher {
    /// Starts the batching task of one region's worker; it ends when every
    /// `Batcher` clone is dropped, after storing what it was given.
    pub fn start(bus: Bus, region: RegionName, key: String, acks: ConnectionManager) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_CHECKS * IN_FLIGHT);
        let failing = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Target {
            bus,
            subject: events::subject::check_batch(&region),
            key,
            acks,
            failing: failing.clone(),
        });
        tokio::spawn(run(shared, receiver));
        Self { sender, failing }
    }

    /// Whether the last attempt to store a batch failed (NATS unavailable):
    /// reclaiming jobs then would only spend their deliveries.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Stores `check` and acknowledges `job`; true once both are done,
    /// false if the result could not be stored (the job stays pending).
    pub async fn store(&self, check: CheckCompleted, job: String) -> bool {
        // An upper bound, without encoding it twice: the fixed fields take
        // under 400 bytes, and a character of the message at most 6 (\u0000).
        let bytes = 400 + 6 * check.message.as_ref().map_or(0, String::len);
        let (done, answer) = oneshot::channel();
        if self.sender.send(Pending { check, bytes, job, done }).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// Where batches go.
struct Target {
    bus: Bus,
    subject: String,
    key: String,
    acks: ConnectionManager,
    failing: Arc<AtomicBool>,
}

async fn run(target: Arc<Target>, mut receiver: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match receiver.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        // While every slot is busy, results pile up in the channel: the
        // next batch takes them all at once.
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < MAX_CHECKS {
            let next = match receiver.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                    next = receiver.recv() => next,
                    () = &mut linger => None,
                },
            };
            let Some(next) = next else { break };
            if bytes + next.bytes > MAX_BYTES {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        let target = target.clone();
        tokio::spawn(async move {
            store(&target, batch).await;
            drop(slot);
        });
    }
    // Wait for the batches being stored before the task ends.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
}

/// Publishes one batch, acknowledges its jobs and answers their tasks.
async fn store(target: &Target, batch: Vec<Pending>) {
    let (checks, waiting): (Vec<CheckCompleted>, Vec<(String, oneshot::Sender<bool>)>) =
        batch.into_iter().map(|p| (p.check, (p.job, p.done))).unzip();
    let batch = CheckBatch::new(checks, Utc::now());
    let stored = publish(target, &batch).await;
    if stored {
        batch.checks.iter().for_each(crate::metrics::check_published);
        let jobs: Vec<&str> = waiting.iter().map(|(job, _)| job.as_str()).collect();
        let mut conn = target.acks.clone();
        let mut pipe = redis::pipe();
        pipe.xack(&target.key, GROUP, &jobs).ignore().xdel(&target.key, &jobs).ignore();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            // The results are stored; re-checks after reclaim are ignored
            // by every reader (same check, same id).
            tracing::warn!(jobs = jobs.len(), error = %e, "acknowledging jobs failed");
        }
    }
    for (_, done) in waiting {
        let _ = done.send(stored);
    }
}

/// Publishes `batch` and waits for JetStream to store it, retrying with the
/// same message id.
async fn publish(target: &Target, batch: &CheckBatch) -> bool {
    let payload = bytes::Bytes::from(batch.to_json());
    let id = batch.message_id().to_string();
    let first = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    for attempt in 1.. {
        let publish = PublishMessage::build().payload(payload.clone()).message_id(id.clone());
        let started = std::time::Instant::now();
        let stored = async {
            target.bus.js.send_publish(target.subject.clone(), publish).await?.await?;
            Ok::<(), async_nats::Error>(())
        };
        match stored.await {
            Ok(()) => {
                crate::metrics::published(&target.subject, started.elapsed());
                target.failing.store(false, Ordering::Relaxed);
                return true;
            }
            Err(e) => {
                crate::metrics::publish_failed(&target.subject, false);
                target.failing.store(true, Ordering::Relaxed);
                tracing::warn!(checks = batch.checks.len(), attempt, error = %e, "publishing a batch of checks failed");
                if first.elapsed() >= PATIENCE {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
    false
}
