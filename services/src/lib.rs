//! The monitor's services. Each is a module with one entry point,
//! `serve(deps, own_config, cancel)`: [`Deps`] holds the connections, made
//! once per process; the binaries in `src/bin` are thin wrappers that build
//! them, and `monitor` runs every service in one process on one set.
//!
//! - [`api`]: REST commands become events; queries read the projections.
//! - [`projector`]: applies the streams to Postgres and InfluxDB.
//! - [`cron`]: per-region schedules in Redis; queues due checks.
//! - [`worker`]: checks queued websites, publishes CheckCompleted.
//! - [`detector`]: check results in, SiteDown/SiteUp out.
//! - [`notification`]: one email per outage and one per recovery.
//! - [`runner`]: the one loop driving every stream reader that keeps its
//!   position in Postgres (projections, detector, notifier's planner).
//! - [`bus`], [`deps`], [`follow`], [`runtime`], [`queue`], [`config`], [`metrics`],
//!   [`target`]: what they share.

pub mod access;
pub mod all;
pub mod api;
pub mod audit;
pub mod bus;
pub mod config;
pub mod cron;
pub mod deps;
pub mod detector;
pub mod follow;
pub mod metrics;
pub mod notification;
pub mod projector;
pub mod queue;
pub mod runner;
pub mod runtime;
pub mod secrets;
pub mod target;
pub mod whatif;
pub mod worker;

pub use config::Config;
pub use deps::Deps;

/// Every binary (and test) of the services allocates with mimalloc: checks
/// allocate and free many small buffers on many threads, where the system
/// allocator spends a sixth of a worker's time and contends on its locks.
/// Without transparent huge pages (`no_thp`): mimalloc would ask for them
/// on its arena, and then every page it hands back to the system and takes
/// again is 2 MiB the kernel zeroes; a replay spent a tenth of its CPU
/// there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
