//! `/websites`: register, list, show, change and remove websites. Commands
//! are decided against the Postgres projection and published as events with
//! the website's last stream sequence as the expected one; a conflict is
//! re-decided against the newer state a few times, then answered 409.
//!
//! The bodies' schemas state what the value types accept (patterns, bounds,
//! list sizes), so a client (or a fuzzer) can tell a valid request from the
//! description alone; only facts that need the projection (does a region
//! exist, is a name taken) are left to the answer.

use super::body::{parse_id, present, JsonBody, RegionQuery, Timestamp, Validation, REGION_PATTERN};
use super::error::{ApiError, Refusal, BAD_REQUEST, BODY, CONFLICT, INVALID, NOT_FOUND, UNAVAILABLE};
use super::paging;
use super::ApiState;
use crate::access::middleware::Caller;
use events::check::{self, is_secret_header, CheckKind, CheckSpec, Header, HttpMethod, StatusRange};
use events::values::MAX_URL_LEN;
use events::website::{self, AddWebsite, ChangeWebsite, Website, WebsiteCommand};
use events::{
    DownPolicy, EmailAddress, FailuresBeforeDown, IntervalSecs, RegionName, TimeoutMs, ValueError, WebsiteName,
    WebsiteUrl,
};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use projections::overview::Sort;
use projections::postgres;
use regex::Regex;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::LazyLock;
use uuid::Uuid;

/// Commands re-decided after a concurrent write before answering 409.
const MAX_ATTEMPTS: usize = 3;
const MAX_REGIONS: usize = 64;
const MAX_EMAILS: usize = 20;
const MAX_CHANNELS: usize = 20;

#[derive(Tags)]
pub enum Tag {
    /// Websites to check
    Websites,
}

/// A website to register. `url` and `name` are trimmed; duplicate
/// `regions` and `notify_emails` are dropped.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CreateWebsite {
    /// An absolute http(s) URL with a host name or IP address, at most 2047
    /// characters, without characters that would be percent-encoded.
    #[oai(validator(
        max_length = 2047,
        pattern = r"^(https?|tcp)://(([A-Za-z0-9][A-Za-z0-9-]*\.)*[A-Za-z][A-Za-z0-9-]*|(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|\[(([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,7}:|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}|:((:[0-9A-Fa-f]{1,4}){1,7}|:))\])(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#][!#$%&()*+,./0-9:;=?@A-Z\[\\\]_a-z~-]*)?$"
    ))]
    url: String,
    /// 1 to 100 characters after trimming, no control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    name: String,
    /// Regions to check from (they must exist); default: every region.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_items = 1, max_items = 64, pattern = "^[a-z0-9][a-z0-9-]{0,31}$"))]
    regions: Option<Vec<String>>,
    /// Seconds between checks; default 180.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "10"), maximum(value = "86400")))]
    interval_seconds: Option<i64>,
    /// How long a check waits for the response; default 10000.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "100"), maximum(value = "60000")))]
    timeout_ms: Option<i64>,
    /// Who is emailed when the website goes down and comes back.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_items = 20,
        max_length = 254,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f@]{1,64}@[^\s\x00-\x1f\x7f-\x9f@.-]([^\s\x00-\x1f\x7f-\x9f@.]*[^\s\x00-\x1f\x7f-\x9f@.-])?(\.[^\s\x00-\x1f\x7f-\x9f@.-]([^\s\x00-\x1f\x7f-\x9f@.]*[^\s\x00-\x1f\x7f-\x9f@.-])?)+$"
    ))]
    notify_emails: Option<Vec<String>>,
    /// Consecutive failed checks that confirm an outage; default: the
    /// detector's (`DETECTOR_DOWN_AFTER`).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "1"), maximum(value = "10")))]
    failures_before_down: Option<i64>,
    /// When the website counts as down: `any` region down (the default),
    /// a `majority`, or `all`.
    #[serde(default, deserialize_with = "present")]
    down_policy: Option<PolicyName>,
    /// Channels its alerts go to besides `notify_emails` and the default
    /// channels (see `/channels`); each must exist.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_items = 20,
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    channel_ids: Option<Vec<String>>,
    /// `http` (the default) or `tcp` (up when a connection to
    /// `tcp://host:port` opens; inferred from such a url).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(pattern = "^(http|tcp)$"))]
    kind: Option<String>,
    /// The request method (default GET).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(pattern = "^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$"))]
    method: Option<String>,
    /// Request headers, name to value (up to 20). Values of headers named
    /// like a secret (Authorization, Cookie, X-Api-Key, ...token...) are
    /// stored sealed and shown as `***`; sending `***` back keeps them.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_properties = 20))]
    headers: Option<BTreeMap<String, String>>,
    /// The request body (at most 8 KiB).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 8192))]
    body: Option<String>,
    /// Status codes that count as up, as codes and ranges
    /// (`["200-299", "301"]`); default: any 2xx or 3xx.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_items = 20, pattern = "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"))]
    expected_status: Option<Vec<String>>,
    /// Text that must appear in the first 1 MiB of the body; `/.../` is a
    /// regular expression. Failing is cause `keyword`.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_length = 1, max_length = 500))]
    keyword: Option<String>,
    /// The keyword must not appear instead (default false).
    #[serde(default, deserialize_with = "present")]
    keyword_absent: Option<bool>,
    /// Follow redirects (default true); not following, a 3xx is up unless
    /// `expected_status` says otherwise.
    #[serde(default, deserialize_with = "present")]
    follow_redirects: Option<bool>,
    /// Verify the TLS certificate (default true); a bad one is cause `tls`.
    #[serde(default, deserialize_with = "present")]
    verify_tls: Option<bool>,
    /// Days before the certificate expires of the first warning (then 7
    /// and 1 days; default 14; 0: no warnings).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "0"), maximum(value = "365")))]
    cert_expiry_days: Option<i64>,
}

