//! Read models built from the event streams. Each Postgres projection is a
//! [`handler::Handler`]: it has a name, applies events in stream order, and
//! the runner stores the stream sequence it reached in the same transaction
//! as its writes; re-running an event it already applied is a no-op.
//! Dropping a projection and replaying its stream from sequence 1 gives the
//! same rows. No NATS here: the runner that feeds handlers lives in
//! `services`.

pub mod copy;
pub mod cursor;
pub mod handler;
pub mod indexes;
pub mod influx;
pub mod overview;
pub mod postgres;
pub mod status;
pub mod status_pages;

/// The projection's storage failed (as opposed to an event being refused).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("influxdb: {0}")]
    Influx(#[from] influx::InfluxError),
    #[error("stored row is not valid: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
