//! The planner: a [`Handler`] of the SiteDown/SiteUp events on MONITOR
//! (`incidents.>`) that keeps each website's open outage in
//! `notification_outages` and turns the website-level changes of
//! [`events::outage::step`] into deliveries, one per destination (the
//! website's own emails, its channels, the default channels), in the
//! runner's transaction. The outage rows, the deliveries, the decision of
//! every SiteDown/SiteUp (`alert_decisions`, for "why was I (not)
//! alerted") and the position commit together; a delivery is keyed by the
//! event that caused it and its channel, so a replayed batch queues
//! nothing twice.

use super::email::{self, Site};
use super::message::{Alert, Change};
use super::outbox::{self, Planned, WEBSITE_EMAILS};
use crate::config::NotifyConfig;
use crate::secrets::Sealer;
use chrono::{DateTime, Utc};
use events::outage::{self, Outage, RegionChange, WebsiteChange};
use events::subject::{INCIDENTS, MONITOR_STREAM};
use events::{CertificateExpiring, ChannelKind, DownPolicy, Envelope, Event, RegionName};
use projections::handler::{Handler, StreamEvent};
use projections::Error;
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// The name the planner's position is stored under.
pub const POSITION: &str = "notification";

/// Plans the alerts of the incidents on MONITOR.
pub struct Planner {
    settings: NotifyConfig,
    /// Derives the unsubscribe links of status page subscribers' mails;
    /// without it (a planner built for a test) they are not mailed.
    sealer: Option<Sealer>,
    /// Woken after a batch with transitions commits, so the sender does
    /// not wait for its next poll.
    wake: Arc<Notify>,
}

impl Planner {
    pub fn new(settings: NotifyConfig, wake: Arc<Notify>) -> Self {
        Self { settings, wake, sealer: None }
    }

