//! `/status-pages`: managing public status pages (a token is needed; the
//! public side is [`super::status_public`]). A page is a command aggregate
//! like a website ([`events::status_page`]): validated here (422 naming the
//! field, 409 for a slug another page holds), decided against the
//! projection and published on `monitor.status_page.<id>`. The team's
//! updates to an incident are IncidentUpdatePosted events on the website's
//! `incidents.<id>` subject.

use super::body::{parse_id, present, JsonBody, Timestamp, Validation};
use super::error::{ApiError, Refusal, BODY, CONFLICT, NOT_FOUND, UNAVAILABLE};
use super::ApiState;
use crate::access::middleware::Caller;
use chrono::{Duration, Utc};
use events::status_page::{
    self, IncidentStatus, Page, PageCommand, PageError, PageGroup, PageWebsite, Slug, MAX_GROUPS, MAX_TEXT_CHARS,
    MAX_TITLE_CHARS, MAX_WEBSITES,
};
use events::{Envelope, ValueError};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use projections::status_pages::{self as store, PublicIncident};
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

const MAX_ATTEMPTS: usize = 3;

#[derive(Tags)]
pub enum Tag {
    /// Public status pages, their incidents and subscribers
    StatusPages,
}

/// A website on a page: its id and the name the public sees; its checked
/// URL is shown only with `show_url: true`.
#[derive(Debug, Clone, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "StatusPageWebsiteInput", deny_unknown_fields)]
pub struct WebsiteInput {
    #[oai(validator(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    id: String,
    #[oai(validator(min_length = 1, max_length = 100))]
    name: String,
    #[serde(default, deserialize_with = "present")]
    show_url: Option<bool>,
}

/// A named group of websites.
#[derive(Debug, Clone, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "StatusPageGroupInput", deny_unknown_fields)]
pub struct GroupInput {
    #[oai(validator(min_length = 1, max_length = 100))]
    name: String,
    #[oai(validator(max_items = 500))]
    websites: Vec<WebsiteInput>,
}

/// A page to create: `slug` (`a-z`, `0-9`, `-`, 1..64, unique), `title`,
/// optional `description` and `logo_url`, and `groups` of websites.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CreateStatusPage {
    #[oai(validator(pattern = "^[a-z0-9-]{1,64}$"))]
    slug: String,
    #[oai(validator(min_length = 1, max_length = 100))]
    title: String,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 5000))]
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 2047))]
    logo_url: Option<String>,
    #[oai(validator(max_items = 50))]
    groups: Vec<GroupInput>,
}

/// Fields to change; `groups` is the whole new list; an empty
/// `description` or `logo_url` removes it.
#[derive(Debug, Default, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct UpdateStatusPage {
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(pattern = "^[a-z0-9-]{1,64}$"))]
    slug: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_length = 1, max_length = 100))]
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 5000))]
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 2047))]
    logo_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_items = 50))]
    groups: Option<Vec<GroupInput>>,
}

/// An update to an incident: `status` (`investigating`, `identified`,
/// `monitoring`, `resolved`), `message`, and optionally the incident's
/// public `title`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct PostIncidentUpdate {
    #[oai(validator(pattern = "^(investigating|identified|monitoring|resolved)$"))]
    status: String,
    #[oai(validator(min_length = 1, max_length = 5000))]
    message: String,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_length = 1, max_length = 100))]
    title: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(rename = "StatusPageWebsite")]
pub struct WebsiteView {
    id: Uuid,
    name: String,
    show_url: bool,
}

#[derive(Debug, Clone, Object)]
#[oai(rename = "StatusPageGroup")]
pub struct GroupView {
    name: String,
    websites: Vec<WebsiteView>,
}

