//! The website aggregate: its state, the commands users give it, and the
//! pure rules `decide` (command -> events) and `apply` (event -> state).

use crate::check::CheckSpec;
use crate::event::{Event, WebsiteAdded, WebsitePaused, WebsiteRemoved, WebsiteResumed, WebsiteUpdated};
use crate::values::{
    DownPolicy, EmailAddress, FailuresBeforeDown, IntervalSecs, RegionName, TimeoutMs, WebsiteName, WebsiteUrl,
};
use crate::DomainError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

/// A monitored website as users see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Website {
    pub id: Uuid,
    pub url: WebsiteUrl,
    pub name: WebsiteName,
    pub regions: Vec<RegionName>,
    pub interval_seconds: IntervalSecs,
    pub timeout_ms: TimeoutMs,
    pub notify_emails: Vec<EmailAddress>,
    /// `None`: the detector's default (2).
    pub failures_before_down: Option<FailuresBeforeDown>,
    pub down_policy: DownPolicy,
    /// Channels its alerts go to (see [`crate::channel`]).
    pub channel_ids: Vec<Uuid>,
    /// Not checked until resumed.
    pub paused: bool,
    /// How it is checked.
    pub check: CheckSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated request to register a website. `regions: None` means every
/// region known when the command is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct AddWebsite {
    pub id: Uuid,
    pub url: WebsiteUrl,
    pub name: WebsiteName,
    pub regions: Option<Vec<RegionName>>,
    pub interval_seconds: IntervalSecs,
    pub timeout_ms: TimeoutMs,
    pub notify_emails: Vec<EmailAddress>,
    pub failures_before_down: Option<FailuresBeforeDown>,
    pub down_policy: DownPolicy,
    pub channel_ids: Vec<Uuid>,
    pub check: CheckSpec,
}

/// A validated partial update; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeWebsite {
    pub url: Option<WebsiteUrl>,
    pub name: Option<WebsiteName>,
    pub regions: Option<Vec<RegionName>>,
    pub interval_seconds: Option<IntervalSecs>,
    pub timeout_ms: Option<TimeoutMs>,
    pub notify_emails: Option<Vec<EmailAddress>>,
    pub failures_before_down: Option<FailuresBeforeDown>,
    pub down_policy: Option<DownPolicy>,
    pub channel_ids: Option<Vec<Uuid>>,
    pub check: Option<CheckSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebsiteCommand {
    Add(AddWebsite),
    Change(ChangeWebsite),
    Pause,
    Resume,
    Remove,
}

