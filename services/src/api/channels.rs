//! `/channels`: where alerts go besides a website's own emails. Channels
//! are commands like websites ([`events::channel`]): decided against the
//! projection, published with the channel's last sequence as the expected
//! one. Their settings are sealed before they enter an event
//! ([`crate::secrets`]); answers show only the masked `target`, and a
//! webhook's signing secret once, when it is created or rotated.
//!
//! The delivery log and "send a test message" read and write the outbox
//! ([`crate::notification::outbox`]) directly: a test message is not a
//! fact of the system, only a delivery.

use super::body::{name_as_sent, parse_id, present, Bounded, JsonBody, Timestamp, Validation};
use super::error::{ApiError, Refusal, BAD_REQUEST, BODY, CONFLICT, INVALID, NOT_FOUND, UNAVAILABLE};
use super::ApiState;
use crate::access::middleware::Caller;
use crate::notification::message::{self, Kind};
use crate::notification::outbox::{self, Planned};
use crate::notification::settings::{ChannelInput, ChannelSettings};
use chrono::{DateTime, Utc};
use events::channel::{self, Channel, ChannelCommand, ChannelError, Settings};
use events::{ChannelKind, ChannelName};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Commands re-decided after a concurrent write before answering 409.
const MAX_ATTEMPTS: usize = 3;
/// How long `POST /channels/:id/test` waits for the first attempt.
const TEST_WAIT: Duration = Duration::from_secs(8);

#[derive(Tags)]
pub enum Tag {
    /// Where alerts go: email lists, signed webhooks, Slack, Discord, Teams, Telegram
    Channels,
}

/// A channel to create. Which fields it needs depends on `type`: `email`
/// takes `emails`; `webhook`, `slack`, `discord` and `teams` take `url`
/// (for Slack, Discord and Teams their incoming-webhook URL); `telegram`
/// takes `bot_token` and `chat_id`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CreateChannel {
    /// For people (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    name: String,
    #[serde(rename = "type")]
    #[oai(rename = "type", validator(pattern = "^(email|webhook|slack|discord|teams|telegram)$"))]
    kind: String,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 2048))]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_items = 1, max_items = 20, max_length = 254))]
    emails: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 200))]
    bot_token: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 64))]
    chat_id: Option<String>,
    /// Every website's alerts go here too (default false).
    #[serde(default, deserialize_with = "present")]
    default: Option<bool>,
}

/// The fields to change; absent fields stay as they are. The type cannot
/// change.
#[derive(Debug, Default, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct UpdateChannel {
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_length = 1, max_length = 100))]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 2048))]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(min_items = 1, max_items = 20, max_length = 254))]
    emails: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 200))]
    bot_token: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[oai(validator(max_length = 64))]
    chat_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    default: Option<bool>,
    /// `true` turns a channel disabled by a 410 Gone back on.
    #[serde(default, deserialize_with = "present")]
    enabled: Option<bool>,
}

/// A channel as listed: never its secrets.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Channel")]
pub struct ChannelView {
    id: Uuid,
    name: String,
    #[oai(rename = "type")]
    kind: String,
    /// Where it sends, with secret parts masked.
    target: String,
    /// Every website's alerts go here.
    default: bool,
    enabled: bool,
    /// Why the system turned it off.
    #[oai(skip_serializing_if_is_none)]
    disabled_reason: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// A webhook's signing secret (`whsec_...`): only in the answer that
    /// created or rotated it. Verify deliveries with it (Standard Webhooks).
    #[oai(skip_serializing_if_is_none)]
    secret: Option<String>,
}

