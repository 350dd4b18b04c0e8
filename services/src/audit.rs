//! Read paths over the event log itself, not the projections: a website's
//! history and the system's audit log, read from the MONITOR stream, so
//! they show what really happened even if a projection is wrong.

use crate::bus::{Bus, BusError};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use events::history::{self, Entry};
use events::subject::MONITOR_STREAM;
use events::Envelope;
use futures::StreamExt;
use uuid::Uuid;

/// At most this many messages are read to answer one audit page, so a
/// filter that matches little cannot make a request scan the whole log;
/// the page then ends early with a cursor to continue from.
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
    let mut stream = bus.monitor_stream().await?;
    let last = stream.info().await.map_err(|e| BusError::JetStream(e.to_string()))?.state.last_sequence;
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
    let err = |e: &dyn std::fmt::Display| BusError::JetStream(e.to_string());
    let stream = bus.js.get_stream(MONITOR_STREAM).await.map_err(|e| err(&e))?;
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let mut events = Vec::new();
    if consumer.info().await.map_err(|e| err(&e))?.num_pending == 0 {
        return Ok(events);
    }
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| err(&e))?;
        let info = message.info().map_err(|e| err(&e))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > to {
            break;
        }
        match Envelope::from_json(&message.payload) {
            Ok(envelope) => events.push((seq, envelope)),
            Err(events::DecodeError::UnknownType(_)) => {}
            Err(e) => return Err(BusError::JetStream(format!("MONITOR sequence {seq}: {e}"))),
        }
        if pending == 0 || seq == to {
            break;
        }
    }
    Ok(events)
}
