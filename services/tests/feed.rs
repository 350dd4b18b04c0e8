//! The event feed against the real servers: pages after a sequence,
//! filtered by type and website; the live stream over real HTTP, resumed
//! with `Last-Event-ID` without a gap or a repeat, with its heartbeat and
//! its clean end on shutdown; and the JSON Schemas, checked against a real
//! event of every type by an independent validator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::stack::{eventually, region_name, Stack};
use events::{Actor, Envelope, Event, FailureCause, SiteDown, SiteUp};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Publishes an outage and its end for `website`, as the detector would.
async fn outage(stack: &Stack, website: Uuid) {
    let started_at = Utc::now() - ChronoDuration::minutes(5);
    let down = SiteDown {
        website_id: website,
        region: region_name("local"),
        started_at,
        cause: Some(FailureCause::Timeout),
        status_code: None,
        message: Some("timed out after 10000 ms".into()),
    };
    let up = SiteUp {
        website_id: website,
        region: region_name("local"),
        started_at,
        ended_at: Utc::now(),
        downtime_seconds: 300,
    };
    for event in [Event::SiteDown(down), Event::SiteUp(up)] {
        let envelope = Envelope::new(event, Utc::now()).by(Actor::System, None);
        stack.bus.publish(&envelope, None).await.expect("publish");
    }
}

