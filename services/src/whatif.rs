//! What-if uptime: a website's incidents recomputed from its stored check
//! results (CheckCompleted on CHECKS) under other confirmation rules
//! (`failures_before_down`, `down_policy`), through the same pure functions
//! the live system uses: [`events::detection::step`] confirms outages per
//! region exactly as the detector does (results in stream order, late ones
//! ignored), and the uptime figures are then computed from them as for the
//! live incidents ([`events::outage`]). Nothing is written or published.
//!
//! CHECKS keeps results for `CHECKS_MAX_AGE_HOURS`, so the answer says which
//! period it covers: from the website's creation if the stream has never
//! dropped a result, else from the oldest result it still holds.

use crate::bus::{Bus, BusError};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, SubsecRound, Utc};
use events::detection::{self, Detection, Policy};
use events::maintenance::Window;
use events::subject::CHECKS_STREAM;
use events::website::Website;
use events::{CheckCompleted, DownPolicy, Envelope, Event, RegionName};
use futures::StreamExt;
use projections::postgres::Incident;
use std::collections::HashMap;
use uuid::Uuid;

/// The rules to recompute under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Consecutive failed checks that confirm an outage in a region.
    pub failures_before_down: u32,
    /// When the website as a whole counts as down.
    pub down_policy: DownPolicy,
}

/// The incidents the checks would have made under [`Rules`], and the
/// period the checks cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    pub rules: Rules,
    pub covered_from: DateTime<Utc>,
    pub covered_to: DateTime<Utc>,
    /// Newest first, like the live incidents.
    pub incidents: Vec<Incident>,
}

/// Reads the website's checks (of `region` only, if given) from CHECKS and
/// recomputes its incidents under `rules`, as of `now`.
pub async fn recompute(
    bus: &Bus,
    website: &Website,
    region: Option<&RegionName>,
    rules: Rules,
    up_after: u32,
    windows: &[Window],
    now: DateTime<Utc>,
) -> Result<Recomputed, BusError> {
    let (website_id, created_at) = (website.id, website.created_at);
    let (checks, oldest_kept) = read_checks(bus, website_id, region).await?;
    let policy = Policy { down_after: rules.failures_before_down, up_after };
    let mut incidents = incidents(&checks, policy, now);
    for incident in &mut incidents {
        incident.in_maintenance = windows.iter().any(|w| w.covers(website_id) && w.active_at(incident.started_at));
    }
    Ok(Recomputed {
        rules,
        covered_from: oldest_kept.map_or(created_at, |oldest| oldest.max(created_at)).min(now),
        covered_to: now,
        incidents,
    })
}

/// The incidents `checks` (in stream order) confirm under `policy`, newest
/// first; an outage still open at the end is ongoing at `now`.
pub fn incidents(checks: &[CheckCompleted], policy: Policy, now: DateTime<Utc>) -> Vec<Incident> {
    let mut states: HashMap<RegionName, Detection> = HashMap::new();
    let mut found: Vec<Incident> = Vec::new();
    for check in checks {
        let state = states.entry(check.region.clone()).or_default();
        let (next, event) = detection::step(state, check, policy);
        *state = next;
        match event {
            Some(Event::SiteDown(down)) => found.push(Incident {
                region: down.region.to_string(),
                started_at: stored(down.started_at),
                ended_at: None,
                duration_seconds: 0,
                ongoing: true,
                cause: down.cause.map(|c| c.as_str().to_owned()),
                status_code: down.status_code.map(i32::from),
                message: down.message,
                in_maintenance: false,
            }),
            Some(Event::SiteUp(up)) => {
                let open = found.iter_mut().rev().find(|i| i.ongoing && i.region == up.region.as_str());
                if let Some(incident) = open {
                    incident.ended_at = Some(stored(up.ended_at));
                    incident.duration_seconds = up.downtime_seconds;
                    incident.ongoing = false;
                }
            }
            _ => {}
        }
    }
    for incident in found.iter_mut().filter(|i| i.ongoing) {
        incident.duration_seconds = (now - incident.started_at).num_seconds().max(0);
    }
    found.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| a.region.cmp(&b.region)));
    found
}

