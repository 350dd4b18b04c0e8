//! The latest-status projection of the CHECKS stream: per (website, region)
//! the most recent check result. A batch of results is reduced to the newest
//! per key and written with one statement, in the same transaction as the
//! stream position, so 5,600 checks/s need a handful of transactions per
//! second, not thousands. It is a [`Handler`]: the runner commits each
//! batch with the position.

use crate::handler::{Handler, StreamEvent};
use crate::overview;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use events::subject::CHECKS_STREAM;
use events::{CheckCompleted, Event};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

pub const PROJECTION: &str = "latest_status";

/// The newest result per (website, region) in `batch`, by scheduled time.
pub fn newest(batch: &[StreamEvent]) -> Vec<&CheckCompleted> {
    let mut newest: HashMap<(Uuid, &str), &CheckCompleted> = HashMap::new();
    for item in batch {
        if let Event::CheckCompleted(check) = &item.envelope.event {
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

/// The latest-status projection of CHECKS.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusProjection;

impl Handler for StatusProjection {
    type Error = Error;
    const NAME: &'static str = PROJECTION;
    const STREAM: &'static str = CHECKS_STREAM;

    async fn apply(&self, tx: &mut Transaction<'_, Postgres>, events: &[StreamEvent]) -> Result<()> {
        let newest = newest(events);
        if newest.is_empty() {
            return Ok(());
        }
        // Before the first write: the monitor's projection also writes the
        // status (see `overview`).
        overview::lock_status(tx).await?;
        write_newest(tx, &newest).await?;
        let mut websites: Vec<Uuid> = newest.iter().map(|c| c.website_id).collect();
        websites.sort_unstable();
        websites.dedup();
        overview::refresh_status(tx, &websites, None).await
    }

    async fn reset(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        overview::lock_status(tx).await?;
        sqlx::query("truncate latest_status").execute(&mut **tx).await?;
        // No check is known any more: every website waits for its first.
        sqlx::query("update websites set status = 'pending', status_since = created_at where status <> 'pending'")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Writes each result unless the row already holds a newer one.
async fn write_newest(tx: &mut Transaction<'_, Postgres>, checks: &[&CheckCompleted]) -> Result<()> {
    if checks.is_empty() {
        return Ok(());
    }
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
        causes.push(c.cause.map(|cause| cause.as_str().to_owned()));
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
        .execute(&mut **tx)
        .await?;
    Ok(())
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
            cert_not_after: None,
        };
        StreamEvent { seq: 0, envelope: Envelope::new(Event::CheckCompleted(check), at) }
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
}
