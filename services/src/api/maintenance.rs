//! `/maintenance`: planned work. During a window checks still run and are
//! stored, but no outage alert is sent ("suppressed: maintenance" in
//! `/monitor/:id/alerts`), incidents that begin in it are marked
//! `in_maintenance`, and its time counts neither as time nor as downtime in
//! the uptime figures. Windows are commands like websites
//! ([`events::maintenance`]).

use super::body::{name_as_sent, parse_id, present, JsonBody, Timestamp, Validation};
use super::error::{ApiError, Refusal, BAD_REQUEST, BODY, CONFLICT, NOT_FOUND, UNAVAILABLE};
use super::ApiState;
use crate::access::middleware::Caller;
use chrono::{DateTime, Duration, Utc};
use events::maintenance::{self, MaintenanceCommand, MaintenanceError, Timing, Window};
use events::ValueError;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use projections::postgres;
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

const MAX_ATTEMPTS: usize = 3;
const MAX_WEBSITES: usize = 1000;

#[derive(Tags)]
pub enum Tag {
    /// Planned work: no alerts, not counted against uptime
    Maintenance,
}

/// A window to plan: `name`, the websites (`website_ids`, or
/// `all_websites: true`), and either `starts_at` and `ends_at` (one-off) or
/// `cron` (5 fields, e.g. `0 2 * * Sun`), `duration_minutes` (1..10080) and
/// `timezone` (IANA, default `UTC`) for a recurring one.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CreateWindow {
    #[oai(validator(min_length = 1, max_length = 100))]
    name: String,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_items = 1000,
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    website_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    all_websites: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 200))]
    cron: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "1"), maximum(value = "10080")))]
    duration_minutes: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 64))]
    timezone: Option<String>,
}

/// Fields to change; the timing is given whole (one-off or recurring) when
/// it changes.
#[derive(Debug, Default, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct UpdateWindow {
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_length = 1, max_length = 100))]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(
        max_items = 1000,
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    website_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    all_websites: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 200))]
    cron: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(minimum(value = "1"), maximum(value = "10080")))]
    duration_minutes: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 64))]
    timezone: Option<String>,
}

/// One interval a window is on.
#[derive(Debug, Clone, Object)]
#[oai(rename = "MaintenanceOccurrence")]
pub struct OccurrenceView {
    starts_at: Timestamp,
    ends_at: Timestamp,
}

/// A maintenance window.
#[derive(Debug, Clone, Object)]
#[oai(rename = "MaintenanceWindow")]
pub struct WindowView {
    id: Uuid,
    name: String,
    website_ids: Vec<Uuid>,
    all_websites: bool,
    /// `once` or `recurring`.
    kind: String,
    #[oai(skip_serializing_if_is_none)]
    starts_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    ends_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    cron: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    duration_minutes: Option<u32>,
    #[oai(skip_serializing_if_is_none)]
    timezone: Option<String>,
    /// On now.
    active: bool,
    /// The occurrence on now or the next one (within a year), if any.
    #[oai(skip_serializing_if_is_none)]
    next: Option<OccurrenceView>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<&Window> for WindowView {
    fn from(w: &Window) -> Self {
        let now = Utc::now();
        let next = w.occurrences(now, now + Duration::days(366)).into_iter().next();
        let (kind, starts_at, ends_at, cron, duration_minutes, timezone) = match &w.timing {
            Timing::Once { starts_at, ends_at } => {
                ("once", Some((*starts_at).into()), Some((*ends_at).into()), None, None, None)
            }
            Timing::Recurring { cron, duration_minutes, timezone } => {
                ("recurring", None, None, Some(cron.clone()), Some(*duration_minutes), Some(timezone.clone()))
            }
        };
        WindowView {
            id: w.id,
            name: w.name.clone(),
            website_ids: w.website_ids.clone(),
            all_websites: w.all_websites,
            kind: kind.into(),
            starts_at,
            ends_at,
            cron,
            duration_minutes,
            timezone,
            active: w.active_at(now),
            next: next.map(|(s, e)| OccurrenceView { starts_at: s.into(), ends_at: e.into() }),
            created_at: w.created_at.into(),
            updated_at: w.updated_at.into(),
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    /// The window as planned.
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Created(Json<WindowView>),
}

#[derive(ApiResponse)]
pub enum Removed {
    /// Removed: its past no longer excludes time from uptime.
    #[oai(status = 204)]
    Removed,
}

pub struct MaintenanceApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Maintenance")]
impl MaintenanceApi {
    /// Plan a maintenance window
    #[oai(path = "/maintenance", method = "post", operation_id = "create_maintenance")]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<CreateWindow>,
    ) -> Result<Created, Refusal<{ BODY | CONFLICT | UNAVAILABLE }>> {
        let input = body.0;
        let mut check = Validation::default();
        let name = check.field("name", window_name(&input.name));
        let website_ids = input.website_ids.map(|ids| parse_ids(&mut check, ids)).unwrap_or(Some(vec![]));
        let all_websites = input.all_websites.unwrap_or(false);
        if all_websites && website_ids.as_ref().is_some_and(|ids| !ids.is_empty()) {
            check.refuse("website_ids", "website_ids and all_websites: true exclude each other");
        }
        if !all_websites && website_ids.as_ref().is_some_and(Vec::is_empty) {
            check.refuse("website_ids", "a window is for some website_ids or for all_websites: true");
        }
        let timing = timing(
            &mut check,
            Given {
                starts_at: input.starts_at,
                ends_at: input.ends_at,
                cron: input.cron,
                duration_minutes: input.duration_minutes,
                timezone: input.timezone,
            },
            None,
        );
        check.finish()?;
        let (Some(name), Some(website_ids), Some(timing)) = (name, website_ids, timing) else {
            return Err(ApiError::Internal("validated fields missing".into()).into());
        };
        known_websites(&self.state, &website_ids).await?;
        let id = Uuid::now_v7();
        let command = MaintenanceCommand::Schedule { name, website_ids, all_websites, timing };
        let window = execute(&self.state, &caller, id, command)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("window {id} missing")))?;
        Ok(Created::Created(Json(WindowView::from(&window))))
    }

