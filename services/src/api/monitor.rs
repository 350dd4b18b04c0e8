//! `/monitor`: what the checks found. The overview reads the latest-status
//! projection in Postgres; a website's response-time series reads InfluxDB.

use super::body::parse_id;
use super::error::ApiError;
use super::ApiState;
use chrono::{DateTime, Utc};
use events::RegionName;
use poem::handler;
use poem::web::{Data, Json, Path, Query};
use projections::influx::SeriesPoint;
use projections::{postgres, status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub const MAX_DAYS: u32 = 90;

/// A website with its latest result per region.
#[derive(Debug, Serialize)]
pub struct MonitorView {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub interval_seconds: u32,
    /// `down` if the website's latest checks are down under its
    /// `down_policy` (default: any region), `pending` while some region has
    /// no result yet, else `up`.
    pub status: &'static str,
    pub down_policy: events::DownPolicy,
    pub regions: Vec<RegionStatus>,
}

#[derive(Debug, Serialize)]
pub struct RegionStatus {
    pub region: String,
    /// `up`, `down` or `pending` (not checked yet).
    pub status: &'static str,
    pub checked_at: Option<DateTime<Utc>>,
    pub response_ms: Option<i32>,
    pub status_code: Option<i32>,
    pub cause: Option<String>,
    pub message: Option<String>,
}

#[handler]
pub async fn overview(state: Data<&Arc<ApiState>>) -> Result<Json<Vec<MonitorView>>, ApiError> {
    let websites = postgres::websites(&state.pool, None, 0).await?;
    let mut latest: HashMap<(Uuid, String), status::LatestStatus> =
        status::latest(&state.pool, None).await?.into_iter().map(|s| ((s.website_id, s.region.clone()), s)).collect();
    let views = websites
        .into_iter()
        .map(|website| {
            let regions: Vec<RegionStatus> = website
                .regions
                .iter()
                .map(|region| region_status(region.as_str(), latest.remove(&(website.id, region.to_string()))))
                .collect();
            MonitorView {
                id: website.id,
                name: website.name.to_string(),
                url: website.url.to_string(),
                interval_seconds: website.interval_seconds.get(),
                status: overall(&regions, website.down_policy),
                down_policy: website.down_policy,
                regions,
            }
        })
        .collect();
    Ok(Json(views))
}

fn region_status(region: &str, latest: Option<status::LatestStatus>) -> RegionStatus {
    match latest {
        None => RegionStatus {
            region: region.to_owned(),
            status: events::outage::Status::of_check(None).as_str(),
            checked_at: None,
            response_ms: None,
            status_code: None,
            cause: None,
            message: None,
        },
        Some(s) => RegionStatus {
            region: region.to_owned(),
            status: events::outage::Status::of_check(Some(s.up)).as_str(),
            checked_at: Some(s.checked_at),
            response_ms: s.response_ms,
            status_code: s.status_code,
            cause: s.cause,
            message: s.message,
        },
    }
}

fn overall(regions: &[RegionStatus], policy: events::DownPolicy) -> &'static str {
    // The views carry the status as its wire name; read it back into the
    // enum the verdict takes.
    let statuses: Vec<events::outage::Status> = regions.iter().filter_map(|r| r.status.parse().ok()).collect();
    events::outage::status(policy, &statuses).as_str()
}

#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    days: Option<String>,
    region: Option<String>,
}

/// Parses `days` (1 to 90, default 1).
pub fn parse_days(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(1),
        Some(raw) => raw.trim().parse::<u32>().ok().filter(|d| (1..=MAX_DAYS).contains(d)).ok_or_else(|| {
            ApiError::invalid("days", format!("days must be a whole number from 1 to {MAX_DAYS}, not {raw:?}"))
        }),
    }
}

/// Parses `region` and checks it exists.
pub async fn parse_region(state: &ApiState, raw: Option<&str>) -> Result<Option<RegionName>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let region = RegionName::parse(raw).map_err(|e| ApiError::invalid("region", e.message))?;
    if !postgres::regions(&state.pool).await?.iter().any(|r| r.name == region) {
        return Err(ApiError::invalid("region", format!("region {region} does not exist")));
    }
    Ok(Some(region))
}

#[handler]
pub async fn series(
    state: Data<&Arc<ApiState>>,
    Path(id): Path<String>,
    Query(params): Query<SeriesParams>,
) -> Result<Json<Vec<SeriesPoint>>, ApiError> {
    let id = parse_id(&id, "website")?;
    let days = parse_days(params.days.as_deref())?;
    let region = parse_region(&state, params.region.as_deref()).await?;
    if postgres::website(&state.pool, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("website {id} does not exist")));
    }
    let points = state
        .influx
        .series(id, region.as_ref(), days)
        .await
        .map_err(|e| ApiError::Unavailable(format!("influxdb: {e}")))?;
    Ok(Json(points))
}

