//! The whole system in one test process, against real servers: a NATS of
//! its own, a fresh Postgres database, a Redis of its own, the test
//! InfluxDB; the API (in-process client) and the projections run from the
//! start, the other services when a test starts them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{config, influx, last_sequence, Db, Nats, Redis};
use futures::StreamExt;
use poem::endpoint::BoxEndpoint;
use poem::http::{Method, StatusCode};
use poem::test::TestClient;
use serde_json::Value;
use services::api::{self, ApiState};
use services::bus::Bus;
use services::cron::store::ScheduleStore;
use services::notification::Mailer;
use services::worker::check::{Checker, CheckerOptions};
use services::{cron, detector, notification, projector, worker, Config};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type Service = (CancellationToken, JoinHandle<anyhow::Result<()>>);

pub struct Stack {
    pub client: TestClient<BoxEndpoint<'static>>,
    pub bus: Bus,
    pub db: Db,
    pub config: Config,
    pub store: ScheduleStore,
    pub cancel: CancellationToken,
    _redis: Redis,
    _nats: Nats,
}

impl Stack {
    pub async fn start(extra: &[(&str, &str)]) -> Stack {
        let nats = Nats::start().await;
        let db = Db::fresh().await;
        let redis = Redis::start().await;
        let mut settings = vec![("REDIS_URL", redis.url.as_str()), ("WORKER_RECLAIM_IDLE_MS", "1000")];
        settings.extend_from_slice(extra);
        let config = config(&nats, &db, &settings);
        let bus = services::runtime::connect_bus(&config).await.expect("bus");
        let cancel = CancellationToken::new();
        api::ensure_default_region(&bus, &config.default_region).await.expect("default region");
        tokio::spawn(projector::run_all(bus.clone(), db.pool.clone(), influx(&config), cancel.clone()));
        let last = last_sequence(&bus).await;
        assert!(projector::wait_for(&db.pool, last, Duration::from_secs(10)).await.expect("offset"));
        let store = ScheduleStore::connect(&redis.url).await.expect("redis");
        let state = Arc::new(ApiState {
            bus: bus.clone(),
            pool: db.pool.clone(),
            influx: influx(&config),
            projection_wait: config.projection_wait,
            allow_private_targets: true,
        });
        Stack { client: TestClient::new(api::app(state)), bus, db, config, store, cancel, _redis: redis, _nats: nats }
    }

    pub fn start_cron(&self) -> Service {
        let token = self.cancel.child_token();
        let handle = tokio::spawn(cron::serve(
            self.config.cron.clone(),
            self.bus.clone(),
            self.db.pool.clone(),
            self.store.clone(),
            token.clone(),
        ));
        (token, handle)
    }

    pub fn start_worker(&self, region: &str) -> Service {
        let token = self.cancel.child_token();
        let checker =
            Checker::new(CheckerOptions { allow_private_targets: true, ..Default::default() }).expect("checker");
        let (settings, url, bus, region, cancel) = (
            self.config.worker.clone(),
            self.config.redis_url.clone(),
            self.bus.clone(),
            region_name(region),
            token.clone(),
        );
        let handle = tokio::spawn(async move { worker::serve(settings, &url, region, bus, checker, cancel).await });
        (token, handle)
    }

    pub fn start_detector(&self) -> Service {
        let token = self.cancel.child_token();
        let handle =
            tokio::spawn(detector::serve(self.bus.clone(), self.db.pool.clone(), self.config.detector, token.clone()));
        (token, handle)
    }

    pub fn start_notifier(&self) -> Service {
        let token = self.cancel.child_token();
        let mailer = Mailer::new(&self.config.smtp).expect("mailer");
        let handle = tokio::spawn(notification::serve(
            self.bus.clone(),
            self.db.pool.clone(),
            mailer,
            self.config.notify.clone(),
            token.clone(),
        ));
        (token, handle)
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

    /// The /monitor entry of a website (`null` if none).
    pub async fn monitor(&self, id: &str) -> Value {
        let (status, all) = self.call(Method::GET, "/monitor", None).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        all.as_array().into_iter().flatten().find(|w| w["id"] == id).cloned().unwrap_or(Value::Null)
    }

    /// CheckCompleted events stored per subject.
    pub async fn checks_per_subject(&self) -> HashMap<String, usize> {
        let stream = self.bus.js.get_stream("CHECKS").await.expect("CHECKS");
        let mut subjects = stream.info_with_subjects("checks.>").await.expect("info");
        let mut counts = HashMap::new();
        while let Some(entry) = subjects.next().await {
            let (subject, count) = entry.expect("subject");
            counts.insert(subject, count);
        }
        counts
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
