//! Validated value types. Each has a `parse` that is the only way to build
//! one from user input, so a value that exists is a valid one.
//!
//! Deserialization is transparent and does not re-validate: events already
//! stored stay readable even if a rule is tightened later.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value was refused, phrased for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValueError {
    pub message: String,
}

impl ValueError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

macro_rules! string_value {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_value!(WebsiteUrl);
string_value!(WebsiteName);
string_value!(RegionName);
string_value!(EmailAddress);

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_REGION_CHARS: usize = 32;

impl WebsiteUrl {
    /// An absolute `http` or `https` URL with a host, at most 2048 bytes.
    /// The stored form is the normalised one (`https://Example.com` becomes
    /// `https://example.com/`).
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ValueError::new("url must not be empty"));
        }
        if input.len() > MAX_URL_LEN {
            return Err(ValueError::new(format!("url must be at most {MAX_URL_LEN} characters")));
        }
        let url = url::Url::parse(input).map_err(|e| ValueError::new(format!("url is not an absolute URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ValueError::new(format!("url must use http or https, not {}", url.scheme())));
        }
        match url.host_str() {
            None | Some("") => return Err(ValueError::new("url must name a host")),
            Some(_) => {}
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ValueError::new("url must not contain credentials"));
        }
        // Normalising percent-encodes some characters, so the stored form
        // can be longer than what was typed: it is the one that must fit.
        let normalised = url.to_string();
        if normalised.len() > MAX_URL_LEN {
            return Err(ValueError::new(format!("url must be at most {MAX_URL_LEN} characters once normalised")));
        }
        Ok(Self(normalised))
    }
}

impl WebsiteUrl {
    /// `tcp://host:port` (a port other than 0, nothing after it), for TCP
    /// checks.
    pub fn parse_tcp(input: &str) -> Result<Self, ValueError> {
        let input = input.trim();
        if input.len() > MAX_URL_LEN {
            return Err(ValueError::new(format!("url must be at most {MAX_URL_LEN} characters")));
        }
        let url = url::Url::parse(input).map_err(|e| ValueError::new(format!("url is not an absolute URL: {e}")))?;
        if url.scheme() != "tcp" {
            return Err(ValueError::new("a TCP check's url is tcp://host:port"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ValueError::new("url must name a host"));
        }
        match url.port() {
            None | Some(0) => return Err(ValueError::new("a TCP check's url needs a port from 1 to 65535")),
            Some(_) => {}
        }
        if !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(ValueError::new("a TCP check's url is tcp://host:port, with nothing after the port"));
        }
        Ok(Self(format!("tcp://{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or_default())))
    }

    pub fn is_tcp(&self) -> bool {
        self.0.starts_with("tcp://")
    }
}

/// A name for people, the rule of every name in the system (websites,
/// tokens, channels, maintenance windows): 1 to 100 characters after
/// trimming, no control characters. Returns it trimmed.
pub fn name_text(input: &str) -> Result<String, ValueError> {
    let name = input.trim();
    if name.is_empty() {
        return Err(ValueError::new("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ValueError::new(format!("name must be at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ValueError::new("name must not contain control characters"));
    }
    Ok(name.to_owned())
}

impl WebsiteName {
    /// See [`name_text`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        name_text(input).map(Self)
    }
}

impl RegionName {
    /// 1 to 32 characters of `a-z`, `0-9` and `-`, starting with a letter or
    /// digit. The name is a NATS subject token and a Redis key part, so
    /// nothing else is allowed.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let rule = "region name must be 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit";
        let valid = !input.is_empty()
            && input.len() <= MAX_REGION_CHARS
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !input.starts_with('-');
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(ValueError::new(rule))
        }
    }
}

impl EmailAddress {
    /// A plain `local@domain` address: no spaces, one `@`, a dotted domain,
    /// at most 254 characters. Deliverability is the mail server's business.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let address = input.trim();
        let invalid = || ValueError::new(format!("'{address}' is not an email address"));
        if address.len() > 254 || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = address.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(address.to_owned()))
    }
}

/// How often a website is checked, in seconds: 10 to 86400 (one day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct IntervalSecs(u32);

impl IntervalSecs {
    pub const MIN: u32 = 10;
    pub const MAX: u32 = 86_400;
    pub const DEFAULT: Self = Self(180);

