//! One check of one website, as a worker performs it, with the website's
//! settings ([`events::check::CheckSpec`]).
//!
//! - HTTP: the method, headers and body configured (default a GET) with the
//!   website's timeout; redirects followed up to a bound unless turned off
//!   (a loop or too many hops is a failure of its own); certificates
//!   verified unless turned off (a bad one is cause `tls`).
//! - A fresh connection every check (the client keeps no idle connections),
//!   so the response time includes DNS, connect and TLS, as uptime services
//!   measure it. The time is taken at the response head; the body is read
//!   (at most 1 MiB) only to look for a keyword.
//! - Up is a final status in `expected_status` (default 2xx or 3xx) and the
//!   keyword found (or, with `keyword_absent`, not found; cause `keyword`).
//!   Everything else is down with a machine-readable cause. An HTTPS
//!   check records when the server's certificate expires.
//! - TCP (`tcp://host:port`): up when a connection opens within the timeout.
//! - SSRF guard: unless private targets are allowed, addresses that are
//!   loopback, private, link-local (the cloud metadata address among them),
//!   CGNAT, unique-local, multicast, reserved, or IPv4 embedded in IPv6 forms
//!   of those are refused at connect time: by the resolver for host names
//!   (so DNS rebinding and redirects to names are covered) and by a check of
//!   every IP-literal hop (which never reaches the resolver).
//!
//! A check never fails as a function: every failure is a down outcome.

use crate::target::{blocked_literal, is_blocked, Blocked, DnsFailure, GuardedResolver};
use chrono::{DateTime, Utc};
use events::check::{CheckKind, CheckSpec};
use events::FailureCause;
use reqwest::redirect;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

#[derive(Debug, Clone)]
pub struct CheckerOptions {
    pub allow_private_targets: bool,
    pub max_redirects: usize,
    pub user_agent: String,
}