#[derive(Debug, Deserialize)]
pub struct DowntimeParams {
    days: Option<String>,
    region: Option<String>,
}

/// Parses the common `days`/`region` parameters and checks the website.
async fn window(
    state: &ApiState,
    id: &str,
    days: Option<&str>,
    region: Option<&str>,
) -> Result<(Uuid, u32, Option<RegionName>, postgres::StoredWebsite), ApiError> {
    let id = parse_id(id, "website")?;
    let days = parse_days(days)?;
    let region = parse_region(state, region).await?;
    let website = postgres::website(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("website {id} does not exist")))?;
    Ok((id, days, region, website))
}

/// Incidents overlapping the last `days`, newest first.
#[handler]
pub async fn downtime(
    state: Data<&Arc<ApiState>>,
    Path(id): Path<String>,
    Query(params): Query<DowntimeParams>,
) -> Result<Json<Vec<postgres::Incident>>, ApiError> {
    let (id, days, region, _) = window(&state, &id, params.days.as_deref(), params.region.as_deref()).await?;
    let since = Utc::now() - chrono::Duration::days(i64::from(days));
    Ok(Json(postgres::incidents(&state.pool, id, region.as_ref(), since, None).await?))
}

/// The most recent incident overlapping the last `days`, or `null`.
#[handler]
pub async fn last_downtime(
    state: Data<&Arc<ApiState>>,
    Path(id): Path<String>,
    Query(params): Query<DowntimeParams>,
) -> Result<Json<Option<postgres::Incident>>, ApiError> {
    let (id, days, region, _) = window(&state, &id, params.days.as_deref(), params.region.as_deref()).await?;
    let since = Utc::now() - chrono::Duration::days(i64::from(days));
    let latest = postgres::incidents(&state.pool, id, region.as_ref(), since, Some(1)).await?;
    Ok(Json(latest.into_iter().next()))
}

#[derive(Debug, Serialize)]
pub struct UptimeView {
    pub website_id: Uuid,
    /// Whether the website is down now under its `down_policy` (or
    /// `region` is).
    pub down: bool,
    /// Percent of each window the website was not down under its
    /// `down_policy` (or `region` was not), counted from when it was added.
    pub uptime_percent: UptimeWindows,
    /// The window of the response-time percentiles (`days`).
    pub days: u32,
    pub response_ms: projections::influx::Percentiles,
    pub incidents_in_window: usize,
    /// End of the most recent outage (start if it is still open).
    pub last_downtime_at: Option<DateTime<Utc>>,
    /// Seconds since the last outage ended (0 while down; since the website
    /// was added if it never was down).
    pub seconds_since_last_downtime: i64,
}

#[derive(Debug, Serialize)]
pub struct UptimeWindows {
    #[serde(rename = "1d")]
    pub day: f64,
    #[serde(rename = "7d")]
    pub week: f64,
    #[serde(rename = "30d")]
    pub month: f64,
    #[serde(rename = "90d")]
    pub quarter: f64,
}

/// Uptime over 1, 7, 30 and 90 days from the incidents, response-time
/// percentiles over `days` (default 30) from InfluxDB, time since the last
/// downtime.
#[handler]
pub async fn uptime(
    state: Data<&Arc<ApiState>>,
    Path(id): Path<String>,
    Query(params): Query<DowntimeParams>,
) -> Result<Json<UptimeView>, ApiError> {
    let days_param = params.days.as_deref().or(Some("30"));
    let (id, days, region, website) = window(&state, &id, days_param, params.region.as_deref()).await?;
    let now = Utc::now();
    let incidents =
        postgres::incidents(&state.pool, id, region.as_ref(), now - chrono::Duration::days(90), None).await?;
    let intervals: Vec<_> = incidents.iter().map(|i| (i.started_at, i.ended_at)).collect();
    let regions = if region.is_some() { 1 } else { website.website.regions.len() };
    let policy = website.website.down_policy;
    let percent = |window_days: i64| {
        let from = (now - chrono::Duration::days(window_days)).max(website.website.created_at);
        let total = (now - from).num_seconds();
        if total <= 0 {
            return 100.0;
        }
        let down = events::outage::downtime_seconds(&intervals, policy, regions, from, now);
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
    Ok(Json(UptimeView {
        website_id: id,
        down,
        uptime_percent: UptimeWindows { day: percent(1), week: percent(7), month: percent(30), quarter: percent(90) },
        days,
        response_ms,
        incidents_in_window: incidents.iter().filter(|i| i.ended_at.is_none_or(|e| e >= window_start)).count(),
        last_downtime_at,
        seconds_since_last_downtime,
    }))
}
