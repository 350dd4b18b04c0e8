//! `/tokens` (admin), a website's `/history` and the `/audit` log. Tokens
//! are commands like any other ([`crate::access::tokens`]); history and
//! audit are read from the MONITOR stream itself ([`crate::audit`]).

use super::body::{parse_id, present, Bounded, JsonBody, Timestamp, Validation};
use super::error::{ApiError, Refusal, BAD_REQUEST, BODY, INVALID, NOT_FOUND, UNAVAILABLE};
use super::ApiState;
use crate::access::middleware::Caller;
use crate::access::tokens::{self, TokenCommandError};
use crate::audit::{self, AuditQuery};
use chrono::{DateTime, Utc};
use events::access::TokenError;
use events::history::Entry;
use events::{Actor, Scope, TokenName};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use serde::Deserialize;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Tags)]
pub enum Tag {
    /// API tokens (admin scope)
    Tokens,
    /// What happened, who did it: read from the event log itself
    Audit,
}

/// A token to create.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CreateToken {
    /// For people: who or what uses it (1 to 100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    name: String,
    /// `read` (every GET), `write` (read, and changes), `admin` (write, and tokens).
    #[oai(validator(pattern = "^(read|write|admin)$"))]
    scope: String,
    /// When it stops working (RFC 3339, in the future); absent: never.
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Token")]
pub struct TokenView {
    id: Uuid,
    name: String,
    scope: String,
    created_at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    expires_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    revoked_at: Option<Timestamp>,
    /// When it was last used, to within a minute (absent: not since this
    /// was recorded).
    #[oai(skip_serializing_if_is_none)]
    last_used_at: Option<Timestamp>,
}

/// A token just created, with its secret: shown only in this answer.
#[derive(Debug, Clone, Object)]
pub struct CreatedToken {
    id: Uuid,
    name: String,
    scope: String,
    created_at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    expires_at: Option<Timestamp>,
    /// Send as `Authorization: Bearer <secret>`. Stored nowhere: keep it.
    secret: String,
}

#[derive(ApiResponse)]
pub enum Created {
    /// The token and its secret.
    #[oai(status = 201, content_type = "application/json; charset=utf-8")]
    Created(Json<CreatedToken>),
}

#[derive(ApiResponse)]
pub enum Revoked {
    /// Revoked (also when it already was: nothing is recorded twice).
    #[oai(status = 204)]
    Revoked,
}

/// Who caused an event.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Actor")]
pub struct ActorView {
    /// `token`, `bootstrap` (the `ADMIN_TOKEN`), `system` or `unknown`
    /// (events older than actors).
    kind: String,
    #[oai(skip_serializing_if_is_none)]
    token_id: Option<Uuid>,
    /// The token's name.
    #[oai(skip_serializing_if_is_none)]
    name: Option<String>,
}

impl From<&Actor> for ActorView {
    fn from(actor: &Actor) -> Self {
        match actor {
            Actor::Token { token_id, name } => {
                ActorView { kind: "token".into(), token_id: Some(*token_id), name: Some(name.clone()) }
            }
            other => ActorView { kind: other.label().to_owned(), token_id: None, name: None },
        }
    }
}

/// One field an update changed.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Change")]
pub struct ChangeView {
    field: String,
    from: serde_json::Value,
    to: serde_json::Value,
}

/// One event of the log.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AuditEntry")]
pub struct EntryView {
    /// Its position in the MONITOR stream (the pagination cursor).
    seq: u64,
    event_id: Uuid,
    #[oai(rename = "type")]
    event_type: String,
    occurred_at: Timestamp,
    aggregate_id: String,
    actor: ActorView,
    /// The request that caused it (`X-Request-Id`).
    #[oai(skip_serializing_if_is_none)]
    request_id: Option<Uuid>,
    /// For updates: each changed field, before and after.
    changes: Vec<ChangeView>,
    /// The event's data.
    data: serde_json::Value,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        EntryView {
            seq: entry.seq,
            event_id: entry.event_id,
            event_type: entry.event_type.to_owned(),
            occurred_at: entry.occurred_at.into(),
            aggregate_id: entry.aggregate_id,
            actor: (&entry.actor).into(),
            request_id: entry.request_id,
            changes: entry.changes.into_iter().map(|c| ChangeView { field: c.field, from: c.from, to: c.to }).collect(),
            data: entry.data,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Clone, Object)]
pub struct AuditPage {
    items: Vec<EntryView>,
    /// Pass as `after` for the next page; absent at the end of the log.
    #[oai(skip_serializing_if_is_none)]
    next: Option<String>,
}

/// Newest or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum Order {
    Newest,
    Oldest,
}

pub struct AccessApi {
    pub state: Arc<ApiState>,
}

impl From<TokenCommandError> for ApiError {
    fn from(error: TokenCommandError) -> Self {
        match error {
            TokenCommandError::Refused(e @ TokenError::NotFound(_)) => ApiError::NotFound(e.to_string()),
            TokenCommandError::Refused(e @ TokenError::ExpiryInThePast) => {
                ApiError::invalid("expires_at", e.to_string())
            }
            TokenCommandError::Refused(e) => ApiError::Conflict(e.to_string()),
            TokenCommandError::Bus(e) => e.into(),
        }
    }
}

