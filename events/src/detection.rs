//! Downtime detection, pure: per (website, region) a small state machine
//! fed with check results in scheduled order. N consecutive failures make
//! an outage (SiteDown, starting at the first failed check); M consecutive
//! successes end it (SiteUp, ending at the first successful check, with the
//! downtime). A result scheduled no later than the last one seen is ignored,
//! so duplicates and late, out-of-order results (a reclaimed job, two
//! workers) cannot flap the state.

use crate::event::{CheckCompleted, Event, FailureCause, SiteDown, SiteUp};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How many consecutive results confirm a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub down_after: u32,
    pub up_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self { down_after: 2, up_after: 1 }
    }
}

/// The first failed check of a run of failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstFailure {
    pub at: DateTime<Utc>,
    pub cause: Option<FailureCause>,
    pub status_code: Option<u16>,
    pub message: Option<String>,
}

/// What the detector remembers about one (website, region).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Scheduled time of the newest result applied.
    pub last_scheduled: Option<DateTime<Utc>>,
    pub failures: u32,
    pub successes: u32,
    /// Start of the current run of failures.
    pub first_failure: Option<FirstFailure>,
    /// When the open outage began; `None` while up.
    pub down_since: Option<DateTime<Utc>>,
    /// Start of the current run of successes during an outage.
    pub first_success: Option<DateTime<Utc>>,
}

impl Detection {
    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }
}

/// Applies one result; returns the new state and the event it confirms, if
/// any.
pub fn step(state: &Detection, check: &CheckCompleted, policy: Policy) -> (Detection, Option<Event>) {
    if state.last_scheduled.is_some_and(|last| check.scheduled_at <= last) {
        return (state.clone(), None);
    }
    let mut next = state.clone();
    next.last_scheduled = Some(check.scheduled_at);
    if check.up {
        next.failures = 0;
        next.first_failure = None;
        let Some(down_since) = state.down_since else {
            next.successes = next.successes.saturating_add(1);
            return (next, None);
        };
        next.successes = next.successes.saturating_add(1);
        let ended_at = *next.first_success.get_or_insert(check.started_at);
        if next.successes < policy.up_after.max(1) {
            return (next, None);
        }
        next.down_since = None;
        next.first_success = None;
        let event = Event::SiteUp(SiteUp {
            website_id: check.website_id,
            region: check.region.clone(),
            started_at: down_since,
            ended_at,
            downtime_seconds: (ended_at - down_since).num_seconds().max(0),
        });
        (next, Some(event))
    } else {
        next.successes = 0;
        next.first_success = None;
        next.failures = next.failures.saturating_add(1);
        let first = next
            .first_failure
            .get_or_insert_with(|| FirstFailure {
                at: check.started_at,
                cause: check.cause,
                status_code: check.status_code,
                message: check.message.clone(),
            })
            .clone();
        if state.is_down() || next.failures < policy.down_after.max(1) {
            return (next, None);
        }
        next.down_since = Some(first.at);
        let event = Event::SiteDown(SiteDown {
            website_id: check.website_id,
            region: check.region.clone(),
            started_at: first.at,
            cause: first.cause,
            status_code: first.status_code,
            message: first.message,
        });
        (next, Some(event))
    }
}

