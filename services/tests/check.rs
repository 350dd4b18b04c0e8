//! The HTTP check against real local servers: each failure gives its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::target::Target;
use events::FailureCause;
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
