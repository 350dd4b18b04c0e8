//! The projector: follows the streams into the read models.
//!
//! The Postgres projections (websites/regions/incidents from MONITOR,
//! latest status from CHECKS) are [`Handler`]s driven by the
//! [`runner`]: their position is kept in Postgres (`projection_offsets`),
//! committed with the writes it covers, so a crash loses the open
//! transaction and nothing else, and a replay resets the position to 0 and
//! a running projector follows it.
//!
//! InfluxDB cannot commit a position with its writes, so it uses a durable
//! JetStream consumer instead and acknowledges a batch only after InfluxDB
//! accepted it; a redelivered batch rewrites the same points. It decodes
//! with the runner's policy (unknown types skipped, malformed ones fatal).
//! The projector also makes InfluxDB's rollups ([`run_rollups`]), a slice
//! of the websites every 15 seconds; with several projectors, one of them.

use crate::bus::Bus;
use crate::config::ProjectorConfig;
use crate::runner::{self, decode};
use crate::{follow, Deps};
use anyhow::Context;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{ErrorCode, Message};
use chrono::{DateTime, Utc};
use events::subject::CHECKS_STREAM;
use events::{CheckCompleted, Event};
use futures::StreamExt;
use projections::handler::Handler;
use projections::influx::{Influx, Rollup, ROLLUP_LEVELS, ROLLUP_SLICES, ROLLUP_TURN_SECS};
use projections::postgres::MonitorProjection;
use projections::status::StatusProjection;
use sqlx::{PgConnection, PgPool};
use std::collections::VecDeque;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Points per InfluxDB write, at most.
const INFLUX_WRITE_POINTS: usize = 5000;
/// InfluxDB writes under way at once, per batch.
const INFLUX_WRITES_IN_FLIGHT: usize = 4;
/// Batches of messages being written to InfluxDB at once: a batch is what
/// the consumer had ready, often a few thousand points, so one at a time
/// would leave InfluxDB waiting between them.
const INFLUX_BATCHES_IN_FLIGHT: usize = 4;

/// How long after each turn ([`ROLLUP_TURN_SECS`]) starts the rollups due
/// in it run: the feed has written the checks of the minute before by then.
const ROLLUP_DELAY_MS: i64 = 5_000;

/// The advisory lock (by `hashtext`) of the projector that makes the
/// rollups: one does, however many run.
pub const ROLLUP_LOCK: &str = "influxdb rollups";

/// Rollup runs owed at most: a day's of every level. After a longer
/// InfluxDB outage the oldest buckets stay in the raw points only.
const ROLLUPS_OWED: usize = {
    let (mut runs, mut level) = (0, 0);
    while level < ROLLUP_LEVELS.len() {
        runs += ROLLUP_LEVELS[level].runs_a_day();
        level += 1;
    }
    runs
};

/// Owed runs made up in a turn besides the ones due in it, so that an
/// InfluxDB coming back is not handed hours of runs at once.
const ROLLUPS_MADE_UP_PER_TURN: usize = 1;

/// How long one pull request of the InfluxDB feed waits on the server.
const INFLUX_PULL_EXPIRES: Duration = Duration::from_secs(5);

/// The durable consumer feeding InfluxDB.
pub const INFLUX_CONSUMER: &str = "influx-checks-each";
/// The consumer of earlier versions, which acknowledged everything before a
/// message with it: after a restart, messages pulled and never written were
/// acknowledged with the first write after. Replaced from where it stood.
const EARLIER_INFLUX_CONSUMER: &str = "influx-checks";

/// Which Postgres projection to run or replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Websites, regions and incidents, from MONITOR.
    Monitor,
    /// Latest status per (website, region), from CHECKS.
    Status,
}

impl Projection {
    /// The name its position is stored under.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Monitor => MonitorProjection::NAME,
            Projection::Status => StatusProjection::NAME,
        }
    }
}