    /// List maintenance windows (of one website: `website=<id>`)
    #[oai(path = "/maintenance", method = "get", operation_id = "list_maintenance")]
    async fn list(
        &self,
        /// Only the windows that cover this website.
        website: Query<Option<String>>,
    ) -> Result<Json<Vec<WindowView>>, Refusal<{ BAD_REQUEST | UNAVAILABLE }>> {
        let website = match website.0.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| ApiError::BadParameter {
                field: "website".into(),
                message: format!("website must be a website id, not {raw:?}"),
            })?),
        };
        let windows = postgres::maintenance_windows(&self.state.pool, website).await?;
        Ok(Json(windows.iter().map(WindowView::from).collect()))
    }

    /// Show a maintenance window
    #[oai(path = "/maintenance/:id", method = "get", operation_id = "show_maintenance")]
    async fn show(&self, id: Path<String>) -> Result<Json<WindowView>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let id = parse_id(&id, "maintenance window")?;
        let (window, _) = existing(&self.state, id).await?;
        Ok(Json(WindowView::from(&window)))
    }

    /// Change a maintenance window
    #[oai(path = "/maintenance/:id", method = "patch", operation_id = "update_maintenance")]
    async fn update(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
        body: JsonBody<UpdateWindow>,
    ) -> Result<Json<WindowView>, Refusal<{ BODY | NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "maintenance window")?;
        let input = body.0;
        let (current, _) = existing(&self.state, id).await?;
        let mut check = Validation::default();
        let name = input.name.and_then(|n| check.field("name", window_name(&n)));
        let website_ids = input.website_ids.and_then(|ids| parse_ids(&mut check, ids));
        let given = Given {
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            cron: input.cron,
            duration_minutes: input.duration_minutes,
            timezone: input.timezone,
        };
        let timing = if given.is_empty() { None } else { timing(&mut check, given, Some(&current.timing)) };
        check.finish()?;
        if let Some(ids) = &website_ids {
            known_websites(&self.state, ids).await?;
        }
        let command = MaintenanceCommand::Change { name, website_ids, all_websites: input.all_websites, timing };
        match execute(&self.state, &caller, id, command).await? {
            Some(window) => Ok(Json(WindowView::from(&window))),
            None => Err(ApiError::NotFound(format!("maintenance window {id} does not exist")).into()),
        }
    }

    /// End the window's current occurrence now, early (409 if it is not on)
    #[oai(path = "/maintenance/:id/end", method = "post", operation_id = "end_maintenance")]
    async fn end(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Json<WindowView>, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "maintenance window")?;
        let command = MaintenanceCommand::End { at: Utc::now() };
        match execute(&self.state, &caller, id, command).await? {
            Some(window) => Ok(Json(WindowView::from(&window))),
            None => Err(ApiError::NotFound(format!("maintenance window {id} does not exist")).into()),
        }
    }

    /// Delete a maintenance window
    #[oai(path = "/maintenance/:id", method = "delete", operation_id = "remove_maintenance")]
    async fn remove(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Removed, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "maintenance window")?;
        execute(&self.state, &caller, id, MaintenanceCommand::Remove).await?;
        Ok(Removed::Removed)
    }
}

/// The timing fields as sent.
struct Given {
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    cron: Option<String>,
    duration_minutes: Option<i64>,
    timezone: Option<String>,
}

impl Given {
    fn is_empty(&self) -> bool {
        self.starts_at.is_none()
            && self.ends_at.is_none()
            && self.cron.is_none()
            && self.duration_minutes.is_none()
            && self.timezone.is_none()
    }
}