/// The fields to change; absent fields are left as they are (`null` is
/// refused). An empty object changes nothing.
#[derive(Debug, Default, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct UpdateWebsite {
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_length = 2047,
        pattern = r"^(https?|tcp)://(([A-Za-z0-9][A-Za-z0-9-]*\.)*[A-Za-z][A-Za-z0-9-]*|(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|\[(([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,7}:|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}|:((:[0-9A-Fa-f]{1,4}){1,7}|:))\])(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#][!#$%&()*+,./0-9:;=?@A-Z\[\\\]_a-z~-]*)?$"
    ))]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_items = 1, max_items = 64, pattern = "^[a-z0-9][a-z0-9-]{0,31}$"))]
    regions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "10"), maximum(value = "86400")))]
    interval_seconds: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "100"), maximum(value = "60000")))]
    timeout_ms: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_items = 20,
        max_length = 254,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f@]{1,64}@[^\s\x00-\x1f\x7f-\x9f@.-]([^\s\x00-\x1f\x7f-\x9f@.]*[^\s\x00-\x1f\x7f-\x9f@.-])?(\.[^\s\x00-\x1f\x7f-\x9f@.-]([^\s\x00-\x1f\x7f-\x9f@.]*[^\s\x00-\x1f\x7f-\x9f@.-])?)+$"
    ))]
    notify_emails: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "1"), maximum(value = "10")))]
    failures_before_down: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    down_policy: Option<PolicyName>,
    /// Channels its alerts go to besides `notify_emails` and the default
    /// channels (see `/channels`); each must exist.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_items = 20,
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    channel_ids: Option<Vec<String>>,
    /// `http` (the default) or `tcp` (up when a connection to
    /// `tcp://host:port` opens; inferred from such a url).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(pattern = "^(http|tcp)$"))]
    kind: Option<String>,
    /// The request method (default GET).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(pattern = "^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$"))]
    method: Option<String>,
    /// Request headers, name to value (up to 20). Values of headers named
    /// like a secret (Authorization, Cookie, X-Api-Key, ...token...) are
    /// stored sealed and shown as `***`; sending `***` back keeps them.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_properties = 20))]
    headers: Option<BTreeMap<String, String>>,
    /// The request body (at most 8 KiB).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 8192))]
    body: Option<String>,
    /// Status codes that count as up, as codes and ranges
    /// (`["200-299", "301"]`); default: any 2xx or 3xx.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_items = 20, pattern = "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"))]
    expected_status: Option<Vec<String>>,
    /// Text that must appear in the first 1 MiB of the body; `/.../` is a
    /// regular expression. Failing is cause `keyword`.
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_length = 1, max_length = 500))]
    keyword: Option<String>,
    /// The keyword must not appear instead (default false).
    #[serde(default, deserialize_with = "present")]
    keyword_absent: Option<bool>,
    /// Follow redirects (default true); not following, a 3xx is up unless
    /// `expected_status` says otherwise.
    #[serde(default, deserialize_with = "present")]
    follow_redirects: Option<bool>,
    /// Verify the TLS certificate (default true); a bad one is cause `tls`.
    #[serde(default, deserialize_with = "present")]
    verify_tls: Option<bool>,
    /// Days before the certificate expires of the first warning (then 7
    /// and 1 days; default 14; 0: no warnings).
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "0"), maximum(value = "365")))]
    cert_expiry_days: Option<i64>,
}

/// A `down_policy` as sent: documented as the enum it is, parsed (and
/// refused with 422) by `DownPolicy::parse`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct PolicyName(String);

