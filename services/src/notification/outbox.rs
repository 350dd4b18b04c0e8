//! The email outbox (`notifications`): rows are queued by the planner in
//! the same transaction as its stream position, then sent here. A due row
//! is leased (its next attempt moved past the lease) before it is sent, so
//! two senders never send it at once; a sent row is marked, a failed one is
//! retried with exponential backoff up to [`MAX_BACKOFF_SECS`] apart and
//! never dropped.

use super::channels::{Email, Mailer};
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a row stays leased to the sender that took it.
const LEASE: Duration = Duration::from_secs(60);
/// The longest wait between two attempts of one email.
pub const MAX_BACKOFF_SECS: i64 = 300;
/// Rows leased at once.
const LEASE_BATCH: i64 = 20;

/// Which email a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Down,
    Up,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Down => "down",
            Kind::Up => "up",
        }
    }
}

/// Queues `email` caused by event `event_id`; an event already queued is
/// not queued again. Returns whether a row was added.
pub async fn queue(
    tx: &mut Transaction<'_, Postgres>,
    event_id: Uuid,
    website_id: Uuid,
    kind: Kind,
    recipients: &[String],
    email: &Email,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into notifications (event_id, website_id, kind, recipients, subject, body, created_at, next_attempt_at)
         values ($1, $2, $3, $4, $5, $6, now(), now())
         on conflict (event_id) do nothing",
    )
    .bind(event_id)
    .bind(website_id)
    .bind(kind.as_str())
    .bind(recipients)
    .bind(&email.subject)
    .bind(&email.body)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Sends due emails until `cancel` fires: at once when woken, else every
/// half second.
pub async fn send_loop(
    pool: PgPool,
    mailer: Mailer,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match send_due(&pool, &mailer).await {
            Ok(sent) if sent > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "reading the outbox failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// A leased row.
#[derive(sqlx::FromRow)]
struct Outgoing {
    event_id: Uuid,
    recipients: Vec<String>,
    subject: String,
    body: String,
    attempts: i32,
}

/// Leases due emails, sends them, and records each outcome. Returns how
/// many were attempted.
async fn send_due(pool: &PgPool, mailer: &Mailer) -> anyhow::Result<usize> {
    let rows: Vec<Outgoing> = sqlx::query_as(
        "update notifications set next_attempt_at = now() + make_interval(secs => $1)
         where event_id in (
             select event_id from notifications
             where sent_at is null and next_attempt_at <= now()
             order by next_attempt_at limit $2 for update skip locked)
         returning event_id, recipients, subject, body, attempts",
    )
    .bind(LEASE.as_secs_f64())
    .bind(LEASE_BATCH)
    .fetch_all(pool)
    .await?;
    for row in &rows {
        let email = Email { subject: row.subject.clone(), body: row.body.clone() };
        match mailer.send(row.event_id, &row.recipients, &email).await {
            Ok(()) => {
                sqlx::query(
                    "update notifications set sent_at = now(), attempts = attempts + 1, last_error = null
                     where event_id = $1",
                )
                .bind(row.event_id)
                .execute(pool)
                .await?;
                tracing::info!(event_id = %row.event_id, subject = row.subject, "email sent");
            }
            Err(e) => {
                let delay = retry_delay_secs(row.attempts);
                sqlx::query(
                    "update notifications set attempts = attempts + 1, last_error = $2,
                        next_attempt_at = now() + make_interval(secs => $3)
                     where event_id = $1",
                )
                .bind(row.event_id)
                .bind(format!("{e:#}"))
                .bind(delay as f64)
                .execute(pool)
                .await?;
                tracing::warn!(event_id = %row.event_id, error = format!("{e:#}"), retry_in_secs = delay, "sending an email failed; will retry");
            }
        }
    }
    Ok(rows.len())
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
