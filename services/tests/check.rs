//! The HTTP check against real local servers: each failure gives its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::receiver::Receiver;
use common::target::Target;
use common::tls::TlsServer;
use events::check::CheckSpec;
use events::FailureCause;
use serde_json::json;
use services::worker::check::{Checker, CheckerOptions};
use std::time::{Duration, Instant};

fn checker(allow_private_targets: bool) -> Checker {
    Checker::new(CheckerOptions { allow_private_targets, ..Default::default() }).expect("checker")
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_2xx_answer_is_up_with_its_status_and_time() {
    let target = Target::start().await;
    let outcome = checker(true).check(&target.url("/status"), TIMEOUT).await;
    assert!(outcome.up, "{outcome:?}");
    assert_eq!(outcome.status_code, Some(200));
    assert!(outcome.response_ms.is_some());
    assert_eq!(outcome.cause, None);
}

#[tokio::test]
async fn a_500_is_down_with_cause_http_status() {
    let target = Target::start().await;
    target.answer(500);
    let outcome = checker(true).check(&target.url("/status"), TIMEOUT).await;
    assert!(!outcome.up);
    assert_eq!(outcome.status_code, Some(500));
    assert_eq!(outcome.cause, Some(FailureCause::HttpStatus));
    assert_eq!(outcome.message.as_deref(), Some("HTTP 500 Internal Server Error"));
}

#[tokio::test]
async fn a_refused_connection_is_down_with_cause_connect() {
    let port = common::free_port();
    let outcome = checker(true).check(&format!("http://127.0.0.1:{port}/"), TIMEOUT).await;
    assert_eq!(outcome.cause, Some(FailureCause::Connect), "{outcome:?}");
    assert_eq!(outcome.status_code, None);
}

#[tokio::test]
async fn a_slow_answer_is_down_with_cause_timeout_at_the_timeout() {
    let target = Target::start().await;
    let start = Instant::now();
    let outcome = checker(true).check(&target.url("/slow/3000"), Duration::from_millis(300)).await;
    assert_eq!(outcome.cause, Some(FailureCause::Timeout), "{outcome:?}");
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn an_unknown_host_is_down_with_cause_dns() {
    let outcome = checker(true).check("http://does-not-exist.invalid/", TIMEOUT).await;
    assert_eq!(outcome.cause, Some(FailureCause::Dns), "{outcome:?}");
}

#[tokio::test]
async fn tls_to_a_plain_http_server_is_down_with_cause_tls() {
    let target = Target::start().await;
    let url = target.url("/status").replace("http://", "https://");
    let outcome = checker(true).check(&url, TIMEOUT).await;
    assert_eq!(outcome.cause, Some(FailureCause::Tls), "{outcome:?}");
}

#[tokio::test]
async fn a_redirect_loop_is_down_with_cause_redirect_loop() {
    let target = Target::start().await;
    let outcome = checker(true).check(&target.url("/loop"), TIMEOUT).await;
    assert_eq!(outcome.cause, Some(FailureCause::RedirectLoop), "{outcome:?}");
}

#[tokio::test]
async fn loopback_targets_are_blocked_unless_allowed_and_never_contacted() {
    let target = Target::start().await;
    let guarded = checker(false);
    let literal = guarded.check(&target.url("/status"), TIMEOUT).await;
    assert_eq!(literal.cause, Some(FailureCause::Blocked), "{literal:?}");
    let by_name = guarded.check(&target.url("/status").replace("127.0.0.1", "localhost"), TIMEOUT).await;
    assert_eq!(by_name.cause, Some(FailureCause::Blocked), "{by_name:?}");
    let metadata = guarded.check("http://169.254.169.254/latest/meta-data/", TIMEOUT).await;
    assert_eq!(metadata.cause, Some(FailureCause::Blocked));
    assert_eq!(target.hits(), 0, "a blocked target is never contacted");
}

#[tokio::test]
async fn every_check_opens_a_fresh_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
                                .await;
                        }
                    }
                }
            });
        }
    });
    let checker = checker(true);
    for _ in 0..3 {
        let outcome = checker.check(&format!("http://127.0.0.1:{port}/"), TIMEOUT).await;
        assert!(outcome.up, "{outcome:?}");
    }
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 3);
}

fn spec(json: serde_json::Value) -> CheckSpec {
    serde_json::from_value(json).expect("check settings")
}

