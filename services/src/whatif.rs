//! What-if uptime: a website's incidents recomputed from its stored check
//! results (the CheckCompleted of CHECKS, as kept in InfluxDB, indexed by
//! website) under other confirmation rules
//! (`failures_before_down`, `down_policy`), through the same pure functions
//! the live system uses: [`events::detection::step`] confirms outages per
//! region exactly as the detector does (results in scheduled order), and
//! the uptime figures are then computed from them as for the live incidents
//! ([`events::outage`]). Nothing is written or published.
//!
//! The results of the last [`COVERED_DAYS`] are read (the widest uptime
//! window), so the answer says which period it covers: from the website's
//! creation, or from that many days ago if it is older.

use chrono::{DateTime, SubsecRound, Utc};
use events::detection::{self, Detection, Policy};
use events::maintenance::Window;
use events::website::Website;
use events::{CheckCompleted, DownPolicy, Event, RegionName};
use projections::influx::Influx;
use projections::postgres::Incident;
use std::collections::HashMap;

/// Days of results recomputed: the widest uptime window.
pub const COVERED_DAYS: i64 = 90;

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

/// Reads the website's checks (of `region` only, if given) and recomputes
/// its incidents under `rules`, as of `now`.
pub async fn recompute(
    influx: &Influx,
    website: &Website,
    region: Option<&RegionName>,
    rules: Rules,
    up_after: u32,
    windows: &[Window],
    now: DateTime<Utc>,
) -> Result<Recomputed, projections::Error> {
    let (website_id, created_at) = (website.id, website.created_at);
    let covered_from = created_at.max(now - chrono::Duration::days(COVERED_DAYS)).min(now);
    let checks = influx.checks(website_id, region, covered_from).await?;
    let policy = Policy { down_after: rules.failures_before_down, up_after };
    let mut incidents = incidents(&checks, policy, now);
    for incident in &mut incidents {
        incident.in_maintenance = windows.iter().any(|w| w.covers(website_id) && w.active_at(incident.started_at));
    }
    Ok(Recomputed { rules, covered_from, covered_to: now, incidents })
}

/// The incidents `checks` (each region's in scheduled order) confirm under `policy`, newest
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use events::FailureCause;
    use uuid::Uuid;

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
