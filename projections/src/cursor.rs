//! Where each stream reader stands: one row per reader in
//! `projection_offsets` holding the last stream sequence it applied.
//!
//! A reader locks its row, checks it still stands where it thinks, writes,
//! and stores the new position in the same transaction as its writes; so a
//! crash loses only the open transaction, and two readers of one name (two
//! projectors, a projector and a replay) are serialised on the lock and can
//! never interleave their writes.

use crate::Result;
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

/// The stream sequence reader `name` has applied up to (0: nothing).
pub async fn offset(pool: &PgPool, name: &str) -> Result<u64> {
    let seq: Option<i64> = sqlx::query_scalar("select stream_seq from projection_offsets where name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(to_u64(seq.unwrap_or(0)))
}

/// Locks the position row of `name` (creating it at 0) for the rest of the
/// transaction and returns it; writers of one name are serialised here.
pub async fn lock(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<u64> {
    const LOCK: &str = "select stream_seq from projection_offsets where name = $1 for update";
    // The row is there but for a reader's first batch: it is created only
    // then, not tried on every batch.
    if let Some(stored) = sqlx::query_scalar::<_, i64>(LOCK).bind(name).fetch_optional(&mut **tx).await? {
        return Ok(to_u64(stored));
    }
    sqlx::query("insert into projection_offsets (name, stream_seq) values ($1, 0) on conflict do nothing")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    let stored: i64 = sqlx::query_scalar(LOCK).bind(name).fetch_one(&mut **tx).await?;
    Ok(to_u64(stored))
}

/// Stores the position of `name`; call with the row locked by [`lock`].
pub async fn store(tx: &mut Transaction<'_, Postgres>, name: &str, seq: u64) -> Result<()> {
    sqlx::query("update projection_offsets set stream_seq = $2, updated_at = now() where name = $1")
        .bind(name)
        .bind(to_i64(seq))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Waits until reader `name` has applied `seq`, up to `timeout`. Returns
/// whether it did; not seeing it in time is for the caller to judge.
pub async fn wait_for(pool: &PgPool, name: &str, seq: u64, timeout: Duration) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(2);
    loop {
        if offset(pool, name).await? >= seq {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

// Stream sequences are u64 in NATS and bigint in Postgres; they never come
// near 2^63, so the conversions saturate rather than fail.
pub(crate) fn to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}
