//! Whether a website is down, pure. A website checked from several regions
//! is down while enough of them are down under its [`DownPolicy`] (any, a
//! majority, or all of its regions): [`DownPolicy::is_down`] over the
//! regions down now and the website's region count. Everything that asks
//! the question asks it here, so they cannot disagree:
//!
//! - [`step`]: the notifier's verdict, fed with SiteDown/SiteUp of single
//!   regions in stream order; it says when the website's outage starts and
//!   ends (one email each), with the regions affected.
//! - [`status`]: the overview's status of a website from the latest result
//!   of each region.
//! - [`downtime_seconds`] and [`down_now`]: the uptime figures, from the
//!   incidents (one interval per region outage).

use crate::event::{Event, SiteDown, SiteUp};
use crate::values::{DownPolicy, RegionName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What is known of a website while at least one of its regions is down.
/// No outage at all (every region up) is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// Regions down now, in the order they went down.
    pub down: Vec<RegionName>,
    /// Every region down since the website's outage began (or since its
    /// first region went down, while the website is not down yet).
    pub affected: Vec<RegionName>,
    /// When the website's outage began; until it is down, when its first
    /// region went down.
    pub started_at: DateTime<Utc>,
    /// Whether the website is down under its policy (the outage started and
    /// has not ended).
    pub website_down: bool,
}

/// A change of one region, as the detector announces it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegionChange<'a> {
    Down(&'a SiteDown),
    Up(&'a SiteUp),
}

impl<'a> RegionChange<'a> {
    /// The region change an event is, if it is one.
    pub fn of(event: &'a Event) -> Option<Self> {
        match event {
            Event::SiteDown(down) => Some(Self::Down(down)),
            Event::SiteUp(up) => Some(Self::Up(up)),
            _ => None,
        }
    }

    pub fn website_id(&self) -> uuid::Uuid {
        match self {
            Self::Down(down) => down.website_id,
            Self::Up(up) => up.website_id,
        }
    }
}

/// A change of the website as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum WebsiteChange {
    /// The website became down; `regions` are the regions down now.
    Started { started_at: DateTime<Utc>, regions: Vec<RegionName> },
    /// The website is no longer down; `regions` are every region that was
    /// down during the outage.
    Ended { started_at: DateTime<Utc>, ended_at: DateTime<Utc>, regions: Vec<RegionName> },
}

/// Applies one region's change to a website's outage. `policy` and
/// `regions` (how many regions the website is checked from) are the
/// website's at the time of the change; a changed count takes effect at the
/// next change. Returns the new state (`None`: every region is up) and the
/// website-level change it makes, if any.
pub fn step(
    state: Option<Outage>,
    change: RegionChange<'_>,
    policy: DownPolicy,
    regions: usize,
) -> (Option<Outage>, Option<WebsiteChange>) {
    match (change, state) {
        (RegionChange::Down(down), state) => {
            let mut outage = state.unwrap_or_else(|| Outage {
                down: vec![],
                affected: vec![],
                started_at: down.started_at,
                website_down: false,
            });
            for list in [&mut outage.down, &mut outage.affected] {
                if !list.contains(&down.region) {
                    list.push(down.region.clone());
                }
            }
            let mut website = None;
            if !outage.website_down && policy.is_down(outage.down.len(), regions) {
                outage.website_down = true;
                outage.started_at = down.started_at;
                website = Some(WebsiteChange::Started { started_at: down.started_at, regions: outage.down.clone() });
            }
            (Some(outage), website)
        }
        // A recovery of an outage never seen begin (it predates this
        // reader's history): nothing to end.
        (RegionChange::Up(_), None) => (None, None),
        (RegionChange::Up(up), Some(mut outage)) => {
            outage.down.retain(|r| *r != up.region);
            let mut website = None;
            if outage.website_down && !policy.is_down(outage.down.len(), regions) {
                website = Some(WebsiteChange::Ended {
                    started_at: outage.started_at,
                    ended_at: up.ended_at,
                    regions: std::mem::take(&mut outage.affected),
                });
                // Regions still down start the count of the next outage.
                outage.affected = outage.down.clone();
                outage.website_down = false;
            }
            ((!outage.down.is_empty()).then_some(outage), website)
        }
    }
}

