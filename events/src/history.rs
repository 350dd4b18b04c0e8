//! Audit views of the event log, computed from the events alone (pure):
//! what happened to a website, who did it, and what each change changed
//! from and to. The services read the events off the stream and hand them
//! here, so the answer is what the system of record says, whatever any
//! projection holds.

use crate::access::Actor;
use crate::envelope::Envelope;
use crate::event::Event;
use crate::website::{self, Website};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One event as an audit log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The event's position in its stream; also the pagination cursor.
    pub seq: u64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub occurred_at: DateTime<Utc>,
    pub aggregate_id: String,
    pub actor: Actor,
    /// The request that caused it (`X-Request-Id`), when known.
    pub request_id: Option<Uuid>,
    /// For updates: each changed field with its value before and after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The event's data (secrets are never in events).
    pub data: Value,
}

/// One field an update changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// Every event of one website, oldest first, with the from/to of each
/// update. `events` are the website's events in stream order.
pub fn website_history(events: &[(u64, Envelope)]) -> Vec<Entry> {
    let mut state: Option<Website> = None;
    let mut entries = Vec::with_capacity(events.len());
    for (seq, envelope) in events {
        let changes = match (&envelope.event, &state) {
            (Event::WebsiteUpdated(_), Some(before)) => changes(before, &data(&envelope.event)),
            _ => Vec::new(),
        };
        state = website::apply(state, &envelope.event, envelope.occurred_at);
        entries.push(entry(*seq, envelope, changes));
    }
    entries
}

/// An event as an audit entry without a diff (the audit log's view).
pub fn entry(seq: u64, envelope: &Envelope, changes: Vec<Change>) -> Entry {
    Entry {
        seq,
        event_id: envelope.id,
        event_type: envelope.event.type_name(),
        occurred_at: envelope.occurred_at,
        aggregate_id: envelope.aggregate_id.clone(),
        actor: envelope.actor.clone(),
        request_id: envelope.correlation_id,
        changes,
        data: data(&envelope.event),
    }
}

fn data(event: &Event) -> Value {
    serde_json::to_value(event).ok().and_then(|mut v| v.get_mut("data").map(Value::take)).unwrap_or(Value::Null)
}

/// The fields of an update (its data, less the id) against the state before.
fn changes(before: &Website, update: &Value) -> Vec<Change> {
    let before = serde_json::to_value(before).unwrap_or(Value::Null);
    let Some(fields) = update.as_object() else { return Vec::new() };
    fields
        .iter()
        .filter(|(field, _)| field.as_str() != "website_id")
        .map(|(field, to)| Change {
            field: field.clone(),
            from: before.get(field).cloned().unwrap_or(Value::Null),
            to: to.clone(),
        })
        .filter(|change| change.from != change.to)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{WebsiteAdded, WebsiteRemoved, WebsiteUpdated};
    use crate::values::{IntervalSecs, RegionName, TimeoutMs, WebsiteName, WebsiteUrl};
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().unwrap_or_default()
    }

    fn actor(name: &str) -> Actor {
        Actor::Token { token_id: Uuid::nil(), name: name.into() }
    }

    #[test]
    fn a_websites_history_shows_who_changed_what_from_what_to_what() {
        let id = Uuid::now_v7();
        let parse = |s: &str| WebsiteName::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let added = Event::WebsiteAdded(WebsiteAdded {
            website_id: id,
            url: WebsiteUrl::parse("https://example.com").unwrap_or_else(|e| panic!("{e}")),
            name: parse("shop"),
            regions: vec![RegionName::parse("local").unwrap_or_else(|e| panic!("{e}"))],
            interval_seconds: IntervalSecs::DEFAULT,
            timeout_ms: TimeoutMs::DEFAULT,
            notify_emails: vec![],
            failures_before_down: None,
            down_policy: None,
            channel_ids: vec![],
            check: None,
        });
        let renamed =
            Event::WebsiteUpdated(WebsiteUpdated { website_id: id, name: Some(parse("store")), ..Default::default() });
        let slower = Event::WebsiteUpdated(WebsiteUpdated {
            website_id: id,
            interval_seconds: Some(IntervalSecs::parse(600).unwrap_or_else(|e| panic!("{e}"))),
            ..Default::default()
        });
        let removed = Event::WebsiteRemoved(WebsiteRemoved { website_id: id });
        let events: Vec<(u64, Envelope)> = [(added, "alice"), (renamed, "alice"), (slower, "bob"), (removed, "bob")]
            .into_iter()
            .enumerate()
            .map(|(n, (event, who))| (n as u64 + 1, Envelope::new(event, at(n as i64)).by(actor(who), None)))
            .collect();

        let history = website_history(&events);

        let types: Vec<&str> = history.iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["WebsiteAdded", "WebsiteUpdated", "WebsiteUpdated", "WebsiteRemoved"]);
        assert_eq!(history[1].changes, vec![Change { field: "name".into(), from: "shop".into(), to: "store".into() }]);
        assert_eq!(history[1].actor.label(), "alice");
        assert_eq!(
            history[2].changes,
            vec![Change { field: "interval_seconds".into(), from: 180.into(), to: 600.into() }]
        );
        assert_eq!(history[2].actor.label(), "bob");
        assert_eq!(history[3].seq, 4);
        assert_eq!(history[0].data["name"], "shop");
    }
}
