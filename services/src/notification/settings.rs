//! What a channel sends to, as sealed in its events ([`crate::secrets`]):
//! the checks of what a user gives for each kind, the masked `target`
//! people may read, and webhook signing secrets in the Standard Webhooks
//! form (`whsec_` and the base64 of 24 random bytes), with rotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use events::{ChannelKind, EmailAddress, WebsiteUrl};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use url::{Host, Url};

/// How long the previous signing secret still signs after a rotation.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;
const MAX_ADDRESSES: usize = 20;

/// A channel's settings, secrets included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelSettings {
    Email { addresses: Vec<String> },
    Webhook { url: String, secrets: Vec<SigningSecret> },
    Slack { url: String },
    Discord { url: String },
    Teams { url: String },
    Telegram { bot_token: String, chat_id: String },
}

/// A webhook signing secret; a rotated-out one signs until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a user gives for a channel; which fields count depends on the kind.
#[derive(Debug, Clone, Default)]
pub struct ChannelInput {
    pub url: Option<String>,
    pub emails: Option<Vec<String>>,
    pub bot_token: Option<String>,
    pub chat_id: Option<String>,
}

/// A refused field, named as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
}

fn refused(field: &'static str, message: impl Into<String>) -> Refused {
    Refused { field, message: message.into() }
}

impl ChannelSettings {
    pub fn kind(&self) -> ChannelKind {
        match self {
            Self::Email { .. } => ChannelKind::Email,
            Self::Webhook { .. } => ChannelKind::Webhook,
            Self::Slack { .. } => ChannelKind::Slack,
            Self::Discord { .. } => ChannelKind::Discord,
            Self::Teams { .. } => ChannelKind::Teams,
            Self::Telegram { .. } => ChannelKind::Telegram,
        }
    }

