//! The one harness: the whole system in one test process, against real
//! servers: a NATS and a Redis of its own, a fresh Postgres database, the
//! test InfluxDB and an SMTP server (stopped unless the test starts one).
//! The API (in-process client) and the projections run from the start; the
//! scheduler, workers, detector and notifier when a test starts them, each
//! with its own cancellation token so a test can stop and restart it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::smtp::Smtp;
use super::{config, last_sequence, Db, Nats, Redis};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use events::{CheckCompleted, Envelope, Event, FailureCause};
use futures::StreamExt;
use poem::endpoint::BoxEndpoint;
use poem::http::{Method, StatusCode};
use poem::test::TestClient;
use serde_json::Value;
use services::api::{self, ApiState};
use services::bus::{answered_by_leader, Bus};
use services::cron::store::ScheduleStore;
use services::{cron, detector, notification, projector, worker, Config, Deps};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub type Service = (CancellationToken, JoinHandle<anyhow::Result<()>>);

pub struct Stack {
    /// The API, sending the admin token with every request.
    pub client: TestClient<BoxEndpoint<'static>>,
    /// The `ADMIN_TOKEN` of this system.
    pub admin_token: String,
    pub deps: Deps,
    pub bus: Bus,
    pub db: Db,
    pub config: Config,
    pub store: ScheduleStore,
    pub cancel: CancellationToken,
    pub smtp: Smtp,
    pub nats: Nats,
    pub redis: Redis,
}

impl Stack {
    /// The system with `extra` settings and no SMTP server answering.
    pub async fn start(extra: &[(&str, &str)]) -> Stack {
        Self::start_with_smtp(Smtp::stopped(), extra).await
    }

    /// The system sending email to `smtp`.
    pub async fn start_with_smtp(smtp: Smtp, extra: &[(&str, &str)]) -> Stack {
        Self::start_on(Nats::start().await, smtp, extra).await
    }

    /// The system on `nats` (a server started with a configuration of the
    /// test's, e.g. TLS and credentials given in `extra`).
    pub async fn start_on(nats: Nats, smtp: Smtp, extra: &[(&str, &str)]) -> Stack {
        Self::start_with_db(nats, Db::fresh().await, smtp, extra).await
    }

    /// The system on `nats` and `db` (`extra` may reach the database
    /// another way, e.g. `DATABASE_URL` through a proxy; `db.pool` stays
    /// direct, for the test's own queries).
    pub async fn start_with_db(nats: Nats, db: Db, smtp: Smtp, extra: &[(&str, &str)]) -> Stack {
        let redis = Redis::start().await;
        let smtp_port = smtp.port.to_string();
        let admin_token = services::access::new_secret();
        let mut settings = vec![
            ("REDIS_URL", redis.url.as_str()),
            ("WORKER_RECLAIM_IDLE_MS", "1000"),
            ("SMTP_PORT", &smtp_port),
            ("ADMIN_TOKEN", &admin_token),
        ];
        settings.extend_from_slice(extra);
        let config = config(&nats, &db, &settings);
        let deps = Deps::connect(&config).await.expect("connect");
        let cancel = CancellationToken::new();
        api::ensure_default_region(&deps.bus, &config.api.default_region).await.expect("default region");
        tokio::spawn(projector::serve(deps.clone(), config.projector.clone(), cancel.clone()));
        let store = ScheduleStore::new(deps.redis_connection(&cancel).await.expect("redis"));
        let state = Arc::new(ApiState::new(deps.clone(), &config.api));
        let client = TestClient::new(api::app(state)).default_header("authorization", format!("Bearer {admin_token}"));
        let stack =
            Stack { client, admin_token, bus: deps.bus.clone(), deps, db, config, store, cancel, smtp, nats, redis };
        stack.settle().await;
        stack
    }

