//! What every binary does the same way: logging, configuration, shutdown on
//! SIGINT/SIGTERM, connecting to Postgres and NATS (waiting for them if
//! they are not up yet), and serving Prometheus metrics on `METRICS_PORT`
//! when it is set.

use crate::bus::Bus;
use crate::config::Config;
use crate::deps::Deps;
use anyhow::Context;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Makes ring the process's TLS crypto provider, once. The build has two
/// (ring and aws-lc-rs, through different dependencies), and rustls then
/// wants a choice before async-nats or redis can build a TLS client.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is already installed: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Sets up `tracing` once; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Logs go to stderr (stdout is for a command's output, e.g. a new
    // token's secret), in colour only on a terminal: log files and journald
    // get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// The body of every binary: load `.env` and the configuration, connect
/// ([`Deps`]), run `service` until it ends or a signal asks it to, and report
/// why it ended. After a signal the process exits within [`SHUTDOWN_GRACE`]
/// whatever its servers do.
pub fn main<F, Fut>(name: &'static str, service: F) -> ExitCode
where
    F: FnOnce(Deps, Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    init_tracing();
    install_tls_provider();
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
    let code = runtime.block_on(async move {
        let cancel = shutdown_on_signal();
        let metrics = config.metrics.address();
        let work = async {
            let deps = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                deps = Deps::connect(&config) => deps?,
            };
            let pool = deps.pool.clone();
            let outcome = service(deps, config, cancel.clone()).await;
            // Each connection says goodbye (PostgreSQL logs one dropped
            // without it as a lost client); one a task still holds is not
            // waited for long.
            let _ = tokio::time::timeout(POOL_CLOSE, pool.close()).await;
            outcome
        };
        // Metrics are served from the start (also while waiting for the
        // servers); the exporter failing (its port taken) stops the process.
        let work = async {
            let Some(address) = metrics else { return work.await };
            let exporter = crate::metrics::serve(address, cancel.clone());
            tokio::pin!(work, exporter);
            tokio::select! {
                outcome = &mut work => outcome,
                outcome = &mut exporter => match outcome {
                    Err(e) => Err(e),
                    Ok(()) => work.await,
                },
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = deadline_after(&cancel, SHUTDOWN_GRACE) => {
                tracing::warn!(service = name, grace = ?SHUTDOWN_GRACE, "still busy after the shutdown grace period; exiting");
                Ok(())
            }
        };
        match outcome {
            Ok(()) => {
                tracing::info!(service = name, "stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(service = name, error = format!("{e:#}"), "failed");
                ExitCode::FAILURE
            }
        }
    });
    // Tasks still blocked on a dead server are abandoned, not awaited.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// How long a service may take to finish after SIGTERM before the process
/// exits anyway (a server that went away must not hold it up).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// How long a service that has finished waits for its database
/// connections to be closed.
const POOL_CLOSE: Duration = Duration::from_millis(500);

/// Completes `grace` after `cancel` fires.
async fn deadline_after(cancel: &CancellationToken, grace: Duration) {
    cancel.cancelled().await;
    tokio::time::sleep(grace).await;
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

/// How long the stream definitions are retried while JetStream does not
/// answer (a cluster electing its leaders after a restart).
const STREAMS_WAIT: Duration = Duration::from_secs(60);

/// Connects to NATS and applies the stream definitions.
pub async fn connect_bus(config: &Config) -> anyhow::Result<Bus> {
    let bus = Bus::connect_with(&config.nats_url, &config.nats).await.context("connecting to NATS")?;
    let started = std::time::Instant::now();
    loop {
        match bus.ensure_streams_replicated(config.checks_max_age, config.nats_replicas).await {
            Ok(()) => return Ok(bus),
            // A timeout is JetStream not ready yet (no stream leader), and
            // no peers for the replicas a cluster still forming (its other
            // servers not known yet); any other refusal (replicas on a
            // single server) will not pass.
            Err(e)
                if ["timed out", "peer offline"].iter().any(|m| e.to_string().contains(m))
                    && started.elapsed() < STREAMS_WAIT =>
            {
                tracing::warn!(error = %e, "JetStream is not ready yet; applying the stream definitions again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e).context("applying stream definitions (NATS_REPLICAS above 1 needs a cluster)");
            }
        }
    }
}

/// Exponential backoff between retries of a failing step: the delay doubles
/// from `min` up to `max` and returns to `min` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, current: min }
    }

    /// The delay the next [`Backoff::wait`] sleeps.
    pub fn delay(&self) -> Duration {
        self.current
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// Sleeps the current delay and doubles it; false when `cancel` fired
    /// first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        pause(delay, cancel).await
    }
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// Runs `attempt` until it succeeds (a server that is not up yet), with
/// backoff up to 5 s; an error when `cancel` fires first.
pub async fn retry<T, E, F, Fut>(what: &str, cancel: &CancellationToken, mut attempt: F) -> anyhow::Result<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => anyhow::bail!("cancelled while waiting for {what}"),
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(value) => return Ok(value),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff.delay(), "{what} is not reachable yet; retrying");
                if !backoff.wait(cancel).await {
                    anyhow::bail!("cancelled while waiting for {what}");
                }
            }
        }
    }
}

/// Sleeps `delay` unless cancelled first; returns false when cancelled.
pub async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
