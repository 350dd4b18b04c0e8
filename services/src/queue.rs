//! The Redis keys shared by the scheduler (cron) and the regional workers,
//! and the shape of one queued check. Redis holds only operational state:
//! all of it can be rebuilt from the Postgres projection.
//!
//! - `site:<id>` hash: url, timeout_ms, interval_ms, offset_ms, regions,
//!   check (the website's check settings as JSON), paused
//!   (comma-separated), seq (MONITOR sequence of the last event applied),
//!   removed (tombstone, so a late replay of an older event cannot revive it)
//! - `due:<region>` sorted set: website id by next due time (unix ms)
//! - `checks:<region>` stream: due checks, read by the `workers` group
//! - `checks:dead:<region>` stream: checks that failed too many deliveries
//! - `regions` set: every region name
//! - `regions:removed` set: regions removed (RegionRemoved) and not added
//!   again; their workers stop checking, nothing is scheduled in them
//! - `cron:offset`: the MONITOR sequence the schedule reflects

use chrono::{DateTime, TimeZone, Utc};
use events::RegionName;
use redis::Value;
use std::collections::HashMap;
use uuid::Uuid;

pub const GROUP: &str = "workers";
pub const REGIONS_KEY: &str = "regions";
pub const REMOVED_REGIONS_KEY: &str = "regions:removed";
pub const OFFSET_KEY: &str = "cron:offset";

pub fn site_key(id: Uuid) -> String {
    format!("site:{id}")
}

pub fn due_key(region: &RegionName) -> String {
    format!("due:{region}")
}

pub fn checks_key(region: &RegionName) -> String {
    format!("checks:{region}")
}

pub fn dead_key(region: &RegionName) -> String {
    format!("checks:dead:{region}")
}

/// Whether `region` was removed (and not added again): its workers idle.
pub async fn is_region_removed(
    conn: &mut redis::aio::ConnectionManager,
    region: &RegionName,
) -> redis::RedisResult<bool> {
    redis::AsyncCommands::sismember(conn, REMOVED_REGIONS_KEY, region.as_str()).await
}

/// One due check as queued in `checks:<region>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub website_id: Uuid,
    pub url: String,
    pub timeout_ms: u32,
    /// When the check was due (unix ms); identifies it with the website and
    /// region.
    pub scheduled_ms: i64,
    /// How to check (`events::check::CheckSpec` as JSON; empty: the
    /// default, as queued by older builds).
    pub check: String,
}

impl Job {
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.scheduled_ms).single().unwrap_or_default()
    }

    /// Reads a job from a stream entry's fields.
    pub fn from_fields(fields: &HashMap<String, Value>) -> Result<Job, String> {
        let text = |name: &str| -> Result<String, String> {
            match fields.get(name) {
                Some(value) => redis::from_redis_value::<String>(value).map_err(|e| format!("field {name}: {e}")),
                None => Err(format!("field {name} is missing")),
            }
        };
        Ok(Job {
            website_id: Uuid::parse_str(&text("id")?).map_err(|e| format!("field id: {e}"))?,
            url: text("url")?,
            timeout_ms: text("timeout_ms")?.parse().map_err(|e| format!("field timeout_ms: {e}"))?,
            scheduled_ms: text("scheduled_ms")?.parse().map_err(|e| format!("field scheduled_ms: {e}"))?,
            check: text("check").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_read_back_from_its_stream_fields() {
        let id = Uuid::now_v7();
        let fields: HashMap<String, Value> = [
            ("id", id.to_string()),
            ("url", "https://example.com/".to_owned()),
            ("timeout_ms", "5000".to_owned()),
            ("scheduled_ms", "1700000000123".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::BulkString(v.into_bytes())))
        .collect();
        let job = Job::from_fields(&fields);
        assert_eq!(
            job,
            Ok(Job {
                website_id: id,
                url: "https://example.com/".into(),
                timeout_ms: 5000,
                scheduled_ms: 1_700_000_000_123,
                check: String::new(),
            })
        );
    }

    #[test]
    fn a_job_with_a_missing_or_broken_field_is_refused_naming_it() {
        let fields: HashMap<String, Value> =
            [("id".to_owned(), Value::BulkString(b"not-a-uuid".to_vec()))].into_iter().collect();
        assert!(Job::from_fields(&fields).is_err_and(|e| e.contains("id")));
        assert!(Job::from_fields(&HashMap::new()).is_err_and(|e| e.contains("missing")));
    }
}
