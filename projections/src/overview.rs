//! The overview of every website, paged: what `/monitor` and `/websites`
//! list, and the counts of `/monitor/summary`.
//!
//! A page is one query over maintained columns: the website's status under
//! its down policy and since when (`websites.status`, `status_since`, kept
//! by [`refresh_status`]), its regions' latest checks (`latest_status`) and
//! its uptime over the last 24 hours (from the incidents, computed only for
//! websites that had one in that window). Pages are cut by keyset, never by
//! offset: [`Key`] is the sort key and id of a page's last row, and the next
//! page starts strictly after it, so a website is listed once whatever is
//! added or removed meanwhile, and every page costs the same.
//!
//! [`refresh_status`] is called by both projections that change what the
//! status depends on (the checks' projection and the monitor's), under one
//! transaction-scoped advisory lock ([`lock_status`]) taken before either
//! writes anything: whichever commits second sees the other's rows, so the
//! status never lags its inputs, and the two cannot deadlock.

use crate::postgres::{decode_website, WebsiteRow};
use crate::Result;
use chrono::{DateTime, Utc};
use events::outage::{self, Status};
use events::website::Website;
use events::{DownPolicy, RegionName};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

/// The advisory lock serialising the writers of `websites.status` (an
/// arbitrary constant, unique in this database).
const STATUS_LOCK: i64 = 0x6f76_6572_7669_6577;