impl Type for PolicyName {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "DownPolicy".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            enum_items: ["any", "majority", "all"].into_iter().map(Into::into).collect(),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

// Bodies are decoded with serde (`JsonBody`); these two only complete the
// traits poem-openapi's `Object` derive asks of a field type.
impl ParseFromJSON for PolicyName {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(s)) => Ok(PolicyName(s)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ToJSON for PolicyName {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// A registered website.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename = "Website")]
pub struct WebsiteView {
    pub id: Uuid,
    /// Normalised (`https://Example.com` is `https://example.com/`).
    pub url: String,
    pub name: String,
    /// Sorted, without duplicates.
    pub regions: Vec<String>,
    pub interval_seconds: u32,
    pub timeout_ms: u32,
    pub notify_emails: Vec<String>,
    /// `null`: the detector's default.
    #[oai(nullable)]
    pub failures_before_down: Option<u32>,
    pub down_policy: PolicyName,
    /// Channels its alerts go to (see `/channels`).
    pub channel_ids: Vec<Uuid>,
    /// Not checked until resumed (`POST /websites/:id/resume`).
    pub paused: bool,
    /// `http` or `tcp`.
    pub kind: String,
    pub method: String,
    /// Secret values shown as `***`.
    pub headers: BTreeMap<String, String>,
    #[oai(skip_serializing_if_is_none)]
    pub body: Option<String>,
    /// Empty: any 2xx or 3xx.
    pub expected_status: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    pub keyword: Option<String>,
    pub keyword_absent: bool,
    pub follow_redirects: bool,
    pub verify_tls: bool,
    /// Days before expiry of the first certificate warning (0: none).
    pub cert_expiry_days: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Website> for WebsiteView {
    fn from(w: Website) -> Self {
        WebsiteView {
            id: w.id,
            url: w.url.to_string(),
            name: w.name.to_string(),
            regions: w.regions.iter().map(ToString::to_string).collect(),
            interval_seconds: w.interval_seconds.get(),
            timeout_ms: w.timeout_ms.get(),
            notify_emails: w.notify_emails.iter().map(ToString::to_string).collect(),
            failures_before_down: w.failures_before_down.map(FailuresBeforeDown::get),
            down_policy: w.down_policy.into(),
            channel_ids: w.channel_ids,
            paused: w.paused,
            kind: match w.check.kind {
                CheckKind::Http => "http".into(),
                CheckKind::Tcp => "tcp".into(),
            },
            method: w.check.method.as_str().into(),
            headers: w
                .check
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone().unwrap_or_else(|| MASK.into())))
                .collect(),
            body: w.check.body.clone(),
            expected_status: w.check.expected_status.iter().map(ToString::to_string).collect(),
            keyword: w.check.keyword.clone(),
            keyword_absent: w.check.keyword_absent,
            follow_redirects: w.check.follow_redirects,
            verify_tls: w.check.verify_tls,
            cert_expiry_days: w.check.cert_expiry_days.unwrap_or(events::certificate::DEFAULT_EXPIRY_DAYS),
            created_at: w.created_at.into(),
            updated_at: w.updated_at.into(),
        }
    }
}

impl PartialEq for PolicyName {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

#[derive(ApiResponse)]
pub enum Created {
    /// The website as registered.
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Created(Json<WebsiteView>),
}

#[derive(ApiResponse)]
pub enum Removed {
    /// The website was removed.
    #[oai(status = 204)]
    Removed,
}

pub struct WebsitesApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Websites")]
impl WebsitesApi {
    /// Register a website
    #[oai(path = "/websites", method = "post", operation_id = "create_website")]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<CreateWebsite>,
    ) -> Result<Created, Refusal<{ BODY | CONFLICT | UNAVAILABLE }>> {
        let input = body.0;
        let state = &self.state;
        let mut check = Validation::default();
        let url = check.documented("url", &input.url, &URL, parse_url(&input.url));
        let name = check.documented("name", &input.name, &NAME, WebsiteName::parse(&input.name));
        let regions = input.regions.map(|r| check.regions(r));
        let interval = input.interval_seconds.map(|s| check.field("interval_seconds", IntervalSecs::parse(s)));
        let timeout = input.timeout_ms.map(|t| check.field("timeout_ms", TimeoutMs::parse(t)));
        let emails = input.notify_emails.map(|e| check.emails(e));
        let failures =
            input.failures_before_down.map(|f| check.field("failures_before_down", FailuresBeforeDown::parse(f)));
        let policy = input.down_policy.map(|p| check.documented("down_policy", &p.0, &POLICY, DownPolicy::parse(&p.0)));
        let channel_ids = input.channel_ids.map(|c| check.channel_ids(c));
        let given = CheckInput {
            kind: input.kind,
            method: input.method,
            headers: input.headers,
            body: input.body,
            expected_status: input.expected_status,
            keyword: input.keyword,
            keyword_absent: input.keyword_absent,
            follow_redirects: input.follow_redirects,
            verify_tls: input.verify_tls,
            cert_expiry_days: input.cert_expiry_days,
        };
        let spec = url.as_ref().and_then(|url| check.check_spec(given, url.is_tcp(), None));
        check.finish()?;
        let channel_ids = channel_ids.flatten().unwrap_or_default();
        known_channels(state, &channel_ids).await?;
        let spec = match spec {
            Some(spec) => seal_headers(state, spec, None).await?,
            None => CheckSpec::default(),
        };
        if let Some(url) = &url {
            refuse_private(state, url).await?;
        }
        let (Some(url), Some(name)) = (url, name) else {
            return Err(ApiError::Internal("validated fields missing".into()).into());
        };
        let add = AddWebsite {
            id: Uuid::now_v7(),
            url,
            name,
            regions: regions.flatten(),
            interval_seconds: interval.flatten().unwrap_or_default(),
            timeout_ms: timeout.flatten().unwrap_or_default(),
            notify_emails: emails.flatten().unwrap_or_default(),
            failures_before_down: failures.flatten(),
            down_policy: policy.flatten().unwrap_or_default(),
            channel_ids,
            check: spec,
        };
        let id = add.id;
        match execute(state, &caller, id, WebsiteCommand::Add(add)).await? {
            Some(website) => Ok(Created::Created(Json(website.into()))),
            None => Err(ApiError::Internal(format!("website {id} missing after WebsiteAdded")).into()),
        }
    }

    /// List websites, a page at a time
    ///
    /// Oldest first by default. Pages hold `limit` websites (up to 500
    /// without it); the next page's address is in the `Link` header
    /// (`rel="next"`), absent on the last page.
    #[oai(path = "/websites", method = "get", operation_id = "list_websites")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        /// Websites per page, 1 to 500 (default: 500).
        limit: Query<Option<paging::Limit>>,
        /// Where the page starts: the cursor of the `Link` header of the
        /// previous page (its other parameters unchanged).
        cursor: Query<Option<paging::CursorQuery>>,
        /// Only websites with this status (`paused` matches none: websites
        /// cannot be paused yet).
        status: Query<Option<paging::StatusQuery>>,
        /// Only websites checked from this region.
        region: Query<Option<RegionQuery>>,
        /// Only websites whose name or URL contains this, case-insensitive.
        q: Query<Option<paging::SearchQuery>>,
        /// `created` (the oldest first; the default), `name`, `status` (down,
        /// then pending, then up), `last_change` (the most recent first) or
        /// `uptime_24h` (the lowest first).
        sort: Query<Option<paging::SortQuery>>,
    ) -> Result<paging::Page<WebsiteView>, Refusal<{ BAD_REQUEST | INVALID | UNAVAILABLE }>> {
        let raw = paging::ListQuery {
            limit: limit.0,
            cursor: cursor.0.as_ref().map(|c| c.as_str()),
            status: status.0.as_ref().map(|s| s.as_str()),
            region: region.0.as_ref(),
            q: q.0.as_ref().map(|q| q.as_str()),
            sort: sort.0.as_ref().map(|s| s.as_str()),
        };
        let listing = paging::Listing::parse(&self.state, raw, Sort::Created).await?;
        let (entries, link) = listing.fetch(&self.state, "/websites").await?;
        Ok(paging::Page::Ok(Json(entries.into_iter().map(|e| e.website.into()).collect()), link))
    }

    /// Show a website
    #[oai(path = "/websites/:id", method = "get", operation_id = "show_website")]
    async fn show(&self, id: Path<String>) -> Result<Json<WebsiteView>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let id = parse_id(&id, "website")?;
        match postgres::website(&self.state.pool, id).await? {
            Some(stored) => Ok(Json(stored.website.into())),
            None => Err(ApiError::NotFound(format!("website {id} does not exist")).into()),
        }
    }