/// Runs every projection until `cancel` fires.
pub async fn serve(deps: Deps, config: ProjectorConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    let Deps { bus, pool, influx, .. } = deps;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run(bus.clone(), pool.clone(), Projection::Monitor, config.batch, cancel.clone()));
    tasks.spawn(run(bus.clone(), pool.clone(), Projection::Status, config.batch, cancel.clone()));
    tasks.spawn(run_influx(bus, influx.clone(), config.batch, cancel.clone()));
    tasks.spawn(run_rollups(influx, pool, cancel.clone()));
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
    match projection {
        Projection::Monitor => runner::run(bus, pool, MonitorProjection, batch, cancel).await,
        Projection::Status => runner::run(bus, pool, StatusProjection, batch, cancel).await,
    }
}

/// Empties a Postgres projection and rebuilds it from sequence 1 up to the
/// stream's last sequence at the time of the call. Returns that sequence.
pub async fn replay(
    bus: &Bus,
    pool: &PgPool,
    projection: Projection,
    cancel: &CancellationToken,
) -> anyhow::Result<u64> {
    match projection {
        Projection::Monitor => runner::replay(bus, pool, &MonitorProjection, cancel).await,
        Projection::Status => runner::replay(bus, pool, &StatusProjection, cancel).await,
    }
}

/// Makes the InfluxDB rollups until cancelled: every turn
/// ([`ROLLUP_TURN_SECS`]), the slice of each level due in it
/// ([`projections::influx::Rollup::due`]). Only one
/// projector makes them, the one holding the advisory lock
/// [`ROLLUP_LOCK`] ([`lead_rollups`]); the others take over when its
/// session ends. A run that fails is owed: made up in a later turn with
/// the time it was due at, so it covers the same buckets (the slice's next
/// run covers only one minute more than the period between them). So are
/// the runs that fell due while no projector made them: the one taking
/// over reads in `rollup_runs` when each slice's last run made was due
/// ([`RollupRuns::resume`]), and notes each run it makes there.
pub async fn run_rollups(influx: Influx, pool: PgPool, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut lock: Option<PgConnection> = None;
    let mut leading = false;
    // `None` until taken over from what `rollup_runs` says was made.
    let mut runs: Option<RollupRuns> = None;
    loop {
        let turn_ms = ROLLUP_TURN_SECS * 1000;
        let now = Utc::now().timestamp_millis();
        let next = (now.div_euclid(turn_ms) + 1) * turn_ms + ROLLUP_DELAY_MS;
        let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        leading = match lead_rollups(&pool, &mut lock).await {
            Lead::Held => true,
            // PostgreSQL away: whoever made them last goes on (two would
            // only repeat runs).
            Lead::Unknown => leading,
            Lead::Elsewhere => {
                // The projector that makes them owes them.
                runs = None;
                false
            }
        };
        if !leading {
            continue;
        }
        // One time for both: the runs a resume owes end where this turn's
        // own begin.
        let now = Utc::now();
        if runs.is_none() {
            match RollupRuns::resume(&pool, now).await {
                Ok(resumed) => {
                    tracing::info!(owed = resumed.owed(), "took the rollups over from the last runs made");
                    runs = Some(resumed);
                }
                // The runs of this turn are owed to the next one's resume.
                Err(e) => {
                    tracing::warn!(error = %e, "reading the last rollup runs made failed; trying again next turn");
                }
            }
        }
        let Some(runs) = &mut runs else { continue };
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            made = runs.turn(&influx, now) => {
                // Not noted: a later run notes the slice again, and a
                // projector taking over meanwhile only repeats some.
                if let Err(e) = record_rollups(&pool, &made).await {
                    tracing::debug!(error = %e, "noting the rollup runs made failed");
                }
            }
        }
    }
}

/// A rollup run: its level, its slice, and the time it was due at.
pub type RollupRun = (Rollup, u32, DateTime<Utc>);

