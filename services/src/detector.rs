//! The detector: follows CHECKS and turns results into SiteDown and SiteUp
//! (the rules are [`events::detection`], pure), and certificate expiries
//! into CertificateExpiring warnings ([`events::certificate`]). It is a [`Handler`] that
//! also publishes: within the runner's transaction it loads the state of
//! the (website, region) pairs of a batch, steps them in stream order,
//! publishes the transitions and writes the new states; the runner then
//! commits them together with its position in CHECKS.
//!
//! A crash before the commit replays the batch from the stored state and
//! position and decides the same transitions with the same ids (derived
//! from website, region and outage start): JetStream drops the re-publish
//! within its duplicate window, and every consumer of transitions is keyed
//! by those ids, so nothing is doubled and nothing missed.

use crate::bus::{Bus, BusError};
use crate::{runner, Deps};
use chrono::{DateTime, Utc};
use events::detection::{self, Detection, Policy};
use events::subject::CHECKS_STREAM;
use events::{certificate, CertificateExpiring, CheckCompleted, Envelope, Event};
use projections::handler::{Handler, StreamEvent};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const POSITION: &str = "detector";
const MAX_BATCH: usize = 2000;

/// Runs until cancelled, restarting with backoff after errors.
pub async fn serve(deps: Deps, policy: Policy, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    let Deps { bus, pool, .. } = deps;
    tracing::info!(down_after = policy.down_after, up_after = policy.up_after, "detector following CHECKS");
    runner::run(bus.clone(), pool, Detector::new(bus, policy), MAX_BATCH, cancel).await
}

/// Why a batch could not be applied; the runner retries it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing a transition: {0}")]
    Publish(#[from] BusError),
    #[error("detector state of {website_id}/{region}: {source}")]
    State { website_id: Uuid, region: String, source: serde_json::Error },
}

/// The detector as a handler of CHECKS.
pub struct Detector {
    bus: Bus,
    /// The defaults; a website's `failures_before_down` overrides
    /// `down_after`.
    policy: Policy,
}

impl Detector {
    pub fn new(bus: Bus, policy: Policy) -> Self {
        Self { bus, policy }
    }
}

impl Handler for Detector {
    type Error = Error;
    const NAME: &'static str = POSITION;
    const STREAM: &'static str = CHECKS_STREAM;
    const LINGER: std::time::Duration = projections::status::CHECKS_LINGER;

    async fn apply(&self, tx: &mut Transaction<'_, Postgres>, events: &[StreamEvent]) -> Result<(), Error> {
        let checks: Vec<(&Envelope, &CheckCompleted)> = events
            .iter()
            .filter_map(|e| match &e.envelope.event {
                Event::CheckCompleted(check) => Some((&e.envelope, check)),
                _ => None,
            })
            .collect();
        if checks.is_empty() {
            return Ok(());
        }
        let mut states = load(tx, &checks).await?;
        let thresholds = thresholds(tx, &checks).await?;
        let mut transitions = Vec::new();
        for (envelope, check) in &checks {
            let policy = Policy {
                down_after: thresholds.get(&check.website_id).copied().unwrap_or(self.policy.down_after),
                ..self.policy
            };
            let state = states.entry((check.website_id, check.region.to_string())).or_default();
            let (next, event) = detection::step(state, check, policy);
            *state = next;
            if let Some(event) = event {
                let Some(id) = detection::transition_id(&event) else { continue };
                transitions
                    .push(Envelope::with_id(id, event, Utc::now()).caused_by(envelope).by(events::Actor::System, None));
            }
        }
        transitions.extend(certificate_warnings(tx, &checks).await?);
        // Published before the states are committed: a crash in between
        // re-decides the same transitions with the same ids.
        for transition in &transitions {
            self.bus.publish(transition, None).await?;
            tracing::info!(
                kind = transition.event.type_name(),
                website_id = transition.aggregate_id,
                event_id = %transition.id,
                "transition published"
            );
        }
        save(tx, &states).await
    }

    async fn reset(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), Error> {
        sqlx::query("delete from detector_state").execute(&mut **tx).await?;
        Ok(())
    }
}

type States = HashMap<(Uuid, String), Detection>;

#[derive(sqlx::FromRow)]
struct StateRow {
    website_id: Uuid,
    region: String,
    state: serde_json::Value,
}

/// The stored states of the (website, region) pairs of `checks`.
async fn load(tx: &mut Transaction<'_, Postgres>, checks: &[(&Envelope, &CheckCompleted)]) -> Result<States, Error> {
    let ids: Vec<Uuid> = checks.iter().map(|(_, c)| c.website_id).collect();
    let regions: Vec<String> = checks.iter().map(|(_, c)| c.region.to_string()).collect();
    let rows: Vec<StateRow> = sqlx::query_as(
        "select d.website_id, d.region, d.state from detector_state d
         join unnest($1::uuid[], $2::text[]) as k(w, r) on d.website_id = k.w and d.region = k.r",
    )
    .bind(&ids)
    .bind(&regions)
    .fetch_all(&mut **tx)
    .await?;
    let mut states = HashMap::with_capacity(rows.len());
    for StateRow { website_id, region, state } in rows {
        match serde_json::from_value(state) {
            Ok(state) => states.insert((website_id, region), state),
            Err(source) => return Err(Error::State { website_id, region, source }),
        };
    }
    Ok(states)
}

