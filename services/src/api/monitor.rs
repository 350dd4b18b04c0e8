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
    /// `down` if any region's latest check failed, `up` if all regions are
    /// up, `pending` while some region has no result yet.
    pub status: &'static str,
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
    let mut latest: HashMap<(Uuid, String), status::LatestStatus> = status::latest(&state.pool, None)
        .await?
        .into_iter()
        .map(|s| ((s.website_id, s.region.clone()), s))
        .collect();
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
                status: overall(&regions),
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
            status: "pending",
            checked_at: None,
            response_ms: None,
            status_code: None,
            cause: None,
            message: None,
        },
        Some(s) => RegionStatus {
            region: region.to_owned(),
            status: if s.up { "up" } else { "down" },
            checked_at: Some(s.checked_at),
            response_ms: s.response_ms,
            status_code: s.status_code,
            cause: s.cause,
            message: s.message,
        },
    }
}

fn overall(regions: &[RegionStatus]) -> &'static str {
    if regions.iter().any(|r| r.status == "down") {
        "down"
    } else if regions.iter().any(|r| r.status == "pending") {
        "pending"
    } else {
        "up"
    }
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
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| ApiError::invalid("days", format!("days must be a whole number from 1 to {MAX_DAYS}, not {raw:?}"))),
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
