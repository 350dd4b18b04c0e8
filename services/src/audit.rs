//! Read paths over the event log itself, not the projections: a website's
//! history, the system's audit log and the event feed other services
//! subscribe to, read from the MONITOR stream, so they show what really
//! happened even if a projection is wrong.
//!
//! Every read goes through one ordered consumer ([`scan`] for a bounded
//! range, [`follow_feed`] to follow the stream live), filtered on the
//! server by subject where the question allows it.

use crate::bus::{Bus, BusError};
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::Message;
use chrono::{DateTime, Utc};
use events::history::{self, Entry};
use events::subject::MONITOR_STREAM;
use events::Envelope;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use uuid::Uuid;

/// At most this many messages are read to answer one audit or feed page,
/// so a filter that matches little cannot make a request scan the whole
/// log; the page then ends early with a cursor to continue from.
const MAX_SCAN: u64 = 20_000;

/// Every event of one website, oldest first, with the from/to of updates
/// (removed websites included).
pub async fn website_history(bus: &Bus, website_id: Uuid) -> Result<Vec<Entry>, BusError> {
    let events = read(bus, &events::subject::website(website_id), 1, u64::MAX).await?;
    Ok(history::website_history(&events))
}

/// Which command events an audit page shows.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Start after this stream sequence (oldest first) or before it
    /// (newest first).
    pub after: Option<u64>,
    pub limit: usize,
    pub newest_first: bool,
    /// The actor's label: a token name, `bootstrap`, `system` or `unknown`.
    pub actor: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One page of the audit log and where the next one starts (`None`: the
/// end of the log).
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<Entry>,
    pub next: Option<u64>,
}

/// Command events (`monitor.>`: websites, regions, tokens, ...) matching
/// `query`, paginated by stream sequence.
pub async fn audit(bus: &Bus, query: &AuditQuery) -> Result<AuditPage, BusError> {
    let last = bus.last_sequence(MONITOR_STREAM).await?;
    let matches = |entry: &Entry| {
        query.actor.as_deref().is_none_or(|a| entry.actor.label() == a)
            && query.event_type.as_deref().is_none_or(|t| entry.event_type == t)
            && query.since.is_none_or(|s| entry.occurred_at >= s)
            && query.until.is_none_or(|u| entry.occurred_at < u)
    };
    let mut entries = Vec::new();
    if query.newest_first {
        // JetStream reads forwards, so read the window before the cursor
        // and walk it backwards.
        let end = query.after.map_or(last, |a| a.saturating_sub(1)).min(last);
        let mut high = end;
        while high >= 1 && entries.len() < query.limit && end - high < MAX_SCAN {
            let low = high.saturating_sub(999).max(1);
            let chunk = read(bus, "monitor.>", low, high).await?;
            for (seq, envelope) in chunk.iter().rev() {
                let entry = history::entry(*seq, envelope, Vec::new());
                if entries.len() < query.limit && matches(&entry) {
                    entries.push(entry);
                }
            }
            high = low - 1;
        }
        let next = match entries.last() {
            Some(e) if entries.len() == query.limit && e.seq > 1 => Some(e.seq),
            _ if high >= 1 => Some(high + 1),
            _ => None,
        };
        return Ok(AuditPage { entries, next });
    }
    let start = query.after.map_or(1, |a| a + 1);
    let mut low = start;
    while low <= last && entries.len() < query.limit && low - start < MAX_SCAN {
        let high = (low + 999).min(last);
        for (seq, envelope) in read(bus, "monitor.>", low, high).await? {
            let entry = history::entry(seq, &envelope, Vec::new());
            if entries.len() < query.limit && matches(&entry) {
                entries.push(entry);
            }
        }
        low = high + 1;
    }
    let next = match entries.last() {
        Some(e) if entries.len() == query.limit && e.seq < last => Some(e.seq),
        _ if low <= last => Some(low - 1),
        _ => None,
    };
    Ok(AuditPage { entries, next })
}

/// The events on `subject` with stream sequences in `from..=to`, in order.
/// Events of types this build does not know are left out.
pub(crate) async fn read(bus: &Bus, subject: &str, from: u64, to: u64) -> Result<Vec<(u64, Envelope)>, BusError> {
    let mut events = Vec::new();
    scan(bus, &[subject.to_owned()], from, to, |seq, envelope| {
        events.push((seq, envelope));
        ControlFlow::Continue(())
    })
    .await?;
    Ok(events)
}