    /// Change some fields of a website
    #[oai(path = "/websites/:id", method = "patch", operation_id = "update_website")]
    async fn update(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
        body: JsonBody<UpdateWebsite>,
    ) -> Result<Json<WebsiteView>, Refusal<{ BODY | NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let state = &self.state;
        let id = parse_id(&id, "website")?;
        let input = body.0;
        let mut check = Validation::default();
        let change = ChangeWebsite {
            url: input.url.and_then(|u| check.documented("url", &u, &URL, parse_url(&u))),
            name: input.name.and_then(|n| check.documented("name", &n, &NAME, WebsiteName::parse(&n))),
            regions: input.regions.and_then(|r| check.regions(r)),
            interval_seconds: input
                .interval_seconds
                .and_then(|s| check.field("interval_seconds", IntervalSecs::parse(s))),
            timeout_ms: input.timeout_ms.and_then(|t| check.field("timeout_ms", TimeoutMs::parse(t))),
            notify_emails: input.notify_emails.and_then(|e| check.emails(e)),
            failures_before_down: input
                .failures_before_down
                .and_then(|f| check.field("failures_before_down", FailuresBeforeDown::parse(f))),
            down_policy: input
                .down_policy
                .and_then(|p| check.documented("down_policy", &p.0, &POLICY, DownPolicy::parse(&p.0))),
            channel_ids: input.channel_ids.and_then(|c| check.channel_ids(c)),
            check: None,
        };
        let given = CheckInput {
            kind: input.kind,
            method: input.method,
            headers: input.headers,
            body: input.body,
            expected_status: input.expected_status,
            keyword: input.keyword,
            keyword_absent: input.keyword_absent,
            follow_redirects: input.follow_redirects,
            verify_tls: input.verify_tls,
            cert_expiry_days: input.cert_expiry_days,
        };
        let current = postgres::website(&state.pool, id).await?.map(|stored| stored.website);
        let mut change = change;
        if let Some(current) = &current {
            let tcp = change.url.as_ref().unwrap_or(&current.url).is_tcp();
            if !given.is_empty() || tcp != current.url.is_tcp() {
                change.check = check.check_spec(given, tcp, Some(&current.check));
            }
        }
        check.finish()?;
        if let (Some(spec), Some(current)) = (change.check.take(), &current) {
            change.check = Some(seal_headers(state, spec, Some(&current.check)).await?);
        }
        if let Some(channel_ids) = &change.channel_ids {
            known_channels(state, channel_ids).await?;
        }
        if let Some(url) = &change.url {
            refuse_private(state, url).await?;
        }
        match execute(state, &caller, id, WebsiteCommand::Change(change)).await? {
            Some(website) => Ok(Json(website.into())),
            None => Err(ApiError::NotFound(format!("website {id} does not exist")).into()),
        }
    }