/// Takes the status lock for the rest of the transaction. Taken before a
/// projection's first write, so that no transaction waits for it while
/// holding a row the other needs.
pub async fn lock_status(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query("select pg_advisory_xact_lock($1)").bind(STATUS_LOCK).execute(&mut **tx).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct CurrentStatus {
    id: Uuid,
    down_policy: String,
    status: String,
    ups: Vec<Option<bool>>,
    checked_at: Option<DateTime<Utc>>,
}

/// A website's status from its down policy as stored and the latest result
/// of each of its regions (none yet: `None`).
pub fn status_of(down_policy: &str, ups: &[Option<bool>]) -> Status {
    // A policy the projection cannot read counts as the default: the
    // status is a view, and the row is refused where it matters.
    let policy = DownPolicy::parse(down_policy).unwrap_or_default();
    let regions: Vec<Status> = ups.iter().map(|up| Status::of_check(*up)).collect();
    outage::status(policy, &regions)
}

/// Recomputes the status of `websites` from the latest check of each of
/// their regions ([`outage::status`]) and stores those that changed, since
/// `at` (a change of the website) or else since the newest check. Call it
/// after [`lock_status`] in the same transaction.
pub async fn refresh_status(
    tx: &mut Transaction<'_, Postgres>,
    websites: &[Uuid],
    at: Option<DateTime<Utc>>,
) -> Result<()> {
    if websites.is_empty() {
        return Ok(());
    }
    let current: Vec<CurrentStatus> = sqlx::query_as(
        "select w.id, w.down_policy, w.status,
                coalesce(array_agg(ls.up order by wr.region) filter (where wr.region is not null), '{}'::bool[]) as ups,
                max(ls.checked_at) as checked_at
         from websites w
         left join website_regions wr on wr.website_id = w.id
         left join latest_status ls on ls.website_id = wr.website_id and ls.region = wr.region
         where w.id = any($1)
         group by w.id",
    )
    .bind(websites)
    .fetch_all(&mut **tx)
    .await?;
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut since = Vec::new();
    for row in current {
        let status = status_of(&row.down_policy, &row.ups);
        if status.as_str() != row.status {
            if let Some(when) = at.or(row.checked_at) {
                ids.push(row.id);
                statuses.push(status.as_str());
                since.push(when);
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "update websites w set status = u.status, status_since = u.since
         from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as u(id, status, since)
         where w.id = u.id",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&since)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How a page is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// By name (then id).
    Name,
    /// Down first, then pending, then up; by name within each.
    Status,
    /// The most recent change of status first.
    LastChange,
    /// The lowest uptime over 24 hours first, then by name.
    Uptime24h,
    /// Oldest first, the order websites were added in.
    Created,
}

impl Sort {
    pub const ALL: [Sort; 5] = [Sort::Name, Sort::Status, Sort::LastChange, Sort::Uptime24h, Sort::Created];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Status => "status",
            Sort::LastChange => "last_change",
            Sort::Uptime24h => "uptime_24h",
            Sort::Created => "created",
        }
    }

    pub fn parse(raw: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// `ORDER BY` of this sort, over the columns of the inner query.
    fn order(self) -> &'static str {
        match self {
            Sort::Name => "name, id",
            Sort::Status => "status_rank, name, id",
            Sort::LastChange => "status_since desc, id desc",
            Sort::Uptime24h => "uptime_24h, name, id",
            Sort::Created => "created_at, id",
        }
    }
}

/// Where a page ends: the sort key and id of its last row. The next page
/// starts strictly after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sort", rename_all = "snake_case")]
pub enum Key {
    Name { name: String, id: Uuid },
    Status { rank: i16, name: String, id: Uuid },
    LastChange { since: DateTime<Utc>, id: Uuid },
    Uptime24h { uptime: f64, name: String, id: Uuid },
    Created { at: DateTime<Utc>, id: Uuid },
}

impl Key {
    pub fn sort(&self) -> Sort {
        match self {
            Key::Name { .. } => Sort::Name,
            Key::Status { .. } => Sort::Status,
            Key::LastChange { .. } => Sort::LastChange,
            Key::Uptime24h { .. } => Sort::Uptime24h,
            Key::Created { .. } => Sort::Created,
        }
    }

    /// Appends "after this key" to a `WHERE`.
    fn push_after(&self, query: &mut QueryBuilder<'_, Postgres>) {
        match self {
            Key::Name { name, id } => {
                query.push("(name, id) > (").push_bind(name.clone()).push(", ").push_bind(*id).push(")");
            }
            Key::Status { rank, name, id } => {
                query.push("(status_rank, name, id) > (").push_bind(*rank).push(", ").push_bind(name.clone());
                query.push(", ").push_bind(*id).push(")");
            }
            Key::LastChange { since, id } => {
                query.push("(status_since, id) < (").push_bind(*since).push(", ").push_bind(*id).push(")");
            }
            Key::Uptime24h { uptime, name, id } => {
                query.push("(uptime_24h, name, id) > (").push_bind(*uptime).push(", ").push_bind(name.clone());
                query.push(", ").push_bind(*id).push(")");
            }
            Key::Created { at, id } => {
                query.push("(created_at, id) > (").push_bind(*at).push(", ").push_bind(*id).push(")");
            }
        }
    }
}

/// The rank of a status in the default sort (`websites.status_rank`).
fn rank(status: Status) -> i16 {
    match status {
        Status::Down => 0,
        Status::Pending => 1,
        Status::Up => 2,
    }
}

/// Which websites a page lists.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Websites with this status that are not paused.
    pub status: Option<Status>,
    /// Only paused websites.
    pub paused: bool,
    pub region: Option<RegionName>,
    /// Contained in the name or the URL, case-insensitive.
    pub text: Option<String>,
}

/// The latest check of one region of a website.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionCheck {
    pub up: bool,
    pub checked_at: DateTime<Utc>,
    pub response_ms: Option<i32>,
    pub status_code: Option<i32>,
    pub cause: Option<String>,
    pub message: Option<String>,
}

/// One website of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub website: Website,
    pub status: Status,
    /// When the website took its status (for `pending`, when it was added).
    pub status_since: DateTime<Utc>,
    /// Percent of the last 24 hours (or since it was added) the website was
    /// not down under its policy, to three decimals.
    pub uptime_24h: f64,
    /// Each region with its latest check (`None`: not checked yet), by name.
    pub regions: Vec<(RegionName, Option<RegionCheck>)>,
    /// When the TLS certificate its latest HTTPS checks saw expires.
    pub cert_not_after: Option<DateTime<Utc>>,
    rank: i16,
}

