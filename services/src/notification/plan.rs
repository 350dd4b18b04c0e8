//! The planner: a [`Handler`] of the SiteDown/SiteUp events on MONITOR
//! (`incidents.>`) that keeps each website's open outage in
//! `notification_outages` and turns the website-level changes of
//! [`events::outage::step`] into outbox rows, in the runner's transaction.
//! The outage rows, the emails and the position commit together; an email
//! is keyed by the event that caused it, so a replayed batch queues nothing
//! twice.

use super::channels::{self, Site};
use super::outbox::{self, Kind};
use crate::config::NotifyConfig;
use chrono::{DateTime, Utc};
use events::outage::{self, Outage, RegionChange, WebsiteChange};
use events::subject::{INCIDENTS, MONITOR_STREAM};
use events::{DownPolicy, Envelope, RegionName};
use projections::handler::{Handler, StreamEvent};
use projections::Error;
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// The name the planner's position is stored under.
pub const POSITION: &str = "notification";

/// Plans the emails of the incidents on MONITOR.
pub struct Planner {
    settings: NotifyConfig,
    /// Woken after a batch with transitions commits, so the sender does
    /// not wait for its next poll.
    wake: Arc<Notify>,
}

impl Planner {
    pub fn new(settings: NotifyConfig, wake: Arc<Notify>) -> Self {
        Self { settings, wake }
    }
}

impl Handler for Planner {
    type Error = Error;
    const NAME: &'static str = POSITION;
    const STREAM: &'static str = MONITOR_STREAM;
    const FILTER: Option<&'static str> = Some(INCIDENTS);

    async fn apply(&self, tx: &mut Transaction<'_, Postgres>, events: &[StreamEvent]) -> Result<(), Error> {
        for event in events {
            if let Some(change) = RegionChange::of(&event.envelope.event) {
                plan(tx, &self.settings, &event.envelope, change).await?;
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), Error> {
        // The outbox stays: it is keyed by event, so a replay adds nothing.
        sqlx::query("delete from notification_outages").execute(&mut **tx).await?;
        Ok(())
    }

    fn committed(&self, events: &[StreamEvent]) {
        if events.iter().any(|e| RegionChange::of(&e.envelope.event).is_some()) {
            self.wake.notify_one();
        }
    }
}

/// What the planner needs of a website.
#[derive(sqlx::FromRow)]
struct WebsiteRow {
    name: String,
    url: String,
    notify_emails: Vec<String>,
    down_policy: String,
    /// How many regions it is checked from.
    regions: i64,
}

/// Applies one region change to the website's outage and queues the email
/// of the website-level change it makes, if any.
async fn plan(
    tx: &mut Transaction<'_, Postgres>,
    settings: &NotifyConfig,
    envelope: &Envelope,
    change: RegionChange<'_>,
) -> Result<(), Error> {
    let website_id = change.website_id();
    let website: Option<WebsiteRow> = sqlx::query_as(
        "select w.name, w.url, w.notify_emails, w.down_policy,
                (select count(*) from website_regions r where r.website_id = w.id) as regions
         from websites w where w.id = $1",
    )
    .bind(website_id)
    .fetch_optional(&mut **tx)
    .await?;
    // A removed website keeps the default policy for what is left of its
    // outage.
    let (policy, regions) = match &website {
        Some(w) => (
            DownPolicy::parse(&w.down_policy).map_err(|e| Error::Corrupt(format!("website {website_id}: {e}")))?,
            usize::try_from(w.regions).unwrap_or(1),
        ),
        None => (DownPolicy::Any, 1),
    };
    let state = load_outage(tx, website_id).await?;
    let (next, website_change) = outage::step(state, change, policy, regions);
    save_outage(tx, website_id, next.as_ref()).await?;

    let Some(website_change) = website_change else { return Ok(()) };
    let kind = match website_change {
        WebsiteChange::Started { .. } => Kind::Down,
        WebsiteChange::Ended { .. } => Kind::Up,
    };
    let Some(website) = website else {
        tracing::info!(%website_id, kind = kind.as_str(), "website no longer exists; no email");
        return Ok(());
    };
    let recipients: Vec<String> = if website.notify_emails.is_empty() {
        settings.default_recipient.iter().map(|r| r.to_string()).collect()
    } else {
        website.notify_emails.clone()
    };
    if recipients.is_empty() {
        tracing::info!(%website_id, kind = kind.as_str(), "no recipients (notify_emails empty, NOTIFY_DEFAULT_EMAIL unset); no email");
        return Ok(());
    }
    let max_age = chrono::Duration::from_std(settings.max_age).unwrap_or(chrono::Duration::MAX);
    if Utc::now() - envelope.occurred_at > max_age {
        tracing::info!(%website_id, kind = kind.as_str(), occurred_at = %envelope.occurred_at, "transition too old to email; recorded only");
        return Ok(());
    }
    let site = Site { id: website_id, name: &website.name, url: &website.url };
    let link = channels::website_page(&settings.public_url, website_id);
    let email = match (&website_change, change) {
        (WebsiteChange::Started { started_at, regions }, RegionChange::Down(down)) => {
            channels::down_email(site, down, *started_at, regions, &link)
        }
        (WebsiteChange::Ended { started_at, ended_at, regions }, _) => {
            channels::up_email(site, *started_at, *ended_at, regions, &link)
        }
        // The verdict starts an outage only on a region going down.
        (WebsiteChange::Started { .. }, RegionChange::Up(_)) => return Ok(()),
    };
    outbox::queue(tx, envelope.id, website_id, kind, &recipients, &email).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct OutageRow {
    regions: Vec<String>,
    affected: Vec<String>,
    started_at: DateTime<Utc>,
    announced: bool,
}

/// The website's open outage, locked for the rest of the transaction.
async fn load_outage(tx: &mut Transaction<'_, Postgres>, website_id: Uuid) -> Result<Option<Outage>, Error> {
    let row: Option<OutageRow> = sqlx::query_as(
        "select regions, affected, started_at, announced from notification_outages where website_id = $1 for update",
    )
    .bind(website_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let parse = |names: &[String]| -> Result<Vec<RegionName>, Error> {
        names
            .iter()
            .map(|r| RegionName::parse(r).map_err(|e| Error::Corrupt(format!("outage of website {website_id}: {e}"))))
            .collect()
    };
    Ok(Some(Outage {
        down: parse(&row.regions)?,
        affected: parse(&row.affected)?,
        started_at: row.started_at,
        website_down: row.announced,
    }))
}

/// Stores the website's outage; `None` (every region up) deletes it.
async fn save_outage(
    tx: &mut Transaction<'_, Postgres>,
    website_id: Uuid,
    outage: Option<&Outage>,
) -> Result<(), Error> {
    let Some(outage) = outage else {
        sqlx::query("delete from notification_outages where website_id = $1")
            .bind(website_id)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    };
    let names = |regions: &[RegionName]| regions.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    sqlx::query(
        "insert into notification_outages (website_id, regions, affected, started_at, announced)
         values ($1, $2, $3, $4, $5)
         on conflict (website_id) do update set regions = excluded.regions, affected = excluded.affected,
            started_at = excluded.started_at, announced = excluded.announced",
    )
    .bind(website_id)
    .bind(names(&outage.down))
    .bind(names(&outage.affected))
    .bind(outage.started_at)
    .bind(outage.website_down)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
