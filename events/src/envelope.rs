//! The envelope every event travels in:
//! `{id, type, version, occurred_at, aggregate_id, correlation_id?, causation_id?, actor, data}`.
//! The id is a UUID v7 and doubles as the `Nats-Msg-Id`, so a retried
//! publish is de-duplicated by the server.

use crate::access::Actor;
use crate::event::{Event, KNOWN_TYPES};
use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    pub id: Uuid,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub aggregate_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who caused the event; `unknown` for events older than actors (and
    /// not written, to keep high-volume events small).
    #[serde(default, skip_serializing_if = "Actor::is_unknown")]
    pub actor: Actor,
    /// `type` and `data` of the JSON object.
    #[serde(flatten)]
    pub event: Event,
}

/// Why bytes off a stream are not an event this build can use.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Written by a newer build; safe to skip for consumers that do not
    /// know the type.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl Envelope {
    /// Wraps an event with a fresh time-ordered id.
    pub fn new(event: Event, occurred_at: DateTime<Utc>) -> Self {
        Self::with_id(Uuid::now_v7(), event, occurred_at)
    }

    /// Wraps an event with a caller-chosen id, for events whose id must be
    /// derived from their content so a re-publish is de-duplicated.
    ///
    /// Times are kept to the microsecond, the precision of the projections,
    /// so an event and its projected rows agree exactly.
    pub fn with_id(id: Uuid, event: Event, occurred_at: DateTime<Utc>) -> Self {
        Self {
            id,
            version: event.version(),
            occurred_at: occurred_at.trunc_subsecs(6),
            aggregate_id: event.aggregate_id(),
            correlation_id: None,
            causation_id: None,
            actor: Actor::Unknown,
            event,
        }
    }

    /// Records who caused the event and the request it came from (the
    /// correlation id, returned to the client as `X-Request-Id`).
    pub fn by(mut self, actor: Actor, request_id: Option<Uuid>) -> Self {
        self.actor = actor;
        self.correlation_id = request_id.or(self.correlation_id);
        self
    }

    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.causation_id = Some(cause.id);
        self.correlation_id = Some(cause.correlation_id.unwrap_or(cause.id));
        self
    }

    pub fn subject(&self) -> String {
        self.event.subject()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // An envelope is plain data (strings, numbers, maps); serializing it
        // cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The JSON Schema (draft 2020-12) of an envelope as stored: `type`
    /// selects the shape of `data`, each event type's under `$defs` by its
    /// name. It describes what the system reads, so a field with a default
    /// is optional (events stored before it existed lack it) and every
    /// event ever stored is valid.
    pub fn json_schema_document() -> serde_json::Value {
        let mut schema = schemars::SchemaGenerator::default().into_root_schema_for::<Envelope>();
        schema.insert("title".into(), "Event envelope".into());
        // Without this the description would be `Event`'s, flattened in.
        let description = "An event as stored: its envelope, and `data` of the shape `type` names \
                           (each type's under `$defs`).";
        schema.insert("description".into(), description.into());
        schema.to_value()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        // An event of a type this build knows, the common case; anything
        // else takes the derived decoding, which says what is wrong.
        if let Ok(envelope) = Self::from_stored(bytes) {
            return Ok(envelope);
        }
        match serde_json::from_slice(bytes) {
            Ok(envelope) => Ok(envelope),
            Err(error) => {
                #[derive(Deserialize)]
                struct TypeOnly {
                    #[serde(rename = "type")]
                    event_type: String,
                }
                match serde_json::from_slice::<TypeOnly>(bytes) {
                    Ok(t) if !KNOWN_TYPES.contains(&t.event_type.as_str()) => {
                        Err(DecodeError::UnknownType(t.event_type))
                    }
                    _ => Err(DecodeError::Malformed(error)),
                }
            }
        }
    }

    /// Decodes an envelope in one pass: `data` is kept as text until `type`
    /// names its shape, then read straight into it. (The derived decoding
    /// of the flattened `event` first copies every field of the object into
    /// a generic tree and reads that, at about twice the cost.)
    fn from_stored(bytes: &[u8]) -> serde_json::Result<Self> {
        let stored: Stored = serde_json::from_slice(bytes)?;
        let tagged = Tagged { kind: Some(&stored.kind), data: Some(stored.data) };
        let event = Event::deserialize(MapAccessDeserializer::new(tagged))?;
        Ok(Self {
            id: stored.id,
            version: stored.version,
            occurred_at: stored.occurred_at,
            aggregate_id: stored.aggregate_id,
            correlation_id: stored.correlation_id,
            causation_id: stored.causation_id,
            actor: stored.actor,
            event,
        })
    }
}

/// An envelope as stored, its event's `data` not yet read.
#[derive(Deserialize)]
struct Stored<'a> {
    id: Uuid,
    version: u32,
    occurred_at: DateTime<Utc>,
    aggregate_id: String,
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default)]
    actor: Actor,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// An event's `type` and `data` as the two entries of a map, the shape
