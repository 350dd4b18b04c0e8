//! The event catalogue. Names are past tense; each type has a version that
//! grows when its shape changes. New fields are added with serde defaults so
//! every event ever stored still decodes.

use crate::access::{Scope, TokenName};
use crate::channel::{ChannelKind, ChannelName};
use crate::check::CheckSpec;
use crate::maintenance::Timing;
use crate::status_page::{IncidentStatus, PageGroup, Slug};
use crate::values::{
    DownPolicy, EmailAddress, FailuresBeforeDown, IntervalSecs, RegionName, TimeoutMs, WebsiteName, WebsiteUrl,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A fact that happened, with its payload. Serialized as
/// `{"type": "WebsiteAdded", "data": {...}}` inside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    WebsiteAdded(WebsiteAdded),
    WebsiteUpdated(WebsiteUpdated),
    WebsiteRemoved(WebsiteRemoved),
    RegionAdded(RegionAdded),
    RegionRemoved(RegionRemoved),
    CheckCompleted(CheckCompleted),
    SiteDown(SiteDown),
    SiteUp(SiteUp),
    TokenCreated(TokenCreated),
    TokenRevoked(TokenRevoked),
    ChannelAdded(ChannelAdded),
    ChannelUpdated(ChannelUpdated),
    ChannelDisabled(ChannelDisabled),
    ChannelRemoved(ChannelRemoved),
    WebsitePaused(WebsitePaused),
    WebsiteResumed(WebsiteResumed),
    MaintenanceScheduled(MaintenanceScheduled),
    MaintenanceUpdated(MaintenanceUpdated),
    MaintenanceEnded(MaintenanceEnded),
    MaintenanceRemoved(MaintenanceRemoved),
    CertificateExpiring(CertificateExpiring),
    StatusPageCreated(StatusPageCreated),
    StatusPageUpdated(StatusPageUpdated),
    StatusPageRemoved(StatusPageRemoved),
    StatusSubscriberAdded(StatusSubscriberAdded),
    StatusSubscriberConfirmed(StatusSubscriberConfirmed),
    StatusSubscriberRemoved(StatusSubscriberRemoved),
    IncidentUpdatePosted(IncidentUpdatePosted),
}