impl Entry {
    /// The key a page ending with this entry continues after.
    pub fn key(&self, sort: Sort) -> Key {
        let (name, id) = (self.website.name.to_string(), self.website.id);
        match sort {
            Sort::Name => Key::Name { name, id },
            Sort::Status => Key::Status { rank: self.rank, name, id },
            Sort::LastChange => Key::LastChange { since: self.status_since, id },
            Sort::Uptime24h => Key::Uptime24h { uptime: self.uptime_24h, name, id },
            Sort::Created => Key::Created { at: self.website.created_at, id },
        }
    }

    /// The response time of the most recent check of any region.
    pub fn last_response_ms(&self) -> Option<i32> {
        self.regions.iter().filter_map(|(_, c)| c.as_ref()).max_by_key(|c| c.checked_at).and_then(|c| c.response_ms)
    }
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    #[sqlx(flatten)]
    website: WebsiteRow,
    status: String,
    status_rank: i16,
    status_since: DateTime<Utc>,
    uptime_24h: f64,
    region_up: Vec<Option<bool>>,
    region_checked_at: Vec<Option<DateTime<Utc>>>,
    region_response_ms: Vec<Option<i32>>,
    region_status_code: Vec<Option<i32>>,
    region_cause: Vec<Option<String>>,
    region_message: Vec<Option<String>>,
    cert_not_after: Option<DateTime<Utc>>,
}

/// Escapes `%`, `_` and `\` for `LIKE`, and wraps the text in `%`.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Seconds each website with an incident in `scope` was down in its window
/// (the last 24 hours, or since it was added) under its down policy: the
/// SQL of `events::outage::downtime_seconds` (an outage's end sorts before
/// another's start at the same instant; down while the open outages reach
/// the policy's count), tested against it in `services/tests/overview.rs`.
/// Needs the `params` CTE (`now`, `day_ago`); defines `clipped` and `down`.
fn down_ctes(scope: &str) -> String {
    format!(
        "clipped as (
             select i.website_id,
                    greatest(i.started_at, params.day_ago, w.created_at) as s,
                    least(coalesce(i.ended_at, params.now), params.now) as e,
                    case w.down_policy when 'majority' then n.regions / 2 + 1
                                       when 'all' then greatest(n.regions, 1) else 1 end as needed
             from params, incidents i
             join websites w on w.id = i.website_id
             cross join lateral (select count(*) as regions from website_regions wr where wr.website_id = w.id) n
             where (i.ended_at is null or i.ended_at > params.day_ago) and {scope}
         ),
         down as (
             select website_id, sum(extract(epoch from next_at - at)) as seconds
             from (select website_id, at, needed,
                          sum(edge) over (partition by website_id order by at, edge rows unbounded preceding) as open,
                          lead(at) over (partition by website_id order by at, edge) as next_at
                   from (select website_id, s as at, 1 as edge, needed from clipped where s < e
                         union all
                         select website_id, e, -1, needed from clipped where s < e) edges
                  ) running
             where open > 0 and open >= needed and next_at is not null
             group by website_id
         )"
    )
}

/// The uptime over 24 hours of the website `website` (an alias with
/// `created_at`) from its row of `down` (`d`; none: up all along).
fn uptime_sql(website: &str) -> String {
    format!(
        "case when d.website_id is null then 100::float8
              else round(((1 - d.seconds / greatest(extract(epoch from (select now from params)
                     - greatest((select day_ago from params), {website}.created_at)), 1)) * 100)::numeric, 3)::float8
         end"
    )
}