    /// Pause a website: it is not checked, and the paused time does not count towards its uptime, until resumed
    #[oai(path = "/websites/:id/pause", method = "post", operation_id = "pause_website")]
    async fn pause(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Json<WebsiteView>, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "website")?;
        match execute(&self.state, &caller, id, WebsiteCommand::Pause).await? {
            Some(website) => Ok(Json(website.into())),
            None => Err(ApiError::NotFound(format!("website {id} does not exist")).into()),
        }
    }

    /// Resume a paused website: it is checked again within seconds
    #[oai(path = "/websites/:id/resume", method = "post", operation_id = "resume_website")]
    async fn resume(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Json<WebsiteView>, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "website")?;
        match execute(&self.state, &caller, id, WebsiteCommand::Resume).await? {
            Some(website) => Ok(Json(website.into())),
            None => Err(ApiError::NotFound(format!("website {id} does not exist")).into()),
        }
    }

    /// Remove a website
    #[oai(path = "/websites/:id", method = "delete", operation_id = "remove_website")]
    async fn remove(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Removed, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "website")?;
        execute(&self.state, &caller, id, WebsiteCommand::Remove).await?;
        Ok(Removed::Removed)
    }
}

/// `WebsiteUrl::parse` (or `parse_tcp` for `tcp://host:port`), and the
/// normalised URL must fit too: it is what is stored, and a stored URL that
/// is too long cannot be read back.
fn parse_url(raw: &str) -> Result<WebsiteUrl, ValueError> {
    let url = if raw.trim().get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("tcp://")) {
        WebsiteUrl::parse_tcp(raw)?
    } else {
        WebsiteUrl::parse(raw)?
    };
    if url.as_str().len() > MAX_URL_LEN {
        return Err(ValueError { message: format!("url must be at most {MAX_URL_LEN} characters once normalised") });
    }
    Ok(url)
}

/// Refuses a URL the workers would refuse to check (SSRF guard), so the
/// user learns it now rather than from a website that is always down.
async fn refuse_private(state: &ApiState, url: &WebsiteUrl) -> Result<(), ApiError> {
    if state.allow_private_targets {
        return Ok(());
    }
    match crate::target::refused_target(url.as_str()).await {
        Some(reason) => Err(ApiError::invalid("url", reason)),
        None => Ok(()),
    }
}

/// What shows instead of a secret header's value.
const MASK: &str = "***";

/// The check settings as sent.
struct CheckInput {
    kind: Option<String>,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    body: Option<String>,
    expected_status: Option<Vec<String>>,
    keyword: Option<String>,
    keyword_absent: Option<bool>,
    follow_redirects: Option<bool>,
    verify_tls: Option<bool>,
    cert_expiry_days: Option<i64>,
}

impl CheckInput {
    fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.method.is_none()
            && self.headers.is_none()
            && self.body.is_none()
            && self.expected_status.is_none()
            && self.keyword.is_none()
            && self.keyword_absent.is_none()
            && self.follow_redirects.is_none()
            && self.verify_tls.is_none()
            && self.cert_expiry_days.is_none()
    }
}

/// Seals the secret header values of `spec` (carried in clear in its
/// headers until now); a secret sent back as `***` keeps its value from
/// `current`.
async fn seal_headers(
    state: &ApiState,
    mut spec: CheckSpec,
    current: Option<&CheckSpec>,
) -> Result<CheckSpec, ApiError> {
    let kept: Vec<(String, String)> = match current.and_then(|c| c.sealed_headers.as_deref()) {
        Some(sealed) if spec.headers.iter().any(|h| h.value.as_deref() == Some(MASK)) => {
            let plain =
                state.sealer.open(sealed).await.map_err(|e| ApiError::Unavailable(format!("opening headers: {e}")))?;
            serde_json::from_slice(&plain).map_err(|e| ApiError::Internal(format!("sealed headers: {e}")))?
        }
        _ => vec![],
    };
    let mut secrets: Vec<(String, String)> = Vec::new();
    for header in &mut spec.headers {
        if !is_secret_header(&header.name) {
            continue;
        }
        let value = match header.value.take() {
            Some(value) if value == MASK => {
                kept.iter().find(|(name, _)| name.eq_ignore_ascii_case(&header.name)).map(|(_, v)| v.clone())
            }
            other => other,
        };
        let Some(value) = value else {
            return Err(ApiError::invalid(
                "headers",
                format!("header {} is {MASK} but has no stored value to keep", header.name),
            ));
        };
        secrets.push((header.name.clone(), value));
    }
    spec.sealed_headers = if secrets.is_empty() {
        None
    } else {
        let plain = serde_json::to_vec(&secrets).map_err(|e| ApiError::Internal(format!("headers: {e}")))?;
        Some(state.sealer.seal(&plain).await.map_err(|e| ApiError::Unavailable(format!("sealing headers: {e}")))?)
    };
    Ok(spec)
}

