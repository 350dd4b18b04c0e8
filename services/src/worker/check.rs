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

use chrono::{DateTime, Utc};
use events::FailureCause;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::{Host, Url};

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

/// The target is an address checks must not reach.
#[derive(Debug, thiserror::Error)]
#[error("{0} is a private or reserved address")]
struct Blocked(String);

/// The host name could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("dns: {0}")]
struct DnsFailure(String);

#[derive(Debug, thiserror::Error)]
enum RedirectFailure {
    #[error("redirect loop back to {0}")]
    Loop(String),
    #[error("more than {0} redirects")]
    TooMany(usize),
}

struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| DnsFailure(format!("{host}: {e}")))?
                .collect();
            if resolved.is_empty() {
                return Err(DnsFailure(format!("{host}: no addresses")).into());
            }
            let allowed: Vec<SocketAddr> =
                resolved.into_iter().filter(|a| allow_private || !is_blocked(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Blocked(host).into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

impl Checker {
    pub fn new(options: CheckerOptions) -> Result<Checker, CheckerError> {
        let allow_private = options.allow_private_targets;
        let max_redirects = options.max_redirects;
        let policy = redirect::Policy::custom(move |attempt| {
            if let Some(reason) = blocked_literal(attempt.url(), allow_private) {
                return attempt.error(reason);
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
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
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
        if let Some(blocked) = blocked_literal(&parsed, self.allow_private) {
            return down(FailureCause::Blocked, blocked.to_string(), None, None);
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

/// Why checks would refuse `url`'s host, if they would: an IP literal that
/// is blocked, or a name that resolves only to blocked addresses. A name that
/// does not resolve now is not refused (it may resolve later).
pub async fn refused_target(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    if let Some(blocked) = blocked_literal(&parsed, false) {
        return Some(format!("url points to {blocked}; checks refuse such targets"));
    }
    let Some(Host::Domain(name)) = parsed.host() else { return None };
    let lookup = tokio::net::lookup_host((name, 0));
    let addresses: Vec<IpAddr> = match tokio::time::timeout(Duration::from_secs(2), lookup).await {
        Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
        _ => return None,
    };
    let first = *addresses.first()?;
    addresses
        .iter()
        .all(|ip| is_blocked(*ip))
        .then(|| format!("url resolves to {first}, a private or reserved address; checks refuse such targets"))
}

/// Refuses an IP-literal host that is blocked (names go through the
/// resolver instead).
fn blocked_literal(url: &Url, allow_private: bool) -> Option<Blocked> {
    if allow_private {
        return None;
    }
    let ip = match url.host()? {
        Host::Ipv4(ip) => IpAddr::V4(ip),
        Host::Ipv6(ip) => IpAddr::V6(ip),
        Host::Domain(_) => return None,
    };
    is_blocked(ip).then(|| Blocked(ip.to_string()))
}

/// Whether the address is one checks must not reach: anything but a
/// globally routable unicast address.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240 // reserved
}

fn is_blocked_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_blocked_v4(v4);
    }
    let embedded = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
    if segments[..6].iter().all(|s| *s == 0) {
        return ip.is_unspecified() || ip.is_loopback() || is_blocked_v4(embedded(segments[6], segments[7]));
    }
    // NAT64 64:ff9b::/96
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_blocked_v4(embedded(segments[6], segments[7]));
    }
    // 6to4 2002::/16 carries the IPv4 address in bits 16..48
    if segments[0] == 0x2002 {
        return is_blocked_v4(embedded(segments[1], segments[2]));
    }
    ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x2001 && segments[1] == 0) // Teredo
        || (segments[0] == 0x100 && segments[1..4] == [0, 0, 0]) // discard 100::/64
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

    fn blocked(text: &str) -> bool {
        is_blocked(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    #[test]
    fn private_loopback_link_local_and_reserved_v4_are_blocked() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
    }

    #[test]
    fn ipv6_local_forms_and_embedded_private_v4_are_blocked() {
        for ip in [
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:0001::1",
            "2002:c0a8:0101::1",
            "2001:0::1",
            "100::1",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!blocked(ip), "{ip} should pass");
        }
    }

    #[test]
    fn an_ip_literal_hop_is_refused_unless_private_targets_are_allowed() {
        let url = Url::parse("http://169.254.169.254/latest/meta-data/").unwrap_or_else(|e| panic!("{e}"));
        assert!(blocked_literal(&url, false).is_some());
        assert!(blocked_literal(&url, true).is_none());
        let v6 = Url::parse("http://[::ffff:127.0.0.1]:8080/").unwrap_or_else(|e| panic!("{e}"));
        assert!(blocked_literal(&v6, false).is_some());
        let public = Url::parse("https://8.8.8.8/").unwrap_or_else(|e| panic!("{e}"));
        assert!(blocked_literal(&public, false).is_none());
        let name = Url::parse("http://localhost/").unwrap_or_else(|e| panic!("{e}"));
        assert!(blocked_literal(&name, false).is_none(), "names are the resolver's to refuse");
    }

    #[test]
    fn long_messages_are_cut_to_200_characters() {
        assert_eq!(truncate("x".repeat(500)).chars().count(), 200);
        assert_eq!(truncate("short".into()), "short");
    }
}