/// [`Event`]'s decoding reads.
struct Tagged<'a> {
    kind: Option<&'a str>,
    data: Option<&'a RawValue>,
}

impl<'de> MapAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> serde_json::Result<Option<K::Value>> {
        let key = match (self.kind, self.data) {
            (Some(_), _) => "type",
            (None, Some(_)) => "data",
            (None, None) => return Ok(None),
        };
        seed.deserialize(IntoDeserializer::<serde_json::Error>::into_deserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> serde_json::Result<V::Value> {
        if let Some(kind) = self.kind.take() {
            return seed.deserialize(IntoDeserializer::<serde_json::Error>::into_deserializer(kind));
        }
        match self.data.take() {
            Some(data) => seed.deserialize(data),
            None => Err(serde::de::Error::custom("a value asked for after the last key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_describes_every_known_event_type_by_name() {
        let schema = Envelope::json_schema_document();
        let text = schema.to_string();
        for name in KNOWN_TYPES {
            assert!(schema["$defs"].get(*name).is_some(), "no $defs/{name} in {text}");
            assert!(text.contains(&format!("\"const\":\"{name}\"")), "{name} is not a value of type in {text}");
        }
        for field in ["id", "version", "occurred_at", "aggregate_id"] {
            assert!(schema["required"].as_array().is_some_and(|r| r.contains(&field.into())), "{field}: {text}");
        }
    }

    /// What the derived decoding makes of `json`.
    fn derived(json: &str) -> Option<Envelope> {
        serde_json::from_str(json).ok()
    }

    #[test]
    fn the_one_pass_decoding_reads_what_the_derived_one_reads() {
        let documents = [
            // As written today, with an actor and a request.
            r#"{"id":"0192f3c4-0000-7000-8000-000000000001","version":1,"occurred_at":"2026-01-01T00:00:00.123456Z",
                "aggregate_id":"0192f3c4-0000-7000-8000-0000000000aa","correlation_id":"0192f3c4-0000-7000-8000-0000000000bb",
                "actor":{"kind":"token","token_id":"0192f3c4-0000-7000-8000-0000000000cc","name":"ci"},
                "type":"WebsiteAdded","data":{"website_id":"0192f3c4-0000-7000-8000-0000000000aa",
                "url":"https://example.com/","name":"example","regions":["europe","local"],"interval_seconds":60}}"#,
            // `data` before `type`, no actor, a field this build ignores.
            r#"{"data":{"region":"local"},"id":"0192f3c4-0000-7000-8000-000000000002","type":"RegionAdded",
                "version":1,"occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"local","later_field":[1,2]}"#,
            // A check, with a cause of a later build.
            r#"{"id":"0192f3c4-0000-7000-8000-000000000003","type":"CheckCompleted","version":1,
                "occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"0192f3c4-0000-7000-8000-0000000000aa",
                "data":{"website_id":"0192f3c4-0000-7000-8000-0000000000aa","region":"local",
                "scheduled_at":"2026-01-01T00:00:00Z","started_at":"2026-01-01T00:00:00Z","up":false,
                "cause":"quantum_flux","response_ms":12}}"#,
            // An escaped type name: not borrowed, still read.
            r#"{"id":"0192f3c4-0000-7000-8000-000000000004","type":"Region\u0041dded","version":1,
                "occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"local","data":{"region":"local"}}"#,
        ];
        for json in documents {
            let fast = Envelope::from_stored(json.as_bytes()).map_err(|e| format!("{e}: {json}"));
            assert_eq!(fast.ok(), derived(json), "{json}");
            assert!(derived(json).is_some(), "{json}");
        }
    }

    #[test]
    fn what_the_one_pass_decoding_refuses_the_derived_one_explains() {
        let documents = [
            // A type of a newer build.
            r#"{"id":"0192f3c4-0000-7000-8000-000000000005","type":"WebsiteArchived","version":1,
                "occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"x","data":{}}"#,
            // A known type of the wrong shape, and one without its data.
            r#"{"id":"0192f3c4-0000-7000-8000-000000000006","type":"RegionAdded","version":1,
                "occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"x","data":{"region":7}}"#,
            r#"{"id":"0192f3c4-0000-7000-8000-000000000007","type":"RegionAdded","version":1,
                "occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"x"}"#,
        ];
        for json in documents {
            assert!(Envelope::from_stored(json.as_bytes()).is_err(), "{json}");
            assert_eq!(derived(json), None, "{json}");
        }
        let unknown = Envelope::from_json(documents[0].as_bytes());
        assert!(matches!(unknown, Err(DecodeError::UnknownType(t)) if t == "WebsiteArchived"));
        assert!(matches!(Envelope::from_json(documents[1].as_bytes()), Err(DecodeError::Malformed(_))));
    }
}
