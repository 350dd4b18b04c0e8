//! The Postgres projection of the MONITOR stream: websites, regions and
//! which regions each website is checked from, plus the queries the API
//! answers from them.
//!
//! Guarantees: it is a [`Handler`], so events are applied in stream order, a
//! batch of them in one transaction together with the new stream position,
//! and two projectors (or a projector and a replay) can never interleave
//! their writes. Each write is also guarded by the row's own stream
//! sequence, so re-applying is harmless.

use crate::copy::CopyIn;
use crate::cursor::{to_i64, to_u64};
use crate::handler::{Handler, StreamEvent};
use crate::overview;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use events::check::CheckSpec;
use events::maintenance::Window;
use events::subject::MONITOR_STREAM;
use events::website::Website;
use events::{
    DownPolicy, EmailAddress, Envelope, Event, FailuresBeforeDown, IntervalSecs, RegionName, SiteDown, SiteUp,
    TimeoutMs, WebsiteAdded, WebsiteName, WebsiteUrl,
};
use sqlx::migrate::Migrator;
use sqlx::{Acquire, PgPool, Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The name under which this projection records its stream position.
pub const PROJECTION: &str = "postgres";

/// Applies the migrations; safe to run from several processes at once.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The projection of MONITOR: websites, regions, incidents and tokens, driven by
/// the runner like every [`Handler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorProjection;

impl Handler for MonitorProjection {
    type Error = Error;
    const NAME: &'static str = PROJECTION;
    const STREAM: &'static str = MONITOR_STREAM;
    // Each event is a row or more: a replay writes one part while the
    // runner reads and decodes the next.
    const REPLAY_BATCH: usize = 10_000;
    const SET_ASIDE: &'static [&'static str] = &["websites", "website_regions"];

    async fn apply(&self, tx: &mut Transaction<'_, Postgres>, events: &[StreamEvent]) -> Result<()> {
        // Websites' regions and policies decide their status, which the
        // checks' projection also writes: see `overview`.
        overview::lock_status(tx).await?;
        // Websites added one after the other (a bulk import, a replay)
        // are written a run at a time: a few statements, not a few each.
        let mut added: Vec<(i64, DateTime<Utc>, &WebsiteAdded)> = Vec::new();
        // So are region incidents (a replay of a long history holds
        // thousands).
        let mut incidents: Vec<RegionIncident> = Vec::new();
        for event in events {
            match (&event.envelope.event, RegionIncident::of(&event.envelope.event)) {
                (Event::WebsiteAdded(e), _) => {
                    apply_incidents(tx, &incidents).await?;
                    incidents.clear();
                    added.push((to_i64(event.seq), event.envelope.occurred_at, e));
                }
                (_, Some(incident)) => {
                    add_websites(tx, &added).await?;
                    added.clear();
                    incidents.push(incident);
                }
                _ => {
                    add_websites(tx, &added).await?;
                    added.clear();
                    apply_incidents(tx, &incidents).await?;
                    incidents.clear();
                    apply(tx, event.seq, &event.envelope).await?;
                }
            }
        }
        add_websites(tx, &added).await?;
        apply_incidents(tx, &incidents).await
    }

    async fn reset(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        // Before the truncation's table locks, as in `apply`.
        overview::lock_status(tx).await?;
        sqlx::query(&format!(
            "truncate website_regions, websites, regions, incidents, tokens, channels, maintenance_windows, website_pauses, {}",
            crate::status_pages::TABLES
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

async fn apply(tx: &mut Transaction<'_, Postgres>, seq: u64, envelope: &Envelope) -> Result<()> {
    let seq = to_i64(seq);
    let at = envelope.occurred_at;
    match &envelope.event {
        Event::WebsiteAdded(e) => add_websites(tx, &[(seq, at, e)]).await?,
        Event::WebsiteUpdated(e) => {
            let emails: Option<Vec<&str>> =
                e.notify_emails.as_ref().map(|list| list.iter().map(|m| m.as_str()).collect());
            let updated = sqlx::query(
                "update websites set
                    url = coalesce($2, url),
                    name = coalesce($3, name),
                    interval_seconds = coalesce($4, interval_seconds),
                    timeout_ms = coalesce($5, timeout_ms),
                    notify_emails = coalesce($6, notify_emails),
                    failures_before_down = coalesce($9, failures_before_down),
                    down_policy = coalesce($10, down_policy),
                    channel_ids = coalesce($11, channel_ids),
                    check_spec = coalesce($12, check_spec),
                    updated_at = $7,
                    stream_seq = $8
                 where id = $1 and stream_seq < $8",
            )
            .bind(e.website_id)
            .bind(e.url.as_ref().map(|u| u.as_str()))
            .bind(e.name.as_ref().map(|n| n.as_str()))
            .bind(e.interval_seconds.map(|i| to_i32(i.get())))
            .bind(e.timeout_ms.map(|t| to_i32(t.get())))
            .bind(emails)
            .bind(at)
            .bind(seq)
            .bind(e.failures_before_down.map(|f| to_i32(f.get())))
            .bind(e.down_policy.map(|p| p.as_str()))
            .bind(&e.channel_ids)
            .bind(e.check.as_ref().map(json).transpose()?)
            .execute(&mut **tx)
            .await?;
            if let (Some(regions), 1) = (&e.regions, updated.rows_affected()) {
                set_regions(tx, e.website_id, regions).await?;
            }
            if updated.rows_affected() == 1 && (e.regions.is_some() || e.down_policy.is_some()) {
                overview::refresh_status(tx, &[e.website_id], Some(at)).await?;
            }
        }
        Event::WebsiteRemoved(e) => {
            let removed = sqlx::query("delete from websites where id = $1 and stream_seq < $2")
                .bind(e.website_id)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            if removed.rows_affected() == 1 {
                for table in ["website_regions", "latest_status"] {
                    sqlx::query(&format!("delete from {table} where website_id = $1"))
                        .bind(e.website_id)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Event::TokenCreated(e) => {
            sqlx::query(
                "insert into tokens (id, name, scope, secret_hash, created_at, expires_at, stream_seq)
                 values ($1, $2, $3, $4, $5, $6, $7)
                 on conflict (id) do nothing",
            )
            .bind(e.token_id)
            .bind(e.name.as_str())
            .bind(e.scope.as_str())
            .bind(&e.secret_hash)
            .bind(at)
            .bind(e.expires_at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::TokenRevoked(e) => {
            sqlx::query(
                "update tokens set revoked_at = coalesce(revoked_at, $2), stream_seq = $3
                 where id = $1 and stream_seq < $3",
            )
            .bind(e.token_id)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::WebsitePaused(e) => {
            let paused = sqlx::query(
                "update websites set paused = true, updated_at = $2, stream_seq = $3 where id = $1 and stream_seq < $3",
            )
            .bind(e.website_id)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            if paused.rows_affected() == 1 {
                sqlx::query(
                    "insert into website_pauses (website_id, started_at) values ($1, $2) on conflict do nothing",
                )
                .bind(e.website_id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
        }
        Event::WebsiteResumed(e) => {
            let resumed = sqlx::query(
                "update websites set paused = false, updated_at = $2, stream_seq = $3 where id = $1 and stream_seq < $3",
            )
            .bind(e.website_id)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            if resumed.rows_affected() == 1 {
                sqlx::query("update website_pauses set ended_at = $2 where website_id = $1 and ended_at is null")
                    .bind(e.website_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Event::MaintenanceScheduled(e) => {
            sqlx::query(
                "insert into maintenance_windows (id, name, website_ids, all_websites, timing, created_at, updated_at, stream_seq)
                 values ($1, $2, $3, $4, $5, $6, $6, $7) on conflict (id) do nothing",
            )
            .bind(e.window_id)
            .bind(&e.name)
            .bind(&e.website_ids)
            .bind(e.all_websites)
            .bind(json(&e.timing)?)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::MaintenanceUpdated(e) => {
            let timing = e
                .timing
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(|err| Error::Corrupt(err.to_string()))?;
            sqlx::query(
                "update maintenance_windows set name = coalesce($2, name), website_ids = coalesce($3, website_ids),
                    all_websites = coalesce($4, all_websites), timing = coalesce($5, timing),
                    ended = case when $5::jsonb is null then ended else '[]'::jsonb end,
                    updated_at = $6, stream_seq = $7
                 where id = $1 and stream_seq < $7",
            )
            .bind(e.window_id)
            .bind(&e.name)
            .bind(&e.website_ids)
            .bind(e.all_websites)
            .bind(timing)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::MaintenanceEnded(e) => {
            sqlx::query(
                "update maintenance_windows set ended = ended || to_jsonb($2::timestamptz), updated_at = $3, stream_seq = $4
                 where id = $1 and stream_seq < $4",
            )
            .bind(e.window_id)
            .bind(e.ended_at)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::MaintenanceRemoved(e) => {
            sqlx::query("delete from maintenance_windows where id = $1 and stream_seq < $2")
                .bind(e.window_id)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
        }
        Event::ChannelAdded(e) => {
            sqlx::query(
                "insert into channels (id, name, kind, target, sealed, is_default, created_at, updated_at, stream_seq)
                 values ($1, $2, $3, $4, $5, $6, $7, $7, $8)
                 on conflict (id) do nothing",
            )
            .bind(e.channel_id)
            .bind(e.name.as_str())
            .bind(e.kind.as_str())
            .bind(&e.target)
            .bind(&e.sealed)
            .bind(e.default)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::ChannelUpdated(e) => {
            sqlx::query(
                "update channels set
                    name = coalesce($2, name),
                    target = coalesce($3, target),
                    sealed = coalesce($4, sealed),
                    is_default = coalesce($5, is_default),
                    enabled = coalesce($6, enabled),
                    disabled_reason = case when $6 then null else disabled_reason end,
                    updated_at = $7,
                    stream_seq = $8
                 where id = $1 and stream_seq < $8",
            )
            .bind(e.channel_id)
            .bind(e.name.as_ref().map(|n| n.as_str()))
            .bind(&e.target)
            .bind(&e.sealed)
            .bind(e.default)
            .bind(e.enabled)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::ChannelDisabled(e) => {
            sqlx::query(
                "update channels set enabled = false, disabled_reason = $2, updated_at = $3, stream_seq = $4
                 where id = $1 and stream_seq < $4",
            )
            .bind(e.channel_id)
            .bind(&e.reason)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::ChannelRemoved(e) => {
            let removed = sqlx::query("delete from channels where id = $1 and stream_seq < $2")
                .bind(e.channel_id)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            if removed.rows_affected() == 1 {
                // Websites that chose it stop using it.
                sqlx::query(
                    "update websites set channel_ids = array_remove(channel_ids, $1) where channel_ids @> array[$1]",
                )
                .bind(e.channel_id)
                .execute(&mut **tx)
                .await?;
            }
        }
        Event::RegionAdded(e) => {
            sqlx::query(
                "insert into regions (name, created_at, stream_seq) values ($1, $2, $3)
                 on conflict (name) do nothing",
            )
            .bind(e.region.as_str())
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        }
        Event::RegionRemoved(e) => {
            let removed = sqlx::query("delete from regions where name = $1 and stream_seq < $2 returning name")
                .bind(e.region.as_str())
                .bind(seq)
                .fetch_optional(&mut **tx)
                .await?;
            // Websites were changed before the removal; rows left here are
            // of a website added concurrently, which cannot keep a region
            // that no longer exists.
            let mut left: Vec<Uuid> =
                sqlx::query_scalar("delete from website_regions where region = $1 returning website_id")
                    .bind(e.region.as_str())
                    .fetch_all(&mut **tx)
                    .await?;
            left.sort_unstable();
            overview::refresh_status(tx, &left, Some(at)).await?;
            if removed.is_some() {
                // Nothing observes from the region any more, so its open
                // outages end here (no recovery was seen, and none will be);
                // closed incidents stay as they are.
                sqlx::query(
                    "update incidents set ended_at = $2, duration_seconds = greatest(0, extract(epoch from $2 - started_at)::bigint)
                     where region = $1 and ended_at is null",
                )
                .bind(e.region.as_str())
                .bind(at)
                .execute(&mut **tx)
                .await?;
                crate::status_pages::close_idle(tx, at).await?;
            }
        }
        Event::SiteDown(e) => apply_incidents(tx, &[RegionIncident::Down(e)]).await?,
        Event::SiteUp(e) => apply_incidents(tx, &[RegionIncident::Up(e)]).await?,
        // Check results have projections of their own; certificate
        // warnings are the notifier's.
        Event::CheckCompleted(_) | Event::CertificateExpiring(_) => {}
        Event::StatusPageCreated(_)
        | Event::StatusPageUpdated(_)
        | Event::StatusPageRemoved(_)
        | Event::StatusSubscriberAdded(_)
        | Event::StatusSubscriberConfirmed(_)
        | Event::StatusSubscriberRemoved(_)
        | Event::IncidentUpdatePosted(_) => crate::status_pages::apply(tx, seq, envelope).await?,
    }
    Ok(())
}

/// A region incident: a website went down, or came up again, in a region.
#[derive(Clone, Copy)]
enum RegionIncident<'a> {
    Down(&'a SiteDown),
    Up(&'a SiteUp),
}

impl<'a> RegionIncident<'a> {
    fn of(event: &'a Event) -> Option<Self> {
        match event {
            Event::SiteDown(e) => Some(Self::Down(e)),
            Event::SiteUp(e) => Some(Self::Up(e)),
            _ => None,
        }
    }

    fn website_id(&self) -> Uuid {
        match self {
            Self::Down(e) => e.website_id,
            Self::Up(e) => e.website_id,
        }
    }
}

/// Applies a run of region incidents (SiteDown and SiteUp, in stream
/// order). Those of different websites touch different rows (the region
/// incident, the website's public incident), so the run is applied in
/// waves: the first incident of each website in it, then the second, and
/// so on; a wave is at most four statements, whatever its size, and each
/// website's incidents keep their order. The maintenance windows of the
/// websites going down are read once (incidents change none).
async fn apply_incidents(tx: &mut Transaction<'_, Postgres>, run: &[RegionIncident<'_>]) -> Result<()> {
    let going_down: Vec<Uuid> =
        run.iter().filter_map(|i| if let RegionIncident::Down(e) = i { Some(e.website_id) } else { None }).collect();
    let windows =
        if going_down.is_empty() { Vec::new() } else { maintenance_windows_of(&mut **tx, Some(&going_down)).await? };
    let mut waves: Vec<(Vec<&SiteDown>, Vec<&SiteUp>)> = Vec::new();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for incident in run {
        let wave = seen.entry(incident.website_id()).or_insert(0);
        if waves.len() <= *wave {
            waves.push((Vec::new(), Vec::new()));
        }
        match incident {
            RegionIncident::Down(e) => waves[*wave].0.push(e),
            RegionIncident::Up(e) => waves[*wave].1.push(e),
        }
        *wave += 1;
    }
    for (downs, ups) in waves {
        if !downs.is_empty() {
            let in_maintenance: Vec<bool> = downs
                .iter()
                .map(|e| windows.iter().any(|w| w.covers(e.website_id) && w.active_at(e.started_at)))
                .collect();
            sqlx::query(
                "insert into incidents (website_id, region, started_at, cause, status_code, message, in_maintenance)
                 select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::int[], $6::text[],
                                      $7::bool[])
                 on conflict (website_id, region, started_at) do nothing",
            )
            .bind(downs.iter().map(|e| e.website_id).collect::<Vec<_>>())
            .bind(downs.iter().map(|e| e.region.as_str()).collect::<Vec<_>>())
            .bind(downs.iter().map(|e| e.started_at).collect::<Vec<_>>())
            .bind(downs.iter().map(|e| e.cause.map(|c| c.as_str())).collect::<Vec<_>>())
            .bind(downs.iter().map(|e| e.status_code.map(i32::from)).collect::<Vec<_>>())
            .bind(downs.iter().map(|e| e.message.as_deref()).collect::<Vec<_>>())
            .bind(in_maintenance)
            .execute(&mut **tx)
            .await?;
            crate::status_pages::sites_down(tx, &downs).await?;
        }
        if !ups.is_empty() {
            // The row exists unless the SiteDown predates this projection's
            // history; then the closed incident is recorded whole.
            sqlx::query(
                "insert into incidents (website_id, region, started_at, ended_at, duration_seconds)
                 select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[])
                 on conflict (website_id, region, started_at) do update
                 set ended_at = excluded.ended_at, duration_seconds = excluded.duration_seconds
                 where incidents.ended_at is null",
            )
            .bind(ups.iter().map(|e| e.website_id).collect::<Vec<_>>())
            .bind(ups.iter().map(|e| e.region.as_str()).collect::<Vec<_>>())
            .bind(ups.iter().map(|e| e.started_at).collect::<Vec<_>>())
            .bind(ups.iter().map(|e| e.ended_at).collect::<Vec<_>>())
            .bind(ups.iter().map(|e| e.downtime_seconds).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
            crate::status_pages::sites_up(tx, &ups).await?;
        }
    }
    Ok(())
}

/// Inserts websites added at (stream sequence, time), unless already
/// there, with their regions and their status: pending, unless (in a replay
/// of this projection alone) their regions' results are known.
async fn add_websites(tx: &mut Transaction<'_, Postgres>, added: &[(i64, DateTime<Utc>, &WebsiteAdded)]) -> Result<()> {
    // A website added twice in one run keeps what it was added with first.
    let mut seen = HashSet::with_capacity(added.len());
    let added: Vec<_> = added.iter().filter(|(_, _, e)| seen.insert(e.website_id)).collect();
    if added.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = added.iter().map(|(_, _, e)| e.website_id).collect();
    // Only regions that exist: the command was validated against them, and a
    // dangling name must not wedge the projection on a foreign key.
    let existing: HashSet<String> =
        sqlx::query_scalar("select name from regions").fetch_all(&mut **tx).await?.into_iter().collect();
    // The ids of a run of added websites are of one stretch of time (the
    // API makes them version 7), so an index scan of their range finds what
    // is known of them; an `= any` of thousands of ids alone is costed as
    // as many index descents, and PostgreSQL would read the whole table
    // instead (at a million websites with a third of them checked, 140 ms
    // a run of 10,000 against 15 ms for the range).
    let (lowest, highest) = (ids.iter().min(), ids.iter().max());
    let results: HashMap<(Uuid, String), bool> = sqlx::query_as::<_, (Uuid, String, bool)>(
        "select website_id, region, up
         from (select website_id, region, up from latest_status where website_id between $2 and $3 offset 0) as l
         where website_id = any($1)",
    )
    .bind(&ids)
    .bind(lowest)
    .bind(highest)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(id, region, up)| ((id, region), up))
    .collect();
    // Most websites have no check settings of their own: the JSON of the
    // default ones is made once.
    let default_spec = json(&CheckSpec::default())?.to_string();
    let mut rows = NewWebsites { websites: Vec::with_capacity(added.len()) };
    for (seq, at, e) in added {
        let mut regions: Vec<&str> = e.regions.iter().map(|r| r.as_str()).filter(|r| existing.contains(*r)).collect();
        regions.sort_unstable();
        regions.dedup();
        let ups: Vec<Option<bool>> =
            regions.iter().map(|r| results.get(&(e.website_id, (*r).to_owned())).copied()).collect();
        let down_policy = e.down_policy.unwrap_or_default().as_str();
        rows.websites.push(NewWebsite {
            seq: *seq,
            at: *at,
            event: e,
            down_policy,
            check_spec: match &e.check {
                Some(spec) => json(spec)?.to_string(),
                None => default_spec.clone(),
            },
            status: overview::status_of(down_policy, &ups).as_str(),
            regions,
        });
    }
    // Checking each row for one already there makes an insert about twice
    // as slow, and in a bulk import or a replay none is: a long run is
    // copied in as it is ([`CopyIn`]), and inserted checking row by
    // row only if that fails on one. (Short runs are checked at once: each
    // try is a subtransaction, and many in one transaction slow every
    // reader's snapshots.)
    if rows.websites.len() >= UNCHECKED_RUN {
        let mut attempt = (&mut **tx).begin().await?;
        match rows.copy(&mut attempt).await {
            Ok(()) => return Ok(attempt.commit().await?),
            Err(Error::Database(e)) if e.as_database_error().is_some_and(|e| e.is_unique_violation()) => {
                attempt.rollback().await?;
            }
            Err(e) => return Err(e),
        }
    }
    rows.insert_new(tx).await
}

/// The shortest run of added websites copied in without checking each row
/// first ([`add_websites`]).
const UNCHECKED_RUN: usize = 1_000;

/// Websites to store, in the order they were added.
struct NewWebsites<'a> {
    websites: Vec<NewWebsite<'a>>,
}

/// A website to store: its event, and what the projection adds to it.
struct NewWebsite<'a> {
    seq: i64,
    at: DateTime<Utc>,
    event: &'a WebsiteAdded,
    down_policy: &'static str,
    check_spec: String,
    status: &'static str,
    /// The regions it is checked from that exist, sorted.
    regions: Vec<&'a str>,
}

/// The columns both ways of storing new websites write, in this order.
const NEW_WEBSITE_COLUMNS: &str = "id, url, name, interval_seconds, timeout_ms, notify_emails, created_at, updated_at,
     stream_seq, failures_before_down, down_policy, channel_ids, check_spec, status, status_since";

impl NewWebsites<'_> {
    /// Stores every website and its regions, or fails (a unique violation
    /// if one is there already).
    async fn copy(&self, conn: &mut sqlx::PgConnection) -> Result<()> {
        let statement = format!("copy websites ({NEW_WEBSITE_COLUMNS}) from stdin (format binary)");
        let mut websites = CopyIn::start(&mut *conn, &statement).await?;
        let written = async {
            for w in &self.websites {
                let e = w.event;
                let emails: Vec<&str> = e.notify_emails.iter().map(|m| m.as_str()).collect();
                let row = websites.row().await?;
                row.value(&e.website_id)?;
                row.value(&e.url.as_str())?;
                row.value(&e.name.as_str())?;
                row.value(&to_i32(e.interval_seconds.get()))?;
                row.value(&to_i32(e.timeout_ms.get()))?;
                row.value(&emails)?;
                row.value(&w.at)?;
                row.value(&w.at)?;
                row.value(&w.seq)?;
                row.value(&e.failures_before_down.map(|f| to_i32(f.get())))?;
                row.value(&w.down_policy)?;
                row.value(&e.channel_ids)?;
                row.jsonb(&w.check_spec)?;
                row.value(&w.status)?;
                row.value(&w.at)?;
            }
            Ok(())
        }
        .await;
        websites.end(written).await?;
        let mut regions =
            CopyIn::start(conn, "copy website_regions (website_id, region) from stdin (format binary)").await?;
        let written = async {
            for w in &self.websites {
                for region in &w.regions {
                    let row = regions.row().await?;
                    row.value(&w.event.website_id)?;
                    row.value(region)?;
                }
            }
            Ok(())
        }
        .await;
        regions.end(written).await?;
        Ok(())
    }

    /// Stores the websites not there yet, and the regions of those.
    async fn insert_new(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        // Each column as an array (one value per website): PostgreSQL reads
        // arrays in their binary form, where a JSON document of rows would be
        // built here and parsed there. The lists within a website (emails,
        // channels) are JSON, mostly empty.
        let list = |items: Vec<String>| -> Result<String> {
            Ok(if items.is_empty() { "[]".to_owned() } else { json(&items)?.to_string() })
        };
        let mut columns = Columns::default();
        for w in &self.websites {
            let e = w.event;
            columns.ids.push(e.website_id);
            columns.urls.push(e.url.as_str());
            columns.names.push(e.name.as_str());
            columns.intervals.push(to_i32(e.interval_seconds.get()));
            columns.timeouts.push(to_i32(e.timeout_ms.get()));
            columns.emails.push(list(e.notify_emails.iter().map(|m| m.as_str().to_owned()).collect())?);
            columns.created.push(w.at);
            columns.seqs.push(w.seq);
            columns.failures.push(e.failures_before_down.map(|f| to_i32(f.get())));
            columns.policies.push(w.down_policy);
            columns.channels.push(list(e.channel_ids.iter().map(Uuid::to_string).collect())?);
            columns.specs.push(w.check_spec.as_str());
            columns.statuses.push(w.status);
        }
        let inserted: Vec<Uuid> = sqlx::query_scalar(&format!(
            "insert into websites ({NEW_WEBSITE_COLUMNS})
             select r.id, r.url, r.name, r.interval_seconds, r.timeout_ms,
                    case when r.notify_emails = '[]' then '{{}}'::text[]
                         else array(select jsonb_array_elements_text(r.notify_emails::jsonb)) end,
                    r.created_at, r.created_at, r.stream_seq, r.failures_before_down, r.down_policy,
                    case when r.channel_ids = '[]' then '{{}}'::uuid[]
                         else array(select jsonb_array_elements_text(r.channel_ids::jsonb)::uuid) end,
                    r.check_spec::jsonb, r.status, r.created_at
             from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::timestamptz[],
                         $8::bigint[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[])
                  as r(id, url, name, interval_seconds, timeout_ms, notify_emails, created_at, stream_seq,
                       failures_before_down, down_policy, channel_ids, check_spec, status)
             on conflict do nothing
             returning id"
        ))
        .bind(&columns.ids)
        .bind(&columns.urls)
        .bind(&columns.names)
        .bind(&columns.intervals)
        .bind(&columns.timeouts)
        .bind(&columns.emails)
        .bind(&columns.created)
        .bind(&columns.seqs)
        .bind(&columns.failures)
        .bind(&columns.policies)
        .bind(&columns.channels)
        .bind(&columns.specs)
        .bind(&columns.statuses)
        .fetch_all(&mut **tx)
        .await?;
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        let (mut region_ids, mut region_names) = (Vec::new(), Vec::new());
        for w in self.websites.iter().filter(|w| inserted.contains(&w.event.website_id)) {
            for region in &w.regions {
                region_ids.push(w.event.website_id);
                region_names.push(*region);
            }
        }
        if region_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into website_regions (website_id, region)
             select * from unnest($1::uuid[], $2::text[])
             on conflict do nothing",
        )
        .bind(&region_ids)
        .bind(&region_names)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The columns of [`NewWebsites::insert_new`], as arrays.
#[derive(Default)]
struct Columns<'a> {
    ids: Vec<Uuid>,
    urls: Vec<&'a str>,
    names: Vec<&'a str>,
    intervals: Vec<i32>,
    timeouts: Vec<i32>,
    emails: Vec<String>,
    created: Vec<DateTime<Utc>>,
    seqs: Vec<i64>,
    failures: Vec<Option<i32>>,
    policies: Vec<&'a str>,
    channels: Vec<String>,
    specs: Vec<&'a str>,
    statuses: Vec<&'a str>,
}

async fn set_regions(tx: &mut Transaction<'_, Postgres>, website_id: Uuid, regions: &[RegionName]) -> Result<()> {
    let names: Vec<&str> = regions.iter().map(|r| r.as_str()).collect();
    sqlx::query("delete from website_regions where website_id = $1").bind(website_id).execute(&mut **tx).await?;
    // Only regions that exist: the command was validated against them, and a
    // dangling name must not wedge the projection on a foreign key.
    sqlx::query(
        "insert into website_regions (website_id, region)
         select $1, name from regions where name = any($2)",
    )
    .bind(website_id)
    .bind(&names)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A website as stored, with the stream sequence of its last event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWebsite {
    pub website: Website,
    pub stream_seq: u64,
}

/// A row of [`SELECT_WEBSITES`], before its values are validated.
#[derive(sqlx::FromRow)]
pub(crate) struct WebsiteRow {
    id: Uuid,
    url: String,
    name: String,
    interval_seconds: i32,
    timeout_ms: i32,
    notify_emails: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    stream_seq: i64,
    regions: Vec<String>,
    failures_before_down: Option<i32>,
    down_policy: String,
    channel_ids: Vec<Uuid>,
    paused: bool,
    check_spec: serde_json::Value,
}

const SELECT_WEBSITES: &str = "
    select w.id, w.url, w.name, w.interval_seconds, w.timeout_ms, w.notify_emails,
           w.created_at, w.updated_at, w.stream_seq,
           coalesce(array_agg(wr.region order by wr.region) filter (where wr.region is not null), '{}') as regions,
           w.failures_before_down, w.down_policy, w.channel_ids, w.paused, w.check_spec
    from websites w left join website_regions wr on wr.website_id = w.id";

pub async fn website(pool: &PgPool, id: Uuid) -> Result<Option<StoredWebsite>> {
    let row: Option<WebsiteRow> = sqlx::query_as(&format!("{SELECT_WEBSITES} where w.id = $1 group by w.id"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(decode_website).transpose()
}

/// The websites checked from `region`, by id, with their stream sequences.
pub async fn websites_in_region(pool: &PgPool, region: &RegionName) -> Result<Vec<StoredWebsite>> {
    let rows: Vec<WebsiteRow> = sqlx::query_as(&format!(
        "{SELECT_WEBSITES} where w.id in (select website_id from website_regions where region = $1) group by w.id order by w.id"
    ))
    .bind(region.as_str())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(decode_website).collect()
}

pub(crate) fn decode_website(row: WebsiteRow) -> Result<StoredWebsite> {
    let WebsiteRow {
        id,
        url,
        name,
        interval_seconds,
        timeout_ms,
        notify_emails,
        created_at,
        updated_at,
        stream_seq,
        regions,
        failures_before_down,
        down_policy,
        channel_ids,
        paused,
        check_spec,
    } = row;
    let corrupt = |what: &str, e: events::ValueError| Error::Corrupt(format!("website {id} {what}: {e}"));
    Ok(StoredWebsite {
        website: Website {
            id,
            url: if url.starts_with("tcp://") { WebsiteUrl::parse_tcp(&url) } else { WebsiteUrl::parse(&url) }
                .map_err(|e| corrupt("url", e))?,
            name: WebsiteName::parse(&name).map_err(|e| corrupt("name", e))?,
            regions: regions
                .iter()
                .map(|r| RegionName::parse(r).map_err(|e| corrupt("region", e)))
                .collect::<Result<_>>()?,
            interval_seconds: IntervalSecs::parse(interval_seconds.into()).map_err(|e| corrupt("interval", e))?,
            timeout_ms: TimeoutMs::parse(timeout_ms.into()).map_err(|e| corrupt("timeout", e))?,
            notify_emails: notify_emails
                .iter()
                .map(|m| EmailAddress::parse(m).map_err(|e| corrupt("email", e)))
                .collect::<Result<_>>()?,
            failures_before_down: failures_before_down
                .map(|f| FailuresBeforeDown::parse(f.into()).map_err(|e| corrupt("failures_before_down", e)))
                .transpose()?,
            down_policy: DownPolicy::parse(&down_policy).map_err(|e| corrupt("down_policy", e))?,
            channel_ids,
            paused,
            check: serde_json::from_value(check_spec)
                .map_err(|e| Error::Corrupt(format!("website {id} check settings: {e}")))?,
            created_at,
            updated_at,
        },
        stream_seq: to_u64(stream_seq),
    })
}

#[derive(sqlx::FromRow)]
struct WindowRow {
    id: Uuid,
    name: String,
    website_ids: Vec<Uuid>,
    all_websites: bool,
    timing: serde_json::Value,
    ended: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    stream_seq: i64,
}

const SELECT_WINDOWS: &str = "select id, name, website_ids, all_websites, timing, ended, created_at, updated_at,
    stream_seq from maintenance_windows";

fn decode_window(r: WindowRow) -> Result<(Window, u64)> {
    let corrupt = |e: serde_json::Error| Error::Corrupt(format!("maintenance window {}: {e}", r.id));
    let window = Window {
        id: r.id,
        name: r.name,
        website_ids: r.website_ids,
        all_websites: r.all_websites,
        timing: serde_json::from_value(r.timing).map_err(corrupt)?,
        ended: serde_json::from_value(r.ended).map_err(corrupt)?,
        created_at: r.created_at,
        updated_at: r.updated_at,
    };
    Ok((window, to_u64(r.stream_seq)))
}

/// One maintenance window with the sequence of its last event.
pub async fn maintenance_window(pool: &PgPool, id: Uuid) -> Result<Option<(Window, u64)>> {
    let row: Option<WindowRow> =
        sqlx::query_as(&format!("{SELECT_WINDOWS} where id = $1")).bind(id).fetch_optional(pool).await?;
    row.map(decode_window).transpose()
}

/// Maintenance windows, of one website (its own and the all-websites ones)
/// or (`None`) all of them, oldest first.
pub async fn maintenance_windows<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    website_id: Option<Uuid>,
) -> Result<Vec<Window>> {
    maintenance_windows_of(executor, website_id.map(|id| vec![id]).as_deref()).await
}

/// Maintenance windows of any of `website_ids` (their own and the
/// all-websites ones) or (`None`) all of them, oldest first.
async fn maintenance_windows_of<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    website_ids: Option<&[Uuid]>,
) -> Result<Vec<Window>> {
    let rows: Vec<WindowRow> = sqlx::query_as(&format!(
        "{SELECT_WINDOWS} where $1::uuid[] is null or all_websites or website_ids && $1 order by created_at, id"
    ))
    .bind(website_ids)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(|r| decode_window(r).map(|(window, _)| window)).collect()
}

/// The intervals of `[from, to]` a website was paused or under
/// maintenance: excluded from its uptime. Sorted and merged.
pub async fn excluded_time(
    pool: &PgPool,
    website_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let windows = maintenance_windows(pool, Some(website_id)).await?;
    let pauses: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "select started_at, ended_at from website_pauses
         where website_id = $1 and started_at < $3 and (ended_at is null or ended_at > $2)",
    )
    .bind(website_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let mut all = events::maintenance::excluded(&windows, website_id, from, to);
    all.extend(pauses.into_iter().map(|(s, e)| (s.max(from), e.unwrap_or(to).min(to))).filter(|(s, e)| s < e));
    Ok(events::maintenance::merge(all))
}

/// A region websites can be checked from.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: RegionName,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RegionRow {
    name: String,
    created_at: DateTime<Utc>,
}

/// Every region, by name.
pub async fn regions(pool: &PgPool) -> Result<Vec<Region>> {
    let rows: Vec<RegionRow> =
        sqlx::query_as("select name, created_at from regions order by name").fetch_all(pool).await?;
    rows.into_iter()
        .map(|RegionRow { name, created_at }| {
            let name = RegionName::parse(&name).map_err(|e| Error::Corrupt(format!("region {name}: {e}")))?;
            Ok(Region { name, created_at })
        })
        .collect()
}

/// `value` as jsonb takes it: Postgres refuses the NUL character in
/// jsonb strings, and an event that cannot be projected would stop the
/// projection, so NULs are left out of the projected copy (the event keeps
/// them).
fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) if text.contains('\0') => text.retain(|c| c != '\0'),
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            serde_json::Value::Object(map) => map.values_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(value).map_err(|e| Error::Corrupt(e.to_string()))?;
    strip(&mut value);
    Ok(value)
}

fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Every website with the projection's position, read in one repeatable-read
/// transaction so the rows are exactly the state at that position.
pub async fn websites_at_offset(pool: &PgPool, name: &str) -> Result<(u64, Vec<StoredWebsite>, Vec<RegionName>)> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read read only").execute(&mut *tx).await?;
    let offset: Option<i64> = sqlx::query_scalar("select stream_seq from projection_offsets where name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    let rows: Vec<WebsiteRow> =
        sqlx::query_as(&format!("{SELECT_WEBSITES} group by w.id order by w.id")).fetch_all(&mut *tx).await?;
    let regions: Vec<String> = sqlx::query_scalar("select name from regions order by name").fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let websites = rows.into_iter().map(decode_website).collect::<Result<Vec<_>>>()?;
    let regions = regions
        .iter()
        .map(|r| RegionName::parse(r).map_err(|e| Error::Corrupt(format!("region {r}: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok((to_u64(offset.unwrap_or(0)), websites, regions))
}

/// One downtime incident.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Incident {
    pub region: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds; for an open incident, so far.
    pub duration_seconds: i64,
    pub ongoing: bool,
    pub cause: Option<String>,
    pub status_code: Option<i32>,
    pub message: Option<String>,
    /// It started during a maintenance window of the website.
    pub in_maintenance: bool,
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    region: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    duration_seconds: Option<i64>,
    cause: Option<String>,
    status_code: Option<i32>,
    message: Option<String>,
    in_maintenance: bool,
}

/// Incidents of a website overlapping `[since, now]`, newest first.
pub async fn incidents(
    pool: &PgPool,
    website_id: Uuid,
    region: Option<&RegionName>,
    since: DateTime<Utc>,
    limit: Option<i64>,
) -> Result<Vec<Incident>> {
    let rows: Vec<IncidentRow> = sqlx::query_as(
        "select region, started_at, ended_at, duration_seconds, cause, status_code, message, in_maintenance
         from incidents
         where website_id = $1 and ($2::text is null or region = $2)
           and (ended_at is null or ended_at >= $3)
         order by started_at desc, region
         limit $4",
    )
    .bind(website_id)
    .bind(region.map(|r| r.as_str()))
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(
            |IncidentRow {
                 region,
                 started_at,
                 ended_at,
                 duration_seconds,
                 cause,
                 status_code,
                 message,
                 in_maintenance,
             }| Incident {
                region,
                started_at,
                ended_at,
                duration_seconds: duration_seconds
                    .unwrap_or_else(|| (ended_at.unwrap_or(now) - started_at).num_seconds().max(0)),
                ongoing: ended_at.is_none(),
                cause,
                status_code,
                message,
                in_maintenance,
            },
        )
        .collect())
}
