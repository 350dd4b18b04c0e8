//! Token commands: create and revoke, decided by [`events::access`] against
//! the token's own events (read from the stream, not the projection, so two
//! concurrent revocations see each other) and published with the expected
//! last subject sequence; listing reads the projection.

use crate::audit;
use crate::bus::{Bus, BusError};
use chrono::{DateTime, Utc};
use events::access::{self, secret_hash, Token, TokenCommand, TokenError};
use events::{Actor, Envelope, Scope, TokenName};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum TokenCommandError {
    #[error(transparent)]
    Refused(#[from] TokenError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A token as listed: never its secret, nor the hash of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Creates a token; returns it and its secret (shown once, stored nowhere).
pub async fn create(
    bus: &Bus,
    name: TokenName,
    scope: Scope,
    expires_at: Option<DateTime<Utc>>,
    actor: Actor,
    request_id: Option<Uuid>,
) -> Result<(Token, String, u64), TokenCommandError> {
    let secret = super::new_secret();
    let id = Uuid::now_v7();
    let now = Utc::now();
    let command = TokenCommand::Create { id, name, scope, secret_hash: secret_hash(&secret), expires_at };
    let events = access::decide(None, command, now)?;
    let mut token = None;
    let mut seq = 0;
    for event in events {
        token = access::apply(token, &event, now);
        let envelope = Envelope::new(event, now).by(actor.clone(), request_id);
        seq = bus.publish(&envelope, Some(0)).await?;
    }
    let token = token.ok_or(TokenError::NotFound(id))?;
    Ok((token, secret, seq))
}

/// Revokes a token. Revoking one already revoked changes nothing and is
/// not an error (`Ok(None)`); two concurrent revocations publish one event.
pub async fn revoke(
    bus: &Bus,
    id: Uuid,
    actor: Actor,
    request_id: Option<Uuid>,
) -> Result<Option<u64>, TokenCommandError> {
    for _ in 0..3 {
        let events = audit::read(bus, &events::subject::token(id), 1, u64::MAX).await?;
        let last_seq = events.last().map_or(0, |(seq, _)| *seq);
        let state = events.iter().fold(None, |state, (_, e)| access::apply(state, &e.event, e.occurred_at));
        let decided = match access::decide(state.as_ref(), TokenCommand::Revoke, Utc::now()) {
            Ok(decided) => decided,
            Err(TokenError::AlreadyRevoked(_)) => return Ok(None),
            Err(TokenError::NotFound(_)) => return Err(TokenError::NotFound(id).into()),
            Err(e) => return Err(e.into()),
        };
        let mut published = None;
        for event in decided {
            let envelope = Envelope::new(event, Utc::now()).by(actor.clone(), request_id);
            match bus.publish(&envelope, Some(last_seq)).await {
                Ok(seq) => published = Some(seq),
                // Someone else changed the token meanwhile: decide again.
                Err(BusError::Conflict) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if published.is_some() {
            return Ok(published);
        }
    }
    Err(BusError::Conflict.into())
}

/// Every token, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<TokenView>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, scope, created_at, expires_at, revoked_at from tokens order by created_at desc, id",
    )
    .fetch_all(pool)
    .await
}
