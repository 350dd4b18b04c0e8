//! All services in one process, for local use: the projections, the API,
//! the scheduler, the detector, the notifier and one worker per known
//! region (a region added while it runs gets a worker within seconds; the
//! worker of a removed region idles, see [`crate::worker`]). They
//! share one set of connections ([`Deps`]). When a task fails the others
//! are cancelled and the reason is reported.

use crate::config::Config;
use crate::{api, cron, detector, notification, projector, worker, Deps};
use events::RegionName;
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

type Task = (String, anyhow::Result<()>);

pub async fn serve(deps: Deps, config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    let mut tasks: JoinSet<Task> = JoinSet::new();
    start(&mut tasks, "projector", projector::serve(deps.clone(), config.projector.clone(), cancel.clone()));
    start(&mut tasks, "api", api::serve(deps.clone(), config.api.clone(), cancel.clone()));
    start(&mut tasks, "cron", cron::serve(deps.clone(), config.cron.clone(), cancel.clone()));
    start(&mut tasks, "detector", detector::serve(deps.clone(), config.detector, cancel.clone()));
    start(&mut tasks, "notification", notification::serve(deps.clone(), config.notify.clone(), cancel.clone()));

    let mut started: HashSet<RegionName> = HashSet::new();
    let mut first_error = None;
    loop {
        // Start a worker for every region not yet served.
        match projections::postgres::regions(&deps.pool).await {
            Ok(regions) => {
                for region in regions.into_iter().map(|r| r.name) {
                    if started.insert(region.clone()) {
                        let mut settings = config.worker.clone();
                        settings.region = Some(region.clone());
                        let task = worker::serve(deps.clone(), settings, cancel.clone());
                        start(&mut tasks, &format!("worker {region}"), task);
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

fn start(tasks: &mut JoinSet<Task>, name: &str, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
    let name = name.to_owned();
    tasks.spawn(async move { (name, task.await) });
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