/// Notes the runs `made` in `rollup_runs`: per level and slice, the latest
/// time one was due at.
pub async fn record_rollups(pool: &PgPool, made: &[RollupRun]) -> anyhow::Result<()> {
    if made.is_empty() {
        return Ok(());
    }
    let measurements: Vec<&str> = made.iter().map(|(rollup, _, _)| rollup.measurement).collect();
    let slices: Vec<i32> = made.iter().map(|(_, slice, _)| i32::try_from(*slice).unwrap_or(i32::MAX)).collect();
    let due: Vec<DateTime<Utc>> = made.iter().map(|(_, _, at)| *at).collect();
    sqlx::query(
        "insert into rollup_runs (measurement, slice, due_at)
         select measurement, slice, max(due_at) from unnest($1::text[], $2::int[], $3::timestamptz[])
             as r(measurement, slice, due_at)
         group by measurement, slice
         on conflict (measurement, slice) do update set due_at = greatest(rollup_runs.due_at, excluded.due_at)",
    )
    .bind(&measurements)
    .bind(&slices)
    .bind(&due)
    .execute(pool)
    .await
    .context("noting the rollup runs made")?;
    Ok(())
}

/// The rollup runs due and not yet made, oldest first, each with the time
/// it was due at.
#[derive(Debug, Default)]
pub struct RollupRuns {
    owed: VecDeque<RollupRun>,
    failing: bool,
}

impl RollupRuns {
    /// How many runs are owed.
    pub fn owed(&self) -> usize {
        self.owed.len()
    }

    /// The runs owed by a projector taking the rollups over at `now`, as
    /// far as `rollup_runs` says what was made ([`Self::owed_after`]).
    pub async fn resume(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<Self> {
        let rows: Vec<(String, i32, DateTime<Utc>)> =
            sqlx::query_as("select measurement, slice, due_at from rollup_runs")
                .fetch_all(pool)
                .await
                .context("reading the rollup runs made")?;
        // A level or slice no longer made (renamed, fewer slices) is left.
        let made: Vec<RollupRun> = rows
            .into_iter()
            .filter_map(|(measurement, slice, at)| {
                let rollup = ROLLUP_LEVELS.into_iter().find(|r| r.measurement == measurement)?;
                let slice = u32::try_from(slice).ok().filter(|s| *s < ROLLUP_SLICES)?;
                Some((rollup, slice, at))
            })
            .collect();
        Ok(Self::owed_after(&made, now))
    }

    /// The runs owed at `now` after the last ones `made`: each slice's runs
    /// due after its last one made and before the turn of `now` (whose own
    /// are due in it), oldest first, a day's at most ([`ROLLUPS_OWED`]),
    /// each at the time it was due. A slice without a run made owes none.
    pub fn owed_after(made: &[RollupRun], now: DateTime<Utc>) -> Self {
        let turn = now.timestamp().div_euclid(ROLLUP_TURN_SECS);
        let day = 24 * 3600 / ROLLUP_TURN_SECS;
        let mut owed: Vec<RollupRun> = made
            .iter()
            .flat_map(|&(rollup, slice, last)| {
                let after = last.timestamp().div_euclid(ROLLUP_TURN_SECS) + 1;
                rollup.due_turns(slice, after.max(turn - day), turn).filter_map(move |due| {
                    let at = DateTime::from_timestamp_millis(due * ROLLUP_TURN_SECS * 1000 + ROLLUP_DELAY_MS)?;
                    Some((rollup, slice, at))
                })
            })
            .collect();
        // In a turn with both, the minutes first: the hours are made of them.
        owed.sort_by_key(|(rollup, _, at)| (*at, rollup.minutes));
        let over = owed.len().saturating_sub(ROLLUPS_OWED);
        Self { owed: owed.split_off(over).into(), failing: false }
    }

    /// The work of the turn of `now`: the runs due in it, then up to
    /// [`ROLLUPS_MADE_UP_PER_TURN`] owed ones, oldest first, until one
    /// fails (it and the rest stay owed). Returns the runs made.
    pub async fn turn(&mut self, influx: &Influx, now: DateTime<Utc>) -> Vec<RollupRun> {
        let turn = now.timestamp().div_euclid(ROLLUP_TURN_SECS);
        let due: Vec<_> = ROLLUP_LEVELS.into_iter().filter_map(|r| r.due(turn).map(|slice| (r, slice, now))).collect();
        let runs = due.len() + ROLLUPS_MADE_UP_PER_TURN;
        self.owed.extend(due);
        let mut made = Vec::new();
        for _ in 0..runs {
            let Some(&(rollup, slice, at)) = self.owed.front() else { break };
            let started = std::time::Instant::now();
            match influx.roll_up(rollup, slice, at).await {
                Ok(()) => {
                    made.extend(self.owed.pop_front());
                    if std::mem::take(&mut self.failing) {
                        tracing::info!(rollup = rollup.measurement, owed = self.owed.len(), "rolling up again");
                    }
                    tracing::debug!(rollup = rollup.measurement, slice, %at, elapsed = ?started.elapsed(), "rolled up");
                }
                // Once per failing spell (a server without `SELECT ...
                // INTO` would say so every minute).
                Err(e) => {
                    if std::mem::replace(&mut self.failing, true) {
                        tracing::debug!(error = %e, rollup = rollup.measurement, slice, "rolling up failed");
                    } else {
                        tracing::warn!(error = %e, rollup = rollup.measurement, slice, "rolling up failed; owed until it works");
                    }
                    break;
                }
            }
        }
        if self.owed.len() > ROLLUPS_OWED {
            let dropped = self.owed.len() - ROLLUPS_OWED;
            self.owed.drain(..dropped);
            tracing::warn!(dropped, "rollups owed for over a day given up; their buckets stay in the raw points only");
        }
        made
    }
}

/// Who holds the rollups' lock, as far as PostgreSQL says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// This projector: it makes the rollups.
    Held,
    /// Another projector.
    Elsewhere,
    /// PostgreSQL did not answer.
    Unknown,
}

