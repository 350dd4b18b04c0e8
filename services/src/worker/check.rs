//! One HTTP check of one website, as a worker performs it.
//!
//! - A GET with the website's timeout, redirects followed up to a bound; a
//!   loop or too many hops is a failure of its own.
//! - A fresh connection every check (the client keeps no idle connections),
//!   so the response time includes DNS, connect and TLS, as uptime services
//!   measure it. The time is taken at the response head; the body is not
//!   downloaded.
//! - Up is a final status of 2xx or 3xx. Everything else is down with a
//!   machine-readable cause.
//! - SSRF guard: unless private targets are allowed, addresses that are
//!   loopback, private, link-local (the cloud metadata address among them),
//!   CGNAT, unique-local, multicast, reserved, or IPv4 embedded in IPv6 forms
//!   of those are refused at connect time: by the resolver for host names
//!   (so DNS rebinding and redirects to names are covered) and by a check of
//!   every IP-literal hop (which never reaches the resolver).
//!
//! A check never fails as a function: every failure is a down outcome.

use crate::target::{blocked_literal, Blocked, DnsFailure, GuardedResolver};
use chrono::{DateTime, Utc};
use events::FailureCause;
use reqwest::redirect;
use std::error::Error as StdError;
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
}

#[derive(Clone)]
pub struct Checker {
    client: reqwest::Client,
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
enum RedirectFailure {
    #[error("redirect loop back to {0}")]
    Loop(String),
    #[error("more than {0} redirects")]
    TooMany(usize),
}

impl Checker {
    pub fn new(options: CheckerOptions) -> Result<Checker, CheckerError> {
        let allow_private = options.allow_private_targets;
        let max_redirects = options.max_redirects;
        let policy = redirect::Policy::custom(move |attempt| {
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
        });
        let client = reqwest::Client::builder()
            .user_agent(options.user_agent)
            .redirect(policy)
            .pool_max_idle_per_host(0)
            .dns_resolver(Arc::new(GuardedResolver::new(allow_private)))
            .tcp_nodelay(true)
            .build()?;
        Ok(Checker { client, allow_private })
    }

    pub async fn check(&self, url: &str, timeout: Duration) -> CheckOutcome {
        let started_at = Utc::now();
        let start = Instant::now();
        let down = |cause, message: String, status_code, response_ms| CheckOutcome {
            started_at,
            up: false,
            status_code,
            response_ms,
            cause: Some(cause),
            message: Some(truncate(message)),
        };
        let parsed = match Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return down(FailureCause::Other, format!("invalid url: {e}"), None, None),
        };
        if let Some(ip) = blocked_literal(&parsed, self.allow_private) {
            return down(FailureCause::Blocked, Blocked(ip.to_string()).to_string(), None, None);
        }
        match self.client.get(parsed).timeout(timeout).send().await {
            Ok(response) => {
                let elapsed = millis(start.elapsed());
                let status = response.status();
                drop(response);
                if status.is_success() || status.is_redirection() {
                    CheckOutcome {
                        started_at,
                        up: true,
                        status_code: Some(status.as_u16()),
                        response_ms: Some(elapsed),
                        cause: None,
                        message: None,
                    }
                } else {
                    let reason = status.canonical_reason().unwrap_or("");
                    down(
                        FailureCause::HttpStatus,
                        format!("HTTP {} {reason}", status.as_u16()).trim_end().to_owned(),
                        Some(status.as_u16()),
                        Some(elapsed),
                    )
                }
            }
            Err(error) => {
                let (cause, message) = classify(&error, timeout);
                down(cause, message, None, None)
            }
        }
    }
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
