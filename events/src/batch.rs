//! Check results stored several to a message.
//!
//! With every acknowledged message fsynced on its own, a stream stores a
//! few thousand messages a second; a worker therefore packs the results it
//! has ready into one [`CheckBatch`] on `checks.<region>.batch`, and one
//! fsync stores them all. Each result stays an event of its own: every entry
//! of `checks` is the `data` of a CheckCompleted, decodable alone, and
//! [`CheckBatch::envelopes`] gives each its envelope back, with the id
//! derived from (website, region, scheduled time) as for a result published
//! alone. A batch's message id is derived from the ids it holds, so a
//! retried publish of the same batch is stored once.
//!
//! Results published one per message (`checks.<region>.<website_id>`, as
//! earlier versions did) are read the same way: [`decode`] takes either.

use crate::envelope::{DecodeError, Envelope};
use crate::event::{CheckCompleted, Event};
use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `type` of a batch message.
pub const BATCH_TYPE: &str = "CheckBatch";

/// Results of checks from one region, stored as one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckBatch {
    /// Always `CheckBatch`: tells a batch from a single event.
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    /// When the batch was published; the `occurred_at` of its events.
    pub occurred_at: DateTime<Utc>,
    /// Each the `data` of one CheckCompleted, all of one region.
    pub checks: Vec<CheckCompleted>,
}

impl CheckBatch {
    pub fn new(checks: Vec<CheckCompleted>, occurred_at: DateTime<Utc>) -> Self {
        Self { kind: BATCH_TYPE.to_owned(), version: 1, occurred_at: occurred_at.trunc_subsecs(6), checks }
    }

    /// The message id: a hash of the event ids in order, so publishing the
    /// same batch again is a duplicate.
    pub fn message_id(&self) -> Uuid {
        let mut ids = Vec::with_capacity(self.checks.len() * 16);
        for check in &self.checks {
            ids.extend_from_slice(
                CheckCompleted::event_id(check.website_id, &check.region, check.scheduled_at).as_bytes(),
            );
        }
        Uuid::new_v5(&Uuid::NAMESPACE_OID, &ids)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data; serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Each result as the event it is.
    pub fn envelopes(self) -> Vec<Envelope> {
        let occurred_at = self.occurred_at;
        self.checks
            .into_iter()
            .map(|check| {
                let id = CheckCompleted::event_id(check.website_id, &check.region, check.scheduled_at);
                Envelope::with_id(id, Event::CheckCompleted(check), occurred_at)
            })
            .collect()
    }

    /// The JSON Schema of a batch message.
    pub fn json_schema_document() -> serde_json::Value {
        let mut schema = schemars::SchemaGenerator::default().into_root_schema_for::<CheckBatch>();
        schema.insert("title".into(), "Check batch".into());
        schema.to_value()
    }
}

/// Whether a message on `subject` is a batch (`checks.<region>.batch`).
pub fn is_batch_subject(subject: &str) -> bool {
    subject.starts_with("checks.") && subject.ends_with(".batch")
}

/// The events of one stored message: the results of a batch, or the one
/// event of any other message.
pub fn decode(subject: &str, payload: &[u8]) -> Result<Vec<Envelope>, DecodeError> {
    if is_batch_subject(subject) {
        let batch: CheckBatch = serde_json::from_slice(payload)?;
        return Ok(batch.envelopes());
    }
    Envelope::from_json(payload).map(|envelope| vec![envelope])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::RegionName;
    use chrono::TimeZone;

    fn check(secs: i64, up: bool) -> CheckCompleted {
        let at = Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap_or_default();
        CheckCompleted {
            website_id: Uuid::from_u128(7),
            region: RegionName::parse("europe").unwrap_or_else(|e| panic!("{e}")),
            scheduled_at: at,
            started_at: at,
            up,
            status_code: Some(if up { 200 } else { 503 }),
            response_ms: Some(12),
            cause: None,
            message: None,
            cert_not_after: None,
        }
    }

    #[test]
    fn a_batch_gives_back_each_result_with_the_id_it_has_when_published_alone() {
        let batch = CheckBatch::new(vec![check(0, true), check(10, false)], Utc::now());
        let decoded = decode("checks.europe.batch", &batch.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.len(), 2);
        for (envelope, original) in decoded.iter().zip([check(0, true), check(10, false)]) {
            let alone = Envelope::with_id(
                CheckCompleted::event_id(original.website_id, &original.region, original.scheduled_at),
                Event::CheckCompleted(original.clone()),
                Utc::now(),
            );
            assert_eq!(envelope.id, alone.id);
            assert_eq!(envelope.event, alone.event);
            assert_eq!(envelope.subject(), "checks.europe.00000000-0000-0000-0000-000000000007");
        }
    }

    #[test]
    fn the_same_results_make_the_same_message_id_and_others_another() {
        let at = Utc::now();
        let one = CheckBatch::new(vec![check(0, true), check(10, true)], at);
        let again = CheckBatch::new(vec![check(0, true), check(10, true)], at + chrono::Duration::seconds(1));
        let other = CheckBatch::new(vec![check(0, true), check(20, true)], at);
        assert_eq!(one.message_id(), again.message_id());
        assert_ne!(one.message_id(), other.message_id());
    }

    #[test]
    fn a_single_event_still_decodes_and_a_broken_batch_is_malformed() {
        let envelope = Envelope::new(Event::CheckCompleted(check(0, true)), Utc::now());
        let decoded = decode(&envelope.subject(), &envelope.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, vec![envelope]);
        assert!(matches!(decode("checks.europe.batch", b"{\"checks\": 3}"), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn every_entry_of_a_batch_is_the_data_of_a_check_completed() {
        let batch = CheckBatch::new(vec![check(0, false)], Utc::now());
        let value: serde_json::Value = serde_json::from_slice(&batch.to_json()).unwrap_or_default();
        let entry = value["checks"][0].clone();
        let event: Event = serde_json::from_value(serde_json::json!({"type": "CheckCompleted", "data": entry}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event, Event::CheckCompleted(check(0, false)));
    }
}
