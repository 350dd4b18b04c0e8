//! The event feed, for services that subscribe to what happens: `/events`
//! (pages), `/events/stream` (Server-Sent Events, following the log live)
//! and `/schemas/events.json` (the JSON Schema of every event type, from
//! the Rust types themselves).
//!
//! Both read the MONITOR stream ([`crate::audit`]) and say where each event
//! is in it (`seq`): a subscriber that keeps the last `seq` it handled
//! resumes exactly after it, with nothing missed and nothing twice.
//! Reading needs the `read` scope, the schemas included.

use super::access::ActorView;
use super::body::{Bounded, Timestamp};
use super::error::{ApiError, Refusal, BAD_REQUEST, INVALID, UNAVAILABLE};
use super::ApiState;
use crate::audit::{self, FeedFilter, FEED_TYPES};
use described::{Streamed, TypesQuery};
use events::Envelope;
use futures::StreamExt;
use poem::web::sse::Event as SseEvent;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{Object, OpenApi, Tags};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use uuid::Uuid;

/// A comment line this often keeps proxies and clients from taking a
/// quiet stream for a dead one.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;

#[derive(Tags)]
enum Tag {
    /// Every event, for services that subscribe: pages, a live stream, and their JSON Schemas
    Events,
}

/// An event as stored in the log (`data`'s shape for each `type`:
/// `/schemas/events.json`).
#[derive(Debug, Clone, Object)]
#[oai(rename = "Envelope")]
pub struct EnvelopeView {
    id: Uuid,
    /// The event type, e.g. `SiteDown`.
    #[oai(rename = "type")]
    event_type: String,
    /// The version of the type's shape.
    version: u32,
    occurred_at: Timestamp,
    /// The website (a UUID), region or token the event is about.
    aggregate_id: String,
    /// The request (`X-Request-Id`) or first event it followed from.
    #[oai(skip_serializing_if_is_none)]
    correlation_id: Option<Uuid>,
    /// The event that caused it.
    #[oai(skip_serializing_if_is_none)]
    causation_id: Option<Uuid>,
    /// Who caused it; absent for events by no one known (checks, events
    /// older than actors).
    #[oai(skip_serializing_if_is_none)]
    actor: Option<ActorView>,
    data: serde_json::Value,
}

impl From<&Envelope> for EnvelopeView {
    fn from(envelope: &Envelope) -> Self {
        // `{"type", "data"}` as serde writes the event inside the envelope.
        let mut event = serde_json::to_value(&envelope.event).unwrap_or_default();
        EnvelopeView {
            id: envelope.id,
            event_type: envelope.event.type_name().to_owned(),
            version: envelope.version,
            occurred_at: envelope.occurred_at.into(),
            aggregate_id: envelope.aggregate_id.clone(),
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            actor: (!envelope.actor.is_unknown()).then(|| (&envelope.actor).into()),
            data: event["data"].take(),
        }
    }
}

/// An event of the feed: where it is in the log, and the event as stored.
#[derive(Debug, Clone, Object)]
pub struct FeedEvent {
    /// Its sequence in the MONITOR stream: pass as `after` (or
    /// `Last-Event-ID`) to continue after it.
    seq: u64,
    #[oai(flatten)]
    envelope: EnvelopeView,
}

/// A page of the feed.
#[derive(Debug, Clone, Object)]
pub struct FeedPage {
    /// Oldest first.
    items: Vec<FeedEvent>,
    /// Pass as `after` for the next page. Always present: the feed has no
    /// end, and events stored later come after it.
    next: u64,
}

/// Types described to poem-openapi by hand. (In a module of their own:
/// poem-openapi's `Type` trait, in scope, would take over `is_empty` of
/// every `&str`.)
mod described {
    use super::EnvelopeView;
    use crate::api::body::{Described, DescribedQuery};
    use crate::audit::FEED_TYPES;
    use events::Envelope;
    use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
    use poem_openapi::types::{ToJSON, Type};
    use std::borrow::Cow;

    /// One event of the stream: sent as `id: <seq>`, `event: <type>`,
    /// `data: <the envelope as stored>`, and described as an
    /// [`EnvelopeView`].
    pub struct Streamed(pub u64, pub Envelope);

    impl Type for Streamed {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn name() -> Cow<'static, str> {
            EnvelopeView::name()
        }

        fn schema_ref() -> MetaSchemaRef {
            EnvelopeView::schema_ref()
        }

        fn register(registry: &mut Registry) {
            EnvelopeView::register(registry);
        }

        fn as_raw_value(&self) -> Option<&Self::RawValueType> {
            Some(self)
        }

        fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
            Box::new(std::iter::once(self))
        }
    }

    impl ToJSON for Streamed {
        fn to_json(&self) -> Option<serde_json::Value> {
            serde_json::to_value(&self.1).ok()
        }
    }

    /// `types` in a query string: documented with a pattern of exactly
    /// what [`super::filter`] accepts (names of [`FEED_TYPES`] separated by
    /// commas), so a description-driven client cannot send a value the
    /// schema allows and the server refuses.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct EventTypes;

    impl Described for EventTypes {
        const NAME: &'static str = "event_types";

        fn schema() -> MetaSchema {
            let name = format!("({})", FEED_TYPES.join("|"));
            MetaSchema { pattern: Some(format!("^{name}(,{name})*$")), ..MetaSchema::new("string") }
        }
    }

    pub type TypesQuery = DescribedQuery<EventTypes>;
}

fn sse_event(Streamed(seq, envelope): Streamed) -> SseEvent {
    SseEvent::message(String::from_utf8_lossy(&envelope.to_json()))
        .id(seq.to_string())
        .event_type(envelope.event.type_name())
}

