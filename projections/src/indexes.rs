//! Indexes a replay sets aside while it fills or rewrites their tables row
//! by row, and builds again in one go when it ends.
//!
//! A replay adding 56,000 websites spends most of its time keeping six
//! indexes up row by row, and one recomputing every website's status
//! rewrites each row's entries in all of them (a status change is never a
//! HOT update: the status is indexed); building them afterwards takes a
//! fraction of that. What makes each again is kept in `deferred_indexes`,
//! in the same transaction as the drop, so a replay cut short leaves them
//! to whoever starts next.
//!
//! A replay holds [`REPLAY_LOCK`] for its whole run; an index is built
//! again only by a transaction that gets the lock shared, so never while a
//! replay is under way (the replay builds them when it ends).

use crate::Result;
use futures::{StreamExt, TryStreamExt};
use sqlx::{PgPool, Postgres, Transaction};

/// The advisory lock (by `hashtext`) a replay holds, exclusively, from
/// before its reset to its end. One for every handler: the set-aside
/// indexes are one list, whichever replay set them aside.
pub const REPLAY_LOCK: &str = "replay";

/// Indexes built at once: the machine's cores do the sorting, and
/// `CREATE INDEX`es of one table share its lock.
const BUILDS_AT_ONCE: usize = 2;

/// Sets aside the indexes of `tables` that no statement of a projection
/// relies on (all but the unique ones, which `on conflict` uses), within
/// `tx`; an index already set aside stays so.
pub async fn set_aside(tx: &mut Transaction<'_, Postgres>, tables: &[&str]) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = sqlx::query_scalar(
        "insert into deferred_indexes (name, statements)
         select i.indexrelid::regclass::text,
                array[pg_get_indexdef(i.indexrelid)] || array(
                    select format('alter index %s alter column %s set statistics %s',
                                  i.indexrelid::regclass, a.attnum, a.attstattarget)
                    from pg_attribute a
                    where a.attrelid = i.indexrelid and a.attstattarget > 0
                    order by a.attnum)
         from pg_index i
         where i.indrelid = any(select to_regclass(t)::oid from unnest($1::text[]) as t) and not i.indisunique
         on conflict (name) do nothing
         returning name",
    )
    .bind(tables)
    .fetch_all(&mut **tx)
    .await?;
    for name in names {
        // A name as the catalogue spells it, quoted where it must be.
        sqlx::query(&format!("drop index {name}")).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Builds the set-aside indexes, two at a time (`BUILDS_AT_ONCE`), each in a
/// transaction of its own with its statistics targets, unless a replay is
/// under way. One that exists already (built by a reader that got there
/// first) is left as it is.
pub async fn restore(pool: &PgPool) -> Result<()> {
    // The inverted (trigram) indexes first: they take longest, and the
    // others are built beside them.
    let names: Vec<String> =
        sqlx::query_scalar("select name from deferred_indexes order by statements[1] ilike '% using gin %' desc, name")
            .fetch_all(pool)
            .await?;
    futures::stream::iter(names)
        .map(|name| build(pool.clone(), name))
        .buffer_unordered(BUILDS_AT_ONCE)
        .try_collect()
        .await
}

async fn build(pool: PgPool, name: String) -> Result<()> {
    let mut tx = pool.begin().await?;
    let free: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock_shared(hashtext($1))")
        .bind(REPLAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !free {
        return Ok(());
    }
    // Each build on one process: [`BUILDS_AT_ONCE`] of them already share
    // the cores, and a build's parallel workers would only add their
    // start-up and the merge of their sorted runs.
    sqlx::query("set local max_parallel_maintenance_workers = 0").execute(&mut *tx).await?;
    // Locked, so that two readers starting together build it once.
    let statements: Option<Vec<String>> =
        sqlx::query_scalar("select statements from deferred_indexes where name = $1 for update")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(statements) = statements else { return Ok(()) };
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null").bind(&name).fetch_one(&mut *tx).await?;
    if !exists {
        for statement in &statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tracing::info!(index = name, "index built again after a replay");
    }
    sqlx::query("delete from deferred_indexes where name = $1").bind(&name).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