/// Every event type name this build knows, so a consumer can tell an event
/// from a newer build (skippable) from a broken one (not).
pub const KNOWN_TYPES: &[&str] = &[
    "WebsiteAdded",
    "WebsiteUpdated",
    "WebsiteRemoved",
    "RegionAdded",
    "RegionRemoved",
    "CheckCompleted",
    "SiteDown",
    "SiteUp",
    "TokenCreated",
    "TokenRevoked",
    "ChannelAdded",
    "ChannelUpdated",
    "ChannelDisabled",
    "ChannelRemoved",
    "WebsitePaused",
    "WebsiteResumed",
    "MaintenanceScheduled",
    "MaintenanceUpdated",
    "MaintenanceEnded",
    "MaintenanceRemoved",
    "CertificateExpiring",
    "StatusPageCreated",
    "StatusPageUpdated",
    "StatusPageRemoved",
    "StatusSubscriberAdded",
    "StatusSubscriberConfirmed",
    "StatusSubscriberRemoved",
    "IncidentUpdatePosted",
];

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::WebsiteAdded(_) => "WebsiteAdded",
            Event::WebsiteUpdated(_) => "WebsiteUpdated",
            Event::WebsiteRemoved(_) => "WebsiteRemoved",
            Event::RegionAdded(_) => "RegionAdded",
            Event::RegionRemoved(_) => "RegionRemoved",
            Event::CheckCompleted(_) => "CheckCompleted",
            Event::SiteDown(_) => "SiteDown",
            Event::SiteUp(_) => "SiteUp",
            Event::TokenCreated(_) => "TokenCreated",
            Event::TokenRevoked(_) => "TokenRevoked",
            Event::ChannelAdded(_) => "ChannelAdded",
            Event::ChannelUpdated(_) => "ChannelUpdated",
            Event::ChannelDisabled(_) => "ChannelDisabled",
            Event::ChannelRemoved(_) => "ChannelRemoved",
            Event::WebsitePaused(_) => "WebsitePaused",
            Event::WebsiteResumed(_) => "WebsiteResumed",
            Event::MaintenanceScheduled(_) => "MaintenanceScheduled",
            Event::MaintenanceUpdated(_) => "MaintenanceUpdated",
            Event::MaintenanceEnded(_) => "MaintenanceEnded",
            Event::MaintenanceRemoved(_) => "MaintenanceRemoved",
            Event::CertificateExpiring(_) => "CertificateExpiring",
            Event::StatusPageCreated(_) => "StatusPageCreated",
            Event::StatusPageUpdated(_) => "StatusPageUpdated",
            Event::StatusPageRemoved(_) => "StatusPageRemoved",
            Event::StatusSubscriberAdded(_) => "StatusSubscriberAdded",
            Event::StatusSubscriberConfirmed(_) => "StatusSubscriberConfirmed",
            Event::StatusSubscriberRemoved(_) => "StatusSubscriberRemoved",
            Event::IncidentUpdatePosted(_) => "IncidentUpdatePosted",
        }
    }

    /// The current schema version of this event type.
    pub fn version(&self) -> u32 {
        1
    }

    /// The id of the aggregate the event belongs to: a website id, or a
    /// region name for region events.
    pub fn aggregate_id(&self) -> String {
        match self {
            Event::WebsiteAdded(e) => e.website_id.to_string(),
            Event::WebsiteUpdated(e) => e.website_id.to_string(),
            Event::WebsiteRemoved(e) => e.website_id.to_string(),
            Event::RegionAdded(e) => e.region.to_string(),
            Event::RegionRemoved(e) => e.region.to_string(),
            Event::CheckCompleted(e) => e.website_id.to_string(),
            Event::SiteDown(e) => e.website_id.to_string(),
            Event::SiteUp(e) => e.website_id.to_string(),
            Event::TokenCreated(e) => e.token_id.to_string(),
            Event::TokenRevoked(e) => e.token_id.to_string(),
            Event::ChannelAdded(e) => e.channel_id.to_string(),
            Event::ChannelUpdated(e) => e.channel_id.to_string(),
            Event::ChannelDisabled(e) => e.channel_id.to_string(),
            Event::ChannelRemoved(e) => e.channel_id.to_string(),
            Event::WebsitePaused(e) => e.website_id.to_string(),
            Event::WebsiteResumed(e) => e.website_id.to_string(),
            Event::MaintenanceScheduled(e) => e.window_id.to_string(),
            Event::MaintenanceUpdated(e) => e.window_id.to_string(),
            Event::MaintenanceEnded(e) => e.window_id.to_string(),
            Event::MaintenanceRemoved(e) => e.window_id.to_string(),
            Event::CertificateExpiring(e) => e.website_id.to_string(),
            Event::StatusPageCreated(e) => e.page_id.to_string(),
            Event::StatusPageUpdated(e) => e.page_id.to_string(),
            Event::StatusPageRemoved(e) => e.page_id.to_string(),
            Event::StatusSubscriberAdded(e) => e.page_id.to_string(),
            Event::StatusSubscriberConfirmed(e) => e.page_id.to_string(),
            Event::StatusSubscriberRemoved(e) => e.page_id.to_string(),
            Event::IncidentUpdatePosted(e) => e.website_id.to_string(),
        }
    }

    /// The subject the event is published on (see [`crate::subject`]).
    pub fn subject(&self) -> String {
        use crate::subject;
        match self {
            Event::WebsiteAdded(e) => subject::website(e.website_id),
            Event::WebsiteUpdated(e) => subject::website(e.website_id),
            Event::WebsiteRemoved(e) => subject::website(e.website_id),
            Event::RegionAdded(e) => subject::region(&e.region),
            Event::RegionRemoved(e) => subject::region(&e.region),
            Event::CheckCompleted(e) => subject::check(&e.region, e.website_id),
            Event::SiteDown(e) => subject::incident(e.website_id),
            Event::SiteUp(e) => subject::incident(e.website_id),
            Event::TokenCreated(e) => subject::token(e.token_id),
            Event::TokenRevoked(e) => subject::token(e.token_id),
            Event::ChannelAdded(e) => subject::channel(e.channel_id),
            Event::ChannelUpdated(e) => subject::channel(e.channel_id),
            Event::ChannelDisabled(e) => subject::channel(e.channel_id),
            Event::ChannelRemoved(e) => subject::channel(e.channel_id),
            Event::WebsitePaused(e) => subject::website(e.website_id),
            Event::WebsiteResumed(e) => subject::website(e.website_id),
            Event::MaintenanceScheduled(e) => subject::maintenance(e.window_id),
            Event::MaintenanceUpdated(e) => subject::maintenance(e.window_id),
            Event::MaintenanceEnded(e) => subject::maintenance(e.window_id),
            Event::MaintenanceRemoved(e) => subject::maintenance(e.window_id),
            Event::CertificateExpiring(e) => subject::incident(e.website_id),
            Event::StatusPageCreated(e) => subject::status_page(e.page_id),
            Event::StatusPageUpdated(e) => subject::status_page(e.page_id),
            Event::StatusPageRemoved(e) => subject::status_page(e.page_id),
            Event::StatusSubscriberAdded(e) => subject::status_page(e.page_id),
            Event::StatusSubscriberConfirmed(e) => subject::status_page(e.page_id),
            Event::StatusSubscriberRemoved(e) => subject::status_page(e.page_id),
            Event::IncidentUpdatePosted(e) => subject::incident(e.website_id),
        }
    }
}