    /// Checks `input` for a channel of `kind`. A new webhook gets a fresh
    /// signing secret; `previous` (an update) keeps the secrets it had.
    /// `allow_private`: loopback and private addresses stand in for the chat
    /// services (local runs and tests).
    pub fn from_input(
        kind: ChannelKind,
        input: ChannelInput,
        previous: Option<&ChannelSettings>,
        allow_private: bool,
    ) -> Result<ChannelSettings, Refused> {
        let used: &[&'static str] = match kind {
            ChannelKind::Email => &["emails"],
            ChannelKind::Telegram => &["bot_token", "chat_id"],
            _ => &["url"],
        };
        for (field, given) in [
            ("url", input.url.is_some()),
            ("emails", input.emails.is_some()),
            ("bot_token", input.bot_token.is_some()),
            ("chat_id", input.chat_id.is_some()),
        ] {
            if given && !used.contains(&field) {
                return Err(refused(field, format!("{field} is not a setting of a {kind} channel")));
            }
        }
        let url = |input: &ChannelInput| -> Result<Url, Refused> {
            let raw = input.url.as_deref().ok_or_else(|| refused("url", format!("url is required for {kind}")))?;
            if raw.chars().count() > 2048 {
                return Err(refused("url", "url must be at most 2048 characters"));
            }
            let parsed = WebsiteUrl::parse(raw).map_err(|e| refused("url", e.message))?;
            Url::parse(parsed.as_str()).map_err(|e| refused("url", format!("url is not an absolute URL: {e}")))
        };
        let chat = |input: &ChannelInput, service: &str, valid: fn(&Url) -> bool| -> Result<String, Refused> {
            let url = url(input)?;
            if valid(&url) || (allow_private && is_local(&url)) {
                Ok(url.to_string())
            } else {
                Err(refused("url", format!("url must be a {service} incoming webhook URL ({})", example(kind))))
            }
        };
        match kind {
            ChannelKind::Email => {
                let emails = input.emails.unwrap_or_default();
                if emails.is_empty() || emails.len() > MAX_ADDRESSES {
                    return Err(refused("emails", format!("emails must list 1 to {MAX_ADDRESSES} addresses")));
                }
                let mut addresses = Vec::with_capacity(emails.len());
                for raw in &emails {
                    if raw.chars().count() > 254 {
                        return Err(refused("emails", "an address must be at most 254 characters"));
                    }
                    let address = EmailAddress::parse(raw).map_err(|e| refused("emails", e.message))?;
                    address.as_str().parse::<lettre::Address>().map_err(|e| {
                        refused("emails", format!("'{address}' is not an address mail can be sent to ({e})"))
                    })?;
                    if !addresses.contains(&address.to_string()) {
                        addresses.push(address.to_string());
                    }
                }
                Ok(Self::Email { addresses })
            }
            ChannelKind::Webhook => {
                let url = url(&input)?;
                let secrets = match previous {
                    Some(Self::Webhook { secrets, .. }) => secrets.clone(),
                    _ => vec![SigningSecret { secret: new_signing_secret(), expires_at: None }],
                };
                Ok(Self::Webhook { url: url.to_string(), secrets })
            }
            ChannelKind::Slack => Ok(Self::Slack { url: chat(&input, "Slack", is_slack)? }),
            ChannelKind::Discord => Ok(Self::Discord { url: chat(&input, "Discord", is_discord)? }),
            ChannelKind::Teams => Ok(Self::Teams { url: chat(&input, "Microsoft Teams", is_teams)? }),
            ChannelKind::Telegram => {
                let bot_token = input.bot_token.unwrap_or_default();
                let token_ok = bot_token.split_once(':').is_some_and(|(id, key)| {
                    !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_digit())
                        && (20..=200).contains(&key.len())
                        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                });
                if !token_ok {
                    return Err(refused("bot_token", "bot_token must be a Telegram bot token (123456:ABC-DEF...)"));
                }
                let chat_id = input.chat_id.unwrap_or_default().trim().to_owned();
                let numeric = chat_id.strip_prefix('-').unwrap_or(&chat_id);
                let chat_ok =
                    (!numeric.is_empty() && numeric.len() <= 20 && numeric.bytes().all(|b| b.is_ascii_digit()))
                        || (chat_id.len() > 5
                            && chat_id.len() <= 33
                            && chat_id.starts_with('@')
                            && chat_id[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                if !chat_ok {
                    return Err(refused("chat_id", "chat_id must be a chat's number or a public @channelname"));
                }
                Ok(Self::Telegram { bot_token, chat_id })
            }
        }
    }

    /// Where it sends to, with the secret parts masked: a chat or webhook
    /// URL shows its origin and first path segment only, a bot token not at
    /// all.
    pub fn target(&self) -> String {
        match self {
            Self::Email { addresses } => addresses.join(", "),
            Self::Webhook { url, .. } | Self::Slack { url } | Self::Discord { url } | Self::Teams { url } => {
                mask_url(url)
            }
            Self::Telegram { chat_id, .. } => format!("telegram chat {chat_id}"),
        }
    }

    /// The URL it posts to, if it posts to one the user gave.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Webhook { url, .. } | Self::Slack { url } | Self::Discord { url } | Self::Teams { url } => Some(url),
            Self::Email { .. } | Self::Telegram { .. } => None,
        }
    }

    /// A webhook with a new signing secret (returned), the current one kept
    /// for [`ROTATION_OVERLAP_HOURS`]; `None` for other kinds.
    pub fn rotated(&self, now: DateTime<Utc>) -> Option<(ChannelSettings, String)> {
        let Self::Webhook { url, secrets } = self else { return None };
        let fresh = new_signing_secret();
        let until = now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
        let mut kept = vec![SigningSecret { secret: fresh.clone(), expires_at: None }];
        kept.extend(secrets.iter().filter(|s| s.expires_at.is_none_or(|at| at > now)).map(|s| SigningSecret {
            secret: s.secret.clone(),
            expires_at: Some(s.expires_at.unwrap_or(until).min(until)),
        }));
        Some((Self::Webhook { url: url.clone(), secrets: kept }, fresh))
    }

    /// The secret shown once when a webhook is created.
    pub fn current_secret(&self) -> Option<&str> {
        match self {
            Self::Webhook { secrets, .. } => secrets.first().map(|s| s.secret.as_str()),
            _ => None,
        }
    }
}

