//! The InfluxDB projection of the CHECKS stream: one point per check in the
//! measurement `checks`, tagged `website_id` and `region`, timestamped with
//! the check's scheduled time (µs; scheduled times are whole milliseconds,
//! so points written before at ms precision are the same points). The timestamp and tags identify the
//! check, so writing a result twice overwrites the same point: replays and
//! redeliveries are harmless. Speaks the v1 HTTP API (InfluxDB 1.x, and the
//! v1-compatibility endpoints of 2.x/3.x with a token) directly: line
//! protocol to `/write`, InfluxQL to `/query`.
//!
//! Fields: `response_ms` (integer, absent without a response), `up`
//! (integer 1/0, so it aggregates), `status_code` (integer), `cause` and
//! `message` (strings, on failures), `lateness_us` (start minus schedule;
//! points written by earlier versions have `lateness_ms`). Every field is a
//! column InfluxDB compacts, so there are no more than these. With the tags and the time they hold the whole
//! CheckCompleted but the certificate's expiry, so [`Influx::checks`] gives
//! the results back for recomputing (the what-if uptime).

use crate::Result;
use chrono::{DateTime, Utc};
use events::{CheckCompleted, RegionName};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const MEASUREMENT: &str = "checks";

/// Bounds every request, so a server that stops answering cannot hold a
/// writer (or a shutdown) for longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The retention policy of the raw points: the database's default.
const RAW_POLICY: &str = "autogen";
/// Dropping the checks of many websites rewrites every file and index of
/// the measurement: minutes on a large database, not the seconds of a query.
const DROP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// One slice's rollup reads an hour of a 64th of the websites: 15 seconds
/// at a million websites on a busy server, not the seconds of a query.
const ROLLUP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Clone)]
pub struct Influx {
    http: reqwest::Client,
    /// The server's base URL without a trailing slash.
    url: String,
    database: String,
    token: Option<String>,
    /// Days raw points are kept (0: for ever).
    retention_days: u32,
    /// Rollup points read lately, shared by the clones.
    rolled: Arc<RolledCache>,
}

/// How long rollup points once read answer again. A rollup's points change
/// at most once after they are written (the next run of their slice
/// computes its last buckets again, for points written late), so an older
/// read is at most a bucket short for a minute: the raw points after it
/// fill the rest, as they do after the newest rollup point.
const ROLLED_FRESH: Duration = Duration::from_secs(60);
/// The most series whose rollup points are kept (about 100 KB each).
const ROLLED_KEPT: usize = 256;

/// The bucketed rollup points of recent series, by website, region and
/// days, with when they were read and the time they cover up to (ms).
type RolledKey = (Uuid, Option<String>, u32);

/// Bucketed rollup points and the time (ms) up to which they cover.
type Rolled = (Arc<Vec<SeriesPoint>>, i64);

#[derive(Default)]
struct RolledCache(Mutex<HashMap<RolledKey, (Instant, Rolled)>>);

impl RolledCache {
    fn get(&self, key: &RolledKey) -> Option<Rolled> {
        let cache = self.0.lock().ok()?;
        let (at, rolled) = cache.get(key)?;
        (at.elapsed() < ROLLED_FRESH).then(|| rolled.clone())
    }

    fn put(&self, key: RolledKey, rolled: Rolled) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= ROLLED_KEPT {
                cache.retain(|_, (at, _)| at.elapsed() < ROLLED_FRESH);
                if cache.len() >= ROLLED_KEPT {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), rolled));
        }
    }
}

/// The retention policy of the rollups, kept for ever.
pub const ROLLUPS: &str = "rollups";

/// A downsampled copy of the checks, made by the projector ([`Influx::roll_up`]
/// on the schedule of [`Rollup::due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// Its measurement in the [`ROLLUPS`] retention policy.
    pub measurement: &'static str,
    /// Minutes per point.
    pub minutes: u32,
    /// Minutes in which every website's points are rolled up once, a
    /// [`ROLLUP_SLICES`]th of the websites at a time; and minutes each run
    /// covers (its last complete buckets, made again for points written
    /// late; a point written later than that, after InfluxDB was away, is in
    /// the raw points only). A run visits every series it selects however
    /// few points it finds (seconds of CPU at 56,000 websites), so each run
    /// takes a slice of the websites and the slices are spread over the
    /// period: a little work every [`ROLLUP_TURN_SECS`] instead of a burst
    /// that holds up the checks.
    every: u32,
    covers: u32,
    /// The rollup it is made from (`None`: the raw points).
    from: Option<&'static str>,
}

/// The slices a rollup's period is divided into: websites by the last hex
/// digit of their id and the top two bits of the one before
/// ([`rollup_slice`]; random in a v7 UUID, so the slices are even).
pub const ROLLUP_SLICES: u32 = 64;

/// The rollups' turn, in seconds: each turn, the slice of each level due in
/// it runs ([`Rollup::due`]), a level's slices spread over its period.
/// A sixteenth of the websites at once held up the checks for a few seconds
/// after each run started; a 64th at a time does not make a burst of its
/// own.
pub const ROLLUP_TURN_SECS: i64 = 15;

/// The slice of [`ROLLUP_SLICES`] `website_id` is rolled up in.
pub fn rollup_slice(website_id: Uuid) -> u32 {
    let bytes = website_id.as_bytes();
    let last = bytes[15];
    u32::from(last & 0x0f) + 16 * u32::from(last >> 6)
}

