//! How a website is checked, beyond its URL and timeout: the request
//! (method, headers, body), what counts as up (expected status codes, a
//! keyword that must or must not appear), redirects and TLS verification,
//! or a plain TCP connection. Every field has a default that is the
//! original behaviour (a GET, up on 2xx/3xx, redirects followed,
//! certificates verified), so events written before these settings existed
//! mean what they meant.
//!
//! Header values that are secrets (named like Authorization, Cookie, an API
//! key or token) are not kept here in clear: `sealed_headers` holds them
//! encrypted by the services, `headers` lists them without a value.

use crate::values::ValueError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const MAX_HEADERS: usize = 20;
pub const MAX_BODY_BYTES: usize = 8 * 1024;
pub const MAX_KEYWORD_CHARS: usize = 500;
pub const MAX_STATUS_RULES: usize = 20;

/// What kind of check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    #[default]
    Http,
    /// Up when a TCP connection to `host:port` opens within the timeout.
    Tcp,
}

/// The request method of an HTTP check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl HttpMethod {
    pub const ALL: [HttpMethod; 7] =
        [Self::Get, Self::Head, Self::Post, Self::Put, Self::Patch, Self::Delete, Self::Options];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        Self::ALL.into_iter().find(|m| m.as_str() == input).ok_or_else(|| {
            ValueError::new(format!(
                "method must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, not {input:?}"
            ))
        })
    }
}

/// A request header; `value` is absent for a secret one (see
/// `sealed_headers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Header {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Status codes that count as up: one code or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusRange {
    pub from: u16,
    pub to: u16,
}

impl StatusRange {
    /// `"200"` or `"200-299"`, codes 100 to 599.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let code = |s: &str| -> Result<u16, ValueError> {
            s.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c)).ok_or_else(|| {
                ValueError::new(format!(
                    "expected_status entries are codes 100-599 or ranges like 200-299, not {input:?}"
                ))
            })
        };
        let (from, to) = match input.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => (code(input)?, code(input)?),
        };
        if from > to {
            return Err(ValueError::new(format!("expected_status range {input:?} ends before it starts")));
        }
        Ok(Self { from, to })
    }

    pub fn contains(self, code: u16) -> bool {
        (self.from..=self.to).contains(&code)
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// How a website is checked. `Default` is the original behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckSpec {
    #[serde(default, skip_serializing_if = "is_default_kind")]
    pub kind: CheckKind,
    #[serde(default, skip_serializing_if = "is_default_method")]
    pub method: HttpMethod,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// The secret header values, sealed (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_headers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Codes that count as up; empty: any 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_status: Vec<StatusRange>,
    /// Text (or `/regex/`) that must appear in the first 1 MiB of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// The keyword must not appear instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyword_absent: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub follow_redirects: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub verify_tls: bool,
    /// Days before a certificate's expiry of the first warning (then 7 and
    /// 1); `None`: 14; 0: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expiry_days: Option<u32>,
}

fn is_default_kind(kind: &CheckKind) -> bool {
    *kind == CheckKind::Http
}

fn is_default_method(method: &HttpMethod) -> bool {
    *method == HttpMethod::Get
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            kind: CheckKind::Http,
            method: HttpMethod::Get,
            headers: vec![],
            sealed_headers: None,
            body: None,
            expected_status: vec![],
            keyword: None,
            keyword_absent: false,
            follow_redirects: true,
            verify_tls: true,
            cert_expiry_days: None,
        }
    }
}

impl CheckSpec {
    pub fn is_default(&self) -> bool {
        *self == CheckSpec::default()
    }

    /// Whether `code` counts as up.
    pub fn status_is_up(&self, code: u16) -> bool {
        if self.expected_status.is_empty() {
            (200..400).contains(&code)
        } else {
            self.expected_status.iter().any(|r| r.contains(code))
        }
    }

    /// The keyword as a matcher: `/.../` is a regular expression, anything
    /// else plain text.
    pub fn keyword_matcher(&self) -> Option<Result<Keyword, ValueError>> {
        self.keyword.as_deref().map(Keyword::parse)
    }
}

/// A keyword to look for in a body.
#[derive(Debug, Clone)]
pub enum Keyword {
    Text(String),
    Regex(regex::Regex),
}

impl Keyword {
    pub fn parse(input: &str) -> Result<Keyword, ValueError> {
        if input.is_empty() || input.chars().count() > MAX_KEYWORD_CHARS {
            return Err(ValueError::new(format!("keyword must be 1 to {MAX_KEYWORD_CHARS} characters")));
        }
        match input.strip_prefix('/').and_then(|rest| rest.strip_suffix('/')) {
            Some(pattern) if !pattern.is_empty() => regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .map(Keyword::Regex)
                .map_err(|e| ValueError::new(format!("keyword is not a valid regular expression: {e}"))),
            _ => Ok(Keyword::Text(input.to_owned())),
        }
    }

    pub fn found_in(&self, body: &str) -> bool {
        match self {
            Keyword::Text(text) => body.contains(text.as_str()),
            Keyword::Regex(regex) => regex.is_match(body),
        }
    }
}

/// Whether a header's value is a secret, by its name.
pub fn is_secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["authorization", "proxy-authorization", "cookie", "set-cookie"].contains(&lower.as_str())
        || ["token", "secret", "key", "password", "auth", "session", "signature"].iter().any(|w| lower.contains(w))
}

/// A header name as HTTP allows it (a token) and a value without CR, LF
/// or NUL.
pub fn check_header(name: &str, value: &str) -> Result<(), ValueError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > 100 || !name.chars().all(token) {
        return Err(ValueError::new(format!("header name {name:?} is not a valid HTTP header name")));
    }
    if value.len() > 4096 || value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(ValueError::new(format!(
            "header {name} must have a value of at most 4096 characters without CR, LF or NUL"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_event_without_settings_means_the_original_check() {
        let old: CheckSpec = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(old.is_default());
        assert!(old.follow_redirects && old.verify_tls);
        assert_eq!(serde_json::to_string(&CheckSpec::default()).ok().as_deref(), Some("{}"));
        assert!(old.status_is_up(200) && old.status_is_up(301) && !old.status_is_up(404));
    }

    #[test]
    fn expected_status_lists_codes_and_ranges() {
        let spec = CheckSpec {
            expected_status: vec![
                StatusRange::parse("200-299").unwrap_or_else(|e| panic!("{e}")),
                StatusRange::parse("404").unwrap_or_else(|e| panic!("{e}")),
            ],
            ..Default::default()
        };
        assert!(spec.status_is_up(204) && spec.status_is_up(404));
        assert!(!spec.status_is_up(301));
        for bad in ["99", "600", "300-200", "abc", "200-"] {
            assert!(StatusRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_keyword_is_text_or_a_slashed_regex() {
        assert!(Keyword::parse("Welcome").is_ok_and(|k| k.found_in("<h1>Welcome</h1>")));
        assert!(Keyword::parse("/wel+come/").is_ok_and(|k| k.found_in("wellllcome")));
        assert!(Keyword::parse("/(unclosed/").is_err());
        assert!(Keyword::parse("").is_err());
    }

    #[test]
    fn secret_headers_are_recognised_and_bad_headers_refused() {
        for name in ["Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "Client-Secret"] {
            assert!(is_secret_header(name), "{name}");
        }
        assert!(!is_secret_header("Accept"));
        assert!(check_header("X-Test", "ok").is_ok());
        assert!(check_header("Bad Name", "x").is_err());
        assert!(check_header("X-Test", "a\r\nInjected: yes").is_err());
    }
}
