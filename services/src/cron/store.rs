//! The schedule in Redis (keys in [`crate::queue`]). Every change is a Lua
//! script, so it is atomic: applying an event (guarded by the website's
//! MONITOR sequence, so re-applying or applying out of order is harmless)
//! and claiming due checks (read due entries, move each to its next slot and
//! queue it, in one step, so two schedulers never queue one check twice).
//!
//! The scripts touch keys derived from their arguments (`due:<region>`,
//! `site:<id>`), which is fine on a single Redis; a Redis Cluster would need
//! hash tags.

use super::schedule;
use crate::queue::{self, OFFSET_KEY, REGIONS_KEY, REMOVED_REGIONS_KEY};
use events::website::Website;
use events::RegionName;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::sync::LazyLock;
use uuid::Uuid;

static UPSERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- ARGV: id, seq, url, timeout_ms, interval_ms, offset_ms, regions, first_due, now, paused, check
-- an empty url/timeout/interval/regions/paused/check argument keeps the stored value
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if cur >= tonumber(ARGV[2]) then return 0 end
if redis.call('HEXISTS', KEYS[1], 'removed') == 1 then return 0 end
local id, now = ARGV[1], tonumber(ARGV[9])
local old = redis.call('HMGET', KEYS[1], 'url', 'timeout_ms', 'interval_ms', 'offset_ms', 'regions', 'paused')
local function pick(new, stored) if new ~= '' then return new end return stored end
local url, timeout = pick(ARGV[3], old[1]), pick(ARGV[4], old[2])
local iv_s, off_s = pick(ARGV[5], old[3]), pick(ARGV[6], old[4])
local regions = pick(ARGV[7], old[5])
local paused = pick(ARGV[10], old[6] or '0')
local check = pick(ARGV[11], redis.call('HGET', KEYS[1], 'check') or '{}')
if not url or not timeout or not iv_s or not off_s or not regions then return -1 end
local iv, off = tonumber(iv_s), tonumber(off_s)
local old_iv = tonumber(old[3] or iv_s)
local new = {}
if paused ~= '1' then
  for r in string.gmatch(regions, '[^,]+') do new[r] = true end
end
for r in string.gmatch(old[5] or '', '[^,]+') do
  if not new[r] then redis.call('ZREM', 'due:' .. r, id) end
end
for r, _ in pairs(new) do
  local due = redis.call('ZSCORE', 'due:' .. r, id)
  if redis.call('SISMEMBER', 'regions:removed', r) == 1 then
    -- a website added while its region was being removed: never scheduled there
  elseif not due then
    redis.call('ZADD', 'due:' .. r, ARGV[8], id)
  elseif old_iv ~= iv then
    -- a shorter interval must not wait out the old, longer one
    local slot = now - ((now - off) % iv) + iv
    if slot < tonumber(due) then redis.call('ZADD', 'due:' .. r, slot, id) end
  end
end
redis.call('HSET', KEYS[1], 'url', url, 'timeout_ms', timeout, 'interval_ms', iv_s,
  'offset_ms', off_s, 'regions', regions, 'paused', paused, 'check', check, 'seq', ARGV[2])
return 1
"#,
    )
});

static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if cur >= tonumber(ARGV[2]) then return 0 end
if redis.call('HEXISTS', KEYS[1], 'removed') == 0 then
  local old = redis.call('HGET', KEYS[1], 'regions') or ''
  for r in string.gmatch(old, '[^,]+') do redis.call('ZREM', 'due:' .. r, ARGV[1]) end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'removed', '1', 'seq', ARGV[2])
return 1
"#,
    )
});

