//! The connections every service is built from, made once per process and
//! handed down: `serve(deps, own_config, cancel)` is the entry point of every
//! service, whether it runs alone or in the all-in-one `monitor`.
//!
//! NATS is connected (and the stream definitions applied) at once; Postgres,
//! Redis and InfluxDB are opened lazily, so a service never needs a server
//! it does not use (a worker far from the database needs only NATS and
//! Redis). A service that uses Postgres calls [`Deps::database_ready`] first,
//! which waits for the server and applies the migrations.

use crate::bus::Bus;
use crate::config::Config;
use crate::runtime;
use crate::secrets::Sealer;
use anyhow::Context;
use projections::influx::Influx;
use redis::aio::ConnectionManager;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Deps {
    pub bus: Bus,
    pub pool: PgPool,
    pub redis: redis::Client,
    pub influx: Influx,
    /// Seals and opens channel secrets ([`crate::secrets`]).
    pub sealer: Sealer,
}

impl Deps {
    /// Connects to NATS and prepares the other clients of `config`.
    pub async fn connect(config: &Config) -> anyhow::Result<Deps> {
        // Each statement is planned for the values it is run with. A
        // prepared statement's generic plan is made from the statistics of
        // the moment and kept until they change: one made just after a
        // replay emptied a table plans for an empty table while it fills
        // again (a status replay's lookup of 100,000 keys stalled for
        // minutes that way).
        let options = config
            .database_url
            .parse::<PgConnectOptions>()
            .context("DATABASE_URL")?
            .options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.database_pool_size)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let redis = redis_client(config)?;
        let influx = Influx::new(&config.influxdb.url, &config.influxdb.bucket, config.influxdb.token.as_deref())
            .with_retention_days(config.influxdb.retention_days);
        let bus = runtime::connect_bus(config).await?;
        let sealer = Sealer::new(config.secret_key.as_ref(), pool.clone());
        Ok(Deps { bus, pool, redis, influx, sealer })
    }

    /// Waits until Postgres answers, then applies the migrations (safe from
    /// several processes at once).
    pub async fn database_ready(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        runtime::retry("postgres", cancel, || sqlx::query("select 1").execute(&self.pool)).await?;
        projections::postgres::migrate(&self.pool).await.context("applying migrations")?;
        Ok(())
    }

    /// A Redis connection that reconnects by itself, once Redis answers.
    pub async fn redis_connection(&self, cancel: &CancellationToken) -> anyhow::Result<ConnectionManager> {
        runtime::retry("redis", cancel, || ConnectionManager::new(self.redis.clone())).await
    }
}

/// The Redis client of `REDIS_URL`: `rediss://` is TLS, trusting the CA of
/// `REDIS_CA_FILE` when set, else the system's roots.
fn redis_client(config: &Config) -> anyhow::Result<redis::Client> {
    runtime::install_tls_provider();
    let Some(ca_file) = &config.redis_ca_file else {
        return redis::Client::open(config.redis_url.as_str()).context("REDIS_URL");
    };
    let root_cert = std::fs::read(ca_file).with_context(|| format!("REDIS_CA_FILE: reading {}", ca_file.display()))?;
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
    redis::Client::build_with_tls(config.redis_url.as_str(), certificates).context("REDIS_URL with REDIS_CA_FILE")
}