/// Hands `visit` the events on any of `subjects` (every subject if empty)
/// with stream sequences in `from..=to`, in order, until it breaks.
/// Events of types this build does not know are left out; a malformed one
/// is an error.
pub(crate) async fn scan(
    bus: &Bus,
    subjects: &[String],
    from: u64,
    to: u64,
    mut visit: impl FnMut(u64, Envelope) -> ControlFlow<()>,
) -> Result<(), BusError> {
    let err = |e: &dyn std::fmt::Display| BusError::JetStream(e.to_string());
    let mut consumer = consumer(bus, subjects, from).await?;
    if consumer.info().await.map_err(|e| err(&e))?.num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| err(&e))?;
        let info = message.info().map_err(|e| err(&e))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > to {
            break;
        }
        if let Some(envelope) = decode(seq, &message)? {
            if visit(seq, envelope).is_break() {
                break;
            }
        }
        if pending == 0 || seq == to {
            break;
        }
    }
    Ok(())
}

/// An ordered consumer of MONITOR from stream sequence `from` on, on
/// `subjects` (every subject if empty).
async fn consumer(
    bus: &Bus,
    subjects: &[String],
    from: u64,
) -> Result<async_nats::jetstream::consumer::Consumer<OrderedConfig>, BusError> {
    let err = |e: &dyn std::fmt::Display| BusError::JetStream(e.to_string());
    let stream = bus.js.get_stream(MONITOR_STREAM).await.map_err(|e| err(&e))?;
    stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
            filter_subjects: subjects.to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))
}

/// The event of a message: `None` if its type is unknown to this build
/// (written by a newer one), an error if it is not an event at all.
fn decode(seq: u64, message: &Message) -> Result<Option<Envelope>, BusError> {
    match Envelope::from_json(&message.payload) {
        Ok(envelope) => Ok(Some(envelope)),
        Err(events::DecodeError::UnknownType(_)) => Ok(None),
        Err(e) => Err(BusError::JetStream(format!("MONITOR sequence {seq}: {e}"))),
    }
}

/// Which events of the feed a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// Only events of these types (names from [`FEED_TYPES`]); empty: all.
    pub types: BTreeSet<&'static str>,
    /// Only events of this website (its aggregate id).
    pub website: Option<Uuid>,
}

/// The event types in MONITOR, hence in the feed: every type but check
/// results (`CheckCompleted`), which are on the CHECKS stream.
pub static FEED_TYPES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    events::event::KNOWN_TYPES.iter().copied().filter(|name| *name != "CheckCompleted").collect()
});

impl FeedFilter {
    /// The subjects that can hold a matching event, for the server to
    /// filter on: `Some(empty)` means the whole stream, `None` that no
    /// event can match (a region or token type asked of one website).
    fn subjects(&self) -> Option<Vec<String>> {
        use events::subject;
        if self.types.is_empty() {
            return Some(match self.website {
                Some(id) => vec![subject::website(id), subject::incident(id)],
                None => Vec::new(),
            });
        }
        let subjects: BTreeSet<String> = self
            .types
            .iter()
            .filter_map(|name| match (*name, self.website) {
                (
                    "WebsiteAdded" | "WebsiteUpdated" | "WebsiteRemoved" | "WebsitePaused" | "WebsiteResumed",
                    Some(id),
                ) => Some(subject::website(id)),
                ("WebsiteAdded" | "WebsiteUpdated" | "WebsiteRemoved" | "WebsitePaused" | "WebsiteResumed", None) => {
                    Some("monitor.website.*".into())
                }
                ("SiteDown" | "SiteUp" | "CertificateExpiring" | "IncidentUpdatePosted", Some(id)) => {
                    Some(subject::incident(id))
                }
                ("SiteDown" | "SiteUp" | "CertificateExpiring" | "IncidentUpdatePosted", None) => {
                    Some("incidents.*".into())
                }
                (
                    "StatusPageCreated"
                    | "StatusPageUpdated"
                    | "StatusPageRemoved"
                    | "StatusSubscriberAdded"
                    | "StatusSubscriberConfirmed"
                    | "StatusSubscriberRemoved",
                    None,
                ) => Some("monitor.status_page.*".into()),
                ("RegionAdded" | "RegionRemoved", None) => Some("monitor.region.*".into()),
                ("TokenCreated" | "TokenRevoked", None) => Some("monitor.token.*".into()),
                ("ChannelAdded" | "ChannelUpdated" | "ChannelDisabled" | "ChannelRemoved", None) => {
                    Some("monitor.channel.*".into())
                }
                ("MaintenanceScheduled" | "MaintenanceUpdated" | "MaintenanceEnded" | "MaintenanceRemoved", None) => {
                    Some("monitor.maintenance.*".into())
                }
                _ => None,
            })
            .collect();
        (!subjects.is_empty()).then(|| subjects.into_iter().collect())
    }