fn default_timeout() -> TimeoutMs {
    TimeoutMs::DEFAULT
}

/// A website was registered for monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebsiteAdded {
    pub website_id: Uuid,
    pub url: WebsiteUrl,
    pub name: WebsiteName,
    /// Regions it is checked from, sorted and without duplicates.
    pub regions: Vec<RegionName>,
    #[serde(default)]
    pub interval_seconds: IntervalSecs,
    #[serde(default = "default_timeout")]
    pub timeout_ms: TimeoutMs,
    #[serde(default)]
    pub notify_emails: Vec<EmailAddress>,
    /// Consecutive failed checks that confirm an outage; `None`: the
    /// detector's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures_before_down: Option<FailuresBeforeDown>,
    /// When the website counts as down; absent: any region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_policy: Option<DownPolicy>,
    /// Channels its alerts go to, besides `notify_emails` and the default
    /// channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_ids: Vec<Uuid>,
    /// How it is checked; absent: a GET, up on 2xx/3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
}

/// Some settings of a website changed; absent fields did not change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebsiteUpdated {
    pub website_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<WebsiteUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<WebsiteName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<RegionName>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<IntervalSecs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<TimeoutMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_emails: Option<Vec<EmailAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures_before_down: Option<FailuresBeforeDown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_policy: Option<DownPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_ids: Option<Vec<Uuid>>,
    /// The whole new check settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
}

/// A website is no longer monitored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebsiteRemoved {
    pub website_id: Uuid,
}

/// A region websites can be checked from was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegionAdded {
    pub region: RegionName,
}

/// A region was deleted: nothing is checked from it any more. Websites
/// checked from it were changed first (WebsiteUpdated without it, and
/// WebsitePaused for one it was the only region of); its history stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegionRemoved {
    pub region: RegionName,
}

/// An API token was created. Only the SHA-256 of its secret is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenCreated {
    pub token_id: Uuid,
    pub name: TokenName,
    pub scope: Scope,
    pub secret_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API token was revoked; it is refused from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenRevoked {
    pub token_id: Uuid,
}

/// A channel alerts can be sent to was configured. Its settings (URLs,
/// tokens, signing secrets) are only in `sealed`, encrypted; `target` is
/// the destination with its secret parts masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelAdded {
    pub channel_id: Uuid,
    pub name: ChannelName,
    pub kind: ChannelKind,
    pub target: String,
    pub sealed: String,
    /// Every website's alerts go to it.
    #[serde(default)]
    pub default: bool,
}

/// Some settings of a channel changed; absent fields did not change. A new
/// signing secret (rotation) is a new `sealed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelUpdated {
    pub channel_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ChannelName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The system stopped sending to a channel (its endpoint answered 410
/// Gone); a change with `enabled: true` turns it back on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelDisabled {
    pub channel_id: Uuid,
    pub reason: String,
}

/// A channel was deleted; websites that chose it no longer use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelRemoved {
    pub channel_id: Uuid,
}

/// A website is no longer checked until it is resumed; paused time does
/// not count towards its uptime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebsitePaused {
    pub website_id: Uuid,
}

/// A paused website is checked again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebsiteResumed {
    pub website_id: Uuid,
}

/// A maintenance window was planned: no outage alert during it, and its
/// time does not count against uptime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceScheduled {
    pub window_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub website_ids: Vec<Uuid>,
    #[serde(default)]
    pub all_websites: bool,
    pub timing: Timing,
}

/// Some settings of a maintenance window changed; absent fields did not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceUpdated {
    pub window_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_websites: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// The occurrence of a window that was on at `ended_at` ended there, early.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceEnded {
    pub window_id: Uuid,
    pub ended_at: DateTime<Utc>,
}

/// A maintenance window was deleted (its past no longer excludes time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceRemoved {
    pub window_id: Uuid,
}

/// A website's TLS certificate expires within `threshold_days`: announced
/// once per threshold (the website's `cert_expiry_days`, then 7 and 1) and
/// certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateExpiring {
    pub website_id: Uuid,
    /// The region whose check saw it first.
    pub region: RegionName,
    pub not_after: DateTime<Utc>,
    pub days_left: i64,
    pub threshold_days: u32,
}

/// A public status page was created (see [`crate::status_page`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusPageCreated {
    pub page_id: Uuid,
    pub slug: Slug,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub groups: Vec<PageGroup>,
}

/// Some settings of a status page changed; absent fields did not change,
/// an empty `description` or `logo_url` was cleared, `groups` is the whole
/// new list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusPageUpdated {
    pub page_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<Slug>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<PageGroup>>,
}

