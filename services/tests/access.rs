//! Who may do what, and who did it, against the real servers: every route
//! refuses a missing, malformed, unknown or revoked token and a too-narrow
//! scope; revocation reaches every API instance within a second; guessing
//! is rate-limited; the dashboard's session cookie works only same-origin;
//! and the history and audit log read from the stream say who changed what.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::stack::{eventually, Stack};
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn send(
    client: &TestClient<BoxEndpoint<'static>>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, HeaderMap) {
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request.body_json(&body);
    }
    let response = request.send().await;
    let status = response.0.status();
    let headers = response.0.headers().clone();
    let bytes = response.0.into_body().into_vec().await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value, headers)
}

async fn create_token(stack: &Stack, name: &str, scope: &str) -> (String, String) {
    let (status, body, _) =
        send(&stack.client, Method::POST, "/tokens", Some(json!({ "name": name, "scope": scope }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("wm_"));
    (body["id"].as_str().expect("id").to_owned(), secret)
}

/// Every operation of the served description, with its path parameters
/// filled in.
async fn operations(stack: &Stack) -> Vec<(Method, String)> {
    let (status, spec, _) = send(&stack.client, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut all = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let concrete = path
            .split('/')
            .map(|segment| if segment.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { segment.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("operations").keys() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                all.push((method, concrete.clone()));
            }
        }
    }
    assert!(all.len() >= 10, "the description lists the operations: {all:?}");
    all
}

#[tokio::test]
async fn every_route_refuses_a_missing_malformed_unknown_or_revoked_token() {
    let stack = Stack::start(&[]).await;
    let (id, secret) = create_token(&stack, "soon revoked", "admin").await;
    let (status, _, _) = send(&stack.client, Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(600)).await;

    for (method, path) in operations(&stack).await {
        if path == "/health" {
            continue;
        }
        // Fresh instances per route: each counts failed authentications
        // (20 a minute) on its own, and there are more routes than that.
        let anonymous = stack.api_client(None);
        let unknown = stack.api_client(Some("wm_unknown-token-unknown-token-unknown-token"));
        let revoked = stack.api_client(Some(&secret));
        let malformed = stack.api_client_sending(Some("Basic dXNlcjpwYXNz".into()));
        for (who, client) in
            [("anonymous", &anonymous), ("unknown", &unknown), ("revoked", &revoked), ("malformed", &malformed)]
        {
            let (status, body, headers) = send(client, method.clone(), &path, Some(json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{who} {method} {path}: {body}");
            assert_eq!(body["error"], "unauthorized", "{who} {method} {path}");
            assert!(headers.contains_key("www-authenticate"), "{who} {method} {path}");
        }
    }
}

#[tokio::test]
async fn a_too_narrow_scope_is_refused_with_403_on_every_route_that_needs_more() {
    let stack = Stack::start(&[]).await;
    let (_, read) = create_token(&stack, "reader", "read").await;
    let (_, write) = create_token(&stack, "writer", "write").await;
    let (reader, writer) = (stack.api_client(Some(&read)), stack.api_client(Some(&write)));
    let mut checked = 0;
    for (method, path) in operations(&stack).await {
        let changes = method != Method::GET && method != Method::HEAD;
        let tokens = path.starts_with("/tokens");
        if changes || tokens {
            let (status, body, _) = send(&reader, method.clone(), &path, Some(json!({}))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "read token, {method} {path}: {body}");
            assert_eq!(body["error"], "forbidden");
            checked += 1;
        }
        if tokens {
            let (status, body, _) = send(&writer, method.clone(), &path, Some(json!({}))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "write token, {method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
    let (status, _, _) = send(&reader, Method::GET, "/websites", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) =
        send(&writer, Method::POST, "/websites", Some(json!({ "url": "https://example.com", "name": "x" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_token_revoked_on_one_instance_is_refused_by_another_within_a_second() {
    let stack = Stack::start(&[]).await;
    let (id, secret) = create_token(&stack, "ci", "read").await;
    let second = stack.api_client(Some(&secret));
    let (status, _, _) = send(&second, Method::GET, "/websites", None).await;
    assert_eq!(status, StatusCode::OK, "the second instance knows the token (and has cached it)");

    let (status, _, _) = send(&stack.client, Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let revoked_at = Instant::now();
    eventually(Duration::from_secs(1), "the second instance refusing the token", || async {
        let (status, _, _) = send(&second, Method::GET, "/websites", None).await;
        (status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    println!("revocation took effect on the second instance after {} ms", revoked_at.elapsed().as_millis());
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_bad_input_names_the_field() {
    let stack = Stack::start(&[]).await;
    let (id, secret) = create_token(&stack, "deploy bot", "write").await;
    let (status, list, _) = send(&stack.client, Method::GET, "/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = list.to_string();
    assert!(!text.contains(&secret), "a listed token never shows its secret");
    assert!(!text.contains(&events::access::secret_hash(&secret)), "nor its hash");
    let listed = list.as_array().expect("array").iter().find(|t| t["id"] == id.as_str()).expect("listed");
    assert_eq!(listed["name"], "deploy bot");
    assert_eq!(listed["scope"], "write");
    assert!(listed.get("last_used_at").is_none(), "not used yet: {listed}");
    let (status, _, _) = send(&stack.api_client(Some(&secret)), Method::GET, "/regions", None).await;
    assert_eq!(status, StatusCode::OK);
    eventually(Duration::from_secs(5), "the token's last use in the list", || async {
        let (_, list, _) = send(&stack.client, Method::GET, "/tokens", None).await;
        let listed = list.as_array()?.iter().find(|t| t["id"] == id.as_str())?.clone();
        listed["last_used_at"].is_string().then_some(())
    })
    .await;

    for (body, field) in [
        (json!({ "name": "x", "scope": "owner" }), "scope"),
        (json!({ "name": "  ", "scope": "read" }), "name"),
        (json!({ "name": "x", "scope": "read", "expires_at": "2001-01-01T00:00:00Z" }), "expires_at"),
    ] {
        let (status, error, _) = send(&stack.client, Method::POST, "/tokens", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert!(error.to_string().contains(field), "{body}: {error}");
    }
    let unknown = uuid::Uuid::now_v7();
    let (status, _, _) = send(&stack.client, Method::DELETE, &format!("/tokens/{unknown}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn two_concurrent_revocations_record_one_event() {
    let stack = Stack::start(&[]).await;
    let (id, _) = create_token(&stack, "twice", "read").await;
    let path = format!("/tokens/{id}");
    let other = stack.api_client(Some(&stack.admin_token));
    let (a, b) =
        tokio::join!(send(&stack.client, Method::DELETE, &path, None), send(&other, Method::DELETE, &path, None));
    assert_eq!((a.0, b.0), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    let (status, page, _) = send(&stack.client, Method::GET, "/audit?type=TokenRevoked&limit=50", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let revocations =
        page["items"].as_array().expect("items").iter().filter(|e| e["aggregate_id"] == id.as_str()).count();
    assert_eq!(revocations, 1, "{page}");
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let stack = Stack::start(&[]).await;
    // One API instance (its own failure counts), guesses sent with a token.
    let guesser = stack.api_client(None);
    let guess = || async {
        let response = guesser
            .get("/websites")
            .header("authorization", "Bearer wm_guess-guess-guess-guess-guess-guess-guess")
            .send()
            .await;
        let status = response.0.status();
        let headers = response.0.headers().clone();
        let body: Value =
            serde_json::from_str(&response.0.into_body().into_string().await.unwrap_or_default()).unwrap_or_default();
        (status, body, headers)
    };
    for n in 0..services::access::middleware::FAILURES_PER_MINUTE {
        let (status, _, _) = guess().await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let (status, body, headers) = guess().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["error"], "too_many_requests");
    // A request without a token guesses nothing: 401 even from the blocked
    // address.
    let (status, _, _) = send(&guesser, Method::GET, "/websites", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_websites_history_shows_each_change_and_the_token_that_made_it() {
    let stack = Stack::start(&[]).await;
    let (_, alice) = create_token(&stack, "alice", "write").await;
    let (_, bob) = create_token(&stack, "bob", "write").await;
    let (alice, bob) = (stack.api_client(Some(&alice)), stack.api_client(Some(&bob)));
    let (status, website, _) =
        send(&alice, Method::POST, "/websites", Some(json!({ "url": "https://example.com", "name": "shop" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{website}");
    let path = format!("/websites/{}", website["id"].as_str().expect("id"));
    let (status, _, _) = send(&alice, Method::PATCH, &path, Some(json!({ "name": "store" }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&bob, Method::PATCH, &path, Some(json!({ "interval_seconds": 600 }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&bob, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, history, _) = send(&stack.client, Method::GET, &format!("{path}/history"), None).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history = history.as_array().expect("array");
    let types: Vec<&str> = history.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["WebsiteAdded", "WebsiteUpdated", "WebsiteUpdated", "WebsiteRemoved"]);
    let who: Vec<&str> = history.iter().filter_map(|e| e["actor"]["name"].as_str()).collect();
    assert_eq!(who, ["alice", "alice", "bob", "bob"]);
    assert_eq!(history[1]["changes"], json!([{ "field": "name", "from": "shop", "to": "store" }]));
    assert_eq!(history[2]["changes"], json!([{ "field": "interval_seconds", "from": 180, "to": 600 }]));
    assert!(history.iter().all(|e| e["request_id"].is_string()), "each event names its request");

    let (status, page, _) = send(&stack.client, Method::GET, "/audit?actor=bob&order=oldest&limit=10", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let types: Vec<&str> = page["items"].as_array().expect("items").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["WebsiteUpdated", "WebsiteRemoved"]);
    let unknown = uuid::Uuid::now_v7();
    let (status, _, _) = send(&stack.client, Method::GET, &format!("/websites/{unknown}/history"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_session_cookie_signs_the_dashboard_in_and_only_same_origin_changes_pass() {
    let stack = Stack::start(&[]).await;
    let (_, secret) = create_token(&stack, "browser", "write").await;
    let browser = stack.api_client(None);
    let (status, body, _) =
        send(&browser, Method::POST, "/session", Some(json!({ "token": "wm_wrong-wrong-wrong-wrong-wrong" }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["field"], "token");

    let response = browser.post("/session").body_json(&json!({ "token": secret })).send().await;
    response.assert_status_is_ok();
    let set_cookie =
        response.0.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();

    let response = browser.get("/websites").header("cookie", &cookie).send().await;
    response.assert_status_is_ok();
    let add = json!({ "url": "https://example.com", "name": "from the browser" });
    let response =
        browser.post("/websites").header("cookie", &cookie).header("host", "monitor.test").body_json(&add).send().await;
    response.assert_status(StatusCode::FORBIDDEN);
    let response = browser
        .post("/websites")
        .header("cookie", &cookie)
        .header("host", "monitor.test")
        .header("origin", "https://evil.test")
        .body_json(&add)
        .send()
        .await;
    response.assert_status(StatusCode::FORBIDDEN);
    let response = browser
        .post("/websites")
        .header("cookie", &cookie)
        .header("host", "monitor.test")
        .header("origin", "http://monitor.test")
        .body_json(&add)
        .send()
        .await;
    response.assert_status(StatusCode::CREATED);

    let response = browser
        .delete("/session")
        .header("cookie", &cookie)
        .header("host", "monitor.test")
        .header("origin", "http://monitor.test")
        .send()
        .await;
    response.assert_status(StatusCode::NO_CONTENT);
    let cleared = response.0.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn html_answers_carry_the_browser_hardening_headers() {
    let stack = Stack::start(&[]).await;
    let response = stack.api_client(None).get("/").send().await;
    response.assert_status_is_ok();
    let header =
        |name: &str| response.0.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'") && !csp.contains("'unsafe-inline' ;"), "{csp}");
    assert!(!csp.split(';').any(|d| d.trim().starts_with("script-src") && d.contains("unsafe")), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "same-origin");
    let (status, _, _) = send(&stack.api_client(None), Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK, "health needs no token");
}

/// A real `api` process on a free port, over the stack's servers.
struct ApiProcess {
    base: String,
    _child: tokio::process::Child,
}

impl ApiProcess {
    async fn start(stack: &Stack) -> ApiProcess {
        let port = common::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_api"))
            .env_clear()
            .envs([
                ("NATS_URL", stack.config.nats_url.clone()),
                ("DATABASE_URL", stack.config.database_url.clone()),
                ("REDIS_URL", stack.config.redis_url.clone()),
                ("INFLUXDB_URL", stack.config.influxdb.url.clone()),
                ("INFLUXDB_BUCKET", stack.config.influxdb.bucket.clone()),
                ("API_PORT", port.to_string()),
                ("ADMIN_TOKEN", stack.admin_token.clone()),
                ("RUST_LOG", "warn".into()),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the api binary");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(30), "the api process answering /health", || async {
            let ok = http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success());
            ok.then_some(())
        })
        .await;
        ApiProcess { base, _child: child }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_api_process_is_refused_by_another_within_a_second() {
    let stack = Stack::start(&[]).await;
    let (first, second) = (ApiProcess::start(&stack).await, ApiProcess::start(&stack).await);
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/tokens", first.base))
        .bearer_auth(&stack.admin_token)
        .json(&json!({ "name": "two processes", "scope": "read" }))
        .send()
        .await
        .expect("POST /tokens")
        .json()
        .await
        .expect("token");
    let (id, secret) = (created["id"].as_str().expect("id"), created["secret"].as_str().expect("secret"));
    let on_second = || http.get(format!("{}/websites", second.base)).bearer_auth(secret).send();
    assert_eq!(on_second().await.expect("GET").status(), reqwest::StatusCode::OK, "the second process accepts it");

    let revoked = http
        .delete(format!("{}/tokens/{id}", first.base))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("DELETE /tokens");
    assert_eq!(revoked.status(), reqwest::StatusCode::NO_CONTENT);
    let at = Instant::now();
    eventually(Duration::from_secs(1), "the second process refusing the revoked token", || async {
        let status = on_second().await.expect("GET").status();
        (status == reqwest::StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    println!("the second api process refused the revoked token after {} ms", at.elapsed().as_millis());
}
