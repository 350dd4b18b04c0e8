//! Access control for the API: who is calling, and may they do this.
//!
//! Every request except the public ones ([`is_public`]) must carry an API
//! token, as `Authorization: Bearer <secret>` or, for the dashboard, in the
//! HttpOnly session cookie. The secret is hashed (SHA-256) and looked up in
//! the token projection; `ADMIN_TOKEN` from the environment is an admin
//! token of its own whose actor is `bootstrap`. What a request needs
//! ([`required_scope`]) is decided from its method and path, in this one
//! place, by the [`middleware::Access`] middleware.
//!
//! A revoked token is refused within [`CACHE_TTL`] on every API instance:
//! lookups are cached that long, and no longer. Failed authentications are
//! counted per client address ([`limiter::FailureLimiter`]); past the limit
//! the address gets 429 without its credentials being checked.

pub mod limiter;
pub mod middleware;
pub mod session;
pub mod tokens;
pub mod usage;

use events::access::secret_hash;
use events::{Actor, Scope};
use rand::RngCore;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use usage::Usage;
use uuid::Uuid;

/// How long a token lookup is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_millis(500);
/// The name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "monitor_session";
/// Secrets start with this, so a leaked one is recognisable in logs and by
/// secret scanners.
pub const SECRET_PREFIX: &str = "wm_";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub actor: Actor,
    pub scope: Scope,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs an API token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the token is not valid (unknown, revoked or expired)")]
    Invalid,
    #[error("the token store is unavailable")]
    Unavailable,
}

/// A new token secret: `wm_` and 32 random bytes, URL-safe base64.
pub fn new_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What a request needs: reading is `read`; managing tokens is `admin`;
/// every other change is `write`.
pub fn required_scope(method: &poem::http::Method, path: &str) -> Scope {
    use poem::http::Method;
    if path == "/tokens" || path.starts_with("/tokens/") {
        return Scope::Admin;
    }
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        _ => Scope::Write,
    }
}

/// Requests anyone may make: health, the dashboard's files, the API
/// description and its docs, signing in or out, and the public status
/// pages and badges (which publish only what a page chose to show).
pub fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/" | "/docs" | "/openapi.json" | "/session")
        || path.starts_with("/assets/")
        || path.starts_with("/status/")
        || path.starts_with("/badge/")
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    scope: String,
    usable: bool,
}

/// Checks secrets against the token projection and `ADMIN_TOKEN`.
pub struct Authenticator {
    pool: PgPool,
    admin_hash: Option<String>,
    cache: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
    usage: Arc<Usage>,
}

impl Authenticator {
    pub fn new(pool: PgPool, redis: redis::Client, admin_token: Option<&str>) -> Self {
        Self {
            pool,
            admin_hash: admin_token.map(secret_hash),
            cache: Mutex::new(HashMap::new()),
            usage: Arc::new(Usage::new(redis)),
        }
    }

    /// When tokens were last used (see [`usage`]).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The caller holding `secret`, if the secret is a usable token.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal, AuthError> {
        let hash = secret_hash(secret);
        if self.admin_hash.as_deref().is_some_and(|admin| constant_time_eq(admin.as_bytes(), hash.as_bytes())) {
            return Ok(Principal { actor: Actor::Bootstrap, scope: Scope::Admin });
        }
        if let Some(cached) = self.cached(&hash) {
            return cached.map(|p| self.used(p)).ok_or(AuthError::Invalid);
        }
        let row: Option<TokenRow> = sqlx::query_as(
            "select id, name, scope, (revoked_at is null and (expires_at is null or expires_at > now())) as usable
             from tokens where secret_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "token lookup failed");
            AuthError::Unavailable
        })?;
        let principal = row.filter(|row| row.usable).and_then(|row| {
            let scope = Scope::parse(&row.scope).ok()?;
            Some(Principal { actor: Actor::Token { token_id: row.id, name: row.name }, scope })
        });
        self.remember(hash, principal.clone());
        principal.map(|p| self.used(p)).ok_or(AuthError::Invalid)
    }

    fn used(&self, principal: Principal) -> Principal {
        if let Actor::Token { token_id, .. } = &principal.actor {
            self.usage.touch(*token_id);
        }
        principal
    }

    fn cached(&self, hash: &str) -> Option<Option<Principal>> {
        let cache = self.cache.lock().ok()?;
        let (principal, at) = cache.get(hash)?;
        (at.elapsed() < CACHE_TTL).then(|| principal.clone())
    }

    fn remember(&self, hash: String, principal: Option<Principal>) {
        if let Ok(mut cache) = self.cache.lock() {
            // Bounded: stale entries go whenever the cache grows large.
            if cache.len() > 10_000 {
                cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            cache.insert(hash, (principal, Instant::now()));
        }
    }
}

/// Compares without an early exit, so timing does not tell how much of a
/// guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::Method;

    #[test]
    fn reading_needs_read_changing_needs_write_and_tokens_need_admin() {
        assert_eq!(required_scope(&Method::GET, "/websites"), Scope::Read);
        assert_eq!(required_scope(&Method::POST, "/websites"), Scope::Write);
        assert_eq!(required_scope(&Method::DELETE, "/websites/1"), Scope::Write);
        assert_eq!(required_scope(&Method::PATCH, "/regions"), Scope::Write);
        assert_eq!(required_scope(&Method::GET, "/tokens"), Scope::Admin);
        assert_eq!(required_scope(&Method::DELETE, "/tokens/1"), Scope::Admin);
        assert_eq!(required_scope(&Method::GET, "/tokensmith"), Scope::Read);
    }

    #[test]
    fn only_health_assets_docs_the_session_and_status_pages_are_public() {
        for path in [
            "/health",
            "/",
            "/assets/app.js",
            "/docs",
            "/openapi.json",
            "/session",
            "/status/acme",
            "/badge/x/status.svg",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/websites",
            "/monitor",
            "/regions",
            "/tokens",
            "/audit",
            "/healthz",
            "/assets",
            "/status-pages",
            "/status",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn secrets_are_long_random_and_recognisable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 43);
    }

    #[test]
    fn equal_hashes_compare_equal_and_others_do_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
