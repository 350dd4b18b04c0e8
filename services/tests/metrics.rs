//! Prometheus metrics, scraped from the real binaries: every service runs
//! as a process of its own with `METRICS_PORT`, the API serves `/metrics`
//! behind its access rules, and each scrape is read by Prometheus's own
//! text parser (Python's `prometheus_client`). The Grafana dashboard's
//! queries name only metrics that are exposed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::target::Target;
use common::{free_port, influx_settings, Db, Nats, Redis};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "wm_metrics-test-admin-token-0123456789";

/// A service binary running with its own metrics port; killed on drop.
struct Service {
    name: &'static str,
    metrics_port: u16,
    _child: tokio::process::Child,
    log: std::path::PathBuf,
}

impl Service {
    fn start(name: &'static str, bin: &str, dir: &Path, env: &[(&str, String)]) -> Service {
        let metrics_port = free_port();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(bin)
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("METRICS_PORT", metrics_port.to_string())
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Service { name, metrics_port, _child: child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// One metric family as Prometheus's parser read it.
#[derive(Debug, Clone)]
struct Family {
    kind: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// Which text format a scrape is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The classic Prometheus text format (0.0.4).
    Text,
    OpenMetrics,
}

/// Parses a scrape with Prometheus's own parsers (Python's
/// `prometheus_client`): `parser.text_string_to_metric_families` for the
/// classic format, `openmetrics.parser` for OpenMetrics (stricter: counters
/// end in `_total`, the text ends in `# EOF`).
fn parse(text: &str, format: Format) -> BTreeMap<String, Family> {
    let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let module = match format {
        Format::Text => "prometheus_client.parser",
        Format::OpenMetrics => "prometheus_client.openmetrics.parser",
    };
    let script = format!(
        r#"
import json, sys
from {module} import text_string_to_metric_families
families = [{{"name": f.name, "type": f.type,
             "samples": [[s.name, s.labels, s.value] for s in f.samples]}}
            for f in text_string_to_metric_families(sys.stdin.read())]
print(json.dumps(families))
"#
    );
    let mut child = std::process::Command::new(&python)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}. Run the tests with `./dev test` (installs prometheus-client)")
        });
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("write scrape");
    let output = child.wait_with_output().expect("parser");
    assert!(
        output.status.success(),
        "Prometheus's parser refused the scrape ({}); `pip install prometheus-client` if it is missing:\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&output.stdout).expect("parser output");
    parsed
        .into_iter()
        .map(|f| {
            let samples = f["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let labels = serde_json::from_value(s[1].clone()).expect("labels");
                    (s[0].as_str().expect("sample name").to_owned(), labels, s[2].as_f64().unwrap_or(f64::NAN))
                })
                .collect();
            let name = f["name"].as_str().expect("family name").to_owned();
            (name, Family { kind: f["type"].as_str().expect("type").to_owned(), samples })
        })
        .collect()
}

/// The sample names a family of `kind` is queried by.
fn sample_names(name: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{name}_total")],
        "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
        _ => vec![name.to_owned()],
    }
}

/// The metric names the Prometheus queries of the dashboard use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana/monitor.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("ops/grafana/monitor.json"))
        .expect("the dashboard is JSON");
    let names = regex::Regex::new(r"\bmonitor_[a-z0-9_]+").expect("regex");
    let mut used = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let datasource = target["datasource"]["type"].as_str().or(panel["datasource"]["type"].as_str());
            if datasource != Some("prometheus") {
                continue;
            }
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("a Prometheus query without expr: {target}"));
            let found: Vec<String> = names.find_iter(expr).map(|m| m.as_str().to_owned()).collect();
            assert!(!found.is_empty(), "panel {} queries no monitor metric: {expr}", panel["title"]);
            used.extend(found);
        }
    }
    used
}

fn family<'a>(families: &'a BTreeMap<String, Family>, name: &str, service: &str) -> &'a Family {
    families.get(name).unwrap_or_else(|| panic!("{service} exposes no {name}: {:?}", families.keys()))
}

/// The value of the sample `sample` with `labels` among them.
fn value(families: &BTreeMap<String, Family>, name: &str, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.get(name)?.samples.iter().find_map(|(n, l, v)| {
        (n == sample && labels.iter().all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))).then_some(*v)
    })
}

