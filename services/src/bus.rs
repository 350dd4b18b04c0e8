//! The event bus: the JetStream connection, the stream definitions of
//! `nats/streams.json` (applied idempotently at start), and publishing with
//! a message id (de-duplication) and an expected last subject sequence
//! (optimistic concurrency). Connecting honours the TLS and credentials
//! settings ([`NatsSecurity`]); a server that refuses them is an error at
//! once, naming what to fix, while a server that is not up yet is waited for.

use crate::config::{NatsCredentials, NatsSecurity};
use crate::metrics;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use async_nats::ConnectErrorKind;
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
    /// The server refused this client (TLS or credentials), or a TLS or
    /// credentials file could not be used; retrying would not help.
    #[error("{0}")]
    Refused(String),
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
        Self::connect_with(url, &NatsSecurity::default()).await
    }

    /// Connects with TLS and credentials. The first attempt is made in the
    /// foreground so that a refusal (an untrusted certificate, wrong
    /// credentials) stops the service with a clear error; a server that
    /// does not answer yet is then retried in the background.
    pub async fn connect_with(url: &str, security: &NatsSecurity) -> Result<Self> {
        crate::runtime::install_tls_provider();
        let servers = servers(url)?;
        let client = match options(url, security).await?.connect(servers.as_slice()).await {
            Ok(client) => client,
            Err(e) => {
                if let Some(reason) = refusal(&e, security) {
                    return Err(BusError::Refused(reason));
                }
                tracing::warn!(error = %e, "NATS is not reachable yet; connecting in the background");
                options(url, security)
                    .await?
                    .retry_on_initial_connect()
                    .connect(servers.as_slice())
                    .await
                    .map_err(BusError::other)?
            }
        };
        watch_server(client.clone());
        let js = jetstream::new(client.clone());
        Ok(Self { client, js })
    }

    /// Creates or updates every stream of `nats/streams.json`; CHECKS gets
    /// its maximum age from configuration.
    pub async fn ensure_streams(&self, checks_max_age: Duration) -> Result<()> {
        self.ensure_streams_replicated(checks_max_age, 1).await
    }

    /// As [`Bus::ensure_streams`], each stream kept on `replicas` servers of
    /// a cluster (`NATS_REPLICAS`; a single server accepts only 1).
    pub async fn ensure_streams_replicated(&self, checks_max_age: Duration, replicas: usize) -> Result<()> {
        for mut config in stream_definitions()? {
            if config.name == CHECKS_STREAM {
                config.max_age = checks_max_age;
            }
            config.num_replicas = replicas;
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
        let mut publish =
            PublishMessage::build().payload(envelope.to_json().into()).message_id(envelope.id.to_string());
        if let Some(seq) = expected_subject_seq {
            publish = publish.expected_last_subject_sequence(seq);
        }
        let subject = envelope.subject();
        let started = std::time::Instant::now();
        let acked = async {
            self.js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| publish_error(e.kind(), e))?
                .await
                .map_err(|e| publish_error(e.kind(), e))
        }
        .await;
        match acked {
            Ok(ack) => {
                metrics::published(&subject, started.elapsed());
                Ok(ack.sequence)
            }
            Err(e) => {
                metrics::publish_failed(&subject, matches!(e, BusError::Conflict));
                Err(e)
            }
        }
    }

    /// The last sequence of `stream` as its leader knows it. In a cluster a
    /// replica that has lost its leader (cut off, or just back) answers
    /// stream info too, with what it holds and naming no leader; that may
    /// lack what the majority acknowledged meanwhile, so such an answer is
    /// asked again until a leader answers, for as long as an election takes.
    pub async fn last_sequence(&self, stream: &str) -> Result<u64> {
        let started = std::time::Instant::now();
        loop {
            let handle = self.js.get_stream(stream).await.map_err(BusError::other)?;
            let info = handle.cached_info();
            if answered_by_leader(info.cluster.as_ref()) {
                return Ok(info.state.last_sequence);
            }
            if started.elapsed() >= LEADER_WAIT {
                return Err(BusError::JetStream(format!("stream {stream} has no leader")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stream sequence of the last event on `subject` of MONITOR (0:
    /// none yet).
    pub async fn last_subject_seq(&self, subject: &str) -> Result<u64> {
        self.last_subject_seq_in(MONITOR_STREAM, subject).await
    }

    /// The stream sequence of the last message on `subject` (a filter may
    /// hold wildcards) of `stream` (0: none yet), from the stream's leader.
    pub async fn last_subject_seq_in(&self, stream: &str, subject: &str) -> Result<u64> {
        let stream = self.js.get_stream(stream).await.map_err(BusError::other)?;
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

/// How long [`Bus::last_sequence`] waits for a stream's leader: NATS'
/// elections take a few seconds when a leader goes silent.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Whether a stream info answer came from the stream's leader (or from a
/// server that is not clustered, which leads everything it holds): a
/// replica answering without a leader names none.
pub fn answered_by_leader(cluster: Option<&stream::ClusterInfo>) -> bool {
    cluster.is_none_or(|cluster| cluster.leader.as_deref().is_some_and(|leader| !leader.is_empty()))
}

/// The servers of `url`: one URL or several, comma-separated (a cluster).
fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .map(|one| {
            one.parse().map_err(|e| BusError::Refused(format!("NATS_URL: {one:?} is not a server address: {e}")))
        })
        .collect()
}

/// How often the client pings its server. A server that stops answering
/// (stopped, or cut off by the network without closing the connection) is
/// left for another of the cluster after two unanswered pings, so within
/// about three intervals rather than the library's default of minutes.
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// How long connecting to one server may take, from TCP to the server's
/// answer to the first ping, before the next listed server is tried. A
/// frozen server (or one cut off behind a network that still completes
/// TCP handshakes) accepts the connection and then says nothing; a
/// reconnect that happens to try it first moves on after this. (Before
/// async-nats 0.47 the limit covered only TCP, and such a reconnect
/// waited for the server's greeting until the server woke up.)
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the connection's server is asked for an answer, how long it
/// may take, and how many may go missing before the client leaves it.
const ALIVE_EVERY: Duration = Duration::from_secs(2);
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);
const ALIVE_MISSES: u32 = 2;
/// A subject nobody subscribes to: the server itself answers a request on
/// it ("no responders"), a round trip to that server alone.
const ALIVE_SUBJECT: &str = "website-monitor.alive";

/// Leaves a server that stopped answering for another of the cluster. The
/// client's own pings do not: they are sent only while the connection is
/// idle, so a busy client stays with a frozen server (or one cut off by the
/// network without the connection closing) until TCP gives up, minutes
/// later. The reconnect tries the listed servers in random order, each for
/// at most [`CONNECT_TIMEOUT`], so it may try the silent server again but
/// does not stay with it. The task ends with the process.
fn watch_server(client: async_nats::Client) {
    tokio::spawn(async move {
        let mut missed = 0;
        loop {
            tokio::time::sleep(ALIVE_EVERY).await;
            if client.connection_state() != async_nats::connection::State::Connected {
                missed = 0;
                continue;
            }
            let request = async_nats::Request::new().timeout(Some(ALIVE_TIMEOUT));
            match client.send_request(ALIVE_SUBJECT, request).await {
                Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => missed += 1,
                _ => missed = 0,
            }
            if missed >= ALIVE_MISSES {
                tracing::warn!(server = %client.server_info().server_name, "the NATS server stopped answering; reconnecting");
                missed = 0;
                if client.force_reconnect().await.is_err() {
                    return;
                }
            }
        }
    });
}

/// The client options of `security`: TLS roots and client certificate,
/// and at most one kind of credentials. Errors name the setting.
async fn options(url: &str, security: &NatsSecurity) -> Result<async_nats::ConnectOptions> {
    let mut options = async_nats::ConnectOptions::new()
        .name("website-monitor")
        .ping_interval(PING_INTERVAL)
        .connection_timeout(CONNECT_TIMEOUT);
    if security.requires_tls(url) {
        options = options.require_tls(true);
    }
    if let Some(ca) = &security.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &security.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(match &security.credentials {
        NatsCredentials::None => options,
        NatsCredentials::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsCredentials::NKey(path) => {
            let seed = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| BusError::Refused(format!("NATS_NKEY: cannot read {}: {e}", path.display())))?;
            options.nkey(seed.trim().to_owned())
        }
        NatsCredentials::Creds(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| BusError::Refused(format!("NATS_CREDS: cannot use {}: {e}", path.display())))?,
    })
}

/// Why the server refused this client, naming the settings to look at;
/// `None` when the error may pass (the server is not up yet).
fn refusal(error: &async_nats::ConnectError, security: &NatsSecurity) -> Option<String> {
    // The TLS handshake's own failures surface as I/O errors; the text
    // of rustls's certificate errors tells them apart from a refused TCP
    // connection.
    let text = error_chain(error);
    let certificate = ["certificate", "tls", "handshake", "CertificateRequired"]
        .iter()
        .any(|word| text.to_ascii_lowercase().contains(&word.to_ascii_lowercase()));
    let credentials = match security.credentials {
        NatsCredentials::None => "the server wants credentials: set NATS_USER/NATS_PASSWORD, NATS_NKEY or NATS_CREDS",
        NatsCredentials::UserPassword { .. } => "check NATS_USER and NATS_PASSWORD",
        NatsCredentials::NKey(_) => "check NATS_NKEY",
        NatsCredentials::Creds(_) => "check NATS_CREDS",
    };
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            Some(format!("NATS refused the credentials ({text}): {credentials}"))
        }
        ConnectErrorKind::Tls => Some(format!(
            "TLS with NATS failed ({text}): check NATS_URL, NATS_CA_FILE, NATS_CERT_FILE and NATS_KEY_FILE"
        )),
        ConnectErrorKind::Io if certificate => Some(format!(
            "TLS with NATS failed ({text}): is the server's certificate signed by the CA of NATS_CA_FILE, \
             and issued for the host of NATS_URL?"
        )),
        _ => None,
    }
}

/// An error with its sources, one after the other.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
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
    fn only_a_stream_info_naming_a_leader_is_taken_as_the_leaders() {
        let cluster = |json: serde_json::Value| -> stream::ClusterInfo {
            serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
        };
        let led = cluster(serde_json::json!({ "name": "c", "leader": "node-1", "replicas": [] }));
        // What nats-server sends from a replica that has lost its leader.
        let leaderless = cluster(serde_json::json!({ "name": "c", "replicas": [] }));
        let empty = cluster(serde_json::json!({ "name": "c", "leader": "" }));
        assert!(answered_by_leader(Some(&led)));
        assert!(!answered_by_leader(Some(&leaderless)));
        assert!(!answered_by_leader(Some(&empty)));
        // A server that is not clustered.
        assert!(answered_by_leader(None));
    }

    #[test]
    fn a_cluster_url_lists_every_server() {
        let listed = servers("tls://127.0.0.1:4231, tls://127.0.0.1:4232,tls://127.0.0.1:4233")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|s| s.port() > 4230 && s.host() == "127.0.0.1"));
        assert!(
            matches!(servers("nats://127.0.0.1:notaport"), Err(BusError::Refused(reason)) if reason.contains("NATS_URL"))
        );
    }

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
