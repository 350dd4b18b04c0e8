//! When each token was last used: operational state, not a fact of the
//! system (recording every request as an event would flood the log), kept
//! in Redis beside the schedule as a hash `tokens:last_used` (token id →
//! RFC 3339 time). Each API instance writes a token's time at most once a
//! minute, in the background; losing it (a flushed Redis) loses only this
//! hint, never access.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use uuid::Uuid;

const KEY: &str = "tokens:last_used";
/// A token's time is written at most this often per instance.
const EVERY: Duration = Duration::from_secs(60);

pub struct Usage {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    written: Mutex<HashMap<Uuid, Instant>>,
}

impl Usage {
    pub fn new(client: redis::Client) -> Self {
        Self { client, connection: OnceCell::new(), written: Mutex::new(HashMap::new()) }
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.connection.get_or_try_init(|| ConnectionManager::new(self.client.clone())).await.cloned()
    }

    /// Whether `token` is due to have its time written (and marks it so).
    fn due(&self, token: Uuid) -> bool {
        let Ok(mut written) = self.written.lock() else { return false };
        match written.get(&token) {
            Some(at) if at.elapsed() < EVERY => false,
            _ => {
                written.insert(token, Instant::now());
                true
            }
        }
    }

    /// Records that `token` was used now; best effort, never waits.
    pub fn touch(self: &std::sync::Arc<Self>, token: Uuid) {
        if !self.due(token) {
            return;
        }
        let usage = self.clone();
        tokio::spawn(async move {
            let written = async {
                let mut conn = usage.connection().await?;
                conn.hset::<_, _, _, ()>(KEY, token.to_string(), Utc::now().to_rfc3339()).await
            };
            if let Err(e) = tokio::time::timeout(Duration::from_secs(5), written)
                .await
                .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::IoError, "timed out"))))
            {
                tracing::debug!(error = %e, "recording a token's last use failed");
            }
        });
    }

    /// Every token's last use, as far as known (empty if Redis is away).
    pub async fn all(&self) -> HashMap<Uuid, DateTime<Utc>> {
        let read = async {
            let mut conn = self.connection().await?;
            conn.hgetall::<_, HashMap<String, String>>(KEY).await
        };
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok(map)) => map
                .into_iter()
                .filter_map(|(id, at)| {
                    Some((id.parse().ok()?, DateTime::parse_from_rfc3339(&at).ok()?.with_timezone(&Utc)))
                })
                .collect(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading tokens' last use failed");
                HashMap::new()
            }
            Err(_) => HashMap::new(),
        }
    }
}