    /// Another API instance over the same system (its own caches), sending
    /// `token` as a bearer token with every request, or nothing.
    pub fn api_client(&self, token: Option<&str>) -> TestClient<BoxEndpoint<'static>> {
        self.api_client_sending(token.map(|token| format!("Bearer {token}")))
    }

    /// Another API instance, sending `authorization` as the Authorization
    /// header with every request.
    pub fn api_client_sending(&self, authorization: Option<String>) -> TestClient<BoxEndpoint<'static>> {
        let state = Arc::new(ApiState::new(self.deps.clone(), &self.config.api));
        let client = TestClient::new(api::app(state));
        match authorization {
            Some(value) => client.default_header("authorization", value),
            None => client,
        }
    }

    /// Waits until the MONITOR projection has applied everything in MONITOR.
    pub async fn settle(&self) {
        let last = last_sequence(&self.bus).await;
        let reached = projections::cursor::wait_for(
            &self.db.pool,
            projections::postgres::PROJECTION,
            last,
            Duration::from_secs(10),
        )
        .await
        .expect("offset");
        assert!(reached, "projection did not reach {last}");
    }

    fn service<F, Fut>(&self, serve: F) -> Service
    where
        F: FnOnce(Deps, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let token = self.cancel.child_token();
        (token.clone(), tokio::spawn(serve(self.deps.clone(), token)))
    }

    pub fn start_cron(&self) -> Service {
        let config = self.config.cron.clone();
        self.service(|deps, cancel| cron::serve(deps, config, cancel))
    }

    pub fn start_worker(&self, region: &str) -> Service {
        let mut settings = self.config.worker.clone();
        settings.region = Some(region_name(region));
        self.service(|deps, cancel| worker::serve(deps, settings, cancel))
    }

    pub fn start_detector(&self) -> Service {
        let policy = self.config.detector;
        self.service(|deps, cancel| detector::serve(deps, policy, cancel))
    }

    pub fn start_notifier(&self) -> Service {
        let settings = self.config.notify.clone();
        self.service(|deps, cancel| notification::serve(deps, settings, cancel))
    }

    /// The scheduler and a worker for the default region.
    pub fn start_pipeline(&self) {
        self.start_cron();
        self.start_worker("local");
    }

    /// Publishes a check result as a worker would.
    pub async fn check(&self, website: Uuid, region: &str, scheduled_at: DateTime<Utc>, up: bool) {
        let check = CheckCompleted {
            website_id: website,
            region: region_name(region),
            scheduled_at,
            started_at: scheduled_at + ChronoDuration::milliseconds(3),
            up,
            status_code: Some(if up { 200 } else { 503 }),
            response_ms: Some(12),
            cause: (!up).then_some(FailureCause::HttpStatus),
            message: (!up).then(|| "HTTP 503 Service Unavailable".to_owned()),
            cert_not_after: None,
        };
        let id = CheckCompleted::event_id(website, &check.region, scheduled_at);
        let envelope = Envelope::with_id(id, Event::CheckCompleted(check), Utc::now());
        self.bus.publish(&envelope, None).await.expect("publish check");
    }

    /// Waits until the detector has read everything in CHECKS.
    pub async fn detector_settled(&self) {
        let last = self.bus.last_sequence("CHECKS").await.expect("CHECKS' last sequence");
        let done =
            projections::cursor::wait_for(&self.db.pool, detector::POSITION, last, Duration::from_secs(10)).await;
        assert!(done.expect("offset"), "detector did not reach {last}");
    }

    /// Waits until InfluxDB holds everything in CHECKS (the what-if reads it).
    pub async fn influx_settled(&self) {
        let checks = self.bus.js.get_stream("CHECKS").await.expect("CHECKS");
        let last = self.bus.last_sequence("CHECKS").await.expect("CHECKS' last sequence");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let floor = match checks
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(projector::INFLUX_CONSUMER)
                .await
            {
                Ok(mut consumer) => consumer.info().await.expect("consumer info").ack_floor.stream_sequence,
                Err(_) => 0,
            };
            if floor >= last {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "influxdb did not reach {last} (at {floor})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the notifier has read every incident event in MONITOR.
    pub async fn notifier_settled(&self) {
        let last = self.bus.last_subject_seq("incidents.>").await.expect("last incident");
        let done =
            projections::cursor::wait_for(&self.db.pool, notification::POSITION, last, Duration::from_secs(10)).await;
        assert!(done.expect("offset"), "notifier did not reach {last}");
    }

    /// The SiteDown/SiteUp events of a website, in order.
    pub async fn transitions(&self, website: Uuid) -> Vec<Envelope> {
        use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        let stream = self.bus.monitor_stream().await.expect("stream");
        let expected = {
            let mut info = stream.info_with_subjects(format!("incidents.{website}")).await.expect("info");
            let mut total = 0;
            while let Some(entry) = info.next().await {
                total += entry.expect("subject").1;
            }
            total
        };
        if expected == 0 {
            return vec![];
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("incidents.{website}"),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages").take(expected);
        let mut all = Vec::new();
        while let Some(message) = messages.next().await {
            all.push(Envelope::from_json(&message.expect("message").payload).expect("event"));
        }
        all
    }

    pub fn emails(&self, kind: &str) -> Vec<String> {
        self.smtp.messages().into_iter().filter(|m| m.contains(&format!("Subject: [{kind}]"))).collect()
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, path);
        if let Some(body) = body {
            request = request.body_json(&body);
        }
        let response = request.send().await;
        let status = response.0.status();
        let bytes = response.0.into_body().into_vec().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Registers a website; returns its id.
    pub async fn add_website(&self, body: Value) -> String {
        let (status, website) = self.call(Method::POST, "/websites", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{website}");
        website["id"].as_str().expect("id").to_owned()
    }

    /// Registers a website; returns its id as a UUID.
    pub async fn add_website_id(&self, body: Value) -> Uuid {
        self.add_website(body).await.parse().expect("uuid")
    }

    /// The /monitor entry of a website (`null` if none).
    pub async fn monitor(&self, id: &str) -> Value {
        let (status, all) = self.call(Method::GET, "/monitor", None).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        all.as_array().into_iter().flatten().find(|w| w["id"] == id).cloned().unwrap_or(Value::Null)
    }

    /// Distinct checks (by event id) stored per check subject
    /// (`checks.<region>.<website>`), whether alone or in batches; a check
    /// stored twice (its worker died between storing and acknowledging)
    /// counts once, as every reader takes it once.
    pub async fn checks_per_subject(&self) -> HashMap<String, usize> {
        let mut ids: HashMap<String, std::collections::HashSet<Uuid>> = HashMap::new();
        for envelope in self.stored_checks().await {
            ids.entry(envelope.subject()).or_default().insert(envelope.id);
        }
        ids.into_iter().map(|(subject, ids)| (subject, ids.len())).collect()
    }

    /// Events per website id in MONITOR (one per website only added),
    /// asked until the stream's leader answers. A replica that has lost its
    /// leader answers stream info with its own state (nats-server lets a
    /// leaderless member answer, naming no leader), which may lack what the
    /// majority acknowledged while it was cut off.
    pub async fn added_per_website(&self) -> HashMap<String, usize> {
        eventually(Duration::from_secs(30), "MONITOR answering from its leader", || async {
            let stream = self.bus.monitor_stream().await.ok()?;
            let mut subjects = stream.info_with_subjects("monitor.website.>").await.ok()?;
            answered_by_leader(subjects.info.cluster.as_ref()).then_some(())?;
            let mut counts = HashMap::new();
            while let Some(entry) = subjects.next().await {
                let (subject, count) = entry.ok()?;
                counts.insert(subject.trim_start_matches("monitor.website.").to_owned(), count);
            }
            Some(counts)
        })
        .await
    }

    /// Of websites answered 201 (`created`), how many MONITOR lacks and
    /// how many it holds more than once.
    pub async fn writes_lost_and_doubled(&self, created: &[String]) -> (usize, usize) {
        let counts = self.added_per_website().await;
        let lost = created.iter().filter(|id| !counts.contains_key(*id)).count();
        let doubled = created.iter().filter(|id| counts.get(*id).copied().unwrap_or(0) > 1).count();
        (lost, doubled)
    }

    /// Every check stored in CHECKS, in stream order, once per event id (a
    /// check stored twice is taken once, as every reader takes it).
    pub async fn stored_checks(&self) -> Vec<Envelope> {
        use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        let stream = self.bus.js.get_stream("CHECKS").await.expect("CHECKS");
        let last = self.bus.last_sequence("CHECKS").await.expect("CHECKS' last sequence");
        if last == 0 {
            return Vec::new();
        }
        let consumer = stream
            .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let (mut seen, mut all) = (std::collections::HashSet::new(), Vec::new());
        while let Some(message) = messages.next().await {
            let message = message.expect("message");
            for envelope in events::batch::decode(&message.subject, &message.payload).unwrap_or_default() {
                if seen.insert(envelope.id) {
                    all.push(envelope);
                }
            }
            if message.info().expect("info").stream_sequence >= last {
                break;
            }
        }
        all
    }

    /// The scheduled times of the checks stored in CHECKS per (website,
    /// region), each in order.
    pub async fn check_slots(&self) -> HashMap<(Uuid, String), Vec<DateTime<Utc>>> {
        let mut slots: HashMap<(Uuid, String), Vec<DateTime<Utc>>> = HashMap::new();
        for envelope in self.stored_checks().await {
            if let Event::CheckCompleted(check) = envelope.event {
                slots.entry((check.website_id, check.region.to_string())).or_default().push(check.scheduled_at);
            }
        }
        slots.values_mut().for_each(|times| times.sort());
        slots
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn region_name(name: &str) -> events::RegionName {
    events::RegionName::parse(name).expect("region")
}

/// Polls `probe` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