/// `whsec_` and the base64 of 24 random bytes.
pub fn new_signing_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn mask_url(raw: &str) -> String {
    let Ok(url) = Url::parse(raw) else { return "…".into() };
    let origin = url.origin().ascii_serialization();
    let mut segments = url.path_segments().into_iter().flatten().filter(|s| !s.is_empty());
    match (segments.next(), segments.next().is_some() || url.query().is_some()) {
        (Some(first), true) => format!("{origin}/{first}/…"),
        (Some(first), false) => format!("{origin}/{first}"),
        (None, true) => format!("{origin}/…"),
        (None, false) => origin,
    }
}

fn example(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => "https://hooks.slack.com/services/...",
        ChannelKind::Discord => "https://discord.com/api/webhooks/<id>/<token>",
        ChannelKind::Teams => "https://<tenant>.webhook.office.com/... or a Power Automate workflow URL",
        _ => "",
    }
}

fn https_host(url: &Url) -> Option<&str> {
    (url.scheme() == "https").then(|| url.host_str()).flatten()
}

fn is_slack(url: &Url) -> bool {
    https_host(url) == Some("hooks.slack.com")
        && ["/services/", "/workflows/", "/triggers/"].iter().any(|p| url.path().starts_with(p))
}

fn is_discord(url: &Url) -> bool {
    let host = https_host(url).unwrap_or_default();
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    ["discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"].contains(&host)
        && segments.len() >= 4
        && segments[..2] == ["api", "webhooks"]
        && segments[2].bytes().all(|b| b.is_ascii_digit())
        && !segments[3].is_empty()
}

