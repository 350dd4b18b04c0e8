//! `/websites`: register, list, show, change and remove websites. Commands
//! are decided against the Postgres projection and published as events with
//! the website's last stream sequence as the expected one; a conflict is
//! re-decided against the newer state a few times, then answered 409.

use super::body::{parse_id, read_json};
use super::error::{ApiError, FieldError};
use super::ApiState;
use crate::bus::BusError;
use chrono::Utc;
use events::website::{self, AddWebsite, ChangeWebsite, Website, WebsiteCommand};
use events::{
    DownPolicy, EmailAddress, Envelope, FailuresBeforeDown, IntervalSecs, RegionName, TimeoutMs, ValueError,
    WebsiteName, WebsiteUrl,
};
use poem::http::StatusCode;
use poem::web::{Data, Json, Path, Query};
use poem::{handler, Body};
use projections::postgres;
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

/// Commands re-decided after a concurrent write before answering 409.
const MAX_ATTEMPTS: usize = 3;
const MAX_REGIONS: usize = 64;
const MAX_EMAILS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebsite {
    url: String,
    name: String,
    #[serde(default)]
    regions: Option<Vec<String>>,
    #[serde(default)]
    interval_seconds: Option<i64>,
    #[serde(default)]
    timeout_ms: Option<i64>,
    #[serde(default)]
    notify_emails: Option<Vec<String>>,
    #[serde(default)]
    failures_before_down: Option<i64>,
    #[serde(default)]
    down_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebsite {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    regions: Option<Vec<String>>,
    #[serde(default)]
    interval_seconds: Option<i64>,
    #[serde(default)]
    timeout_ms: Option<i64>,
    #[serde(default)]
    notify_emails: Option<Vec<String>>,
    #[serde(default)]
    failures_before_down: Option<i64>,
    #[serde(default)]
    down_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

#[handler]
pub async fn create(state: Data<&Arc<ApiState>>, body: Body) -> Result<(StatusCode, Json<Website>), ApiError> {
    let input: CreateWebsite = read_json(body).await?;
    let mut check = Validation::default();
    let url = check.field("url", WebsiteUrl::parse(&input.url));
    let name = check.field("name", WebsiteName::parse(&input.name));
    let regions = input.regions.map(|r| check.regions(r));
    let interval = input.interval_seconds.map(|s| check.field("interval_seconds", IntervalSecs::parse(s)));
    let timeout = input.timeout_ms.map(|t| check.field("timeout_ms", TimeoutMs::parse(t)));
    let emails = input.notify_emails.map(|e| check.emails(e));
    let failures =
        input.failures_before_down.map(|f| check.field("failures_before_down", FailuresBeforeDown::parse(f)));
    let policy = input.down_policy.map(|p| check.field("down_policy", DownPolicy::parse(&p)));
    check.finish()?;
    if let Some(url) = &url {
        refuse_private(&state, url).await?;
    }
    let (Some(url), Some(name)) = (url, name) else {
        return Err(ApiError::Internal("validated fields missing".into()));
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
    };
    let id = add.id;
    match execute(&state, id, WebsiteCommand::Add(add)).await? {
        Some(website) => Ok((StatusCode::CREATED, Json(website))),
        None => Err(ApiError::Internal(format!("website {id} missing after WebsiteAdded"))),
    }
}

#[handler]
pub async fn list(
    state: Data<&Arc<ApiState>>,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Website>>, ApiError> {
    if let Some(limit) = params.limit {
        if !(1..=10_000).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit must be between 1 and 10000"));
        }
    }
    let offset = params.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset", "offset must not be negative"));
    }
    Ok(Json(postgres::websites(&state.pool, params.limit, offset).await?))
}

#[handler]
pub async fn show(state: Data<&Arc<ApiState>>, Path(id): Path<String>) -> Result<Json<Website>, ApiError> {
    let id = parse_id(&id, "website")?;
    match postgres::website(&state.pool, id).await? {
        Some(stored) => Ok(Json(stored.website)),
        None => Err(ApiError::NotFound(format!("website {id} does not exist"))),
    }
}

#[handler]
pub async fn update(
    state: Data<&Arc<ApiState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Website>, ApiError> {
    let id = parse_id(&id, "website")?;
    let input: UpdateWebsite = read_json(body).await?;
    let mut check = Validation::default();
    let change = ChangeWebsite {
        url: input.url.and_then(|u| check.field("url", WebsiteUrl::parse(&u))),
        name: input.name.and_then(|n| check.field("name", WebsiteName::parse(&n))),
        regions: input.regions.and_then(|r| check.regions(r)),
        interval_seconds: input.interval_seconds.and_then(|s| check.field("interval_seconds", IntervalSecs::parse(s))),
        timeout_ms: input.timeout_ms.and_then(|t| check.field("timeout_ms", TimeoutMs::parse(t))),
        notify_emails: input.notify_emails.and_then(|e| check.emails(e)),
        failures_before_down: input
            .failures_before_down
            .and_then(|f| check.field("failures_before_down", FailuresBeforeDown::parse(f))),
        down_policy: input.down_policy.and_then(|p| check.field("down_policy", DownPolicy::parse(&p))),
    };
    check.finish()?;
    if let Some(url) = &change.url {
        refuse_private(&state, url).await?;
    }
    match execute(&state, id, WebsiteCommand::Change(change)).await? {
        Some(website) => Ok(Json(website)),
        None => Err(ApiError::NotFound(format!("website {id} does not exist"))),
    }
}

#[handler]
pub async fn remove(state: Data<&Arc<ApiState>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "website")?;
    execute(&state, id, WebsiteCommand::Remove).await?;
    Ok(StatusCode::NO_CONTENT)
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

/// Decides `command` against the projected state, publishes the events with
/// optimistic concurrency and waits for the projection to show them. Returns
/// the website as the events left it.
async fn execute(state: &ApiState, id: Uuid, command: WebsiteCommand) -> Result<Option<Website>, ApiError> {
    let subject = events::subject::website(id);
    for attempt in 1..=MAX_ATTEMPTS {
        let stored = postgres::website(&state.pool, id).await?;
        let known: Vec<RegionName> = postgres::regions(&state.pool).await?.into_iter().map(|r| r.name).collect();
        let current = stored.as_ref().map(|s| s.website.clone());
        let decided = website::decide(id, current.as_ref(), command.clone(), &known)?;
        let mut expected = stored.as_ref().map_or(0, |s| s.stream_seq);
        let mut after = current;
        let mut published = false;
        let mut conflict = false;
        for event in decided {
            let envelope = Envelope::new(event, Utc::now());
            match state.bus.publish(&envelope, Some(expected)).await {
                Ok(seq) => {
                    expected = seq;
                    published = true;
                    after = website::apply(after, &envelope.event, envelope.occurred_at);
                }
                Err(BusError::Conflict) if !published => {
                    conflict = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if conflict {
            // Someone wrote first: let the projection catch up with them and
            // decide again against what they left.
            tracing::debug!(%id, attempt, "concurrent write; deciding again");
            let last = state.bus.last_subject_seq(&subject).await?;
            super::settle(state, last).await?;
            continue;
        }
        if published {
            super::settle(state, expected).await?;
        }
        return Ok(after);
    }
    Err(ApiError::Conflict(format!("website {id} is being changed concurrently; retry")))
}

/// Collects every refused field so one response names them all.
#[derive(Default)]
struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    fn field<T>(&mut self, field: &str, value: Result<T, ValueError>) -> Option<T> {
        value.map_err(|e| self.errors.push(FieldError { field: field.to_owned(), message: e.message })).ok()
    }

    fn list<T>(
        &mut self,
        field: &str,
        items: Vec<String>,
        max: usize,
        parse: impl Fn(&str) -> Result<T, ValueError>,
    ) -> Option<Vec<T>> {
        if items.len() > max {
            self.errors.push(FieldError {
                field: field.to_owned(),
                message: format!("{field} must have at most {max} entries"),
            });
            return None;
        }
        let parsed: Vec<Option<T>> = items.iter().map(|item| self.field(field, parse(item))).collect();
        parsed.into_iter().collect()
    }

    fn regions(&mut self, items: Vec<String>) -> Option<Vec<RegionName>> {
        self.list("regions", items, MAX_REGIONS, RegionName::parse)
    }

    fn emails(&mut self, items: Vec<String>) -> Option<Vec<EmailAddress>> {
        self.list("notify_emails", items, MAX_EMAILS, EmailAddress::parse)
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.errors))
        }
    }
}
