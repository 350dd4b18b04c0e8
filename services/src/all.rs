//! All services in one process, for local use: the projections, the API,
//! the scheduler, the detector, the notifier and one worker per known
//! region (a region added while it runs gets a worker within seconds). They
//! share one Postgres pool and one NATS connection. When a task fails the others are cancelled and the
//! reason is reported.

use crate::config::Config;
use crate::notification::Mailer;
use crate::worker::check::{Checker, CheckerOptions};
use crate::{api, cron, detector, notification, projector, runtime, worker};
use anyhow::Context;
use events::RegionName;
use projections::influx::Influx;
use std::collections::HashSet;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

type Task = (String, anyhow::Result<()>);

pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let pool = runtime::connect_db(&config.database_url, 32, &cancel).await?;
    let bus = runtime::connect_bus(&config).await?;
    let store = cron::connect_store(&config.redis_url, &cancel).await?;
    let influx = Influx::new(&config.influxdb.url, &config.influxdb.bucket, config.influxdb.token.as_deref());
    let checker = Checker::new(CheckerOptions {
        allow_private_targets: config.worker.allow_private_targets,
        ..Default::default()
    })
    .context("building the HTTP client")?;
    let mailer = Mailer::new(&config.smtp)?;

    let mut tasks: JoinSet<Task> = JoinSet::new();
    tasks.spawn({
        let (bus, pool, cancel) = (bus.clone(), pool.clone(), cancel.clone());
        async move { ("projector".into(), projector::run_all(bus, pool, influx, cancel).await) }
    });
    tasks.spawn({
        let (config, bus, pool, cancel) = (config.clone(), bus.clone(), pool.clone(), cancel.clone());
        async move { ("api".into(), api::serve(&config, bus, pool, cancel).await) }
    });
    tasks.spawn({
        let (cron_config, bus, pool, cancel) = (config.cron.clone(), bus.clone(), pool.clone(), cancel.clone());
        async move { ("cron".into(), cron::serve(cron_config, bus, pool, store, cancel).await) }
    });
    tasks.spawn({
        let (bus, pool, policy, cancel) = (bus.clone(), pool.clone(), config.detector, cancel.clone());
        async move { ("detector".into(), detector::serve(bus, pool, policy, cancel).await) }
    });
    tasks.spawn({
        let (bus, pool, settings, cancel) = (bus.clone(), pool.clone(), config.notify.clone(), cancel.clone());
        async move { ("notification".into(), notification::serve(bus, pool, mailer, settings, cancel).await) }
    });

    let mut started: HashSet<RegionName> = HashSet::new();
    let mut first_error = None;
    loop {
        // Start a worker for every region not yet served.
        match projections::postgres::regions(&pool).await {
            Ok(regions) => {
                for region in regions.into_iter().map(|r| r.name) {
                    if started.insert(region.clone()) {
                        let (settings, url, bus, checker, cancel) = (
                            config.worker.clone(),
                            config.redis_url.clone(),
                            bus.clone(),
                            checker.clone(),
                            cancel.clone(),
                        );
                        tasks.spawn(async move {
                            let name = format!("worker {region}");
                            (name, worker::serve(settings, &url, region, bus, checker, cancel).await)
                        });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing regions failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            Some(joined) = tasks.join_next() => {
                record(joined, &mut first_error);
                cancel.cancel();
                break;
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        record(joined, &mut first_error);
    }
    first_error.map_or(Ok(()), Err)
}

fn record(joined: Result<Task, tokio::task::JoinError>, first_error: &mut Option<anyhow::Error>) {
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
}