#[OpenApi]
impl AccessApi {
    /// Create a token (the answer carries its secret, shown only once)
    #[oai(path = "/tokens", method = "post", operation_id = "create_token", tag = "Tag::Tokens")]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<CreateToken>,
    ) -> Result<Created, Refusal<{ BODY | UNAVAILABLE }>> {
        let input = body.0;
        let mut check = Validation::default();
        let name = check.field("name", TokenName::parse(&input.name));
        let scope = check.field("scope", Scope::parse(&input.scope));
        let expires_at = input.expires_at;
        if expires_at.is_some_and(|at| at <= Utc::now()) {
            check.refuse("expires_at", "expires_at must be in the future");
        }
        check.finish()?;
        let (Some(name), Some(scope)) = (name, scope) else {
            return Err(ApiError::Internal("validated fields missing".into()).into());
        };
        let (token, secret, seq) =
            tokens::create(&self.state.bus, name, scope, expires_at, caller.actor.clone(), Some(caller.request_id))
                .await
                .map_err(ApiError::from)?;
        super::settle(&self.state, seq).await?;
        Ok(Created::Created(Json(CreatedToken {
            id: token.id,
            name: token.name.to_string(),
            scope: token.scope.to_string(),
            created_at: token.created_at.into(),
            expires_at: token.expires_at.map(Into::into),
            secret,
        })))
    }

    /// List tokens, newest first (never their secrets)
    #[oai(path = "/tokens", method = "get", operation_id = "list_tokens", tag = "Tag::Tokens")]
    async fn list(&self) -> Result<Json<Vec<TokenView>>, Refusal<UNAVAILABLE>> {
        let list = tokens::list(&self.state.pool).await.map_err(|e| ApiError::Unavailable(format!("postgres: {e}")))?;
        let used = self.state.access.authenticator().usage().all().await;
        Ok(Json(
            list.into_iter()
                .map(|t| TokenView {
                    id: t.id,
                    name: t.name,
                    scope: t.scope,
                    created_at: t.created_at.into(),
                    expires_at: t.expires_at.map(Into::into),
                    revoked_at: t.revoked_at.map(Into::into),
                    last_used_at: used.get(&t.id).copied().map(Into::into),
                })
                .collect(),
        ))
    }

    /// Revoke a token (refused by every API instance within a second)
    #[oai(path = "/tokens/:id", method = "delete", operation_id = "revoke_token", tag = "Tag::Tokens")]
    async fn revoke(
        &self,
        caller: Data<&Caller>,
        id: Path<String>,
    ) -> Result<Revoked, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let id = parse_id(&id, "token")?;
        if let Some(seq) = tokens::revoke(&self.state.bus, id, caller.actor.clone(), Some(caller.request_id))
            .await
            .map_err(ApiError::from)?
        {
            super::settle(&self.state, seq).await?;
        }
        Ok(Revoked::Revoked)
    }

    /// Every event of a website, oldest first, with who did it and what each change changed (removed websites too)
    #[oai(path = "/websites/:id/history", method = "get", operation_id = "website_history", tag = "Tag::Audit")]
    async fn history(&self, id: Path<String>) -> Result<Json<Vec<EntryView>>, Refusal<{ NOT_FOUND | UNAVAILABLE }>> {
        let id = parse_id(&id, "website")?;
        let history = audit::website_history(&self.state.bus, id).await.map_err(ApiError::from)?;
        if history.is_empty() {
            return Err(ApiError::NotFound(format!("website {id} has no history")).into());
        }
        Ok(Json(history.into_iter().map(Into::into).collect()))
    }

    /// Command events of the whole system (websites, regions, tokens), paginated by stream sequence
    #[oai(path = "/audit", method = "get", operation_id = "audit_log", tag = "Tag::Audit")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        /// The `next` of the previous page.
        after: Query<Option<Bounded<0, { i64::MAX }>>>,
        /// Entries per page, 1 to 500 (default 50).
        limit: Query<Option<Bounded<1, 500>>>,
        /// `newest` first (default) or `oldest` first.
        order: Query<Option<Order>>,
        /// Only events by this actor: a token's name, `bootstrap`, `system` or `unknown`.
        actor: Query<Option<String>>,
        /// Only events of this type, e.g. `WebsiteUpdated`.
        #[oai(name = "type")]
        event_type: Query<Option<String>>,
        /// Only events at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Only events before this time (RFC 3339).
        until: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<AuditPage>, Refusal<{ BAD_REQUEST | INVALID | UNAVAILABLE }>> {
        let query = AuditQuery {
            after: after.0.map(|a| a.check("after")).transpose()?.map(|a| a.unsigned_abs()),
            limit: limit.0.map(|l| l.check("limit")).transpose()?.map_or(50, |l| l.unsigned_abs() as usize),
            newest_first: order.0 != Some(Order::Oldest),
            actor: actor.0.filter(|a| !a.is_empty()),
            event_type: event_type.0.filter(|t| !t.is_empty()),
            since: since.0,
            until: until.0,
        };
        let page = audit::audit(&self.state.bus, &query).await.map_err(ApiError::from)?;
        Ok(Json(AuditPage {
            items: page.entries.into_iter().map(Into::into).collect(),
            next: page.next.map(|n| n.to_string()),
        }))
    }
}