/// A time as the incidents projection stores it (Postgres keeps
/// microseconds), so recomputed incidents compare equal to the live ones.
fn stored(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// The website's checks in stream order, and when the oldest result CHECKS
/// still holds was stored if it has dropped any (`None`: it holds every
/// result ever published).
async fn read_checks(
    bus: &Bus,
    website_id: Uuid,
    region: Option<&RegionName>,
) -> Result<(Vec<CheckCompleted>, Option<DateTime<Utc>>), BusError> {
    let err = |e: &dyn std::fmt::Display| BusError::JetStream(e.to_string());
    let mut stream = bus.js.get_stream(CHECKS_STREAM).await.map_err(|e| err(&e))?;
    let info = stream.info().await.map_err(|e| err(&e))?.state.clone();
    let oldest_kept = (info.first_sequence > 1)
        .then(|| DateTime::from_timestamp(info.first_timestamp.unix_timestamp(), info.first_timestamp.nanosecond()))
        .flatten();
    let subject = match region {
        Some(region) => events::subject::check(region, website_id),
        None => format!("checks.*.{website_id}"),
    };
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            filter_subject: subject,
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let mut checks = Vec::new();
    if consumer.info().await.map_err(|e| err(&e))?.num_pending == 0 {
        return Ok((checks, oldest_kept));
    }
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| err(&e))?;
        let pending = message.info().map_err(|e| err(&e))?.pending;
        match Envelope::from_json(&message.payload) {
            Ok(Envelope { event: Event::CheckCompleted(check), .. }) => checks.push(check),
            Ok(_) | Err(events::DecodeError::UnknownType(_)) => {}
            Err(e) => return Err(BusError::JetStream(format!("a check of {website_id}: {e}"))),
        }
        if pending == 0 {
            break;
        }
    }
    Ok((checks, oldest_kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use events::FailureCause;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap_or_default()
    }

    fn check(region: &str, secs: i64, up: bool) -> CheckCompleted {
        CheckCompleted {
            website_id: Uuid::nil(),
            region: RegionName::parse(region).unwrap_or_else(|e| panic!("{e}")),
            scheduled_at: at(secs),
            started_at: at(secs),
            up,
            status_code: Some(if up { 200 } else { 503 }),
            response_ms: Some(5),
            cause: (!up).then_some(FailureCause::HttpStatus),
            message: None,
            cert_not_after: None,
        }
    }

    /// Down twice, up, down twice, up: a flapping target.
    fn flapping() -> Vec<CheckCompleted> {
        [(0, true), (10, false), (20, false), (30, true), (40, false), (50, false), (60, true)]
            .into_iter()
            .map(|(s, up)| check("local", s, up))
            .collect()
    }

    #[test]
    fn two_failures_confirm_each_outage_and_its_recovery_closes_it() {
        let found = incidents(&flapping(), Policy { down_after: 2, up_after: 1 }, at(100));
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].started_at, found[0].ended_at), (at(40), Some(at(60))), "newest first");
        assert_eq!((found[1].started_at, found[1].ended_at, found[1].duration_seconds), (at(10), Some(at(30)), 20));
        assert_eq!(found[1].cause.as_deref(), Some("http_status"));
    }

    #[test]
    fn a_higher_threshold_confirms_none_of_the_short_outages() {
        assert!(incidents(&flapping(), Policy { down_after: 3, up_after: 1 }, at(100)).is_empty());
    }

    #[test]
    fn an_outage_open_at_the_end_is_ongoing_until_now() {
        let checks = [check("local", 0, false), check("local", 10, false)];
        let found = incidents(&checks, Policy::default(), at(70));
        assert_eq!(found.len(), 1);
        assert!(found[0].ongoing);
        assert_eq!(found[0].duration_seconds, 70);
    }

    #[test]
    fn regions_are_confirmed_separately() {
        let checks = [check("local", 0, false), check("europe", 5, false), check("local", 10, false)];
        let found = incidents(&checks, Policy::default(), at(20));
        assert_eq!(found.iter().map(|i| i.region.as_str()).collect::<Vec<_>>(), ["local"]);
    }
}
