//! Mails to the subscribers of public status pages: the double opt-in
//! confirmation (queued by the API when someone subscribes) and one mail per
//! confirmed subscriber when a website on their page goes down and one when
//! it is back (queued by the planner with the alerts, in its transaction).
//!
//! Both go through the outbox like every alert: keyed by (a delivery id
//! derived from the event and the subscriber, the subscriber), so a
//! redelivered or replayed event mails nobody twice, and retried on
//! failure. Every mail carries an unsubscribe link whose token is derived
//! from the system's key ([`crate::secrets::Sealer::derive`]); the events
//! hold only its hash. Mails name the website by its display name on the
//! page, never by its checked URL.

use super::message::Kind;
use super::outbox::{self, Planned};
use crate::secrets::Sealer;
use chrono::{DateTime, Utc};
use events::outage::WebsiteChange;
use events::{ChannelKind, Envelope};
use projections::Error;
use serde_json::json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// The label the unsubscribe token of a subscriber is derived under.
pub fn unsubscribe_label(subscriber_id: Uuid) -> String {
    format!("status-unsubscribe/{subscriber_id}")
}

/// `PUBLIC_URL/status/<slug>`.
pub fn page_link(public_url: &str, slug: &str) -> String {
    format!("{}/status/{slug}", public_url.trim_end_matches('/'))
}

fn footer(public_url: &str, slug: &str, unsubscribe_token: &str) -> String {
    format!(
        "\n\nStatus page: {page}\n\nYou get this because you subscribed to {page}.\nUnsubscribe: {page}/unsubscribe?token={unsubscribe_token}\n",
        page = page_link(public_url, slug)
    )
}

/// The confirmation mail of a new subscriber, as the outbox sends it.
pub fn confirmation(
    public_url: &str,
    slug: &str,
    title: &str,
    email: &str,
    confirm_token: &str,
    unsubscribe_token: &str,
) -> serde_json::Value {
    let confirm = format!("{}/confirm?token={confirm_token}", page_link(public_url, slug));
    json!({
        "recipients": [email],
        "subject": format!("[{title}] Confirm your subscription"),
        "body": format!(
            "Someone (hopefully you) asked to get an email when {title} has an incident.\n\n\
             Confirm it here: {confirm}\n\n\
             If it was not you, ignore this mail: nothing is sent without a confirmation.{}",
            footer(public_url, slug, unsubscribe_token)
        ),
    })
}

/// Queues the confirmation mail of `subscriber_id` (by the API).
pub async fn queue_confirmation(
    tx: &mut Transaction<'_, Postgres>,
    event_id: Uuid,
    subscriber_id: Uuid,
    message: serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let planned = Planned {
        event_id,
        channel_id: subscriber_id,
        website_id: None,
        kind: Kind::Confirm,
        channel_kind: ChannelKind::Email,
        message,
    };
    outbox::queue(tx, &planned).await
}

fn at(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Queues a mail to every confirmed subscriber of every page showing the
/// website, for the start or the end of its outage.
pub async fn queue_incident(
    tx: &mut Transaction<'_, Postgres>,
    sealer: &Sealer,
    public_url: &str,
    envelope: &Envelope,
    website_id: Uuid,
    change: &WebsiteChange,
) -> Result<usize, Error> {
    let subscribers = projections::status_pages::subscribers_of_website(&mut **tx, website_id).await?;
    let mut queued = 0;
    for (subscriber_id, email, slug, title, name) in subscribers {
        let token = sealer
            .derive(&unsubscribe_label(subscriber_id))
            .await
            .map_err(|e| Error::Corrupt(format!("deriving an unsubscribe token: {e}")))?;
        let (subject, text) = match change {
            WebsiteChange::Started { started_at, .. } => (
                format!("[{title}] {name} is down"),
                format!("{name} has been down since {}. We are looking into it.", at(*started_at)),
            ),
            WebsiteChange::Ended { started_at, ended_at, .. } => (
                format!("[{title}] {name} has recovered"),
                format!(
                    "{name} is up again since {}, after {}.",
                    at(*ended_at),
                    super::email::human_duration((*ended_at - *started_at).num_seconds().max(0))
                ),
            ),
        };
        let body = format!("{text}{}", footer(public_url, &slug, &token));
        let delivery = Uuid::new_v5(&envelope.id, subscriber_id.as_bytes());
        let planned = Planned {
            event_id: delivery,
            channel_id: subscriber_id,
            website_id: Some(website_id),
            kind: Kind::Status,
            channel_kind: ChannelKind::Email,
            message: json!({ "recipients": [email], "subject": subject, "body": body }),
        };
        if outbox::queue(tx, &planned).await? {
            queued += 1;
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_mail_links_to_confirm_and_to_unsubscribe() {
        let mail = confirmation("https://status.example.com/", "acme", "Acme", "a@example.com", "c0", "u0");
        let body = mail["body"].as_str().unwrap_or_default();
        assert!(body.contains("https://status.example.com/status/acme/confirm?token=c0"), "{body}");
        assert!(body.contains("https://status.example.com/status/acme/unsubscribe?token=u0"), "{body}");
        assert_eq!(mail["recipients"], json!(["a@example.com"]));
    }
}