impl Default for CheckerOptions {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            max_redirects: 10,
            user_agent: format!("WebsiteMonitor/{} (+uptime checks)", env!("CARGO_PKG_VERSION")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct CheckerError(#[from] reqwest::Error);

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub started_at: DateTime<Utc>,
    pub up: bool,
    /// Final status after redirects, if a response arrived.
    pub status_code: Option<u16>,
    /// Start to response head of the final hop, including DNS, connect, TLS.
    pub response_ms: Option<u32>,
    /// Why it is down; `None` when up.
    pub cause: Option<FailureCause>,
    /// A short message for people when down.
    pub message: Option<String>,
    /// When the server's certificate expires (HTTPS).
    pub cert_not_after: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Checker {
    /// One client per (follow redirects, verify TLS): reqwest sets both per
    /// client.
    clients: [reqwest::Client; 4],
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
enum RedirectFailure {
    #[error("redirect loop back to {0}")]
    Loop(String),
    #[error("more than {0} redirects")]
    TooMany(usize),
}

/// How much of a body a keyword is looked for in.
const MAX_BODY_SCAN: usize = 1024 * 1024;

impl Checker {
    pub fn new(options: CheckerOptions) -> Result<Checker, CheckerError> {
        let allow_private = options.allow_private_targets;
        let build = |follow: bool, verify: bool| -> Result<reqwest::Client, CheckerError> {
            let max_redirects = options.max_redirects;
            let policy = if follow {
                redirect::Policy::custom(move |attempt| {
                    if let Some(ip) = blocked_literal(attempt.url(), allow_private) {
                        return attempt.error(Blocked(ip.to_string()));
                    }
                    if attempt.previous().iter().any(|seen| seen == attempt.url()) {
                        let url = attempt.url().to_string();
                        return attempt.error(RedirectFailure::Loop(url));
                    }
                    if attempt.previous().len() > max_redirects {
                        return attempt.error(RedirectFailure::TooMany(max_redirects));
                    }
                    attempt.follow()
                })
            } else {
                redirect::Policy::none()
            };
            Ok(reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .redirect(policy)
                .pool_max_idle_per_host(0)
                .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
                .danger_accept_invalid_certs(!verify)
                .tls_info(true)
                .tcp_nodelay(true)
                .build()?)
        };
        Ok(Checker {
            clients: [build(true, true)?, build(true, false)?, build(false, true)?, build(false, false)?],
            allow_private,
        })
    }

    fn client(&self, spec: &CheckSpec) -> &reqwest::Client {
        let index = usize::from(!spec.follow_redirects) * 2 + usize::from(!spec.verify_tls);
        &self.clients[index]
    }

    /// The original check: a GET, up on 2xx/3xx.
    pub async fn check(&self, url: &str, timeout: Duration) -> CheckOutcome {
        self.check_with(url, timeout, &CheckSpec::default(), &[]).await
    }

    /// A check with `spec`'s settings; `secret_headers` are the values
    /// `spec` holds sealed, opened by the caller.
    pub async fn check_with(
        &self,
        url: &str,
        timeout: Duration,
        spec: &CheckSpec,
        secret_headers: &[(String, String)],
    ) -> CheckOutcome {
        let started_at = Utc::now();
        let start = Instant::now();
        let down = |cause, message: String, status_code, response_ms| CheckOutcome {
            started_at,
            up: false,
            status_code,
            response_ms,
            cause: Some(cause),
            message: Some(truncate(message)),
            cert_not_after: None,
        };
        let parsed = match Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return down(FailureCause::Other, format!("invalid url: {e}"), None, None),
        };
        if let Some(ip) = blocked_literal(&parsed, self.allow_private) {
            return down(FailureCause::Blocked, Blocked(ip.to_string()).to_string(), None, None);
        }
        if spec.kind == CheckKind::Tcp || parsed.scheme() == "tcp" {
            return self.tcp(&parsed, timeout, started_at).await;
        }
        let method = reqwest::Method::from_bytes(spec.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self.client(spec).request(method, parsed).timeout(timeout);
        for header in &spec.headers {
            if let Some(value) = &header.value {
                request = request.header(header.name.as_str(), value.as_str());
            }
        }
        for (name, value) in secret_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let (cause, message) = classify(&error, timeout);
                return down(cause, message, None, None);
            }
        };
        let elapsed = millis(start.elapsed());
        let status = response.status();
        let cert_not_after = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(not_after);
        let with_cert = |mut outcome: CheckOutcome| {
            outcome.cert_not_after = cert_not_after;
            outcome
        };
        if !spec.status_is_up(status.as_u16()) {
            let reason = status.canonical_reason().unwrap_or("");
            return with_cert(down(
                FailureCause::HttpStatus,
                format!("HTTP {} {reason}", status.as_u16()).trim_end().to_owned(),
                Some(status.as_u16()),
                Some(elapsed),
            ));
        }
        if let Some(keyword) = spec.keyword_matcher() {
            let keyword = match keyword {
                Ok(keyword) => keyword,
                Err(e) => return with_cert(down(FailureCause::Other, e.message, Some(status.as_u16()), Some(elapsed))),
            };
            let deadline = timeout.saturating_sub(start.elapsed());
            let body = match tokio::time::timeout(deadline, read_prefix(response, MAX_BODY_SCAN)).await {
                Ok(Ok(body)) => body,
                Ok(Err(error)) => {
                    let (cause, message) = classify(&error, timeout);
                    return with_cert(down(cause, message, Some(status.as_u16()), Some(elapsed)));
                }
                Err(_) => {
                    let message = format!("timed out after {} ms reading the body", timeout.as_millis());
                    return with_cert(down(FailureCause::Timeout, message, Some(status.as_u16()), Some(elapsed)));
                }
            };
            let text = String::from_utf8_lossy(&body);
            let found = keyword.found_in(&text);
            if found == spec.keyword_absent {
                let word = spec.keyword.as_deref().unwrap_or_default();
                let what = if spec.keyword_absent { "found" } else { "not found" };
                let start: String = text.chars().take(100).collect();
                let message = format!("keyword {word:?} {what}; the body starts: {start}");
                return with_cert(down(FailureCause::Keyword, message, Some(status.as_u16()), Some(elapsed)));
            }
        }
        CheckOutcome {
            started_at,
            up: true,
            status_code: Some(status.as_u16()),
            response_ms: Some(elapsed),
            cause: None,
            message: None,
            cert_not_after,
        }
    }

    /// Up when a TCP connection to the URL's host and port opens in time,
    /// to an address the SSRF guard allows.
    async fn tcp(&self, url: &Url, timeout: Duration, started_at: chrono::DateTime<Utc>) -> CheckOutcome {
        let start = Instant::now();
        let down = |cause, message: String| CheckOutcome {
            started_at,
            up: false,
            status_code: None,
            response_ms: None,
            cause: Some(cause),
            message: Some(truncate(message)),
            cert_not_after: None,
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
            return down(FailureCause::Other, "a TCP check needs tcp://host:port".into());
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let attempt = async {
            let resolved: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => found.collect(),
                Err(e) => return down(FailureCause::Dns, format!("dns: {host}: {e}")),
            };
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| self.allow_private || !is_blocked(a.ip())).collect();
            if allowed.is_empty() {
                return down(FailureCause::Blocked, Blocked(host.clone()).to_string());
            }
            match tokio::net::TcpStream::connect(allowed.as_slice()).await {
                Ok(stream) => {
                    drop(stream);
                    CheckOutcome {
                        started_at,
                        up: true,
                        status_code: None,
                        response_ms: Some(millis(start.elapsed())),
                        cause: None,
                        message: None,
                        cert_not_after: None,
                    }
                }
                Err(e) => down(FailureCause::Connect, format!("connect: {e}")),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => down(FailureCause::Timeout, format!("timed out after {} ms", timeout.as_millis())),
        }
    }
}

/// Up to `limit` bytes of the body.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            None => break,
        }
    }
    Ok(body)
}

