//! `/monitor/:id/alerts`: why a website's people were (or were not)
//! alerted. For every SiteDown and SiteUp of the website: the verdict under
//! its down policy with the regions counted, which destinations were
//! planned or skipped and why, and each delivery with its attempts. Read
//! from the notifier's decisions (`alert_decisions`) and the outbox.

use super::body::{parse_id, Timestamp};
use super::channels::{deliveries_of, DeliveryView};
use super::error::{ApiError, Refusal, BAD_REQUEST, INVALID, NOT_FOUND, UNAVAILABLE};
use super::monitor::{parse_days, Days, Tag};
use super::ApiState;
use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use std::sync::Arc;
use uuid::Uuid;

/// One SiteDown or SiteUp and what the notifier made of it.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AlertDecision")]
pub struct AlertView {
    event_id: Uuid,
    /// `SiteDown` or `SiteUp`.
    #[oai(rename = "type")]
    event_type: String,
    /// The region that changed.
    region: String,
    occurred_at: Timestamp,
    /// The website's down policy when it was decided.
    down_policy: String,
    /// Regions down after this change, and how many the website has.
    regions_down: Vec<String>,
    regions_total: i32,
    /// `started` (the website went down under its policy), `ended` (it is
    /// up again) or `unchanged`.
    outcome: String,
    /// Whether any destination was sent (or is being sent) an alert.
    alerted: bool,
    /// Why nothing was sent, when nothing was: the policy was not met, the
    /// transition was older than `NOTIFY_MAX_AGE_MINUTES`, no destination...
    #[oai(skip_serializing_if_is_none)]
    suppressed: Option<String>,
    destinations: Vec<DestinationView>,
}

/// A destination of an alert.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AlertDestination")]
pub struct DestinationView {
    /// The channel (the nil UUID: the website's own `notify_emails`).
    channel_id: Uuid,
    name: String,
    #[oai(rename = "type")]
    kind: String,
    planned: bool,
    /// Why it was skipped (e.g. the channel is disabled).
    #[oai(skip_serializing_if_is_none)]
    reason: Option<String>,
    /// The delivery and its attempts, if one was planned.
    #[oai(skip_serializing_if_is_none)]
    delivery: Option<DeliveryView>,
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    event_id: Uuid,
    event_type: String,
    region: String,
    occurred_at: DateTime<Utc>,
    down_policy: String,
    regions_down: Vec<String>,
    regions_total: i32,
    outcome: String,
    suppressed: Option<String>,
    channels: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct Destination {
    channel_id: Uuid,
    name: String,
    kind: String,
    planned: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub struct AlertsApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Monitor")]
impl AlertsApi {
    /// Why the website's people were (or were not) alerted: every SiteDown/SiteUp of the last `days` (default 7), newest first
    #[oai(path = "/monitor/:id/alerts", method = "get", operation_id = "website_alerts")]
    async fn alerts(
        &self,
        id: Path<String>,
        /// 1 to 90 (default 7).
        days: Query<Option<Days>>,
    ) -> Result<Json<Vec<AlertView>>, Refusal<{ BAD_REQUEST | NOT_FOUND | INVALID | UNAVAILABLE }>> {
        let id = parse_id(&id, "website")?;
        let days = parse_days(days.0, 7)?;
        let state = &self.state;
        let db = |e: sqlx::Error| ApiError::from(projections::Error::from(e));
        let since = Utc::now() - chrono::Duration::days(i64::from(days));
        let rows: Vec<DecisionRow> = sqlx::query_as(
            "select event_id, event_type, region, occurred_at, down_policy, regions_down, regions_total,
                    outcome, suppressed, channels
             from alert_decisions where website_id = $1 and occurred_at >= $2
             order by occurred_at desc, event_id desc limit 1000",
        )
        .bind(id)
        .bind(since)
        .fetch_all(&state.pool)
        .await
        .map_err(db)?;
        if rows.is_empty() && projections::postgres::website(&state.pool, id).await?.is_none() {
            return Err(ApiError::NotFound(format!("website {id} does not exist")).into());
        }
        let event_ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let mut deliveries = deliveries_of(state, &event_ids).await?;
        let views = rows
            .into_iter()
            .map(|row| {
                let planned: Vec<Destination> = serde_json::from_value(row.channels).unwrap_or_default();
                let destinations: Vec<DestinationView> = planned
                    .into_iter()
                    .map(|d| {
                        let delivery = deliveries
                            .iter()
                            .position(|(event, channel, _)| *event == row.event_id && *channel == d.channel_id)
                            .map(|at| deliveries.swap_remove(at).2);
                        DestinationView {
                            channel_id: d.channel_id,
                            name: d.name,
                            kind: d.kind,
                            planned: d.planned,
                            reason: d.reason,
                            delivery,
                        }
                    })
                    .collect();
                AlertView {
                    event_id: row.event_id,
                    event_type: row.event_type,
                    region: row.region,
                    occurred_at: row.occurred_at.into(),
                    down_policy: row.down_policy,
                    regions_down: row.regions_down,
                    regions_total: row.regions_total,
                    alerted: row.suppressed.is_none() && destinations.iter().any(|d| d.planned),
                    outcome: row.outcome,
                    suppressed: row.suppressed,
                    destinations,
                }
            })
            .collect();
        Ok(Json(views))
    }
}