async fn page(stack: &Stack, query: &str) -> Value {
    let (status, body) = stack.call(Method::GET, &format!("/events{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

fn types(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|e| e["type"].as_str().expect("type").to_owned()).collect()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["items"].as_array().expect("items").iter().map(|e| e["seq"].as_u64().expect("seq")).collect()
}

#[tokio::test]
async fn a_page_lists_the_events_after_a_sequence_oldest_first_filtered_by_type_and_website() {
    let stack = Stack::start(&[]).await;
    let first = stack.add_website_id(json!({ "url": "https://first.example.com", "name": "first" })).await;
    let second = stack.add_website_id(json!({ "url": "https://second.example.com", "name": "second" })).await;
    outage(&stack, first).await;
    outage(&stack, second).await;

    let all = page(&stack, "").await;
    assert_eq!(
        types(&all),
        ["RegionAdded", "WebsiteAdded", "WebsiteAdded", "SiteDown", "SiteUp", "SiteDown", "SiteUp"],
        "{all}"
    );
    let sequences = seqs(&all);
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "oldest first: {sequences:?}");
    assert_eq!(all["next"], json!(sequences[sequences.len() - 1]));
    let item = &all["items"][1];
    assert_eq!(item["aggregate_id"], json!(first.to_string()));
    assert_eq!(item["data"]["name"], "first");
    assert_eq!(item["actor"]["kind"], "bootstrap");
    assert!(item["id"].is_string() && item["version"] == 1 && item["occurred_at"].is_string(), "{item}");

    let outages = page(&stack, &format!("?types=SiteDown,SiteUp&website={first}")).await;
    assert_eq!(types(&outages), ["SiteDown", "SiteUp"]);
    assert!(outages["items"].as_array().expect("items").iter().all(|e| e["aggregate_id"] == first.to_string()));
    let of_second = page(&stack, &format!("?website={second}")).await;
    assert_eq!(types(&of_second), ["WebsiteAdded", "SiteDown", "SiteUp"]);
    assert_eq!(types(&page(&stack, &format!("?types=RegionAdded&website={second}")).await), Vec::<String>::new());

    // Page by page with `next`, every event once.
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        let page = page(&stack, &format!("?limit=3&after={after}")).await;
        let got = seqs(&page);
        assert!(got.len() <= 3);
        seen.extend(got.iter().copied());
        after = page["next"].as_u64().expect("next");
        if got.is_empty() {
            break;
        }
    }
    assert_eq!(seen, sequences);
    assert_eq!(after, sequences[sequences.len() - 1], "an empty page at the end keeps its place");

    for (query, field) in [
        ("?types=SiteDown,SiteGone", "types"),
        ("?types=CheckCompleted", "types"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
    ] {
        let (status, body) = stack.call(Method::GET, &format!("/events{query}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (status, body) = stack.call(Method::GET, "/events?website=not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "website");
}

/// One event of a Server-Sent Events stream.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: String,
    event: String,
    data: String,
}

/// A Server-Sent Events client over real HTTP.
struct SseClient {
    response: reqwest::Response,
    buffer: String,
    comments: usize,
}

impl SseClient {
    async fn connect(url: &str, token: &str, last_event_id: Option<&str>) -> SseClient {
        let mut request = reqwest::Client::new().get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("connect");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseClient { response, buffer: String::new(), comments: 0 }
    }

    /// The next event within `wait`; `None` if none came, or the stream
    /// ended (see [`SseClient::ended`]).
    async fn next(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = Frame { id: String::new(), event: String::new(), data: String::new() };
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("", _)) => self.comments += 1,
                        Some(("id", value)) => frame.id = value.trim_start().to_owned(),
                        Some(("event", value)) => frame.event = value.trim_start().to_owned(),
                        Some(("data", value)) => frame.data.push_str(value.trim_start()),
                        _ => {}
                    }
                }
                if !frame.id.is_empty() {
                    return Some(frame);
                }
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Whether the stream ends (the server closed it) within `wait`.
    async fn ended(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// The API served over HTTP on a free port, until `cancel`.
async fn serve(stack: &Stack) -> (String, CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let mut config = stack.config.api.clone();
    config.host = "127.0.0.1".into();
    config.port = common::free_port();
    let base = format!("http://127.0.0.1:{}", config.port);
    let cancel = CancellationToken::new();
    let server = tokio::spawn(services::api::serve(stack.deps.clone(), config, cancel.clone()));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return (base, cancel, server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API did not start on {base}");
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_exactly_the_events_it_missed() {
    let stack = Stack::start(&[]).await;
    let (base, _cancel, _server) = serve(&stack).await;
    let url = format!("{base}/events/stream?types=WebsiteAdded,SiteDown,SiteUp");
    let first = stack.add_website_id(json!({ "url": "https://first.example.com", "name": "first" })).await;

    let mut client = SseClient::connect(&url, &stack.admin_token, None).await;
    let added = client.next(Duration::from_secs(5)).await.expect("the stored event");
    assert_eq!(added.event, "WebsiteAdded");
    let data: Value = serde_json::from_str(&added.data).expect("data is JSON");
    assert_eq!(data["aggregate_id"], first.to_string());
    assert_eq!(data["type"], "WebsiteAdded");
    assert!(data.get("seq").is_none(), "data is the envelope as stored: {data}");

    // Live: a new event arrives within a second.
    let published = Instant::now();
    outage(&stack, first).await;
    let down = client.next(Duration::from_secs(5)).await.expect("SiteDown, live");
    assert!(published.elapsed() < Duration::from_secs(1), "{:?}", published.elapsed());
    assert_eq!(down.event, "SiteDown");
    let up = client.next(Duration::from_secs(5)).await.expect("SiteUp, live");
    assert_eq!(up.event, "SiteUp");
    assert!(up.id.parse::<u64>().expect("id") > down.id.parse::<u64>().expect("id"));
    drop(client);

    // Missed while away: a website, its outage, and events of other types.
    let second = stack.add_website_id(json!({ "url": "https://second.example.com", "name": "second" })).await;
    let (status, _) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    outage(&stack, second).await;
    let missed: Vec<(u64, String)> = page(&stack, &format!("?types=WebsiteAdded,SiteDown,SiteUp&after={}", up.id))
        .await["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| (e["seq"].as_u64().expect("seq"), e["type"].as_str().expect("type").to_owned()))
        .collect();
    assert_eq!(missed.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["WebsiteAdded", "SiteDown", "SiteUp"]);

    // `after=0` in the URL is overridden by the header.
    let mut client = SseClient::connect(&format!("{url}&after=0"), &stack.admin_token, Some(&up.id)).await;
    let mut got = Vec::new();
    while let Some(frame) = client.next(Duration::from_secs(2)).await {
        got.push((frame.id.parse::<u64>().expect("id"), frame.event));
    }
    assert_eq!(got, missed, "exactly the missed events, none twice");
}

#[tokio::test]
async fn a_quiet_stream_sends_a_heartbeat_and_ends_cleanly_on_shutdown() {
    let stack = Stack::start(&[]).await;
    let (base, cancel, server) = serve(&stack).await;
    let mut client =
        SseClient::connect(&format!("{base}/events/stream?types=SiteDown"), &stack.admin_token, None).await;
    assert_eq!(client.next(Duration::from_secs(17)).await, None);
    assert!(client.comments >= 1, "a comment line within 15 s: {:?}", client.buffer);

    let stopping = Instant::now();
    cancel.cancel();
    assert!(client.ended(Duration::from_secs(3)).await, "the stream ends on shutdown");
    let stopped = tokio::time::timeout(Duration::from_secs(4), server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    assert!(stopping.elapsed() < Duration::from_secs(4), "not held up to the 5 s grace: {:?}", stopping.elapsed());
}

#[tokio::test]
async fn a_read_token_may_follow_the_feed_and_no_token_may_not() {
    let stack = Stack::start(&[]).await;
    let (status, token) =
        stack.call(Method::POST, "/tokens", Some(json!({ "name": "subscriber", "scope": "read" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let reader = stack.api_client(token["secret"].as_str());
    for path in ["/events", "/schemas/events.json"] {
        reader.get(path).send().await.assert_status_is_ok();
        stack.api_client(None).get(path).send().await.assert_status(StatusCode::UNAUTHORIZED);
    }
    let response = reader.get("/events/stream").send().await;
    response.assert_status_is_ok();
    response.assert_content_type("text/event-stream");
    stack.api_client(None).get("/events/stream").send().await.assert_status(StatusCode::UNAUTHORIZED);
}

/// Validates each instance against `schema` with Python's `jsonschema`;
/// returns the validator's complaints, one line per refused instance.
fn validate(schema: &Value, instances: &[Value]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (schema_file, instances_file) = (dir.path().join("schema.json"), dir.path().join("instances.json"));
    std::fs::write(&schema_file, schema.to_string()).expect("write");
    std::fs::write(&instances_file, Value::from(instances.to_vec()).to_string()).expect("write");
    let script = "import json, sys, jsonschema\n\
                  schema = json.load(open(sys.argv[1]))\n\
                  jsonschema.Draft202012Validator.check_schema(schema)\n\
                  validator = jsonschema.Draft202012Validator(schema)\n\
                  for i, instance in enumerate(json.load(open(sys.argv[2]))):\n    \
                      for error in validator.iter_errors(instance):\n        \
                          print(i, instance.get('type'), error.json_path, error.message)\n";
    let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&schema_file)
        .arg(&instances_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "the validator failed (is `jsonschema` installed? ./dev installs it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn a_real_event_of_every_type_is_valid_against_the_served_schemas() {
    let stack = Stack::start(&[]).await;
    let (status, _) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let website = stack
        .add_website(json!({
            "url": "https://example.com", "name": "example", "regions": ["local", "europe"],
            "notify_emails": ["ops@example.com"], "failures_before_down": 2, "down_policy": "majority"
        }))
        .await;
    let (status, body) = stack
        .call(Method::PATCH, &format!("/websites/{website}"), Some(json!({ "name": "renamed", "timeout_ms": 5000 })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for action in ["pause", "resume"] {
        let (status, body) = stack.call(Method::POST, &format!("/websites/{website}/{action}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let now = Utc::now();
    let (status, window) = stack
        .call(
            Method::POST,
            "/maintenance",
            Some(json!({ "name": "deploy", "website_ids": [website], "starts_at": now - ChronoDuration::minutes(1), "ends_at": now + ChronoDuration::hours(1) })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{window}");
    let window = window["id"].as_str().expect("id").to_owned();
    let (status, _) = stack.call(Method::PATCH, &format!("/maintenance/{window}"), Some(json!({ "name": "db" }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = stack.call(Method::POST, &format!("/maintenance/{window}/end"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = stack.call(Method::DELETE, &format!("/maintenance/{window}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = stack.call(Method::DELETE, &format!("/websites/{website}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, token) = stack
        .call(
            Method::POST,
            "/tokens",
            Some(json!({ "name": "ci", "scope": "write", "expires_at": "2099-01-01T00:00:00Z" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token_id = token["id"].as_str().expect("id");
    let (status, _) = stack.call(Method::DELETE, &format!("/tokens/{token_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A channel added, disabled by its gone endpoint, enabled again and removed.
    let receiver = common::receiver::Receiver::start().await;
    let (status, channel) = stack
        .call(
            Method::POST,
            "/channels",
            Some(json!({ "name": "hook", "type": "webhook", "url": receiver.url("/gone/x") })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    let channel = channel["id"].as_str().expect("id").to_owned();
    let _notifier = stack.start_notifier();
    let (status, delivery) = stack.call(Method::POST, &format!("/channels/{channel}/test"), None).await;
    assert_eq!((status, delivery["status"].as_str()), (StatusCode::OK, Some("failed")), "{delivery}");
    eventually(Duration::from_secs(10), "the channel disabled", || async {
        let (_, shown) = stack.call(Method::GET, &format!("/channels/{channel}"), None).await;
        (shown["enabled"] == false).then_some(())
    })
    .await;
    let (status, _) =
        stack.call(Method::PATCH, &format!("/channels/{channel}"), Some(json!({ "enabled": true }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = stack.call(Method::DELETE, &format!("/channels/{channel}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A region added and removed.
    let (status, _) = stack.call(Method::POST, "/regions", Some(json!({ "name": "gone" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = stack.call(Method::DELETE, "/regions/gone", None).await;
    assert_eq!(status, StatusCode::OK);
    let website: Uuid = website.parse().expect("uuid");
    outage(&stack, website).await;
    // A status page created, changed, subscribed to (confirmed and left)
    // and removed, and an update to the outage's public incident.
    let (status, status_page) =
        stack.call(Method::POST, "/status-pages", Some(json!({ "slug": "feed", "title": "Feed", "groups": [] }))).await;
    assert_eq!(status, StatusCode::CREATED, "{status_page}");
    let page_id: Uuid = status_page["id"].as_str().expect("id").parse().expect("uuid");
    let (status, _) = stack.call(Method::PATCH, "/status-pages/feed", Some(json!({ "title": "Fed" }))).await;
    assert_eq!(status, StatusCode::OK);
    let response =
        stack.client.post("/status/feed/subscribe").body_json(&json!({ "email": "a@example.com" })).send().await;
    response.assert_status(StatusCode::ACCEPTED);
    let subscriber_id = Uuid::now_v7();
    for event in [
        Event::StatusSubscriberConfirmed(events::StatusSubscriberConfirmed { page_id, subscriber_id }),
        Event::StatusSubscriberRemoved(events::StatusSubscriberRemoved { page_id, subscriber_id }),
        events::status_page::post_update(
            website,
            events::status_page::incident_id(website, Utc::now()),
            Uuid::now_v7(),
            events::status_page::IncidentStatus::Resolved,
            "fixed".into(),
            None,
        ),
    ] {
        stack.bus.publish(&Envelope::new(event, Utc::now()).by(Actor::System, None), None).await.expect("publish");
    }
    let (status, _) = stack.call(Method::DELETE, "/status-pages/feed", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A certificate warning, as the detector announces it.
    let expiring = Event::CertificateExpiring(events::CertificateExpiring {
        website_id: website,
        region: region_name("local"),
        not_after: Utc::now() + ChronoDuration::days(6),
        days_left: 5,
        threshold_days: 7,
    });
    stack.bus.publish(&Envelope::new(expiring, Utc::now()).by(Actor::System, None), None).await.expect("publish");
    stack.check(website, "local", Utc::now(), false).await;

    // The feed's events, as stored (checked against the stream's bytes),
    // and a check result from the CHECKS stream.
    let items = page(&stack, "?limit=1000").await["items"].as_array().expect("items").clone();
    let monitor = stack.bus.monitor_stream().await.expect("MONITOR");
    let mut instances = Vec::new();
    for mut item in items {
        let seq = item["seq"].as_u64().expect("seq");
        item.as_object_mut().expect("object").remove("seq");
        let stored = monitor.get_raw_message(seq).await.expect("stored message");
        let stored: Value = serde_json::from_slice(&stored.payload).expect("stored JSON");
        assert_eq!(item, stored, "the feed gives the event as stored");
        instances.push(item);
    }
    let mut checks = stack.bus.js.get_stream("CHECKS").await.expect("CHECKS");
    let last = checks.info().await.expect("info").state.last_sequence;
    let check = checks.get_raw_message(last).await.expect("check");
    instances.push(serde_json::from_slice(&check.payload).expect("check JSON"));
    let mut covered: Vec<&str> = instances.iter().map(|i| i["type"].as_str().expect("type")).collect();
    covered.sort();
    covered.dedup();
    let mut known = events::event::KNOWN_TYPES.to_vec();
    known.sort();
    assert_eq!(covered, known, "an event of every type");

    let (status, schema) = stack.call(Method::GET, "/schemas/events.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let complaints = validate(&schema, &instances);
    assert!(complaints.is_empty(), "{complaints:#?}");

    // And it is no blanket yes: wrong events are refused.
    let mut wrong_data = instances[0].clone();
    wrong_data["type"] = json!("SiteDown");
    let mut wrong_type = instances[0].clone();
    wrong_type["type"] = json!("SiteGone");
    let mut no_id = instances[0].clone();
    no_id.as_object_mut().expect("object").remove("id");
    for (what, instance) in [("data of another type", wrong_data), ("an unknown type", wrong_type), ("no id", no_id)] {
        assert!(!validate(&schema, &[instance]).is_empty(), "an event with {what} was accepted");
    }
}
