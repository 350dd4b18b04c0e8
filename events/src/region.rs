//! The region aggregate: a region exists once added until it is removed,
//! and names are unique. Uniqueness is also enforced by JetStream (a region
//! is added or removed only if its subject is still at the sequence the
//! command saw), so two concurrent adds cannot both win.
//!
//! Removing a region changes the websites checked from it first, each on
//! its own subject, then records RegionRemoved:
//! - a website with other regions loses it (WebsiteUpdated);
//! - a website it is the only region of is refused ([`DomainError::RegionInUse`],
//!   409), unless forced: then the website is paused (WebsitePaused) and
//!   left with no region, so nothing about it is lost and it is checked
//!   again once given a region and resumed;
//! - the last region cannot be removed ([`DomainError::LastRegion`]): new
//!   websites need one.

use crate::event::{Event, RegionAdded, RegionRemoved, WebsitePaused, WebsiteUpdated};
use crate::values::RegionName;
use crate::website::Website;
use crate::DomainError;

pub fn decide_add(region: RegionName, exists: bool) -> Result<Vec<Event>, DomainError> {
    if exists {
        Err(DomainError::RegionExists(region))
    } else {
        Ok(vec![Event::RegionAdded(RegionAdded { region })])
    }
}

/// A request to remove a region; `force` pauses the websites it is the
/// only region of instead of refusing.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoveRegion {
    pub region: RegionName,
    pub force: bool,
}

/// Decides the removal of a region, given the regions that exist and every
/// website (those not checked from it are left alone). The events come in
/// publishing order: the websites' changes (ordered by website id), then
/// RegionRemoved.
pub fn decide_remove(
    command: RemoveRegion,
    known: &[RegionName],
    websites: &[Website],
) -> Result<Vec<Event>, DomainError> {
    let RemoveRegion { region, force } = command;
    if !known.contains(&region) {
        return Err(DomainError::RegionNotFound(region));
    }
    if known.iter().all(|r| *r == region) {
        return Err(DomainError::LastRegion(region));
    }
    let mut affected: Vec<&Website> = websites.iter().filter(|w| w.regions.contains(&region)).collect();
    affected.sort_by_key(|w| w.id);
    let stranded: Vec<uuid::Uuid> = affected.iter().filter(|w| w.regions.len() == 1).map(|w| w.id).collect();
    if !stranded.is_empty() && !force {
        return Err(DomainError::RegionInUse { region, websites: stranded });
    }
    let mut events = Vec::new();
    for website in affected {
        let remaining: Vec<RegionName> = website.regions.iter().filter(|r| **r != region).cloned().collect();
        // Paused first: the schedule drops it before its regions change.
        if remaining.is_empty() && !website.paused {
            events.push(Event::WebsitePaused(WebsitePaused { website_id: website.id }));
        }
        events.push(Event::WebsiteUpdated(WebsiteUpdated {
            website_id: website.id,
            regions: Some(remaining),
            ..Default::default()
        }));
    }
    events.push(Event::RegionRemoved(RegionRemoved { region }));
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{DownPolicy, IntervalSecs, TimeoutMs, WebsiteName, WebsiteUrl};
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn regions(names: &[&str]) -> Vec<RegionName> {
        names.iter().copied().map(region).collect()
    }

    fn website(names: &[&str], paused: bool) -> Website {
        Website {
            id: Uuid::now_v7(),
            url: WebsiteUrl::parse("https://example.com").unwrap_or_else(|e| panic!("{e}")),
            name: WebsiteName::parse("example").unwrap_or_else(|e| panic!("{e}")),
            regions: regions(names),
            interval_seconds: IntervalSecs::default(),
            timeout_ms: TimeoutMs::default(),
            notify_emails: vec![],
            failures_before_down: None,
            down_policy: DownPolicy::Any,
            channel_ids: vec![],
            paused,
            check: crate::check::CheckSpec::default(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn remove(name: &str, force: bool) -> RemoveRegion {
        RemoveRegion { region: region(name), force }
    }

    #[test]
    fn a_new_region_is_added_and_an_existing_one_is_refused() {
        let europe = RegionName::parse("europe").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(decide_add(europe.clone(), false).as_deref(), Ok([Event::RegionAdded(_)])));
        assert_eq!(decide_add(europe.clone(), true), Err(DomainError::RegionExists(europe)));
    }

    #[test]
    fn removing_an_unused_region_records_only_its_removal() {
        let other = website(&["local"], false);
        let events = decide_remove(remove("europe", false), &regions(&["europe", "local"]), &[other]);
        assert_eq!(events, Ok(vec![Event::RegionRemoved(RegionRemoved { region: region("europe") })]));
    }

    #[test]
    fn removing_an_unknown_region_is_not_found() {
        let result = decide_remove(remove("mars", true), &regions(&["local"]), &[]);
        assert_eq!(result, Err(DomainError::RegionNotFound(region("mars"))));
    }

    #[test]
    fn the_last_region_cannot_be_removed_even_by_force() {
        let result = decide_remove(remove("local", true), &regions(&["local"]), &[]);
        assert_eq!(result, Err(DomainError::LastRegion(region("local"))));
    }

    #[test]
    fn websites_with_other_regions_drop_the_removed_one() {
        let site = website(&["europe", "local"], false);
        let events =
            decide_remove(remove("europe", false), &regions(&["europe", "local"]), std::slice::from_ref(&site));
        let Ok([Event::WebsiteUpdated(update), Event::RegionRemoved(_)]) = events.as_deref() else {
            panic!("{events:?}")
        };
        assert_eq!(update.website_id, site.id);
        assert_eq!(update.regions, Some(regions(&["local"])));
        assert_eq!(update.name, None, "nothing else changes");
    }

    #[test]
    fn a_website_left_without_a_region_is_refused_naming_it_unless_forced() {
        let only = website(&["europe"], false);
        let shared = website(&["europe", "local"], false);
        let known = regions(&["europe", "local"]);
        let result = decide_remove(remove("europe", false), &known, &[only.clone(), shared.clone()]);
        assert_eq!(result, Err(DomainError::RegionInUse { region: region("europe"), websites: vec![only.id] }));
    }

    #[test]
    fn forced_a_website_left_without_a_region_is_paused_then_emptied() {
        let only = website(&["europe"], false);
        let known = regions(&["europe", "local"]);
        let events = decide_remove(remove("europe", true), &known, std::slice::from_ref(&only));
        let Ok([Event::WebsitePaused(paused), Event::WebsiteUpdated(update), Event::RegionRemoved(_)]) =
            events.as_deref()
        else {
            panic!("{events:?}")
        };
        assert_eq!(paused.website_id, only.id);
        assert_eq!(update.regions, Some(vec![]));
    }

    #[test]
    fn forced_a_website_already_paused_is_not_paused_again() {
        let only = website(&["europe"], true);
        let events = decide_remove(remove("europe", true), &regions(&["europe", "local"]), &[only]);
        assert!(matches!(events.as_deref(), Ok([Event::WebsiteUpdated(_), Event::RegionRemoved(_)])), "{events:?}");
    }

    #[test]
    fn websites_change_in_id_order_and_the_removal_comes_last() {
        let sites: Vec<Website> = (0..5).map(|_| website(&["europe", "local"], false)).rev().collect();
        let events = decide_remove(remove("europe", false), &regions(&["europe", "local"]), &sites)
            .unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<Uuid> = events
            .iter()
            .filter_map(|e| match e {
                Event::WebsiteUpdated(u) => Some(u.website_id),
                _ => None,
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(matches!(events.last(), Some(Event::RegionRemoved(_))));
    }
}