/// A status page.
#[derive(Debug, Clone, Object)]
#[oai(rename = "StatusPage")]
pub struct PageView {
    id: Uuid,
    slug: String,
    title: String,
    #[oai(skip_serializing_if_is_none)]
    description: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    logo_url: Option<String>,
    groups: Vec<GroupView>,
    /// Where the public sees it (relative to this server).
    public_path: String,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<&Page> for PageView {
    fn from(page: &Page) -> Self {
        PageView {
            id: page.id,
            slug: page.slug.to_string(),
            title: page.title.clone(),
            description: page.description.clone(),
            logo_url: page.logo_url.clone(),
            groups: page
                .groups
                .iter()
                .map(|g| GroupView {
                    name: g.name.clone(),
                    websites: g
                        .websites
                        .iter()
                        .map(|w| WebsiteView { id: w.website_id, name: w.name.clone(), show_url: w.show_url })
                        .collect(),
                })
                .collect(),
            public_path: format!("/status/{}", page.slug),
            created_at: page.created_at.into(),
            updated_at: page.updated_at.into(),
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(rename = "IncidentUpdate")]
pub struct UpdateView {
    id: Uuid,
    status: String,
    message: String,
    posted_at: Timestamp,
}

/// A website's public incident (one per outage) with its updates.
#[derive(Debug, Clone, Object)]
#[oai(rename = "PublicIncident")]
pub struct IncidentView {
    id: Uuid,
    website_id: Uuid,
    #[oai(skip_serializing_if_is_none)]
    title: Option<String>,
    /// The latest update's status (`resolved` once the outage ended).
    status: String,
    ongoing: bool,
    started_at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    ended_at: Option<Timestamp>,
    updates: Vec<UpdateView>,
}

impl From<&PublicIncident> for IncidentView {
    fn from(i: &PublicIncident) -> Self {
        let status = match (i.ended_at, i.status) {
            (Some(_), _) => IncidentStatus::Resolved,
            (None, Some(status)) => status,
            (None, None) => IncidentStatus::Investigating,
        };
        IncidentView {
            id: i.id,
            website_id: i.website_id,
            title: i.title.clone(),
            status: status.as_str().into(),
            ongoing: i.ended_at.is_none(),
            started_at: i.started_at.into(),
            ended_at: i.ended_at.map(Into::into),
            updates: i
                .updates
                .iter()
                .map(|u| UpdateView {
                    id: u.id,
                    status: u.status.as_str().into(),
                    message: u.message.clone(),
                    posted_at: u.posted_at.into(),
                })
                .collect(),
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    /// The page as created.
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Created(Json<PageView>),
}

#[derive(ApiResponse)]
pub enum Posted {
    /// The incident with the new update.
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Posted(Json<IncidentView>),
}

#[derive(ApiResponse)]
pub enum Removed {
    /// Removed: its public routes are 404 and its subscribers are mailed no more.
    #[oai(status = 204)]
    Removed,
}

pub struct StatusPagesApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::StatusPages")]
impl StatusPagesApi {
    /// Create a public status page
    #[oai(path = "/status-pages", method = "post", operation_id = "create_status_page")]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<CreateStatusPage>,
    ) -> Result<Created, Refusal<{ BODY | CONFLICT | UNAVAILABLE }>> {
        let input = body.0;
        let mut check = Validation::default();
        let slug = check.field("slug", Slug::parse(&input.slug));
        let title = check.field("title", status_page::text(&input.title, MAX_TITLE_CHARS, false));
        let description = input
            .description
            .filter(|d| !d.trim().is_empty())
            .and_then(|d| check.field("description", status_page::text(&d, MAX_TEXT_CHARS, true)));
        let logo_url =
            input.logo_url.filter(|l| !l.is_empty()).and_then(|l| check.field("logo_url", status_page::logo_url(&l)));
        let groups = groups(&mut check, input.groups);
        check.finish()?;
        let (Some(slug), Some(title), Some(groups)) = (slug, title, groups) else {
            return Err(ApiError::Internal("validated fields missing".into()).into());
        };
        known_websites(&self.state, &groups).await?;
        let id = Uuid::now_v7();
        let command = PageCommand::Create { slug, title, description, logo_url, groups };
        let page = execute(&self.state, &caller, id, command)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("page {id} missing")))?;
        Ok(Created::Created(Json(PageView::from(&page))))
    }

    /// List status pages
    #[oai(path = "/status-pages", method = "get", operation_id = "list_status_pages")]
    async fn list(&self) -> Result<Json<Vec<PageView>>, Refusal<{ UNAVAILABLE }>> {
        let pages = store::pages(&self.state.pool).await?;
        Ok(Json(pages.iter().map(PageView::from).collect()))
    }

    /// Show a status page
    #[oai(path = "/status-pages/:slug", method = "get", operation_id = "show_status_page")]
    async fn show(&self, slug: Path<String>) -> Result<Json<PageView>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let (page, _) = by_slug(&self.state, &slug).await?;
        Ok(Json(PageView::from(&page)))
    }

    /// Change a status page
    #[oai(path = "/status-pages/:slug", method = "patch", operation_id = "update_status_page")]
    async fn update(
        &self,
        caller: Data<&Caller>,
        slug: Path<String>,
        body: JsonBody<UpdateStatusPage>,
    ) -> Result<Json<PageView>, Refusal<{ BODY | NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let (current, _) = by_slug(&self.state, &slug).await?;
        let input = body.0;
        let mut check = Validation::default();
        let slug = input.slug.and_then(|s| check.field("slug", Slug::parse(&s)));
        let title = input.title.and_then(|t| check.field("title", status_page::text(&t, MAX_TITLE_CHARS, false)));
        let description = input.description.and_then(|d| {
            if d.trim().is_empty() {
                Some(String::new())
            } else {
                check.field("description", status_page::text(&d, MAX_TEXT_CHARS, true))
            }
        });
        let logo_url = input.logo_url.and_then(|l| {
            if l.is_empty() {
                Some(String::new())
            } else {
                check.field("logo_url", status_page::logo_url(&l))
            }
        });
        let groups = input.groups.and_then(|g| groups(&mut check, g));
        check.finish()?;
        if let Some(groups) = &groups {
            known_websites(&self.state, groups).await?;
        }
        let command = PageCommand::Change { slug, title, description, logo_url, groups };
        match execute(&self.state, &caller, current.id, command).await? {
            Some(page) => Ok(Json(PageView::from(&page))),
            None => Err(ApiError::NotFound(format!("status page {} does not exist", current.slug)).into()),
        }
    }

    /// Delete a status page
    #[oai(path = "/status-pages/:slug", method = "delete", operation_id = "remove_status_page")]
    async fn remove(
        &self,
        caller: Data<&Caller>,
        slug: Path<String>,
    ) -> Result<Removed, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let (page, _) = by_slug(&self.state, &slug).await?;
        execute(&self.state, &caller, page.id, PageCommand::Remove).await?;
        Ok(Removed::Removed)
    }