    pub fn parse(seconds: i64) -> Result<Self, ValueError> {
        u32::try_from(seconds)
            .ok()
            .filter(|s| (Self::MIN..=Self::MAX).contains(s))
            .map(Self)
            .ok_or_else(|| ValueError::new(format!("interval_seconds must be between {} and {}", Self::MIN, Self::MAX)))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for IntervalSecs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How long one check may take, in milliseconds: 100 to 60000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct TimeoutMs(u32);

impl TimeoutMs {
    pub const MIN: u32 = 100;
    pub const MAX: u32 = 60_000;
    pub const DEFAULT: Self = Self(10_000);

    pub fn parse(millis: i64) -> Result<Self, ValueError> {
        u32::try_from(millis)
            .ok()
            .filter(|m| (Self::MIN..=Self::MAX).contains(m))
            .map(Self)
            .ok_or_else(|| ValueError::new(format!("timeout_ms must be between {} and {}", Self::MIN, Self::MAX)))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for TimeoutMs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// When a website checked from several regions counts as down: while any
/// region is down (the default), while more than half are, or only while
/// all are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DownPolicy {
    #[default]
    Any,
    Majority,
    All,
}

impl DownPolicy {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input.trim() {
            "any" => Ok(Self::Any),
            "majority" => Ok(Self::Majority),
            "all" => Ok(Self::All),
            other => Err(ValueError::new(format!("down_policy must be any, majority or all, not {other:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Majority => "majority",
            Self::All => "all",
        }
    }

    /// How many of `regions` regions must be down for the website to be.
    pub fn regions_needed(self, regions: usize) -> usize {
        match self {
            Self::Any => 1,
            Self::Majority => regions / 2 + 1,
            Self::All => regions.max(1),
        }
    }

    /// Whether `down` of `regions` regions being down makes the website down.
    pub fn is_down(self, down: usize, regions: usize) -> bool {
        down > 0 && down >= self.regions_needed(regions)
    }
}

/// How many consecutive failed checks confirm an outage: 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct FailuresBeforeDown(u32);

impl FailuresBeforeDown {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 10;

    pub fn parse(count: i64) -> Result<Self, ValueError> {
        u32::try_from(count).ok().filter(|c| (Self::MIN..=Self::MAX).contains(c)).map(Self).ok_or_else(|| {
            ValueError::new(format!("failures_before_down must be between {} and {}", Self::MIN, Self::MAX))
        })
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_url_that_grows_past_the_limit_when_normalised_is_refused() {
        let url = format!("https://example.com/{}", "a ".repeat((MAX_URL_LEN - 40) / 2));
        assert!(url.len() <= MAX_URL_LEN);
        assert!(WebsiteUrl::parse(&url).is_err(), "spaces become %20 and push it past the limit");
        assert!(WebsiteUrl::parse("https://example.com/a b").is_ok());
    }

    use super::*;

    #[test]
    fn an_absolute_http_or_https_url_is_accepted_and_normalised() {
        assert_eq!(
            WebsiteUrl::parse("https://Google.com").map(|u| u.to_string()),
            Ok("https://google.com/".to_owned())
        );
        assert!(WebsiteUrl::parse("http://127.0.0.1:8080/health?x=1").is_ok());
        assert!(WebsiteUrl::parse("  https://example.com/path  ").is_ok());
    }

    #[test]
    fn a_url_that_is_not_absolute_http_is_refused() {
        for bad in [
            "",
            "google.com",
            "/relative",
            "ftp://example.com",
            "javascript:alert(1)",
            "mailto:a@b.c",
            "https://",
            "http://user:pw@example.com",
            "file:///etc/passwd",
        ] {
            assert!(WebsiteUrl::parse(bad).is_err(), "{bad} was accepted");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(WebsiteUrl::parse(&long).is_err());
    }

    #[test]
    fn a_name_is_trimmed_and_bounded() {
        assert_eq!(WebsiteName::parse("  google ").map(|n| n.to_string()), Ok("google".into()));
        assert!(WebsiteName::parse("   ").is_err());
        assert!(WebsiteName::parse("a\u{0}b").is_err());
        assert!(WebsiteName::parse(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(WebsiteName::parse(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn a_region_name_is_a_safe_subject_token() {
        for good in ["local", "europe", "us-east-1", "0"] {
            assert!(RegionName::parse(good).is_ok(), "{good} was refused");
        }
        for bad in ["", "Europe", "eu.west", "eu west", "-eu", "eu*", "eu>", &"a".repeat(33)] {
            assert!(RegionName::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn interval_and_timeout_are_bounded() {
        assert_eq!(IntervalSecs::parse(10).map(IntervalSecs::get), Ok(10));
        assert_eq!(IntervalSecs::parse(86_400).map(IntervalSecs::get), Ok(86_400));
        for bad in [9, 86_401, 0, -1, i64::MAX] {
            assert!(IntervalSecs::parse(bad).is_err());
        }
        assert!(TimeoutMs::parse(100).is_ok());
        assert!(TimeoutMs::parse(99).is_err());
        assert!(TimeoutMs::parse(60_001).is_err());
        assert_eq!(FailuresBeforeDown::parse(3).map(FailuresBeforeDown::get), Ok(3));
        for bad in [0, 11, -1] {
            assert!(FailuresBeforeDown::parse(bad).is_err());
        }
    }

    #[test]
    fn a_down_policy_counts_the_regions_it_needs() {
        assert!(DownPolicy::Any.is_down(1, 3));
        assert!(!DownPolicy::Any.is_down(0, 3));
        assert!(!DownPolicy::Majority.is_down(1, 3));
        assert!(DownPolicy::Majority.is_down(2, 3));
        assert!(!DownPolicy::Majority.is_down(1, 2), "half is not a majority");
        assert!(DownPolicy::Majority.is_down(1, 1));
        assert!(!DownPolicy::All.is_down(2, 3));
        assert!(DownPolicy::All.is_down(3, 3));
        assert_eq!(DownPolicy::parse("majority"), Ok(DownPolicy::Majority));
        assert!(DownPolicy::parse("most").is_err());
    }

    #[test]
    fn an_email_address_needs_a_local_part_and_a_dotted_domain() {
        assert!(EmailAddress::parse("ops@example.com").is_ok());
        for bad in ["", "ops", "ops@", "@example.com", "ops@example", "a b@example.com", "a@b@c.com", "a@.com"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