/// A status page was deleted; its subscribers are mailed no more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusPageRemoved {
    pub page_id: Uuid,
}

/// A visitor asked to be mailed about a page's incidents: unconfirmed until
/// they follow the link mailed to them. The tokens are only here hashed
/// (SHA-256, hex); the address is personal data, never shown publicly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusSubscriberAdded {
    pub page_id: Uuid,
    pub subscriber_id: Uuid,
    pub email: EmailAddress,
    pub confirm_hash: String,
    pub unsubscribe_hash: String,
}

/// A subscriber followed their confirmation link: they are mailed from now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusSubscriberConfirmed {
    pub page_id: Uuid,
    pub subscriber_id: Uuid,
}

/// A subscriber unsubscribed (or their page was removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusSubscriberRemoved {
    pub page_id: Uuid,
    pub subscriber_id: Uuid,
}

/// A team posted an update to a website's public incident (its id from
/// [`crate::status_page::incident_id`]), optionally giving it a title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentUpdatePosted {
    pub website_id: Uuid,
    pub incident_id: Uuid,
    pub update_id: Uuid,
    pub status: IncidentStatus,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Why a check failed, machine-readable. `Other` also absorbs causes added
/// by a newer build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    Dns,
    Connect,
    Tls,
    Timeout,
    HttpStatus,
    RedirectLoop,
    TooManyRedirects,
    Blocked,
    /// The keyword was not found (or, with `keyword_absent`, found).
    Keyword,
    #[serde(other)]
    Other,
}

impl FailureCause {
    /// The wire name (`http_status`, `timeout`, ...), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::HttpStatus => "http_status",
            Self::RedirectLoop => "redirect_loop",
            Self::TooManyRedirects => "too_many_redirects",
            Self::Blocked => "blocked",
            Self::Keyword => "keyword",
            Self::Other => "other",
        }
    }
}

/// One check of one website from one region finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckCompleted {
    pub website_id: Uuid,
    pub region: RegionName,
    /// When the check was due; with the website and region it identifies
    /// the check, so a re-published result is de-duplicated.
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Time to the response head, including DNS, connect and TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailureCause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the server's TLS certificate expires (HTTPS checks that got one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<DateTime<Utc>>,
}

/// A website was confirmed down from a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteDown {
    pub website_id: Uuid,
    pub region: RegionName,
    /// The first failed check of the outage, not the confirming one.
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub cause: Option<FailureCause>,
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A website recovered in a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteUp {
    pub website_id: Uuid,
    pub region: RegionName,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub downtime_seconds: i64,
}

impl CheckCompleted {
    /// The event id of the check of `website_id` from `region` due at
    /// `scheduled_at`: a UUID v7 whose time is the scheduled time and whose
    /// other bits are a hash of the three, so a check published twice (a
    /// reclaimed job) carries the same `Nats-Msg-Id` and is stored once.
    pub fn event_id(website_id: Uuid, region: &RegionName, scheduled_at: DateTime<Utc>) -> Uuid {
        let millis = scheduled_at.timestamp_millis();
        let name = format!("{website_id}/{region}/{millis}");
        let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
        let mut random = [0u8; 10];
        random.copy_from_slice(&hash.as_bytes()[6..16]);
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(millis).unwrap_or(0), &random).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_failure_cause_names_itself_as_serde_writes_it() {
        use FailureCause::*;
        for cause in [Dns, Connect, Tls, Timeout, HttpStatus, RedirectLoop, TooManyRedirects, Blocked, Keyword, Other] {
            assert_eq!(serde_json::to_value(cause).ok(), Some(serde_json::Value::from(cause.as_str())));
        }
        assert_eq!(HttpStatus.as_str(), "http_status");
    }

    #[test]
    fn a_check_event_id_is_a_v7_derived_from_website_region_and_schedule() {
        let website = Uuid::now_v7();
        let region = RegionName::parse("europe").unwrap_or_else(|e| panic!("{e}"));
        let other = RegionName::parse("asia").unwrap_or_else(|e| panic!("{e}"));
        let at = Utc.timestamp_millis_opt(1_700_000_000_123).single().unwrap_or_default();
        let id = CheckCompleted::event_id(website, &region, at);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id, CheckCompleted::event_id(website, &region, at));
        assert_ne!(id, CheckCompleted::event_id(website, &other, at));
        assert_ne!(id, CheckCompleted::event_id(Uuid::now_v7(), &region, at));
        let later = at + chrono::Duration::milliseconds(1);
        assert_ne!(id, CheckCompleted::event_id(website, &region, later));
        let (secs, nanos) = id.get_timestamp().map(|t| t.to_unix()).unwrap_or_default();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, 1_700_000_000_123);
    }
}
