//! The latest-status projection of the CHECKS stream: per (website, region)
//! the most recent check result. A batch of results is reduced to the newest
//! per key and written with one statement (and a second for regions
//! checked the first time), in the same transaction as the stream
//! position, so 5,600 checks/s need a handful of transactions per second,
//! not thousands. It is a [`Handler`]: the runner commits each
//! batch with the position.

use crate::handler::{Handler, StreamEvent};
use crate::overview;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use events::subject::CHECKS_STREAM;
use events::{CheckCompleted, Event};
use sqlx::{Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

pub const PROJECTION: &str = "latest_status";

/// How long the readers of CHECKS that write to PostgreSQL (this one and
/// the detector) gather results before applying them ([`Handler::LINGER`]).
pub const CHECKS_LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Per website, the scheduled time of the oldest of its latest checks (one
/// per region it was checked from): what a schedule rebuilt from nothing
/// needs to tell a slot just missed from one to come.
pub async fn oldest_latest_checks(pool: &sqlx::PgPool) -> Result<HashMap<Uuid, DateTime<Utc>>> {
    let rows: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("select website_id, min(scheduled_at) from latest_status group by website_id")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

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
    // The reset marks every website pending and the first batches set each
    // one's status again: two updates of every row, which keep up every
    // index of it (the status is indexed, so none is a HOT update).
    const SET_ASIDE: &'static [&'static str] = &["websites"];
    // A batch of 280 results instead of five of 56 at 5,600 a second.
    const LINGER: std::time::Duration = CHECKS_LINGER;

    async fn apply(&self, tx: &mut Transaction<'_, Postgres>, events: &[StreamEvent]) -> Result<()> {
        let newest = newest(events);
        if newest.is_empty() {
            return Ok(());
        }
        // Before the first write: the monitor's projection also writes the
        // status (see `overview`).
        overview::lock_status(tx).await?;
        // Only a region gone up or down (or checked the first time) can
        // change a website's status.
        let flipped = write_newest(tx, &newest).await?;
        overview::refresh_status(tx, &flipped, None).await
    }

    async fn reset(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        overview::lock_status(tx).await?;
        sqlx::query("truncate latest_status").execute(&mut **tx).await?;
        // No check is known any more: every website waits for its first.
        // The indexes go first (the runner would set them aside after the
        // reset), so that this update does not keep them up.
        crate::indexes::set_aside(tx, Self::SET_ASIDE).await?;
        sqlx::query("update websites set status = 'pending', status_since = created_at where status <> 'pending'")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Writes each result unless the row already holds a newer one; returns
/// the websites of which a region's up/down changed or was written first,
/// sorted.
async fn write_newest(tx: &mut Transaction<'_, Postgres>, checks: &[&CheckCompleted]) -> Result<Vec<Uuid>> {
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    // The rows there are updated where the result is newer, each joined to
    // itself by its tuple id to return what it held before (the statement's
    // snapshot): one index probe per result, not one to read and one to
    // write. A region whose up/down changed flipped. (A row is there only
    // while its website is: removing a website removes its rows.)
    let updated: Vec<(Uuid, String, bool, bool)> = Results::of(checks)
        .bind(sqlx::query_as(&format!(
            "update latest_status l set
                up = b.up, scheduled_at = b.scheduled_at, checked_at = b.checked_at, response_ms = b.response_ms,
                status_code = b.status_code, cause = b.cause, message = b.message
             from {RESULTS}, latest_status o
             where l.website_id = b.website_id and l.region = b.region and o.ctid = l.ctid
               and l.scheduled_at < b.scheduled_at
             returning l.website_id, l.region, l.up, o.up"
        )))
        .fetch_all(&mut **tx)
        .await?;
    let mut flipped = Vec::new();
    let mut written: HashSet<(Uuid, &str)> = HashSet::with_capacity(updated.len());
    for (id, region, up, was) in &updated {
        if up != was {
            flipped.push(*id);
        }
        written.insert((*id, region.as_str()));
    }
    // The rest: a region's first result (flipped: it had none), or one
    // older than the row holds (left). Results of websites already removed
    // are not projected: the row would outlive its website.
    let rest: Vec<&CheckCompleted> =
        checks.iter().copied().filter(|c| !written.contains(&(c.website_id, c.region.as_str()))).collect();
    if !rest.is_empty() {
        let inserted: Vec<(Uuid,)> = Results::of(&rest)
            .bind(sqlx::query_as(&format!(
                "insert into latest_status (website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message)
                 select b.* from {RESULTS}
                 where exists (select 1 from websites w where w.id = b.website_id)
                 on conflict (website_id, region) do nothing
                 returning website_id"
            )))
            .fetch_all(&mut **tx)
            .await?;
        flipped.extend(inserted.into_iter().map(|(id,)| id));
    }
    flipped.sort_unstable();
    flipped.dedup();
    Ok(flipped)
}

/// The rows of [`Results`] as a statement reads them: `b`, bound as $1 to
/// $9 by [`Results::bind`].
const RESULTS: &str = "unnest($1::uuid[], $2::text[], $3::bool[], $4::timestamptz[], $5::timestamptz[],
                             $6::int[], $7::int[], $8::text[], $9::text[])
                      as b(website_id, region, up, scheduled_at, checked_at, response_ms, status_code, cause, message)";

/// Check results as one array per column of `latest_status`: PostgreSQL
/// reads arrays in their binary form.
struct Results {
    ids: Vec<Uuid>,
    regions: Vec<String>,
    ups: Vec<bool>,
    scheduled: Vec<DateTime<Utc>>,
    started: Vec<DateTime<Utc>>,
    response: Vec<Option<i32>>,
    status: Vec<Option<i32>>,
    causes: Vec<Option<String>>,
    messages: Vec<Option<String>>,
}

impl Results {
    fn of(checks: &[&CheckCompleted]) -> Self {
        Self {
            ids: checks.iter().map(|c| c.website_id).collect(),
            regions: checks.iter().map(|c| c.region.to_string()).collect(),
            ups: checks.iter().map(|c| c.up).collect(),
            scheduled: checks.iter().map(|c| c.scheduled_at).collect(),
            started: checks.iter().map(|c| c.started_at).collect(),
            response: checks.iter().map(|c| c.response_ms.map(|r| i32::try_from(r).unwrap_or(i32::MAX))).collect(),
            status: checks.iter().map(|c| c.status_code.map(i32::from)).collect(),
            causes: checks.iter().map(|c| c.cause.map(|cause| cause.as_str().to_owned())).collect(),
            messages: checks.iter().map(|c| c.message.clone()).collect(),
        }
    }

    /// Binds the columns as $1 to $9 of `query`, in the order of [`RESULTS`].
    fn bind<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(self.ids)
            .bind(self.regions)
            .bind(self.ups)
            .bind(self.scheduled)
            .bind(self.started)
            .bind(self.response)
            .bind(self.status)
            .bind(self.causes)
            .bind(self.messages)
    }
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