    /// The public incidents of the page's websites (open, and of the last 90 days), newest first
    #[oai(path = "/status-pages/:slug/incidents", method = "get", operation_id = "status_page_incidents")]
    async fn incidents(
        &self,
        slug: Path<String>,
    ) -> Result<Json<Vec<IncidentView>>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let (page, _) = by_slug(&self.state, &slug).await?;
        let ids: Vec<Uuid> = page.websites().iter().map(|w| w.website_id).collect();
        let since = Utc::now() - Duration::days(90);
        let incidents = store::incidents(&self.state.pool, &ids, since, None).await?;
        Ok(Json(incidents.iter().map(IncidentView::from).collect()))
    }

    /// Post an update to an incident of one of the page's websites (and give it a public title)
    #[oai(path = "/status-pages/:slug/incidents/:id/updates", method = "post", operation_id = "post_incident_update")]
    async fn post_update(
        &self,
        caller: Data<&Caller>,
        slug: Path<String>,
        id: Path<String>,
        body: JsonBody<PostIncidentUpdate>,
    ) -> Result<Posted, Refusal<{ BODY | NOT_FOUND | UNAVAILABLE }>> {
        let (page, _) = by_slug(&self.state, &slug).await?;
        let id = parse_id(&id, "incident")?;
        let missing = || ApiError::NotFound(format!("incident {id} is not on status page {}", page.slug));
        let incident = store::incidents(&self.state.pool, &[], Utc::now(), Some(id)).await?.into_iter().next();
        let incident = incident.filter(|i| page.websites().iter().any(|w| w.website_id == i.website_id));
        let incident = incident.ok_or_else(missing)?;
        let input = body.0;
        let mut check = Validation::default();
        let status = check.field("status", IncidentStatus::parse(&input.status));
        let message = check.field("message", status_page::text(&input.message, MAX_TEXT_CHARS, true));
        let title = input.title.and_then(|t| check.field("title", status_page::text(&t, MAX_TITLE_CHARS, false)));
        check.finish()?;
        let (Some(status), Some(message)) = (status, message) else {
            return Err(ApiError::Internal("validated fields missing".into()).into());
        };
        // Updates only add to a timeline: no state to conflict with, so no
        // expected sequence (the detector writes the same subject).
        let event = status_page::post_update(incident.website_id, id, Uuid::now_v7(), status, message, title);
        let envelope = Envelope::new(event, Utc::now()).by(caller.actor.clone(), Some(caller.request_id));
        let seq = self.state.bus.publish(&envelope, None).await.map_err(ApiError::from)?;
        super::settle(&self.state, seq).await?;
        let updated = store::incidents(&self.state.pool, &[], Utc::now(), Some(id)).await?.into_iter().next();
        let updated = updated.ok_or_else(missing)?;
        Ok(Posted::Posted(Json(IncidentView::from(&updated))))
    }
}

