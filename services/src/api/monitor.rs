//! `/monitor`: what the checks found. The overview is paged and reads the
//! maintained status columns and the latest-status projection in Postgres
//! (`projections::overview`); a website's response-time series reads
//! InfluxDB.
//! `days` is 1 to 90 and `region` must exist (422 otherwise).

use super::body::{parse_id, Bounded, RegionQuery, Timestamp};
use super::error::{ApiError, Refusal, BAD_REQUEST, INVALID, NOT_FOUND, UNAVAILABLE};
use super::paging::{CursorQuery, Limit, ListQuery, Listing, Page, SearchQuery, SortQuery, StatusQuery};

/// What the per-website operations can refuse.
const WINDOW: u8 = BAD_REQUEST | NOT_FOUND | INVALID | UNAVAILABLE;
use super::ApiState;
use chrono::{DateTime, Utc};
use events::{outage, RegionName};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{Enum, Object, OpenApi, Tags};
use projections::influx::{Percentiles, SeriesPoint};
use projections::overview::{self, Sort};
use projections::postgres;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const MAX_DAYS: u32 = 90;

/// `days` as sent: 1 to 90.
pub type Days = Bounded<1, 90>;

#[derive(Tags)]
pub enum Tag {
    /// What the checks found
    Monitor,
}

/// The overview's entry of a website: its status, each region's latest
/// check, its uptime over 24 hours, all from the page's one query.
fn entry(entry: overview::Entry) -> MonitorEntry {
    let last_response_ms = entry.last_response_ms();
    let overview::Entry { website, status, status_since, uptime_24h, regions, cert_not_after, .. } = entry;
    MonitorEntry {
        id: website.id,
        name: website.name.to_string(),
        url: website.url.to_string(),
        interval_seconds: website.interval_seconds.get(),
        status: if website.paused { Status::Paused } else { status.into() },
        status_since: status_since.into(),
        uptime_24h,
        response_ms: last_response_ms,
        cert_days_left: cert_not_after.map(|at| events::certificate::days_left(at, Utc::now())),
        down_policy: super::websites::PolicyName::from(website.down_policy),
        regions: regions.into_iter().map(|(region, check)| region_entry(region.as_str(), check)).collect(),
    }
}

/// One region's entry, from its latest check (if any).
fn region_entry(region: &str, latest: Option<overview::RegionCheck>) -> RegionEntry {
    let status: Status = outage::Status::of_check(latest.as_ref().map(|s| s.up)).into();
    match latest {
        None => RegionEntry {
            region: region.to_owned(),
            status,
            checked_at: None,
            response_ms: None,
            status_code: None,
            cause: None,
            message: None,
        },
        Some(s) => RegionEntry {
            region: region.to_owned(),
            status,
            checked_at: Some(s.checked_at.into()),
            response_ms: s.response_ms,
            status_code: s.status_code,
            cause: s.cause,
            message: s.message,
        },
    }
}

/// The most websites `/monitor/summary` lists as down.
const SUMMARY_DOWN: i64 = 100;

/// How many websites are up, down and pending.
#[derive(Debug, Clone, Object)]
#[oai(rename = "StatusCounts")]
pub struct CountsView {
    pub up: i64,
    pub down: i64,
    pub pending: i64,
    /// Paused websites (not counted under their last status).
    pub paused: i64,
}

impl From<overview::Counts> for CountsView {
    fn from(c: overview::Counts) -> Self {
        CountsView { up: c.up, down: c.down, pending: c.pending, paused: c.paused }
    }
}

/// The latest checks from one region.
#[derive(Debug, Clone, Object)]
#[oai(rename = "RegionCounts")]
pub struct RegionCountsView {
    pub region: String,
    /// Websites whose latest check from this region was up, down, or that
    /// it has not checked yet.
    pub checks: CountsView,
}

/// A website down now.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DownWebsite")]
pub struct DownView {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    /// When it went down.
    pub since: Timestamp,
}

/// The counts of the overview, in one small answer.
#[derive(Debug, Clone, Object)]
#[oai(rename = "MonitorSummary")]
pub struct SummaryView {
    /// Every website, by status (under its down policy).
    pub websites: CountsView,
    /// Every region, by name.
    pub regions: Vec<RegionCountsView>,
    /// Websites down now, the most recent outage first: at most 100 (the
    /// full count is `websites.down`).
    pub down: Vec<DownView>,
}

