//! `/regions`: the places websites are checked from. A region name is
//! unique: adding and removing are decided against the last event on the
//! region's subject and published with that sequence as the expected one,
//! so two concurrent adds (or removes) of one name cannot both succeed.
//!
//! Removing a region (see [`events::region::decide_remove`]) first changes
//! each website checked from it (with that website's own expected
//! sequence), then records RegionRemoved; a conflict re-decides the whole
//! removal against the newer state, so a removal cut short is completed by
//! the next attempt.

use super::body::{JsonBody, Timestamp};
use super::error::{ApiError, Refusal, BAD_REQUEST, BODY, CONFLICT, NOT_FOUND, UNAVAILABLE};
use super::ApiState;
use crate::access::middleware::Caller;
use crate::bus::BusError;
use chrono::Utc;
use events::region::RemoveRegion;
use events::{region, Envelope, Event, RegionName};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use projections::postgres;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Removals re-decided after a concurrent write before answering 409.
const MAX_ATTEMPTS: usize = 3;

#[derive(Tags)]
pub enum Tag {
    /// Places websites are checked from
    Regions,
}

/// A region to add.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CreateRegion {
    /// 1 to 32 characters of `a-z`, `0-9` and `-`, not starting with `-`.
    #[oai(validator(pattern = "^[a-z0-9][a-z0-9-]{0,31}$"))]
    name: String,
}

/// A region.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Region")]
pub struct RegionView {
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(ApiResponse)]
pub enum Created {
    /// The region as added.
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Created(Json<RegionView>),
}

/// What removing a region did.
#[derive(Debug, Clone, Object)]
#[oai(rename = "RegionRemoval")]
pub struct RemovalView {
    /// The region removed.
    pub name: String,
    /// Websites no longer checked from it (they keep their other regions).
    pub websites_changed: Vec<Uuid>,
    /// Websites it was the only region of (`force=true`): paused and left
    /// without a region; give one a region and resume it to check it again.
    pub websites_paused: Vec<Uuid>,
}

pub struct RegionsApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Regions")]
impl RegionsApi {
    /// Add a region (409 if it exists)
    #[oai(path = "/regions", method = "post", operation_id = "create_region")]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<CreateRegion>,
    ) -> Result<Created, Refusal<{ BODY | CONFLICT | UNAVAILABLE }>> {
        let state = &self.state;
        // Not trimmed: the description's pattern admits no spaces.
        let name = RegionName::parse(&body.0.name).map_err(|e| ApiError::invalid("name", e.message))?;
        // Decided against the region's own last event: a removed region can
        // be added again.
        let last = state.bus.last_subject_event(&events::subject::region(&name)).await?;
        let exists = matches!(&last, Some((_, e)) if matches!(e.event, Event::RegionAdded(_)));
        let expected = last.map_or(0, |(seq, _)| seq);
        let mut view = None;
        for event in region::decide_add(name.clone(), exists)? {
            let envelope = Envelope::new(event, Utc::now()).by(caller.actor.clone(), Some(caller.request_id));
            let seq = match state.bus.publish(&envelope, Some(expected)).await {
                Ok(seq) => seq,
                Err(BusError::Conflict) => {
                    return Err(ApiError::Conflict(format!("region {name} already exists")).into())
                }
                Err(e) => return Err(ApiError::from(e).into()),
            };
            super::settle(state, seq).await?;
            view = Some(RegionView { name: name.to_string(), created_at: envelope.occurred_at.into() });
        }
        view.map(|v| Created::Created(Json(v)))
            .ok_or_else(|| ApiError::Internal("RegionAdded not decided".into()).into())
    }

    /// Remove a region: nothing is checked from it any more
    ///
    /// Websites checked from it drop it from their regions. A website it is
    /// the only region of makes the request 409 (naming it), unless
    /// `force=true`: then that website is paused and left without a region.
    /// Its incidents and response times stay readable; an outage still open
    /// in it ends at the removal. The last region cannot be removed (409).
    #[oai(path = "/regions/:name", method = "delete", operation_id = "remove_region")]
    async fn remove(
        &self,
        caller: Data<&Caller>,
        name: Path<String>,
        /// Pause the websites left without a region instead of refusing (default false).
        force: Query<Option<bool>>,
    ) -> Result<Json<RemovalView>, Refusal<{ BAD_REQUEST | NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        // A name that is not a region name names no region.
        let name =
            RegionName::parse(&name.0).map_err(|_| ApiError::NotFound(format!("region {} does not exist", name.0)))?;
        let command = RemoveRegion { region: name.clone(), force: force.0.unwrap_or(false) };
        Ok(Json(remove(&self.state, &caller, command).await?))
    }

    /// List regions by name
    #[oai(path = "/regions", method = "get", operation_id = "list_regions")]
    async fn list(&self) -> Result<Json<Vec<RegionView>>, Refusal<UNAVAILABLE>> {
        let regions = postgres::regions(&self.state.pool).await?;
        Ok(Json(
            regions
                .into_iter()
                .map(|r| RegionView { name: r.name.to_string(), created_at: r.created_at.into() })
                .collect(),
        ))
    }
}