/// Refuses channel ids that name no channel (422 naming `channel_ids`).
async fn known_channels(state: &ApiState, ids: &[Uuid]) -> Result<(), ApiError> {
    super::all_exist(state, super::Named::Channels, ids, "channel_ids").await
}

/// Decides `command` against the projected state, publishes the events with
/// optimistic concurrency and waits for the projection to show them. Returns
/// the website as the events left it.
async fn execute(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    command: WebsiteCommand,
) -> Result<Option<Website>, ApiError> {
    let subject = events::subject::website(id);
    for _ in 0..MAX_ATTEMPTS {
        let stored = postgres::website(&state.pool, id).await?;
        let known: Vec<RegionName> = postgres::regions(&state.pool).await?.into_iter().map(|r| r.name).collect();
        let current = stored.as_ref().map(|s| s.website.clone());
        let decided = website::decide(id, current.as_ref(), command.clone(), &known)?;
        let expected = stored.as_ref().map_or(0, |s| s.stream_seq);
        if let Some(published) = super::publish_decided(state, caller, &subject, decided, expected).await? {
            return Ok(published.iter().fold(current, |w, e| website::apply(w, &e.event, e.occurred_at)));
        }
    }
    Err(ApiError::Conflict(format!("website {id} is being changed concurrently; retry")))
}

/// The website fields' checks beside the general ones of [`Validation`].
impl Validation {
    /// [`Validation::field`], and the value as sent must also be what the
    /// description documents (the value types trim and normalise, which
    /// the description cannot say).
    fn documented<T>(&mut self, field: &str, raw: &str, rule: &Rule, value: Result<T, ValueError>) -> Option<T> {
        let value = self.field(field, value)?;
        match rule.check(field, raw) {
            Ok(()) => Some(value),
            Err(message) => {
                self.refuse(field, message);
                None
            }
        }
    }

    fn items<T>(
        &mut self,
        field: &str,
        items: Vec<String>,
        max: usize,
        rule: &Rule,
        parse: impl Fn(&str) -> Result<T, ValueError>,
    ) -> Option<Vec<T>> {
        if items.len() > max {
            self.refuse(field, format!("{field} must have at most {max} entries"));
            return None;
        }
        let parsed: Vec<Option<T>> = items.iter().map(|item| self.documented(field, item, rule, parse(item))).collect();
        parsed.into_iter().collect()
    }

    fn regions(&mut self, items: Vec<String>) -> Option<Vec<RegionName>> {
        self.items("regions", items, MAX_REGIONS, &REGION, RegionName::parse)
    }

    fn emails(&mut self, items: Vec<String>) -> Option<Vec<EmailAddress>> {
        self.items("notify_emails", items, MAX_EMAILS, &EMAIL, deliverable)
    }