/// Decides what a command on website `id` means, given its current state
/// (`None`: never added or removed) and the regions that exist.
pub fn decide(
    id: Uuid,
    state: Option<&Website>,
    command: WebsiteCommand,
    known_regions: &[RegionName],
) -> Result<Vec<Event>, DomainError> {
    match (state, command) {
        (Some(_), WebsiteCommand::Add(_)) => Err(DomainError::WebsiteExists(id)),
        (None, WebsiteCommand::Add(add)) => {
            let regions = match add.regions {
                Some(regions) => checked_regions(regions, known_regions)?,
                None => checked_regions(known_regions.to_vec(), known_regions)?,
            };
            Ok(vec![Event::WebsiteAdded(WebsiteAdded {
                website_id: id,
                url: add.url,
                name: add.name,
                regions,
                interval_seconds: add.interval_seconds,
                timeout_ms: add.timeout_ms,
                notify_emails: dedup(add.notify_emails),
                failures_before_down: add.failures_before_down,
                // The default is not written, so old and new events agree.
                down_policy: Some(add.down_policy).filter(|p| *p != DownPolicy::Any),
                channel_ids: dedup(add.channel_ids),
                check: Some(add.check).filter(|c| !c.is_default()),
            })])
        }
        (None, _) => Err(DomainError::WebsiteNotFound(id)),
        (Some(_), WebsiteCommand::Remove) => Ok(vec![Event::WebsiteRemoved(WebsiteRemoved { website_id: id })]),
        // Pausing a paused website (or resuming a running one) records nothing.
        (Some(current), WebsiteCommand::Pause) if current.paused => Ok(vec![]),
        (Some(_), WebsiteCommand::Pause) => Ok(vec![Event::WebsitePaused(WebsitePaused { website_id: id })]),
        (Some(current), WebsiteCommand::Resume) if !current.paused => Ok(vec![]),
        // Left without a region when its last one was removed (forced).
        (Some(current), WebsiteCommand::Resume) if current.regions.is_empty() => Err(DomainError::NoRegionToResume(id)),
        (Some(_), WebsiteCommand::Resume) => Ok(vec![Event::WebsiteResumed(WebsiteResumed { website_id: id })]),
        (Some(current), WebsiteCommand::Change(change)) => {
            let regions = change.regions.map(|r| checked_regions(r, known_regions)).transpose()?;
            // Only what actually differs is recorded, so the history shows
            // real changes and a no-op PATCH publishes nothing.
            let update = WebsiteUpdated {
                website_id: id,
                url: change.url.filter(|v| *v != current.url),
                name: change.name.filter(|v| *v != current.name),
                regions: regions.filter(|v| *v != current.regions),
                interval_seconds: change.interval_seconds.filter(|v| *v != current.interval_seconds),
                timeout_ms: change.timeout_ms.filter(|v| *v != current.timeout_ms),
                notify_emails: change.notify_emails.map(dedup).filter(|v| *v != current.notify_emails),
                failures_before_down: change.failures_before_down.filter(|v| Some(*v) != current.failures_before_down),
                down_policy: change.down_policy.filter(|v| *v != current.down_policy),
                channel_ids: change.channel_ids.map(dedup).filter(|v| *v != current.channel_ids),
                check: change.check.filter(|v| *v != current.check),
            };
            if update == (WebsiteUpdated { website_id: id, ..Default::default() }) {
                Ok(vec![])
            } else {
                Ok(vec![Event::WebsiteUpdated(update)])
            }
        }
    }
}

/// Folds one event into the state of the website it belongs to. Events of
/// other aggregates leave the state unchanged.
pub fn apply(state: Option<Website>, event: &Event, at: DateTime<Utc>) -> Option<Website> {
    match event {
        Event::WebsiteAdded(e) => Some(Website {
            id: e.website_id,
            url: e.url.clone(),
            name: e.name.clone(),
            regions: e.regions.clone(),
            interval_seconds: e.interval_seconds,
            timeout_ms: e.timeout_ms,
            notify_emails: e.notify_emails.clone(),
            failures_before_down: e.failures_before_down,
            down_policy: e.down_policy.unwrap_or_default(),
            channel_ids: e.channel_ids.clone(),
            paused: false,
            check: e.check.clone().unwrap_or_default(),
            created_at: at,
            updated_at: at,
        }),
        Event::WebsiteUpdated(e) => state.map(|mut w| {
            if let Some(url) = &e.url {
                w.url = url.clone();
            }
            if let Some(name) = &e.name {
                w.name = name.clone();
            }
            if let Some(regions) = &e.regions {
                w.regions = regions.clone();
            }
            if let Some(interval) = e.interval_seconds {
                w.interval_seconds = interval;
            }
            if let Some(timeout) = e.timeout_ms {
                w.timeout_ms = timeout;
            }
            if let Some(emails) = &e.notify_emails {
                w.notify_emails = emails.clone();
            }
            if let Some(failures) = e.failures_before_down {
                w.failures_before_down = Some(failures);
            }
            if let Some(policy) = e.down_policy {
                w.down_policy = policy;
            }
            if let Some(channels) = &e.channel_ids {
                w.channel_ids = channels.clone();
            }
            if let Some(check) = &e.check {
                w.check = check.clone();
            }
            w.updated_at = at;
            w
        }),
        Event::WebsitePaused(_) => state.map(|w| Website { paused: true, updated_at: at, ..w }),
        Event::WebsiteResumed(_) => state.map(|w| Website { paused: false, updated_at: at, ..w }),
        Event::WebsiteRemoved(_) => None,
        _ => state,
    }
}