/// The timing of `given`, completed from `current` when it is of the same
/// kind; refusals name the field.
fn timing(check: &mut Validation, given: Given, current: Option<&Timing>) -> Option<Timing> {
    let once = given.starts_at.is_some() || given.ends_at.is_some();
    let recurring = given.cron.is_some() || given.duration_minutes.is_some() || given.timezone.is_some();
    let checked = |check: &mut Validation, timing: Result<Timing, (&'static str, ValueError)>| match timing {
        Ok(timing) => Some(timing),
        Err((field, e)) => {
            check.refuse(field, e.message);
            None
        }
    };
    match (once, recurring) {
        (true, true) => {
            let field = if given.cron.is_some() {
                "cron"
            } else if given.duration_minutes.is_some() {
                "duration_minutes"
            } else {
                "timezone"
            };
            check.refuse(
                field,
                "a window is one-off (starts_at, ends_at) or recurring (cron, duration_minutes, timezone), not both",
            );
            None
        }
        (true, false) => {
            let (old_start, old_end) = match current {
                Some(Timing::Once { starts_at, ends_at }) => (Some(*starts_at), Some(*ends_at)),
                _ => (None, None),
            };
            let (Some(starts_at), Some(ends_at)) = (given.starts_at.or(old_start), given.ends_at.or(old_end)) else {
                let field = if given.starts_at.is_none() { "starts_at" } else { "ends_at" };
                check.refuse(field, "a one-off window needs starts_at and ends_at");
                return None;
            };
            checked(check, Timing::once(starts_at, ends_at))
        }
        (false, true) => {
            let (old_cron, old_duration, old_zone) = match current {
                Some(Timing::Recurring { cron, duration_minutes, timezone }) => {
                    (Some(cron.clone()), Some(i64::from(*duration_minutes)), Some(timezone.clone()))
                }
                _ => (None, None, None),
            };
            let Some(cron) = given.cron.or(old_cron) else {
                check.refuse("cron", "a recurring window needs cron");
                return None;
            };
            let Some(duration) = given.duration_minutes.or(old_duration) else {
                check.refuse("duration_minutes", "a recurring window needs duration_minutes");
                return None;
            };
            let zone = given.timezone.or(old_zone).unwrap_or_else(|| "UTC".into());
            checked(check, Timing::recurring(&cron, duration, &zone))
        }
        (false, false) => {
            check.refuse("starts_at", "a window needs starts_at and ends_at, or cron and duration_minutes");
            None
        }
    }
}

fn window_name(raw: &str) -> Result<String, ValueError> {
    name_as_sent(raw).and_then(events::values::name_text)
}

fn parse_ids(check: &mut Validation, raw: Vec<String>) -> Option<Vec<Uuid>> {
    if raw.len() > MAX_WEBSITES {
        check.refuse("website_ids", format!("website_ids must have at most {MAX_WEBSITES} entries"));
        return None;
    }
    let parsed: Vec<Option<Uuid>> = raw
        .iter()
        .map(|r| {
            check.field(
                "website_ids",
                Uuid::parse_str(r).map_err(|_| ValueError { message: format!("'{r}' is not a website id") }),
            )
        })
        .collect();
    parsed.into_iter().collect()
}

async fn known_websites(state: &ApiState, ids: &[Uuid]) -> Result<(), ApiError> {
    super::all_exist(state, super::Named::Websites, ids, "website_ids").await
}

async fn load(state: &ApiState, id: Uuid) -> Result<Option<(Window, u64)>, ApiError> {
    Ok(postgres::maintenance_window(&state.pool, id).await?)
}

async fn existing(state: &ApiState, id: Uuid) -> Result<(Window, u64), ApiError> {
    load(state, id).await?.ok_or_else(|| ApiError::NotFound(format!("maintenance window {id} does not exist")))
}

async fn execute(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    command: MaintenanceCommand,
) -> Result<Option<Window>, ApiError> {
    let subject = events::subject::maintenance(id);
    for _ in 0..MAX_ATTEMPTS {
        let stored = load(state, id).await?;
        let current = stored.as_ref().map(|(w, _)| w.clone());
        let decided = maintenance::decide(id, current.as_ref(), command.clone()).map_err(|e| match e {
            MaintenanceError::NotFound(_) => ApiError::NotFound(e.to_string()),
            MaintenanceError::Exists(_) | MaintenanceError::NotActive(_) => ApiError::Conflict(e.to_string()),
            MaintenanceError::NoWebsites => ApiError::invalid("website_ids", e.to_string()),
        })?;
        let expected = stored.as_ref().map_or(0, |(_, seq)| *seq);
        if let Some(published) = super::publish_decided(state, caller, &subject, decided, expected).await? {
            return Ok(published.iter().fold(current, |w, e| maintenance::apply(w, &e.event, e.occurred_at)));
        }
    }
    Err(ApiError::Conflict(format!("maintenance window {id} is being changed concurrently; retry")))
}
