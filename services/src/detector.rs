//! The detector: follows CHECKS and turns results into SiteDown and SiteUp
//! (the rules are [`events::detection`], pure). It is a projection that
//! also publishes: per batch it loads the state of the (website, region)
//! pairs involved, steps them in stream order, publishes the transitions,
//! and then commits the new states together with its position in CHECKS.
//!
//! A crash before the commit replays the batch from the stored state and
//! position and decides the same transitions with the same ids (derived
//! from website, region and outage start): JetStream drops the re-publish
//! within its duplicate window, and every consumer of transitions is keyed
//! by those ids, so nothing is doubled and nothing missed.

use crate::bus::Bus;
use crate::{follow, Deps};
use anyhow::Context;
use chrono::Utc;
use events::detection::{self, Detection, Policy};
use events::subject::CHECKS_STREAM;
use events::{CheckCompleted, DecodeError, Envelope, Event};
use projections::cursor;
use sqlx::PgPool;
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
    follow::supervise("detector", &cancel, || pass(&bus, &pool, policy, &cancel)).await
}

/// Returns true when cancelled, false when another writer moved the
/// position (start again from it).
async fn pass(bus: &Bus, pool: &PgPool, policy: Policy, cancel: &CancellationToken) -> anyhow::Result<bool> {
    let mut cursor = cursor::offset(pool, POSITION).await?;
    let mut batches = follow::after(bus, CHECKS_STREAM, cursor, None, MAX_BATCH).await?;
    while let Some(batch) = batches.next(cancel).await? {
        let mut checks: Vec<(u64, Envelope)> = Vec::with_capacity(batch.len());
        let mut last = cursor;
        for (seq, message) in batch {
            last = last.max(seq);
            match Envelope::from_json(&message.payload) {
                Ok(envelope) if matches!(envelope.event, Event::CheckCompleted(_)) => checks.push((seq, envelope)),
                Ok(_) | Err(DecodeError::UnknownType(_)) => {}
                Err(e) => return Err(e).with_context(|| format!("CHECKS sequence {seq}")),
            }
        }
        match apply(bus, pool, policy, cursor, last, &checks).await? {
            Some(reached) => cursor = reached,
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Steps the states of one batch, publishes what they confirm, then commits
/// states and position. `None` when the position moved under us.
async fn apply(
    bus: &Bus,
    pool: &PgPool,
    policy: Policy,
    cursor: u64,
    last: u64,
    checks: &[(u64, Envelope)],
) -> anyhow::Result<Option<u64>> {
    let mut states = load(pool, checks).await?;
    let thresholds = thresholds(pool, checks).await?;
    let mut transitions = Vec::new();
    for (_, envelope) in checks {
        let Event::CheckCompleted(check) = &envelope.event else { continue };
        let policy =
            Policy { down_after: thresholds.get(&check.website_id).copied().unwrap_or(policy.down_after), ..policy };
        let state = states.entry((check.website_id, check.region.to_string())).or_default();
        let (next, event) = detection::step(state, check, policy);
        *state = next;
        if let Some(event) = event {
            let Some(id) = detection::transition_id(&event) else { continue };
            transitions.push(Envelope::with_id(id, event, Utc::now()).caused_by(envelope));
        }
    }
    for transition in &transitions {
        bus.publish(transition, None).await.context("publishing a transition")?;
        tracing::info!(
            kind = transition.event.type_name(),
            website_id = transition.aggregate_id,
            event_id = %transition.id,
            "transition published"
        );
    }
    let mut tx = pool.begin().await?;
    if cursor::lock(&mut tx, POSITION).await? != cursor {
        return Ok(None);
    }
    if !states.is_empty() {
        let mut ids = Vec::with_capacity(states.len());
        let mut regions = Vec::with_capacity(states.len());
        let mut values = Vec::with_capacity(states.len());
        for ((id, region), state) in &states {
            ids.push(*id);
            regions.push(region.clone());
            values.push(serde_json::to_value(state)?);
        }
        sqlx::query(
            "insert into detector_state (website_id, region, state, updated_at)
             select w, r, s, now() from unnest($1::uuid[], $2::text[], $3::jsonb[]) as t(w, r, s)
             on conflict (website_id, region) do update set state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(&ids)
        .bind(&regions)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
    }
    cursor::store(&mut tx, POSITION, last).await?;
    tx.commit().await?;
    Ok(Some(last))
}

/// Websites of the batch with a threshold of their own.
async fn thresholds(pool: &PgPool, checks: &[(u64, Envelope)]) -> anyhow::Result<HashMap<Uuid, u32>> {
    let mut ids: Vec<Uuid> = checks
        .iter()
        .filter_map(|(_, e)| match &e.event {
            Event::CheckCompleted(c) => Some(c.website_id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    let rows: Vec<(Uuid, i32)> = sqlx::query_as(
        "select id, failures_before_down from websites where id = any($1) and failures_before_down is not null",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(id, n)| u32::try_from(n).ok().map(|n| (id, n))).collect())
}

async fn load(pool: &PgPool, checks: &[(u64, Envelope)]) -> anyhow::Result<HashMap<(Uuid, String), Detection>> {
    let mut ids = Vec::new();
    let mut regions = Vec::new();
    for (_, envelope) in checks {
        if let Event::CheckCompleted(CheckCompleted { website_id, region, .. }) = &envelope.event {
            ids.push(*website_id);
            regions.push(region.to_string());
        }
    }
    let rows: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "select d.website_id, d.region, d.state from detector_state d
         join unnest($1::uuid[], $2::text[]) as k(w, r) on d.website_id = k.w and d.region = k.r",
    )
    .bind(&ids)
    .bind(&regions)
    .fetch_all(pool)
    .await?;
    let mut states = HashMap::with_capacity(rows.len());
    for (id, region, value) in rows {
        let state: Detection =
            serde_json::from_value(value).with_context(|| format!("detector state of {id}/{region}"))?;
        states.insert((id, region), state);
    }
    Ok(states)
}
