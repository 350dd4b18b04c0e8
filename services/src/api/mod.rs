//! The REST API. Commands are validated, decided against the Postgres
//! projection and published as events; the API never writes Postgres. After
//! a command it waits (bounded by `PROJECTION_WAIT_MS`) until the projection
//! has applied the event, so a client that POSTs then GETs sees its write.

pub mod assets;
pub mod body;
pub mod error;
pub mod monitor;
pub mod regions;
pub mod websites;

use crate::bus::{Bus, BusError};
use crate::config::ApiConfig;
use crate::Deps;
use anyhow::Context;
use chrono::Utc;
use error::ApiError;
use events::{Envelope, Event, RegionAdded, RegionName};
use poem::endpoint::BoxEndpoint;
use poem::listener::TcpListener;
use poem::middleware::Tracing;
use poem::web::{Data, Json};
use poem::{get, handler, EndpointExt, IntoEndpoint, Route, Server};
use projections::influx::Influx;
use projections::{cursor, postgres};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct ApiState {
    pub bus: Bus,
    pub pool: PgPool,
    pub influx: Influx,
    pub projection_wait: Duration,
    /// Whether websites on loopback/private addresses are accepted (the
    /// workers would refuse to check them otherwise).
    pub allow_private_targets: bool,
}

impl ApiState {
    pub fn new(deps: Deps, config: &ApiConfig) -> Self {
        Self {
            bus: deps.bus,
            pool: deps.pool,
            influx: deps.influx,
            projection_wait: config.projection_wait,
            allow_private_targets: config.allow_private_targets,
        }
    }
}

/// The whole API as one endpoint, for the server and for in-process tests.
pub fn app(state: Arc<ApiState>) -> BoxEndpoint<'static> {
    Route::new()
        .at("/websites", get(websites::list).post(websites::create))
        .at("/websites/:id", get(websites::show).patch(websites::update).delete(websites::remove))
        .at("/regions", get(regions::list).post(regions::create))
        .at("/monitor", get(monitor::overview))
        .at("/monitor/:id", get(monitor::series))
        .at("/monitor/:id/downtime", get(monitor::downtime))
        .at("/monitor/:id/last_downtime", get(monitor::last_downtime))
        .at("/monitor/:id/uptime", get(monitor::uptime))
        .at("/health", get(health))
        .at("/", get(assets::index))
        .at("/docs", get(assets::docs))
        .at("/openapi.json", get(assets::openapi))
        .at("/assets/:name", get(assets::asset))
        .data(state)
        .with(Tracing)
        .catch_all_error(|e| async move { error::from_poem(e) })
        .into_endpoint()
        .boxed()
}

/// Makes sure a region exists, then serves on `API_HOST:API_PORT` until
/// cancelled.
pub async fn serve(deps: Deps, config: ApiConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    ensure_default_region(&deps.bus, &config.default_region).await?;
    let address = format!("{}:{}", config.host, config.port);
    let state = Arc::new(ApiState::new(deps, &config));
    tracing::info!(%address, "api listening");
    Server::new(TcpListener::bind(address.clone()))
        .run_with_graceful_shutdown(app(state), cancel.cancelled_owned(), Some(Duration::from_secs(5)))
        .await
        .with_context(|| format!("serving on {address}"))
}

/// A fresh system gets one region so the seed's `{url, name}` payload is
/// checked without set-up. Publishing is conditional on the region subjects
/// being empty, so two instances starting together add it once.
pub async fn ensure_default_region(bus: &Bus, region: &RegionName) -> Result<(), BusError> {
    if bus.last_subject_seq(events::subject::REGIONS).await? > 0 {
        return Ok(());
    }
    let envelope = Envelope::new(Event::RegionAdded(RegionAdded { region: region.clone() }), Utc::now());
    match bus.publish(&envelope, Some(0)).await {
        Ok(_) => {
            tracing::info!(%region, "default region added");
            Ok(())
        }
        Err(BusError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits for the projection to apply `seq`. Not seeing it in time is not an
/// error (the event is stored and will be applied); it is logged.
async fn settle(state: &ApiState, seq: u64) -> Result<(), ApiError> {
    if !cursor::wait_for(&state.pool, postgres::PROJECTION, seq, state.projection_wait).await? {
        tracing::warn!(seq, wait = ?state.projection_wait, "projection did not catch up in time");
    }
    Ok(())
}

#[handler]
async fn health(state: Data<&Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    sqlx::query("select 1").execute(&state.pool).await.map_err(|e| ApiError::Unavailable(format!("postgres: {e}")))?;
    let nats = state.bus.client.connection_state();
    if nats != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable(format!("nats: {nats:?}")));
    }
    Ok(Json(serde_json::json!({ "status": "ok" })))
}