/// Sorted, de-duplicated, non-empty and all known.
fn checked_regions(regions: Vec<RegionName>, known: &[RegionName]) -> Result<Vec<RegionName>, DomainError> {
    let set: BTreeSet<RegionName> = regions.into_iter().collect();
    if set.is_empty() {
        return Err(DomainError::NoRegions);
    }
    let unknown: Vec<RegionName> = set.iter().filter(|r| !known.contains(r)).cloned().collect();
    if !unknown.is_empty() {
        return Err(DomainError::UnknownRegions(unknown));
    }
    Ok(set.into_iter().collect())
}

fn dedup<T: Ord + Clone>(items: Vec<T>) -> Vec<T> {
    let mut seen = BTreeSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn add(regions: Option<Vec<&str>>) -> WebsiteCommand {
        WebsiteCommand::Add(AddWebsite {
            id: Uuid::nil(),
            url: WebsiteUrl::parse("https://google.com").unwrap_or_else(|e| panic!("{e}")),
            name: WebsiteName::parse("google").unwrap_or_else(|e| panic!("{e}")),
            regions: regions.map(|r| r.into_iter().map(region).collect()),
            interval_seconds: IntervalSecs::default(),
            timeout_ms: TimeoutMs::default(),
            notify_emails: vec![],
            failures_before_down: None,
            down_policy: DownPolicy::Any,
            channel_ids: vec![],
            check: CheckSpec::default(),
        })
    }

    fn added(regions: &[&str]) -> Website {
        let known: Vec<RegionName> = regions.iter().copied().map(region).collect();
        let events = decide(Uuid::nil(), None, add(None), &known).unwrap_or_else(|e| panic!("{e}"));
        let at = DateTime::<Utc>::UNIX_EPOCH;
        events.iter().fold(None, |s, e| apply(s, e, at)).unwrap_or_else(|| panic!("no website after WebsiteAdded"))
    }

    #[test]
    fn adding_without_regions_checks_from_every_known_region() {
        let known = vec![region("local"), region("europe")];
        let events = decide(Uuid::nil(), None, add(None), &known);
        let Ok([Event::WebsiteAdded(e)]) = events.as_deref() else {
            panic!("expected one WebsiteAdded, got {events:?}")
        };
        assert_eq!(e.regions, vec![region("europe"), region("local")]);
        assert_eq!(e.interval_seconds.get(), 180);
    }

    #[test]
    fn adding_with_an_unknown_region_is_refused_naming_it() {
        let known = vec![region("local")];
        let result = decide(Uuid::nil(), None, add(Some(vec!["local", "mars"])), &known);
        assert_eq!(result, Err(DomainError::UnknownRegions(vec![region("mars")])));
    }

    #[test]
    fn adding_with_an_empty_region_list_is_refused() {
        let result = decide(Uuid::nil(), None, add(Some(vec![])), &[region("local")]);
        assert_eq!(result, Err(DomainError::NoRegions));
    }

    #[test]
    fn adding_when_no_region_exists_is_refused() {
        assert_eq!(decide(Uuid::nil(), None, add(None), &[]), Err(DomainError::NoRegions));
    }

    #[test]
    fn duplicate_regions_are_collapsed() {
        let known = vec![region("local")];
        let events = decide(Uuid::nil(), None, add(Some(vec!["local", "local"])), &known);
        let Ok([Event::WebsiteAdded(e)]) = events.as_deref() else { panic!("{events:?}") };
        assert_eq!(e.regions, vec![region("local")]);
    }

    #[test]
    fn adding_a_website_that_exists_is_refused() {
        let site = added(&["local"]);
        let result = decide(Uuid::nil(), Some(&site), add(None), &[region("local")]);
        assert_eq!(result, Err(DomainError::WebsiteExists(Uuid::nil())));
    }

    #[test]
    fn changing_or_removing_an_unknown_website_is_not_found() {
        let id = Uuid::now_v7();
        for command in [WebsiteCommand::Remove, WebsiteCommand::Change(ChangeWebsite::default())] {
            assert_eq!(decide(id, None, command, &[]), Err(DomainError::WebsiteNotFound(id)));
        }
    }

    #[test]
    fn a_change_records_only_what_differs() {
        let site = added(&["local"]);
        let change = ChangeWebsite {
            name: Some(WebsiteName::parse("renamed").unwrap_or_else(|e| panic!("{e}"))),
            url: Some(site.url.clone()),
            ..Default::default()
        };
        let events = decide(site.id, Some(&site), WebsiteCommand::Change(change), &[region("local")]);
        let Ok([Event::WebsiteUpdated(e)]) = events.as_deref() else { panic!("{events:?}") };
        assert_eq!(e.name.as_ref().map(|n| n.as_str()), Some("renamed"));
        assert_eq!(e.url, None);
    }

    #[test]
    fn a_change_that_changes_nothing_publishes_nothing() {
        let site = added(&["local"]);
        let change = ChangeWebsite { name: Some(site.name.clone()), ..Default::default() };
        let events = decide(site.id, Some(&site), WebsiteCommand::Change(change), &[region("local")]);
        assert_eq!(events, Ok(vec![]));
    }

    #[test]
    fn a_paused_website_without_a_region_cannot_be_resumed_until_given_one() {
        let site = Website { paused: true, regions: vec![], ..added(&["local"]) };
        let result = decide(site.id, Some(&site), WebsiteCommand::Resume, &[region("local")]);
        assert_eq!(result, Err(DomainError::NoRegionToResume(site.id)));
        let change = ChangeWebsite { regions: Some(vec![region("local")]), ..Default::default() };
        let events = decide(site.id, Some(&site), WebsiteCommand::Change(change), &[region("local")])
            .unwrap_or_else(|e| panic!("{e}"));
        let given = events.iter().try_fold(site.clone(), |s, e| apply(Some(s), e, site.created_at));
        let resumed = decide(site.id, given.as_ref(), WebsiteCommand::Resume, &[region("local")]);
        assert!(matches!(resumed.as_deref(), Ok([Event::WebsiteResumed(_)])), "{resumed:?}");
    }

    #[test]
    fn applying_an_update_merges_it_and_moves_updated_at() {
        let site = added(&["local"]);
        let later = site.created_at + chrono::Duration::seconds(5);
        let update = Event::WebsiteUpdated(WebsiteUpdated {
            website_id: site.id,
            interval_seconds: Some(IntervalSecs::parse(60).unwrap_or_else(|e| panic!("{e}"))),
            ..Default::default()
        });
        let after = apply(Some(site.clone()), &update, later).unwrap_or_else(|| panic!("gone"));
        assert_eq!(after.interval_seconds.get(), 60);
        assert_eq!(after.name, site.name);
        assert_eq!(after.created_at, site.created_at);
        assert_eq!(after.updated_at, later);
    }

    #[test]
    #[allow(clippy::manual_try_fold)] // apply is a fold over Option states, not a Try chain
    fn a_removed_website_has_no_state_and_cannot_be_changed() {
        let site = added(&["local"]);
        let events = decide(site.id, Some(&site), WebsiteCommand::Remove, &[]).unwrap_or_else(|e| panic!("{e}"));
        let state = events.iter().fold(Some(site.clone()), |s, e| apply(s, e, site.created_at));
        assert_eq!(state, None);
        let again = decide(site.id, state.as_ref(), WebsiteCommand::Remove, &[]);
        assert_eq!(again, Err(DomainError::WebsiteNotFound(site.id)));
    }
}
