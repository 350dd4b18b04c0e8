//! The status pages' part of the MONITOR projection: pages and the websites
//! they show, subscribers, and the public incidents with the team's
//! updates; plus the reads of the API and of the public pages.
//!
//! Called from [`crate::postgres`]'s apply, in its transaction, so the same
//! guarantees hold: stream order, one position per batch, and writes that
//! are harmless when re-applied (guarded by the row's stream sequence, or
//! keyed by the event's ids). Public incidents are derived from the
//! SiteDown/SiteUp events with ids from [`events::status_page::incident_id`],
//! so a replay rebuilds the same ids the team's updates refer to.

use crate::cursor::to_u64;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use events::status_page::{IncidentStatus, Page, PageGroup, Slug, Subscriber};
use events::{EmailAddress, Envelope, Event, SiteDown, SiteUp};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Every table of this part, emptied by a reset of the projection.
pub const TABLES: &str =
    "status_page_websites, status_pages, status_subscribers, status_incidents, status_incident_updates";

/// Applies a status page, subscriber or incident update event; other events
/// are not this module's.
pub async fn apply(tx: &mut Transaction<'_, Postgres>, seq: i64, envelope: &Envelope) -> Result<()> {
    let at = envelope.occurred_at;
    match &envelope.event {
        Event::StatusPageCreated(e) => {
            // A slug taken meanwhile (two creations raced past the API's
            // check) leaves the second page out rather than stopping the
            // projection.
            let inserted = sqlx::query(
                "insert into status_pages (id, slug, title, description, logo_url, groups, created_at, updated_at, stream_seq)
                 values ($1, $2, $3, $4, $5, $6, $7, $7, $8) on conflict do nothing",
            )
            .bind(e.page_id)
            .bind(e.slug.as_str())
            .bind(&e.title)
            .bind(&e.description)
            .bind(&e.logo_url)
            .bind(groups_json(&e.groups)?)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 1 {
                set_websites(tx, e.page_id, &e.groups).await?;
            }
        }
        Event::StatusPageUpdated(e) => {
            let groups = e.groups.as_ref().map(|g| groups_json(g)).transpose()?;
            let updated = sqlx::query(
                "update status_pages set
                    slug = case when $2::text is not null
                                 and not exists (select 1 from status_pages o where o.slug = $2 and o.id <> $1)
                           then $2 else slug end,
                    title = coalesce($3, title),
                    description = case when $4::text is null then description else nullif($4, '') end,
                    logo_url = case when $5::text is null then logo_url else nullif($5, '') end,
                    groups = coalesce($6, groups),
                    updated_at = $7, stream_seq = $8
                 where id = $1 and stream_seq < $8",
            )
            .bind(e.page_id)
            .bind(e.slug.as_ref().map(Slug::as_str))
            .bind(&e.title)
            .bind(&e.description)
            .bind(&e.logo_url)
            .bind(groups)
            .bind(at)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            if let (Some(groups), 1) = (&e.groups, updated.rows_affected()) {
                set_websites(tx, e.page_id, groups).await?;
            }
        }
        Event::StatusPageRemoved(e) => {
            let removed = sqlx::query("delete from status_pages where id = $1 and stream_seq < $2")
                .bind(e.page_id)
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            if removed.rows_affected() == 1 {
                sqlx::query("delete from status_subscribers where page_id = $1")
                    .bind(e.page_id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Event::StatusSubscriberAdded(e) => {
            // A new request supersedes an unconfirmed one of the same
            // address: only the latest link confirms.
            sqlx::query(
                "delete from status_subscribers where page_id = $1 and email = $2 and confirmed_at is null and id <> $3",
            )
            .bind(e.page_id)
            .bind(e.email.as_str())
            .bind(e.subscriber_id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "insert into status_subscribers (id, page_id, email, confirm_hash, unsubscribe_hash, created_at)
                 select $1, $2, $3, $4, $5, $6 where exists (select 1 from status_pages where id = $2)
                 on conflict (id) do nothing",
            )
            .bind(e.subscriber_id)
            .bind(e.page_id)
            .bind(e.email.as_str())
            .bind(&e.confirm_hash)
            .bind(&e.unsubscribe_hash)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Event::StatusSubscriberConfirmed(e) => {
            sqlx::query("update status_subscribers set confirmed_at = coalesce(confirmed_at, $2) where id = $1")
                .bind(e.subscriber_id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
        }
        Event::StatusSubscriberRemoved(e) => {
            sqlx::query("delete from status_subscribers where id = $1")
                .bind(e.subscriber_id)
                .execute(&mut **tx)
                .await?;
        }
        Event::IncidentUpdatePosted(e) => {
            let inserted = sqlx::query(
                "insert into status_incident_updates (id, incident_id, website_id, status, message, posted_at)
                 values ($1, $2, $3, $4, $5, $6) on conflict (id) do nothing",
            )
            .bind(e.update_id)
            .bind(e.incident_id)
            .bind(e.website_id)
            .bind(e.status.as_str())
            .bind(&e.message)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 1 {
                sqlx::query(
                    "update status_incidents set title = coalesce($2, title), status = $3, updated_at = $4 where id = $1",
                )
                .bind(e.incident_id)
                .bind(&e.title)
                .bind(e.status.as_str())
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
        }
        _ => {}
    }
    // Subscriber events share the page's subject: the page's sequence
    // follows them, so a command decided against it expects the subject's
    // real last sequence.
    if let Event::StatusSubscriberAdded(events::StatusSubscriberAdded { page_id, .. })
    | Event::StatusSubscriberConfirmed(events::StatusSubscriberConfirmed { page_id, .. })
    | Event::StatusSubscriberRemoved(events::StatusSubscriberRemoved { page_id, .. }) = &envelope.event
    {
        sqlx::query("update status_pages set stream_seq = greatest(stream_seq, $2) where id = $1")
            .bind(page_id)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// After the region incidents of `downs` were recorded (each of another
/// website): opens each website's public incident unless one is open.
pub async fn sites_down(tx: &mut Transaction<'_, Postgres>, downs: &[&SiteDown]) -> Result<()> {
    sqlx::query(
        "insert into status_incidents (id, website_id, started_at, updated_at)
         select d.id, d.website_id, d.started_at, d.started_at
         from unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) as d (id, website_id, started_at)
         where not exists (select 1 from status_incidents s where s.website_id = d.website_id and s.ended_at is null)
         on conflict (id) do nothing",
    )
    .bind(downs.iter().map(|d| events::status_page::incident_id(d.website_id, d.started_at)).collect::<Vec<_>>())
    .bind(downs.iter().map(|d| d.website_id).collect::<Vec<_>>())
    .bind(downs.iter().map(|d| d.started_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// After the region incidents of `ups` were closed (each of another
/// website): closes each website's public incident when no region is down
/// any more, at its `ended_at`.
pub async fn sites_up(tx: &mut Transaction<'_, Postgres>, ups: &[&SiteUp]) -> Result<()> {
    sqlx::query(
        "update status_incidents s set ended_at = greatest(s.started_at, u.at), updated_at = greatest(s.updated_at, u.at)
         from unnest($1::uuid[], $2::timestamptz[]) as u (website_id, at)
         where s.website_id = u.website_id and s.ended_at is null
           and not exists (select 1 from incidents i where i.website_id = s.website_id and i.ended_at is null)",
    )
    .bind(ups.iter().map(|u| u.website_id).collect::<Vec<_>>())
    .bind(ups.iter().map(|u| u.ended_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Closes, at `at`, the open public incidents whose website has no region
/// down any more (after a region was removed; after a website's region
/// incidents close, [`sites_up`]).
pub async fn close_idle(tx: &mut Transaction<'_, Postgres>, at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "update status_incidents s set ended_at = greatest(s.started_at, $1), updated_at = greatest(s.updated_at, $1)
         where s.ended_at is null
           and not exists (select 1 from incidents i where i.website_id = s.website_id and i.ended_at is null)",
    )
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn set_websites(tx: &mut Transaction<'_, Postgres>, page_id: Uuid, groups: &[PageGroup]) -> Result<()> {
    sqlx::query("delete from status_page_websites where page_id = $1").bind(page_id).execute(&mut **tx).await?;
    let mut seen = std::collections::HashSet::new();
    for website in groups.iter().flat_map(|g| &g.websites).filter(|w| seen.insert(w.website_id)) {
        sqlx::query(
            "insert into status_page_websites (page_id, website_id, name, show_url) values ($1, $2, $3, $4)
             on conflict do nothing",
        )
        .bind(page_id)
        .bind(website.website_id)
        .bind(&website.name)
        .bind(website.show_url)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn groups_json(groups: &[PageGroup]) -> Result<serde_json::Value> {
    serde_json::to_value(groups).map_err(|e| Error::Corrupt(e.to_string()))
}

#[derive(sqlx::FromRow)]
struct PageRow {
    id: Uuid,
    slug: String,
    title: String,
    description: Option<String>,
    logo_url: Option<String>,
    groups: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    stream_seq: i64,
}

const SELECT_PAGES: &str =
    "select id, slug, title, description, logo_url, groups, created_at, updated_at, stream_seq from status_pages";

fn decode_page(row: PageRow) -> Result<(Page, u64)> {
    let corrupt = |what: String| Error::Corrupt(format!("status page {}: {what}", row.id));
    let page = Page {
        id: row.id,
        slug: Slug::parse(&row.slug).map_err(|e| corrupt(e.to_string()))?,
        title: row.title,
        description: row.description,
        logo_url: row.logo_url,
        groups: serde_json::from_value(row.groups).map_err(|e| corrupt(e.to_string()))?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    Ok((page, to_u64(row.stream_seq)))
}

/// One page by id, with the sequence of its last event.
pub async fn page(pool: &PgPool, id: Uuid) -> Result<Option<(Page, u64)>> {
    let row: Option<PageRow> =
        sqlx::query_as(&format!("{SELECT_PAGES} where id = $1")).bind(id).fetch_optional(pool).await?;
    row.map(decode_page).transpose()
}

/// One page by slug, with the sequence of its last event.
pub async fn page_by_slug(pool: &PgPool, slug: &str) -> Result<Option<(Page, u64)>> {
    let row: Option<PageRow> =
        sqlx::query_as(&format!("{SELECT_PAGES} where slug = $1")).bind(slug).fetch_optional(pool).await?;
    row.map(decode_page).transpose()
}

/// Every page, by slug.
pub async fn pages(pool: &PgPool) -> Result<Vec<Page>> {
    let rows: Vec<PageRow> = sqlx::query_as(&format!("{SELECT_PAGES} order by slug")).fetch_all(pool).await?;
    rows.into_iter().map(|r| decode_page(r).map(|(page, _)| page)).collect()
}

/// The pages showing a website, as (page slug, display name, show_url).
pub async fn pages_of_website(pool: &PgPool, website_id: Uuid) -> Result<Vec<(String, String, bool)>> {
    Ok(sqlx::query_as(
        "select p.slug, w.name, w.show_url from status_page_websites w join status_pages p on p.id = w.page_id
         where w.website_id = $1 order by p.slug",
    )
    .bind(website_id)
    .fetch_all(pool)
    .await?)
}

/// Every (website id, display name) on some page, for finding a website by
/// the slug of its display name.
pub async fn published_websites(pool: &PgPool) -> Result<Vec<(Uuid, String)>> {
    Ok(sqlx::query_as(
        "select distinct w.website_id, w.name from status_page_websites w join websites s on s.id = w.website_id",
    )
    .fetch_all(pool)
    .await?)
}

#[derive(sqlx::FromRow)]
struct SubscriberRow {
    id: Uuid,
    page_id: Uuid,
    email: String,
    confirm_hash: String,
    unsubscribe_hash: String,
    confirmed_at: Option<DateTime<Utc>>,
}

/// Which subscriber to look up.
pub enum SubscriberKey<'a> {
    ConfirmHash(&'a str),
    UnsubscribeHash(&'a str),
    /// The confirmed one of the address on the page, else its latest.
    Email(Uuid, &'a EmailAddress),
}

pub async fn subscriber(pool: &PgPool, key: SubscriberKey<'_>) -> Result<Option<Subscriber>> {
    const SELECT: &str =
        "select id, page_id, email, confirm_hash, unsubscribe_hash, confirmed_at from status_subscribers";
    let row: Option<SubscriberRow> = match key {
        SubscriberKey::ConfirmHash(hash) => {
            sqlx::query_as(&format!("{SELECT} where confirm_hash = $1")).bind(hash).fetch_optional(pool).await?
        }
        SubscriberKey::UnsubscribeHash(hash) => {
            sqlx::query_as(&format!("{SELECT} where unsubscribe_hash = $1")).bind(hash).fetch_optional(pool).await?
        }
        SubscriberKey::Email(page_id, email) => {
            sqlx::query_as(&format!(
                "{SELECT} where page_id = $1 and email = $2 order by confirmed_at is null, created_at desc limit 1"
            ))
            .bind(page_id)
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?
        }
    };
    row.map(|r| {
        Ok(Subscriber {
            id: r.id,
            page_id: r.page_id,
            email: EmailAddress::parse(&r.email).map_err(|e| Error::Corrupt(format!("subscriber {}: {e}", r.id)))?,
            confirm_hash: r.confirm_hash,
            unsubscribe_hash: r.unsubscribe_hash,
            confirmed: r.confirmed_at.is_some(),
        })
    })
    .transpose()
}

/// Confirmed subscribers of the pages showing a website, as (subscriber id,
/// email, page slug, page title), for mailing them an incident.
pub async fn subscribers_of_website<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    website_id: Uuid,
) -> Result<Vec<(Uuid, String, String, String, String)>> {
    Ok(sqlx::query_as(
        "select s.id, s.email, p.slug, p.title, w.name from status_subscribers s
         join status_pages p on p.id = s.page_id
         join status_page_websites w on w.page_id = p.id and w.website_id = $1
         where s.confirmed_at is not null order by s.id",
    )
    .bind(website_id)
    .fetch_all(executor)
    .await?)
}

/// A public incident with its team's updates, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicIncident {
    pub id: Uuid,
    pub website_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub title: Option<String>,
    pub status: Option<IncidentStatus>,
    pub updates: Vec<IncidentUpdate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentUpdate {
    pub id: Uuid,
    pub status: IncidentStatus,
    pub message: String,
    pub posted_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: Uuid,
    website_id: Uuid,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    title: Option<String>,
    status: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UpdateRow {
    id: Uuid,
    incident_id: Uuid,
    status: String,
    message: String,
    posted_at: DateTime<Utc>,
}

fn status(raw: &str) -> Result<IncidentStatus> {
    IncidentStatus::parse(raw).map_err(|e| Error::Corrupt(format!("incident status: {e}")))
}

/// The public incidents of `websites` open now or overlapping `[since, now]`
/// (or the one `id`), newest first, with their updates.
pub async fn incidents(
    pool: &PgPool,
    websites: &[Uuid],
    since: DateTime<Utc>,
    id: Option<Uuid>,
) -> Result<Vec<PublicIncident>> {
    let rows: Vec<IncidentRow> = sqlx::query_as(
        "select id, website_id, started_at, ended_at, title, status from status_incidents
         where ($3::uuid is not null and id = $3)
            or ($3::uuid is null and website_id = any($1) and (ended_at is null or ended_at >= $2))
         order by started_at desc, id limit 500",
    )
    .bind(websites)
    .bind(since)
    .bind(id)
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let updates: Vec<UpdateRow> = sqlx::query_as(
        "select id, incident_id, status, message, posted_at from status_incident_updates
         where incident_id = any($1) order by posted_at, id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let mine = updates
                .iter()
                .filter(|u| u.incident_id == r.id)
                .map(|u| {
                    Ok(IncidentUpdate {
                        id: u.id,
                        status: status(&u.status)?,
                        message: u.message.clone(),
                        posted_at: u.posted_at,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(PublicIncident {
                id: r.id,
                website_id: r.website_id,
                started_at: r.started_at,
                ended_at: r.ended_at,
                title: r.title,
                status: r.status.as_deref().map(status).transpose()?,
                updates: mine,
            })
        })
        .collect()
}

/// What a page needs of each website it shows.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PageWebsiteRow {
    pub id: Uuid,
    pub url: String,
    pub status: String,
    pub paused: bool,
    pub down_policy: String,
    pub regions: i64,
    pub created_at: DateTime<Utc>,
}

/// The websites (still registered) among `ids`.
pub async fn page_websites(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<PageWebsiteRow>> {
    Ok(sqlx::query_as(
        "select w.id, w.url, w.status, w.paused, w.down_policy, w.created_at,
                (select count(*) from website_regions r where r.website_id = w.id) as regions
         from websites w where w.id = any($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// Region incidents of `ids` overlapping `[since, now]`, as (website,
/// start, end).
pub async fn region_outages(
    pool: &PgPool,
    ids: &[Uuid],
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)>> {
    Ok(sqlx::query_as(
        "select website_id, started_at, ended_at from incidents
         where website_id = any($1) and (ended_at is null or ended_at >= $2)",
    )
    .bind(ids)
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// Paused intervals of `ids` overlapping `[since, now]`.
pub async fn pauses(
    pool: &PgPool,
    ids: &[Uuid],
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)>> {
    Ok(sqlx::query_as(
        "select website_id, started_at, ended_at from website_pauses
         where website_id = any($1) and (ended_at is null or ended_at > $2)",
    )
    .bind(ids)
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// The slug owning `slug` now, if any (for the 409 of a taken slug).
pub async fn slug_owner(pool: &PgPool, slug: &Slug) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("select id from status_pages where slug = $1")
        .bind(slug.as_str())
        .fetch_optional(pool)
        .await?)
}
