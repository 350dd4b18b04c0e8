//! The notifier: turns SiteDown and SiteUp into emails people can act on.
//!
//! One email when a website's outage starts and one when it is back, with
//! the downtime and every region affected. A website is down while enough
//! of its regions are under its down policy: by default any, so the first
//! region down starts the outage and the last one back ends it. Two loops:
//!
//! - planner: follows `incidents.>` on MONITOR with its position in
//!   Postgres; per batch, in one transaction, it updates the open outages,
//!   writes the emails to send into the `notifications` outbox (keyed by the
//!   event id, so a redelivered or replayed event never makes a second one)
//!   and stores its position.
//! - sender: sends outbox rows through SMTP (lettre) and marks them sent; a
//!   failure is retried with exponential backoff (up to 5 minutes apart),
//!   never dropped. A row is leased while it is being sent, so two senders
//!   do not send it twice; the only window for a duplicate is a crash
//!   between the SMTP server accepting a message and the row being marked,
//!   and the message carries the event id as its Message-ID for that case.
//!
//! Transitions older than `NOTIFY_MAX_AGE_MINUTES` are recorded without an
//! email, so a replay, or a first start on old history, does not mail the
//! past.

use crate::bus::Bus;
use crate::config::{NotifyConfig, SmtpConfig, SmtpTls};
use crate::{follow, Deps};
use anyhow::Context;
use chrono::{DateTime, Utc};
use events::subject::{INCIDENTS, MONITOR_STREAM};
use events::{DecodeError, DownPolicy, Envelope, Event, SiteDown, SiteUp};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use projections::cursor;
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const POSITION: &str = "notification";
const LEASE: Duration = Duration::from_secs(60);
const MAX_BACKOFF_SECS: i64 = 300;

/// Sends email through the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Mailer> {
        let from: Mailbox =
            config.from.parse().with_context(|| format!("SMTP_FROM {:?} is not a mailbox", config.from))?;
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host).context("SMTP STARTTLS set-up")?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).context("SMTP TLS set-up")?,
        };
        let mut builder = builder.port(config.port).timeout(Some(Duration::from_secs(15)));
        if let Some(user) = &config.user {
            builder = builder.credentials(Credentials::new(user.clone(), config.pass.clone().unwrap_or_default()));
        }
        Ok(Mailer { transport: builder.build(), from })
    }

    async fn send(&self, email: &Outgoing) -> anyhow::Result<()> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}@website-monitor>", email.event_id)))
            .header(ContentType::TEXT_PLAIN);
        for recipient in &email.recipients {
            let mailbox: Mailbox = recipient.parse().with_context(|| format!("recipient {recipient:?}"))?;
            message = message.to(mailbox);
        }
        let message = message.body(email.body.clone()).context("building the message")?;
        self.transport.send(message).await.context("smtp")?;
        Ok(())
    }
}

pub async fn serve(deps: Deps, settings: NotifyConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let mailer = Mailer::new(&settings.smtp)?;
    deps.database_ready(&cancel).await?;
    let Deps { bus, pool, .. } = deps;
    let wake = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(plan_loop(bus, pool.clone(), settings, wake.clone(), cancel.clone()));
    tasks.spawn(send_loop(pool, mailer, wake, cancel.clone()));
    while let Some(joined) = tasks.join_next().await {
        joined.context("notification task panicked")??;
    }
    Ok(())
}

async fn plan_loop(
    bus: Bus,
    pool: PgPool,
    settings: NotifyConfig,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!("notifier following incidents");
    follow::supervise("notifier", &cancel, || plan_pass(&bus, &pool, &settings, &wake, &cancel)).await
}

/// Returns true when cancelled, false when the position moved under it.
async fn plan_pass(
    bus: &Bus,
    pool: &PgPool,
    settings: &NotifyConfig,
    wake: &Notify,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut cursor = cursor::offset(pool, POSITION).await?;
    let mut batches = follow::after(bus, MONITOR_STREAM, cursor, Some(INCIDENTS), 256).await?;
    while let Some(batch) = batches.next(cancel).await? {
        let mut tx = pool.begin().await?;
        if cursor::lock(&mut tx, POSITION).await? != cursor {
            return Ok(false);
        }
        let mut last = cursor;
        let mut queued = 0;
        for (seq, message) in batch {
            last = last.max(seq);
            let envelope = match Envelope::from_json(&message.payload) {
                Ok(envelope) => envelope,
                Err(DecodeError::UnknownType(_)) => continue,
                Err(e) => return Err(e).with_context(|| format!("MONITOR sequence {seq}")),
            };
            queued += plan(&mut tx, settings, &envelope).await?;
        }
        cursor::store(&mut tx, POSITION, last).await?;
        tx.commit().await?;
        cursor = last;
        if queued > 0 {
            wake.notify_one();
        }
    }
    Ok(true)
}

type WebsiteRow = (String, String, Vec<String>, String, i64);
type OutageRow = (Vec<String>, Vec<String>, DateTime<Utc>, bool);

