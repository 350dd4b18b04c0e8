//! What every binary does the same way: logging, configuration, shutdown on
//! SIGINT/SIGTERM, and connecting to Postgres and NATS (waiting for them if
//! they are not up yet).

use crate::bus::Bus;
use crate::config::Config;
use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sets up `tracing` once; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// The body of every binary: load `.env` and the configuration, run
/// `service` until it ends or a signal asks it to, and report why it ended.
pub fn main<F, Fut>(name: &'static str, service: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_tracing();
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: .env: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let cancel = shutdown_on_signal();
        match service(config, cancel).await {
            Ok(()) => {
                tracing::info!(service = name, "stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(service = name, error = format!("{e:#}"), "failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// A token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
                        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
    cancel
}

/// Connects to Postgres, retrying every second until it answers or `cancel`
/// fires, then applies the migrations.
pub async fn connect_db(url: &str, max_connections: u32, cancel: &CancellationToken) -> anyhow::Result<PgPool> {
    let options = PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(10));
    let pool = loop {
        match options.clone().connect(url).await {
            Ok(pool) => break pool,
            Err(e) => {
                tracing::warn!(error = %e, "postgres is not reachable yet; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => anyhow::bail!("cancelled while waiting for postgres"),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    projections::postgres::migrate(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// Connects to NATS and applies the stream definitions.
pub async fn connect_bus(config: &Config) -> anyhow::Result<Bus> {
    let bus = Bus::connect(&config.nats_url).await.context("connecting to NATS")?;
    bus.ensure_streams(config.checks_max_age).await.context("applying stream definitions")?;
    Ok(bus)
}

/// Sleeps `delay` unless cancelled first; returns false when cancelled.
pub async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