/// Whether this projector makes the rollups: it does while it holds the
/// session-level advisory lock [`ROLLUP_LOCK`] on a connection of its own,
/// `held`, checked each time. A projector that loses it (its connection
/// broke) drops that connection, which ends the session and frees the lock
/// for whoever asks next.
pub async fn lead_rollups(pool: &PgPool, held: &mut Option<PgConnection>) -> Lead {
    if let Some(connection) = held {
        if sqlx::query("select 1").execute(&mut *connection).await.is_ok() {
            return Lead::Held;
        }
        tracing::info!("lost the rollups' lock; another projector may take them over");
        *held = None;
    }
    let Ok(mut connection) = pool.acquire().await else { return Lead::Unknown };
    let locked = sqlx::query_scalar::<_, bool>("select pg_try_advisory_lock(hashtext($1))")
        .bind(ROLLUP_LOCK)
        .fetch_one(&mut *connection)
        .await;
    // Kept out of the pool while it holds the lock; else back in it.
    match locked {
        Ok(true) => {
            tracing::info!("making the InfluxDB rollups");
            *held = Some(connection.detach());
            Lead::Held
        }
        Ok(false) => Lead::Elsewhere,
        Err(_) => Lead::Unknown,
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
        description: Some("CHECKS into InfluxDB; each message acknowledged once written".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 100_000,
        ..Default::default()
    }
}

/// Creates the consumer after the earlier version's acknowledged position
/// and deletes that one, if it exists.
async fn replace_earlier_consumer(stream: &async_nats::jetstream::stream::Stream) -> anyhow::Result<()> {
    let floor = match stream.consumer_info(EARLIER_INFLUX_CONSUMER).await {
        Ok(earlier) => earlier.ack_floor.stream_sequence,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context("looking up the earlier influxdb consumer"),
    };
    let config = consumer::pull::Config {
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: floor + 1 },
        ..influx_consumer_config()
    };
    // Made already (by another instance, or before a crash here): only the
    // earlier one is left to delete.
    match stream.consumer_info(INFLUX_CONSUMER).await {
        Ok(_) => {}
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            stream.create_consumer(config).await.context("creating the influxdb consumer")?;
        }
        Err(e) => return Err(e).context("looking up the influxdb consumer"),
    }
    delete_consumer(stream, EARLIER_INFLUX_CONSUMER).await?;
    tracing::info!(from = floor + 1, "the influxdb consumer acknowledges each message from now on");
    Ok(())
}