fn is_teams(url: &Url) -> bool {
    let host = https_host(url).unwrap_or_default();
    [".webhook.office.com", ".logic.azure.com", ".powerplatform.com", ".powerautomate.com"]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// A loopback or private address (or `localhost`): a local stand-in.
fn is_local(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => crate::target::is_blocked(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => crate::target::is_blocked(IpAddr::V6(ip)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: &str) -> ChannelInput {
        ChannelInput { url: Some(url.into()), ..Default::default() }
    }

    #[test]
    fn chat_urls_must_be_the_services_own_unless_a_local_stand_in_is_allowed() {
        let slack = "https://hooks.slack.com/services/T000/B000/XXXX";
        assert!(ChannelSettings::from_input(ChannelKind::Slack, input(slack), None, false).is_ok());
        let wrong =
            ChannelSettings::from_input(ChannelKind::Slack, input("https://example.com/services/x"), None, false);
        assert_eq!(wrong.map_err(|r| r.field), Err("url"));
        let local = input("http://127.0.0.1:9/slack");
        assert!(ChannelSettings::from_input(ChannelKind::Slack, local.clone(), None, false).is_err());
        assert!(ChannelSettings::from_input(ChannelKind::Slack, local, None, true).is_ok());
        let discord = "https://discord.com/api/webhooks/123/abc";
        assert!(ChannelSettings::from_input(ChannelKind::Discord, input(discord), None, false).is_ok());
        assert!(ChannelSettings::from_input(ChannelKind::Discord, input(slack), None, false).is_err());
        let teams = "https://contoso.webhook.office.com/webhookb2/x";
        assert!(ChannelSettings::from_input(ChannelKind::Teams, input(teams), None, false).is_ok());
    }

    #[test]
    fn settings_of_another_kind_are_refused() {
        let mixed =
            ChannelInput { url: Some("https://example.com".into()), emails: Some(vec![]), ..Default::default() };
        assert_eq!(
            ChannelSettings::from_input(ChannelKind::Webhook, mixed, None, false).map_err(|r| r.field),
            Err("emails")
        );
    }

    #[test]
    fn telegram_needs_a_bot_token_and_a_chat() {
        let ok = ChannelInput {
            bot_token: Some("123456:ABCdefGHIjklMNOpqrSTUvwx".into()),
            chat_id: Some("-100123".into()),
            ..Default::default()
        };
        assert!(ChannelSettings::from_input(ChannelKind::Telegram, ok.clone(), None, false).is_ok());
        let no_chat = ChannelInput { chat_id: Some(" ".into()), ..ok.clone() };
        assert_eq!(
            ChannelSettings::from_input(ChannelKind::Telegram, no_chat, None, false).map_err(|r| r.field),
            Err("chat_id")
        );
        let bad_token = ChannelInput { bot_token: Some("nope".into()), ..ok };
        assert_eq!(
            ChannelSettings::from_input(ChannelKind::Telegram, bad_token, None, false).map_err(|r| r.field),
            Err("bot_token")
        );
    }

    #[test]
    fn the_target_never_shows_the_secret_parts() {
        let slack = ChannelSettings::Slack { url: "https://hooks.slack.com/services/T000/B000/SECRET".into() };
        assert_eq!(slack.target(), "https://hooks.slack.com/services/…");
        let telegram =
            ChannelSettings::Telegram { bot_token: "1:SECRETSECRETSECRETSECRET".into(), chat_id: "42".into() };
        assert!(!telegram.target().contains("SECRET"));
        let hook = ChannelSettings::Webhook { url: "http://127.0.0.1:8080/hook?token=SECRET".into(), secrets: vec![] };
        assert_eq!(hook.target(), "http://127.0.0.1:8080/hook/…");
    }

    #[test]
    fn a_new_webhook_gets_a_standard_webhooks_secret_and_rotation_keeps_the_old_one_for_a_day() {
        let hook = ChannelSettings::from_input(ChannelKind::Webhook, input("https://example.com/hook"), None, false)
            .unwrap_or_else(|r| panic!("{}", r.message));
        let secret = hook.current_secret().unwrap_or_default().to_owned();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret["whsec_".len()..]).map(|b| b.len()).ok(), Some(24));
        let now = Utc::now();
        let (rotated, fresh) = hook.rotated(now).unwrap_or_else(|| panic!("a webhook rotates"));
        let ChannelSettings::Webhook { secrets, .. } = &rotated else { panic!("still a webhook") };
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[0].secret, fresh);
        assert_eq!(secrets[1].secret, secret);
        assert_eq!(secrets[1].expires_at, Some(now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS)));
        let later = now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS + 1);
        let (again, _) = rotated.rotated(later).unwrap_or_else(|| panic!("rotates"));
        let ChannelSettings::Webhook { secrets, .. } = &again else { panic!("still a webhook") };
        assert_eq!(secrets.len(), 2, "the expired secret is dropped");
        let updated =
            ChannelSettings::from_input(ChannelKind::Webhook, input("https://example.com/other"), Some(&hook), false)
                .unwrap_or_else(|r| panic!("{}", r.message));
        assert_eq!(updated.current_secret(), Some(secret.as_str()), "changing the URL keeps the secret");
    }

    #[test]
    fn email_channels_list_deliverable_addresses() {
        let ok = ChannelInput {
            emails: Some(vec!["ops@example.com".into(), "ops@example.com".into()]),
            ..Default::default()
        };
        assert_eq!(
            ChannelSettings::from_input(ChannelKind::Email, ok, None, false),
            Ok(ChannelSettings::Email { addresses: vec!["ops@example.com".into()] })
        );
        let none = ChannelInput { emails: Some(vec![]), ..Default::default() };
        assert!(ChannelSettings::from_input(ChannelKind::Email, none, None, false).is_err());
        let odd = ChannelInput { emails: Some(vec!["a..b@c.com".into()]), ..Default::default() };
        assert!(ChannelSettings::from_input(ChannelKind::Email, odd, None, false).is_err());
    }
}