impl From<&Channel> for ChannelView {
    fn from(c: &Channel) -> Self {
        ChannelView {
            id: c.id,
            name: c.name.to_string(),
            kind: c.kind.to_string(),
            target: c.target.clone(),
            default: c.default,
            enabled: c.enabled,
            disabled_reason: c.disabled_reason.clone(),
            created_at: c.created_at.into(),
            updated_at: c.updated_at.into(),
            secret: None,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DeliveryAttempt")]
pub struct AttemptView {
    attempt: i32,
    at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    status_code: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    error: Option<String>,
    duration_ms: i32,
}

/// One message to one channel, with every attempt.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Delivery")]
pub struct DeliveryView {
    /// The event it tells of (for webhooks, `webhook-id`).
    event_id: Uuid,
    #[oai(skip_serializing_if_is_none)]
    website_id: Option<Uuid>,
    /// `down`, `up` or `test`.
    kind: String,
    /// `pending` (not yet sent, or to be retried), `delivered` or `failed`
    /// (given up: retried for 24 h, or the channel is gone or disabled).
    status: String,
    created_at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    delivered_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    failed_at: Option<Timestamp>,
    /// When it is tried next, while pending.
    #[oai(skip_serializing_if_is_none)]
    next_attempt_at: Option<Timestamp>,
    attempts: i32,
    #[oai(skip_serializing_if_is_none)]
    last_status_code: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    last_error: Option<String>,
    attempt_log: Vec<AttemptView>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    event_id: Uuid,
    channel_id: Uuid,
    website_id: Option<Uuid>,
    kind: String,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    next_attempt_at: DateTime<Utc>,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
}

#[derive(ApiResponse)]
pub enum Created {
    /// The channel; a webhook's with its signing secret (shown only here).
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Created(Json<ChannelView>),
}

#[derive(ApiResponse)]
pub enum Removed {
    /// Removed; websites that chose it no longer use it.
    #[oai(status = 204)]
    Removed,
}

pub struct ChannelsApi {
    pub state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Channels")]
impl ChannelsApi {
    /// Create a channel
    #[oai(path = "/channels", method = "post", operation_id = "create_channel")]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<CreateChannel>,
    ) -> Result<Created, Refusal<{ BODY | CONFLICT | UNAVAILABLE }>> {
        let input = body.0;
        let mut check = Validation::default();
        let name = check.field("name", channel_name(&input.name));
        let kind = check.field("type", ChannelKind::parse(&input.kind));
        let settings = kind.and_then(|kind| {
            let given = ChannelInput {
                url: input.url,
                emails: input.emails,
                bot_token: input.bot_token,
                chat_id: input.chat_id,
            };
            settle_settings(
                &mut check,
                ChannelSettings::from_input(kind, given, None, self.state.allow_private_targets),
            )
        });
        check.finish()?;
        let (Some(name), Some(kind), Some(settings)) = (name, kind, settings) else {
            return Err(ApiError::Internal("validated fields missing".into()).into());
        };
        refuse_private(&self.state, &settings).await?;
        let secret = settings.current_secret().map(str::to_owned);
        let sealed = seal(&self.state, &settings).await?;
        let id = Uuid::now_v7();
        let command = ChannelCommand::Add { name, kind, settings: sealed, default: input.default.unwrap_or(false) };
        let channel = execute(&self.state, &caller, id, command).await?;
        let mut view = ChannelView::from(&channel.ok_or_else(|| ApiError::Internal(format!("channel {id} missing")))?);
        view.secret = secret;
        Ok(Created::Created(Json(view)))
    }

    /// List channels, by name
    #[oai(path = "/channels", method = "get", operation_id = "list_channels")]
    async fn list(&self) -> Result<Json<Vec<ChannelView>>, Refusal<UNAVAILABLE>> {
        let rows: Vec<ChannelRow> = sqlx::query_as(&format!("{SELECT_CHANNELS} order by name, id"))
            .fetch_all(&self.state.pool)
            .await
            .map_err(projections::Error::from)
            .map_err(ApiError::from)?;
        let channels = rows.into_iter().map(decode).collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Json(channels.iter().map(|(channel, _)| ChannelView::from(channel)).collect()))
    }

    /// Show a channel
    #[oai(path = "/channels/:id", method = "get", operation_id = "show_channel")]
    async fn show(&self, id: Path<String>) -> Result<Json<ChannelView>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let id = parse_id(&id, "channel")?;
        let (channel, _) = existing(&self.state, id).await?;
        Ok(Json(ChannelView::from(&channel)))
    }

    /// Change some fields of a channel
    #[oai(path = "/channels/:id", method = "patch", operation_id = "update_channel")]
    async fn update(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
        body: JsonBody<UpdateChannel>,
    ) -> Result<Json<ChannelView>, Refusal<{ BODY | NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "channel")?;
        let input = body.0;
        let (current, _) = existing(&self.state, id).await?;
        let mut check = Validation::default();
        let name = input.name.and_then(|n| check.field("name", channel_name(&n)));
        let touches_settings =
            input.url.is_some() || input.emails.is_some() || input.bot_token.is_some() || input.chat_id.is_some();
        let mut settings = None;
        if touches_settings {
            let previous = open(&self.state, &current.sealed).await?;
            let mut given = keep(&previous);
            given.url = input.url.or(given.url);
            given.emails = input.emails.or(given.emails);
            given.bot_token = input.bot_token.or(given.bot_token);
            given.chat_id = input.chat_id.or(given.chat_id);
            let allow = self.state.allow_private_targets;
            settings =
                settle_settings(&mut check, ChannelSettings::from_input(current.kind, given, Some(&previous), allow));
        }
        check.finish()?;
        let sealed = match &settings {
            Some(settings) => {
                refuse_private(&self.state, settings).await?;
                Some(seal(&self.state, settings).await?)
            }
            None => None,
        };
        let command = ChannelCommand::Change { name, settings: sealed, default: input.default, enabled: input.enabled };
        match execute(&self.state, &caller, id, command).await? {
            Some(channel) => Ok(Json(ChannelView::from(&channel))),
            None => Err(ApiError::NotFound(format!("channel {id} does not exist")).into()),
        }
    }

