//! The notifier: tells people and other services when a website goes down
//! and when it is back, through every channel the website uses.
//!
//! One alert when a website's outage starts and one when it is back, with
//! the downtime and every region affected. Whether the website is down is
//! [`events::outage`]'s verdict under its down policy: by default any
//! region, so the first region down starts the outage and the last one
//! back ends it. Destinations: the website's own `notify_emails` (or
//! `NOTIFY_DEFAULT_EMAIL` when it has no other), the channels it chose
//! (`channel_ids`) and the default channels ([`settings`]: email, signed
//! webhook, Slack, Discord, Teams, Telegram). Two loops:
//!
//! - [`plan`]: a [`projections::handler::Handler`] of `incidents.>` on
//!   MONITOR, driven by the runner; per batch, in one transaction, it
//!   updates the open outages, writes a delivery per destination into the
//!   outbox (keyed by event and channel, so a redelivered or replayed event
//!   never makes a second one), records each decision, and the runner
//!   stores its position with them.
//! - [`outbox`]: sends due deliveries ([`deliver`]) concurrently, a slow
//!   channel holding up only itself, retries failures with backoff for a
//!   day, and logs every attempt. A row is leased while it is being sent,
//!   so two senders do not send it twice; the only window for a duplicate
//!   is a crash between the endpoint accepting a message and the row being
//!   marked, and every message carries the event id (Message-ID,
//!   `webhook-id`) for that case.
//!
//! Confirmed subscribers of the public status pages showing the website
//! get one mail when its outage starts and one when it ends
//! ([`subscribers`]), under the same maintenance and age rules.
//!
//! Transitions older than `NOTIFY_MAX_AGE_MINUTES` are recorded without an
//! alert, so a replay, or a first start on old history, does not alert the
//! past.

pub mod deliver;
pub mod email;
pub mod message;
pub mod outbox;
pub mod plan;
pub mod settings;
pub mod subscribers;

pub use plan::POSITION;

use crate::config::NotifyConfig;
use crate::{runner, Deps};
use anyhow::Context;
use deliver::Transports;
use email::Mailer;
use outbox::Sender;
use plan::Planner;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Transitions per planning transaction.
const MAX_BATCH: usize = 256;

pub async fn serve(deps: Deps, settings: NotifyConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let mailer = Mailer::new(&settings.smtp)?;
    let transports = Transports::new(mailer, &settings.telegram_api, settings.allow_private_targets)
        .context("building the HTTP client")?;
    deps.database_ready(&cancel).await?;
    let Deps { bus, pool, sealer, .. } = deps;
    // The planner wakes the sender after committing new rows.
    let wake = Arc::new(Notify::new());
    let planner = Planner::new(settings, wake.clone()).with_sealer(sealer.clone());
    let sender = Sender { pool: pool.clone(), bus: bus.clone(), transports, sealer };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(runner::run(bus, pool, planner, MAX_BATCH, cancel.clone()));
    tasks.spawn(outbox::send_loop(sender, wake, cancel.clone()));
    while let Some(joined) = tasks.join_next().await {
        joined.context("notification task panicked")??;
    }
    Ok(())
}