/// The feed's filter from the query: `types` comma-separated names of
/// [`FEED_TYPES`] (422 naming `types` for anything else, an empty name or
/// a space included), `website` a UUID.
fn filter(types: Option<&str>, website: Option<Uuid>) -> Result<FeedFilter, ApiError> {
    let mut filter = FeedFilter { types: Default::default(), website };
    let mut unknown = Vec::new();
    for name in types.into_iter().flat_map(|types| types.split(',')) {
        match FEED_TYPES.iter().find(|known| **known == name) {
            Some(known) => {
                filter.types.insert(known);
            }
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        let note = if unknown.contains(&"CheckCompleted") {
            " (check results are not in the feed: they are on the CHECKS stream)"
        } else {
            ""
        };
        return Err(ApiError::invalid(
            "types",
            format!(
                "types must be comma-separated event types of the feed ({}), not {:?}{note}",
                FEED_TYPES.join(", "),
                unknown.join(",")
            ),
        ));
    }
    Ok(filter)
}

fn sequence(value: Option<Bounded<0, { i64::MAX }>>, name: &str) -> Result<u64, ApiError> {
    Ok(value.map(|v| v.check(name)).transpose()?.map_or(0, i64::unsigned_abs))
}

/// The JSON Schema document of the envelope and every event type, made
/// once.
static SCHEMA: LazyLock<serde_json::Value> = LazyLock::new(Envelope::json_schema_document);

pub struct FeedApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Events")]
impl FeedApi {
    /// Events of the log after a sequence, oldest first (websites, regions, tokens, outages; not check results)
    #[oai(path = "/events", method = "get", operation_id = "list_events")]
    async fn list(
        &self,
        /// Only events after this stream sequence: the `next` of the previous page, or the `seq` of the last event handled (default 0: from the start).
        after: Query<Option<Bounded<0, { i64::MAX }>>>,
        /// Only events of these types, comma-separated, e.g. `SiteDown,SiteUp`.
        types: Query<Option<TypesQuery>>,
        /// Only events of this website.
        website: Query<Option<Uuid>>,
        /// Events per page, 1 to 1000 (default 100). A page may hold fewer even before the end: at most 20000 sequences are read per request.
        limit: Query<Option<Bounded<1, 1000>>>,
    ) -> Result<Json<FeedPage>, Refusal<{ BAD_REQUEST | INVALID | UNAVAILABLE }>> {
        let after = sequence(after.0, "after")?;
        let filter = filter(types.0.as_ref().map(|t| t.as_str()), website.0)?;
        let limit = limit.0.map(|l| l.check("limit")).transpose()?.map_or(DEFAULT_LIMIT, |l| l.unsigned_abs() as usize);
        let page = audit::feed_page(&self.state.bus, &filter, after, limit).await.map_err(ApiError::from)?;
        Ok(Json(FeedPage {
            items: page
                .events
                .iter()
                .map(|(seq, envelope)| FeedEvent { seq: *seq, envelope: envelope.into() })
                .collect(),
            next: page.next,
        }))
    }

    /// The same events as Server-Sent Events, then each new one as it is stored, until the client goes away (`id`: the sequence, `event`: the type, `data`: the envelope; a comment line every 15 s)
    #[oai(path = "/events/stream", method = "get", operation_id = "stream_events")]
    async fn stream(
        &self,
        /// Only events after this stream sequence (default 0: from the start).
        after: Query<Option<Bounded<0, { i64::MAX }>>>,
        /// Only events of these types, comma-separated, e.g. `SiteDown,SiteUp`.
        types: Query<Option<TypesQuery>>,
        /// Only events of this website.
        website: Query<Option<Uuid>>,
        /// The `id` of the last event received: resumes after it, and takes precedence over `after` (browsers' `EventSource` sends it when it reconnects).
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<Bounded<0, { i64::MAX }>>>,
    ) -> Result<
        EventStream<futures::stream::BoxStream<'static, Streamed>>,
        Refusal<{ BAD_REQUEST | INVALID | UNAVAILABLE }>,
    > {
        let after = match last_event_id.0 {
            Some(id) => sequence(Some(id), "Last-Event-ID")?,
            None => sequence(after.0, "after")?,
        };
        let filter = filter(types.0.as_ref().map(|t| t.as_str()), website.0)?;
        let events = audit::follow_feed(&self.state.bus, filter, after).await.map_err(ApiError::from)?;
        let shutdown = self.state.shutdown.clone().cancelled_owned();
        let events = events.map(|(seq, envelope)| Streamed(seq, envelope)).take_until(shutdown).boxed();
        Ok(EventStream::new(events).keep_alive(HEARTBEAT).to_event(sse_event))
    }

    /// The JSON Schema (draft 2020-12) of an event as stored: the envelope, with each type's `data` under `$defs` by the type's name
    #[oai(path = "/schemas/events.json", method = "get", operation_id = "event_schemas")]
    async fn schemas(&self) -> Json<serde_json::Value> {
        Json(SCHEMA.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_name_feed_event_types_and_anything_else_is_refused_naming_types() {
        let parsed = filter(Some("SiteUp,SiteDown,SiteUp"), None).map(|f| f.types.into_iter().collect::<Vec<_>>());
        assert_eq!(parsed.ok(), Some(vec!["SiteDown", "SiteUp"]));
        assert!(filter(None, None).is_ok_and(|f| f.types.is_empty()));
        for bad in ["SiteGone", "siteDown", "SiteUp,CheckCompleted", "", "SiteUp,", "SiteUp, SiteDown"] {
            match filter(Some(bad), None) {
                Err(ApiError::Invalid(errors)) => assert_eq!(errors[0].field, "types", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
