//! The channel aggregate: where alerts go besides a website's own
//! `notify_emails` (an email list, a signed webhook, a Slack, Discord or
//! Teams incoming webhook, a Telegram chat), its commands and the pure rules
//! `decide` and `apply`.
//!
//! A channel's settings hold secrets (a chat's webhook URL is one, so is a
//! bot token or a signing secret). Events carry them only `sealed`:
//! encrypted by the services with the system's secret key, opaque here.
//! What people may read is `target`, the destination with its secret parts
//! masked.

use crate::event::{ChannelAdded, ChannelDisabled, ChannelRemoved, ChannelUpdated, Event};
use crate::values::ValueError;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// What kind of destination a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    Webhook,
    Slack,
    Discord,
    Teams,
    Telegram,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 6] =
        [Self::Email, Self::Webhook, Self::Slack, Self::Discord, Self::Teams, Self::Telegram];

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        Self::ALL.into_iter().find(|k| k.as_str() == input).ok_or_else(|| {
            ValueError::new(format!(
                "type must be one of email, webhook, slack, discord, teams, telegram, not {input:?}"
            ))
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Teams => "teams",
            Self::Telegram => "telegram",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel's name, for people: 1 to 100 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// See [`crate::values::name_text`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        crate::values::name_text(input).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel as the events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: Uuid,
    pub name: ChannelName,
    pub kind: ChannelKind,
    pub target: String,
    pub sealed: String,
    /// Alerts of every website go here, whatever their `channel_ids`.
    pub default: bool,
    pub enabled: bool,
    /// Why the system turned it off (e.g. the endpoint answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// New settings of a channel: the masked target and the sealed settings
/// always change together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub target: String,
    pub sealed: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelCommand {
    Add {
        name: ChannelName,
        kind: ChannelKind,
        settings: Settings,
        default: bool,
    },
    Change {
        name: Option<ChannelName>,
        settings: Option<Settings>,
        default: Option<bool>,
        enabled: Option<bool>,
    },
    /// The system turns a channel off (its endpoint is gone).
    Disable {
        reason: String,
    },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {0} does not exist")]
    NotFound(Uuid),
    #[error("channel {0} already exists")]
    Exists(Uuid),
}

/// Decides a command on channel `id` against its state (`None`: never
/// added, or removed).
pub fn decide(id: Uuid, state: Option<&Channel>, command: ChannelCommand) -> Result<Vec<Event>, ChannelError> {
    match (state, command) {
        (Some(_), ChannelCommand::Add { .. }) => Err(ChannelError::Exists(id)),
        (None, ChannelCommand::Add { name, kind, settings, default }) => Ok(vec![Event::ChannelAdded(ChannelAdded {
            channel_id: id,
            name,
            kind,
            target: settings.target,
            sealed: settings.sealed,
            default,
        })]),
        (None, _) => Err(ChannelError::NotFound(id)),
        (Some(_), ChannelCommand::Remove) => Ok(vec![Event::ChannelRemoved(ChannelRemoved { channel_id: id })]),
        (Some(current), ChannelCommand::Disable { .. }) if !current.enabled => Ok(vec![]),
        (Some(_), ChannelCommand::Disable { reason }) => {
            Ok(vec![Event::ChannelDisabled(ChannelDisabled { channel_id: id, reason })])
        }
        (Some(current), ChannelCommand::Change { name, settings, default, enabled }) => {
            // New sealed settings always differ (fresh nonce), so they are
            // recorded when given; the rest only when they differ.
            let update = ChannelUpdated {
                channel_id: id,
                name: name.filter(|n| *n != current.name),
                target: settings.as_ref().map(|s| s.target.clone()),
                sealed: settings.map(|s| s.sealed),
                default: default.filter(|d| *d != current.default),
                enabled: enabled.filter(|e| *e != current.enabled),
            };
            if update == (ChannelUpdated { channel_id: id, ..Default::default() }) {
                Ok(vec![])
            } else {
                Ok(vec![Event::ChannelUpdated(update)])
            }
        }
    }
}

/// Folds one event into the state of the channel it belongs to.
pub fn apply(state: Option<Channel>, event: &Event, at: DateTime<Utc>) -> Option<Channel> {
    match event {
        Event::ChannelAdded(e) => Some(Channel {
            id: e.channel_id,
            name: e.name.clone(),
            kind: e.kind,
            target: e.target.clone(),
            sealed: e.sealed.clone(),
            default: e.default,
            enabled: true,
            disabled_reason: None,
            created_at: at,
            updated_at: at,
        }),
        Event::ChannelUpdated(e) => state.map(|mut c| {
            if let Some(name) = &e.name {
                c.name = name.clone();
            }
            if let Some(target) = &e.target {
                c.target = target.clone();
            }
            if let Some(sealed) = &e.sealed {
                c.sealed = sealed.clone();
            }
            if let Some(default) = e.default {
                c.default = default;
            }
            if let Some(enabled) = e.enabled {
                c.enabled = enabled;
                if enabled {
                    c.disabled_reason = None;
                }
            }
            c.updated_at = at;
            c
        }),
        Event::ChannelDisabled(e) => {
            state.map(|c| Channel { enabled: false, disabled_reason: Some(e.reason.clone()), updated_at: at, ..c })
        }
        Event::ChannelRemoved(_) => None,
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn name(n: &str) -> ChannelName {
        ChannelName::parse(n).unwrap_or_else(|e| panic!("{e}"))
    }

    fn settings(target: &str) -> Settings {
        Settings { target: target.into(), sealed: format!("sealed:{target}") }
    }

    fn added() -> Channel {
        let command = ChannelCommand::Add {
            name: name("ops"),
            kind: ChannelKind::Slack,
            settings: settings("https://hooks.slack.com/services/T0/B0/…"),
            default: false,
        };
        let events = decide(Uuid::nil(), None, command).unwrap_or_else(|e| panic!("{e}"));
        events.iter().fold(None, |s, e| apply(s, e, now())).unwrap_or_else(|| panic!("no channel"))
    }

    #[test]
    fn an_added_channel_is_enabled_and_keeps_its_sealed_settings() {
        let channel = added();
        assert!(channel.enabled);
        assert_eq!(channel.kind, ChannelKind::Slack);
        assert!(channel.sealed.starts_with("sealed:"));
        assert_eq!(
            decide(
                channel.id,
                Some(&channel),
                ChannelCommand::Add {
                    name: name("x"),
                    kind: ChannelKind::Email,
                    settings: settings("a@b.c"),
                    default: false
                }
            ),
            Err(ChannelError::Exists(channel.id))
        );
    }

    #[test]
    fn a_change_records_only_what_differs_and_nothing_when_nothing_does() {
        let channel = added();
        let same = ChannelCommand::Change {
            name: Some(name("ops")),
            settings: None,
            default: Some(false),
            enabled: Some(true),
        };
        assert_eq!(decide(channel.id, Some(&channel), same), Ok(vec![]));
        let rename =
            ChannelCommand::Change { name: Some(name("on-call")), settings: None, default: Some(true), enabled: None };
        let events = decide(channel.id, Some(&channel), rename).unwrap_or_else(|e| panic!("{e}"));
        let after = apply(Some(channel), &events[0], now()).unwrap_or_else(|| panic!("gone"));
        assert_eq!(after.name.as_str(), "on-call");
        assert!(after.default);
    }

    #[test]
    fn a_disabled_channel_says_why_and_is_enabled_again_by_a_change() {
        let channel = added();
        let events = decide(channel.id, Some(&channel), ChannelCommand::Disable { reason: "410 Gone".into() })
            .unwrap_or_else(|e| panic!("{e}"));
        let disabled = apply(Some(channel), &events[0], now()).unwrap_or_else(|| panic!("gone"));
        assert!(!disabled.enabled);
        assert_eq!(disabled.disabled_reason.as_deref(), Some("410 Gone"));
        let again = decide(disabled.id, Some(&disabled), ChannelCommand::Disable { reason: "410 Gone".into() });
        assert_eq!(again, Ok(vec![]), "disabling twice records nothing");
        let enable = ChannelCommand::Change { name: None, settings: None, default: None, enabled: Some(true) };
        let events = decide(disabled.id, Some(&disabled), enable).unwrap_or_else(|e| panic!("{e}"));
        let enabled = apply(Some(disabled), &events[0], now()).unwrap_or_else(|| panic!("gone"));
        assert!(enabled.enabled && enabled.disabled_reason.is_none());
    }

    #[test]
    fn a_removed_channel_is_gone_and_commands_on_it_are_refused() {
        let channel = added();
        let events = decide(channel.id, Some(&channel), ChannelCommand::Remove).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(apply(Some(channel.clone()), &events[0], now()), None);
        assert_eq!(decide(channel.id, None, ChannelCommand::Remove), Err(ChannelError::NotFound(channel.id)));
    }

    #[test]
    fn kinds_parse_from_their_wire_names_only() {
        for kind in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::from(kind.as_str())));
        }
        assert!(ChannelKind::parse("pager").is_err());
        assert!(ChannelName::parse(" ").is_err());
        assert!(ChannelName::parse("a\nb").is_err());
    }
}
