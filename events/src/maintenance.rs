//! Maintenance windows: planned work during which checks still run and are
//! stored, but no outage alert is sent and the time does not count against
//! uptime. A window is one-off (`starts_at`..`ends_at`) or recurring (a cron
//! expression in a time zone, each occurrence `duration_minutes` long), for
//! some websites or all of them. The aggregate's rules (`decide`/`apply`)
//! and the pure question every reader asks: which intervals of a period
//! were under maintenance for a website ([`Window::occurrences`]).

use crate::event::{Event, MaintenanceEnded, MaintenanceRemoved, MaintenanceScheduled, MaintenanceUpdated};
use crate::values::ValueError;
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use uuid::Uuid;

/// The longest occurrence of a recurring window: a week.
pub const MAX_DURATION_MINUTES: u32 = 7 * 24 * 60;
/// Occurrences looked at per question, so a pathological expression (every
/// second) cannot run away.
const MAX_OCCURRENCES: usize = 100_000;

/// When a window is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timing {
    Once { starts_at: DateTime<Utc>, ends_at: DateTime<Utc> },
    Recurring { cron: String, duration_minutes: u32, timezone: String },
}

impl Timing {
    /// A one-off window; it must end after it starts.
    pub fn once(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<Timing, (&'static str, ValueError)> {
        if ends_at <= starts_at {
            return Err(("ends_at", ValueError::new("ends_at must be after starts_at")));
        }
        Ok(Timing::Once { starts_at, ends_at })
    }

    /// A recurring window: a cron expression (5 fields, minute first, or 6
    /// with seconds), an occurrence length, an IANA time zone.
    pub fn recurring(cron: &str, duration_minutes: i64, timezone: &str) -> Result<Timing, (&'static str, ValueError)> {
        let cron = cron.trim().to_owned();
        parse_cron(&cron).map_err(|e| ("cron", e))?;
        parse_zone(timezone).map_err(|e| ("timezone", e))?;
        let duration = u32::try_from(duration_minutes).ok().filter(|d| (1..=MAX_DURATION_MINUTES).contains(d)).ok_or(
            ("duration_minutes", ValueError::new(format!("duration_minutes must be 1 to {MAX_DURATION_MINUTES}"))),
        )?;
        Ok(Timing::Recurring { cron, duration_minutes: duration, timezone: timezone.trim().to_owned() })
    }
}

fn parse_cron(expression: &str) -> Result<cron::Schedule, ValueError> {
    let fields = expression.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expression}"),
        6 | 7 => expression.to_owned(),
        _ => return Err(ValueError::new("cron must have 5 fields (minute hour day-of-month month day-of-week)")),
    };
    cron::Schedule::from_str(&full).map_err(|e| ValueError::new(format!("cron is not a valid expression: {e}")))
}

fn parse_zone(name: &str) -> Result<chrono_tz::Tz, ValueError> {
    name.trim()
        .parse()
        .map_err(|_| ValueError::new(format!("timezone {name:?} is not an IANA time zone (e.g. Europe/Berlin)")))
}

/// A maintenance window as the events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub id: Uuid,
    pub name: String,
    pub website_ids: Vec<Uuid>,
    pub all_websites: bool,
    pub timing: Timing,
    /// Times it was ended early: the occurrence containing each ends there.
    pub ended: Vec<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Window {
    pub fn covers(&self, website_id: Uuid) -> bool {
        self.all_websites || self.website_ids.contains(&website_id)
    }

    /// The intervals of `[from, to]` the window is on, oldest first, cut by
    /// early ends.
    pub fn occurrences(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let raw: Vec<(DateTime<Utc>, DateTime<Utc>)> = match &self.timing {
            Timing::Once { starts_at, ends_at } => vec![(*starts_at, *ends_at)],
            Timing::Recurring { cron, duration_minutes, timezone } => {
                let (Ok(schedule), Ok(zone)) = (parse_cron(cron), parse_zone(timezone)) else { return vec![] };
                let length = Duration::minutes(i64::from(*duration_minutes));
                let start = (from - length).with_timezone(&zone);
                schedule
                    .after(&start)
                    .take(MAX_OCCURRENCES)
                    .map(|at| at.with_timezone(&Utc))
                    .take_while(|at| *at <= to)
                    .map(|at| (at, at + length))
                    .collect()
            }
        };
        raw.into_iter()
            .map(|(start, end)| {
                let cut = self.ended.iter().filter(|e| **e >= start && **e < end).min().copied();
                (start, cut.unwrap_or(end))
            })
            .map(|(start, end)| (start.max(from), end.min(to)))
            .filter(|(start, end)| start < end)
            .collect()
    }

    /// Whether the window is on at `at`.
    pub fn active_at(&self, at: DateTime<Utc>) -> bool {
        !self.occurrences(at, at + Duration::milliseconds(1)).is_empty()
    }
}

