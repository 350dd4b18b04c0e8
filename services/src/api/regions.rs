//! `/regions`: the places websites are checked from. A region name is
//! unique: JetStream refuses a RegionAdded on a subject that already has one,
//! so two concurrent adds of one name cannot both succeed.

use super::body::{JsonBody, Timestamp};
use super::error::{ApiError, Refusal, BODY, CONFLICT, UNAVAILABLE};
use super::ApiState;
use crate::access::middleware::Caller;
use crate::bus::BusError;
use chrono::Utc;
use events::{region, Envelope, RegionName};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use projections::postgres;
use serde::Deserialize;
use std::sync::Arc;

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
        let exists = postgres::regions(&state.pool).await?.iter().any(|r| r.name == name);
        let mut view = None;
        for event in region::decide_add(name.clone(), exists)? {
            let envelope = Envelope::new(event, Utc::now()).by(caller.actor.clone(), Some(caller.request_id));
            let seq = match state.bus.publish(&envelope, Some(0)).await {
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
