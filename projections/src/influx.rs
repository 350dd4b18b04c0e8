//! The InfluxDB projection of the CHECKS stream: one point per check in the
//! measurement `checks`, tagged `website_id` and `region`, timestamped with
//! the check's scheduled time (ms). The timestamp and tags identify the
//! check, so writing a result twice overwrites the same point: replays and
//! redeliveries are harmless. Speaks the v1 HTTP API (InfluxDB 1.x, and the
//! v1-compatibility endpoints of 2.x/3.x with a token).
//!
//! Fields: `response_ms` (integer, absent without a response), `up`
//! (integer 1/0, so it aggregates), `status_code` (integer), `cause`
//! (string), `lateness_ms` (start minus schedule).

use crate::{Error, Result};
use chrono::{DateTime, Utc};
use events::{CheckCompleted, RegionName};
use influxdb::{Client, ReadQuery, Timestamp, WriteQuery};
use serde::Deserialize;
use uuid::Uuid;

pub const MEASUREMENT: &str = "checks";

#[derive(Clone)]
pub struct Influx {
    client: Client,
    database: String,
}

/// One point of a website's response-time series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesPoint {
    pub time: DateTime<Utc>,
    pub region: String,
    pub response_ms: Option<f64>,
    pub up: bool,
    pub status_code: Option<u16>,
}

impl Influx {
    pub fn new(url: &str, database: &str, token: Option<&str>) -> Self {
        let mut client = Client::new(url, database);
        if let Some(token) = token {
            client = client.with_token(token);
        }
        Self { client, database: database.to_owned() }
    }

    /// Creates the database if it does not exist (a no-op on 1.x when it
    /// does; with 2.x/3.x the bucket is created by the operator).
    pub async fn ensure_database(&self) -> Result<()> {
        let statement = format!("CREATE DATABASE {}", quote_ident(&self.database));
        self.client.query(ReadQuery::new(statement)).await.map_err(influx_error)?;
        Ok(())
    }

    pub async fn write(&self, checks: &[&CheckCompleted]) -> Result<()> {
        if checks.is_empty() {
            return Ok(());
        }
        let points: Vec<WriteQuery> = checks.iter().map(|c| point(c)).collect();
        self.client.query(points).await.map_err(influx_error)?;
        Ok(())
    }

    /// Drops every point (before a replay of CHECKS).
    pub async fn drop_checks(&self) -> Result<()> {
        let statement = format!("DROP MEASUREMENT {}", quote_ident(MEASUREMENT));
        match self.client.query(ReadQuery::new(statement)).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("measurement not found") => Ok(()),
            Err(e) => Err(influx_error(e)),
        }
    }

    /// The response-time series of a website over the last `days`, oldest
    /// first: every check for one day; for longer windows one point per
    /// `days` minutes (mean response time, down if any check in it failed).
    pub async fn series(&self, website_id: Uuid, region: Option<&RegionName>, days: u32) -> Result<Vec<SeriesPoint>> {
        let mut filter = format!("\"website_id\" = '{website_id}' AND time > now() - {days}d");
        if let Some(region) = region {
            // Region names are [a-z0-9-] only, safe inside quotes.
            filter.push_str(&format!(" AND \"region\" = '{region}'"));
        }
        let query = if days <= 1 {
            format!(
                "SELECT \"response_ms\", \"up\", \"status_code\" FROM \"{MEASUREMENT}\" WHERE {filter} GROUP BY \"region\""
            )
        } else {
            format!(
                "SELECT mean(\"response_ms\") AS \"response_ms\", min(\"up\") AS \"up\", last(\"status_code\") AS \"status_code\" \
                 FROM \"{MEASUREMENT}\" WHERE {filter} GROUP BY time({days}m), \"region\" fill(none)"
            )
        };
        #[derive(Deserialize)]
        struct Tags {
            region: String,
        }
        #[derive(Deserialize)]
        struct Row {
            time: DateTime<Utc>,
            response_ms: Option<f64>,
            up: Option<f64>,
            status_code: Option<f64>,
        }
        let mut result = self.client.json_query(ReadQuery::new(query)).await.map_err(influx_error)?;
        if result.results.is_empty() {
            return Ok(vec![]);
        }
        let tagged = result.deserialize_next_tagged::<Tags, Row>().map_err(influx_error)?;
        let mut points: Vec<SeriesPoint> = tagged
            .series
            .into_iter()
            .flat_map(|series| {
                let region = series.tags.region;
                series.values.into_iter().map(move |row| SeriesPoint {
                    time: row.time,
                    region: region.clone(),
                    response_ms: row.response_ms,
                    up: row.up.is_some_and(|u| u >= 1.0),
                    status_code: row.status_code.and_then(|s| u16::try_from(s as i64).ok()),
                })
            })
            .collect();
        points.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.region.cmp(&b.region)));
        Ok(points)
    }
}

/// Response-time percentiles over a window, in ms.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// How many checks with a response the window holds.
    pub samples: u64,
}

impl Influx {
    /// p50/p95/p99 of the response time of a website over the last `days`.
    pub async fn percentiles(&self, website_id: Uuid, region: Option<&RegionName>, days: u32) -> Result<Percentiles> {
        let mut filter = format!("\"website_id\" = '{website_id}' AND time > now() - {days}d");
        if let Some(region) = region {
            filter.push_str(&format!(" AND \"region\" = '{region}'"));
        }
        let query = format!(
            "SELECT percentile(\"response_ms\", 50) AS p50, percentile(\"response_ms\", 95) AS p95, \
             percentile(\"response_ms\", 99) AS p99, count(\"response_ms\") AS samples FROM \"{MEASUREMENT}\" WHERE {filter}"
        );
        #[derive(Deserialize)]
        struct Row {
            p50: Option<f64>,
            p95: Option<f64>,
            p99: Option<f64>,
            samples: Option<f64>,
        }
        let mut result = self.client.json_query(ReadQuery::new(query)).await.map_err(influx_error)?;
        if result.results.is_empty() {
            return Ok(Percentiles::default());
        }
        let rows = result.deserialize_next::<Row>().map_err(influx_error)?;
        let row = rows.series.into_iter().flat_map(|s| s.values).next();
        Ok(row.map_or_else(Percentiles::default, |r| Percentiles {
            p50: r.p50,
            p95: r.p95,
            p99: r.p99,
            samples: r.samples.map_or(0, |n| n as u64),
        }))
    }
}

/// The point of one check.
pub fn point(check: &CheckCompleted) -> WriteQuery {
    let millis = u128::try_from(check.scheduled_at.timestamp_millis()).unwrap_or(0);
    let lateness = (check.started_at - check.scheduled_at).num_milliseconds();
    let mut point = WriteQuery::new(Timestamp::Milliseconds(millis), MEASUREMENT)
        .add_tag("website_id", check.website_id.to_string())
        .add_tag("region", check.region.to_string())
        .add_field("up", i64::from(check.up))
        .add_field("lateness_ms", lateness);
    if let Some(ms) = check.response_ms {
        point = point.add_field("response_ms", i64::from(ms));
    }
    if let Some(code) = check.status_code {
        point = point.add_field("status_code", i64::from(code));
    }
    if let Some(cause) = check.cause {
        point = point.add_field("cause", crate::status::cause_name(cause));
    }
    point
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

fn influx_error(error: influxdb::Error) -> Error {
    Error::Influx(error.to_string())
}
