//! The event bus: the JetStream connection, the stream definitions of
//! `nats/streams.json` (applied idempotently at start), and publishing with
//! a message id (de-duplication) and an expected last subject sequence
//! (optimistic concurrency).

use async_nats::jetstream::{self, context::Publish, context::PublishErrorKind, stream};
use events::subject::{CHECKS_STREAM, MONITOR_STREAM};
use events::Envelope;
use std::time::Duration;

const STREAM_DEFINITIONS: &str = include_str!("../../nats/streams.json");

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The subject moved past the sequence the command was decided against.
    #[error("the aggregate was changed concurrently")]
    Conflict,
    #[error("stream definitions in nats/streams.json are invalid: {0}")]
    Definitions(#[from] serde_json::Error),
    #[error("jetstream: {0}")]
    JetStream(String),
}

impl BusError {
    fn other(error: impl std::fmt::Display) -> Self {
        BusError::JetStream(error.to_string())
    }
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Bus {
    /// Connects, retrying in the background until the server answers, so a
    /// service may start before NATS does.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("website-monitor")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(BusError::other)?;
        let js = jetstream::new(client.clone());
        Ok(Self { client, js })
    }

    /// Creates or updates every stream of `nats/streams.json`; CHECKS gets
    /// its maximum age from configuration.
    pub async fn ensure_streams(&self, checks_max_age: Duration) -> Result<()> {
        for mut config in stream_definitions()? {
            if config.name == CHECKS_STREAM {
                config.max_age = checks_max_age;
            }
            let name = config.name.clone();
            self.js
                .create_or_update_stream(config)
                .await
                .map_err(|e| BusError::JetStream(format!("applying stream {name}: {e}")))?;
        }
        Ok(())
    }

    pub async fn monitor_stream(&self) -> Result<stream::Stream> {
        self.js.get_stream(MONITOR_STREAM).await.map_err(BusError::other)
    }

    /// Publishes `envelope` and waits for JetStream to store it; returns its
    /// stream sequence. `expected_subject_seq` is the sequence of the last
    /// event on the envelope's subject the command saw (0: none).
    pub async fn publish(&self, envelope: &Envelope, expected_subject_seq: Option<u64>) -> Result<u64> {
        let mut publish = Publish::build().payload(envelope.to_json().into()).message_id(envelope.id.to_string());
        if let Some(seq) = expected_subject_seq {
            publish = publish.expected_last_subject_sequence(seq);
        }
        let ack = self
            .js
            .send_publish(envelope.subject(), publish)
            .await
            .map_err(|e| publish_error(e.kind(), e))?
            .await
            .map_err(|e| publish_error(e.kind(), e))?;
        Ok(ack.sequence)
    }

    /// The stream sequence of the last event on `subject` (0: none yet).
    pub async fn last_subject_seq(&self, subject: &str) -> Result<u64> {
        let stream = self.monitor_stream().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(BusError::other(e)),
        }
    }
}

impl Bus {
    /// The last event on `subject` of MONITOR with its stream sequence
    /// (`None`: no event yet), to decide against the aggregate's real
    /// latest state rather than a projection that may lag.
    pub async fn last_subject_event(&self, subject: &str) -> Result<Option<(u64, Envelope)>> {
        let stream = self.monitor_stream().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let envelope = Envelope::from_json(&message.payload)
                    .map_err(|e| BusError::JetStream(format!("MONITOR sequence {}: {e}", message.sequence)))?;
                Ok(Some((message.sequence, envelope)))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::other(e)),
        }
    }
}

fn publish_error(kind: PublishErrorKind, error: impl std::fmt::Display) -> BusError {
    match kind {
        PublishErrorKind::WrongLastSequence => BusError::Conflict,
        _ => BusError::other(error),
    }
}

/// The stream definitions as committed in `nats/streams.json`.
pub fn stream_definitions() -> Result<Vec<stream::Config>> {
    Ok(serde_json::from_str(STREAM_DEFINITIONS)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_stream_definitions_parse_and_name_both_streams() {
        let definitions = stream_definitions().unwrap_or_else(|e| panic!("{e}"));
        let monitor = definitions.iter().find(|c| c.name == MONITOR_STREAM);
        let checks = definitions.iter().find(|c| c.name == CHECKS_STREAM);
        let (Some(monitor), Some(checks)) = (monitor, checks) else { panic!("both streams must be defined") };
        assert_eq!(monitor.storage, stream::StorageType::File);
        assert_eq!(monitor.max_age, Duration::ZERO, "the system of record never expires");
        assert!(monitor.subjects.iter().any(|s| s == events::subject::WEBSITES || s == "monitor.>"));
        assert!(monitor.subjects.iter().any(|s| s == events::subject::INCIDENTS));
        assert_eq!(checks.subjects, vec![events::subject::CHECKS.to_owned()]);
        assert_eq!(checks.storage, stream::StorageType::File);
    }
}