/// The groups as sent, checked; refusals name `groups[i].name`,
/// `groups[i].websites[j].id`, ...
fn groups(check: &mut Validation, input: Vec<GroupInput>) -> Option<Vec<PageGroup>> {
    if input.len() > MAX_GROUPS {
        check.refuse("groups", format!("groups must have at most {MAX_GROUPS} entries"));
        return None;
    }
    let total: usize = input.iter().map(|g| g.websites.len()).sum();
    if total > MAX_WEBSITES {
        check.refuse("groups", format!("a page shows at most {MAX_WEBSITES} websites"));
        return None;
    }
    let before = check.count();
    let mut groups = Vec::with_capacity(input.len());
    for (i, group) in input.into_iter().enumerate() {
        let name = check.field(&format!("groups[{i}].name"), status_page::text(&group.name, MAX_TITLE_CHARS, false));
        let mut websites = Vec::with_capacity(group.websites.len());
        for (j, website) in group.websites.into_iter().enumerate() {
            let field = |part: &str| format!("groups[{i}].websites[{j}].{part}");
            let id = check.field(
                &field("id"),
                Uuid::parse_str(&website.id)
                    .map_err(|_| ValueError { message: format!("'{}' is not a website id", website.id) }),
            );
            let display = check.field(&field("name"), status_page::text(&website.name, MAX_TITLE_CHARS, false));
            if let (Some(website_id), Some(name)) = (id, display) {
                websites.push(PageWebsite { website_id, name, show_url: website.show_url.unwrap_or(false) });
            }
        }
        if let Some(name) = name {
            groups.push(PageGroup { name, websites });
        }
    }
    (check.count() == before).then_some(groups)
}

async fn known_websites(state: &ApiState, groups: &[PageGroup]) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = groups.iter().flat_map(|g| &g.websites).map(|w| w.website_id).collect();
    super::all_exist(state, super::Named::Websites, &ids, "groups").await
}

async fn by_slug(state: &ApiState, slug: &str) -> Result<(Page, u64), ApiError> {
    store::page_by_slug(&state.pool, slug)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("status page {slug} does not exist")))
}

async fn execute(state: &ApiState, caller: &Caller, id: Uuid, command: PageCommand) -> Result<Option<Page>, ApiError> {
    let subject = events::subject::status_page(id);
    for _ in 0..MAX_ATTEMPTS {
        let stored = store::page(&state.pool, id).await?;
        let current = stored.as_ref().map(|(p, _)| p.clone());
        let wanted = match &command {
            PageCommand::Create { slug, .. } => Some(slug),
            PageCommand::Change { slug, .. } => slug.as_ref(),
            PageCommand::Remove => None,
        };
        let owner = match wanted {
            Some(slug) => store::slug_owner(&state.pool, slug).await?,
            None => None,
        };
        let decided = status_page::decide(id, current.as_ref(), command.clone(), owner).map_err(|e| match e {
            PageError::NotFound(_) => ApiError::NotFound(e.to_string()),
            PageError::Exists(_) | PageError::SlugTaken(_) => ApiError::Conflict(e.to_string()),
        })?;
        let expected = stored.as_ref().map_or(0, |(_, seq)| *seq);
        if let Some(published) = super::publish_decided(state, caller, &subject, decided, expected).await? {
            return Ok(published.iter().fold(current, |p, e| status_page::apply(p, &e.event, e.occurred_at)));
        }
    }
    Err(ApiError::Conflict(format!("status page {id} is being changed concurrently; retry")))
}
