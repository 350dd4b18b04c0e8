//! What each kind of channel is sent for an alert, rendered when the
//! delivery is planned (so every retry sends the same thing): the email of
//! [`super::email`], a webhook's JSON (the event itself, envelope and data,
//! with the website's name, URL and dashboard link), Slack blocks, a
//! Discord embed, a Teams Adaptive Card and a Telegram text.

use super::email::{self, human_duration, region_list, Site};
use chrono::{DateTime, Utc};
use events::{ChannelKind, Envelope, RegionName, SiteDown};
use serde_json::{json, Value};

/// Which message a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Down,
    Up,
    /// "Send a test message" from the API.
    Test,
    /// A certificate about to expire.
    Certificate,
    /// A status page subscriber's confirmation link.
    Confirm,
    /// An incident of a status page's website, to its subscribers.
    Status,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Down => "down",
            Kind::Up => "up",
            Kind::Test => "test",
            Kind::Certificate => "certificate",
            Kind::Confirm => "confirm",
            Kind::Status => "status",
        }
    }
}

/// A website-level change, as every channel tells it.
pub struct Alert<'a> {
    pub site: Site<'a>,
    pub change: Change<'a>,
    /// The event that made the change (the last region's SiteDown/SiteUp).
    pub envelope: &'a Envelope,
    /// The website's page on the dashboard.
    pub link: &'a str,
}

pub enum Change<'a> {
    Down { down: &'a SiteDown, started_at: DateTime<Utc>, regions: &'a [RegionName] },
    Up { started_at: DateTime<Utc>, ended_at: DateTime<Utc>, regions: &'a [RegionName] },
    Certificate { not_after: DateTime<Utc>, days_left: i64 },
}

impl Alert<'_> {
    pub fn kind(&self) -> Kind {
        match self.change {
            Change::Down { .. } => Kind::Down,
            Change::Up { .. } => Kind::Up,
            Change::Certificate { .. } => Kind::Certificate,
        }
    }

    fn title(&self) -> String {
        let name = self.site.name;
        match &self.change {
            Change::Down { down, .. } => {
                format!("{name} is DOWN ({})", down.cause.map_or("unknown", |c| c.as_str()))
            }
            Change::Up { started_at, ended_at, .. } => {
                format!("{name} is UP again after {}", human_duration((*ended_at - *started_at).num_seconds().max(0)))
            }
            Change::Certificate { days_left, .. } if *days_left < 0 => format!("The certificate of {name} has EXPIRED"),
            Change::Certificate { days_left, .. } => {
                format!(
                    "The certificate of {name} expires in {days_left} day{}",
                    if *days_left == 1 { "" } else { "s" }
                )
            }
        }
    }

    /// Label and value lines every chat message shows.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let time = |at: &DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let mut facts = vec![("Website", self.site.url.to_owned())];
        match &self.change {
            Change::Down { down, started_at, regions } => {
                facts.push(("Since", time(started_at)));
                facts.push(("Regions", region_list(regions)));
                let cause = down.cause.map_or("unknown", |c| c.as_str());
                let detail = down.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
                facts.push(("Cause", format!("{cause}{detail}")));
                if let Some(code) = down.status_code {
                    facts.push(("Status code", code.to_string()));
                }
            }
            Change::Up { started_at, ended_at, regions } => {
                facts.push(("Down from", time(started_at)));
                facts.push(("Up since", time(ended_at)));
                facts.push(("Regions", region_list(regions)));
            }
            Change::Certificate { not_after, days_left } => {
                facts.push(("Expires", time(not_after)));
                facts.push(("Days left", days_left.to_string()));
            }
        }
        facts
    }

    /// The message for a channel of `kind`, as stored in the delivery.
    pub fn render(&self, kind: ChannelKind) -> Value {
        let down = !matches!(self.change, Change::Up { .. });
        let title = self.title();
        let facts = self.facts();
        match kind {
            ChannelKind::Email => {
                let mail = match &self.change {
                    Change::Down { down, started_at, regions } => {
                        email::down_email(self.site, down, *started_at, regions, self.link)
                    }
                    Change::Up { started_at, ended_at, regions } => {
                        email::up_email(self.site, *started_at, *ended_at, regions, self.link)
                    }
                    Change::Certificate { .. } => {
                        let lines: Vec<String> = facts.iter().map(|(l, v)| format!("{l}: {v}")).collect();
                        email::Email {
                            subject: format!("[CERT] {title}"),
                            body: format!(
                                "{title}.\n\n{}\n\nRenew it before it expires: {}\n",
                                lines.join("\n"),
                                self.link
                            ),
                        }
                    }
                };
                json!({ "subject": mail.subject, "body": mail.body })
            }
            ChannelKind::Webhook => json!({ "body": self.webhook_body() }),
            other => chat(other, &title, &facts, self.link, down),
        }
    }

    /// The event itself with the website it is about.
    fn webhook_body(&self) -> Value {
        let mut body = serde_json::to_value(self.envelope).unwrap_or_default();
        if let Value::Object(map) = &mut body {
            map.insert(
                "website".into(),
                json!({ "id": self.site.id, "name": self.site.name, "url": self.site.url, "link": self.link }),
            );
        }
        body
    }
}