/// Up to `limit` websites matching `filter` in `sort` order, after `after`.
pub async fn page(pool: &PgPool, filter: &Filter, sort: Sort, after: Option<&Key>, limit: i64) -> Result<Vec<Entry>> {
    let by_uptime = sort == Sort::Uptime24h;
    // Nothing but the request's own values is a parameter: the time comes
    // from the server and the limit is written into the text (a checked
    // number). PostgreSQL then plans the statement once per connection and
    // reuses the plan; planning this query costs as much as running it, and
    // a plan made for an unknown `limit` reads every website.
    let mut query =
        QueryBuilder::<Postgres>::new("with params as (select now() as now, now() - interval '24 hours' as day_ago),");
    // Sorting by uptime needs it for every website with an incident in the
    // window (the others were up all along); any other sort only for the
    // rows of the page, after they are chosen.
    if by_uptime {
        query.push(down_ctes("true")).push(",");
    }
    query.push(
        " page as (select * from (
             select w.id, w.url, w.name, w.interval_seconds, w.timeout_ms, w.notify_emails, w.created_at,
                    w.updated_at, w.stream_seq, w.failures_before_down, w.down_policy,
                    w.channel_ids, w.paused, w.check_spec,
                    w.status, w.status_rank, w.status_since",
    );
    if by_uptime {
        query.push(", ").push(uptime_sql("w")).push(" as uptime_24h from websites w");
        query.push(" left join down d on d.website_id = w.id where true");
    } else {
        query.push(" from websites w where true");
    }
    if let Some(status) = filter.status {
        // By rank, so that the status index (rank, name, id) serves the
        // filter and the name order at once.
        query.push(" and w.status_rank = ").push_bind(rank(status)).push(" and not w.paused");
    }
    if filter.paused {
        query.push(" and w.paused");
    }
    if let Some(region) = &filter.region {
        query.push(" and exists (select 1 from website_regions f where f.website_id = w.id and f.region = ");
        query.push_bind(region.to_string()).push(")");
    }
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        query.push(" and (w.name || E'\\n' || w.url) ilike ").push_bind(contains_pattern(text));
    }
    query.push(") w where true");
    if let Some(key) = after {
        query.push(" and ");
        key.push_after(&mut query);
    }
    query.push(" order by ").push(sort.order()).push(" limit ").push(limit).push(")");
    if by_uptime {
        query.push(" select p.*");
    } else {
        query.push(", ").push(down_ctes("i.website_id in (select id from page)"));
        query.push(" select p.*, ").push(uptime_sql("p")).push(" as uptime_24h");
    }
    // The regions' latest checks only for the rows of the page.
    query.push(
        ", coalesce(r.region_up, '{}') as region_up, coalesce(r.region_checked_at, '{}') as region_checked_at,
           coalesce(r.region_response_ms, '{}') as region_response_ms,
           coalesce(r.region_status_code, '{}') as region_status_code,
           coalesce(r.region_cause, '{}') as region_cause, coalesce(r.region_message, '{}') as region_message,
           coalesce(r.regions, '{}') as regions,
           (select c.not_after from certificates c where c.website_id = p.id) as cert_not_after
         from page p",
    );
    if !by_uptime {
        query.push(" left join down d on d.website_id = p.id");
    }
    query.push(
        " left join lateral (
             select array_agg(x.region) as regions, array_agg(x.up) as region_up,
                    array_agg(x.checked_at) as region_checked_at, array_agg(x.response_ms) as region_response_ms,
                    array_agg(x.status_code) as region_status_code, array_agg(x.cause) as region_cause,
                    array_agg(x.message) as region_message
             from (select wr.region, ls.up, ls.checked_at, ls.response_ms, ls.status_code, ls.cause, ls.message
                   from website_regions wr
                   left join latest_status ls on ls.website_id = wr.website_id and ls.region = wr.region
                   where wr.website_id = p.id
                   order by wr.region) x
         ) r on true
         order by ",
    );
    query.push(sort.order());
    // A search is planned with its own text each time: whether the trigram
    // index or the sort's index serves it depends on how many websites the
    // text matches, and a plan kept for the statement would serve every
    // text as the first few did.
    let searching = filter.text.as_deref().is_some_and(|t| !t.is_empty());
    let rows: Vec<EntryRow> = query.build_query_as().persistent(!searching).fetch_all(pool).await?;
    rows.into_iter().map(decode_entry).collect()
}