    /// Mails status page subscribers too, with links derived by `sealer`.
    pub fn with_sealer(self, sealer: Sealer) -> Self {
        Self { sealer: Some(sealer), ..self }
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
                plan(tx, &self.settings, self.sealer.as_ref(), &event.envelope, change).await?;
            } else if let Event::CertificateExpiring(expiring) = &event.envelope.event {
                plan_certificate(tx, &self.settings, &event.envelope, expiring).await?;
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
        let alerting = |e: &Event| RegionChange::of(e).is_some() || matches!(e, Event::CertificateExpiring(_));
        if events.iter().any(|e| alerting(&e.envelope.event)) {
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
    channel_ids: Vec<Uuid>,
    /// How many regions it is checked from.
    regions: i64,
}

/// What the planner needs of a website, `None` once it is removed.
async fn load_website(tx: &mut Transaction<'_, Postgres>, website_id: Uuid) -> Result<Option<WebsiteRow>, Error> {
    Ok(sqlx::query_as(
        "select w.name, w.url, w.notify_emails, w.down_policy, w.channel_ids,
                (select count(*) from website_regions r where r.website_id = w.id) as regions
         from websites w where w.id = $1",
    )
    .bind(website_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// A channel the website's alerts go to.
#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: Uuid,
    name: String,
    kind: String,
    enabled: bool,
    disabled_reason: Option<String>,
}

/// One destination of a decision, as `/monitor/:id/alerts` shows it.
#[derive(Debug, Clone, serde::Serialize)]
struct Destination {
    channel_id: Uuid,
    name: String,
    kind: String,
    planned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// What was decided for one SiteDown/SiteUp.
struct Decision<'a> {
    outcome: &'static str,
    suppressed: Option<String>,
    destinations: Vec<Destination>,
    policy: DownPolicy,
    regions_down: &'a [RegionName],
    regions_total: usize,
}

/// Applies one region change to the website's outage, queues a delivery
/// per destination of the website-level change it makes, if any, and
/// records the decision.
async fn plan(
    tx: &mut Transaction<'_, Postgres>,
    settings: &NotifyConfig,
    sealer: Option<&Sealer>,
    envelope: &Envelope,
    change: RegionChange<'_>,
) -> Result<(), Error> {
    let website_id = change.website_id();
    let website = load_website(tx, website_id).await?;
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
    let down_now: Vec<RegionName> = next.as_ref().map(|o| o.down.clone()).unwrap_or_default();
    let mut decision = Decision {
        outcome: "unchanged",
        suppressed: None,
        destinations: vec![],
        policy,
        regions_down: &down_now,
        regions_total: regions,
    };

    match (&website_change, &website) {
        (None, _) => decision.suppressed = Some(unchanged(change, next.as_ref(), policy, regions)),
        (Some(website_change), None) => {
            decision.outcome = outcome(website_change);
            decision.suppressed = Some("the website was removed".into());
        }
        (Some(website_change), Some(website)) => {
            decision.outcome = outcome(website_change);
            let windows = projections::postgres::maintenance_windows(&mut **tx, Some(website_id)).await?;
            let in_window = |at: DateTime<Utc>| {
                windows.iter().find(|w| w.covers(website_id) && w.active_at(at)).map(|w| w.name.clone())
            };
            // A recovery from an outage that began in a window is as quiet
            // as its start was.
            let maintenance = match website_change {
                WebsiteChange::Started { started_at, .. } => {
                    in_window(*started_at).or_else(|| in_window(envelope.occurred_at))
                }
                WebsiteChange::Ended { started_at, ended_at, .. } => {
                    in_window(*started_at).or_else(|| in_window(*ended_at))
                }
            };
            let quiet = maintenance.is_some() || too_old(settings, envelope);
            let plan = Plan { website_change, website_id, website, maintenance };
            queue_all(tx, settings, envelope, change, plan, &mut decision).await?;
            // Status page subscribers hear of it under the same rules as
            // the website's own destinations, whoever those are.
            if let (Some(sealer), false) = (sealer, quiet) {
                let public_url = &settings.public_url;
                super::subscribers::queue_incident(tx, sealer, public_url, envelope, website_id, website_change)
                    .await?;
            }
        }
    }
    let kind = match change {
        RegionChange::Down(down) => ("SiteDown", down.region.as_str()),
        RegionChange::Up(up) => ("SiteUp", up.region.as_str()),
    };
    record(tx, envelope, website_id, kind, &decision).await
}

fn outcome(change: &WebsiteChange) -> &'static str {
    match change {
        WebsiteChange::Started { .. } => "started",
        WebsiteChange::Ended { .. } => "ended",
    }
}

/// Why a region change did not change the website's state.
fn unchanged(change: RegionChange<'_>, next: Option<&Outage>, policy: DownPolicy, regions: usize) -> String {
    let down = next.map_or(0, |o| o.down.len());
    match change {
        RegionChange::Down(_) if next.is_some_and(|o| o.website_down) => {
            format!("the website was already down ({down} of {regions} regions down)")
        }
        RegionChange::Down(_) => format!(
            "down policy '{}' not met: {down} of {regions} regions down, {} needed",
            policy.as_str(),
            policy.regions_needed(regions)
        ),
        RegionChange::Up(_) if next.is_some_and(|o| o.website_down) => {
            format!(
                "the website is still down under down policy '{}' ({down} of {regions} regions down)",
                policy.as_str()
            )
        }
        RegionChange::Up(_) => "the website was not down under its down policy, so no recovery is announced".into(),
    }
}

/// A website-level change to plan alerts for.
struct Plan<'a> {
    website_change: &'a WebsiteChange,
    website_id: Uuid,
    website: &'a WebsiteRow,
    /// The maintenance window it falls in, if any.
    maintenance: Option<String>,
}

/// Plans the deliveries of a website-level change: the website's own
/// emails, its channels and the default channels.
async fn queue_all(
    tx: &mut Transaction<'_, Postgres>,
    settings: &NotifyConfig,
    envelope: &Envelope,
    change: RegionChange<'_>,
    plan: Plan<'_>,
    decision: &mut Decision<'_>,
) -> Result<(), Error> {
    let Plan { website_change, website_id, website, maintenance } = plan;
    let recipients = destinations(tx, settings, website, decision).await?;
    if !gate(settings, envelope, maintenance, decision) {
        return Ok(());
    }
    let site = Site { id: website_id, name: &website.name, url: &website.url };
    let link = email::website_page(&settings.public_url, website_id);
    let alert_change = match (website_change, change) {
        (WebsiteChange::Started { started_at, regions }, RegionChange::Down(down)) => {
            Change::Down { down, started_at: *started_at, regions }
        }
        (WebsiteChange::Ended { started_at, ended_at, regions }, _) => {
            Change::Up { started_at: *started_at, ended_at: *ended_at, regions }
        }
        // The verdict starts an outage only on a region going down.
        (WebsiteChange::Started { .. }, RegionChange::Up(_)) => return Ok(()),
    };
    let alert = Alert { site, change: alert_change, envelope, link: &link };
    queue_deliveries(tx, &alert, decision, &recipients).await
}

/// Lists the website's destinations in `decision` (its own emails, its
/// channels, the default channels) and returns the recipients of its own
/// emails.
async fn destinations(
    tx: &mut Transaction<'_, Postgres>,
    settings: &NotifyConfig,
    website: &WebsiteRow,
    decision: &mut Decision<'_>,
) -> Result<Vec<String>, Error> {
    let channels: Vec<ChannelRow> = sqlx::query_as(
        "select id, name, kind, enabled, disabled_reason from channels
         where is_default or id = any($1) order by name, id",
    )
    .bind(&website.channel_ids)
    .fetch_all(&mut **tx)
    .await?;
    // The default address stands in only for a website with no other way
    // to reach anyone.
    let recipients: Vec<String> = if !website.notify_emails.is_empty() {
        website.notify_emails.clone()
    } else if channels.is_empty() {
        settings.default_recipient.iter().map(|r| r.to_string()).collect()
    } else {
        vec![]
    };
    if !recipients.is_empty() {
        decision.destinations.push(Destination {
            channel_id: WEBSITE_EMAILS,
            name: format!("email to {}", recipients.join(", ")),
            kind: "email".into(),
            planned: true,
            reason: None,
        });
    }
    for channel in &channels {
        let reason = (!channel.enabled)
            .then(|| format!("channel disabled ({})", channel.disabled_reason.as_deref().unwrap_or("turned off")));
        decision.destinations.push(Destination {
            channel_id: channel.id,
            name: channel.name.clone(),
            kind: channel.kind.clone(),
            planned: reason.is_none(),
            reason,
        });
    }
    Ok(recipients)
}

/// Whether anything is sent: not when there is no destination, during
/// maintenance, or for a transition older than the age limit (the decision
/// then says why).
fn gate(
    settings: &NotifyConfig,
    envelope: &Envelope,
    maintenance: Option<String>,
    decision: &mut Decision<'_>,
) -> bool {
    let suppressed = if decision.destinations.is_empty() {
        Some("no destination: the website has no notify_emails or channel_ids, and there is no default channel or NOTIFY_DEFAULT_EMAIL".to_owned())
    } else if let Some(window) = maintenance {
        Some(format!("maintenance: during window '{window}'"))
    } else {
        too_old(settings, envelope).then(|| {
            let minutes = settings.max_age.as_secs() / 60;
            format!("older than NOTIFY_MAX_AGE_MINUTES ({minutes} min) when planned; recorded without alerts")
        })
    };
    let Some(reason) = suppressed else { return true };
    decision.suppressed = Some(reason);
    for destination in &mut decision.destinations {
        destination.planned = false;
    }
    false
}

/// Whether a transition is older than `NOTIFY_MAX_AGE_MINUTES`: recorded,
/// not sent.
fn too_old(settings: &NotifyConfig, envelope: &Envelope) -> bool {
    let max_age = chrono::Duration::from_std(settings.max_age).unwrap_or(chrono::Duration::MAX);
    Utc::now() - envelope.occurred_at > max_age
}

/// Queues the alert for every planned destination.
async fn queue_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    alert: &Alert<'_>,
    decision: &Decision<'_>,
    recipients: &[String],
) -> Result<(), Error> {
    for destination in decision.destinations.iter().filter(|d| d.planned) {
        let kind = ChannelKind::parse(&destination.kind)
            .map_err(|e| Error::Corrupt(format!("channel {}: {e}", destination.channel_id)))?;
        let mut message = alert.render(kind);
        if destination.channel_id == WEBSITE_EMAILS {
            message["recipients"] = serde_json::json!(recipients);
        }
        let planned = Planned {
            event_id: alert.envelope.id,
            channel_id: destination.channel_id,
            website_id: Some(alert.site.id),
            kind: alert.kind(),
            channel_kind: kind,
            message,
        };
        outbox::queue(tx, &planned).await?;
    }
    Ok(())
}

/// Plans the warnings of an expiring certificate, to the same destinations
/// as the website's outages.
async fn plan_certificate(
    tx: &mut Transaction<'_, Postgres>,
    settings: &NotifyConfig,
    envelope: &Envelope,
    expiring: &CertificateExpiring,
) -> Result<(), Error> {
    let website_id = expiring.website_id;
    let website = load_website(tx, website_id).await?;
    let mut decision = Decision {
        outcome: "certificate",
        suppressed: None,
        destinations: vec![],
        policy: DownPolicy::Any,
        regions_down: &[],
        regions_total: 0,
    };
    match &website {
        None => decision.suppressed = Some("the website was removed".into()),
        Some(website) => {
            let recipients = destinations(tx, settings, website, &mut decision).await?;
            if gate(settings, envelope, None, &mut decision) {
                let site = Site { id: website_id, name: &website.name, url: &website.url };
                let link = email::website_page(&settings.public_url, website_id);
                let change = Change::Certificate { not_after: expiring.not_after, days_left: expiring.days_left };
                let alert = Alert { site, change, envelope, link: &link };
                queue_deliveries(tx, &alert, &decision, &recipients).await?;
            }
        }
    }
    record(tx, envelope, website_id, ("CertificateExpiring", expiring.region.as_str()), &decision).await
}

/// Stores the decision; the first one stands (a replay much later would
/// find the event too old and must not rewrite what happened).
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    envelope: &Envelope,
    website_id: Uuid,
    (event_type, region): (&str, &str),
    decision: &Decision<'_>,
) -> Result<(), Error> {
    let regions_down: Vec<&str> = decision.regions_down.iter().map(RegionName::as_str).collect();
    sqlx::query(
        "insert into alert_decisions (event_id, website_id, event_type, region, occurred_at, down_policy,
                                      regions_down, regions_total, outcome, suppressed, channels)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict (event_id) do nothing",
    )
    .bind(envelope.id)
    .bind(website_id)
    .bind(event_type)
    .bind(region)
    .bind(envelope.occurred_at)
    .bind(decision.policy.as_str())
    .bind(&regions_down)
    .bind(i32::try_from(decision.regions_total).unwrap_or(i32::MAX))
    .bind(decision.outcome)
    .bind(&decision.suppressed)
    .bind(serde_json::to_value(&decision.destinations).unwrap_or_default())
    .execute(&mut **tx)
    .await?;
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
