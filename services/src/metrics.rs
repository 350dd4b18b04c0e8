//! Prometheus metrics: the one registry of this process and the functions
//! services call to record into it.
//!
//! Every service records what it does here (a process running several
//! services, like the all-in-one `monitor`, exposes them all from one
//! registry). `GET /metrics` answers OpenMetrics to scrapers that ask for
//! it (Prometheus does) and the classic text format (0.0.4) to others.
//! The API serves the registry at `GET /metrics` behind its
//! usual access rules (a `read` token as `Authorization: Bearer`); every
//! binary also serves it, without authentication, on
//! `METRICS_HOST:METRICS_PORT` when `METRICS_PORT` is set ([`serve`]).
//!
//! Guarantees: names follow Prometheus conventions (`monitor_` prefix,
//! `_total` counters, base units: `_seconds`), and every label takes values
//! from a small bounded set (regions, channel types, route templates of the
//! API, stream and reader names), never raw paths, ids or URLs, so the
//! number of series does not grow with the websites or the requests.
//! Recording never fails and never blocks on I/O.

use crate::follow::Lag;
use events::{ChannelKind, CheckCompleted};
use poem::endpoint::make_sync;
use poem::listener::TcpListener;
use poem::{get, Response, Route, Server};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// OpenMetrics text, what Prometheus asks for first.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for scrapers that do not ask for
/// OpenMetrics.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    region: String,
    /// `up` or `down`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReaderLabels {
    /// The name its position is kept under (`postgres`, `latest_status`,
    /// `detector`, `notification`, `schedule`), or `influx-checks` for
    /// InfluxDB's consumer.
    reader: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel_type: String,
    /// `delivered`, `failed` (retried later), `given_up` or `gone`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route template (`/websites/{id}`), `other` for paths that are
    /// no route.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishErrorLabels {
    stream: &'static str,
    /// `conflict` (expected sequence moved) or `error`.
    kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Check response times: 5 ms to about 82 s.
fn response_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 15))
}

/// How late a check starts: 1 ms to about 65 s.
fn lateness_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17))
}

/// API answers: 1 ms to about 16 s.
fn request_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15))
}

/// JetStream acknowledgements: 0.25 ms to about 8 s.
fn publish_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00025, 2.0, 16))
}

