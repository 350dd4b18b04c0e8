//! The outbox of every channel (`deliveries`): rows are queued by the
//! planner in the same transaction as its stream position, keyed by (event,
//! channel), then sent here.
//!
//! - A due row is leased (its next attempt moved past the lease) before it
//!   is sent, so two senders never send it at once.
//! - Rows are sent concurrently, at most [`PER_CHANNEL`] at once per
//!   channel and [`IN_FLIGHT`] in all, so an endpoint that hangs (each
//!   attempt ends after 10 s) or fails holds up nothing but itself.
//! - Each attempt is logged in `delivery_attempts`. A failure is retried
//!   with exponential backoff up to [`MAX_BACKOFF_SECS`] apart for
//!   [`GIVE_UP_AFTER_HOURS`], then the row is marked failed, never dropped
//!   silently. 410 Gone disables the channel (a ChannelDisabled event) and
//!   fails its pending rows; a removed or disabled channel's rows fail with
//!   that reason.
//! - The waiting rows per channel type are counted every 5 s, and each
//!   attempt's result is counted ([`crate::metrics`]).

use super::deliver::{Destination, Outcome, Transports};
use super::message::Kind;
use super::settings::ChannelSettings;
use crate::bus::{Bus, BusError};
use crate::metrics::{self, Delivery};
use crate::secrets::Sealer;
use chrono::{DateTime, Utc};
use events::{Actor, ChannelDisabled, ChannelKind, Envelope, Event};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a row stays leased to the sender that took it: longer than
/// any attempt (10 s HTTP, 15 s SMTP).
const LEASE: Duration = Duration::from_secs(60);
/// The longest wait between two attempts of one delivery.
pub const MAX_BACKOFF_SECS: i64 = 300;
/// A delivery still failing this long after it was queued is given up.
pub const GIVE_UP_AFTER_HOURS: i64 = 24;
/// Deliveries in flight at once, in all and per channel.
const IN_FLIGHT: usize = 64;
const PER_CHANNEL: usize = 4;
/// How long a stopping sender lets attempts in flight finish.
const DRAIN: Duration = Duration::from_secs(5);

/// The channel id of a website's own `notify_emails`.
pub const WEBSITE_EMAILS: Uuid = Uuid::nil();

/// A delivery to queue.
pub struct Planned {
    pub event_id: Uuid,
    pub channel_id: Uuid,
    pub website_id: Option<Uuid>,
    pub kind: Kind,
    pub channel_kind: ChannelKind,
    /// As rendered by [`super::message`]; for a website's own emails also
    /// `recipients`.
    pub message: Value,
}

/// Queues a delivery; one already queued for the same event and channel is
/// not queued again. Returns whether a row was added.
pub async fn queue(tx: &mut Transaction<'_, Postgres>, planned: &Planned) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into deliveries (event_id, channel_id, website_id, kind, channel_kind, message, created_at, next_attempt_at)
         values ($1, $2, $3, $4, $5, $6, now(), now())
         on conflict (event_id, channel_id) do nothing",
    )
    .bind(planned.event_id)
    .bind(planned.channel_id)
    .bind(planned.website_id)
    .bind(planned.kind.as_str())
    .bind(planned.channel_kind.as_str())
    .bind(&planned.message)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// What a sender needs.
#[derive(Clone)]
pub struct Sender {
    pub pool: PgPool,
    pub bus: Bus,
    pub transports: Transports,
    pub sealer: Sealer,
}