/// The `notAfter` of a DER certificate.
fn not_after(der: &[u8]) -> Option<chrono::DateTime<Utc>> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    chrono::DateTime::from_timestamp(certificate.validity().not_after.timestamp(), 0)
}

/// The cause and message of a failed request, from its error chain.
fn classify(error: &reqwest::Error, timeout: Duration) -> (FailureCause, String) {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    let mut chain = Vec::new();
    while let Some(e) = source {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return (FailureCause::Blocked, b.to_string());
        }
        if let Some(d) = e.downcast_ref::<DnsFailure>() {
            return (FailureCause::Dns, d.to_string());
        }
        if let Some(r) = e.downcast_ref::<RedirectFailure>() {
            let cause = match r {
                RedirectFailure::Loop(_) => FailureCause::RedirectLoop,
                RedirectFailure::TooMany(_) => FailureCause::TooManyRedirects,
            };
            return (cause, r.to_string());
        }
        chain.push(e.to_string());
        source = e.source();
    }
    if error.is_timeout() {
        return (FailureCause::Timeout, format!("timed out after {} ms", timeout.as_millis()));
    }
    let detail = chain.last().cloned().unwrap_or_else(|| error.to_string());
    let lower = chain.join(" ").to_lowercase();
    let tls_words = ["tls", "certificate", "handshake", "corrupt message", "invalidcontenttype", "alert"];
    if tls_words.iter().any(|w| lower.contains(w)) {
        return (FailureCause::Tls, format!("tls: {detail}"));
    }
    if error.is_connect() {
        return (FailureCause::Connect, format!("connect: {detail}"));
    }
    (FailureCause::Other, detail)
}

fn millis(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX)
}

fn truncate(message: String) -> String {
    const MAX: usize = 200;
    if message.chars().count() <= MAX {
        message
    } else {
        message.chars().take(MAX - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_200_characters() {
        assert_eq!(truncate("x".repeat(500)).chars().count(), 200);
        assert_eq!(truncate("short".into()), "short");
    }
}