#[tokio::test]
async fn every_service_serves_metrics_prometheus_can_read_and_the_dashboard_uses_only_those() {
    let nats = Nats::start().await;
    let redis = Redis::start().await;
    let db = Db::fresh().await;
    let (influx_url, bucket) = influx_settings();
    let target = Target::start().await;
    target.answer(503);
    let dir = tempfile::tempdir().expect("tempdir");
    let api_port = free_port();
    let common = vec![
        ("NATS_URL", nats.url.clone()),
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis.url.clone()),
        ("INFLUXDB_URL", influx_url),
        ("INFLUXDB_BUCKET", bucket),
        ("ALLOW_PRIVATE_TARGETS", "true".into()),
        ("DETECTOR_DOWN_AFTER", "1".into()),
        ("SMTP_PORT", free_port().to_string()),
        ("API_PORT", api_port.to_string()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut env = common.clone();
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    let api = Service::start("api", env!("CARGO_BIN_EXE_api"), dir.path(), &common);
    let services = [
        Service::start("projector", env!("CARGO_BIN_EXE_projector"), dir.path(), &common),
        Service::start("cron", env!("CARGO_BIN_EXE_cron"), dir.path(), &common),
        Service::start("worker", env!("CARGO_BIN_EXE_worker"), dir.path(), &with(&[("REGION", "local")])),
        Service::start("detector", env!("CARGO_BIN_EXE_detector"), dir.path(), &common),
        Service::start("notification", env!("CARGO_BIN_EXE_notification"), dir.path(), &common),
    ];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    let base = format!("http://127.0.0.1:{api_port}");

    // A website that is down (503), so checks, an incident and a planned
    // notification all happen; the first start's region may still be on
    // its way into the projection.
    let started = Instant::now();
    loop {
        let created = http
            .post(format!("{base}/websites"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "url": target.url("/status"), "name": "metrics", "interval_seconds": 10 }))
            .send()
            .await;
        if created.as_ref().is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "POST /websites: {created:?}\n{}", api.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    let _ = http.get(format!("{base}/websites/{unknown}")).bearer_auth(ADMIN_TOKEN).send().await;

    let scrape = |port: u16, token: Option<&'static str>, path: &'static str| {
        let http = http.clone();
        async move {
            let mut request = http.get(format!("http://127.0.0.1:{port}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.ok()?;
            let status = response.status();
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            Some((status, content_type, response.text().await.ok()?))
        }
    };

    // Wait until the worker has checked and the detector has read it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut scraped: BTreeMap<&'static str, BTreeMap<String, Family>> = BTreeMap::new();
    loop {
        for service in &services {
            if let Some((status, content_type, text)) = scrape(service.metrics_port, None, "/metrics").await {
                assert!(status.is_success(), "{}: /metrics answered {status}", service.name);
                assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
                scraped.insert(service.name, parse(&text, Format::Text));
            }
        }
        let ready = |name: &str, metric: &str, sample: &str, labels: &[(&str, &str)]| {
            scraped.get(name).and_then(|f| value(f, metric, sample, labels)).is_some_and(|v| v > 0.0)
        };
        let done =
            ready("worker", "monitor_checks", "monitor_checks_total", &[("region", "local"), ("result", "down")])
                && ready("detector", "monitor_reader_position", "monitor_reader_position", &[("reader", "detector")])
                && ready(
                    "projector",
                    "monitor_reader_position",
                    "monitor_reader_position",
                    &[("reader", "latest_status")],
                )
                && ready(
                    "notification",
                    "monitor_reader_position",
                    "monitor_reader_position",
                    &[("reader", "notification")],
                );
        if done {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = services.iter().map(|s| format!("--- {}\n{}", s.name, s.log_tail())).collect();
            let seen: Vec<String> = scraped
                .iter()
                .flat_map(|(service, families)| {
                    families
                        .values()
                        .flat_map(|f| &f.samples)
                        .filter(|(n, _, _)| !n.ends_with("_bucket"))
                        .map(move |(n, labels, v)| format!("{service}: {n}{labels:?} {v}"))
                })
                .collect();
            panic!("the services did not report their work within 60 s:\n{}\n{}", seen.join("\n"), logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The API: behind the access rules, readable with a token.
    let (status, _, _) = scrape(api_port, None, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "/metrics needs a token");
    let (status, content_type, text) = scrape(api_port, Some(ADMIN_TOKEN), "/metrics").await.expect("GET /metrics");
    assert!(status.is_success(), "{status}: {text}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let api_families = parse(&text, Format::Text);
    // What Prometheus asks for: OpenMetrics, read by the stricter parser to
    // the same families.
    let openmetrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .expect("GET /metrics as OpenMetrics");
    let content_type = openmetrics.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let strict = parse(&openmetrics.text().await.expect("body"), Format::OpenMetrics);
    for (name, family) in &api_families {
        assert_eq!(strict.get(name).map(|f| f.kind.as_str()), Some(family.kind.as_str()), "{name} in both formats");
    }
    let requests = family(&api_families, "monitor_http_requests", "api");
    assert_eq!(requests.kind, "counter");
    let routes: BTreeSet<&str> =
        requests.samples.iter().filter_map(|(_, labels, _)| labels.get("route").map(String::as_str)).collect();
    assert!(routes.contains("/websites"), "{routes:?}");
    assert!(routes.contains("/websites/{id}"), "route templates, not paths: {routes:?}");
    assert!(routes.iter().all(|r| !r.contains(&unknown)), "no raw paths: {routes:?}");
    assert!(
        value(
            &api_families,
            "monitor_jetstream_publish_duration_seconds",
            "monitor_jetstream_publish_duration_seconds_count",
            &[("stream", "MONITOR")]
        )
        .is_some_and(|n| n >= 1.0),
        "the API published the website"
    );
    // The API process serves the same on its own metrics port, unauthenticated.
    let (status, _, _) = scrape(api.metrics_port, None, "/metrics").await.expect("api metrics port");
    assert!(status.is_success());
    scraped.insert("api", api_families);

    // What each service does shows in its own process.
    let worker = &scraped["worker"];
    assert_eq!(family(worker, "monitor_check_duration_seconds", "worker").kind, "histogram");
    let checks =
        value(worker, "monitor_check_duration_seconds", "monitor_check_duration_seconds_count", &[("region", "local")]);
    assert!(checks.is_some_and(|n| n >= 1.0), "a 503 has a response time");
    let late = value(worker, "monitor_check_lateness_seconds", "monitor_check_lateness_seconds_sum", &[]);
    assert!(late.is_some_and(|s| (0.0..60.0).contains(&s)), "lateness {late:?}");
    assert!(value(
        worker,
        "monitor_jetstream_publish_duration_seconds",
        "monitor_jetstream_publish_duration_seconds_count",
        &[("stream", "CHECKS")]
    )
    .is_some());
    let cron = &scraped["cron"];
    let queued = value(cron, "monitor_queue_length", "monitor_queue_length", &[("region", "local")]);
    assert!(queued.is_some_and(|n| n >= 0.0), "queue depth of region local: {:?}", cron.keys());
    assert!(value(cron, "monitor_queue_pending", "monitor_queue_pending", &[("region", "local")]).is_some());
    let projector = &scraped["projector"];
    for reader in ["postgres", "latest_status", "influx-checks"] {
        let lag = value(projector, "monitor_reader_lag_events", "monitor_reader_lag_events", &[("reader", reader)]);
        assert!(lag.is_some_and(|n| n >= 0.0), "{reader} lag: {lag:?}");
    }
    let detector = &scraped["detector"];
    assert!(value(detector, "monitor_reader_lag_seconds", "monitor_reader_lag_seconds", &[("reader", "detector")])
        .is_some_and(|s| s >= 0.0));
    let notification = &scraped["notification"];
    for channel_type in ["email", "webhook", "telegram"] {
        let depth =
            value(notification, "monitor_outbox_depth", "monitor_outbox_depth", &[("channel_type", channel_type)]);
        assert!(depth.is_some_and(|n| n >= 0.0), "outbox depth of {channel_type}: {depth:?}");
    }
    assert_eq!(family(notification, "monitor_deliveries", "notification").kind, "counter");
    for (name, families) in &scraped {
        for (metric, family) in families {
            assert!(metric.starts_with("monitor_"), "{name}: {metric}");
            for (sample, _, value) in &family.samples {
                assert!(value.is_finite() && *value >= 0.0, "{name}: {sample} = {value}");
            }
        }
    }

    // Every metric the dashboard queries is one a scrape exposed.
    let exposed: BTreeSet<String> = scraped
        .values()
        .flat_map(|families| families.iter().flat_map(|(name, f)| sample_names(name, &f.kind)))
        .collect();
    for metric in dashboard_metrics() {
        assert!(exposed.contains(&metric), "the dashboard queries {metric}, which no service exposes: {exposed:?}");
    }
    drop(services);
    drop(api);
}

#[test]
fn the_dashboard_queries_only_metrics_the_registry_defines() {
    let families = parse(&services::metrics::encode(), Format::OpenMetrics);
    let classic = parse(&services::metrics::encode_text(), Format::Text);
    assert_eq!(families.keys().collect::<Vec<_>>(), classic.keys().collect::<Vec<_>>());
    let exposed: BTreeSet<String> = families.iter().flat_map(|(name, f)| sample_names(name, &f.kind)).collect();
    let used = dashboard_metrics();
    for metric in &used {
        assert!(exposed.contains(metric), "the dashboard queries {metric}, which the registry lacks: {exposed:?}");
    }
    // And the dashboard shows every family.
    for name in families.keys() {
        assert!(
            sample_names(name, &families[name].kind).iter().any(|s| used.contains(s)),
            "the dashboard shows nothing of {name}"
        );
    }
}