/// How long one computed summary answers. Its counts read every website
/// (about 0.1 s at 100,000) and dashboards poll it, so requests close
/// together share one computation: a summary is at most this old.
const SUMMARY_FRESH: Duration = Duration::from_secs(2);

/// The last summary and when it was computed; the lock also makes
/// concurrent requests wait for one computation instead of running many.
#[derive(Default)]
pub struct SummaryCache(tokio::sync::Mutex<Option<(Instant, SummaryView)>>);

impl SummaryCache {
    async fn get(&self, state: &ApiState) -> Result<SummaryView, ApiError> {
        let mut cached = self.0.lock().await;
        if let Some((at, summary)) = cached.as_ref() {
            if at.elapsed() < SUMMARY_FRESH {
                return Ok(summary.clone());
            }
        }
        let summary = summary(state).await?;
        *cached = Some((Instant::now(), summary.clone()));
        Ok(summary)
    }
}

async fn summary(state: &ApiState) -> Result<SummaryView, ApiError> {
    let summary = overview::summary(&state.pool, SUMMARY_DOWN).await?;
    Ok(SummaryView {
        websites: summary.websites.into(),
        regions: summary
            .regions
            .into_iter()
            .map(|(region, counts)| RegionCountsView { region, checks: counts.into() })
            .collect(),
        down: summary
            .down
            .into_iter()
            .map(|d| DownView { id: d.id, name: d.name, url: d.url, since: d.status_since.into() })
            .collect(),
    })
}

/// Checks `days` (default `default`).
pub fn parse_days(days: Option<Days>, default: u32) -> Result<u32, ApiError> {
    match days {
        None => Ok(default),
        Some(days) => days.check("days").map(|d| u32::try_from(d).unwrap_or(MAX_DAYS)),
    }
}

/// Parses `region` and checks it exists, or existed: a removed region's
/// history stays readable.
pub async fn parse_region(state: &ApiState, raw: Option<&str>) -> Result<Option<RegionName>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let region = RegionName::parse(raw).map_err(|e| ApiError::invalid("region", e.message))?;
    if !postgres::regions(&state.pool).await?.iter().any(|r| r.name == region) {
        let last = state.bus.last_subject_event(&events::subject::region(&region)).await?;
        if !matches!(last, Some((_, e)) if matches!(e.event, events::Event::RegionRemoved(_))) {
            return Err(ApiError::invalid("region", format!("region {region} does not exist")));
        }
    }
    Ok(Some(region))
}

async fn series(
    state: &ApiState,
    id: &str,
    days: Option<Days>,
    region: Option<&str>,
) -> Result<Vec<SeriesPoint>, ApiError> {
    let id = parse_id(id, "website")?;
    let days = parse_days(days, 1)?;
    let region = parse_region(state, region).await?;
    if postgres::website(&state.pool, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("website {id} does not exist")));
    }
    let points = state
        .influx
        .series(id, region.as_ref(), days)
        .await
        .map_err(|e| ApiError::Unavailable(format!("influxdb: {e}")))?;
    Ok(points)
}

/// Checks the common `days`/`region` parameters and the website.
async fn window(
    state: &ApiState,
    id: &str,
    days: Option<Days>,
    default_days: u32,
    region: Option<&str>,
) -> Result<(Uuid, u32, Option<RegionName>, postgres::StoredWebsite), ApiError> {
    let id = parse_id(id, "website")?;
    let days = parse_days(days, default_days)?;
    let region = parse_region(state, region).await?;
    let website = postgres::website(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("website {id} does not exist")))?;
    Ok((id, days, region, website))
}

/// Incidents overlapping the last `days`, newest first.
async fn downtime(
    state: &ApiState,
    id: &str,
    days: Option<Days>,
    region: Option<&str>,
) -> Result<Vec<postgres::Incident>, ApiError> {
    let (id, days, region, _) = window(state, id, days, 1, region).await?;
    let since = Utc::now() - chrono::Duration::days(i64::from(days));
    Ok(postgres::incidents(&state.pool, id, region.as_ref(), since, None).await?)
}