/// Forgets a removed region: out of the region set, its schedule and its
/// queues deleted, and marked removed so its workers stop and a late event
/// cannot schedule anything in it again.
static REMOVE_REGION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
return 1
"#,
    )
});

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
local now = tonumber(ARGV[1])
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for i = 1, #items, 2 do
  local id, due = items[i], items[i + 1]
  local s = redis.call('HMGET', 'site:' .. id, 'url', 'timeout_ms', 'interval_ms', 'offset_ms', 'removed', 'paused', 'check')
  if (not s[1]) or s[5] or s[6] == '1' then
    redis.call('ZREM', KEYS[1], id)
  else
    local iv, off = tonumber(s[3]), tonumber(s[4])
    redis.call('ZADD', KEYS[1], now - ((now - off) % iv) + iv, id)
    redis.call('XADD', KEYS[2], '*', 'id', id, 'url', s[1], 'timeout_ms', s[2],
      'scheduled_ms', string.format('%d', tonumber(due)), 'check', s[7] or '{}')
    n = n + 1
  end
end
return n
"#,
    )
});

static SET_OFFSET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if not cur and ARGV[2] ~= 'init' then return -1 end
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#,
    )
});

pub type Result<T> = std::result::Result<T, redis::RedisError>;

/// What a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This many checks were queued.
    Queued(u64),
    /// The region's queue is at its limit; nothing was claimed.
    QueueFull,
}

/// What an event changes about a website's schedule; `None` keeps the
/// stored value (a WebsiteUpdated carries only what changed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteChange {
    pub id: Uuid,
    pub url: Option<String>,
    pub timeout_ms: Option<u32>,
    pub interval_seconds: Option<u32>,
    pub regions: Option<Vec<RegionName>>,
    /// A paused website stays known but is in no region's schedule.
    pub paused: Option<bool>,
    /// The check settings as JSON.
    pub check: Option<String>,
}

impl SiteChange {
    pub fn full(website: &Website) -> Self {
        Self {
            id: website.id,
            url: Some(website.url.to_string()),
            timeout_ms: Some(website.timeout_ms.get()),
            interval_seconds: Some(website.interval_seconds.get()),
            regions: Some(website.regions.clone()),
            paused: Some(website.paused),
            check: Some(serde_json::to_string(&website.check).unwrap_or_else(|_| "{}".into())),
        }
    }
}

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The schedule already reflects this sequence or a later one.
    AlreadyApplied,
    /// A partial change for a website the schedule does not know.
    Unknown,
}

/// What moving the offset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetMove {
    Moved,
    AlreadyThere,
    /// There is no offset: Redis was flushed and the schedule must be rebuilt.
    Missing,
}

/// A website as the schedule knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub seq: u64,
    pub removed: bool,
    pub regions: Vec<String>,
}

#[derive(Clone)]
pub struct ScheduleStore {
    conn: ConnectionManager,
}

