//! `/regions`: the places websites are checked from. A region name is
//! unique: JetStream refuses a RegionAdded on a subject that already has one,
//! so two concurrent adds of one name cannot both succeed.

use super::body::read_json;
use super::error::ApiError;
use super::ApiState;
use crate::bus::BusError;
use chrono::{DateTime, Utc};
use events::{region, Envelope, RegionName};
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{handler, Body};
use projections::postgres;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRegion {
    name: String,
}

#[derive(Debug, Serialize)]
pub struct RegionView {
    pub name: RegionName,
    pub created_at: DateTime<Utc>,
}

#[handler]
pub async fn create(state: Data<&Arc<ApiState>>, body: Body) -> Result<(StatusCode, Json<RegionView>), ApiError> {
    let input: CreateRegion = read_json(body).await?;
    let name = RegionName::parse(input.name.trim()).map_err(|e| ApiError::invalid("name", e.message))?;
    let exists = postgres::regions(&state.pool).await?.iter().any(|r| r.name == name);
    let mut view = None;
    for event in region::decide_add(name.clone(), exists)? {
        let envelope = Envelope::new(event, Utc::now());
        let seq = match state.bus.publish(&envelope, Some(0)).await {
            Ok(seq) => seq,
            Err(BusError::Conflict) => return Err(ApiError::Conflict(format!("region {name} already exists"))),
            Err(e) => return Err(e.into()),
        };
        super::settle(&state, seq).await?;
        view = Some(RegionView { name: name.clone(), created_at: envelope.occurred_at });
    }
    view.map(|v| (StatusCode::CREATED, Json(v))).ok_or_else(|| ApiError::Internal("RegionAdded not decided".into()))
}

#[handler]
pub async fn list(state: Data<&Arc<ApiState>>) -> Result<Json<Vec<RegionView>>, ApiError> {
    let regions = postgres::regions(&state.pool).await?;
    Ok(Json(regions.into_iter().map(|r| RegionView { name: r.name, created_at: r.created_at }).collect()))
}