/// The most recent incident overlapping the last `days`, or `None`.
async fn last_downtime(
    state: &ApiState,
    id: &str,
    days: Option<Days>,
    region: Option<&str>,
) -> Result<Option<postgres::Incident>, ApiError> {
    let (id, days, region, _) = window(state, id, days, 1, region).await?;
    let since = Utc::now() - chrono::Duration::days(i64::from(days));
    let latest = postgres::incidents(&state.pool, id, region.as_ref(), since, Some(1)).await?;
    Ok(latest.into_iter().next())
}

#[derive(Debug, Object)]
#[oai(rename = "Uptime")]
pub struct UptimeView {
    pub website_id: Uuid,
    /// The TLS certificate of the latest HTTPS checks, if any.
    #[oai(skip_serializing_if_is_none)]
    pub certificate: Option<CertificateView>,
    /// Whether the website is down now under its `down_policy` (or
    /// `region` is).
    pub down: bool,
    /// Percent of each window the website was not down under its
    /// `down_policy` (or `region` was not), counted from when it was added.
    pub uptime_percent: UptimeWindows,
    /// The window of the response-time percentiles (`days`).
    pub days: u32,
    pub response_ms: PercentilesView,
    pub incidents_in_window: usize,
    /// End of the most recent outage (start if it is still open).
    #[oai(nullable)]
    pub last_downtime_at: Option<Timestamp>,
    /// Seconds since the last outage ended (0 while down; since the website
    /// was added if it never was down).
    pub seconds_since_last_downtime: i64,
    /// Present when `failures_before_down` or `down_policy` was given: every
    /// figure above (but `response_ms`) is then recomputed from the stored
    /// checks under those rules, counted from `covered_from` at the earliest.
    #[oai(skip_serializing_if_is_none)]
    pub what_if: Option<super::whatif::WhatIfView>,
}

#[derive(Debug, Object)]
pub struct UptimeWindows {
    #[oai(rename = "1d")]
    pub day: f64,
    #[oai(rename = "7d")]
    pub week: f64,
    #[oai(rename = "30d")]
    pub month: f64,
    #[oai(rename = "90d")]
    pub quarter: f64,
}

/// Uptime over 1, 7, 30 and 90 days from the incidents, response-time
/// percentiles over `days` (default 30) from InfluxDB, time since the last
/// downtime. With what-if `rules`, from the incidents the stored checks
/// make under them ([`crate::whatif`]).
async fn uptime(
    state: &ApiState,
    id: &str,
    days: Option<Days>,
    region: Option<&str>,
    what_if: (Option<Bounded<1, 10>>, Option<&super::whatif::PolicyQuery>),
) -> Result<UptimeView, ApiError> {
    let (id, days, region, website) = window(state, id, days, 30, region).await?;
    let rules = super::whatif::rules(&website.website, state.detection.down_after, what_if.0, what_if.1)?;
    let now = Utc::now();
    let mut incidents =
        postgres::incidents(&state.pool, id, region.as_ref(), now - chrono::Duration::days(90), None).await?;
    let mut policy = website.website.down_policy;
    let mut counted_from = website.website.created_at;
    let mut recomputed = None;
    if let Some(rules) = rules {
        let windows = postgres::maintenance_windows(&state.pool, Some(id)).await?;
        let up_after = state.detection.up_after;
        let r =
            crate::whatif::recompute(&state.influx, &website.website, region.as_ref(), rules, up_after, &windows, now)
                .await?;
        let since = now - chrono::Duration::days(90);
        incidents = r.incidents.iter().filter(|i| i.ended_at.is_none_or(|e| e >= since)).cloned().collect();
        (policy, counted_from) = (rules.down_policy, counted_from.max(r.covered_from));
        recomputed = Some(r);
    }
    let intervals: Vec<_> = incidents.iter().map(|i| (i.started_at, i.ended_at)).collect();
    let regions = if region.is_some() { 1 } else { website.website.regions.len() };
    // Paused and maintenance time counts neither as time nor as downtime.
    let excluded = postgres::excluded_time(&state.pool, id, now - chrono::Duration::days(90), now).await?;
    let percent = |window_days: i64| {
        let from = (now - chrono::Duration::days(window_days)).max(counted_from);
        let (total, down) = events::outage::counted_downtime(&intervals, policy, regions, from, now, &excluded);
        if total <= 0 {
            return 100.0;
        }
        ((1.0 - down as f64 / total as f64) * 100_000.0).round() / 1000.0
    };
    let response_ms = state
        .influx
        .percentiles(id, region.as_ref(), days)
        .await
        .map_err(|e| ApiError::Unavailable(format!("influxdb: {e}")))?;
    let down = events::outage::down_now(policy, incidents.iter().filter(|i| i.ongoing).count(), regions);
    let last_downtime_at = incidents.iter().map(|i| i.ended_at.unwrap_or(i.started_at)).max();
    let seconds_since_last_downtime =
        if down { 0 } else { (now - last_downtime_at.unwrap_or(website.website.created_at)).num_seconds().max(0) };
    let window_start = now - chrono::Duration::days(i64::from(days));
    let certificate: Option<DateTime<Utc>> =
        sqlx::query_scalar("select not_after from certificates where website_id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await
            .map_err(projections::Error::from)?;
    Ok(UptimeView {
        certificate: certificate.map(|not_after| CertificateView {
            not_after: not_after.into(),
            days_left: events::certificate::days_left(not_after, now),
        }),
        website_id: id,
        down,
        uptime_percent: UptimeWindows { day: percent(1), week: percent(7), month: percent(30), quarter: percent(90) },
        days,
        response_ms: response_ms.into(),
        incidents_in_window: incidents.iter().filter(|i| i.ended_at.is_none_or(|e| e >= window_start)).count(),
        last_downtime_at: last_downtime_at.map(Into::into),
        seconds_since_last_downtime,
        what_if: recomputed.map(Into::into),
    })
}

/// The TLS certificate the latest HTTPS checks saw.
#[derive(Debug, Object)]
#[oai(rename = "Certificate")]
pub struct CertificateView {
    pub not_after: Timestamp,
    /// Whole days left (negative once expired).
    pub days_left: i64,
}

/// `up`, `down`, `pending` (not checked yet) or `paused` (a website not
/// checked until resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Status {
    Up,
    Down,
    Pending,
    Paused,
}