    /// The check settings of `given` over `current` (a new website: the
    /// defaults); a TCP check takes none of the HTTP settings. Secret
    /// header values stay in clear here, for [`seal_headers`].
    fn check_spec(&mut self, given: CheckInput, tcp: bool, current: Option<&CheckSpec>) -> Option<CheckSpec> {
        let mut spec = match current {
            Some(current) if (current.kind == CheckKind::Tcp) == tcp => current.clone(),
            _ => CheckSpec::default(),
        };
        spec.kind = if tcp { CheckKind::Tcp } else { CheckKind::Http };
        let before = self.count();
        match given.kind.as_deref() {
            Some("tcp") if !tcp => self.refuse("kind", "a tcp check needs a url of the form tcp://host:port"),
            Some("http") if tcp => self.refuse("kind", "a tcp://host:port url is checked with kind tcp"),
            Some("http" | "tcp") | None => {}
            Some(other) => self.refuse("kind", format!("kind must be http or tcp, not {other:?}")),
        }
        if tcp {
            for (field, given) in [
                ("method", given.method.is_some()),
                ("headers", given.headers.is_some()),
                ("body", given.body.is_some()),
                ("expected_status", given.expected_status.is_some()),
                ("keyword", given.keyword.is_some()),
                ("keyword_absent", given.keyword_absent.is_some()),
                ("follow_redirects", given.follow_redirects.is_some()),
                ("verify_tls", given.verify_tls.is_some()),
                ("cert_expiry_days", given.cert_expiry_days.is_some()),
            ] {
                if given {
                    self.refuse(field, format!("{field} is not a setting of a TCP check"));
                }
            }
            return (self.count() == before).then_some(spec);
        }
        if let Some(method) = given.method {
            if let Some(method) = self.field("method", HttpMethod::parse(&method)) {
                spec.method = method;
            }
        }
        if let Some(headers) = given.headers {
            if headers.len() > check::MAX_HEADERS {
                self.refuse("headers", format!("headers must have at most {} entries", check::MAX_HEADERS));
            }
            spec.headers = headers
                .into_iter()
                .filter_map(|(name, value)| {
                    self.field("headers", check::check_header(&name, &value))?;
                    Some(Header { name, value: Some(value) })
                })
                .collect();
        }
        if let Some(body) = given.body {
            if body.len() > check::MAX_BODY_BYTES {
                self.refuse("body", format!("body must be at most {} bytes", check::MAX_BODY_BYTES));
            }
            if body.contains('\0') {
                self.refuse("body", "body must not contain the NUL character");
            }
            spec.body = Some(body).filter(|b| !b.is_empty());
        }
        if let Some(codes) = given.expected_status {
            if codes.len() > check::MAX_STATUS_RULES {
                self.refuse(
                    "expected_status",
                    format!("expected_status must have at most {} entries", check::MAX_STATUS_RULES),
                );
            }
            spec.expected_status =
                codes.iter().filter_map(|c| self.field("expected_status", StatusRange::parse(c))).collect();
        }
        if let Some(keyword) = given.keyword {
            if keyword.contains('\0') {
                self.refuse("keyword", "keyword must not contain the NUL character");
            }
            if let Some(Err(e)) =
                (CheckSpec { keyword: Some(keyword.clone()), ..CheckSpec::default() }).keyword_matcher()
            {
                self.refuse("keyword", e.message);
            }
            spec.keyword = Some(keyword);
        }
        if let Some(absent) = given.keyword_absent {
            spec.keyword_absent = absent;
        }
        if spec.keyword_absent && spec.keyword.is_none() {
            self.refuse("keyword_absent", "keyword_absent needs a keyword");
        }
        if let Some(follow) = given.follow_redirects {
            spec.follow_redirects = follow;
        }
        if let Some(verify) = given.verify_tls {
            spec.verify_tls = verify;
        }
        if let Some(days) = given.cert_expiry_days {
            match u32::try_from(days).ok().filter(|d| *d <= 365) {
                Some(days) => {
                    spec.cert_expiry_days = Some(days).filter(|d| *d != events::certificate::DEFAULT_EXPIRY_DAYS)
                }
                None => self.refuse("cert_expiry_days", "cert_expiry_days must be 0 to 365"),
            }
        }
        (self.count() == before).then_some(spec)
    }

    fn channel_ids(&mut self, items: Vec<String>) -> Option<Vec<Uuid>> {
        self.items("channel_ids", items, MAX_CHANNELS, &CHANNEL_ID, |raw| {
            Uuid::parse_str(raw).map_err(|_| ValueError { message: format!("'{raw}' is not a channel id") })
        })
    }
}

/// An address the notifier can send to: the domain's rules, and also the
/// mail library's (which refuses some that look like addresses, e.g. an
/// all-numeric top-level domain), so a website never holds a recipient that
/// every email would fail on.
fn deliverable(input: &str) -> Result<EmailAddress, ValueError> {
    let address = EmailAddress::parse(input)?;
    match address.as_str().parse::<lettre::Address>() {
        Ok(_) => Ok(address),
        Err(e) => Err(ValueError { message: format!("'{address}' is not an address mail can be sent to ({e})") }),
    }
}

impl From<DownPolicy> for PolicyName {
    fn from(policy: DownPolicy) -> Self {
        PolicyName(policy.as_str().to_owned())
    }
}

/// A string field as the description documents it: a pattern and a length
/// in characters.
struct Rule {
    regex: LazyLock<Option<Regex>>,
    max_chars: usize,
    expected: &'static str,
}

impl Rule {
    fn check(&self, field: &str, raw: &str) -> Result<(), String> {
        let Some(regex) = &*self.regex else {
            // The patterns are constants checked by the tests below.
            tracing::error!(field, "a documented pattern does not compile; not enforced");
            return Ok(());
        };
        if raw.chars().count() <= self.max_chars && regex.is_match(raw) {
            Ok(())
        } else {
            Err(format!("{field} must be {}", self.expected))
        }
    }
}

macro_rules! rule {
    ($pattern:expr, $max_chars:expr, $expected:expr) => {
        Rule { regex: LazyLock::new(|| Regex::new($pattern).ok()), max_chars: $max_chars, expected: $expected }
    };
}

