//! Which targets checks may reach: the SSRF policy shared by the workers
//! (enforced at connect time) and the API (which refuses a website the
//! workers would refuse, so the user hears it at once). Anything but a
//! globally routable unicast address is refused: loopback, private,
//! link-local (the cloud metadata address among them), CGNAT, unique-local,
//! multicast, reserved, documentation ranges, and IPv4 embedded in IPv6
//! forms of those.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use url::{Host, Url};

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
pub fn blocked_literal(url: &Url, allow_private: bool) -> Option<IpAddr> {
    if allow_private {
        return None;
    }
    let ip = match url.host()? {
        Host::Ipv4(ip) => IpAddr::V4(ip),
        Host::Ipv6(ip) => IpAddr::V6(ip),
        Host::Domain(_) => return None,
    };
    is_blocked(ip).then_some(ip)
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

/// The target is an address checks must not reach.
#[derive(Debug, thiserror::Error)]
#[error("{0} is a private or reserved address")]
pub struct Blocked(pub String);

/// The host name could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("dns: {0}")]
pub struct DnsFailure(pub String);

/// A resolver for reqwest that drops the addresses [`is_blocked`] refuses
/// (all of them when private targets are allowed), so the guard holds at
/// connect time, also for redirects and DNS rebinding.
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }
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
}