impl From<outage::Status> for Status {
    fn from(status: outage::Status) -> Self {
        match status {
            outage::Status::Up => Status::Up,
            outage::Status::Down => Status::Down,
            outage::Status::Pending => Status::Pending,
        }
    }
}

/// A website with its latest result per region.
#[derive(Debug, Object)]
#[oai(rename = "MonitoredWebsite")]
pub struct MonitorEntry {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub interval_seconds: u32,
    /// `paused` while paused, `down` if the website's latest checks are
    /// down under its `down_policy` (default: any region), `pending` while
    /// some region has no result yet, else `up`.
    pub status: Status,
    /// When the website took this status (for `pending`: when it was added
    /// or its regions changed).
    pub status_since: Timestamp,
    /// Percent of the last 24 hours (or since it was added) it was not down
    /// under its `down_policy`, from the incidents, to three decimals.
    pub uptime_24h: f64,
    /// Response time of its most recent check, from any region.
    #[oai(nullable)]
    pub response_ms: Option<i32>,
    /// Whole days until the TLS certificate its HTTPS checks saw expires
    /// (negative once expired; `null`: no certificate seen).
    #[oai(nullable)]
    pub cert_days_left: Option<i64>,
    pub down_policy: super::websites::PolicyName,
    pub regions: Vec<RegionEntry>,
}

/// The latest check of a website from one region.
#[derive(Debug, Object)]
#[oai(rename = "RegionStatus")]
pub struct RegionEntry {
    pub region: String,
    pub status: Status,
    #[oai(nullable)]
    pub checked_at: Option<Timestamp>,
    #[oai(nullable)]
    pub response_ms: Option<i32>,
    #[oai(nullable)]
    pub status_code: Option<i32>,
    #[oai(nullable)]
    pub cause: Option<String>,
    #[oai(nullable)]
    pub message: Option<String>,
}

/// One check (for more than a day: the mean of a bucket of checks).
#[derive(Debug, Object)]
#[oai(rename = "SeriesPoint")]
pub struct PointView {
    pub time: Timestamp,
    pub region: String,
    #[oai(nullable)]
    pub response_ms: Option<f64>,
    /// Down if any check of the bucket failed.
    pub up: bool,
    #[oai(nullable)]
    pub status_code: Option<u16>,
}

