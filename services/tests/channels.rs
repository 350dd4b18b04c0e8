//! Channels against real servers: signed webhooks and chat messages posted
//! to local stand-ins, email through the SMTP server, the delivery log, test
//! messages, 410 Gone, a hanging endpoint, bad input, secrets kept out of
//! answers and events, and `/monitor/:id/alerts`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::receiver::{Received, Receiver};
use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use events::{Envelope, Event, SiteDown, SiteUp};
use poem::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn at(offset_secs: i64) -> DateTime<Utc> {
    let base = Utc::now() - ChronoDuration::minutes(5);
    base - ChronoDuration::nanoseconds(base.timestamp_subsec_nanos() as i64) + ChronoDuration::seconds(offset_secs)
}

async fn channel(system: &Stack, body: Value) -> Value {
    let (status, channel) = system.call(Method::POST, "/channels", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    channel
}

fn id(channel: &Value) -> String {
    channel["id"].as_str().expect("an id").to_owned()
}

/// Verifies a Standard Webhooks signature with Python's own `hmac`, not
/// with the code that made it.
fn verified_by_python(secret: &str, received: &Received) -> bool {
    let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, timestamp, signatures, body = sys.argv[1:6]
key = base64.b64decode(secret.removeprefix("whsec_"))
expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(s.split(",", 1)[1], expected) for s in signatures.split() if s.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;
    std::process::Command::new(python)
        .args([
            "-c",
            script,
            secret,
            &received.header("webhook-id"),
            &received.header("webhook-timestamp"),
            &received.header("webhook-signature"),
            &received.body,
        ])
        .status()
        .expect("python3 runs")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_reaches_every_channel_once_signed_and_formatted_also_across_a_notifier_restart() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let receiver = Receiver::start().await;
    let hook =
        channel(&system, json!({ "name": "ops hook", "type": "webhook", "url": receiver.url("/ok/hook") })).await;
    let secret = hook["secret"].as_str().expect("the secret, once").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let slack = channel(&system, json!({ "name": "slack", "type": "slack", "url": receiver.url("/ok/slack") })).await;
    let discord =
        channel(&system, json!({ "name": "discord", "type": "discord", "url": receiver.url("/ok/discord") })).await;
    let website = system
        .add_website_id(json!({
            "url": "https://example.com", "name": "shop", "notify_emails": ["ops@example.com"],
            "channel_ids": [id(&hook), id(&slack), id(&discord)],
        }))
        .await;
    system.start_detector();
    let (notifier, notifier_task) = system.start_notifier();

    system.check(website, "local", at(0), false).await;
    system.check(website, "local", at(10), false).await;
    eventually(Duration::from_secs(15), "the down alerts", || async {
        (receiver.at("/ok/hook").len() == 1
            && receiver.at("/ok/slack").len() == 1
            && receiver.at("/ok/discord").len() == 1
            && system.emails("DOWN").len() == 1)
            .then_some(())
    })
    .await;
    let down = &receiver.at("/ok/hook")[0];
    assert!(verified_by_python(&secret, down), "the signature verifies independently: {:?}", down.headers);
    let body = down.json();
    assert_eq!(body["type"], "SiteDown");
    assert_eq!(body["id"].as_str(), Some(down.header("webhook-id").as_str()), "webhook-id is the event id");
    assert_eq!(body["website"]["name"], "shop");
    assert!(body["website"]["link"].as_str().unwrap_or_default().contains(&website.to_string()));
    let slack_body = receiver.at("/ok/slack")[0].json();
    assert!(slack_body["text"].as_str().unwrap_or_default().contains("shop is DOWN"), "{slack_body}");
    assert!(slack_body["blocks"].is_array(), "{slack_body}");
    let discord_body = receiver.at("/ok/discord")[0].json();
    assert!(discord_body["embeds"][0]["title"].as_str().unwrap_or_default().contains("shop is DOWN"), "{discord_body}");

    // The notifier restarts mid-outage: nothing already sent goes again.
    notifier.cancel();
    let _ = notifier_task.await;
    system.start_notifier();
    system.check(website, "local", at(20), true).await;
    eventually(Duration::from_secs(15), "the up alerts", || async {
        (receiver.at("/ok/hook").len() == 2
            && receiver.at("/ok/slack").len() == 2
            && receiver.at("/ok/discord").len() == 2
            && system.emails("UP").len() == 1)
            .then_some(())
    })
    .await;
    let up = &receiver.at("/ok/hook")[1];
    assert!(verified_by_python(&secret, up));
    assert_eq!(up.json()["type"], "SiteUp");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for path in ["/ok/hook", "/ok/slack", "/ok/discord"] {
        assert_eq!(receiver.at(path).len(), 2, "{path}: one down, one up");
    }
    assert_eq!(system.smtp.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another_channel() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    let hanging =
        channel(&system, json!({ "name": "hangs", "type": "webhook", "url": receiver.url("/hang/hook") })).await;
    let healthy = channel(&system, json!({ "name": "fine", "type": "slack", "url": receiver.url("/ok/slack") })).await;
    let website = system
        .add_website_id(
            json!({ "url": "https://example.com", "name": "x", "channel_ids": [id(&hanging), id(&healthy)] }),
        )
        .await;
    // Another website down first, through the hanging channel only, so the
    // hanging endpoint is already holding attempts when the next alert comes.
    let other = system
        .add_website_id(json!({ "url": "https://example.org", "name": "y", "channel_ids": [id(&hanging)] }))
        .await;
    system.start_detector();
    system.start_notifier();
    system.check(other, "local", at(0), false).await;
    system.check(other, "local", at(10), false).await;
    eventually(Duration::from_secs(10), "the hanging endpoint reached", || async {
        (!receiver.at("/hang/hook").is_empty()).then_some(())
    })
    .await;

    system.check(website, "local", at(0), false).await;
    system.check(website, "local", at(10), false).await;
    system.detector_settled().await;
    let decided = Instant::now();
    let delivered = eventually(Duration::from_secs(10), "the healthy channel's alert", || async {
        receiver.at("/ok/slack").first().map(|r| r.at)
    })
    .await;
    let delay = delivered.saturating_duration_since(decided);
    println!("healthy channel delivered {} ms after the transition, beside a hanging one", delay.as_millis());
    assert!(delay < Duration::from_secs(2), "{delay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_endpoint_disables_its_channel_and_the_log_says_why() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    let gone = channel(&system, json!({ "name": "old", "type": "webhook", "url": receiver.url("/gone/hook") })).await;
    system.start_notifier();
    let (status, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&gone)), None).await;
    assert_eq!(status, StatusCode::OK, "{delivery}");
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["attempt_log"][0]["status_code"], 410, "{delivery}");
    let channel = eventually(Duration::from_secs(10), "the channel disabled", || async {
        let (_, channel) = system.call(Method::GET, &format!("/channels/{}", id(&gone)), None).await;
        (channel["enabled"] == false).then_some(channel)
    })
    .await;
    assert!(channel["disabled_reason"].as_str().unwrap_or_default().contains("410"), "{channel}");
    let (_, audit) = system.call(Method::GET, "/audit?type=ChannelDisabled", None).await;
    assert_eq!(audit["items"][0]["actor"]["kind"], "system", "{audit}");

    // Turned back on by a person.
    let (status, channel) =
        system.call(Method::PATCH, &format!("/channels/{}", id(&gone)), Some(json!({ "enabled": true }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(channel["enabled"], true);
    assert!(channel.get("disabled_reason").is_none(), "{channel}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_is_delivered_and_a_failing_one_is_logged_and_retried() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    let ok = channel(&system, json!({ "name": "teams", "type": "teams", "url": receiver.url("/ok/teams") })).await;
    let failing =
        channel(&system, json!({ "name": "broken", "type": "discord", "url": receiver.url("/fail/d") })).await;
    let telegram = channel(
        &system,
        json!({ "name": "tg", "type": "telegram", "bot_token": "123456:ABCdefGHIjklMNOpqrSTUvwx", "chat_id": "-100" }),
    )
    .await;
    assert_eq!(telegram["target"], "telegram chat -100");
    system.start_notifier();

    let (status, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&ok)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["kind"], "test");
    assert_eq!(delivery["attempt_log"][0]["status_code"], 200);
    let card = receiver.at("/ok/teams")[0].json();
    assert_eq!(card["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive", "{card}");

    let (_, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&failing)), None).await;
    assert_eq!(delivery["status"], "pending", "retried later: {delivery}");
    assert_eq!(delivery["last_status_code"], 500);
    assert!(delivery["next_attempt_at"].is_string());
    eventually(Duration::from_secs(10), "a retry", || async { (receiver.at("/fail/d").len() >= 2).then_some(()) })
        .await;
    let (status, log) = system.call(Method::GET, &format!("/channels/{}/deliveries", id(&failing)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(log[0]["attempt_log"].as_array().map_or(0, Vec::len) >= 2, "{log}");
    let (status, _) = system.call(Method::GET, &format!("/channels/{}/deliveries?limit=0", id(&failing)), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channels_are_refused_naming_the_field_and_a_removed_channel_leaves_its_websites() {
    let system = Stack::start(&[]).await;
    for (body, field) in [
        (json!({ "name": "x", "type": "pager", "url": "https://example.com" }), "type"),
        (json!({ "name": "x", "type": "webhook", "url": "not a url" }), "url"),
        (json!({ "name": "x", "type": "webhook" }), "url"),
        (json!({ "name": "x", "type": "slack", "url": "https://example.com/services/a/b/c" }), "url"),
        (json!({ "name": "x", "type": "discord", "url": "https://hooks.slack.com/services/a/b/c" }), "url"),
        (
            json!({ "name": "x", "type": "telegram", "bot_token": "123456:ABCdefGHIjklMNOpqrSTUvwx", "chat_id": "" }),
            "chat_id",
        ),
        (json!({ "name": "x", "type": "email", "emails": ["not an address"] }), "emails"),
        (json!({ "name": " ", "type": "email", "emails": ["ops@example.com"] }), "name"),
    ] {
        let (status, error) = system.call(Method::POST, "/channels", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
    }
    let (status, _) = system
        .call(
            Method::POST,
            "/channels",
            Some(json!({ "name": "x", "type": "email", "emails": ["a@b.co"], "extra": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let unknown = Uuid::now_v7();
    for ids in [json!([unknown]), json!(["not-a-uuid"])] {
        let (status, error) = system
            .call(
                Method::POST,
                "/websites",
                Some(json!({ "url": "https://example.com", "name": "x", "channel_ids": ids })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["field"], "channel_ids", "{error}");
    }

    let email = channel(&system, json!({ "name": "team", "type": "email", "emails": ["team@example.com"] })).await;
    let website =
        system.add_website(json!({ "url": "https://example.com", "name": "x", "channel_ids": [id(&email)] })).await;
    let (status, _) = system.call(Method::DELETE, &format!("/channels/{}", id(&email)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, shown) = system.call(Method::GET, &format!("/websites/{website}"), None).await;
    assert_eq!(shown["channel_ids"], json!([]), "a removed channel is no longer used: {shown}");
    let (status, _) = system.call(Method::GET, &format!("/channels/{}", id(&email)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = system.call(Method::DELETE, &format!("/channels/{}", id(&email)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = system.call(Method::POST, &format!("/channels/{}/rotate-secret", Uuid::now_v7()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_shown_once_and_never_stored_in_events_in_clear() {
    let system = Stack::start(&[("ALLOW_PRIVATE_TARGETS", "false")]).await;
    let slack_url = "https://hooks.slack.com/services/T000/B000/SLACKSECRETPART";
    let slack = channel(&system, json!({ "name": "slack", "type": "slack", "url": slack_url })).await;
    assert_eq!(slack["target"], "https://hooks.slack.com/services/…");
    assert!(slack.get("secret").is_none());
    let telegram = channel(
        &system,
        json!({ "name": "tg", "type": "telegram", "bot_token": "123456:TELEGRAMSECRETTOKENPART", "chat_id": "42" }),
    )
    .await;
    let hook = channel(&system, json!({ "name": "hook", "type": "webhook", "url": "https://example.com/hook" })).await;
    let secret = hook["secret"].as_str().expect("secret").to_owned();
    let (status, rotated) = system.call(Method::POST, &format!("/channels/{}/rotate-secret", id(&hook)), None).await;
    assert_eq!(status, StatusCode::OK);
    let fresh = rotated["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(fresh, secret);
    let (status, error) = system.call(Method::POST, &format!("/channels/{}/rotate-secret", id(&slack)), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");

    let (_, listed) = system.call(Method::GET, "/channels", None).await;
    let (_, events) = system.call(Method::GET, "/events?types=ChannelAdded,ChannelUpdated", None).await;
    let (_, audit) = system.call(Method::GET, "/audit", None).await;
    for text in [listed.to_string(), events.to_string(), audit.to_string()] {
        for secret_part in ["SLACKSECRETPART", "TELEGRAMSECRETTOKENPART", &secret, &fresh] {
            assert!(!text.contains(secret_part), "{secret_part} leaked into {text}");
        }
    }
    assert_eq!(events["items"].as_array().map(Vec::len), Some(4), "{events}");
    assert!(telegram.get("secret").is_none());

    // With private targets refused, a webhook to loopback is refused up front.
    let (status, error) = system
        .call(Method::POST, "/channels", Some(json!({ "name": "x", "type": "webhook", "url": "http://127.0.0.1:9/x" })))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["field"], "url");
    let (status, error) = system
        .call(
            Method::POST,
            "/channels",
            Some(json!({ "name": "x", "type": "slack", "url": "http://127.0.0.1:9/slack" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_explain_a_suppressed_transition_and_a_delivered_one() {
    let system = Stack::start(&[("NOTIFY_MAX_AGE_MINUTES", "10")]).await;
    let receiver = Receiver::start().await;
    let hook = channel(&system, json!({ "name": "hook", "type": "webhook", "url": receiver.url("/ok/hook") })).await;
    let website =
        system.add_website_id(json!({ "url": "https://example.com", "name": "x", "channel_ids": [id(&hook)] })).await;
    system.start_notifier();
    let region = common::stack::region_name("local");
    // A transition from long ago (a first start on old history) and a
    // fresh recovery.
    let long_ago = Utc::now() - ChronoDuration::hours(2);
    let down = SiteDown {
        website_id: website,
        region: region.clone(),
        started_at: long_ago,
        cause: Some(events::FailureCause::Timeout),
        status_code: None,
        message: None,
    };
    system.bus.publish(&Envelope::new(Event::SiteDown(down), long_ago), None).await.expect("publish down");
    let up = SiteUp { website_id: website, region, started_at: long_ago, ended_at: Utc::now(), downtime_seconds: 7200 };
    system.bus.publish(&Envelope::new(Event::SiteUp(up), Utc::now()), None).await.expect("publish up");
    system.notifier_settled().await;
    eventually(Duration::from_secs(10), "the recovery delivered", || async {
        (receiver.at("/ok/hook").len() == 1).then_some(())
    })
    .await;

    let alerts = eventually(Duration::from_secs(10), "the delivery recorded", || async {
        let (_, alerts) = system.call(Method::GET, &format!("/monitor/{website}/alerts"), None).await;
        (alerts[0]["destinations"][0]["delivery"]["status"] == "delivered").then_some(alerts)
    })
    .await;
    assert_eq!(alerts.as_array().map(Vec::len), Some(2), "{alerts}");
    let (recovery, outage) = (&alerts[0], &alerts[1]);
    assert_eq!(recovery["type"], "SiteUp");
    assert_eq!(recovery["outcome"], "ended");
    assert_eq!(recovery["alerted"], true);
    assert_eq!(recovery["destinations"][0]["name"], "hook");
    assert_eq!(recovery["destinations"][0]["delivery"]["attempt_log"][0]["status_code"], 200, "{recovery}");
    assert_eq!(outage["type"], "SiteDown");
    assert_eq!(outage["outcome"], "started");
    assert_eq!(outage["alerted"], false);
    assert!(outage["suppressed"].as_str().unwrap_or_default().contains("NOTIFY_MAX_AGE_MINUTES"), "{outage}");
    assert_eq!(outage["down_policy"], "any");
    assert_eq!(outage["regions_down"], json!(["local"]));

    let (status, _) = system.call(Method::GET, &format!("/monitor/{}/alerts", Uuid::now_v7()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = system.call(Method::GET, &format!("/monitor/{website}/alerts?days=0"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_channel_gets_every_websites_alerts_and_a_disabled_one_is_skipped_with_a_reason() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    channel(
        &system,
        json!({ "name": "everything", "type": "webhook", "url": receiver.url("/ok/all"), "default": true }),
    )
    .await;
    let off = channel(&system, json!({ "name": "off", "type": "slack", "url": receiver.url("/ok/off") })).await;
    let website =
        system.add_website_id(json!({ "url": "https://example.com", "name": "x", "channel_ids": [id(&off)] })).await;
    // Disabled the way the system does it, after a 410.
    let disabled = Event::ChannelDisabled(events::ChannelDisabled {
        channel_id: id(&off).parse().expect("uuid"),
        reason: "the endpoint answered 410 Gone".into(),
    });
    system.bus.publish(&Envelope::new(disabled, Utc::now()), None).await.expect("publish");
    system.settle().await;
    system.start_detector();
    system.start_notifier();
    system.check(website, "local", at(0), false).await;
    system.check(website, "local", at(10), false).await;
    eventually(Duration::from_secs(10), "the default channel's alert", || async {
        (receiver.at("/ok/all").len() == 1).then_some(())
    })
    .await;
    let (_, alerts) = system.call(Method::GET, &format!("/monitor/{website}/alerts"), None).await;
    let destinations = alerts[0]["destinations"].as_array().cloned().unwrap_or_default();
    let skipped = destinations.iter().find(|d| d["name"] == "off").expect("the disabled channel is listed");
    assert_eq!(skipped["planned"], false);
    assert!(skipped["reason"].as_str().unwrap_or_default().contains("disabled"), "{skipped}");
    assert!(receiver.at("/ok/off").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_telegram_channels_deliver_and_a_delivery_failing_for_a_day_is_given_up() {
    let receiver = Receiver::start().await;
    let telegram_api = receiver.url("/ok/telegram");
    let system = Stack::start_with_smtp(Smtp::start().await, &[("TELEGRAM_API_URL", &telegram_api)]).await;
    let email = channel(&system, json!({ "name": "team", "type": "email", "emails": ["team@example.com"] })).await;
    assert_eq!(email["target"], "team@example.com");
    let token = "123456:ABCdefGHIjklMNOpqrSTUvwx";
    let telegram =
        channel(&system, json!({ "name": "tg", "type": "telegram", "bot_token": token, "chat_id": "-100123" })).await;
    system.start_notifier();

    let (_, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&email)), None).await;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert!(system.smtp.messages().iter().any(|m| m.contains("Subject: [TEST]") && m.contains("team@example.com")));

    let (_, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&telegram)), None).await;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    let sent = receiver.at(&format!("/ok/telegram/bot{token}/sendMessage"));
    assert_eq!(sent.len(), 1, "one message through the Bot API");
    let body = sent[0].json();
    assert_eq!(body["chat_id"], "-100123");
    assert!(body["text"].as_str().unwrap_or_default().contains("Test message"), "{body}");

    // A delivery still failing a day after it was queued is given up.
    let failing = channel(&system, json!({ "name": "down", "type": "webhook", "url": receiver.url("/fail/h") })).await;
    let (_, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&failing)), None).await;
    assert_eq!(delivery["status"], "pending", "{delivery}");
    sqlx::query(
        "update deliveries set created_at = now() - interval '25 hours', next_attempt_at = now() where channel_id = $1",
    )
    .bind(id(&failing).parse::<Uuid>().expect("uuid"))
    .execute(&system.db.pool)
    .await
    .expect("age the delivery");
    let given_up = eventually(Duration::from_secs(10), "the delivery given up", || async {
        let (_, log) = system.call(Method::GET, &format!("/channels/{}/deliveries", id(&failing)), None).await;
        (log[0]["status"] == "failed").then_some(log)
    })
    .await;
    assert_eq!(given_up[0]["last_status_code"], 500, "{given_up}");
    assert!(given_up[0]["failed_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_a_private_address_is_refused_at_connect_time() {
    let system = Stack::start(&[]).await;
    let receiver = Receiver::start().await;
    // Accepted while private targets were allowed; sent by a notifier that
    // refuses them (a name that resolves to loopback goes the same way).
    let url = receiver.url("/ok/private").replace("127.0.0.1", "localhost");
    let hook = channel(&system, json!({ "name": "inside", "type": "webhook", "url": url })).await;
    let mut settings = system.config.notify.clone();
    settings.allow_private_targets = false;
    let deps = system.deps.clone();
    let cancel = system.cancel.child_token();
    tokio::spawn(services::notification::serve(deps, settings, cancel));
    let (_, delivery) = system.call(Method::POST, &format!("/channels/{}/test", id(&hook)), None).await;
    assert_eq!(delivery["status"], "pending", "{delivery}");
    let error = delivery["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("private or reserved"), "{delivery}");
    assert!(!error.contains("/ok/private"), "the URL (a secret for chats) is not in the error: {error}");
    assert!(receiver.at("/ok/private").is_empty(), "nothing reached the private address");
}