/// Applies one transition to the open outages; returns how many emails it
/// queued (0 or 1). A website is down while enough of its regions are
/// under its down policy (default: any); the down email goes out when it
/// becomes down, the recovery email when it stops being down.
async fn plan(tx: &mut Transaction<'_, Postgres>, settings: &NotifyConfig, envelope: &Envelope) -> anyhow::Result<u32> {
    let (website_id, region) = match &envelope.event {
        Event::SiteDown(e) => (e.website_id, e.region.to_string()),
        Event::SiteUp(e) => (e.website_id, e.region.to_string()),
        _ => return Ok(0),
    };
    let website: Option<WebsiteRow> = sqlx::query_as(
        "select w.name, w.url, w.notify_emails, w.down_policy,
                (select count(*) from website_regions r where r.website_id = w.id)
         from websites w where w.id = $1",
    )
    .bind(website_id)
    .fetch_optional(&mut **tx)
    .await?;
    let (policy, total) = website
        .as_ref()
        .map(|(_, _, _, policy, total)| {
            (DownPolicy::parse(policy).unwrap_or_default(), usize::try_from(*total).unwrap_or(1))
        })
        .unwrap_or((DownPolicy::Any, 1));
    let outage: Option<OutageRow> = sqlx::query_as(
        "select regions, affected, started_at, announced from notification_outages where website_id = $1 for update",
    )
    .bind(website_id)
    .fetch_optional(&mut **tx)
    .await?;

    let mut email = None;
    match (&envelope.event, outage) {
        (Event::SiteDown(down), outage) => {
            let (mut regions, mut affected, mut started_at, mut announced) =
                outage.unwrap_or((vec![], vec![], down.started_at, false));
            for list in [&mut regions, &mut affected] {
                if !list.contains(&region) {
                    list.push(region.clone());
                }
            }
            if !announced && policy.is_down(regions.len(), total) {
                announced = true;
                started_at = down.started_at;
                email = Some(("down", down_email(settings, website_id, down, &regions)));
            }
            save_outage(tx, website_id, &regions, &affected, started_at, announced).await?;
        }
        (Event::SiteUp(up), Some((regions, affected, started_at, announced))) => {
            let still_down: Vec<String> = regions.into_iter().filter(|r| *r != region).collect();
            let mut next = (affected, announced);
            if announced && !policy.is_down(still_down.len(), total) {
                email = Some(("up", up_email(settings, website_id, up, started_at, &next.0)));
                next = (still_down.clone(), false);
            }
            if still_down.is_empty() {
                sqlx::query("delete from notification_outages where website_id = $1")
                    .bind(website_id)
                    .execute(&mut **tx)
                    .await?;
            } else {
                save_outage(tx, website_id, &still_down, &next.0, started_at, next.1).await?;
            }
        }
        // A recovery of an outage this notifier never saw begin.
        (Event::SiteUp(_), None) => {}
        _ => {}
    }
    let Some((kind, draft)) = email else { return Ok(0) };
    let Some((name, url, emails, _, _)) = website else {
        tracing::info!(%website_id, kind, "website no longer exists; no email");
        return Ok(0);
    };
    let recipients: Vec<String> =
        if emails.is_empty() { settings.default_recipient.iter().map(|r| r.to_string()).collect() } else { emails };
    if recipients.is_empty() {
        tracing::info!(%website_id, kind, "no recipients (notify_emails empty, NOTIFY_DEFAULT_EMAIL unset); no email");
        return Ok(0);
    }
    if Utc::now() - envelope.occurred_at > chrono::Duration::from_std(settings.max_age).unwrap_or(chrono::Duration::MAX)
    {
        tracing::info!(%website_id, kind, occurred_at = %envelope.occurred_at, "transition too old to email; recorded only");
        return Ok(0);
    }
    let (subject, body) = draft(&name, &url);
    let inserted = sqlx::query(
        "insert into notifications (event_id, website_id, kind, recipients, subject, body, created_at, next_attempt_at)
         values ($1, $2, $3, $4, $5, $6, now(), now())
         on conflict (event_id) do nothing",
    )
    .bind(envelope.id)
    .bind(website_id)
    .bind(kind)
    .bind(&recipients)
    .bind(&subject)
    .bind(&body)
    .execute(&mut **tx)
    .await?;
    Ok(u32::from(inserted.rows_affected() == 1))
}

async fn save_outage(
    tx: &mut Transaction<'_, Postgres>,
    website_id: Uuid,
    regions: &[String],
    affected: &[String],
    started_at: DateTime<Utc>,
    announced: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into notification_outages (website_id, regions, affected, started_at, announced)
         values ($1, $2, $3, $4, $5)
         on conflict (website_id) do update set regions = excluded.regions, affected = excluded.affected,
            started_at = excluded.started_at, announced = excluded.announced",
    )
    .bind(website_id)
    .bind(regions)
    .bind(affected)
    .bind(started_at)
    .bind(announced)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

