//! Who may do what, and who did it: the actor recorded on every command
//! event, API token scopes, and the token aggregate (`decide`/`apply`).
//!
//! A token's secret never appears here: events carry only its SHA-256
//! hash, which is what the API compares against. Secrets are 32 random
//! bytes, so the hash cannot be reversed by guessing.

use crate::event::{Event, TokenCreated, TokenRevoked};
use crate::values::ValueError;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

/// Who caused an event. Events written before actors were recorded read
/// as `Unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A person or program holding an API token.
    Token { token_id: Uuid, name: String },
    /// The holder of the `ADMIN_TOKEN` secret from the environment (the
    /// first administrator of a fresh system, or a script).
    Bootstrap,
    /// The system itself: the scheduler, detector or notifier.
    System,
    #[default]
    Unknown,
}

impl Actor {
    pub fn is_unknown(&self) -> bool {
        matches!(self, Actor::Unknown)
    }

    /// How the actor reads in an audit log: the token's name, `bootstrap`,
    /// `system` or `unknown`.
    pub fn label(&self) -> &str {
        match self {
            Actor::Token { name, .. } => name,
            Actor::Bootstrap => "bootstrap",
            Actor::System => "system",
            Actor::Unknown => "unknown",
        }
    }
}

/// What a token allows. Each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read everything.
    Read,
    /// Read, and change websites, regions and other configuration.
    Write,
    /// Write, and manage tokens.
    Admin,
}

impl Scope {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input.trim() {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(ValueError::new(format!("scope must be read, write or admin, not {other:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    /// Whether a holder of `self` may do what needs `required`.
    pub fn allows(self, required: Scope) -> bool {
        self >= required
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's name, for people: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    /// See [`crate::values::name_text`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        crate::values::name_text(input).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a token secret, lowercase hex: what events and the
/// projection store instead of the secret.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A token as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: Uuid,
    pub name: TokenName,
    pub scope: Scope,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Token {
    /// Whether the token may be used at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenCommand {
    Create { id: Uuid, name: TokenName, scope: Scope, secret_hash: String, expires_at: Option<DateTime<Utc>> },
    Revoke,
}

/// Why a token command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token {0} does not exist")]
    NotFound(Uuid),
    #[error("token {0} already exists")]
    Exists(Uuid),
    #[error("token {0} is already revoked")]
    AlreadyRevoked(Uuid),
    #[error("expires_at must be in the future")]
    ExpiryInThePast,
}

/// Decides a token command against the token's current state (`None`: no
/// such token) at time `now`.
pub fn decide(state: Option<&Token>, command: TokenCommand, now: DateTime<Utc>) -> Result<Vec<Event>, TokenError> {
    match (state, command) {
        (Some(token), TokenCommand::Create { .. }) => Err(TokenError::Exists(token.id)),
        (None, TokenCommand::Create { id, name, scope, secret_hash, expires_at }) => {
            if expires_at.is_some_and(|at| at <= now) {
                return Err(TokenError::ExpiryInThePast);
            }
            Ok(vec![Event::TokenCreated(TokenCreated { token_id: id, name, scope, secret_hash, expires_at })])
        }
        (None, TokenCommand::Revoke) => Err(TokenError::NotFound(Uuid::nil())),
        (Some(token), TokenCommand::Revoke) if token.revoked_at.is_some() => Err(TokenError::AlreadyRevoked(token.id)),
        (Some(token), TokenCommand::Revoke) => Ok(vec![Event::TokenRevoked(TokenRevoked { token_id: token.id })]),
    }
}

/// The token after `event`, which happened at `at`.
pub fn apply(state: Option<Token>, event: &Event, at: DateTime<Utc>) -> Option<Token> {
    match event {
        Event::TokenCreated(e) => Some(state.unwrap_or(Token {
            id: e.token_id,
            name: e.name.clone(),
            scope: e.scope,
            secret_hash: e.secret_hash.clone(),
            created_at: at,
            expires_at: e.expires_at,
            revoked_at: None,
        })),
        Event::TokenRevoked(_) => state.map(|token| Token { revoked_at: token.revoked_at.or(Some(at)), ..token }),
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).single().unwrap_or_default()
    }

    fn create(expires_at: Option<DateTime<Utc>>) -> TokenCommand {
        TokenCommand::Create {
            id: Uuid::nil(),
            name: TokenName::parse("ci").unwrap_or_else(|e| panic!("{e}")),
            scope: Scope::Write,
            secret_hash: secret_hash("s3cret"),
            expires_at,
        }
    }

    fn created() -> Token {
        let events = decide(None, create(None), now()).unwrap_or_else(|e| panic!("{e}"));
        events.iter().fold(None, |state, event| apply(state, event, now())).unwrap_or_else(|| panic!("no token"))
    }

    #[test]
    fn a_created_token_holds_the_hash_never_the_secret() {
        let token = created();
        assert_eq!(token.secret_hash, secret_hash("s3cret"));
        assert_ne!(token.secret_hash, "s3cret");
        assert_eq!(token.secret_hash.len(), 64);
        assert!(token.is_active(now()));
    }

    #[test]
    fn an_expiry_in_the_past_is_refused() {
        assert_eq!(decide(None, create(Some(now())), now()), Err(TokenError::ExpiryInThePast));
    }

    #[test]
    fn a_token_expires_at_its_expiry() {
        let expires = now() + chrono::Duration::hours(1);
        let events = decide(None, create(Some(expires)), now()).unwrap_or_else(|e| panic!("{e}"));
        let token = apply(None, &events[0], now()).unwrap_or_else(|| panic!("no token"));
        assert!(token.is_active(expires - chrono::Duration::seconds(1)));
        assert!(!token.is_active(expires));
    }

    #[test]
    fn a_revoked_token_is_inactive_and_cannot_be_revoked_twice() {
        let token = created();
        let events = decide(Some(&token), TokenCommand::Revoke, now()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(events, vec![Event::TokenRevoked(TokenRevoked { token_id: token.id })]);
        let revoked = apply(Some(token), &events[0], now()).unwrap_or_else(|| panic!("gone"));
        assert!(!revoked.is_active(now()));
        assert_eq!(decide(Some(&revoked), TokenCommand::Revoke, now()), Err(TokenError::AlreadyRevoked(revoked.id)));
    }

    #[test]
    fn revoking_an_unknown_token_is_refused() {
        assert!(matches!(decide(None, TokenCommand::Revoke, now()), Err(TokenError::NotFound(_))));
    }

    #[test]
    fn scopes_include_the_narrower_ones() {
        assert!(Scope::Admin.allows(Scope::Write) && Scope::Admin.allows(Scope::Read));
        assert!(Scope::Write.allows(Scope::Read) && !Scope::Write.allows(Scope::Admin));
        assert!(!Scope::Read.allows(Scope::Write));
        assert!(Scope::parse("owner").is_err());
        assert_eq!(Scope::parse(" read "), Ok(Scope::Read));
    }

    #[test]
    fn an_envelope_without_an_actor_reads_as_unknown() {
        #[derive(Deserialize)]
        struct WithActor {
            #[serde(default)]
            actor: Actor,
        }
        let old: WithActor = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(old.actor, Actor::Unknown);
        let token = Actor::Token { token_id: Uuid::nil(), name: "ci".into() };
        let json = serde_json::to_value(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["kind"], "token");
        assert_eq!(json["name"], "ci");
    }
}