/// One point a minute (windows up to a week), one an hour (longer ones,
/// from the minute points: 60 times fewer to read). Each period has at
/// least [`ROLLUP_SLICES`] turns, so at most one slice of a level is due
/// in a turn.
///
/// A run costs InfluxDB a part for the series it selects and a part for
/// each point it reads and writes: at a million websites checked every 3
/// minutes, one slice's minute rollup took 8 s over 17 minutes and 15 s
/// over 65 (89,000 and 340,000 points). So each website's minute points
/// are made once an hour rather than every 16 minutes: half the CPU (a
/// 64th of the websites a minute rather than every 15 s), and a series
/// read takes up to an hour of raw points after the rollup's newest point
/// rather than 16 minutes ([`Influx::series`]).
///
/// A slice's newest minute points may be 65 minutes old, so an hour bucket
/// is complete once its end is that long past: each hour run covers the
/// last three hours, and the last run over a bucket comes two hours after
/// the bucket ends.
pub const ROLLUP_LEVELS: [Rollup; 2] = [
    Rollup { measurement: "checks_1m", minutes: 1, every: 64, covers: 65, from: None },
    Rollup { measurement: "checks_1h", minutes: 60, every: 60, covers: 180, from: Some("checks_1m") },
];

impl Rollup {
    /// The `SELECT ... INTO` that makes this rollup in `database` from its
    /// source, over the points `condition` (InfluxQL) selects, or all.
    pub fn select_into(&self, database: &str, condition: Option<&str>) -> String {
        let db = quote_ident(database);
        let in_rollups = |measurement: &str| format!("{db}.{}.{}", quote_ident(ROLLUPS), quote_ident(measurement));
        let (source, checks) = match self.from {
            None => (quote_ident(MEASUREMENT), "count(\"up\")"),
            Some(rollup) => (in_rollups(rollup), "sum(\"checks\")"),
        };
        let condition = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        format!(
            "SELECT mean(\"response_ms\") AS \"response_ms\", min(\"up\") AS \"up\", \
             max(\"status_code\") AS \"status_code\", {checks} AS \"checks\" \
             INTO {} FROM {source}{condition} GROUP BY time({}m), *",
            in_rollups(self.measurement),
            self.minutes
        )
    }

    /// The seconds since the epoch a run at `now` (seconds) rolls up,
    /// from and before: the buckets that ended in the last `covers`
    /// minutes.
    fn window(&self, now: i64) -> (i64, i64) {
        let bucket = i64::from(self.minutes) * 60;
        let end = now.div_euclid(bucket) * bucket;
        (end - i64::from(self.covers) * 60, end)
    }

    /// Runs a day, of all its slices.
    pub const fn runs_a_day(&self) -> usize {
        (ROLLUP_SLICES * 24 * 60 / self.every) as usize
    }

    /// The slice due in `turn` ([`ROLLUP_TURN_SECS`] since the epoch), if
    /// any: slice `s` runs `s * turns / ROLLUP_SLICES` turns into each
    /// period of `turns`.
    pub fn due(&self, turn: i64) -> Option<u32> {
        let turns = self.turns();
        let into = u32::try_from(turn.rem_euclid(i64::from(turns))).ok()?;
        (0..ROLLUP_SLICES).find(|slice| self.offset(*slice) == into)
    }

    /// How many turns into each period `slice` is due.
    fn offset(&self, slice: u32) -> u32 {
        slice * self.turns() / ROLLUP_SLICES
    }

    /// The turns from `from` and before `to` in which `slice` is due
    /// ([`Self::due`]), oldest first.
    pub fn due_turns(&self, slice: u32, from: i64, to: i64) -> impl Iterator<Item = i64> {
        let turns = i64::from(self.turns());
        let first = from + (i64::from(self.offset(slice)) - from).rem_euclid(turns);
        (first..to).step_by(usize::try_from(turns).unwrap_or(1))
    }

    /// Turns in a period.
    fn turns(&self) -> u32 {
        let per_minute = u32::try_from(60 / ROLLUP_TURN_SECS).unwrap_or(1);
        self.every * per_minute
    }

    /// The statement rolling up `slice` at `now`: its websites' buckets that
    /// ended in the last `covers` minutes (the bucket still open is left
    /// for a later run).
    pub fn slice_into(&self, database: &str, slice: u32, now: DateTime<Utc>) -> String {
        let (start, end) = self.window(now.timestamp());
        // The last hex digit, and the one before within the slice's
        // quarter of the sixteen (`[4-7]`, `[8-b]`, ...). InfluxDB tries the
        // pattern on every website's id, and one anchored at the start (an
        // id is 36 characters) is tried once, not from each position in
        // turn: 30% less time at 56,000 websites (90 ms against 64 a run).
        let (last, quarter) = (slice % 16, (slice / 16) % 4);
        let condition = format!(
            "\"website_id\" =~ /^.{{34}}[{:x}-{:x}]{last:x}$/ AND time >= {start}s AND time < {end}s",
            quarter * 4,
            quarter * 4 + 3
        );
        self.select_into(database, Some(&condition))
    }
}

/// The rollup a series over `days` reads: none for a day (every check), the
/// minute one up to a week, the hour one beyond.
pub fn rollup_for(days: u32) -> Option<Rollup> {
    match days {
        0..=1 => None,
        2..=7 => Some(ROLLUP_LEVELS[0]),
        _ => Some(ROLLUP_LEVELS[1]),
    }
}