    /// Remove a channel (websites that chose it stop using it)
    #[oai(path = "/channels/:id", method = "delete", operation_id = "remove_channel")]
    async fn remove(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Removed, Refusal<{ NOT_FOUND | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "channel")?;
        execute(&self.state, &caller, id, ChannelCommand::Remove).await?;
        Ok(Removed::Removed)
    }

    /// Give a webhook a new signing secret; the old one keeps signing for 24 hours
    #[oai(path = "/channels/:id/rotate-secret", method = "post", operation_id = "rotate_channel_secret")]
    async fn rotate(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Json<ChannelView>, Refusal<{ NOT_FOUND | INVALID | CONFLICT | UNAVAILABLE }>> {
        let id = parse_id(&id, "channel")?;
        let (current, _) = existing(&self.state, id).await?;
        let previous = open(&self.state, &current.sealed).await?;
        let Some((rotated, secret)) = previous.rotated(Utc::now()) else {
            return Err(ApiError::invalid(
                "type",
                format!("only webhooks have signing secrets; this is {}", current.kind),
            )
            .into());
        };
        let sealed = seal(&self.state, &rotated).await?;
        let command = ChannelCommand::Change { name: None, settings: Some(sealed), default: None, enabled: None };
        let channel = execute(&self.state, &caller, id, command)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("channel {id} does not exist")))?;
        let mut view = ChannelView::from(&channel);
        view.secret = Some(secret);
        Ok(Json(view))
    }

    /// Send a test message through the channel and answer with its delivery (waits up to 8 s for the first attempt)
    #[oai(path = "/channels/:id/test", method = "post", operation_id = "test_channel")]
    async fn test(&self, id: Path<String>) -> Result<Json<DeliveryView>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let id = parse_id(&id, "channel")?;
        let (channel, _) = existing(&self.state, id).await?;
        let event_id = Uuid::now_v7();
        let planned = Planned {
            event_id,
            channel_id: id,
            website_id: None,
            kind: Kind::Test,
            channel_kind: channel.kind,
            message: message::test_message(channel.kind, channel.name.as_str(), &self.state.public_url, Utc::now()),
        };
        let db = |e: sqlx::Error| ApiError::from(projections::Error::from(e));
        let mut tx = self.state.pool.begin().await.map_err(db)?;
        outbox::queue(&mut tx, &planned).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let deadline = tokio::time::Instant::now() + TEST_WAIT;
        loop {
            let deliveries = deliveries(&self.state, id, Some(event_id), 1).await?;
            let Some(delivery) = deliveries.into_iter().next() else {
                return Err(ApiError::Internal(format!("test delivery {event_id} missing")).into());
            };
            if delivery.attempts > 0 || delivery.status != "pending" || tokio::time::Instant::now() >= deadline {
                return Ok(Json(delivery));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The channel's deliveries, newest first, with every attempt
    #[oai(path = "/channels/:id/deliveries", method = "get", operation_id = "channel_deliveries")]
    async fn deliveries(
        &self,
        id: Path<String>,
        /// At most this many (default 50).
        limit: Query<Option<Bounded<1, 500>>>,
    ) -> Result<Json<Vec<DeliveryView>>, Refusal<{ BAD_REQUEST | NOT_FOUND | INVALID | UNAVAILABLE }>> {
        let id = parse_id(&id, "channel")?;
        let limit = limit.0.map(|l| l.check("limit")).transpose()?.unwrap_or(50);
        existing(&self.state, id).await?;
        Ok(Json(deliveries(&self.state, id, None, limit).await?))
    }
}

/// The deliveries of `channel_id` (or only `event_id`'s), newest first.
pub async fn deliveries(
    state: &ApiState,
    channel_id: Uuid,
    event_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryView>, ApiError> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "select event_id, channel_id, website_id, kind, created_at, delivered_at, failed_at, next_attempt_at,
                attempts, last_status_code, last_error
         from deliveries where channel_id = $1 and ($2::uuid is null or event_id = $2)
         order by created_at desc, event_id desc limit $3",
    )
    .bind(channel_id)
    .bind(event_id)
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(projections::Error::from)?;
    with_attempts(state, rows).await
}