impl ScheduleStore {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn }
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Applies `change` as of MONITOR sequence `seq`.
    pub async fn upsert(&self, change: &SiteChange, seq: u64, now_ms: u64) -> Result<Applied> {
        let mut conn = self.conn.clone();
        let first_due = schedule::first_due(now_ms, change.id);
        let applied: i64 = upsert_invocation(change, seq, now_ms, first_due).invoke_async(&mut conn).await?;
        Ok(match applied {
            1 => Applied::Changed,
            0 => Applied::AlreadyApplied,
            _ => Applied::Unknown,
        })
    }

    /// Applies many full website states in one round trip. Unlike a single
    /// new website (checked within seconds), a bulk load schedules each at
    /// its slot, so rebuilding a million websites spreads their first checks
    /// over their intervals instead of firing them all at once. `last_checked`
    /// gives the oldest of a website's latest checks, when known: a rebuilt
    /// schedule makes up the one slot a lost schedule missed (see
    /// [`schedule::rebuilt_due`]).
    pub async fn upsert_many(
        &self,
        websites: &[(Website, u64)],
        now_ms: u64,
        last_checked: impl Fn(Uuid) -> Option<u64>,
    ) -> Result<()> {
        if websites.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.load_script(&UPSERT).ignore();
        for (website, seq) in websites {
            let interval_ms = u64::from(website.interval_seconds.get()) * 1000;
            let offset_ms = schedule::offset_ms(website.id, interval_ms);
            let first_due = schedule::rebuilt_due(now_ms, interval_ms, offset_ms, last_checked(website.id));
            pipe.invoke_script(&upsert_invocation(&SiteChange::full(website), *seq, now_ms, first_due)).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// Removes the website from every schedule, leaving a tombstone at `seq`.
    pub async fn remove(&self, id: Uuid, seq: u64) -> Result<bool> {
        let mut conn = self.conn.clone();
        let applied: i64 = REMOVE.key(queue::site_key(id)).arg(id.to_string()).arg(seq).invoke_async(&mut conn).await?;
        Ok(applied == 1)
    }

    /// A region as of the Postgres projection (rebuild, reconciliation): it
    /// does not revive a region marked removed, since the projection may
    /// not have applied the removal yet.
    pub async fn add_region(&self, region: &RegionName) -> Result<()> {
        let mut conn = self.conn.clone();
        conn.sadd::<_, _, ()>(REGIONS_KEY, region.as_str()).await
    }

    /// A region added (RegionAdded): also one removed before and added again.
    pub async fn region_added(&self, region: &RegionName) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().sadd(REGIONS_KEY, region.as_str()).ignore().srem(REMOVED_REGIONS_KEY, region.as_str()).ignore();
        pipe.query_async::<()>(&mut conn).await
    }

    /// A region removed (RegionRemoved): see [`REMOVE_REGION`].
    pub async fn remove_region(&self, region: &RegionName) -> Result<()> {
        let mut conn = self.conn.clone();
        REMOVE_REGION
            .key(REGIONS_KEY)
            .key(REMOVED_REGIONS_KEY)
            .key(queue::due_key(region))
            .key(queue::checks_key(region))
            .key(queue::dead_key(region))
            .arg(region.as_str())
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether `region` was removed (and not added again).
    pub async fn is_region_removed(&self, region: &RegionName) -> Result<bool> {
        let mut conn = self.conn.clone();
        queue::is_region_removed(&mut conn, region).await
    }

    /// The regions to schedule: known and not removed.
    pub async fn regions(&self) -> Result<Vec<RegionName>> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = conn.sdiff(&[REGIONS_KEY, REMOVED_REGIONS_KEY]).await?;
        let mut regions: Vec<RegionName> = names.iter().filter_map(|n| RegionName::parse(n).ok()).collect();
        regions.sort();
        Ok(regions)
    }

    /// Queues up to `max` checks of `region` due at `now_ms`, unless its
    /// queue already holds `max_queue` entries.
    pub async fn claim(&self, region: &RegionName, now_ms: u64, max: usize, max_queue: usize) -> Result<Claim> {
        let mut conn = self.conn.clone();
        let queued: i64 = CLAIM
            .key(queue::due_key(region))
            .key(queue::checks_key(region))
            .arg(now_ms)
            .arg(max)
            .arg(max_queue)
            .invoke_async(&mut conn)
            .await?;
        Ok(if queued < 0 { Claim::QueueFull } else { Claim::Queued(queued as u64) })
    }

    /// A region's queue: its entries (XLEN: waiting and being checked) and
    /// those handed to a worker and not yet acknowledged (XPENDING; 0 before
    /// a worker made the group).
    pub async fn queue_depth(&self, region: &RegionName) -> Result<(u64, u64)> {
        let mut conn = self.conn.clone();
        let key = queue::checks_key(region);
        let length: u64 = conn.xlen(&key).await?;
        let pending = match conn.xpending::<_, _, redis::streams::StreamPendingReply>(&key, queue::GROUP).await {
            Ok(reply) => u64::try_from(reply.count()).unwrap_or(u64::MAX),
            Err(e) if e.code() == Some("NOGROUP") => 0,
            Err(e) => return Err(e),
        };
        Ok((length, pending))
    }

    /// The MONITOR sequence the schedule reflects; `None` when Redis has no
    /// schedule (new or flushed) and it must be rebuilt.
    pub async fn offset(&self) -> Result<Option<u64>> {
        let mut conn = self.conn.clone();
        conn.get(OFFSET_KEY).await
    }

    /// Moves the offset forward. Only `init` may create it: after a flush,
    /// a follower must not make a half-empty schedule look complete.
    pub async fn set_offset(&self, seq: u64, init: bool) -> Result<OffsetMove> {
        let mut conn = self.conn.clone();
        let mode = if init { "init" } else { "advance" };
        let applied: i64 = SET_OFFSET.key(OFFSET_KEY).arg(seq).arg(mode).invoke_async(&mut conn).await?;
        Ok(match applied {
            1 => OffsetMove::Moved,
            0 => OffsetMove::AlreadyThere,
            _ => OffsetMove::Missing,
        })
    }

    /// Every website the schedule knows, live or tombstoned.
    pub async fn sites(&self) -> Result<HashMap<Uuid, Site>> {
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        {
            let mut iter: redis::AsyncIter<String> = conn.scan_match("site:*").await?;
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
        }
        let mut sites = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HMGET").arg(key).arg("seq").arg("removed").arg("regions");
            }
            let rows: Vec<(Option<u64>, Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
            for (key, (seq, removed, regions)) in chunk.iter().zip(rows) {
                let Some(id) = key.strip_prefix("site:").and_then(|id| Uuid::parse_str(id).ok()) else {
                    continue;
                };
                sites.insert(
                    id,
                    Site {
                        seq: seq.unwrap_or(0),
                        removed: removed.is_some(),
                        regions: regions
                            .unwrap_or_default()
                            .split(',')
                            .filter(|r| !r.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    },
                );
            }
        }
        Ok(sites)
    }

    /// Whether `id` has an entry in `region`'s schedule.
    pub async fn is_scheduled(&self, id: Uuid, region: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let score: Option<f64> = conn.zscore(format!("due:{region}"), id.to_string()).await?;
        Ok(score.is_some())
    }

    /// Schedules `id` in `region` if it is not (repairs a lost entry).
    pub async fn ensure_due(&self, id: Uuid, region: &str, now_ms: u64) -> Result<bool> {
        let mut conn = self.conn.clone();
        let added: i64 = redis::cmd("ZADD")
            .arg(format!("due:{region}"))
            .arg("NX")
            .arg(schedule::first_due(now_ms, id))
            .arg(id.to_string())
            .query_async(&mut conn)
            .await?;
        Ok(added == 1)
    }

    /// Drops a website the projection no longer has: its schedule entries
    /// and its hash (live or tombstone).
    pub async fn forget(&self, id: Uuid, regions: &[String]) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for region in regions {
            pipe.zrem(format!("due:{region}"), id.to_string()).ignore();
        }
        pipe.del(queue::site_key(id)).ignore();
        pipe.query_async::<()>(&mut conn).await
    }
}

fn upsert_invocation(change: &SiteChange, seq: u64, now_ms: u64, first_due: u64) -> redis::ScriptInvocation<'static> {
    let interval_ms = change.interval_seconds.map(|s| u64::from(s) * 1000);
    // An empty list is written as "," (no region), since "" keeps the stored one.
    let regions = change.regions.as_ref().map(|list| match list.as_slice() {
        [] => ",".to_owned(),
        list => list.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
    });
    let text = |value: Option<String>| value.unwrap_or_default();
    let mut invocation = UPSERT.prepare_invoke();
    invocation
        .key(queue::site_key(change.id))
        .arg(change.id.to_string())
        .arg(seq)
        .arg(text(change.url.clone()))
        .arg(text(change.timeout_ms.map(|t| t.to_string())))
        .arg(text(interval_ms.map(|i| i.to_string())))
        .arg(text(interval_ms.map(|i| schedule::offset_ms(change.id, i).to_string())))
        .arg(text(regions))
        .arg(first_due)
        .arg(now_ms)
        .arg(text(change.paused.map(|p| if p { "1" } else { "0" }.to_owned())))
        .arg(text(change.check.clone()));
    invocation
}