/// The test message of a channel named `name`, for a channel of `kind`.
pub fn test_message(kind: ChannelKind, name: &str, link: &str, at: DateTime<Utc>) -> Value {
    let title = format!("Test message for channel \"{name}\"");
    let text = "Alerts of the websites that use this channel will arrive here like this one.";
    match kind {
        ChannelKind::Email => json!({
            "subject": format!("[TEST] {title}"),
            "body": format!("{title}\n\n{text}\n\nSent at {} (UTC).\nDashboard: {link}\n", at.format("%Y-%m-%d %H:%M:%S")),
        }),
        ChannelKind::Webhook => json!({ "body": {
            "type": "Test",
            "occurred_at": at,
            "data": { "channel": name, "message": text },
        }}),
        other => chat(other, &title, &[("Note", text.to_owned())], link, false),
    }
}

/// A chat message: Slack blocks, a Discord embed, a Teams Adaptive Card or
/// a Telegram text.
fn chat(kind: ChannelKind, title: &str, facts: &[(&str, String)], link: &str, down: bool) -> Value {
    let emoji = if down { "🔴" } else { "🟢" };
    let lines: Vec<String> = facts.iter().map(|(label, value)| format!("{label}: {value}")).collect();
    match kind {
        ChannelKind::Slack => {
            let fields: Vec<Value> = facts
                .iter()
                .map(|(l, v)| json!({ "type": "mrkdwn", "text": format!("*{l}*\n{}", slack_escape(v)) }))
                .collect();
            json!({ "body": {
                "text": format!("{emoji} {title}"),
                "blocks": [
                    { "type": "header", "text": { "type": "plain_text", "text": format!("{emoji} {title}") } },
                    { "type": "section", "fields": fields },
                    { "type": "actions", "elements": [
                        { "type": "button", "text": { "type": "plain_text", "text": "Open in the dashboard" }, "url": link }
                    ]},
                ],
            }})
        }
        ChannelKind::Discord => json!({ "body": {
            "username": "Website Monitor",
            "embeds": [{
                "title": format!("{emoji} {title}"),
                "url": link,
                "color": if down { 0xE0_1E_5A } else { 0x2E_B6_7D },
                "fields": facts.iter().map(|(l, v)| json!({ "name": l, "value": v, "inline": *l != "Website" })).collect::<Vec<_>>(),
            }],
            "allowed_mentions": { "parse": [] },
        }}),
        ChannelKind::Teams => json!({ "body": {
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        { "type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                          "color": if down { "Attention" } else { "Good" }, "text": title },
                        { "type": "FactSet", "facts": facts.iter().map(|(l, v)| json!({ "title": l, "value": v })).collect::<Vec<_>>() },
                    ],
                    "actions": [{ "type": "Action.OpenUrl", "title": "Open in the dashboard", "url": link }],
                },
            }],
        }}),
        ChannelKind::Telegram => json!({
            "text": format!("{emoji} {title}\n\n{}\n\n{link}", lines.join("\n")),
        }),
        // Not chats; rendered by their own paths.
        ChannelKind::Email | ChannelKind::Webhook => json!({ "text": format!("{title}\n{}", lines.join("\n")) }),
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Event, FailureCause};
    use uuid::Uuid;

    fn region(r: &str) -> RegionName {
        RegionName::parse(r).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_channel_gets_its_own_format_of_the_same_alert() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let down = SiteDown {
            website_id: Uuid::nil(),
            region: region("europe"),
            started_at: at,
            cause: Some(FailureCause::HttpStatus),
            status_code: Some(503),
            message: Some("HTTP <503>".into()),
        };
        let envelope = Envelope::new(Event::SiteDown(down.clone()), at);
        let regions = [region("europe")];
        let alert = Alert {
            site: Site { id: Uuid::nil(), name: "shop", url: "https://shop.example.com/" },
            change: Change::Down { down: &down, started_at: at, regions: &regions },
            envelope: &envelope,
            link: "http://127.0.0.1:3002/#/websites/x",
        };
        let hook = alert.render(ChannelKind::Webhook);
        assert_eq!(hook["body"]["type"], "SiteDown");
        assert_eq!(hook["body"]["id"], envelope.id.to_string());
        assert_eq!(hook["body"]["data"]["status_code"], 503);
        assert_eq!(hook["body"]["website"]["name"], "shop");
        let slack = alert.render(ChannelKind::Slack);
        assert!(slack["body"]["text"].as_str().unwrap_or_default().contains("shop is DOWN (http_status)"));
        assert!(slack["body"]["blocks"].to_string().contains("HTTP &lt;503&gt;"), "mrkdwn is escaped");
        let discord = alert.render(ChannelKind::Discord);
        assert_eq!(discord["body"]["embeds"][0]["color"], 0xE01E5A);
        let teams = alert.render(ChannelKind::Teams);
        assert_eq!(teams["body"]["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
        let telegram = alert.render(ChannelKind::Telegram);
        assert!(telegram["text"].as_str().unwrap_or_default().contains("Status code: 503"));
        let mail = alert.render(ChannelKind::Email);
        assert_eq!(mail["subject"], "[DOWN] shop is down (http_status)");
    }
}