impl From<SeriesPoint> for PointView {
    fn from(p: SeriesPoint) -> Self {
        PointView {
            time: p.time.into(),
            region: p.region,
            response_ms: p.response_ms,
            up: p.up,
            status_code: p.status_code,
        }
    }
}

/// An outage of a website in one region.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Incident")]
pub struct IncidentView {
    pub region: String,
    pub started_at: Timestamp,
    /// `null` while it lasts.
    #[oai(nullable)]
    pub ended_at: Option<Timestamp>,
    /// Seconds; for an open incident, so far.
    pub duration_seconds: i64,
    pub ongoing: bool,
    #[oai(nullable)]
    pub cause: Option<String>,
    #[oai(nullable)]
    pub status_code: Option<i32>,
    #[oai(nullable)]
    pub message: Option<String>,
    /// It began during a maintenance window of the website (no alert was
    /// sent, and its time is not counted against uptime).
    pub in_maintenance: bool,
}

impl From<postgres::Incident> for IncidentView {
    fn from(i: postgres::Incident) -> Self {
        IncidentView {
            region: i.region,
            started_at: i.started_at.into(),
            ended_at: i.ended_at.map(Into::into),
            duration_seconds: i.duration_seconds,
            ongoing: i.ongoing,
            cause: i.cause,
            status_code: i.status_code,
            message: i.message,
            in_maintenance: i.in_maintenance,
        }
    }
}

/// Response-time percentiles in milliseconds (`null` without samples).
#[derive(Debug, Object)]
#[oai(rename = "Percentiles")]
pub struct PercentilesView {
    #[oai(nullable)]
    pub p50: Option<f64>,
    #[oai(nullable)]
    pub p95: Option<f64>,
    #[oai(nullable)]
    pub p99: Option<f64>,
    /// How many checks with a response the window holds.
    pub samples: u64,
}

impl From<Percentiles> for PercentilesView {
    fn from(p: Percentiles) -> Self {
        PercentilesView { p50: p.p50, p95: p.p95, p99: p.p99, samples: p.samples }
    }
}

/// An incident or `null`: poem-openapi documents `Option<T>` as `T`, so
/// this says `nullable` itself.
#[derive(Debug)]
pub struct MaybeIncident(Option<IncidentView>);

impl Type for MaybeIncident {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "nullable_Incident".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            nullable: true,
            all_of: vec![IncidentView::schema_ref()],
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut Registry) {
        IncidentView::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ToJSON for MaybeIncident {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(self.0.as_ref().and_then(ToJSON::to_json).unwrap_or_default())
    }
}

pub struct MonitorApi {
    pub state: Arc<ApiState>,
    pub summary: SummaryCache,
}

/// The `region` query parameter as text.
fn region_of(region: &Query<Option<RegionQuery>>) -> Option<&str> {
    region.0.as_ref().map(|r| r.as_str())
}

#[OpenApi(tag = "Tag::Monitor")]
impl MonitorApi {
    /// Websites with their status, a page at a time
    ///
    /// Each website with its status under its `down_policy` and since when,
    /// its regions' latest checks, its uptime over 24 hours and its last
    /// response time. Down first by default. Pages hold `limit` websites
    /// (up to 500 without it); the next page's address is in the `Link`
    /// header (`rel="next"`), absent on the last page.
    #[oai(path = "/monitor", method = "get", operation_id = "monitor_overview")]
    #[allow(clippy::too_many_arguments)]
    async fn overview(
        &self,
        /// Websites per page, 1 to 500 (default: 500).
        limit: Query<Option<Limit>>,
        /// Where the page starts: the cursor of the `Link` header of the
        /// previous page (its other parameters unchanged).
        cursor: Query<Option<CursorQuery>>,
        /// Only websites with this status (`up`, `down` and `pending` leave
        /// paused websites out; `paused` lists only those).
        status: Query<Option<StatusQuery>>,
        /// Only websites checked from this region.
        region: Query<Option<RegionQuery>>,
        /// Only websites whose name or URL contains this, case-insensitive.
        q: Query<Option<SearchQuery>>,
        /// `status` (down, then pending, then up; the default), `name`,
        /// `last_change` (the most recent first), `uptime_24h` (the lowest
        /// first) or `created` (the oldest first).
        sort: Query<Option<SortQuery>>,
    ) -> Result<Page<MonitorEntry>, Refusal<{ BAD_REQUEST | INVALID | UNAVAILABLE }>> {
        let raw = ListQuery {
            limit: limit.0,
            cursor: cursor.0.as_ref().map(|c| c.as_str()),
            status: status.0.as_ref().map(|s| s.as_str()),
            region: region.0.as_ref(),
            q: q.0.as_ref().map(|q| q.as_str()),
            sort: sort.0.as_ref().map(|s| s.as_str()),
        };
        let listing = Listing::parse(&self.state, raw, Sort::Status).await?;
        let (entries, link) = listing.fetch(&self.state, "/monitor").await?;
        Ok(Page::Ok(Json(entries.into_iter().map(entry).collect()), link))
    }