/// The intervals of `[from, to]` that `windows` put under maintenance for
/// `website_id`, merged and sorted.
pub fn excluded(
    windows: &[Window],
    website_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let all: Vec<_> = windows.iter().filter(|w| w.covers(website_id)).flat_map(|w| w.occurrences(from, to)).collect();
    merge(all)
}

/// Sorts intervals and merges those that overlap or touch.
pub fn merge(mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    intervals.sort();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[derive(Debug, Clone, PartialEq)]
pub enum MaintenanceCommand {
    Schedule {
        name: String,
        website_ids: Vec<Uuid>,
        all_websites: bool,
        timing: Timing,
    },
    Change {
        name: Option<String>,
        website_ids: Option<Vec<Uuid>>,
        all_websites: Option<bool>,
        timing: Option<Timing>,
    },
    /// End the occurrence on now (`at`), early.
    End {
        at: DateTime<Utc>,
    },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceError {
    #[error("maintenance window {0} does not exist")]
    NotFound(Uuid),
    #[error("maintenance window {0} already exists")]
    Exists(Uuid),
    #[error("maintenance window {0} is not on now")]
    NotActive(Uuid),
    #[error("a window is for website_ids or for all_websites")]
    NoWebsites,
}

pub fn decide(id: Uuid, state: Option<&Window>, command: MaintenanceCommand) -> Result<Vec<Event>, MaintenanceError> {
    match (state, command) {
        (Some(_), MaintenanceCommand::Schedule { .. }) => Err(MaintenanceError::Exists(id)),
        (None, MaintenanceCommand::Schedule { name, website_ids, all_websites, timing }) => {
            if website_ids.is_empty() && !all_websites {
                return Err(MaintenanceError::NoWebsites);
            }
            Ok(vec![Event::MaintenanceScheduled(MaintenanceScheduled {
                window_id: id,
                name,
                website_ids: dedup(website_ids),
                all_websites,
                timing,
            })])
        }
        (None, _) => Err(MaintenanceError::NotFound(id)),
        (Some(_), MaintenanceCommand::Remove) => {
            Ok(vec![Event::MaintenanceRemoved(MaintenanceRemoved { window_id: id })])
        }
        (Some(window), MaintenanceCommand::End { at }) => {
            if !window.active_at(at) {
                return Err(MaintenanceError::NotActive(id));
            }
            Ok(vec![Event::MaintenanceEnded(MaintenanceEnded { window_id: id, ended_at: at })])
        }
        (Some(window), MaintenanceCommand::Change { name, website_ids, all_websites, timing }) => {
            let website_ids = website_ids.map(dedup);
            let after_ids = website_ids.as_ref().unwrap_or(&window.website_ids);
            if after_ids.is_empty() && !all_websites.unwrap_or(window.all_websites) {
                return Err(MaintenanceError::NoWebsites);
            }
            let update = MaintenanceUpdated {
                window_id: id,
                name: name.filter(|n| *n != window.name),
                website_ids: website_ids.filter(|w| *w != window.website_ids),
                all_websites: all_websites.filter(|a| *a != window.all_websites),
                timing: timing.filter(|t| *t != window.timing),
            };
            if update == (MaintenanceUpdated { window_id: id, ..Default::default() }) {
                Ok(vec![])
            } else {
                Ok(vec![Event::MaintenanceUpdated(update)])
            }
        }
    }
}

pub fn apply(state: Option<Window>, event: &Event, at: DateTime<Utc>) -> Option<Window> {
    match event {
        Event::MaintenanceScheduled(e) => Some(Window {
            id: e.window_id,
            name: e.name.clone(),
            website_ids: e.website_ids.clone(),
            all_websites: e.all_websites,
            timing: e.timing.clone(),
            ended: vec![],
            created_at: at,
            updated_at: at,
        }),
        Event::MaintenanceUpdated(e) => state.map(|mut w| {
            if let Some(name) = &e.name {
                w.name = name.clone();
            }
            if let Some(ids) = &e.website_ids {
                w.website_ids = ids.clone();
            }
            if let Some(all) = e.all_websites {
                w.all_websites = all;
            }
            if let Some(timing) = &e.timing {
                w.timing = timing.clone();
                w.ended.clear();
            }
            w.updated_at = at;
            w
        }),
        Event::MaintenanceEnded(e) => state.map(|mut w| {
            w.ended.push(e.ended_at);
            w.updated_at = at;
            w
        }),
        Event::MaintenanceRemoved(_) => None,
        _ => state,
    }
}

fn dedup(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn window(timing: Timing) -> Window {
        Window {
            id: Uuid::nil(),
            name: "deploy".into(),
            website_ids: vec![Uuid::nil()],
            all_websites: false,
            timing,
            ended: vec![],
            created_at: t("2026-01-01T00:00:00Z"),
            updated_at: t("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn a_one_off_window_covers_its_interval_within_the_period() {
        let w = window(
            Timing::once(t("2026-03-01T10:00:00Z"), t("2026-03-01T12:00:00Z")).unwrap_or_else(|e| panic!("{e:?}")),
        );
        assert_eq!(
            w.occurrences(t("2026-03-01T11:00:00Z"), t("2026-03-02T00:00:00Z")),
            vec![(t("2026-03-01T11:00:00Z"), t("2026-03-01T12:00:00Z"))]
        );
        assert!(w.active_at(t("2026-03-01T10:00:00Z")));
        assert!(!w.active_at(t("2026-03-01T12:00:00Z")));
        assert!(Timing::once(t("2026-03-01T12:00:00Z"), t("2026-03-01T12:00:00Z")).is_err());
    }

    #[test]
    fn a_recurring_window_follows_its_cron_in_its_time_zone() {
        // Sundays 02:00 in Berlin for 60 minutes: 01:00 UTC in winter.
        let w = window(Timing::recurring("0 2 * * Sun", 60, "Europe/Berlin").unwrap_or_else(|e| panic!("{e:?}")));
        let found = w.occurrences(t("2026-01-01T00:00:00Z"), t("2026-01-15T00:00:00Z"));
        assert_eq!(
            found,
            vec![
                (t("2026-01-04T01:00:00Z"), t("2026-01-04T02:00:00Z")),
                (t("2026-01-11T01:00:00Z"), t("2026-01-11T02:00:00Z"))
            ]
        );
        // Summer time: 00:00 UTC.
        assert!(w.active_at(t("2026-07-05T00:30:00Z")));
        assert!(!w.active_at(t("2026-07-05T01:30:00Z")));
        // An occurrence that began before the period still counts in it.
        assert_eq!(
            w.occurrences(t("2026-01-04T01:30:00Z"), t("2026-01-04T03:00:00Z")),
            vec![(t("2026-01-04T01:30:00Z"), t("2026-01-04T02:00:00Z"))]
        );
    }

    #[test]
    fn bad_expressions_zones_and_durations_name_their_field() {
        assert_eq!(Timing::recurring("every sunday", 60, "UTC").map_err(|e| e.0), Err("cron"));
        assert_eq!(Timing::recurring("0 2 * * Sun", 60, "Mars/Olympus").map_err(|e| e.0), Err("timezone"));
        assert_eq!(Timing::recurring("0 2 * * Sun", 0, "UTC").map_err(|e| e.0), Err("duration_minutes"));
        assert_eq!(Timing::recurring("0 2 * * Sun", 100_000, "UTC").map_err(|e| e.0), Err("duration_minutes"));
    }

    #[test]
    fn ending_early_cuts_the_current_occurrence_only() {
        let w = window(Timing::recurring("0 * * * *", 30, "UTC").unwrap_or_else(|e| panic!("{e:?}")));
        let at = t("2026-01-01T10:10:00Z");
        let events = decide(w.id, Some(&w), MaintenanceCommand::End { at }).unwrap_or_else(|e| panic!("{e}"));
        let ended = apply(Some(w), &events[0], at).unwrap_or_else(|| panic!("gone"));
        assert!(!ended.active_at(t("2026-01-01T10:20:00Z")));
        assert!(ended.active_at(t("2026-01-01T11:20:00Z")));
        assert_eq!(
            decide(ended.id, Some(&ended), MaintenanceCommand::End { at: t("2026-01-01T10:40:00Z") }),
            Err(MaintenanceError::NotActive(ended.id))
        );
    }

    #[test]
    fn windows_merge_into_the_excluded_intervals_of_a_website() {
        let a = window(
            Timing::once(t("2026-03-01T10:00:00Z"), t("2026-03-01T12:00:00Z")).unwrap_or_else(|e| panic!("{e:?}")),
        );
        let mut b = window(
            Timing::once(t("2026-03-01T11:00:00Z"), t("2026-03-01T13:00:00Z")).unwrap_or_else(|e| panic!("{e:?}")),
        );
        b.website_ids = vec![];
        b.all_websites = true;
        let mut other = a.clone();
        other.website_ids = vec![Uuid::max()];
        let from = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single().unwrap_or_default();
        let to = from + Duration::days(1);
        assert_eq!(
            excluded(&[a, b, other], Uuid::nil(), from, to),
            vec![(t("2026-03-01T10:00:00Z"), t("2026-03-01T13:00:00Z"))]
        );
    }

    #[test]
    fn a_window_needs_websites() {
        let command = MaintenanceCommand::Schedule {
            name: "x".into(),
            website_ids: vec![],
            all_websites: false,
            timing: Timing::once(t("2026-03-01T10:00:00Z"), t("2026-03-01T12:00:00Z"))
                .unwrap_or_else(|e| panic!("{e:?}")),
        };
        assert_eq!(decide(Uuid::nil(), None, command), Err(MaintenanceError::NoWebsites));
    }
}
