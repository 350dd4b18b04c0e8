//! The monitor's services. Each is a module with a `run` that takes its
//! configuration and a cancellation token; the binaries in `src/bin` are thin
//! wrappers, and `monitor` runs them all in one process.
//!
//! - [`api`]: REST commands become events; queries read the projections.
//! - [`projector`]: applies the MONITOR stream to Postgres.
//! - [`bus`]: JetStream connection, stream definitions, publishing.

pub mod all;
pub mod api;
pub mod bus;
pub mod config;
pub mod cron;
pub mod notification;
pub mod detector;
pub mod projector;
pub mod queue;
pub mod runtime;
pub mod worker;

pub use config::Config;
