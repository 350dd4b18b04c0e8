//! The notifier: turns SiteDown and SiteUp into emails people can act on.
//!
//! One email when a website's outage starts and one when it is back, with
//! the downtime and every region affected. Whether the website is down is
//! [`events::outage`]'s verdict under its down policy: by default any
//! region, so the first region down starts the outage and the last one
//! back ends it. Two loops:
//!
//! - [`plan`]: a [`projections::handler::Handler`] of `incidents.>` on
//!   MONITOR, driven by the runner; per batch, in one transaction, it
//!   updates the open outages, writes the emails to send into the outbox
//!   (keyed by the event id, so a redelivered or replayed event never makes
//!   a second one) and the runner stores its position with them.
//! - [`outbox`]: sends outbox rows through [`channels`] (SMTP via lettre)
//!   and marks them sent; a failure is retried with exponential backoff (up
//!   to 5 minutes apart), never dropped. A row is leased while it is being
//!   sent, so two senders do not send it twice; the only window for a
//!   duplicate is a crash between the SMTP server accepting a message and
//!   the row being marked, and the message carries the event id as its
//!   Message-ID for that case.
//!
//! Transitions older than `NOTIFY_MAX_AGE_MINUTES` are recorded without an
//! email, so a replay, or a first start on old history, does not mail the
//! past.

pub mod channels;
pub mod outbox;
pub mod plan;

pub use plan::POSITION;

use crate::config::NotifyConfig;
use crate::{runner, Deps};
use anyhow::Context;
use channels::Mailer;
use plan::Planner;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Transitions per planning transaction.
const MAX_BATCH: usize = 256;

pub async fn serve(deps: Deps, settings: NotifyConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let mailer = Mailer::new(&settings.smtp)?;
    deps.database_ready(&cancel).await?;
    let Deps { bus, pool, .. } = deps;
    // The planner wakes the sender after committing new rows.
    let wake = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(runner::run(bus, pool.clone(), Planner::new(settings, wake.clone()), MAX_BATCH, cancel.clone()));
    tasks.spawn(outbox::send_loop(pool, mailer, wake, cancel.clone()));
    while let Some(joined) = tasks.join_next().await {
        joined.context("notification task panicked")??;
    }
    Ok(())
}