struct Metrics {
    registry: Registry,
    checks: Family<CheckLabels, Counter>,
    check_duration: Histograms<RegionLabels>,
    check_lateness: Histograms<RegionLabels>,
    queue_length: Family<RegionLabels, Gauge>,
    queue_pending: Family<RegionLabels, Gauge>,
    reader_position: Family<ReaderLabels, Gauge>,
    reader_lag_events: Family<ReaderLabels, Gauge>,
    reader_lag_seconds: Family<ReaderLabels, FloatGauge>,
    outbox_depth: Family<ChannelLabels, Gauge>,
    deliveries: Family<DeliveryLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Histograms<HttpRouteLabels>,
    publish_duration: Histograms<StreamLabels>,
    publish_errors: Family<PublishErrorLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut metrics = Metrics {
            checks: Family::default(),
            check_duration: Family::new_with_constructor(response_buckets),
            check_lateness: Family::new_with_constructor(lateness_buckets),
            queue_length: Family::default(),
            queue_pending: Family::default(),
            reader_position: Family::default(),
            reader_lag_events: Family::default(),
            reader_lag_seconds: Family::default(),
            outbox_depth: Family::default(),
            deliveries: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(request_buckets),
            publish_duration: Family::new_with_constructor(publish_buckets),
            publish_errors: Family::default(),
            registry: Registry::default(),
        };
        // Counters are registered without `_total`: the encoder adds it.
        metrics.registry.register(
            "monitor_checks",
            "Checks completed and published, by region and result",
            metrics.checks.clone(),
        );
        metrics.registry.register(
            "monitor_check_duration_seconds",
            "Response time of checks that got an answer, by region",
            metrics.check_duration.clone(),
        );
        metrics.registry.register(
            "monitor_check_lateness_seconds",
            "How late checks start: start time minus scheduled time, by region",
            metrics.check_lateness.clone(),
        );
        metrics.registry.register(
            "monitor_queue_length",
            "Jobs in a region's Redis queue (XLEN: waiting plus being checked), sampled by the scheduler",
            metrics.queue_length.clone(),
        );
        metrics.registry.register(
            "monitor_queue_pending",
            "Jobs of a region's queue handed to a worker and not yet acknowledged (XPENDING)",
            metrics.queue_pending.clone(),
        );
        metrics.registry.register(
            "monitor_reader_position",
            "Stream sequence a reader (projection, detector, notifier) has applied",
            metrics.reader_position.clone(),
        );
        metrics.registry.register(
            "monitor_reader_lag_events",
            "Events of its stream a reader had still to apply after its last batch",
            metrics.reader_lag_events.clone(),
        );
        metrics.registry.register(
            "monitor_reader_lag_seconds",
            "Age of the last event a reader applied while events were still waiting (0 when caught up)",
            metrics.reader_lag_seconds.clone(),
        );
        metrics.registry.register(
            "monitor_outbox_depth",
            "Notification deliveries waiting to be sent (not delivered, not given up), by channel type",
            metrics.outbox_depth.clone(),
        );
        metrics.registry.register(
            "monitor_deliveries",
            "Notification delivery attempts by channel type and result",
            metrics.deliveries.clone(),
        );
        metrics.registry.register(
            "monitor_http_requests",
            "API requests by method, route template and status",
            metrics.http_requests.clone(),
        );
        metrics.registry.register(
            "monitor_http_request_duration_seconds",
            "API answer times by method and route template",
            metrics.http_duration.clone(),
        );
        metrics.registry.register(
            "monitor_jetstream_publish_duration_seconds",
            "Time from publishing an event to JetStream's acknowledgement, by stream",
            metrics.publish_duration.clone(),
        );
        metrics.registry.register(
            "monitor_jetstream_publish_errors",
            "Publishes JetStream refused or did not acknowledge, by stream and kind",
            metrics.publish_errors.clone(),
        );
        metrics
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The registry as OpenMetrics text.
pub fn encode() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

/// The registry in the classic Prometheus text format (0.0.4): the same
/// samples; a counter's family is named with its `_total` (OpenMetrics
/// names it without), and there is no `# EOF`.
pub fn encode_text() -> String {
    classic(&encode())
}

fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "].into_iter().find(|prefix| line.starts_with(prefix));
        match comment.and_then(|prefix| Some((prefix, line[prefix.len()..].split_once(' ')?))) {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                text.push_str(&format!("{prefix}{name}_total {rest}"));
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// A check result a worker published.
pub fn check_published(check: &CheckCompleted) {
    let region = check.region.to_string();
    let result = if check.up { "up" } else { "down" };
    METRICS.checks.get_or_create(&CheckLabels { region: region.clone(), result }).inc();
    let labels = RegionLabels { region };
    if let Some(ms) = check.response_ms {
        METRICS.check_duration.get_or_create(&labels).observe(f64::from(ms) / 1000.0);
    }
    let late = (check.started_at - check.scheduled_at).num_microseconds().unwrap_or(0).max(0);
    METRICS.check_lateness.get_or_create(&labels).observe(late as f64 / 1_000_000.0);
}

/// A region's queue as sampled from Redis.
pub fn queue_depth(region: &str, length: u64, pending: u64) {
    let labels = RegionLabels { region: region.to_owned() };
    METRICS.queue_length.get_or_create(&labels).set(saturating_i64(length));
    METRICS.queue_pending.get_or_create(&labels).set(saturating_i64(pending));
}

/// Where a stream reader stands after applying a batch: its position, the
/// events still waiting after it, and the age of the last event applied
/// (counted only while events are waiting).
pub fn reader_at(reader: &str, position: u64, lag: Lag) {
    let labels = ReaderLabels { reader: reader.to_owned() };
    METRICS.reader_position.get_or_create(&labels).set(saturating_i64(position));
    METRICS.reader_lag_events.get_or_create(&labels).set(saturating_i64(lag.waiting));
    let behind = if lag.waiting == 0 { 0.0 } else { lag.age.as_secs_f64() };
    METRICS.reader_lag_seconds.get_or_create(&labels).set(behind);
}

/// The outbox's waiting deliveries per channel type (`counts` as read;
/// types absent from it have none).
pub fn outbox_depth(counts: &[(String, i64)]) {
    for kind in ChannelKind::ALL {
        let waiting = counts.iter().find(|(k, _)| k == kind.as_str()).map_or(0, |(_, n)| *n);
        METRICS.outbox_depth.get_or_create(&ChannelLabels { channel_type: kind.as_str().to_owned() }).set(waiting);
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Failed; tried again later.
    Failed,
    /// Failed for the last time.
    GivenUp,
    /// The endpoint answered 410 Gone; the channel was disabled.
    Gone,
}

/// One delivery attempt to a channel of type `channel_type`.
pub fn delivery(channel_type: &str, result: Delivery) {
    let result = match result {
        Delivery::Delivered => "delivered",
        Delivery::Failed => "failed",
        Delivery::GivenUp => "given_up",
        Delivery::Gone => "gone",
    };
    // Known types only: the label set stays bounded whatever a row holds.
    let channel_type = ChannelKind::parse(channel_type).map_or("other", ChannelKind::as_str).to_owned();
    METRICS.deliveries.get_or_create(&DeliveryLabels { channel_type, result }).inc();
}

/// One API request, by route template (`None`: no route matched).
pub fn http_request(method: &poem::http::Method, route: Option<&str>, status: u16, elapsed: Duration) {
    use poem::http::Method;
    let method = match *method {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS => {
            method.as_str()
        }
        _ => "other",
    }
    .to_owned();
    let route = route.unwrap_or("other").to_owned();
    METRICS.http_requests.get_or_create(&HttpLabels { method: method.clone(), route: route.clone(), status }).inc();
    METRICS.http_duration.get_or_create(&HttpRouteLabels { method, route }).observe(elapsed.as_secs_f64());
}

/// The stream a subject is stored in.
fn stream_of(subject: &str) -> &'static str {
    if subject.starts_with("checks.") {
        events::subject::CHECKS_STREAM
    } else {
        events::subject::MONITOR_STREAM
    }
}

/// A publish to `subject` that JetStream acknowledged after `elapsed`.
pub fn published(subject: &str, elapsed: Duration) {
    METRICS.publish_duration.get_or_create(&StreamLabels { stream: stream_of(subject) }).observe(elapsed.as_secs_f64());
}

/// A publish to `subject` that failed; `conflict`: the expected sequence
/// had moved (optimistic concurrency, not a fault).
pub fn publish_failed(subject: &str, conflict: bool) {
    let kind = if conflict { "conflict" } else { "error" };
    METRICS.publish_errors.get_or_create(&PublishErrorLabels { stream: stream_of(subject), kind }).inc();
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The answer of `GET /metrics`: OpenMetrics when the scraper accepts it
/// (Prometheus does), else the classic text format.
pub fn response(request: &poem::Request) -> Response {
    let accept = request.header(poem::http::header::ACCEPT).unwrap_or_default();
    let (content_type, body) =
        if accept.contains("application/openmetrics-text") { (OPENMETRICS, encode()) } else { (TEXT, encode_text()) };
    Response::builder().content_type(content_type).header("cache-control", "no-cache").body(body)
}

/// Serves `GET /metrics` on `address` (`METRICS_HOST:METRICS_PORT`),
/// without authentication: bind it to an address only the scraper reaches.
pub async fn serve(address: String, cancel: CancellationToken) -> anyhow::Result<()> {
    use anyhow::Context;
    tracing::info!(%address, "metrics listening");
    let app = Route::new().at("/metrics", get(make_sync(|request| response(&request))));
    Server::new(TcpListener::bind(address.clone()))
        .run_with_graceful_shutdown(app, cancel.cancelled_owned(), Some(Duration::from_secs(1)))
        .await
        .with_context(|| format!("serving metrics on {address} (METRICS_HOST/METRICS_PORT)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_labels_stay_bounded() {
        http_request(&poem::http::Method::from_bytes(b"BREW").unwrap_or_default(), None, 404, Duration::ZERO);
        delivery("carrier-pigeon", Delivery::Failed);
        let text = encode();
        assert!(
            text.contains("monitor_http_requests_total{method=\"other\",route=\"other\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(text.contains("monitor_deliveries_total{channel_type=\"other\",result=\"failed\"} 1"), "{text}");
        assert!(text.contains("# TYPE monitor_check_lateness_seconds histogram"), "{text}");
    }

    #[test]
    fn the_classic_format_names_counters_with_total_and_has_no_eof() {
        let openmetrics = "# HELP monitor_checks Checks.\n# TYPE monitor_checks counter\n\
                           monitor_checks_total{region=\"a\"} 1\n# HELP monitor_queue_length Jobs.\n\
                           # TYPE monitor_queue_length gauge\nmonitor_queue_length 3\n# EOF\n";
        assert_eq!(
            classic(openmetrics),
            "# HELP monitor_checks_total Checks.\n# TYPE monitor_checks_total counter\n\
             monitor_checks_total{region=\"a\"} 1\n# HELP monitor_queue_length Jobs.\n\
             # TYPE monitor_queue_length gauge\nmonitor_queue_length 3\n"
        );
    }
}
