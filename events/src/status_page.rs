//! Public status pages: the page aggregate (a `slug`, a title, optional
//! description and logo, groups of websites under display names), its
//! subscribers (email, double opt-in) and the updates a team posts to an
//! incident. The pure rules `decide` and `apply`, the incident id every
//! reader derives from an outage, and the value types with their checks.
//!
//! What a page publishes is only what its groups name: a website's display
//! name, and its URL only when `show_url` says so. A subscriber's email
//! address is in the events (it is needed to mail them) but never on a
//! public route; their confirmation and unsubscribe tokens are only in the
//! events as SHA-256 hashes.

use crate::event::{
    Event, IncidentUpdatePosted, StatusPageCreated, StatusPageRemoved, StatusPageUpdated, StatusSubscriberAdded,
    StatusSubscriberConfirmed, StatusSubscriberRemoved,
};
use crate::values::{EmailAddress, ValueError, WebsiteUrl};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The longest title, group or display name.
pub const MAX_TITLE_CHARS: usize = 100;
/// The longest description and the longest incident update text.
pub const MAX_TEXT_CHARS: usize = 5000;
/// Groups per page and websites per page (all groups together).
pub const MAX_GROUPS: usize = 50;
pub const MAX_WEBSITES: usize = 500;

/// A page's address under `/status/`: 1 to 64 of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let valid = !input.is_empty()
            && input.len() <= 64
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Slug(input.to_owned()))
        } else {
            Err(ValueError::new(format!("slug must be 1 to 64 of a-z, 0-9 and -, not {input:?}")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text people read on the page: trimmed, 1..`max` characters, no control
/// characters but line breaks (when `lines`).
pub fn text(input: &str, max: usize, lines: bool) -> Result<String, ValueError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ValueError::new("must not be empty"));
    }
    if text.chars().count() > max {
        return Err(ValueError::new(format!("must be at most {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && !(lines && (c == '\n' || c == '\r' || c == '\t'))) {
        return Err(ValueError::new("must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// A logo's address: an http(s) URL, as websites' URLs are checked.
pub fn logo_url(input: &str) -> Result<String, ValueError> {
    WebsiteUrl::parse(input).map(|u| u.as_str().to_owned())
}

/// A website as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PageWebsite {
    pub website_id: Uuid,
    /// What the public sees instead of the website's own name.
    pub name: String,
    /// Whether the checked URL is shown too (not by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub show_url: bool,
}

/// A named group of websites on a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PageGroup {
    pub name: String,
    pub websites: Vec<PageWebsite>,
}

/// Where an incident stands, as the team tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [Self::Investigating, Self::Identified, Self::Monitoring, Self::Resolved];

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        Self::ALL.into_iter().find(|s| s.as_str() == input).ok_or_else(|| {
            ValueError::new(format!("status must be investigating, identified, monitoring or resolved, not {input:?}"))
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Investigating => "investigating",
            Self::Identified => "identified",
            Self::Monitoring => "monitoring",
            Self::Resolved => "resolved",
        }
    }
}

/// The public incident of a website's outage: the one that began when a
/// region went down while no other was, at `started_at`. Derived, so the
/// projection and every reader agree on it across replays.
pub fn incident_id(website_id: Uuid, started_at: DateTime<Utc>) -> Uuid {
    let name = format!("incident/{website_id}/{}", started_at.timestamp_micros());
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// A status page as the events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub id: Uuid,
    pub slug: Slug,
    pub title: String,
    pub description: Option<String>,
    pub logo_url: Option<String>,
    pub groups: Vec<PageGroup>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Page {
    /// Every website the page shows, once, in page order.
    pub fn websites(&self) -> Vec<&PageWebsite> {
        let mut seen = std::collections::HashSet::new();
        self.groups.iter().flat_map(|g| &g.websites).filter(|w| seen.insert(w.website_id)).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PageCommand {
    Create {
        slug: Slug,
        title: String,
        description: Option<String>,
        logo_url: Option<String>,
        groups: Vec<PageGroup>,
    },
    /// `Some("")` of description or logo_url clears it.
    Change {
        slug: Option<Slug>,
        title: Option<String>,
        description: Option<String>,
        logo_url: Option<String>,
        groups: Option<Vec<PageGroup>>,
    },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("status page {0} does not exist")]
    NotFound(Uuid),
    #[error("status page {0} already exists")]
    Exists(Uuid),
    #[error("slug {0} is taken by another status page")]
    SlugTaken(Slug),
}

/// Decides a command on page `id`; `slug_owner` is the page that holds the
/// command's slug now, if any (looked up first).
pub fn decide(
    id: Uuid,
    state: Option<&Page>,
    command: PageCommand,
    slug_owner: Option<Uuid>,
) -> Result<Vec<Event>, PageError> {
    let taken = |slug: &Slug| slug_owner.is_some_and(|owner| owner != id).then(|| PageError::SlugTaken(slug.clone()));
    match (state, command) {
        (Some(_), PageCommand::Create { .. }) => Err(PageError::Exists(id)),
        (None, PageCommand::Create { slug, title, description, logo_url, groups }) => {
            if let Some(e) = taken(&slug) {
                return Err(e);
            }
            Ok(vec![Event::StatusPageCreated(StatusPageCreated {
                page_id: id,
                slug,
                title,
                description,
                logo_url,
                groups,
            })])
        }
        (None, _) => Err(PageError::NotFound(id)),
        (Some(_), PageCommand::Remove) => Ok(vec![Event::StatusPageRemoved(StatusPageRemoved { page_id: id })]),
        (Some(page), PageCommand::Change { slug, title, description, logo_url, groups }) => {
            if let Some(e) = slug.as_ref().filter(|s| **s != page.slug).and_then(taken) {
                return Err(e);
            }
            let current = |value: &Option<String>| value.clone().unwrap_or_default();
            let update = StatusPageUpdated {
                page_id: id,
                slug: slug.filter(|s| *s != page.slug),
                title: title.filter(|t| *t != page.title),
                description: description.filter(|d| *d != current(&page.description)),
                logo_url: logo_url.filter(|l| *l != current(&page.logo_url)),
                groups: groups.filter(|g| *g != page.groups),
            };
            if update == (StatusPageUpdated { page_id: id, ..Default::default() }) {
                Ok(vec![])
            } else {
                Ok(vec![Event::StatusPageUpdated(update)])
            }
        }
    }
}

pub fn apply(state: Option<Page>, event: &Event, at: DateTime<Utc>) -> Option<Page> {
    let cleared = |value: &String| (!value.is_empty()).then(|| value.clone());
    match event {
        Event::StatusPageCreated(e) => Some(Page {
            id: e.page_id,
            slug: e.slug.clone(),
            title: e.title.clone(),
            description: e.description.clone(),
            logo_url: e.logo_url.clone(),
            groups: e.groups.clone(),
            created_at: at,
            updated_at: at,
        }),
        Event::StatusPageUpdated(e) => state.map(|mut page| {
            if let Some(slug) = &e.slug {
                page.slug = slug.clone();
            }
            if let Some(title) = &e.title {
                page.title = title.clone();
            }
            if let Some(description) = &e.description {
                page.description = cleared(description);
            }
            if let Some(logo) = &e.logo_url {
                page.logo_url = cleared(logo);
            }
            if let Some(groups) = &e.groups {
                page.groups = groups.clone();
            }
            page.updated_at = at;
            page
        }),
        Event::StatusPageRemoved(_) => None,
        _ => state,
    }
}

/// A subscriber of a page as the events leave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub id: Uuid,
    pub page_id: Uuid,
    pub email: EmailAddress,
    pub confirm_hash: String,
    pub unsubscribe_hash: String,
    pub confirmed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberError {
    #[error("no such subscription")]
    Unknown,
}

/// Someone asked to be mailed: a subscriber, unconfirmed until the link
/// mailed to them is followed. A confirmed subscriber asking again changes
/// nothing (and the answer does not say so).
pub fn subscribe(
    page_id: Uuid,
    existing: Option<&Subscriber>,
    subscriber_id: Uuid,
    email: EmailAddress,
    confirm_hash: String,
    unsubscribe_hash: String,
) -> Vec<Event> {
    if existing.is_some_and(|s| s.confirmed) {
        return vec![];
    }
    vec![Event::StatusSubscriberAdded(StatusSubscriberAdded {
        page_id,
        subscriber_id,
        email,
        confirm_hash,
        unsubscribe_hash,
    })]
}

/// The subscriber whose confirmation link was followed; following it twice
/// records nothing more.
pub fn confirm(subscriber: Option<&Subscriber>) -> Result<Vec<Event>, SubscriberError> {
    let subscriber = subscriber.ok_or(SubscriberError::Unknown)?;
    if subscriber.confirmed {
        return Ok(vec![]);
    }
    Ok(vec![Event::StatusSubscriberConfirmed(StatusSubscriberConfirmed {
        page_id: subscriber.page_id,
        subscriber_id: subscriber.id,
    })])
}

/// The subscriber whose unsubscribe link was followed.
pub fn unsubscribe(subscriber: Option<&Subscriber>) -> Result<Vec<Event>, SubscriberError> {
    let subscriber = subscriber.ok_or(SubscriberError::Unknown)?;
    Ok(vec![Event::StatusSubscriberRemoved(StatusSubscriberRemoved {
        page_id: subscriber.page_id,
        subscriber_id: subscriber.id,
    })])
}

/// An update to a website's public incident: its status and text, and
/// optionally the title the public sees instead of the automatic one.
pub fn post_update(
    website_id: Uuid,
    incident_id: Uuid,
    update_id: Uuid,
    status: IncidentStatus,
    message: String,
    title: Option<String>,
) -> Event {
    Event::IncidentUpdatePosted(IncidentUpdatePosted { website_id, incident_id, update_id, status, message, title })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn create(s: &str) -> PageCommand {
        PageCommand::Create {
            slug: slug(s),
            title: "Acme status".into(),
            description: None,
            logo_url: None,
            groups: vec![PageGroup {
                name: "Web".into(),
                websites: vec![PageWebsite { website_id: Uuid::nil(), name: "Shop".into(), show_url: false }],
            }],
        }
    }

    fn created(id: Uuid) -> Page {
        let events = decide(id, None, create("acme"), None).unwrap_or_else(|e| panic!("{e}"));
        apply(None, &events[0], Utc::now()).unwrap_or_else(|| panic!("no page"))
    }

    #[test]
    fn slugs_are_lowercase_letters_digits_and_dashes_up_to_64() {
        assert!(Slug::parse("acme-status-2").is_ok());
        assert!(Slug::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Acme", "a b", "a_b", "é", &"a".repeat(65), "../x"] {
            assert!(Slug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_slug_held_by_another_page_is_refused_and_ones_own_is_not() {
        let id = Uuid::now_v7();
        let other = Uuid::now_v7();
        assert_eq!(decide(id, None, create("acme"), Some(other)), Err(PageError::SlugTaken(slug("acme"))));
        let page = created(id);
        let rename = |s: &str| PageCommand::Change {
            slug: Some(slug(s)),
            title: None,
            description: None,
            logo_url: None,
            groups: None,
        };
        assert_eq!(decide(id, Some(&page), rename("taken"), Some(other)), Err(PageError::SlugTaken(slug("taken"))));
        assert_eq!(decide(id, Some(&page), rename("acme"), Some(id)), Ok(vec![]), "unchanged records nothing");
    }

    #[test]
    fn a_change_records_only_what_differs_and_an_empty_description_clears_it() {
        let id = Uuid::now_v7();
        let page = created(id);
        let change = PageCommand::Change {
            slug: None,
            title: Some("Acme status".into()),
            description: Some("All our services".into()),
            logo_url: None,
            groups: None,
        };
        let events = decide(id, Some(&page), change, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            events,
            vec![Event::StatusPageUpdated(StatusPageUpdated {
                page_id: id,
                description: Some("All our services".into()),
                ..Default::default()
            })]
        );
        let described = apply(Some(page), &events[0], Utc::now()).unwrap_or_else(|| panic!("gone"));
        assert_eq!(described.description.as_deref(), Some("All our services"));
        let clear = PageCommand::Change {
            slug: None,
            title: None,
            description: Some(String::new()),
            logo_url: None,
            groups: None,
        };
        let events = decide(id, Some(&described), clear, None).unwrap_or_else(|e| panic!("{e}"));
        let cleared = apply(Some(described), &events[0], Utc::now()).unwrap_or_else(|| panic!("gone"));
        assert_eq!(cleared.description, None);
    }

    #[test]
    fn a_removed_page_is_gone_and_cannot_be_changed() {
        let id = Uuid::now_v7();
        let page = created(id);
        let events = decide(id, Some(&page), PageCommand::Remove, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(apply(Some(page), &events[0], Utc::now()), None);
        assert_eq!(decide(id, None, PageCommand::Remove, None), Err(PageError::NotFound(id)));
    }

    #[test]
    fn a_confirmed_subscriber_subscribing_again_records_nothing() {
        let email = EmailAddress::parse("a@example.com").unwrap_or_else(|e| panic!("{e}"));
        let mut subscriber = Subscriber {
            id: Uuid::now_v7(),
            page_id: Uuid::now_v7(),
            email: email.clone(),
            confirm_hash: "c".into(),
            unsubscribe_hash: "u".into(),
            confirmed: false,
        };
        let again =
            subscribe(subscriber.page_id, Some(&subscriber), Uuid::now_v7(), email.clone(), "c2".into(), "u2".into());
        assert_eq!(again.len(), 1, "an unconfirmed one gets a new link");
        assert_eq!(confirm(Some(&subscriber)).map(|e| e.len()), Ok(1));
        subscriber.confirmed = true;
        assert_eq!(confirm(Some(&subscriber)), Ok(vec![]));
        assert!(
            subscribe(subscriber.page_id, Some(&subscriber), Uuid::now_v7(), email, "c".into(), "u".into()).is_empty()
        );
        assert_eq!(unsubscribe(None), Err(SubscriberError::Unknown));
    }

    #[test]
    fn an_outage_names_the_same_incident_every_time() {
        let website = Uuid::now_v7();
        let at = Utc::now();
        assert_eq!(incident_id(website, at), incident_id(website, at));
        assert_ne!(incident_id(website, at), incident_id(website, at + chrono::Duration::seconds(1)));
        assert_ne!(incident_id(website, at), incident_id(Uuid::now_v7(), at));
    }

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(text("  Down  ", 10, false).ok().as_deref(), Some("Down"));
        assert!(text("", 10, false).is_err());
        assert!(text("x".repeat(11).as_str(), 10, false).is_err());
        assert!(text("a\nb", 10, false).is_err());
        assert!(text("a\nb", 10, true).is_ok());
        assert_eq!(IncidentStatus::parse("monitoring"), Ok(IncidentStatus::Monitoring));
        assert!(IncidentStatus::parse("fixed").is_err());
    }
}