/// The patterns of the description (the `#[oai(validator(pattern))]`
/// attributes above must repeat them literally; a test checks they do).
pub const URL_PATTERN: &str = r"^(https?|tcp)://(([A-Za-z0-9][A-Za-z0-9-]*\.)*[A-Za-z][A-Za-z0-9-]*|(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|\[(([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,7}:|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}|:((:[0-9A-Fa-f]{1,4}){1,7}|:))\])(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?([/?#][!#$%&()*+,./0-9:;=?@A-Z\[\\\]_a-z~-]*)?$";
pub const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
pub const EMAIL_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f@]{1,64}@[^\s\x00-\x1f\x7f-\x9f@.-]([^\s\x00-\x1f\x7f-\x9f@.]*[^\s\x00-\x1f\x7f-\x9f@.-])?(\.[^\s\x00-\x1f\x7f-\x9f@.-]([^\s\x00-\x1f\x7f-\x9f@.]*[^\s\x00-\x1f\x7f-\x9f@.-])?)+$";
const POLICY_PATTERN: &str = "^(any|majority|all)$";
pub const CHANNEL_ID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

// 2047 and no character the URL parser percent-encodes: normalising adds at
// most the `/` of an empty path, so what is stored fits `MAX_URL_LEN`.
static URL: Rule = rule!(
    URL_PATTERN,
    MAX_URL_LEN - 1,
    "an absolute http or https URL of at most 2047 characters with a host name or IP address (see the pattern in /openapi.json)"
);
static NAME: Rule = rule!(NAME_PATTERN, 100, "1 to 100 characters without control characters, not only spaces");
static EMAIL: Rule = rule!(EMAIL_PATTERN, 254, "an email address (see the pattern in /openapi.json)");
static REGION: Rule = rule!(REGION_PATTERN, 32, "1-32 characters of a-z, 0-9 and '-', starting with a letter or digit");
static POLICY: Rule = rule!(POLICY_PATTERN, 8, "any, majority or all");
static CHANNEL_ID: Rule = rule!(CHANNEL_ID_PATTERN, 36, "a channel id (a UUID)");

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::registry::Registry;

    fn property(schema: &str, name: &str) -> serde_json::Value {
        let mut registry = Registry::new();
        CreateWebsite::register(&mut registry);
        UpdateWebsite::register(&mut registry);
        let schema = registry.schemas.get(schema).map(|s| serde_json::to_value(s).unwrap_or_default());
        schema.map(|s| s["properties"][name].clone()).unwrap_or_default()
    }

    #[test]
    fn the_described_patterns_are_the_enforced_ones() {
        for schema in ["CreateWebsite", "UpdateWebsite"] {
            assert_eq!(property(schema, "url")["pattern"], URL_PATTERN, "{schema}");
            assert_eq!(property(schema, "name")["pattern"], NAME_PATTERN, "{schema}");
            assert_eq!(property(schema, "notify_emails")["items"]["pattern"], EMAIL_PATTERN, "{schema}");
            assert_eq!(property(schema, "regions")["items"]["pattern"], REGION_PATTERN, "{schema}");
            assert_eq!(property(schema, "channel_ids")["items"]["pattern"], CHANNEL_ID_PATTERN, "{schema}");
        }
        for rule in [&URL, &NAME, &EMAIL, &REGION, &POLICY, &CHANNEL_ID] {
            assert!(rule.regex.is_some(), "{}", rule.expected);
        }
    }

    #[test]
    fn urls_the_pattern_admits_are_website_urls() {
        for url in [
            "http://example.com",
            "https://Example.COM:8443/a?b=c#d",
            "http://127.0.0.1:65535/status",
            "http://[::1]/",
            "http://a-b.c0/x",
        ] {
            assert!(URL.check("url", url).is_ok(), "{url}");
            assert!(WebsiteUrl::parse(url).is_ok(), "{url}");
        }
        for url in [
            "ftp://example.com",
            "http://0ak20ar9kj.l*",
            "http://a:65536/",
            "http://1.2.3.999/",
            " http://a/",
            "http://a/\"b",
        ] {
            assert!(URL.check("url", url).is_err(), "{url}");
        }
        let longest = format!("http://a?{}", "b".repeat(MAX_URL_LEN - 1 - "http://a?".len()));
        assert!(URL.check("url", &longest).is_ok());
        assert_eq!(parse_url(&longest).map(|u| u.as_str().len()), Ok(MAX_URL_LEN));
        let expanding = format!("http://a/{}", "\"".repeat(1000));
        assert!(parse_url(&expanding).is_err(), "a URL that grows past the limit when normalised is refused");
    }

    #[test]
    fn an_address_the_mail_library_refuses_is_refused_up_front() {
        assert!(deliverable("ops@example.com").is_ok());
        for odd in ["a..b@c.com", ".a@b.com", "a@[1.2.3.4].com"] {
            assert!(events::EmailAddress::parse(odd).is_ok(), "{odd} looks like an address");
            assert!(deliverable(odd).is_err(), "{odd} cannot be mailed and is refused");
        }
        assert!(deliverable("not an address").is_err());
    }
}