async fn save(tx: &mut Transaction<'_, Postgres>, states: &States) -> Result<(), Error> {
    let mut ids = Vec::with_capacity(states.len());
    let mut regions = Vec::with_capacity(states.len());
    let mut values = Vec::with_capacity(states.len());
    for ((website_id, region), state) in states {
        let value = serde_json::to_value(state).map_err(|source| Error::State {
            website_id: *website_id,
            region: region.clone(),
            source,
        })?;
        ids.push(*website_id);
        regions.push(region.clone());
        values.push(value);
    }
    sqlx::query(
        "insert into detector_state (website_id, region, state, updated_at)
         select w, r, s, now() from unnest($1::uuid[], $2::text[], $3::jsonb[]) as t(w, r, s)
         on conflict (website_id, region) do update set state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(&ids)
    .bind(&regions)
    .bind(&values)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records the certificates seen and returns the expiry warnings due: one
/// per certificate and threshold crossed (see [`events::certificate`]).
async fn certificate_warnings(
    tx: &mut Transaction<'_, Postgres>,
    checks: &[(&Envelope, &CheckCompleted)],
) -> Result<Vec<Envelope>, Error> {
    let seen: Vec<(&Envelope, &CheckCompleted, DateTime<Utc>)> =
        checks.iter().filter_map(|(e, c)| c.cert_not_after.map(|at| (*e, *c, at))).collect();
    if seen.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = seen.iter().map(|(_, c, _)| c.website_id).collect();
    let not_after: Vec<DateTime<Utc>> = seen.iter().map(|(_, _, at)| *at).collect();
    let at: Vec<DateTime<Utc>> = seen.iter().map(|(_, c, _)| c.scheduled_at).collect();
    sqlx::query(
        "insert into certificates (website_id, not_after, seen_at)
         select distinct on (w) w, n, s from unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) as t(w, n, s)
         order by w, s desc
         on conflict (website_id) do update set not_after = excluded.not_after, seen_at = excluded.seen_at
         where certificates.seen_at < excluded.seen_at",
    )
    .bind(&ids)
    .bind(&not_after)
    .bind(&at)
    .execute(&mut **tx)
    .await?;
    let settings: HashMap<Uuid, u32> = sqlx::query_as::<_, (Uuid, Option<i64>)>(
        "select id, (check_spec->>'cert_expiry_days')::bigint from websites where id = any($1)",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(id, days)| (id, days.and_then(|d| u32::try_from(d).ok()).unwrap_or(certificate::DEFAULT_EXPIRY_DAYS)))
    .collect();
    let mut warnings = Vec::new();
    for (envelope, check, not_after) in seen {
        // A website removed meanwhile is not warned about.
        let Some(expiry_days) = settings.get(&check.website_id) else { continue };
        let days_left = certificate::days_left(not_after, check.scheduled_at);
        let Some(threshold) = certificate::crossed(days_left, *expiry_days) else { continue };
        let announced = sqlx::query(
            "insert into certificate_warnings (website_id, not_after, threshold)
             select $1, $2, $3 where not exists (
                 select 1 from certificate_warnings where website_id = $1 and not_after = $2 and threshold <= $3)",
        )
        .bind(check.website_id)
        .bind(not_after)
        .bind(i32::try_from(threshold).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await?;
        if announced.rows_affected() == 1 {
            let event = Event::CertificateExpiring(CertificateExpiring {
                website_id: check.website_id,
                region: check.region.clone(),
                not_after,
                days_left,
                threshold_days: threshold,
            });
            let id = certificate::warning_id(check.website_id, not_after, threshold);
            warnings.push(Envelope::with_id(id, event, Utc::now()).caused_by(envelope).by(events::Actor::System, None));
        }
    }
    Ok(warnings)
}

#[derive(sqlx::FromRow)]
struct ThresholdRow {
    id: Uuid,
    failures_before_down: i32,
}

/// Websites of the batch with a threshold of their own.
async fn thresholds(
    tx: &mut Transaction<'_, Postgres>,
    checks: &[(&Envelope, &CheckCompleted)],
) -> Result<HashMap<Uuid, u32>, Error> {
    let mut ids: Vec<Uuid> = checks.iter().map(|(_, c)| c.website_id).collect();
    ids.sort();
    ids.dedup();
    let rows: Vec<ThresholdRow> = sqlx::query_as(
        "select id, failures_before_down from websites where id = any($1) and failures_before_down is not null",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().filter_map(|r| u32::try_from(r.failures_before_down).ok().map(|n| (r.id, n))).collect())
}