/// Why a request to InfluxDB failed, by kind.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// No answer: connection refused or dropped, timeout.
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The server answered with an error status (bad request, auth, 5xx).
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// The server ran the query but a statement of it failed.
    #[error("statement failed: {0}")]
    Statement(String),
    /// The answer was not the JSON the v1 API sends.
    #[error("unexpected response: {0}")]
    Decode(String),
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
        // Building a client only fails when TLS cannot be initialised; the
        // default client has the same settings minus the timeouts.
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
            token: token.map(str::to_owned),
            retention_days: 0,
            rolled: Arc::default(),
        }
    }

    /// Keeps raw points `days` days (0: for ever); the rollups are kept for
    /// ever.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// Creates the database if it does not exist (a no-op on 1.x when it
    /// does; with 2.x/3.x the bucket is created by the operator), sets the
    /// raw points' retention and creates the rollups' retention policy (kept
    /// for ever); the continuous queries earlier versions made the rollups
    /// with are dropped ([`Influx::roll_up`] makes them now). A server
    /// without retention policies (the v1 compatibility API of 2.x/3.x)
    /// keeps raw points only; that is logged.
    pub async fn ensure_database(&self) -> Result<()> {
        let db = quote_ident(&self.database);
        self.execute(&format!("CREATE DATABASE {db}")).await?;
        let duration = if self.retention_days == 0 { "INF".to_owned() } else { format!("{}d", self.retention_days) };
        for statement in [
            format!("ALTER RETENTION POLICY {} ON {db} DURATION {duration}", quote_ident(RAW_POLICY)),
            format!("CREATE RETENTION POLICY {} ON {db} DURATION INF REPLICATION 1", quote_ident(ROLLUPS)),
        ] {
            match self.execute(&statement).await {
                Ok(_) => {}
                // Created by an earlier start.
                Err(InfluxError::Statement(e)) if e.contains("already exists") => {}
                Err(e) => tracing::warn!(error = %e, statement, "InfluxDB keeps raw points only"),
            }
        }
        let queries = self.continuous_queries().await.unwrap_or_default();
        for rollup in ROLLUP_LEVELS {
            if queries.iter().any(|name| name == rollup.measurement) {
                let name = quote_ident(rollup.measurement);
                if let Err(e) = self.execute(&format!("DROP CONTINUOUS QUERY {name} ON {db}")).await {
                    tracing::warn!(error = %e, rollup = rollup.measurement, "the continuous query of an earlier version stays");
                }
            }
        }
        Ok(())
    }

    /// The names of this database's continuous queries (none on a server
    /// without them).
    pub async fn continuous_queries(&self) -> Result<Vec<String>> {
        let series = self.select("SHOW CONTINUOUS QUERIES").await?;
        Ok(series
            .iter()
            .filter(|s| s.name == self.database)
            .flat_map(|s| s.rows())
            .filter_map(|row| row.text("name"))
            .collect())
    }

    /// The bytes this database's shards keep on disk, TSM files and
    /// write-ahead log, as the server counts them (`SHOW STATS`): whatever
    /// directories it was started with.
    pub async fn disk_bytes(&self) -> Result<u64> {
        let stats = self.select("SHOW STATS").await?;
        Ok(stats
            .iter()
            .filter(|s| s.name == "shard" && s.tags.get("database") == Some(&self.database))
            .flat_map(|s| s.rows())
            .filter_map(|row| row.integer("diskBytes"))
            .map(|bytes| u64::try_from(bytes).unwrap_or(0))
            .sum())
    }

    /// The server's process id, as it tells it (`SHOW DIAGNOSTICS`).
    pub async fn server_pid(&self) -> Result<Option<i32>> {
        let diagnostics = self.select("SHOW DIAGNOSTICS").await?;
        let pid =
            diagnostics.iter().filter(|s| s.name == "system").flat_map(|s| s.rows()).find_map(|row| row.integer("PID"));
        Ok(pid.and_then(|pid| i32::try_from(pid).ok()))
    }

    /// Rolls up `slice` of `rollup`'s websites at `now` ([`Rollup::slice_into`]).
    /// Writing a bucket again overwrites it, so a run repeated (two
    /// projectors, a restart) changes nothing.
    pub async fn roll_up(&self, rollup: Rollup, slice: u32, now: DateTime<Utc>) -> Result<()> {
        self.execute_within(&rollup.slice_into(&self.database, slice, now), ROLLUP_TIMEOUT).await?;
        Ok(())
    }

    pub async fn write(&self, checks: &[&CheckCompleted]) -> Result<()> {
        if checks.is_empty() {
            return Ok(());
        }
        let mut body = String::with_capacity(checks.len() * 160);
        for check in checks {
            body.push_str(&line(check));
            body.push('\n');
        }
        let request = self
            .request(reqwest::Method::POST, "write")
            .query(&[("db", self.database.as_str()), ("precision", "u")])
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        let response = request.send().await.map_err(InfluxError::Transport)?;
        match check_status(response).await {
            Ok(_) => Ok(()),
            // Results older than the raw points' retention (a replay of an
            // old CHECKS history): dropped on purpose, the rest is written.
            Err(InfluxError::Status { status: 400, message }) if message.contains("beyond retention policy") => {
                tracing::debug!(message, "points older than the retention dropped");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops every raw point (before a replay of CHECKS); the rollups stay.
    /// The raw points are all the default retention policy holds, so its
    /// shards are dropped: files removed, where `DROP MEASUREMENT` rewrites
    /// every file and index (minutes for many websites). A server that
    /// refuses (a user without the right) gets `DROP MEASUREMENT`.
    pub async fn drop_checks(&self) -> Result<()> {
        let shards = self.select("SHOW SHARDS").await?;
        let raw = shards.iter().filter(|s| s.name == self.database).flat_map(Series::rows).filter_map(|row| {
            (row.text("retention_policy").as_deref() == Some(RAW_POLICY)).then(|| row.integer("id")).flatten()
        });
        let mut dropped = Ok(());
        for id in raw.collect::<Vec<_>>() {
            dropped = self.execute(&format!("DROP SHARD {id}")).await.map(drop);
            if dropped.is_err() {
                break;
            }
        }
        match dropped {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "dropping the raw points' shards failed; dropping the measurement");
                self.drop_measurement().await
            }
        }
    }

    /// Drops the raw points' measurement. Some versions refuse to drop a
    /// measurement that does not exist, so it is looked up first.
    async fn drop_measurement(&self) -> Result<()> {
        let show = format!("SHOW MEASUREMENTS WITH MEASUREMENT = {}", quote_ident(MEASUREMENT));
        let exists = self.select(&show).await?.into_iter().any(|s| !s.values.is_empty());
        if exists {
            self.execute_within(&format!("DROP MEASUREMENT {}", quote_ident(MEASUREMENT)), DROP_TIMEOUT).await?;
        }
        Ok(())
    }

    /// The response-time series of a website over the last `days`, oldest
    /// first: every check for one day; for longer windows one point per
    /// `days` minutes (at most 1,440 per region: mean response time, down
    /// if any check in it failed), read from the rollup of [`rollup_for`]
    /// as far as it reaches and from the raw points after that (a rollup
    /// is written when its interval ends, and not for times before it was
    /// created). The rollup's points, once read, answer for
    /// [`ROLLED_FRESH`] in this process; each call reads the raw points
    /// after them.
    pub async fn series(&self, website_id: Uuid, region: Option<&RegionName>, days: u32) -> Result<Vec<SeriesPoint>> {
        let filter = filter(website_id, region, days);
        if days <= 1 {
            let query = format!(
                "SELECT \"response_ms\", \"up\", \"status_code\" FROM \"{MEASUREMENT}\" WHERE {filter} GROUP BY \"region\""
            );
            return self.points(&query).await;
        }
        let aggregate =
            "mean(\"response_ms\") AS \"response_ms\", min(\"up\") AS \"up\", max(\"status_code\") AS \"status_code\"";
        let mut points = Vec::new();
        let mut raw_filter = filter.clone();
        if let Some(rollup) = rollup_for(days) {
            let key = (website_id, region.map(ToString::to_string), days);
            let rolled = match self.rolled.get(&key) {
                Some(rolled) => Some(rolled),
                None => {
                    let rolled = self.rolled(&filter, rollup, days).await;
                    if let Some(rolled) = &rolled {
                        self.rolled.put(key, rolled.clone());
                    }
                    rolled
                }
            };
            if let Some((rolled, covered)) = rolled {
                // A bucket is in the window while its end is.
                let width = i64::from(days) * 60_000;
                let from = (Utc::now() - chrono::Duration::days(i64::from(days))).timestamp_millis() - width;
                points = rolled.iter().filter(|p| p.time.timestamp_millis() > from).cloned().collect();
                let _ = write!(raw_filter, " AND time >= {covered}ms");
            }
        }
        let query = format!(
            "SELECT {aggregate} FROM \"{MEASUREMENT}\" WHERE {raw_filter} GROUP BY time({days}m), \"region\" fill(none)"
        );
        points.extend(self.points(&query).await?);
        points.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.region.cmp(&b.region)));
        // A bucket across the rollup's end has a point from each side.
        points.dedup_by(|later, kept| {
            let same = later.time == kept.time && later.region == kept.region;
            if same {
                kept.response_ms = match (kept.response_ms, later.response_ms) {
                    (Some(a), Some(b)) => Some((a + b) / 2.0),
                    (a, b) => a.or(b),
                };
                kept.up &= later.up;
                kept.status_code = kept.status_code.max(later.status_code);
            }
            same
        });
        Ok(points)
    }

    /// The points of `rollup` matching `filter` in buckets of `days`
    /// minutes, and the time (ms) up to which the rollup covers them; `None`
    /// without rollup points.
    async fn rolled(&self, filter: &str, rollup: Rollup, days: u32) -> Option<Rolled> {
        let from =
            format!("{}.{}.{}", quote_ident(&self.database), quote_ident(ROLLUPS), quote_ident(rollup.measurement));
        // The rollup's points as stored, put into buckets here: a
        // `GROUP BY time()` over them costs InfluxDB several times what
        // reading them does. Without rollups (none written yet, or a server
        // without retention policies, which refuses the statement) every
        // point comes from the raw ones; were InfluxDB away, the raw query
        // says so.
        let query =
            format!("SELECT \"response_ms\", \"up\", \"status_code\" FROM {from} WHERE {filter} GROUP BY \"region\"");
        let rolled = self.points(&query).await.map_err(|e| tracing::debug!(error = %e, "no rollup to read")).ok()?;
        let newest = rolled.iter().map(|p| p.time).max()?;
        let covered = newest.timestamp_millis() + i64::from(rollup.minutes) * 60_000;
        Some((Arc::new(buckets(rolled, days)), covered))
    }

    /// The points a series query answers, oldest first.
    async fn points(&self, query: &str) -> Result<Vec<SeriesPoint>> {
        let mut points = Vec::new();
        for series in self.select(query).await? {
            let region = series.tags.get("region").cloned().unwrap_or_default();
            for row in series.rows() {
                let Some(time) = row.time() else {
                    return Err(InfluxError::Decode("a row without a time".into()).into());
                };
                points.push(SeriesPoint {
                    time,
                    region: region.clone(),
                    response_ms: row.number("response_ms"),
                    up: row.number("up").is_some_and(|u| u >= 1.0),
                    status_code: row.number("status_code").and_then(|s| u16::try_from(s as i64).ok()),
                });
            }
        }
        points.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.region.cmp(&b.region)));
        Ok(points)
    }

    /// The checks of a website scheduled since `since` (of `region` only,
    /// if given), each region's in scheduled order, regions one after the
    /// other. Read a page at a time, so no server row limit cuts them.
    pub async fn checks(
        &self,
        website_id: Uuid,
        region: Option<&RegionName>,
        since: DateTime<Utc>,
    ) -> Result<Vec<CheckCompleted>> {
        const PAGE: usize = 10_000;
        let regions = match region {
            Some(region) => vec![region.clone()],
            None => {
                let query = format!(
                    "SHOW TAG VALUES FROM \"{MEASUREMENT}\" WITH KEY = \"region\" WHERE \"website_id\" = '{website_id}'"
                );
                let mut regions = Vec::new();
                for series in self.select(&query).await? {
                    for row in series.rows() {
                        // A tag value that is not a region name was not written here.
                        if let Some(region) = row.text("value").and_then(|v| RegionName::parse(&v).ok()) {
                            regions.push(region);
                        }
                    }
                }
                regions
            }
        };
        let mut checks = Vec::new();
        for region in regions {
            let mut after = since.timestamp_micros() - 1;
            loop {
                // Region names are [a-z0-9-] only, safe inside quotes.
                let query = format!(
                    "SELECT \"up\", \"status_code\", \"response_ms\", \"cause\", \"message\", \"lateness_ms\", \"lateness_us\" \
                     FROM \"{MEASUREMENT}\" WHERE \"website_id\" = '{website_id}' AND \"region\" = '{region}' \
                     AND time > {after}u ORDER BY time LIMIT {PAGE}"
                );
                let mut rows = 0;
                for series in self.select_in(&query, "u").await? {
                    for row in series.rows() {
                        rows += 1;
                        let Some(after_us) = row.integer("time") else {
                            return Err(InfluxError::Decode("a row without a time".into()).into());
                        };
                        after = after_us;
                        let scheduled_at = DateTime::from_timestamp_micros(after_us).unwrap_or_default();
                        let lateness = row
                            .integer("lateness_us")
                            .or_else(|| row.integer("lateness_ms").map(|ms| ms * 1000))
                            .unwrap_or(0);
                        checks.push(CheckCompleted {
                            website_id,
                            region: region.clone(),
                            scheduled_at,
                            started_at: scheduled_at + chrono::Duration::microseconds(lateness),
                            up: row.integer("up").is_some_and(|up| up >= 1),
                            status_code: row.integer("status_code").and_then(|c| u16::try_from(c).ok()),
                            response_ms: row.integer("response_ms").and_then(|r| u32::try_from(r).ok()),
                            cause: row.get("cause").and_then(|c| serde_json::from_value(c.clone()).ok()),
                            message: row.text("message"),
                            cert_not_after: None,
                        });
                    }
                }
                if rows < PAGE {
                    break;
                }
            }
        }
        Ok(checks)
    }

    /// How many checks InfluxDB holds of `websites` (a count over every
    /// website would visit every series, one per website and region).
    pub async fn count_checks(&self, websites: &[Uuid]) -> Result<u64> {
        if websites.is_empty() {
            return Ok(0);
        }
        let any: Vec<String> = websites.iter().map(|id| format!("\"website_id\" = '{id}'")).collect();
        let query = format!("SELECT count(\"up\") AS n FROM \"{MEASUREMENT}\" WHERE {}", any.join(" OR "));
        let series = self.select(&query).await?;
        Ok(series.iter().flat_map(Series::rows).filter_map(|r| r.integer("n")).map(|n| n.max(0) as u64).sum())
    }

    /// p50/p95/p99 of the response time of a website over the last `days`.
    pub async fn percentiles(&self, website_id: Uuid, region: Option<&RegionName>, days: u32) -> Result<Percentiles> {
        let filter = filter(website_id, region, days);
        let query = format!(
            "SELECT percentile(\"response_ms\", 50) AS p50, percentile(\"response_ms\", 95) AS p95, \
             percentile(\"response_ms\", 99) AS p99, count(\"response_ms\") AS samples FROM \"{MEASUREMENT}\" WHERE {filter}"
        );
        let series = self.select(&query).await?;
        let row = series.iter().flat_map(Series::rows).next();
        Ok(row.map_or_else(Percentiles::default, |r| Percentiles {
            p50: r.number("p50"),
            p95: r.number("p95"),
            p99: r.number("p99"),
            samples: r.number("samples").map_or(0, |n| n as u64),
        }))
    }

    fn request(&self, method: reqwest::Method, endpoint: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}/{endpoint}", self.url));
        match &self.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, format!("Token {token}")),
            None => request,
        }
    }

    /// Runs a statement that changes something (POST, as the API asks).
    async fn execute(&self, statement: &str) -> Result<Vec<Series>, InfluxError> {
        self.execute_within(statement, REQUEST_TIMEOUT).await
    }

    /// [`Self::execute`] with a timeout of its own.
    async fn execute_within(&self, statement: &str, timeout: Duration) -> Result<Vec<Series>, InfluxError> {
        let request = self
            .request(reqwest::Method::POST, "query")
            .timeout(timeout)
            .query(&[("db", self.database.as_str())])
            .form(&[("q", statement)]);
        query_response(request).await
    }

    /// Runs a read-only query; times come back as epoch milliseconds.
    async fn select(&self, query: &str) -> Result<Vec<Series>, InfluxError> {
        self.select_in(query, "ms").await
    }

    /// Runs a read-only query; times come back as epochs in `unit`.
    async fn select_in(&self, query: &str, unit: &str) -> Result<Vec<Series>, InfluxError> {
        let request = self.request(reqwest::Method::GET, "query").query(&[
            ("db", self.database.as_str()),
            ("epoch", unit),
            ("q", query),
        ]);
        query_response(request).await
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

fn filter(website_id: Uuid, region: Option<&RegionName>, days: u32) -> String {
    let mut filter = format!("\"website_id\" = '{website_id}' AND time > now() - {days}d");
    if let Some(region) = region {
        // Region names are [a-z0-9-] only, safe inside quotes.
        let _ = write!(filter, " AND \"region\" = '{region}'");
    }
    filter
}

/// `points` in buckets of `minutes` minutes, as InfluxDB's `GROUP BY
/// time(<minutes>m), "region" fill(none)` makes them: aligned on the epoch,
/// the mean response time (of the points that have one), down if any point
/// is, the highest status code; oldest first, then by region.
pub fn buckets(points: Vec<SeriesPoint>, minutes: u32) -> Vec<SeriesPoint> {
    let width = i64::from(minutes.max(1)) * 60_000;
    // Sum and number of response times, all up, highest code.
    type Bucket = (f64, u32, bool, Option<u16>);
    let mut buckets: std::collections::BTreeMap<(i64, String), Bucket> = std::collections::BTreeMap::new();
    for point in points {
        let start = point.time.timestamp_millis().div_euclid(width) * width;
        let (sum, count, up, status_code) = buckets.entry((start, point.region)).or_insert((0.0, 0, true, None));
        if let Some(ms) = point.response_ms {
            *sum += ms;
            *count += 1;
        }
        *up &= point.up;
        *status_code = (*status_code).max(point.status_code);
    }
    buckets
        .into_iter()
        .filter_map(|((start, region), (sum, count, up, status_code))| {
            Some(SeriesPoint {
                time: DateTime::from_timestamp_millis(start)?,
                region,
                response_ms: (count > 0).then(|| sum / f64::from(count)),
                up,
                status_code,
            })
        })
        .collect()
}

/// The line-protocol line of one check (no trailing newline).
pub fn line(check: &CheckCompleted) -> String {
    let lateness = check.started_at - check.scheduled_at;
    let lateness_us = lateness.num_microseconds().unwrap_or(lateness.num_milliseconds().saturating_mul(1000));
    let mut fields = vec![("up", Field::Integer(i64::from(check.up))), ("lateness_us", Field::Integer(lateness_us))];
    if let Some(ms) = check.response_ms {
        fields.push(("response_ms", Field::Integer(i64::from(ms))));
    }
    if let Some(code) = check.status_code {
        fields.push(("status_code", Field::Integer(i64::from(code))));
    }
    if let Some(cause) = check.cause {
        fields.push(("cause", Field::Text(cause.as_str().to_owned())));
    }
    if let Some(message) = &check.message {
        fields.push(("message", Field::Text(message.clone())));
    }
    encode_line(
        MEASUREMENT,
        // In key order, which InfluxDB would otherwise sort each line into.
        &[("region", check.region.as_str()), ("website_id", &check.website_id.to_string())],
        &fields,
        check.scheduled_at.timestamp_micros(),
    )
}

/// A field value of the line protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Integer(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

/// One line of the line protocol: `measurement,tags fields timestamp`,
/// every name and value escaped. Tags are written in the order given
/// (InfluxDB sorts them itself, so lines written in key order are parsed
/// faster); `fields` must not be empty.
pub fn encode_line(measurement: &str, tags: &[(&str, &str)], fields: &[(&str, Field)], timestamp: i64) -> String {
    let mut line = String::with_capacity(128);
    escape_into(&mut line, measurement, &[',', ' ']);
    for (key, value) in tags {
        // An empty tag value is not allowed; leaving the tag out means the same.
        if value.is_empty() {
            continue;
        }
        line.push(',');
        escape_into(&mut line, key, &[',', '=', ' ']);
        line.push('=');
        escape_into(&mut line, value, &[',', '=', ' ']);
    }
    for (i, (key, value)) in fields.iter().enumerate() {
        line.push(if i == 0 { ' ' } else { ',' });
        escape_into(&mut line, key, &[',', '=', ' ']);
        line.push('=');
        match value {
            Field::Integer(n) => {
                let _ = write!(line, "{n}i");
            }
            Field::Float(x) => {
                let _ = write!(line, "{x:?}");
            }
            Field::Bool(b) => line.push_str(if *b { "true" } else { "false" }),
            Field::Text(text) => {
                line.push('"');
                escape_into(&mut line, text, &['"', '\\']);
                line.push('"');
            }
        }
    }
    let _ = write!(line, " {timestamp}");
    line
}

/// Appends `text` with a backslash before each of `special`; line breaks,
/// which end a line whatever precedes them, become spaces (escaped where
/// spaces are).
fn escape_into(out: &mut String, text: &str, special: &[char]) {
    for c in text.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One series of a query result.
#[derive(Debug, Deserialize)]
struct Series {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.values.iter().map(move |values| Row { columns: &self.columns, values })
    }
}

struct Row<'a> {
    columns: &'a [String],
    values: &'a [serde_json::Value],
}