/// The status of a website or of one of its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
    Down,
    /// Not checked yet.
    Pending,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Pending => "pending",
        }
    }

    /// The status of one region from its latest check (`None`: none yet).
    pub fn of_check(up: Option<bool>) -> Self {
        match up {
            None => Self::Pending,
            Some(true) => Self::Up,
            Some(false) => Self::Down,
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "up" => Ok(Self::Up),
            "down" => Ok(Self::Down),
            "pending" => Ok(Self::Pending),
            other => Err(format!("status must be up, down or pending, not {other:?}")),
        }
    }
}

/// The status of a website from the status of each of its regions: down
/// under its policy, else pending while a region has no result yet, else up.
pub fn status(policy: DownPolicy, regions: &[Status]) -> Status {
    let down = regions.iter().filter(|s| **s == Status::Down).count();
    if policy.is_down(down, regions.len()) {
        Status::Down
    } else if regions.contains(&Status::Pending) {
        Status::Pending
    } else {
        Status::Up
    }
}

/// Whether a website with `open` region outages open now is down.
pub fn down_now(policy: DownPolicy, open: usize, regions: usize) -> bool {
    policy.is_down(open, regions)
}

/// Seconds of `[from, to]` the website was down under `policy`, from its
/// region outages (`(start, end)`, open ones end at `to`; one per region
/// outage, so a region's outages never overlap each other).
pub fn downtime_seconds(
    outages: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    policy: DownPolicy,
    regions: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> i64 {
    down_intervals(outages, policy, regions, from, to).iter().map(|(s, e)| (*e - *s).num_seconds()).sum()
}

/// The intervals of `[from, to]` the website was down under `policy`,
/// oldest first, disjoint.
pub fn down_intervals(
    outages: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    policy: DownPolicy,
    regions: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    // +1 where a region outage starts, -1 where one ends; ends sort before
    // starts at the same instant, so touching outages do not overlap.
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::with_capacity(outages.len() * 2);
    for (start, end) in outages {
        let (start, end) = ((*start).max(from), end.unwrap_or(to).min(to));
        if start < end {
            edges.push((start, 1));
            edges.push((end, -1));
        }
    }
    edges.sort();
    let mut open = 0usize;
    let mut down = Vec::new();
    let mut since: Option<DateTime<Utc>> = None;
    for (at, edge) in edges {
        open = if edge > 0 { open + 1 } else { open.saturating_sub(1) };
        match (since, policy.is_down(open, regions)) {
            (None, true) => since = Some(at),
            (Some(start), false) => {
                down.push((start, at));
                since = None;
            }
            _ => {}
        }
    }
    down
}

/// Uptime over `[from, to]` as (seconds counted, seconds down): time in
/// `excluded` (paused, under maintenance; sorted and disjoint) counts for
/// neither, so planned work does not lower the figure.
pub fn counted_downtime(
    outages: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    policy: DownPolicy,
    regions: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    excluded: &[(DateTime<Utc>, DateTime<Utc>)],
) -> (i64, i64) {
    let overlap = |intervals: &[(DateTime<Utc>, DateTime<Utc>)]| -> i64 {
        intervals
            .iter()
            .flat_map(|(s, e)| {
                excluded.iter().map(move |(xs, xe)| ((*e).min(*xe) - (*s).max(*xs)).num_seconds().max(0))
            })
            .sum()
    };
    let down = down_intervals(outages, policy, regions, from, to);
    let total = (to - from).num_seconds().max(0) - overlap(&[(from, to)]);
    let down_seconds: i64 = down.iter().map(|(s, e)| (*e - *s).num_seconds()).sum::<i64>() - overlap(&down);
    (total.max(0), down_seconds.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap_or_default()
    }

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn down(name: &str, at: i64) -> Event {
        Event::SiteDown(SiteDown {
            website_id: Uuid::nil(),
            region: region(name),
            started_at: t(at),
            cause: None,
            status_code: None,
            message: None,
        })
    }

    fn up(name: &str, from: i64, at: i64) -> Event {
        Event::SiteUp(SiteUp {
            website_id: Uuid::nil(),
            region: region(name),
            started_at: t(from),
            ended_at: t(at),
            downtime_seconds: at - from,
        })
    }

    /// Given a website with `regions` regions under `policy`, when `events`
    /// arrive in order, the website-level changes they make and the state
    /// they leave.
    fn run(policy: DownPolicy, regions: usize, events: &[Event]) -> (Option<Outage>, Vec<WebsiteChange>) {
        events.iter().fold((None, vec![]), |(state, mut changes), event| {
            let change = RegionChange::of(event).unwrap_or_else(|| panic!("{event:?} is not a region change"));
            let (next, website) = step(state, change, policy, regions);
            changes.extend(website);
            (next, changes)
        })
    }

    fn started(at: i64, regions: &[&str]) -> WebsiteChange {
        WebsiteChange::Started { started_at: t(at), regions: regions.iter().map(|r| region(r)).collect() }
    }

    fn ended(from: i64, to: i64, regions: &[&str]) -> WebsiteChange {
        WebsiteChange::Ended {
            started_at: t(from),
            ended_at: t(to),
            regions: regions.iter().map(|r| region(r)).collect(),
        }
    }

    #[test]
    fn under_any_the_first_region_down_starts_the_outage_and_its_recovery_ends_it() {
        let (state, changes) = run(DownPolicy::Any, 1, &[down("local", 10), up("local", 10, 40)]);
        assert_eq!(changes, [started(10, &["local"]), ended(10, 40, &["local"])]);
        assert_eq!(state, None);
    }

    #[test]
    fn under_any_a_second_region_down_does_not_start_a_second_outage() {
        let (state, changes) = run(DownPolicy::Any, 2, &[down("local", 10), down("europe", 20)]);
        assert_eq!(changes, [started(10, &["local"])]);
        let state = state.unwrap_or_else(|| panic!("the outage is open"));
        assert!(state.website_down);
        assert_eq!(state.affected, [region("local"), region("europe")]);
    }

    #[test]
    fn under_any_the_recovery_of_one_of_two_regions_down_does_not_end_the_outage() {
        let events = [down("local", 10), down("europe", 20), up("local", 10, 30)];
        let (state, changes) = run(DownPolicy::Any, 2, &events);
        assert_eq!(changes, [started(10, &["local"])]);
        assert_eq!(state.map(|s| s.down), Some(vec![region("europe")]));
        // The last one back ends it, naming every region affected.
        let (_, changes) = run(DownPolicy::Any, 2, &[&events[..], &[up("europe", 20, 50)]].concat());
        assert_eq!(changes, [started(10, &["local"]), ended(10, 50, &["local", "europe"])]);
    }

    #[test]
    fn under_majority_one_region_of_three_is_not_an_outage_and_two_are() {
        let (_, changes) = run(DownPolicy::Majority, 3, &[down("local", 10)]);
        assert!(changes.is_empty());
        let (_, changes) = run(DownPolicy::Majority, 3, &[down("local", 10), down("europe", 20)]);
        assert_eq!(changes, [started(20, &["local", "europe"])], "dated when the majority was reached");
        let (_, changes) = run(DownPolicy::Majority, 3, &[down("local", 10), down("europe", 20), up("local", 10, 30)]);
        assert_eq!(changes, [started(20, &["local", "europe"]), ended(20, 30, &["local", "europe"])]);
    }

    #[test]
    fn under_majority_half_of_the_regions_is_not_enough() {
        let (_, changes) = run(DownPolicy::Majority, 2, &[down("local", 10)]);
        assert!(changes.is_empty());
    }

    #[test]
    fn under_all_every_region_must_be_down_and_the_first_back_ends_it() {
        let (_, changes) = run(DownPolicy::All, 2, &[down("local", 10)]);
        assert!(changes.is_empty());
        let (state, changes) = run(DownPolicy::All, 2, &[down("local", 10), down("europe", 20), up("europe", 20, 30)]);
        assert_eq!(changes, [started(20, &["local", "europe"]), ended(20, 30, &["local", "europe"])]);
        let state = state.unwrap_or_else(|| panic!("local is still down"));
        assert!(!state.website_down);
        assert_eq!(state.down, [region("local")]);
        assert_eq!(state.affected, [region("local")], "the next outage counts from the regions still down");
    }

    #[test]
    fn a_region_down_twice_counts_once() {
        let (state, changes) = run(DownPolicy::Majority, 3, &[down("local", 10), down("local", 10)]);
        assert!(changes.is_empty());
        assert_eq!(state.map(|s| s.down.len()), Some(1));
    }

    #[test]
    fn a_changed_region_count_takes_effect_at_the_next_change() {
        // Given local down of four regions under majority (not the website)...
        let (state, changes) = run(DownPolicy::Majority, 4, &[down("local", 10)]);
        assert!(changes.is_empty());
        // ...when the website is cut to two regions and europe goes down,
        // two of two are down.
        let (state, change) =
            step(state, RegionChange::of(&down("europe", 20)).unwrap_or_else(|| panic!()), DownPolicy::Majority, 2);
        assert_eq!(change, Some(started(20, &["local", "europe"])));
        // And with three regions again, europe back leaves one of three.
        let (_, change) =
            step(state, RegionChange::of(&up("europe", 20, 30)).unwrap_or_else(|| panic!()), DownPolicy::Majority, 3);
        assert_eq!(change, Some(ended(20, 30, &["local", "europe"])));
    }

    #[test]
    fn a_recovery_of_an_outage_never_seen_changes_nothing() {
        let (state, changes) = run(DownPolicy::Any, 1, &[up("local", 10, 40)]);
        assert!(changes.is_empty());
        assert_eq!(state, None);
    }

    #[test]
    fn a_website_is_down_under_its_policy_else_pending_while_a_region_is_unchecked() {
        use Status::{Down, Pending, Up};
        assert_eq!(status(DownPolicy::Any, &[Up, Down]), Down);
        assert_eq!(status(DownPolicy::Majority, &[Up, Down]), Up);
        assert_eq!(status(DownPolicy::Majority, &[Pending, Down, Down]), Down);
        assert_eq!(status(DownPolicy::All, &[Pending, Down]), Pending);
        assert_eq!(status(DownPolicy::All, &[Down, Down]), Down);
        assert_eq!(status(DownPolicy::Any, &[]), Up);
        for s in [Up, Down, Pending] {
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::Value::from(s.as_str())));
            assert_eq!(s.as_str().parse(), Ok(s));
        }
    }

    #[test]
    fn down_now_follows_the_policy() {
        assert!(down_now(DownPolicy::Any, 1, 3));
        assert!(!down_now(DownPolicy::Majority, 1, 3));
        assert!(down_now(DownPolicy::All, 3, 3));
        assert!(!down_now(DownPolicy::Any, 0, 3));
    }

    #[test]
    fn overlapping_outages_of_two_regions_count_once_under_any() {
        let outages = [(t(10), Some(t(40))), (t(30), Some(t(60)))];
        assert_eq!(downtime_seconds(&outages, DownPolicy::Any, 2, t(0), t(100)), 50);
    }

    #[test]
    fn outages_are_clipped_to_the_window_and_open_ones_run_to_its_end() {
        let outages = [(t(-50), Some(t(10))), (t(90), None)];
        assert_eq!(downtime_seconds(&outages, DownPolicy::Any, 1, t(0), t(100)), 20);
        assert_eq!(downtime_seconds(&[], DownPolicy::Any, 1, t(0), t(100)), 0);
        assert_eq!(downtime_seconds(&[(t(200), None)], DownPolicy::Any, 1, t(0), t(100)), 0);
    }

    #[test]
    fn under_majority_or_all_only_the_time_enough_regions_overlap_counts() {
        let outages = [(t(0), Some(t(50))), (t(20), Some(t(80))), (t(40), Some(t(60)))];
        assert_eq!(downtime_seconds(&outages, DownPolicy::Any, 3, t(0), t(100)), 80);
        assert_eq!(downtime_seconds(&outages, DownPolicy::Majority, 3, t(0), t(100)), 40);
        assert_eq!(downtime_seconds(&outages, DownPolicy::All, 3, t(0), t(100)), 10);
        assert_eq!(downtime_seconds(&outages, DownPolicy::All, 4, t(0), t(100)), 0);
    }

    #[test]
    fn separate_outages_add_up() {
        let outages = [(t(0), Some(t(10))), (t(20), Some(t(25))), (t(22), Some(t(24)))];
        assert_eq!(downtime_seconds(&outages, DownPolicy::Any, 2, t(0), t(100)), 15);
    }

    #[test]
    fn excluded_time_counts_neither_as_time_nor_as_downtime() {
        // Down 100..400 s of a 1000 s period; 300..600 under maintenance.
        let outages = [(t(100), Some(t(400)))];
        let (total, down) = counted_downtime(&outages, DownPolicy::Any, 1, t(0), t(1000), &[(t(300), t(600))]);
        assert_eq!((total, down), (700, 200));
        let (total, down) = counted_downtime(&outages, DownPolicy::Any, 1, t(0), t(1000), &[]);
        assert_eq!((total, down), (1000, 300));
    }
}
