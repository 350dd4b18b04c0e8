//! Public status pages against real servers: managing them through the API
//! (validation, slugs, scopes), what the public routes show (and that a
//! website on no page has none), an outage as a public incident with the
//! team's updates, subscribers confirmed by email and mailed once per
//! change, unsubscribing, and the caching headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use poem::endpoint::BoxEndpoint;
use poem::http::{Method, StatusCode};
use poem::test::TestClient;
use serde_json::{json, Value};
use std::time::Duration;

/// A visitor's GET: status, headers we look at, body.
async fn visit(
    client: &TestClient<BoxEndpoint<'static>>,
    path: &str,
    etag: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = client.get(path);
    if let Some(tag) = etag {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await;
    let status = response.0.status();
    let header = |name: &str| response.0.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let meta = format!("{}|{}|{}", header("content-type"), header("etag"), header("cache-control"));
    let body = response.0.into_body().into_string().await.unwrap_or_default();
    (status, meta, body)
}

async fn page(system: &Stack, body: Value) -> Value {
    let (status, page) = system.call(Method::POST, "/status-pages", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    page
}

/// Decodes a quoted-printable mail body (long lines are sent that way).
fn unfold(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path and query of the first link in `mail` containing `marker`.
fn link(mail: &str, marker: &str) -> String {
    let text = unfold(mail);
    let at = text.find(marker).unwrap_or_else(|| panic!("no {marker} in {text}"));
    let start = text[..at].rfind("http").expect("link start");
    let url = text[start..].split_whitespace().next().expect("link");
    let path_at = url.find("/status/").expect("path");
    url[path_at..].to_owned()
}

fn mails_to(system: &Stack, address: &str, subject: &str) -> Vec<String> {
    system.smtp.messages().into_iter().filter(|m| m.contains(address) && unfold(m).contains(subject)).collect()
}

fn well_formed_xml(text: &str) {
    let python = std::env::var("SMTP_SERVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, text).expect("write");
    let output = std::process::Command::new(&python)
        .args(["-c", "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(output.status.success(), "not well-formed XML: {}\n{text}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pages_are_managed_with_validation_unique_slugs_and_scopes() {
    let system = Stack::start(&[]).await;
    let shop = system.add_website(json!({ "url": "https://shop.example.com", "name": "shop" })).await;
    let created = page(
        &system,
        json!({ "slug": "acme", "title": "Acme status", "description": "All of Acme",
                "groups": [{ "name": "Web", "websites": [{ "id": shop, "name": "Shop" }] }] }),
    )
    .await;
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["public_path"], "/status/acme");
    assert_eq!(created["groups"][0]["websites"][0]["name"], "Shop");

    // 422 naming the field.
    for (body, field) in [
        (json!({ "slug": "Not A Slug", "title": "x", "groups": [] }), "slug"),
        (json!({ "slug": "x".repeat(65), "title": "x", "groups": [] }), "slug"),
        (json!({ "slug": "ok", "title": " ", "groups": [] }), "title"),
        (json!({ "slug": "ok", "title": "x", "logo_url": "ftp://x", "groups": [] }), "logo_url"),
        (json!({ "slug": "ok", "title": "x", "groups": [{ "name": "", "websites": [] }] }), "groups[0].name"),
        (
            json!({ "slug": "ok", "title": "x", "groups": [{ "name": "g", "websites": [{ "id": "nope", "name": "n" }] }] }),
            "groups[0].websites[0].id",
        ),
        (
            json!({ "slug": "ok", "title": "x", "groups": [{ "name": "g", "websites": [{ "id": uuid::Uuid::now_v7(), "name": "n" }] }] }),
            "groups",
        ),
    ] {
        let (status, error) = system.call(Method::POST, "/status-pages", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    let (status, _) = system.call(Method::POST, "/status-pages", Some(json!({ "slug": "x", "title": "x" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "groups are required");

    // Slugs are unique: 409 on create and on rename.
    let (status, error) = system
        .call(Method::POST, "/status-pages", Some(json!({ "slug": "acme", "title": "Again", "groups": [] })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    page(&system, json!({ "slug": "other", "title": "Other", "groups": [] })).await;
    let (status, _) = system.call(Method::PATCH, "/status-pages/other", Some(json!({ "slug": "acme" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Changes, reads, removal.
    let (status, changed) = system
        .call(Method::PATCH, "/status-pages/other", Some(json!({ "slug": "renamed", "description": "Now described" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["description"], "Now described");
    let (status, listed) = system.call(Method::GET, "/status-pages", None).await;
    assert_eq!(status, StatusCode::OK);
    let slugs: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|p| p["slug"].as_str()).collect();
    assert_eq!(slugs, ["acme", "renamed"]);
    let (status, _) = system.call(Method::GET, "/status-pages/other", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = system.call(Method::DELETE, "/status-pages/renamed", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let visitor = system.api_client(None);
    let (status, _, _) = visit(&visitor, "/status/renamed", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a removed page is gone");

    // Managing needs a token: write to change, read to look.
    let (status, _, _) = visit(&visitor, "/status-pages", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, token) =
        system.call(Method::POST, "/tokens", Some(json!({ "name": "viewer", "scope": "read" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let reader = system.api_client(Some(token["secret"].as_str().expect("secret")));
    let response = reader.get("/status-pages/acme").send().await;
    response.assert_status_is_ok();
    let response = reader.patch("/status-pages/acme").body_json(&json!({ "title": "Mine" })).send().await;
    response.assert_status(StatusCode::FORBIDDEN);
    let response =
        reader.post("/status-pages").body_json(&json!({ "slug": "r", "title": "r", "groups": [] })).send().await;
    response.assert_status(StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_routes_show_only_what_a_page_publishes_and_are_cacheable() {
    let system = Stack::start(&[]).await;
    let shop =
        system.add_website(json!({ "url": "https://shop.internal.example.com/health", "name": "shop-prod" })).await;
    let api = system.add_website(json!({ "url": "https://api.example.com/", "name": "api-prod" })).await;
    let hidden = system.add_website(json!({ "url": "https://secret.example.com/", "name": "hidden" })).await;
    page(
        &system,
        json!({ "slug": "acme", "title": "Acme <status>", "description": "Ours & yours",
                "groups": [{ "name": "Web", "websites": [
                    { "id": shop, "name": "Checkout API" },
                    { "id": api, "name": "Public API", "show_url": true }] }] }),
    )
    .await;
    let visitor = system.api_client(None);

    let (status, meta, html) = visit(&visitor, "/status/acme", None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(meta.starts_with("text/html"), "{meta}");
    assert!(meta.ends_with("public, max-age=30"), "{meta}");
    assert!(html.contains("Acme &lt;status&gt;") && html.contains("Ours &amp; yours"), "user text is escaped");
    assert!(html.contains("Checkout API") && html.contains("Public API"));
    assert!(html.contains("https://api.example.com/"), "shown when the page says so");
    for secret in ["shop.internal.example.com", "shop-prod", "hidden", "secret.example.com", &system.admin_token] {
        assert!(!html.contains(secret), "{secret} is not public");
    }
    assert!(html.contains("data-status=operational"), "{html}");
    assert!(html.len() < 50 * 1024, "{} bytes", html.len());
    assert!(!html.contains("<script"), "readable without JavaScript");
    assert_eq!(html.matches("<i ").count() + html.matches("<i>").count(), 2 * 90, "a 90-day bar per website");

    // ETag and 304.
    let etag = meta.split('|').nth(1).expect("etag").to_owned();
    assert!(etag.starts_with('"'), "{meta}");
    let (status, _, body) = visit(&visitor, "/status/acme", Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    let (status, meta, json) = visit(&visitor, "/status/acme.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(meta.starts_with("application/json"), "{meta}");
    let data: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(data["status"], "operational");
    assert_eq!(data["groups"][0]["websites"][0]["name"], "Checkout API");
    assert_eq!(data["groups"][0]["websites"][0].get("url"), None);
    assert_eq!(data["groups"][0]["websites"][1]["url"], "https://api.example.com/");
    assert_eq!(data["groups"][0]["websites"][0]["days"].as_array().map(Vec::len), Some(90));
    assert!(!json.contains("shop.internal") && !json.contains("hidden"));

    let (status, meta, feed) = visit(&visitor, "/status/acme/feed.atom", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(meta.starts_with("application/atom+xml"), "{meta}");
    well_formed_xml(&feed);

    // Badges of published websites, by id and by display name.
    for path in [
        format!("/badge/{shop}/status.svg"),
        format!("/badge/{shop}/uptime.svg?days=30"),
        "/badge/checkout-api/status.svg".to_owned(),
    ] {
        let (status, meta, svg) = visit(&visitor, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {svg}");
        assert!(meta.starts_with("image/svg+xml") && meta.ends_with("max-age=30"), "{meta}");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        well_formed_xml(&svg);
    }
    let (_, _, svg) = visit(&visitor, &format!("/badge/{shop}/status.svg"), None).await;
    assert!(svg.contains("operational"), "{svg}");
    let (status, _, _) = visit(&visitor, &format!("/badge/{shop}/uptime.svg?days=91"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Every public route of a website on no page is 404.
    let unknown = uuid::Uuid::now_v7().to_string();
    for website in [hidden.as_str(), unknown.as_str(), "hidden", "shop-prod"] {
        for path in [
            format!("/badge/{website}/status.svg"),
            format!("/badge/{website}/uptime.svg"),
            format!("/badge/{website}/uptime.svg?days=7"),
            format!("/status/{website}"),
            format!("/status/{website}.json"),
            format!("/status/{website}/feed.atom"),
        ] {
            let (status, _, body) = visit(&visitor, &path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert!(!body.contains("secret.example.com"));
        }
    }
    // Taking a website off the page takes its badges down.
    let (status, _) = system
        .call(
            Method::PATCH,
            "/status-pages/acme",
            Some(json!({ "groups": [{ "name": "Web", "websites": [{ "id": api, "name": "Public API" }] }] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = visit(&visitor, &format!("/badge/{shop}/status.svg"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Planned work shows as maintenance.
    let now = Utc::now();
    let (status, window) = system
        .call(
            Method::POST,
            "/maintenance",
            Some(json!({ "name": "upgrade", "website_ids": [api],
                         "starts_at": now - ChronoDuration::minutes(1), "ends_at": now + ChronoDuration::hours(1) })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{window}");
    let fresh = system.api_client(None);
    let (_, _, json) = visit(&fresh, "/status/acme.json", None).await;
    let data: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(data["status"], "maintenance", "{data}");
    assert_eq!(data["groups"][0]["websites"][0]["status"], "maintenance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_a_public_incident_and_confirmed_subscribers_are_mailed_once_per_change() {
    let system = Stack::start_with_smtp(Smtp::start().await, &[]).await;
    let id = system.add_website_id(json!({ "url": "https://shop.example.com", "name": "shop" })).await;
    page(
        &system,
        json!({ "slug": "acme", "title": "Acme status",
                "groups": [{ "name": "Web", "websites": [{ "id": id, "name": "Shop" }] }] }),
    )
    .await;
    system.start_detector();
    system.start_notifier();
    let visitor = system.api_client(None);

    // Double opt-in: nothing is mailed but the confirmation until confirmed.
    let response = visitor
        .post("/status/acme/subscribe")
        .content_type("application/x-www-form-urlencoded")
        .body("email=visitor%40example.com")
        .send()
        .await;
    response.assert_status(StatusCode::ACCEPTED);
    let confirmation = eventually(Duration::from_secs(10), "the confirmation mail", || async {
        mails_to(&system, "visitor@example.com", "Confirm your subscription").into_iter().next()
    })
    .await;
    let confirm = link(&confirmation, "/confirm?token=");
    let (status, _, body) = visit(&visitor, "/status/acme/confirm?token=wrong", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = visit(&visitor, &confirm, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Subscribed"), "{body}");
    // Subscribing again once confirmed mails nothing new.
    let response =
        visitor.post("/status/acme/subscribe").body_json(&json!({ "email": "visitor@example.com" })).send().await;
    response.assert_status(StatusCode::ACCEPTED);
    let response = visitor.post("/status/acme/subscribe").body_json(&json!({ "email": "not an address" })).send().await;
    response.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    // A script cannot make it mail strangers in bulk.
    let other = system.api_client(None);
    let mut statuses = Vec::new();
    for n in 0..12 {
        let body = json!({ "email": format!("stranger{n}@example.com") });
        statuses.push(other.post("/status/acme/subscribe").body_json(&body).send().await.0.status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count(), 10, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));

    // The website goes down: an open incident, outage on the page.
    // Checks from now on (uptime counts from when the website was added).
    let base = Utc::now();
    system.check(id, "local", base, false).await;
    system.check(id, "local", base + ChronoDuration::seconds(1), false).await;
    system.notifier_settled().await;
    system.settle().await;
    let incident = eventually(Duration::from_secs(10), "the public incident", || async {
        let (_, incidents) = system.call(Method::GET, "/status-pages/acme/incidents", None).await;
        incidents.as_array().and_then(|all| all.first().cloned())
    })
    .await;
    assert_eq!(incident["ongoing"], true, "{incident}");
    assert_eq!(incident["status"], "investigating");
    let incident_id = incident["id"].as_str().expect("id");
    let (status, posted) = system
        .call(
            Method::POST,
            &format!("/status-pages/acme/incidents/{incident_id}/updates"),
            Some(json!({ "status": "identified", "message": "A <full> disk", "title": "Checkout unavailable" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!(posted["title"], "Checkout unavailable");
    assert_eq!(posted["updates"][0]["status"], "identified");
    let (status, error) = system
        .call(
            Method::POST,
            &format!("/status-pages/acme/incidents/{incident_id}/updates"),
            Some(json!({ "status": "fixed", "message": "x" })),
        )
        .await;
    assert_eq!((status, error["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("status")));
    let (status, _) = system
        .call(
            Method::POST,
            &format!("/status-pages/acme/incidents/{}/updates", uuid::Uuid::now_v7()),
            Some(json!({ "status": "identified", "message": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let data = eventually(Duration::from_secs(10), "the page showing the outage", || async {
        let (_, _, json) = visit(&visitor, "/status/acme.json", None).await;
        let data: Value = serde_json::from_str(&json).ok()?;
        (data["status"] == "outage" && data["incidents"][0]["title"] == "Checkout unavailable").then_some(data)
    })
    .await;
    assert_eq!(data["incidents"][0]["updates"][0]["message"], "A <full> disk");
    let (_, _, html) = visit(&visitor, "/status/acme", None).await;
    assert!(html.contains("data-status=outage") && html.contains("A &lt;full&gt; disk"), "{html}");
    let (_, _, svg) = visit(&visitor, &format!("/badge/{id}/status.svg"), None).await;
    assert!(svg.contains("outage"), "{svg}");

    let down = eventually(Duration::from_secs(10), "the subscriber's down mail", || async {
        mails_to(&system, "visitor@example.com", "Shop is down").into_iter().next()
    })
    .await;
    assert!(!down.contains("shop.example.com"), "the checked URL is not mailed");

    // Recovery: one more mail, the incident resolved, downtime in the bar.
    system.check(id, "local", base + ChronoDuration::seconds(4), true).await;
    system.notifier_settled().await;
    eventually(Duration::from_secs(10), "the subscriber's recovery mail", || async {
        mails_to(&system, "visitor@example.com", "Shop has recovered").into_iter().next()
    })
    .await;
    let downtime = |data: &Value| -> i64 {
        let days = data["groups"][0]["websites"][0]["days"].as_array().cloned().unwrap_or_default();
        days.iter().rev().take(2).filter_map(|d| d["down_seconds"].as_i64()).sum()
    };
    let data = eventually(Duration::from_secs(15), "the page operational again", || async {
        let (_, _, json) = visit(&visitor, "/status/acme.json", None).await;
        let data: Value = serde_json::from_str(&json).ok()?;
        (data["status"] == "operational" && downtime(&data) >= 4).then_some(data)
    })
    .await;
    assert_eq!(data["incidents"][0]["status"], "resolved", "{data}");
    assert_eq!(downtime(&data), 4, "today's bar shows the downtime");
    let days = data["groups"][0]["websites"][0]["days"].as_array().expect("days").clone();
    assert!(days[88..].iter().any(|d| d["incidents"].as_array().is_some_and(|i| !i.is_empty())), "{days:?}");
    let (_, _, feed) = visit(&visitor, "/status/acme/feed.atom", None).await;
    assert!(feed.contains("Checkout unavailable"), "{feed}");
    well_formed_xml(&feed);

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mails_to(&system, "visitor@example.com", "Shop is down").len(), 1, "once per change");
    assert_eq!(mails_to(&system, "visitor@example.com", "Shop has recovered").len(), 1);

    // Every mail links to unsubscribing; the link asks first, then does it.
    let unsubscribe = link(&down, "/unsubscribe?token=");
    let (status, _, form) = visit(&visitor, &unsubscribe, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("<form method=post"), "{form}");
    let response = visitor.post(&unsubscribe).send().await;
    response.assert_status_is_ok();
    system.settle().await;
    system.check(id, "local", base + ChronoDuration::seconds(5), false).await;
    system.check(id, "local", base + ChronoDuration::seconds(6), false).await;
    system.notifier_settled().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(mails_to(&system, "visitor@example.com", "Shop is down").len(), 1, "not mailed after unsubscribing");

    // A replay from the stream makes the same pages, subscribers, incidents
    // (same ids) and updates.
    system.settle().await;
    let clean = common::Db::fresh().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    services::projector::replay(&system.bus, &clean.pool, services::projector::Projection::Monitor, &cancel)
        .await
        .expect("replay");
    for (table, order) in [
        ("status_pages", "id"),
        ("status_page_websites", "page_id, website_id"),
        ("status_subscribers", "id"),
        ("status_incidents", "id"),
        ("status_incident_updates", "id"),
    ] {
        let query = format!("select coalesce(json_agg(t), '[]'::json) from (select * from {table} order by {order}) t");
        let rows = |pool| sqlx::query_scalar::<_, Value>(&query).fetch_one(pool);
        let (replayed, live) = (rows(&clean.pool).await.expect("rows"), rows(&system.db.pool).await.expect("rows"));
        assert_eq!(replayed, live, "{table}");
        // (The one subscriber left.)
        assert!(table == "status_subscribers" || live != json!([]), "{table} has rows");
    }
}