fn decode_entry(row: EntryRow) -> Result<Entry> {
    let stored = decode_website(row.website)?;
    let id = stored.website.id;
    let status =
        row.status.parse::<Status>().map_err(|e| crate::Error::Corrupt(format!("website {id} status: {e}")))?;
    let regions = stored
        .website
        .regions
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let check = row.region_up.get(i).copied().flatten().zip(row.region_checked_at.get(i).copied().flatten());
            let check = check.map(|(up, checked_at)| RegionCheck {
                up,
                checked_at,
                response_ms: row.region_response_ms.get(i).copied().flatten(),
                status_code: row.region_status_code.get(i).copied().flatten(),
                cause: row.region_cause.get(i).cloned().flatten(),
                message: row.region_message.get(i).cloned().flatten(),
            });
            (region.clone(), check)
        })
        .collect();
    Ok(Entry {
        website: stored.website,
        status,
        status_since: row.status_since,
        uptime_24h: row.uptime_24h,
        cert_not_after: row.cert_not_after,
        regions,
        rank: row.status_rank,
    })
}

/// How many websites have each status, and of their checks per region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub up: i64,
    pub down: i64,
    pub pending: i64,
    /// Websites paused (counted here, not under their last status).
    pub paused: i64,
}

impl Counts {
    fn add(&mut self, status: Status, count: i64) {
        match status {
            Status::Up => self.up += count,
            Status::Down => self.down += count,
            Status::Pending => self.pending += count,
        }
    }
}

/// A website down now.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Down {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub status_since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub websites: Counts,
    /// Per region (every region, by name): the latest checks from it.
    pub regions: Vec<(String, Counts)>,
    /// Websites down now, the most recent first, at most `down_limit`.
    pub down: Vec<Down>,
}

/// The counts of the summary and up to `down_limit` websites down now.
pub async fn summary(pool: &PgPool, down_limit: i64) -> Result<Summary> {
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("select case when paused then 'paused' else status end, count(*) from websites group by 1")
            .fetch_all(pool)
            .await?;
    let mut websites = Counts::default();
    for (status, count) in by_status {
        match status.parse() {
            Ok(status) => websites.add(status, count),
            Err(_) if status == "paused" => websites.paused += count,
            Err(_) => {}
        }
    }
    let by_region: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "select r.name,
                count(*) filter (where ls.up),
                count(*) filter (where ls.up is false),
                count(*) filter (where wr.website_id is not null and ls.website_id is null)
         from regions r
         left join website_regions wr on wr.region = r.name
         left join latest_status ls on ls.website_id = wr.website_id and ls.region = wr.region
         group by r.name order by r.name",
    )
    .fetch_all(pool)
    .await?;
    let regions = by_region
        .into_iter()
        .map(|(name, up, down, pending)| (name, Counts { up, down, pending, paused: 0 }))
        .collect();
    let down = sqlx::query_as(
        "select id, name, url, status_since from websites where status = 'down' and not paused
         order by status_since desc, id desc limit $1",
    )
    .bind(down_limit)
    .fetch_all(pool)
    .await?;
    Ok(Summary { websites, regions, down })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_matches_its_text_literally() {
        assert_eq!(contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    }

    #[test]
    fn every_sort_has_a_name_that_parses_back() {
        for sort in Sort::ALL {
            assert_eq!(Sort::parse(sort.as_str()), Some(sort));
        }
        assert_eq!(Sort::parse("size"), None);
    }
}
