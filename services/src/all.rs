//! All services in one process: the projector and the API share one
//! Postgres pool and one NATS connection. When one task ends, the others are
//! cancelled and the reason is reported.

use crate::config::Config;
use crate::{api, projector, runtime};
use tokio_util::sync::CancellationToken;

pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let pool = runtime::connect_db(&config.database_url, 24, &cancel).await?;
    let bus = runtime::connect_bus(&config).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let (bus, pool, cancel) = (bus.clone(), pool.clone(), cancel.clone());
        async move { ("projector", projector::run(bus, pool, cancel).await) }
    });
    tasks.spawn({
        let (config, cancel) = (config.clone(), cancel.clone());
        async move { ("api", api::serve(&config, bus, pool, cancel).await) }
    });
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Ok(()))) => tracing::info!(task = name, "task ended"),
            Ok((name, Err(e))) => {
                tracing::error!(task = name, error = format!("{e:#}"), "task failed; stopping the others");
                first_error.get_or_insert(e.context(name));
            }
            Err(e) => {
                tracing::error!(error = %e, "task panicked; stopping the others");
                first_error.get_or_insert(anyhow::anyhow!("task panicked: {e}"));
            }
        }
        cancel.cancel();
    }
    first_error.map_or(Ok(()), Err)
}
