//! Sending one delivery: SMTP for email (see [`super::email`]), an HTTP
//! POST for webhooks and chats, the Bot API for Telegram.
//!
//! - Webhooks are signed per the Standard Webhooks specification:
//!   `webhook-id` (the event id), `webhook-timestamp` (seconds, at the
//!   attempt) and `webhook-signature`, `v1,` and the base64 HMAC-SHA256 of
//!   `id.timestamp.body` under each live secret, space-separated (two
//!   during a rotation's overlap).
//! - Every request has a 10 s timeout, follows no redirect, and goes
//!   through the same SSRF guard as checks (connect time) unless private
//!   targets are allowed.
//! - 2xx is delivered; 410 Gone means the endpoint is gone for good (the
//!   caller disables the channel); anything else is retried.

use super::email::{Email, Mailer};
use super::settings::ChannelSettings;
use crate::target::{blocked_literal, GuardedResolver};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use uuid::Uuid;

/// How long one attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: Option<u16>,
    },
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// The endpoint answered 410 Gone.
    Gone,
}

/// The ways out: an SMTP server and an HTTP client.
#[derive(Clone)]
pub struct Transports {
    mailer: Mailer,
    http: reqwest::Client,
    telegram_api: String,
    allow_private: bool,
}

impl Transports {
    pub fn new(mailer: Mailer, telegram_api: &str, allow_private: bool) -> anyhow::Result<Transports> {
        let http = reqwest::Client::builder()
            .user_agent(format!("WebsiteMonitor/{} (+alerts)", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()?;
        Ok(Transports { mailer, http, telegram_api: telegram_api.trim_end_matches('/').to_owned(), allow_private })
    }

    /// Sends `message` (as rendered for the channel's kind) for event
    /// `event_id` to `settings`, or to `recipients` for a website's own
    /// email list.
    pub async fn send(&self, event_id: Uuid, settings: Destination<'_>, message: &Value) -> Outcome {
        match settings {
            Destination::Recipients(recipients) => self.email(event_id, recipients, message).await,
            Destination::Channel(ChannelSettings::Email { addresses }) => {
                self.email(event_id, addresses, message).await
            }
            Destination::Channel(ChannelSettings::Webhook { url, secrets }) => {
                let body = message.get("body").map(Value::to_string).unwrap_or_default();
                let timestamp = Utc::now().timestamp();
                let now = Utc::now();
                let signatures: Vec<String> = secrets
                    .iter()
                    .filter(|s| s.expires_at.is_none_or(|at| at > now))
                    .filter_map(|s| sign(&s.secret, &event_id.to_string(), timestamp, &body))
                    .collect();
                let headers = [
                    ("webhook-id", event_id.to_string()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signatures.join(" ")),
                ];
                self.post(url, body, &headers).await
            }
            Destination::Channel(
                ChannelSettings::Slack { url } | ChannelSettings::Discord { url } | ChannelSettings::Teams { url },
            ) => {
                let body = message.get("body").map(Value::to_string).unwrap_or_default();
                self.post(url, body, &[]).await
            }
            Destination::Channel(ChannelSettings::Telegram { bot_token, chat_id }) => {
                let body = serde_json::json!({
                    "chat_id": chat_id,
                    "text": message.get("text").and_then(Value::as_str).unwrap_or_default(),
                    "disable_web_page_preview": true,
                });
                let url = format!("{}/bot{bot_token}/sendMessage", self.telegram_api);
                // The URL holds the bot token: errors name the API only.
                match self.post(&url, body.to_string(), &[]).await {
                    Outcome::Failed { status, error } => {
                        Outcome::Failed { status, error: error.replace(bot_token.as_str(), "***") }
                    }
                    other => other,
                }
            }
        }
    }

    async fn email(&self, event_id: Uuid, recipients: &[String], message: &Value) -> Outcome {
        let text = |key: &str| message.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let email = Email { subject: text("subject"), body: text("body") };
        match self.mailer.send(event_id, recipients, &email).await {
            Ok(()) => Outcome::Delivered { status: None },
            Err(e) => Outcome::Failed { status: None, error: format!("{e:#}") },
        }
    }

    async fn post(&self, url: &str, body: String, headers: &[(&str, String)]) -> Outcome {
        let parsed = match Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return Outcome::Failed { status: None, error: format!("invalid url: {e}") },
        };
        if let Some(ip) = blocked_literal(&parsed, self.allow_private) {
            return Outcome::Failed { status: None, error: format!("{ip} is a private or reserved address") };
        }
        let mut request = self.http.post(parsed).header("content-type", "application/json").body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Outcome::Delivered { status: Some(status.as_u16()) };
                }
                if status == reqwest::StatusCode::GONE {
                    return Outcome::Gone;
                }
                let text = response.text().await.unwrap_or_default();
                let snippet: String = text.chars().take(200).collect();
                Outcome::Failed { status: Some(status.as_u16()), error: format!("HTTP {status}: {snippet}") }
            }
            Err(e) => {
                let what = if e.is_timeout() { "timed out after 10 s" } else { "request failed" };
                // A chat's URL is its secret: never in a log or an answer.
                Outcome::Failed { status: None, error: format!("{what}: {}", error_chain(&e.without_url())) }
            }
        }
    }
}

/// Where a delivery goes.
pub enum Destination<'a> {
    /// A website's own `notify_emails` (or `NOTIFY_DEFAULT_EMAIL`).
    Recipients(&'a [String]),
    Channel(&'a ChannelSettings),
}

/// The Standard Webhooks signature `v1,<base64>` of `body` sent as message
/// `id` at `timestamp`, under `secret` (`whsec_<base64 key>`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// An error with its causes (reqwest hides the useful part in `source`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks reference implementations.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("whsec_not base64!", id, 1, body), None);
    }
}