async fn follow_influx(bus: &Bus, influx: &Influx, max_batch: usize, cancel: &CancellationToken) -> anyhow::Result<()> {
    influx.ensure_database().await?;
    let stream = bus.js.get_stream(CHECKS_STREAM).await.context("opening CHECKS")?;
    replace_earlier_consumer(&stream).await?;
    let consumer = stream
        .get_or_create_consumer(INFLUX_CONSUMER, influx_consumer_config())
        .await
        .context("creating the influxdb consumer")?;
    // Short pull requests with heartbeats: when the consumer's leader
    // moves (its server died), a new request reaches the new one within
    // seconds.
    let mut batches = consumer
        .stream()
        .expires(INFLUX_PULL_EXPIRES)
        .heartbeat(follow::HEARTBEAT)
        .messages()
        .await
        .context("opening message stream")?
        .ready_chunks(max_batch);
    // The batches being written, oldest first, each with its messages
    // (acknowledged once it is): further batches are received, decoded and
    // sent meanwhile, so InfluxDB always has writes to work on.
    let mut writing: VecDeque<(tokio::task::JoinHandle<anyhow::Result<()>>, Vec<Message>)> = VecDeque::new();
    loop {
        let full = writing.len() >= INFLUX_BATCHES_IN_FLIGHT;
        let batch = match writing.front_mut() {
            Some((written, _)) => tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                result = written => {
                    if let Some((_, messages)) = writing.pop_front() {
                        acknowledge(result, &messages).await?;
                    }
                    continue;
                }
                batch = batches.next(), if !full => batch,
            },
            None => tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                batch = batches.next() => batch,
            },
        };
        let Some(batch) = batch else { anyhow::bail!("message stream ended") };
        let mut messages = Vec::with_capacity(batch.len());
        for message in batch {
            match message {
                Ok(message) => messages.push(message),
                // The library asks again by itself after the pull request's
                // expiry; only a busy reader or a moving leader misses them.
                Err(e) if e.kind() == MessagesErrorKind::MissingHeartbeat => {
                    tracing::debug!("influxdb consumer: heartbeats missed");
                }
                Err(e) => anyhow::bail!("receiving: {e}"),
            }
        }
        if messages.is_empty() {
            continue;
        }
        let mut checks = Vec::new();
        for message in &messages {
            let seq = message.info().map_err(|e| anyhow::anyhow!("message info: {e}"))?.stream_sequence;
            checks.extend(decode(CHECKS_STREAM, seq, &message.subject, &message.payload)?.into_iter().filter_map(
                |envelope| match envelope.event {
                    Event::CheckCompleted(check) => Some(check),
                    _ => None,
                },
            ));
        }
        writing.push_back((tokio::spawn(write_checks(influx.clone(), checks)), messages));
    }
}

/// Writes `checks` into InfluxDB: a few thousand points a request, several
/// requests at once (what InfluxDB takes best), the next sent as soon as
/// one is answered.
async fn write_checks(influx: Influx, checks: Vec<CheckCompleted>) -> anyhow::Result<()> {
    let checks: Vec<&CheckCompleted> = checks.iter().collect();
    let mut parts = checks.chunks(INFLUX_WRITE_POINTS);
    let mut writing = futures::stream::FuturesUnordered::new();
    loop {
        while writing.len() < INFLUX_WRITES_IN_FLIGHT {
            let Some(part) = parts.next() else { break };
            writing.push(influx.write(part));
        }
        match writing.next().await {
            Some(written) => written?,
            None => return Ok(()),
        }
    }
}

/// When the write succeeded, acknowledges each message of the batch.
async fn acknowledge(
    written: Result<anyhow::Result<()>, tokio::task::JoinError>,
    messages: &[Message],
) -> anyhow::Result<()> {
    written.context("influxdb write task")??;
    for message in messages {
        message.ack().await.map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
    }
    if let Some(last) = messages.last() {
        let (seq, lag) = follow::position_of(last)?;
        // Named as before the consumer was replaced, for dashboards.
        crate::metrics::reader_at(EARLIER_INFLUX_CONSUMER, seq, lag);
    }
    Ok(())
}