/// Sends due deliveries until `cancel` fires: at once when woken, else
/// every half second.
pub async fn send_loop(sender: Sender, wake: Arc<Notify>, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut running: JoinSet<Uuid> = JoinSet::new();
    let mut busy: HashMap<Uuid, usize> = HashMap::new();
    let mut sampled: Option<Instant> = None;
    loop {
        if sampled.is_none_or(|at| at.elapsed() >= DEPTH_SAMPLE) {
            sampled = Some(Instant::now());
            match depth(&sender.pool).await {
                Ok(counts) => metrics::outbox_depth(&counts),
                Err(e) => tracing::warn!(error = %e, "counting the outbox failed"),
            }
        }
        let free = IN_FLIGHT.saturating_sub(running.len());
        let mut leased_any = false;
        if free > 0 {
            let full: Vec<Uuid> = busy.iter().filter(|(_, n)| **n >= PER_CHANNEL).map(|(c, _)| *c).collect();
            match lease(&sender.pool, free, &full).await {
                Ok(rows) => {
                    leased_any = !rows.is_empty();
                    for row in rows {
                        *busy.entry(row.channel_id).or_default() += 1;
                        let sender = sender.clone();
                        running.spawn(async move {
                            let channel_id = row.channel_id;
                            if let Err(e) = attempt(&sender, row).await {
                                tracing::warn!(
                                    error = format!("{e:#}"),
                                    "recording a delivery failed; it is retried after its lease"
                                );
                            }
                            channel_id
                        });
                    }
                }
                Err(e) => tracing::warn!(error = format!("{e:#}"), "reading the outbox failed"),
            }
        }
        if leased_any {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = running.join_next() => {
                if let Ok(channel_id) = done {
                    release(&mut busy, channel_id);
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    // Attempts in flight finish if they can; the rest are retried after
    // their lease.
    let _ = tokio::time::timeout(DRAIN, async { while running.join_next().await.is_some() {} }).await;
    running.abort_all();
    Ok(())
}

/// How often the outbox's depth is counted for the metrics.
const DEPTH_SAMPLE: Duration = Duration::from_secs(5);

/// Deliveries waiting (neither delivered nor given up), per channel type.
async fn depth(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "select channel_kind, count(*) from deliveries
         where delivered_at is null and failed_at is null group by channel_kind",
    )
    .fetch_all(pool)
    .await
}

fn release(busy: &mut HashMap<Uuid, usize>, channel_id: Uuid) {
    if let Some(count) = busy.get_mut(&channel_id) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            busy.remove(&channel_id);
        }
    }
}

/// A leased row.
#[derive(sqlx::FromRow)]
struct Leased {
    event_id: Uuid,
    channel_id: Uuid,
    kind: String,
    channel_kind: String,
    message: Value,
    attempts: i32,
    created_at: DateTime<Utc>,
}

/// Leases up to `limit` due rows, at most one per channel per call and none
/// of the channels in `full`. The candidates are read without locks; the
/// update takes a row only if it is still due when locked, so two senders
/// never lease the same row.
async fn lease(pool: &PgPool, limit: usize, full: &[Uuid]) -> Result<Vec<Leased>, sqlx::Error> {
    sqlx::query_as(
        "with candidates as (
             select event_id, channel_id from (
                 select event_id, channel_id,
                        row_number() over (partition by channel_id order by next_attempt_at, created_at) as n
                 from deliveries
                 where delivered_at is null and failed_at is null and next_attempt_at <= now()
                   and not (channel_id = any($3))
             ) due where n = 1 limit $2)
         update deliveries d set next_attempt_at = now() + make_interval(secs => $1)
         from candidates c
         where d.event_id = c.event_id and d.channel_id = c.channel_id
           and d.delivered_at is null and d.failed_at is null and d.next_attempt_at <= now()
         returning d.event_id, d.channel_id, d.kind, d.channel_kind, d.message, d.attempts, d.created_at",
    )
    .bind(LEASE.as_secs_f64())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(full)
    .fetch_all(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    name: String,
    sealed: String,
    enabled: bool,
    disabled_reason: Option<String>,
    stream_seq: i64,
}

/// One attempt of one row, and its outcome recorded.
async fn attempt(sender: &Sender, row: Leased) -> anyhow::Result<()> {
    let started = Instant::now();
    // A website's own emails and status page subscribers' mails carry their
    // recipients; every other row goes to its channel.
    let addressed = row.channel_id == WEBSITE_EMAILS || matches!(row.kind.as_str(), "confirm" | "status");
    let outcome = if addressed {
        let recipients: Vec<String> =
            row.message.get("recipients").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default();
        sender.transports.send(row.event_id, Destination::Recipients(&recipients), &row.message).await
    } else {
        let channel: Option<ChannelRow> =
            sqlx::query_as("select name, sealed, enabled, disabled_reason, stream_seq from channels where id = $1")
                .bind(row.channel_id)
                .fetch_optional(&sender.pool)
                .await?;
        let Some(channel) = channel else {
            metrics::delivery(&row.channel_kind, Delivery::GivenUp);
            return give_up(&sender.pool, &row, "the channel was removed").await;
        };
        if !channel.enabled {
            metrics::delivery(&row.channel_kind, Delivery::GivenUp);
            let reason = channel.disabled_reason.unwrap_or_else(|| "turned off".into());
            return give_up(&sender.pool, &row, &format!("the channel is disabled ({reason})")).await;
        }
        let settings: ChannelSettings = match sender.sealer.open(&channel.sealed).await {
            Ok(plain) => serde_json::from_slice(&plain)?,
            Err(e) => {
                metrics::delivery(&row.channel_kind, Delivery::Failed);
                record(&sender.pool, &row, started, None, Some(&e.to_string()), Next::Retry).await?;
                return Ok(());
            }
        };
        let outcome = sender.transports.send(row.event_id, Destination::Channel(&settings), &row.message).await;
        if outcome == Outcome::Gone {
            disable(sender, row.channel_id, &channel).await;
        }
        outcome
    };
    match outcome {
        Outcome::Delivered { status } => {
            metrics::delivery(&row.channel_kind, Delivery::Delivered);
            record(&sender.pool, &row, started, status, None, Next::Delivered).await?;
            tracing::info!(event_id = %row.event_id, channel_id = %row.channel_id, kind = row.kind, "delivered");
        }
        Outcome::Gone => {
            metrics::delivery(&row.channel_kind, Delivery::Gone);
            let error = "HTTP 410 Gone: the endpoint is gone; the channel was disabled";
            record(&sender.pool, &row, started, Some(410), Some(error), Next::GiveUp).await?;
        }
        Outcome::Failed { status, error } => {
            let given_up = Utc::now() - row.created_at >= chrono::Duration::hours(GIVE_UP_AFTER_HOURS);
            let result = if given_up { Next::GiveUp } else { Next::Retry };
            metrics::delivery(&row.channel_kind, if given_up { Delivery::GivenUp } else { Delivery::Failed });
            record(&sender.pool, &row, started, status, Some(&error), result).await?;
            tracing::warn!(event_id = %row.event_id, channel_id = %row.channel_id, error, given_up, "delivery failed");
        }
    }
    Ok(())
}

enum Next {
    Delivered,
    Retry,
    GiveUp,
}

/// Logs the attempt and moves the row on.
async fn record(
    pool: &PgPool,
    row: &Leased,
    started: Instant,
    status: Option<u16>,
    error: Option<&str>,
    result: Next,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    sqlx::query(
        "insert into delivery_attempts (event_id, channel_id, attempt, at, status_code, error, duration_ms)
         values ($1, $2, $3, now(), $4, $5, $6) on conflict do nothing",
    )
    .bind(row.event_id)
    .bind(row.channel_id)
    .bind(row.attempts + 1)
    .bind(status.map(i32::from))
    .bind(error)
    .bind(duration_ms)
    .execute(&mut *tx)
    .await?;
    let (delivered, failed, delay) = match result {
        Next::Delivered => (true, false, 0),
        Next::GiveUp => (false, true, 0),
        Next::Retry => (false, false, retry_delay_secs(row.attempts)),
    };
    sqlx::query(
        "update deliveries set attempts = attempts + 1, last_status_code = $3, last_error = $4,
            delivered_at = case when $5 then now() end,
            failed_at = case when $6 then now() end,
            next_attempt_at = now() + make_interval(secs => $7)
         where event_id = $1 and channel_id = $2",
    )
    .bind(row.event_id)
    .bind(row.channel_id)
    .bind(status.map(i32::from))
    .bind(error)
    .bind(delivered)
    .bind(failed)
    .bind(delay as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Marks a row failed without an attempt (its channel is gone or off).
async fn give_up(pool: &PgPool, row: &Leased, reason: &str) -> anyhow::Result<()> {
    sqlx::query("update deliveries set failed_at = now(), last_error = $3 where event_id = $1 and channel_id = $2")
        .bind(row.event_id)
        .bind(row.channel_id)
        .bind(reason)
        .execute(pool)
        .await?;
    tracing::info!(event_id = %row.event_id, channel_id = %row.channel_id, reason, "delivery not attempted");
    Ok(())
}

/// Records that the channel's endpoint is gone (ChannelDisabled, by the
/// system) and fails the rest of its queue.
async fn disable(sender: &Sender, channel_id: Uuid, channel: &ChannelRow) {
    let reason = "the endpoint answered 410 Gone".to_owned();
    // The channel was enabled when read; publishing against its sequence
    // makes that the condition (a concurrent change wins and the next 410
    // decides again).
    let event = Event::ChannelDisabled(ChannelDisabled { channel_id, reason: reason.clone() });
    let envelope = Envelope::new(event, Utc::now()).by(Actor::System, None);
    match sender.bus.publish(&envelope, Some(u64::try_from(channel.stream_seq).unwrap_or(0))).await {
        Ok(_) => tracing::warn!(%channel_id, name = channel.name, "channel disabled: its endpoint answered 410 Gone"),
        Err(BusError::Conflict) => {}
        Err(e) => tracing::warn!(%channel_id, error = %e, "recording the disabled channel failed"),
    }
    let failed = sqlx::query(
        "update deliveries set failed_at = now(), last_error = $2
         where channel_id = $1 and delivered_at is null and failed_at is null and next_attempt_at <= now() + interval '1 second'",
    )
    .bind(channel_id)
    .bind(format!("the channel is disabled ({reason})"))
    .execute(&sender.pool)
    .await;
    if let Err(e) = failed {
        tracing::warn!(%channel_id, error = %e, "failing the disabled channel's queue failed; its rows fail when next due");
    }
}

/// Seconds to wait after the failed attempt number `attempts + 1`: 1, 2,
/// 4, ... up to [`MAX_BACKOFF_SECS`].
fn retry_delay_secs(attempts: i32) -> i64 {
    2i64.saturating_pow(u32::try_from(attempts).unwrap_or(0).min(16)).min(MAX_BACKOFF_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        assert_eq!(retry_delay_secs(0), 1);
        assert_eq!(retry_delay_secs(1), 2);
        assert_eq!(retry_delay_secs(5), 32);
        assert_eq!(retry_delay_secs(9), MAX_BACKOFF_SECS);
        assert_eq!(retry_delay_secs(1000), MAX_BACKOFF_SECS);
        assert_eq!(retry_delay_secs(-1), 1);
    }
}