/// The deliveries of the events `event_ids`, with their channel ids.
pub async fn deliveries_of(state: &ApiState, event_ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid, DeliveryView)>, ApiError> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "select event_id, channel_id, website_id, kind, created_at, delivered_at, failed_at, next_attempt_at,
                attempts, last_status_code, last_error
         from deliveries where event_id = any($1)",
    )
    .bind(event_ids)
    .fetch_all(&state.pool)
    .await
    .map_err(projections::Error::from)?;
    let keys: Vec<(Uuid, Uuid)> = rows.iter().map(|r| (r.event_id, r.channel_id)).collect();
    let views = with_attempts(state, rows).await?;
    Ok(keys.into_iter().zip(views).map(|((event, channel), view)| (event, channel, view)).collect())
}

async fn with_attempts(state: &ApiState, rows: Vec<DeliveryRow>) -> Result<Vec<DeliveryView>, ApiError> {
    let events: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let channels: Vec<Uuid> = rows.iter().map(|r| r.channel_id).collect();
    #[derive(sqlx::FromRow)]
    struct AttemptRow {
        event_id: Uuid,
        channel_id: Uuid,
        attempt: i32,
        at: DateTime<Utc>,
        status_code: Option<i32>,
        error: Option<String>,
        duration_ms: i32,
    }
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "select a.event_id, a.channel_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms
         from delivery_attempts a join unnest($1::uuid[], $2::uuid[]) as k(event_id, channel_id)
           on a.event_id = k.event_id and a.channel_id = k.channel_id
         order by a.attempt",
    )
    .bind(&events)
    .bind(&channels)
    .fetch_all(&state.pool)
    .await
    .map_err(projections::Error::from)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let status = if r.delivered_at.is_some() {
                "delivered"
            } else if r.failed_at.is_some() {
                "failed"
            } else {
                "pending"
            };
            let attempt_log = attempts
                .iter()
                .filter(|a| a.event_id == r.event_id && a.channel_id == r.channel_id)
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at: a.at.into(),
                    status_code: a.status_code,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect();
            DeliveryView {
                event_id: r.event_id,
                website_id: r.website_id,
                kind: r.kind,
                status: status.into(),
                created_at: r.created_at.into(),
                delivered_at: r.delivered_at.map(Into::into),
                failed_at: r.failed_at.map(Into::into),
                next_attempt_at: (status == "pending").then(|| r.next_attempt_at.into()),
                attempts: r.attempts,
                last_status_code: r.last_status_code,
                last_error: r.last_error,
                attempt_log,
            }
        })
        .collect())
}

fn channel_name(raw: &str) -> Result<ChannelName, events::ValueError> {
    name_as_sent(raw).and_then(ChannelName::parse)
}

/// A refused setting goes into the validation's list of refusals.
fn settle_settings(
    check: &mut Validation,
    settings: Result<ChannelSettings, crate::notification::settings::Refused>,
) -> Option<ChannelSettings> {
    match settings {
        Ok(settings) => Some(settings),
        Err(refused) => {
            check.refuse(refused.field, refused.message);
            None
        }
    }
}