/// Decides the removal against the region's last event and the websites
/// checked from it, publishes the events with optimistic concurrency and
/// waits for the projection to show them.
async fn remove(state: &ApiState, caller: &Caller, command: RemoveRegion) -> Result<RemovalView, ApiError> {
    let region = command.region.clone();
    let subject = events::subject::region(&region);
    for attempt in 1..=MAX_ATTEMPTS {
        let last = state.bus.last_subject_event(&subject).await?;
        let exists = matches!(&last, Some((_, e)) if matches!(e.event, Event::RegionAdded(_)));
        // The projection may lag the stream: the region's own subject says
        // whether it exists.
        let mut known: Vec<RegionName> =
            postgres::regions(&state.pool).await?.into_iter().map(|r| r.name).filter(|r| *r != region).collect();
        if exists {
            known.push(region.clone());
        }
        let stored = postgres::websites_in_region(&state.pool, &region).await?;
        let websites: Vec<_> = stored.iter().map(|s| s.website.clone()).collect();
        let decided = region::decide_remove(command.clone(), &known, &websites)?;
        let mut expected: HashMap<String, u64> =
            stored.iter().map(|s| (events::subject::website(s.website.id), s.stream_seq)).collect();
        expected.insert(subject.clone(), last.as_ref().map_or(0, |(seq, _)| *seq));
        let mut view = RemovalView { name: region.to_string(), websites_changed: vec![], websites_paused: vec![] };
        let mut reached = 0;
        let mut conflict = None;
        for event in decided {
            let envelope = Envelope::new(event, Utc::now()).by(caller.actor.clone(), Some(caller.request_id));
            let on = envelope.subject();
            match state.bus.publish(&envelope, expected.get(&on).copied()).await {
                Ok(seq) => {
                    expected.insert(on, seq);
                    reached = seq;
                    match &envelope.event {
                        Event::WebsitePaused(e) => view.websites_paused.push(e.website_id),
                        Event::WebsiteUpdated(e) if !view.websites_paused.contains(&e.website_id) => {
                            view.websites_changed.push(e.website_id)
                        }
                        _ => {}
                    }
                }
                Err(BusError::Conflict) => {
                    conflict = Some(on);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        match conflict {
            None => {
                super::settle(state, reached).await?;
                return Ok(view);
            }
            Some(on) => {
                // Someone changed a website (or the region) first: let the
                // projection catch up and decide again.
                tracing::debug!(%region, attempt, subject = on, "concurrent write; deciding the removal again");
                let latest = state.bus.last_subject_seq(&on).await?.max(reached);
                super::settle(state, latest).await?;
            }
        }
    }
    Err(ApiError::Conflict(format!("region {region} is being changed concurrently; retry")))
}