    fn matches(&self, envelope: &Envelope) -> bool {
        (self.types.is_empty() || self.types.contains(envelope.event.type_name()))
            && self.website.is_none_or(|id| envelope.aggregate_id == id.to_string())
    }
}

/// One page of the feed and the sequence the next one starts after.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub events: Vec<(u64, Envelope)>,
    /// The last sequence this page accounts for: every matching event up
    /// to it is in this page or an earlier one. Never `None`: the feed has
    /// no end, later events come after it.
    pub next: u64,
}

/// Up to `limit` events matching `filter` after stream sequence `after`,
/// oldest first. At most [`MAX_SCAN`] sequences are read, so a filter that
/// matches little ends the page early, with a `next` past what was read.
pub async fn feed_page(bus: &Bus, filter: &FeedFilter, after: u64, limit: usize) -> Result<FeedPage, BusError> {
    let last = bus.last_sequence(MONITOR_STREAM).await?;
    let to = last.min(after.saturating_add(MAX_SCAN));
    let mut events = Vec::new();
    if to <= after || limit == 0 {
        return Ok(FeedPage { events, next: after });
    }
    let Some(subjects) = filter.subjects() else {
        return Ok(FeedPage { events, next: to });
    };
    scan(bus, &subjects, after + 1, to, |seq, envelope| {
        if filter.matches(&envelope) {
            events.push((seq, envelope));
        }
        if events.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await?;
    let next = match events.last() {
        Some((seq, _)) if events.len() >= limit => *seq,
        _ => to,
    };
    Ok(FeedPage { events, next })
}

/// The events matching `filter` after stream sequence `after`, oldest
/// first, then each new one as it is stored, for as long as the stream is
/// polled. It ends at the first error of the bus (a subscriber resumes
/// from the last sequence it got); a malformed event is logged and skipped
/// so it cannot stop every subscriber at the same place forever.
pub async fn follow_feed(
    bus: &Bus,
    filter: FeedFilter,
    after: u64,
) -> Result<BoxStream<'static, (u64, Envelope)>, BusError> {
    let Some(subjects) = filter.subjects() else {
        return Ok(futures::stream::pending().boxed());
    };
    let messages: Ordered = consumer(bus, &subjects, after.saturating_add(1))
        .await?
        .messages()
        .await
        .map_err(|e| BusError::JetStream(e.to_string()))?;
    Ok(messages
        .take_while(|message| {
            if let Err(error) = message {
                tracing::warn!(%error, "event feed interrupted");
            }
            std::future::ready(message.is_ok())
        })
        .filter_map(move |message| {
            let event = message.ok().and_then(|message| {
                let seq = message.info().ok()?.stream_sequence;
                match decode(seq, &message) {
                    Ok(envelope) => envelope.filter(|e| filter.matches(e)).map(|e| (seq, e)),
                    Err(error) => {
                        tracing::error!(%error, "skipping a malformed event in the feed");
                        None
                    }
                }
            });
            std::future::ready(event)
        })
        .boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_filter_reads_only_the_subjects_that_can_hold_a_match() {
        let website = Uuid::now_v7();
        let filter = |types: &[&'static str], website: Option<Uuid>| FeedFilter {
            types: types.iter().copied().collect(),
            website,
        };
        assert_eq!(filter(&[], None).subjects(), Some(vec![]));
        assert_eq!(
            filter(&[], Some(website)).subjects(),
            Some(vec![format!("monitor.website.{website}"), format!("incidents.{website}")])
        );
        assert_eq!(filter(&["SiteDown", "SiteUp"], None).subjects(), Some(vec!["incidents.*".to_owned()]));
        assert_eq!(
            filter(&["SiteUp", "WebsiteAdded"], Some(website)).subjects(),
            Some(vec![format!("incidents.{website}"), format!("monitor.website.{website}")])
        );
        assert_eq!(filter(&["RegionAdded"], Some(website)).subjects(), None);
        for name in FEED_TYPES.iter() {
            assert!(filter(&[name], None).subjects().is_some_and(|s| s.len() == 1), "{name}");
            assert!(events::event::KNOWN_TYPES.contains(name), "{name}");
        }
    }
}
