//! How an email reaches people: the SMTP transport (lettre, `SMTP_TLS`
//! none/starttls/tls) and the templates of the down and up emails, which
//! link to the website's page on the dashboard.

use crate::config::{SmtpConfig, SmtpTls};
use anyhow::Context;
use chrono::{DateTime, Utc};
use events::{RegionName, SiteDown};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use uuid::Uuid;

/// Sends email through the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Mailer> {
        let from: Mailbox =
            config.from.parse().with_context(|| format!("SMTP_FROM {:?} is not a mailbox", config.from))?;
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host).context("SMTP STARTTLS set-up")?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).context("SMTP TLS set-up")?,
        };
        let mut builder = builder.port(config.port).timeout(Some(Duration::from_secs(15)));
        if let Some(user) = &config.user {
            builder = builder.credentials(Credentials::new(user.clone(), config.pass.clone().unwrap_or_default()));
        }
        Ok(Mailer { transport: builder.build(), from })
    }

    /// Sends one email; its Message-ID is derived from `event_id`, so a
    /// copy sent twice (a crash before it was marked sent) is recognisable.
    pub async fn send(&self, event_id: Uuid, recipients: &[String], email: &Email) -> anyhow::Result<()> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .message_id(Some(format!("<{event_id}@website-monitor>")))
            .header(ContentType::TEXT_PLAIN);
        // An address the mail library refuses (stored before the API checked
        // for it) is skipped, so it cannot hold back the others' email.
        let mut addressed = 0;
        for recipient in recipients {
            match recipient.parse::<Mailbox>() {
                Ok(mailbox) => {
                    message = message.to(mailbox);
                    addressed += 1;
                }
                Err(e) => {
                    tracing::error!(%event_id, recipient, error = %e, "recipient skipped: not a deliverable address")
                }
            }
        }
        anyhow::ensure!(addressed > 0, "no deliverable recipient among {recipients:?}");
        let message = message.body(email.body.clone()).context("building the message")?;
        self.transport.send(message).await.context("smtp")?;
        Ok(())
    }
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub body: String,
}

/// The website as an email names it.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub url: &'a str,
}

/// The dashboard's page of a website (hash routing, `#/websites/<id>`, see
/// web/src/app.js), under `PUBLIC_URL`.
pub fn website_page(public_url: &str, website_id: Uuid) -> String {
    format!("{}/#/websites/{website_id}", public_url.trim_end_matches('/'))
}

pub fn region_list(regions: &[RegionName]) -> String {
    regions.iter().map(RegionName::as_str).collect::<Vec<_>>().join(", ")
}

/// The email saying a website is down since `started_at`, from `regions`;
/// cause and status are those of `down`, the region change that made it.
pub fn down_email(
    site: Site<'_>,
    down: &SiteDown,
    started_at: DateTime<Utc>,
    regions: &[RegionName],
    link: &str,
) -> Email {
    let Site { name, url, .. } = site;
    let cause = down.cause.map_or("unknown", |c| c.as_str());
    let status = down.status_code.map_or_else(|| "none (no response)".to_owned(), |c| c.to_string());
    let detail = down.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
    Email {
        subject: format!("[DOWN] {name} is down ({cause})"),
        body: format!(
            "{name} ({url}) is DOWN.\n\n\
             Since:       {} (UTC)\n\
             Region(s):   {}\n\
             Cause:       {cause}{detail}\n\
             Status code: {status}\n\n\
             Downtime and response times: {link}\n\n\
             You will get one more email when it is back up.\n",
            started_at.format("%Y-%m-%d %H:%M:%S"),
            region_list(regions),
        ),
    }
}

/// The email saying a website is up again after being down from
/// `started_at` to `ended_at` in `regions`.
pub fn up_email(
    site: Site<'_>,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
    regions: &[RegionName],
    link: &str,
) -> Email {
    let Site { name, url, .. } = site;
    let downtime = human_duration((ended_at - started_at).num_seconds().max(0));
    Email {
        subject: format!("[UP] {name} is back up after {downtime}"),
        body: format!(
            "{name} ({url}) is UP again.\n\n\
             Down from:   {} (UTC)\n\
             Up since:    {} (UTC)\n\
             Downtime:    {downtime}\n\
             Regions:     {}\n\n\
             Downtime history: {link}\n",
            started_at.format("%Y-%m-%d %H:%M:%S"),
            ended_at.format("%Y-%m-%d %H:%M:%S"),
            region_list(regions),
        ),
    }
}

/// `3d 4h 5m 6s`, leaving out leading zero units.
pub fn human_duration(seconds: i64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    let parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")];
    let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    parts[first..].iter().map(|(v, unit)| format!("{v}{unit}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use events::FailureCause;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(312), "5m 12s");
        assert_eq!(human_duration(3600), "1h 0m 0s");
        assert_eq!(human_duration(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn the_link_is_the_dashboards_page_of_the_website() {
        let id = Uuid::nil();
        let expected = format!("https://status.example.com/#/websites/{id}");
        assert_eq!(website_page("https://status.example.com/", id), expected);
        assert_eq!(website_page("https://status.example.com", id), expected);
    }

    #[test]
    fn the_down_email_names_cause_status_regions_and_links_to_the_website_page() {
        let at = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default();
        let region = |r: &str| RegionName::parse(r).unwrap_or_else(|e| panic!("{e}"));
        let down = SiteDown {
            website_id: Uuid::nil(),
            region: region("europe"),
            started_at: at,
            cause: Some(FailureCause::HttpStatus),
            status_code: Some(503),
            message: Some("HTTP 503".into()),
        };
        let site = Site { id: Uuid::nil(), name: "shop", url: "https://shop.example.com/" };
        let link = website_page("http://127.0.0.1:3002", site.id);
        let email = down_email(site, &down, at, &[region("local"), region("europe")], &link);
        assert_eq!(email.subject, "[DOWN] shop is down (http_status)");
        for part in
            ["Region(s):   local, europe", "http_status (HTTP 503)", "503", "/#/websites/", "2023-11-14 22:13:20"]
        {
            assert!(email.body.contains(part), "{part} missing from {}", email.body);
        }
        assert!(!email.body.contains("/downtime"), "links to the page, not to the JSON");
        let up = up_email(site, at, at + chrono::Duration::seconds(312), &[region("local")], &link);
        assert_eq!(up.subject, "[UP] shop is back up after 5m 12s");
        assert!(up.body.contains(&link) && up.body.contains("Regions:     local"), "{}", up.body);
    }
}
