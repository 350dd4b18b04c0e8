//! The envelope every event travels in:
//! `{id, type, version, occurred_at, aggregate_id, correlation_id?, causation_id?, actor, data}`.
//! The id is a UUID v7 and doubles as the `Nats-Msg-Id`, so a retried
//! publish is de-duplicated by the server.

use crate::access::Actor;
use crate::event::{Event, KNOWN_TYPES};
use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
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
}