impl Row<'_> {
    fn get(&self, column: &str) -> Option<&serde_json::Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values.get(i)
    }

    fn number(&self, column: &str) -> Option<f64> {
        self.get(column).and_then(serde_json::Value::as_f64)
    }

    fn integer(&self, column: &str) -> Option<i64> {
        self.get(column).and_then(serde_json::Value::as_i64)
    }

    fn text(&self, column: &str) -> Option<String> {
        self.get(column).and_then(serde_json::Value::as_str).map(str::to_owned)
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.get("time")?.as_i64()?)
    }
}

#[derive(Debug, Deserialize)]
struct QueryResponse {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

/// Sends a query and returns the series of all its statements, or the
/// first statement's error.
async fn query_response(request: reqwest::RequestBuilder) -> Result<Vec<Series>, InfluxError> {
    let response = check_status(request.send().await.map_err(InfluxError::Transport)?).await?;
    let body = response.bytes().await.map_err(InfluxError::Transport)?;
    let parsed: QueryResponse = serde_json::from_slice(&body).map_err(|e| InfluxError::Decode(e.to_string()))?;
    if let Some(error) = parsed.error {
        return Err(InfluxError::Statement(error));
    }
    let mut series = Vec::new();
    for result in parsed.results {
        if let Some(error) = result.error {
            return Err(InfluxError::Statement(error));
        }
        series.extend(result.series);
    }
    Ok(series)
}

/// The response when its status is a success; its error message otherwise
/// (the v1 API answers `{"error": "..."}`).
async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, InfluxError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(500).collect());
    Err(InfluxError::Status { status: status.as_u16(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slice_of_a_rollup_runs_once_a_period_and_never_two_in_a_turn() {
        for rollup in ROLLUP_LEVELS {
            let period = i64::from(rollup.turns());
            assert_eq!(period * ROLLUP_TURN_SECS, i64::from(rollup.every) * 60);
            for start in [0, 7, 116_000_000] {
                let mut slices: Vec<u32> = (start..start + period).filter_map(|turn| rollup.due(turn)).collect();
                slices.sort_unstable();
                assert_eq!(slices, (0..ROLLUP_SLICES).collect::<Vec<_>>(), "{}", rollup.measurement);
            }
            assert!(rollup.covers > rollup.every, "a bucket is always covered by a run after it ends");
            let day = 24 * 3600 / ROLLUP_TURN_SECS;
            assert_eq!((0..day).filter(|turn| rollup.due(*turn).is_some()).count(), rollup.runs_a_day());
        }
    }

    #[test]
    fn an_hour_is_rolled_up_last_after_its_minutes_are() {
        let [minutes, hours] = ROLLUP_LEVELS;
        // The projector runs a turn's rollups 5 s into it.
        let at = |turn: i64| turn * ROLLUP_TURN_SECS + 5;
        // Two days of turns from an arbitrary one; in a turn with both, the
        // minutes run first.
        let turns: Vec<i64> = (116_000_000..116_000_000 + 2 * 24 * 3600 / ROLLUP_TURN_SECS).collect();
        for slice in 0..ROLLUP_SLICES {
            let runs = |rollup: Rollup| -> Vec<i64> {
                turns.iter().filter(|turn| rollup.due(**turn) == Some(slice)).map(|turn| at(*turn)).collect()
            };
            let (minute_runs, hour_runs) = (runs(minutes), runs(hours));
            // Every hour of the second day (the first has runs before it).
            let second_day = at(turns[0]) / 3600 * 3600 + 25 * 3600;
            for end in (second_day..second_day + 20 * 3600).step_by(3600) {
                let last = hour_runs.iter().filter(|t| {
                    let (from, to) = hours.window(**t);
                    from <= end - 3600 && end <= to
                });
                let Some(&last) = last.max() else { panic!("slice {slice}: the hour ending {end} is never rolled up") };
                // The minute points made by then, as far as they reach.
                let made = minute_runs.iter().filter(|t| **t <= last).map(|t| minutes.window(*t).1).max();
                assert!(made >= Some(end), "slice {slice}: the hour ending {end} rolled up last at {last}");
            }
        }
    }

    #[test]
    fn the_turns_a_slice_is_due_in_are_the_ones_due_names_it_in() {
        let from = 116_000_003;
        let to = from + 3 * 24 * 3600 / ROLLUP_TURN_SECS;
        for rollup in ROLLUP_LEVELS {
            for slice in 0..ROLLUP_SLICES {
                let expected: Vec<i64> = (from..to).filter(|turn| rollup.due(*turn) == Some(slice)).collect();
                assert_eq!(
                    rollup.due_turns(slice, from, to).collect::<Vec<_>>(),
                    expected,
                    "{} {slice}",
                    rollup.measurement
                );
            }
            assert_eq!(rollup.due_turns(0, from, from).count(), 0);
        }
    }

    #[test]
    fn a_slice_covers_the_buckets_ended_in_its_window_of_the_websites_ending_in_its_digits() {
        let now = DateTime::from_timestamp(1_700_000_000 + 61, 0).unwrap_or_default();
        let minute = ROLLUP_LEVELS[0].slice_into("db", 10, now);
        let end = now.timestamp() / 60 * 60;
        assert!(
            minute.contains(&format!(
                "\"website_id\" =~ /^.{{34}}[0-3]a$/ AND time >= {}s AND time < {end}s",
                end - 65 * 60
            )),
            "{minute}"
        );
        assert!(minute.contains("INTO \"db\".\"rollups\".\"checks_1m\" FROM \"checks\""), "{minute}");
        let hour = ROLLUP_LEVELS[1].slice_into("db", 16 * 2 + 15, now);
        let end = now.timestamp() / 3600 * 3600;
        assert!(
            hour.contains(&format!("/^.{{34}}[8-b]f$/ AND time >= {}s AND time < {end}s", end - 180 * 60)),
            "{hour}"
        );
        assert!(hour.contains("FROM \"db\".\"rollups\".\"checks_1m\""), "{hour}");
    }

    #[test]
    fn every_website_is_in_the_one_slice_whose_condition_matches_its_id() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        // The pattern each slice's statement selects its websites by.
        let patterns: Vec<regex::Regex> = (0..ROLLUP_SLICES)
            .map(|slice| {
                let statement = ROLLUP_LEVELS[0].slice_into("db", slice, now);
                let pattern = statement.split("=~ /").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("");
                regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{statement}: {e}"))
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let id = Uuid::now_v7();
            let text = id.to_string();
            let matching: Vec<u32> =
                (0..ROLLUP_SLICES).zip(&patterns).filter(|(_, p)| p.is_match(&text)).map(|(s, _)| s).collect();
            assert_eq!(matching, [rollup_slice(id)], "{id}");
            seen.insert(rollup_slice(id));
        }
        assert_eq!(seen.len(), 64, "2,000 random ids fall in every slice");
    }

    fn point(minute: i64, region: &str, response_ms: Option<f64>, up: bool, status_code: Option<u16>) -> SeriesPoint {
        SeriesPoint {
            time: DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
            region: region.into(),
            response_ms,
            up,
            status_code,
        }
    }

    #[test]
    fn buckets_are_aligned_on_the_epoch_and_hold_the_mean_the_worst_status_and_the_highest_code() {
        let points = vec![
            point(90, "eu", Some(10.0), true, Some(200)),
            point(120, "eu", Some(30.0), false, Some(503)),
            point(150, "eu", None, true, None),
            point(100, "us", Some(7.0), true, Some(200)),
            point(179, "eu", Some(5.0), true, Some(200)),
            point(180, "eu", Some(1.0), true, Some(200)),
        ];
        let buckets = buckets(points, 90);
        assert_eq!(
            buckets,
            vec![
                point(90, "eu", Some(15.0), false, Some(503)),
                point(90, "us", Some(7.0), true, Some(200)),
                point(180, "eu", Some(1.0), true, Some(200)),
            ]
        );
    }

    #[test]
    fn a_check_becomes_one_line_with_integer_fields_and_a_microsecond_timestamp() {
        let scheduled = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default();
        let check = CheckCompleted {
            website_id: Uuid::nil(),
            region: RegionName::parse("eu-west").unwrap_or_else(|e| panic!("{e}")),
            scheduled_at: scheduled,
            started_at: scheduled + chrono::Duration::milliseconds(7),
            up: false,
            status_code: Some(503),
            response_ms: Some(42),
            cause: Some(events::FailureCause::HttpStatus),
            message: Some("refused".into()),
            cert_not_after: None,
        };
        assert_eq!(
            line(&check),
            "checks,region=eu-west,website_id=00000000-0000-0000-0000-000000000000 \
             up=0i,lateness_us=7000i,response_ms=42i,status_code=503i,cause=\"http_status\",\
             message=\"refused\" 1700000000123000"
        );
    }

    #[test]
    fn spaces_and_commas_in_a_measurement_are_escaped() {
        let line = encode_line("my checks,v2", &[], &[("x", Field::Integer(1))], 5);
        assert_eq!(line, r"my\ checks\,v2 x=1i 5");
    }

    #[test]
    fn spaces_commas_and_equals_signs_in_tags_and_field_keys_are_escaped() {
        let line = encode_line("m", &[("a key,x=y", "a value,b=c")], &[("f =,", Field::Bool(true))], 1);
        assert_eq!(line, r"m,a\ key\,x\=y=a\ value\,b\=c f\ \=\,=true 1");
    }

    #[test]
    fn quotes_and_backslashes_in_string_fields_are_escaped_and_nothing_else_is() {
        let line = encode_line("m", &[], &[("s", Field::Text(r#"say "hi", a=b \o/"#.into()))], 1);
        assert_eq!(line, r#"m s="say \"hi\", a=b \\o/" 1"#);
    }

    #[test]
    fn line_breaks_never_end_a_line_early() {
        let line = encode_line("m", &[("t", "a\nb")], &[("s", Field::Text("x\r\ny".into()))], 1);
        assert_eq!(line, "m,t=a\\ b s=\"x  y\" 1");
    }

    #[test]
    fn empty_tag_values_are_left_out_and_floats_keep_a_decimal_point() {
        let line = encode_line("m", &[("t", "")], &[("a", Field::Float(2.0)), ("b", Field::Float(0.25))], 9);
        assert_eq!(line, "m a=2.0,b=0.25 9");
    }

    #[test]
    fn identifiers_in_queries_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird\db"#), r#""we\"ird\\db""#);
    }
}
