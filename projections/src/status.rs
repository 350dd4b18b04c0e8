//! The latest-status projection of the CHECKS stream: per (website, region)
//! the most recent check result. A batch of results is reduced to the newest
//! per key and written with one statement, in the same transaction as the
//! stream position, so 5,600 checks/s need a handful of transactions per
//! second, not thousands.

use crate::postgres::{BatchOutcome, StreamEvent};
use crate::Result;
use chrono::{DateTime, Utc};
use events::{CheckCompleted, Event};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

pub const PROJECTION: &str = "latest_status";

/// The newest result per (website, region) in `batch`, by scheduled time.
pub fn newest(batch: &[StreamEvent]) -> Vec<&CheckCompleted> {
    let mut newest: HashMap<(Uuid, &str), &CheckCompleted> = HashMap::new();
    for item in batch {
        if let Some(Event::CheckCompleted(check)) = item.envelope.as_ref().map(|e| &e.event) {
            let key = (check.website_id, check.region.as_str());
            match newest.get(&key) {
                Some(seen) if seen.scheduled_at >= check.scheduled_at => {}
                _ => {
                    newest.insert(key, check);
                }
            }
        }
    }
    newest.into_values().collect()
}

pub async fn apply_batch(pool: &PgPool, cursor: u64, batch: &[StreamEvent]) -> Result<BatchOutcome> {
    let mut tx = pool.begin().await?;
    let stored = crate::cursor::lock(&mut tx, PROJECTION).await?;
    if stored != cursor {
        return Ok(BatchOutcome::Moved { offset: stored });
    }
    let checks = newest(batch);
    if !checks.is_empty() {
        let mut ids = Vec::with_capacity(checks.len());
        let mut regions = Vec::with_capacity(checks.len());
        let mut ups = Vec::with_capacity(checks.len());
        let mut scheduled: Vec<DateTime<Utc>> = Vec::with_capacity(checks.len());
        let mut started: Vec<DateTime<Utc>> = Vec::with_capacity(checks.len());
        let mut response: Vec<Option<i32>> = Vec::with_capacity(checks.len());
        let mut status: Vec<Option<i32>> = Vec::with_capacity(checks.len());
        let mut causes: Vec<Option<String>> = Vec::with_capacity(checks.len());
        let mut messages: Vec<Option<String>> = Vec::with_capacity(checks.len());
        for c in checks {
            ids.push(c.website_id);
            regions.push(c.region.to_string());
            ups.push(c.up);
            scheduled.push(c.scheduled_at);
            started.push(c.started_at);
            response.push(c.response_ms.map(|r| i32::try_from(r).unwrap_or(i32::MAX)));
            status.push(c.status_code.map(i32::from));
            causes.push(c.cause.map(|cause| cause_name(cause).to_owned()));
            messages.push(c.message.clone());
        }
        // Results of websites already removed are not projected: the row
        // would outlive its website.
        sqlx::query(
            "insert into latest_status (website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message)
             select b.* from unnest($1::uuid[], $2::text[], $3::bool[], $4::timestamptz[], $5::timestamptz[],
                                    $6::int[], $7::int[], $8::text[], $9::text[])
                  as b(website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message)
             where exists (select 1 from websites w where w.id = b.website_id)
             on conflict (website_id, region) do update set
                up = excluded.up, scheduled_at = excluded.scheduled_at, checked_at = excluded.checked_at,
                response_ms = excluded.response_ms, status_code = excluded.status_code,
                cause = excluded.cause, message = excluded.message
             where latest_status.scheduled_at < excluded.scheduled_at",
        )
        .bind(&ids)
        .bind(&regions)
        .bind(&ups)
        .bind(&scheduled)
        .bind(&started)
        .bind(&response)
        .bind(&status)
        .bind(&causes)
        .bind(&messages)
        .execute(&mut *tx)
        .await?;
    }
    let reached = batch.iter().map(|i| i.seq).max().unwrap_or(cursor).max(cursor);
    crate::cursor::store(&mut tx, PROJECTION, reached).await?;
    tx.commit().await?;
    Ok(BatchOutcome::Applied { offset: reached })
}

/// Empties the projection and moves it back to the start of CHECKS.
pub async fn reset(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    crate::cursor::lock(&mut tx, PROJECTION).await?;
    sqlx::query("truncate latest_status").execute(&mut *tx).await?;
    crate::cursor::store(&mut tx, PROJECTION, 0).await?;
    tx.commit().await?;
    Ok(())
}

/// The wire name of a failure cause (`http_status`, `timeout`, ...).
pub fn cause_name(cause: events::FailureCause) -> String {
    serde_json::to_value(cause).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "other".into())
}

/// The latest result of one (website, region).
#[derive(Debug, Clone, PartialEq)]
pub struct LatestStatus {
    pub website_id: Uuid,
    pub region: String,
    pub up: bool,
    pub scheduled_at: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
    pub response_ms: Option<i32>,
    pub status_code: Option<i32>,
    pub cause: Option<String>,
    pub message: Option<String>,
}

type StatusRow =
    (Uuid, String, bool, DateTime<Utc>, DateTime<Utc>, Option<i32>, Option<i32>, Option<String>, Option<String>);

/// Latest results of every website (or one), by website and region.
pub async fn latest(pool: &PgPool, website_id: Option<Uuid>) -> Result<Vec<LatestStatus>> {
    let rows: Vec<StatusRow> = sqlx::query_as(
        "select website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message
         from latest_status where $1::uuid is null or website_id = $1 order by website_id, region",
    )
    .bind(website_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message)| {
            LatestStatus { website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use events::{Envelope, RegionName};

    fn check(website: Uuid, region: &str, secs: i64, up: bool) -> StreamEvent {
        let at = Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap_or_default();
        let check = CheckCompleted {
            website_id: website,
            region: RegionName::parse(region).unwrap_or_else(|e| panic!("{e}")),
            scheduled_at: at,
            started_at: at,
            up,
            status_code: None,
            response_ms: None,
            cause: None,
            message: None,
        };
        StreamEvent { seq: 0, envelope: Some(Envelope::new(Event::CheckCompleted(check), at)) }
    }

    #[test]
    fn a_batch_is_reduced_to_the_newest_result_per_website_and_region() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let batch = vec![
            check(a, "local", 20, false),
            check(a, "local", 10, true),
            check(a, "europe", 5, true),
            check(b, "local", 30, true),
        ];
        let mut newest: Vec<(Uuid, String, bool)> =
            newest(&batch).into_iter().map(|c| (c.website_id, c.region.to_string(), c.up)).collect();
        newest.sort();
        let mut expected =
            vec![(a, "local".to_owned(), false), (a, "europe".to_owned(), true), (b, "local".to_owned(), true)];
        expected.sort();
        assert_eq!(newest, expected);
    }

    #[test]
    fn causes_have_their_wire_names() {
        assert_eq!(cause_name(events::FailureCause::HttpStatus), "http_status");
        assert_eq!(cause_name(events::FailureCause::TooManyRedirects), "too_many_redirects");
    }
}