/// The event id of a SiteDown or SiteUp: derived from the website, region,
/// outage start and kind, so a re-published transition is recognised.
pub fn transition_id(event: &Event) -> Option<Uuid> {
    let (kind, website, region, started_at, at) = match event {
        Event::SiteDown(e) => ("down", e.website_id, &e.region, e.started_at, e.started_at),
        Event::SiteUp(e) => ("up", e.website_id, &e.region, e.started_at, e.ended_at),
        _ => return None,
    };
    let name = format!("{kind}/{website}/{region}/{}", started_at.timestamp_micros());
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&hash.as_bytes()[6..16]);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    Some(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::RegionName;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap_or_default()
    }

    fn check(secs: i64, up: bool) -> CheckCompleted {
        CheckCompleted {
            website_id: Uuid::nil(),
            region: RegionName::parse("europe").unwrap_or_else(|e| panic!("{e}")),
            scheduled_at: at(secs),
            started_at: at(secs) + chrono::Duration::milliseconds(5),
            up,
            status_code: Some(if up { 200 } else { 500 }),
            response_ms: Some(10),
            cause: (!up).then_some(FailureCause::HttpStatus),
            message: None,
            cert_not_after: None,
        }
    }

    /// Feeds results (seconds, up) and returns the events they produced.
    fn run(results: &[(i64, bool)], policy: Policy) -> (Detection, Vec<Event>) {
        results.iter().fold((Detection::default(), vec![]), |(state, mut events), (secs, up)| {
            let (next, event) = step(&state, &check(*secs, *up), policy);
            events.extend(event);
            (next, events)
        })
    }

    #[test]
    fn a_single_failed_check_raises_nothing() {
        let (state, events) = run(&[(0, true), (10, false), (20, true), (30, true)], Policy::default());
        assert!(events.is_empty());
        assert!(!state.is_down());
    }

    #[test]
    fn two_consecutive_failures_raise_site_down_dated_at_the_first() {
        let (state, events) = run(&[(0, true), (10, false), (20, false)], Policy::default());
        let [Event::SiteDown(down)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(down.started_at, check(10, false).started_at);
        assert_eq!(down.cause, Some(FailureCause::HttpStatus));
        assert_eq!(down.status_code, Some(500));
        assert!(state.is_down());
    }

    #[test]
    fn failures_during_an_outage_raise_nothing_more() {
        let (_, events) = run(&[(10, false), (20, false), (30, false), (40, false)], Policy::default());
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn the_first_success_ends_the_outage_with_its_duration() {
        let (state, events) = run(&[(10, false), (20, false), (30, false), (40, true)], Policy::default());
        let [Event::SiteDown(_), Event::SiteUp(up)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(up.started_at, check(10, false).started_at);
        assert_eq!(up.ended_at, check(40, true).started_at);
        assert_eq!(up.downtime_seconds, 30);
        assert!(!state.is_down());
    }

    #[test]
    fn recovery_can_require_several_successes_and_dates_from_the_first() {
        let policy = Policy { down_after: 2, up_after: 3 };
        let (_, events) = run(
            &[(10, false), (20, false), (30, true), (40, true), (50, false), (60, true), (70, true), (80, true)],
            policy,
        );
        let [Event::SiteDown(_), Event::SiteUp(up)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(up.ended_at, check(60, true).started_at);
    }

    #[test]
    fn the_threshold_is_configurable() {
        let policy = Policy { down_after: 3, up_after: 1 };
        assert!(run(&[(10, false), (20, false)], policy).1.is_empty());
        assert_eq!(run(&[(10, false), (20, false), (30, false)], policy).1.len(), 1);
        assert_eq!(run(&[(10, false)], Policy { down_after: 1, up_after: 1 }).1.len(), 1);
    }

    #[test]
    fn late_or_repeated_results_are_ignored_and_cannot_flap() {
        // A late success scheduled before the failures does not end the outage.
        let (state, events) = run(&[(10, false), (20, false), (5, true), (20, true), (30, false)], Policy::default());
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(state.is_down());
        // A duplicate failure does not count twice.
        let (state, events) = run(&[(10, false), (10, false)], Policy::default());
        assert!(events.is_empty());
        assert_eq!(state.failures, 1);
    }

    #[test]
    fn transition_ids_are_stable_and_distinct() {
        let (_, events) = run(&[(10, false), (20, false), (30, true)], Policy::default());
        let ids: Vec<Uuid> = events.iter().filter_map(transition_id).collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(transition_id(&events[0]), Some(ids[0]));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
    }
}
