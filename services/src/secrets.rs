//! Sealing: how channel secrets (chat webhook URLs, bot tokens, signing
//! secrets) are kept in events without being readable there. A sealed
//! value is `v1.` and the base64url of a random 24-byte nonce followed by
//! the XChaCha20-Poly1305 ciphertext of the value, under a 32-byte key.
//!
//! The key is the SHA-256 of `SECRET_KEY` when that is set; otherwise one
//! is made once, kept in Postgres (`secret_keys`) and shared by every
//! process of the system. Someone holding only the event stream cannot
//! read a channel's secrets either way; setting `SECRET_KEY` also keeps
//! the key out of the database (and is needed to rebuild a new database
//! from the stream with its secrets readable).

use crate::config::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::OnceCell;

const PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("reading the secret key: {0}")]
    Key(#[from] sqlx::Error),
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("a sealed value does not open with this system's key (was SECRET_KEY changed?)")]
    WrongKey,
}

/// Seals and opens values with the system's key.
#[derive(Clone)]
pub struct Sealer {
    key: Arc<OnceCell<[u8; 32]>>,
    pool: PgPool,
}

impl Sealer {
    /// A sealer with the key of `SECRET_KEY`, or (`None`) the one kept in
    /// Postgres, read when first needed.
    pub fn new(configured: Option<&Secret>, pool: PgPool) -> Sealer {
        let key = match configured {
            Some(secret) => OnceCell::new_with(Some(Sha256::digest(secret.expose().as_bytes()).into())),
            None => OnceCell::new(),
        };
        Sealer { key: Arc::new(key), pool }
    }

    async fn key(&self) -> Result<&[u8; 32], SealError> {
        self.key.get_or_try_init(|| stored_key(&self.pool)).await
    }

    pub async fn seal(&self, plain: &[u8]) -> Result<String, SealError> {
        let cipher = XChaCha20Poly1305::new(self.key().await?.into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = cipher.encrypt(XNonce::from_slice(&nonce), plain).map_err(|_| SealError::Malformed)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A secret derived from the system's key for `label` (base64url of an
    /// HMAC-SHA256): the same on every process and after a restart, so a
    /// link mailed long ago (a status page's unsubscribe link) still works
    /// though only its hash was recorded.
    pub async fn derive(&self, label: &str) -> Result<String, SealError> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key().await?).map_err(|_| SealError::Malformed)?;
        mac.update(b"derive:");
        mac.update(label.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    pub async fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.key().await?.into());
        cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| SealError::WrongKey)
    }
}

/// The key kept in Postgres, made by whichever process needs it first.
async fn stored_key(pool: &PgPool) -> Result<[u8; 32], SealError> {
    let mut fresh = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut fresh);
    sqlx::query("insert into secret_keys (id, key, created_at) values (1, $1, now()) on conflict (id) do nothing")
        .bind(fresh.as_slice())
        .execute(pool)
        .await?;
    let key: Vec<u8> = sqlx::query_scalar("select key from secret_keys where id = 1").fetch_one(pool).await?;
    key.try_into().map_err(|_| SealError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(key: &str) -> Sealer {
        // The pool is never used when the key is configured.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap_or_else(|e| panic!("{e}"));
        Sealer { key: Arc::new(OnceCell::new_with(Some(Sha256::digest(key.as_bytes()).into()))), pool }
    }

    #[tokio::test]
    async fn a_sealed_value_opens_with_the_same_key_only() {
        let one = sealer("first key, long enough");
        let sealed = one.seal(b"https://hooks.slack.com/services/T/B/secret").await.unwrap_or_default();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("secret"));
        assert_ne!(sealed, one.seal(b"https://hooks.slack.com/services/T/B/secret").await.unwrap_or_default());
        assert_eq!(
            one.open(&sealed).await.ok().as_deref(),
            Some(b"https://hooks.slack.com/services/T/B/secret".as_slice())
        );
        let other = sealer("second key, long enough");
        assert!(matches!(other.open(&sealed).await, Err(SealError::WrongKey)));
        assert!(matches!(one.open("v1.abc").await, Err(SealError::Malformed)));
        assert!(matches!(one.open("plain").await, Err(SealError::Malformed)));
    }
}