    /// Counts by status and by region, and the websites down now
    ///
    /// At most 2 seconds old: requests close together share one count.
    #[oai(path = "/monitor/summary", method = "get", operation_id = "monitor_summary")]
    async fn summary(&self) -> Result<Json<SummaryView>, Refusal<UNAVAILABLE>> {
        Ok(Json(self.summary.get(&self.state).await?))
    }

    /// Response times, oldest first
    ///
    /// One point per check for one day, one per `days` minutes beyond (mean
    /// time, down if any check failed).
    #[oai(path = "/monitor/:id", method = "get", operation_id = "monitor_series")]
    async fn series(
        &self,
        id: Path<String>,
        /// The window in days (default 1).
        days: Query<Option<Days>>,
        /// Only this region (default: all).
        region: Query<Option<RegionQuery>>,
    ) -> Result<Json<Vec<PointView>>, Refusal<WINDOW>> {
        let points = series(&self.state, &id, days.0, region_of(&region)).await?;
        Ok(Json(points.into_iter().map(Into::into).collect()))
    }

    /// Incidents overlapping the window, newest first
    #[oai(path = "/monitor/:id/downtime", method = "get", operation_id = "monitor_downtime")]
    async fn downtime(
        &self,
        id: Path<String>,
        /// The window in days (default 1).
        days: Query<Option<Days>>,
        /// Only this region (default: all).
        region: Query<Option<RegionQuery>>,
    ) -> Result<Json<Vec<IncidentView>>, Refusal<WINDOW>> {
        let incidents = downtime(&self.state, &id, days.0, region_of(&region)).await?;
        Ok(Json(incidents.into_iter().map(Into::into).collect()))
    }

    /// The most recent incident overlapping the window, or `null`
    #[oai(path = "/monitor/:id/last_downtime", method = "get", operation_id = "monitor_last_downtime")]
    async fn last_downtime(
        &self,
        id: Path<String>,
        /// The window in days (default 1).
        days: Query<Option<Days>>,
        /// Only this region (default: all).
        region: Query<Option<RegionQuery>>,
    ) -> Result<Json<MaybeIncident>, Refusal<WINDOW>> {
        let latest = last_downtime(&self.state, &id, days.0, region_of(&region)).await?;
        Ok(Json(MaybeIncident(latest.map(Into::into))))
    }

    /// Uptime, response-time percentiles and time since the last downtime
    ///
    /// Uptime over 1, 7, 30 and 90 days from the incidents (counted from
    /// when the website was added), response-time percentiles over `days`
    /// from InfluxDB.
    ///
    /// What-if: with `failures_before_down` or `down_policy` (the other is
    /// the website's own), the incidents and uptime are recomputed from the
    /// stored checks under those rules, changing nothing; `what_if` says
    /// which period the checks cover.
    #[oai(path = "/monitor/:id/uptime", method = "get", operation_id = "monitor_uptime")]
    async fn uptime(
        &self,
        id: Path<String>,
        /// The window of the percentiles in days (default 30).
        days: Query<Option<Days>>,
        /// Only this region (default: all).
        region: Query<Option<RegionQuery>>,
        /// What-if: consecutive failed checks that confirm an outage (1..10).
        failures_before_down: Query<Option<Bounded<1, 10>>>,
        /// What-if: when the website counts as down (`any`, `majority`, `all`).
        down_policy: Query<Option<super::whatif::PolicyQuery>>,
    ) -> Result<Json<UptimeView>, Refusal<WINDOW>> {
        let what_if = (failures_before_down.0, down_policy.0.as_ref());
        Ok(Json(uptime(&self.state, &id, days.0, region_of(&region), what_if).await?))
    }
}