/// Rebuilds InfluxDB from CHECKS: drops the points and restarts the
/// consumer from the first retained check.
pub async fn replay_influx(bus: &Bus, influx: &Influx) -> anyhow::Result<()> {
    influx.ensure_database().await?;
    influx.drop_checks().await?;
    let stream = bus.js.get_stream(CHECKS_STREAM).await.context("opening CHECKS")?;
    for name in [INFLUX_CONSUMER, EARLIER_INFLUX_CONSUMER] {
        delete_consumer(&stream, name).await?;
    }
    tracing::info!("influxdb dropped; the projector re-reads CHECKS from its first retained message");
    Ok(())
}

/// Deletes the consumer `name` of `stream`, if it exists (never created:
/// InfluxDB never fed, nothing to restart).
async fn delete_consumer(stream: &async_nats::jetstream::stream::Stream, name: &str) -> anyhow::Result<()> {
    match stream.delete_consumer(name).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(js) if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("deleting the consumer {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TURN: i64 = ROLLUP_TURN_SECS;

    fn at(turn: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(turn * TURN * 1000 + ROLLUP_DELAY_MS).unwrap_or_default()
    }

    /// The first turn from `from` in which `slice` of `rollup` is due.
    fn first_due(rollup: Rollup, slice: u32, from: i64) -> i64 {
        rollup.due_turns(slice, from, from + 100_000).next().unwrap_or_default()
    }

    #[test]
    fn a_slice_owes_the_runs_due_after_its_last_one_made_and_before_this_turn() {
        let [minutes, hours] = ROLLUP_LEVELS;
        let last = first_due(minutes, 7, 116_000_000);
        // Three periods (64 minutes each) later: two runs fell due in
        // between; the third is due in this very turn, and is its own.
        let period = 64 * 60 / TURN;
        let now = at(last + 3 * period);
        let runs = RollupRuns::owed_after(&[(minutes, 7, at(last))], now);
        let owed: Vec<_> = runs.owed.iter().copied().collect();
        assert_eq!(owed, [(minutes, 7, at(last + period)), (minutes, 7, at(last + 2 * period))]);
        // Made up to this turn: nothing owed; and a level without a run
        // made owes none either.
        assert_eq!(RollupRuns::owed_after(&[(minutes, 7, at(last + 3 * period))], now).owed(), 0);
        assert_eq!(RollupRuns::owed_after(&[], now).owed(), 0);
        // Each slice of each level its own; oldest first, and in a turn
        // with both levels, the minutes first.
        let made: Vec<RollupRun> =
            (0..ROLLUP_SLICES).flat_map(|s| [(minutes, s, at(last)), (hours, s, at(last))]).collect();
        let runs = RollupRuns::owed_after(&made, now);
        let times: Vec<_> = runs.owed.iter().map(|(rollup, _, at)| (*at, rollup.minutes)).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "not oldest first");
        for (rollup, slice) in [(minutes, 7), (hours, 40)] {
            let expected: Vec<_> =
                rollup.due_turns(slice, last + 1, last + 3 * period).map(|t| (rollup, slice, at(t))).collect();
            let got: Vec<_> = runs.owed.iter().filter(|(r, s, _)| *r == rollup && *s == slice).copied().collect();
            assert_eq!(got, expected, "{} {slice}", rollup.measurement);
        }
    }

    #[test]
    fn a_projector_away_for_days_owes_the_last_days_runs_at_most() {
        let made: Vec<RollupRun> =
            ROLLUP_LEVELS.into_iter().flat_map(|r| (0..ROLLUP_SLICES).map(move |s| (r, s, at(116_000_000)))).collect();
        let now = at(116_000_000 + 5 * 24 * 3600 / TURN);
        let runs = RollupRuns::owed_after(&made, now);
        assert!(runs.owed() > ROLLUPS_OWED / 2 && runs.owed() <= ROLLUPS_OWED, "{} owed", runs.owed());
        let oldest = runs.owed.front().map(|(_, _, at)| *at).unwrap_or_default();
        assert!(oldest >= now - chrono::Duration::days(1), "owed from {oldest}");
    }
}
