//! The monitor's services. Each is a module with a `run` that takes its
//! configuration and a cancellation token; the binaries in `src/bin` are thin
//! wrappers, and `monitor` runs them all in one process.
//!
//! - [`api`]: REST commands become events; queries read the projections.
//! - [`projector`]: applies the streams to Postgres and InfluxDB.
//! - [`cron`]: per-region schedules in Redis; queues due checks.
//! - [`worker`]: checks queued websites, publishes CheckCompleted.
//! - [`detector`]: check results in, SiteDown/SiteUp out.
//! - [`notification`]: one email per outage and one per recovery.
//! - [`bus`], [`follow`], [`runtime`], [`queue`], [`config`]: what they share.

pub mod all;
pub mod api;
pub mod bus;
pub mod config;
pub mod cron;
pub mod detector;
pub mod follow;
pub mod notification;
pub mod projector;
pub mod queue;
pub mod runtime;
pub mod worker;

pub use config::Config;