type Draft = Box<dyn FnOnce(&str, &str) -> (String, String) + Send>;

fn down_email(settings: &NotifyConfig, website_id: Uuid, down: &SiteDown, regions: &[String]) -> Draft {
    let link = format!("{}/monitor/{website_id}/downtime", settings.public_url.trim_end_matches('/'));
    let (region, started_at) = (regions.join(", "), down.started_at);
    let cause = down.cause.map(projections::status::cause_name).unwrap_or_else(|| "unknown".into());
    let status = down.status_code.map_or_else(|| "none (no response)".to_owned(), |c| c.to_string());
    let detail = down.message.clone().unwrap_or_default();
    Box::new(move |name, url| {
        let subject = format!("[DOWN] {name} is down ({cause})");
        let body = format!(
            "{name} ({url}) is DOWN.\n\n\
             Since:       {} (UTC)\n\
             Region(s):   {region}\n\
             Cause:       {cause}{}\n\
             Status code: {status}\n\n\
             Downtime and response times: {link}\n\n\
             You will get one more email when it is back up.\n",
            started_at.format("%Y-%m-%d %H:%M:%S"),
            if detail.is_empty() { String::new() } else { format!(" ({detail})") },
        );
        (subject, body)
    })
}

fn up_email(
    settings: &NotifyConfig,
    website_id: Uuid,
    up: &SiteUp,
    started_at: DateTime<Utc>,
    affected: &[String],
) -> Draft {
    let link = format!("{}/monitor/{website_id}/downtime", settings.public_url.trim_end_matches('/'));
    let ended_at = up.ended_at;
    let downtime = human_duration((ended_at - started_at).num_seconds().max(0));
    let regions = affected.join(", ");
    Box::new(move |name, url| {
        let subject = format!("[UP] {name} is back up after {downtime}");
        let body = format!(
            "{name} ({url}) is UP again.\n\n\
             Down from:   {} (UTC)\n\
             Up since:    {} (UTC)\n\
             Downtime:    {downtime}\n\
             Regions:     {regions}\n\n\
             Downtime history: {link}\n",
            started_at.format("%Y-%m-%d %H:%M:%S"),
            ended_at.format("%Y-%m-%d %H:%M:%S"),
        );
        (subject, body)
    })
}

/// `3d 4h 5m 6s`, leaving out leading zero units.
pub fn human_duration(seconds: i64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    let parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")];
    let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    parts[first..].iter().map(|(v, unit)| format!("{v}{unit}")).collect::<Vec<_>>().join(" ")
}

struct Outgoing {
    event_id: Uuid,
    recipients: Vec<String>,
    subject: String,
    body: String,
    attempts: i32,
}

async fn send_loop(pool: PgPool, mailer: Mailer, wake: Arc<Notify>, cancel: CancellationToken) -> anyhow::Result<()> {
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

/// Leases due emails, sends them, and records each outcome. Returns how
/// many were attempted.
async fn send_due(pool: &PgPool, mailer: &Mailer) -> anyhow::Result<usize> {
    let rows: Vec<(Uuid, Vec<String>, String, String, i32)> = sqlx::query_as(
        "update notifications set next_attempt_at = now() + make_interval(secs => $1)
         where event_id in (
             select event_id from notifications
             where sent_at is null and next_attempt_at <= now()
             order by next_attempt_at limit 20 for update skip locked)
         returning event_id, recipients, subject, body, attempts",
    )
    .bind(LEASE.as_secs_f64())
    .fetch_all(pool)
    .await?;
    for (event_id, recipients, subject, body, attempts) in &rows {
        let email = Outgoing {
            event_id: *event_id,
            recipients: recipients.clone(),
            subject: subject.clone(),
            body: body.clone(),
            attempts: *attempts,
        };
        match mailer.send(&email).await {
            Ok(()) => {
                sqlx::query("update notifications set sent_at = now(), attempts = attempts + 1, last_error = null where event_id = $1")
                    .bind(email.event_id)
                    .execute(pool)
                    .await?;
                tracing::info!(event_id = %email.event_id, subject = email.subject, "email sent");
            }
            Err(e) => {
                let delay =
                    2i64.saturating_pow(u32::try_from(email.attempts).unwrap_or(0).min(16)).min(MAX_BACKOFF_SECS);
                sqlx::query(
                    "update notifications set attempts = attempts + 1, last_error = $2,
                        next_attempt_at = now() + make_interval(secs => $3)
                     where event_id = $1",
                )
                .bind(email.event_id)
                .bind(format!("{e:#}"))
                .bind(delay as f64)
                .execute(pool)
                .await?;
                tracing::warn!(event_id = %email.event_id, error = format!("{e:#}"), retry_in_secs = delay, "sending an email failed; will retry");
            }
        }
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(312), "5m 12s");
        assert_eq!(human_duration(3600), "1h 0m 0s");
        assert_eq!(human_duration(90_061), "1d 1h 1m 1s");
    }
}