#[tokio::test]
async fn a_keyword_must_be_in_the_body_or_with_keyword_absent_must_not() {
    let target = Target::start().await;
    let check = checker(true);
    let url = target.url("/status");
    let found = check.check_with(&url, TIMEOUT, &spec(json!({ "keyword": "status" })), &[]).await;
    assert!(found.up, "{found:?}");
    let missing = check.check_with(&url, TIMEOUT, &spec(json!({ "keyword": "Welcome" })), &[]).await;
    assert_eq!(missing.cause, Some(FailureCause::Keyword), "{missing:?}");
    assert!(missing.message.as_deref().unwrap_or_default().contains("the body starts: status"), "{missing:?}");
    let regex = check.check_with(&url, TIMEOUT, &spec(json!({ "keyword": "/^sta+tus$/" })), &[]).await;
    assert!(regex.up, "{regex:?}");
    let absent =
        check.check_with(&url, TIMEOUT, &spec(json!({ "keyword": "status", "keyword_absent": true })), &[]).await;
    assert_eq!(absent.cause, Some(FailureCause::Keyword), "{absent:?}");
}

#[tokio::test]
async fn expected_status_codes_decide_what_is_up() {
    let target = Target::start().await;
    let check = checker(true);
    target.answer(404);
    let expected = check
        .check_with(
            &target.url("/status"),
            TIMEOUT,
            &spec(json!({ "expected_status": [{ "from": 404, "to": 404 }] })),
            &[],
        )
        .await;
    assert!(expected.up, "{expected:?}");
    target.answer(200);
    let unexpected = check
        .check_with(
            &target.url("/status"),
            TIMEOUT,
            &spec(json!({ "expected_status": [{ "from": 201, "to": 299 }] })),
            &[],
        )
        .await;
    assert_eq!(unexpected.cause, Some(FailureCause::HttpStatus), "{unexpected:?}");
    // Not following, a redirect loop is just a 302, and up.
    let unfollowed =
        check.check_with(&target.url("/loop"), TIMEOUT, &spec(json!({ "follow_redirects": false })), &[]).await;
    assert!(unfollowed.up && unfollowed.status_code == Some(302), "{unfollowed:?}");
}

#[tokio::test]
async fn a_post_carries_its_body_and_headers_secret_ones_included() {
    let receiver = Receiver::start().await;
    let settings = spec(json!({
        "method": "POST", "body": "{\"ping\":1}",
        "headers": [{ "name": "X-Probe", "value": "yes" }, { "name": "Authorization" }],
    }));
    let secrets = vec![("Authorization".to_owned(), "Bearer s3cret".to_owned())];
    let outcome = checker(true).check_with(&receiver.url("/ok/probe"), TIMEOUT, &settings, &secrets).await;
    assert!(outcome.up, "{outcome:?}");
    let got = &receiver.at("/ok/probe")[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.body, "{\"ping\":1}");
    assert_eq!(got.header("x-probe"), "yes");
    assert_eq!(got.header("authorization"), "Bearer s3cret");
}

#[tokio::test]
async fn a_self_signed_certificate_is_down_unless_verification_is_off_and_its_expiry_is_recorded() {
    let server = TlsServer::start().await;
    let check = checker(true);
    let verified = check.check_with(&server.base, TIMEOUT, &CheckSpec::default(), &[]).await;
    assert_eq!(verified.cause, Some(FailureCause::Tls), "{verified:?}");
    let unverified = check.check_with(&server.base, TIMEOUT, &spec(json!({ "verify_tls": false })), &[]).await;
    assert!(unverified.up, "{unverified:?}");
    assert_eq!(unverified.cert_not_after, Some(server.not_after));
}

#[tokio::test]
async fn a_tcp_check_is_up_when_the_port_accepts_and_down_when_it_refuses() {
    let receiver = Receiver::start().await;
    let check = checker(true);
    let tcp = spec(json!({ "kind": "tcp" }));
    let open = check.check_with(&format!("tcp://127.0.0.1:{}", receiver.port()), TIMEOUT, &tcp, &[]).await;
    assert!(open.up && open.response_ms.is_some(), "{open:?}");
    let closed = check.check_with("tcp://127.0.0.1:1", TIMEOUT, &tcp, &[]).await;
    assert_eq!(closed.cause, Some(FailureCause::Connect), "{closed:?}");
    let guarded = checker(false).check_with(&format!("tcp://localhost:{}", receiver.port()), TIMEOUT, &tcp, &[]).await;
    assert_eq!(guarded.cause, Some(FailureCause::Blocked), "{guarded:?}");
}