/// The input that would make `settings` again, for an update that changes
/// only some of them.
fn keep(settings: &ChannelSettings) -> ChannelInput {
    match settings {
        ChannelSettings::Email { addresses } => ChannelInput { emails: Some(addresses.clone()), ..Default::default() },
        ChannelSettings::Webhook { url, .. }
        | ChannelSettings::Slack { url }
        | ChannelSettings::Discord { url }
        | ChannelSettings::Teams { url } => ChannelInput { url: Some(url.clone()), ..Default::default() },
        ChannelSettings::Telegram { bot_token, chat_id } => {
            ChannelInput { bot_token: Some(bot_token.clone()), chat_id: Some(chat_id.clone()), ..Default::default() }
        }
    }
}

/// A webhook URL the notifier would refuse to post to (SSRF guard) is
/// refused now, naming `url`.
async fn refuse_private(state: &ApiState, settings: &ChannelSettings) -> Result<(), ApiError> {
    if state.allow_private_targets {
        return Ok(());
    }
    match settings.url() {
        Some(url) => match crate::target::refused_target(url).await {
            Some(reason) => Err(ApiError::invalid("url", reason.replace("checks refuse", "alerts are not sent to"))),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

async fn seal(state: &ApiState, settings: &ChannelSettings) -> Result<Settings, ApiError> {
    let plain = serde_json::to_vec(settings).map_err(|e| ApiError::Internal(format!("channel settings: {e}")))?;
    let sealed = state.sealer.seal(&plain).await.map_err(|e| ApiError::Unavailable(format!("sealing: {e}")))?;
    Ok(Settings { target: settings.target(), sealed })
}

async fn open(state: &ApiState, sealed: &str) -> Result<ChannelSettings, ApiError> {
    let plain = state.sealer.open(sealed).await.map_err(|e| ApiError::Unavailable(format!("opening settings: {e}")))?;
    serde_json::from_slice(&plain).map_err(|e| ApiError::Internal(format!("channel settings: {e}")))
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: Uuid,
    name: String,
    kind: String,
    target: String,
    sealed: String,
    is_default: bool,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    stream_seq: i64,
}

/// The channel as projected, with the sequence of its last event.
const SELECT_CHANNELS: &str = "select id, name, kind, target, sealed, is_default, enabled, disabled_reason,
    created_at, updated_at, stream_seq from channels";

async fn load(state: &ApiState, id: Uuid) -> Result<Option<(Channel, u64)>, ApiError> {
    let row: Option<ChannelRow> = sqlx::query_as(&format!("{SELECT_CHANNELS} where id = $1"))
        .bind(id)
        .fetch_optional(&state.pool)
        .await
        .map_err(projections::Error::from)?;
    row.map(decode).transpose()
}

/// A projected channel and the sequence of its last event.
fn decode(row: ChannelRow) -> Result<(Channel, u64), ApiError> {
    let id = row.id;
    let corrupt = |e: events::ValueError| ApiError::Internal(format!("channel {id}: {e}"));
    let channel = Channel {
        id: row.id,
        name: ChannelName::parse(&row.name).map_err(corrupt)?,
        kind: ChannelKind::parse(&row.kind).map_err(corrupt)?,
        target: row.target,
        sealed: row.sealed,
        default: row.is_default,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    Ok((channel, u64::try_from(row.stream_seq).unwrap_or(0)))
}

async fn existing(state: &ApiState, id: Uuid) -> Result<(Channel, u64), ApiError> {
    load(state, id).await?.ok_or_else(|| ApiError::NotFound(format!("channel {id} does not exist")))
}

/// Decides `command` against the projected channel, publishes with
/// optimistic concurrency and waits for the projection. Returns the channel
/// as the events left it.
async fn execute(
    state: &ApiState,
    caller: &Caller,
    id: Uuid,
    command: ChannelCommand,
) -> Result<Option<Channel>, ApiError> {
    let subject = events::subject::channel(id);
    for _ in 0..MAX_ATTEMPTS {
        let stored = load(state, id).await?;
        let current = stored.as_ref().map(|(c, _)| c.clone());
        let decided = channel::decide(id, current.as_ref(), command.clone()).map_err(|e| match e {
            ChannelError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ChannelError::Exists(_) => ApiError::Conflict(e.to_string()),
        })?;
        let expected = stored.as_ref().map_or(0, |(_, seq)| *seq);
        if let Some(published) = super::publish_decided(state, caller, &subject, decided, expected).await? {
            return Ok(published.iter().fold(current, |c, e| channel::apply(c, &e.event, e.occurred_at)));
        }
    }
    Err(ApiError::Conflict(format!("channel {id} is being changed concurrently; retry")))
}
