//! The REST API. Commands are validated, decided against the Postgres
//! projection and published as events ([`publish_decided`]); the API writes
//! no projected state (its only writes are operational: a channel's test
//! message into the outbox). After a command it waits (bounded by
//! `PROJECTION_WAIT_MS`) until the projection has applied the event, so a
//! client that POSTs then GETs sees its write.
//!
//! The routes are poem-openapi operations, so `/openapi.json` is generated
//! from the handlers and their types and cannot drift from what is served.
//! Beside them: the dashboard's files, `/session`, and `/metrics`
//! (Prometheus, a `read` token); every answer is counted by route template
//! and status ([`crate::metrics`]).

pub mod access;
pub mod alerts;
pub mod assets;
pub mod body;
pub mod channels;
pub mod error;
pub mod feed;
pub mod maintenance;
pub mod monitor;
pub mod paging;
pub mod regions;
pub mod status_pages;
pub mod status_public;
pub mod websites;
pub mod whatif;

use crate::access::middleware as access_control;
use crate::access::middleware::Access;
use crate::access::{session, Authenticator};
use crate::bus::{Bus, BusError};
use crate::config::ApiConfig;
use crate::Deps;
use anyhow::Context;
use chrono::Utc;
use error::Allowed;
use error::ApiError;
use events::{Actor, Envelope, Event, RegionAdded, RegionName};
use poem::endpoint::{make_sync, BoxEndpoint};
use poem::http::Method;
use poem::listener::TcpListener;
use poem::middleware::SetHeader;
use poem::middleware::Tracing;
use poem::{get, post, Endpoint, EndpointExt, IntoEndpoint, Response, Route, Server};
use poem_openapi::payload::Json;
use poem_openapi::types::Type;
use poem_openapi::{Object, OpenApi, OpenApiService, Tags};
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
    /// Authentication of this instance (its own token cache and failure
    /// counts).
    pub access: Access,
    /// Seals channel settings before they enter an event.
    pub sealer: crate::secrets::Sealer,
    /// Where the dashboard is (`PUBLIC_URL`), for links in messages.
    pub public_url: String,
    /// Cancelled when the server shuts down, so long-lived answers (the
    /// event stream) end instead of holding the shutdown up.
    pub shutdown: CancellationToken,
    /// The detector's thresholds, to recompute incidents as it would.
    pub detection: events::detection::Policy,
    /// Public status pages computed lately ([`status_public`]).
    pub status_pages: status_public::Cache,
}

impl ApiState {
    pub fn new(deps: Deps, config: &ApiConfig) -> Self {
        let admin_token = config.admin_token.as_ref().map(|t| t.expose());
        Self {
            access: Access::new(
                Authenticator::new(deps.pool.clone(), deps.redis.clone(), admin_token),
                config.secure_cookies,
            ),
            sealer: deps.sealer,
            public_url: config.public_url.clone(),
            bus: deps.bus,
            pool: deps.pool,
            influx: deps.influx,
            projection_wait: config.projection_wait,
            allow_private_targets: config.allow_private_targets,
            shutdown: CancellationToken::new(),
            detection: config.detection,
            status_pages: status_public::Cache::default(),
        }
    }
}

/// Every group of operations.
type Operations = (
    websites::WebsitesApi,
    regions::RegionsApi,
    monitor::MonitorApi,
    channels::ChannelsApi,
    alerts::AlertsApi,
    maintenance::MaintenanceApi,
    status_pages::StatusPagesApi,
    access::AccessApi,
    feed::FeedApi,
    HealthApi,
);

/// The operations of the API, for the router and the description.
fn operations(state: &Arc<ApiState>) -> OpenApiService<Operations, ()> {
    OpenApiService::new(
        (
            websites::WebsitesApi { state: state.clone() },
            regions::RegionsApi { state: state.clone() },
            monitor::MonitorApi { state: state.clone(), summary: Default::default() },
            channels::ChannelsApi { state: state.clone() },
            alerts::AlertsApi { state: state.clone() },
            maintenance::MaintenanceApi { state: state.clone() },
            status_pages::StatusPagesApi { state: state.clone() },
            access::AccessApi { state: state.clone() },
            feed::FeedApi { state: state.clone() },
            HealthApi { state: state.clone() },
        ),
        "Website monitor",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Register websites, see how their checks went. Errors are JSON: `{\"error\": code, \"message\", \"field\"?, \"errors\"?: [{field, message}]}`.")
}

/// The generated description, with what poem-openapi 5 cannot say itself:
/// request bodies refuse unknown fields (serde's `deny_unknown_fields`), and
/// the bearer-token security of every operation, taken from the access
/// rules the middleware enforces ([`crate::access::is_public`],
/// [`crate::access::required_scope`]), so the two cannot disagree.
pub fn description(state: &Arc<ApiState>) -> serde_json::Value {
    let mut spec: serde_json::Value = serde_json::from_str(&operations(state).spec()).unwrap_or_default();
    let strict = [
        websites::CreateWebsite::name(),
        websites::UpdateWebsite::name(),
        regions::CreateRegion::name(),
        access::CreateToken::name(),
        channels::CreateChannel::name(),
        channels::UpdateChannel::name(),
        maintenance::CreateWindow::name(),
        maintenance::UpdateWindow::name(),
        status_pages::CreateStatusPage::name(),
        status_pages::UpdateStatusPage::name(),
        status_pages::GroupInput::name(),
        status_pages::WebsiteInput::name(),
        status_pages::PostIncidentUpdate::name(),
    ];
    for name in strict {
        if let Some(schema) = spec["components"]["schemas"].get_mut(name.as_ref()).and_then(|s| s.as_object_mut()) {
            schema.insert("additionalProperties".into(), false.into());
        }
    }
    declare_security(&mut spec);
    spec
}

fn declare_security(spec: &mut serde_json::Value) {
    use serde_json::json;
    spec["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`read`, `write` or `admin` scope): `Authorization: Bearer <token>`."
    });
    let error = |description: &str| {
        json!({ "description": description,
                "content": { body::JSON: { "schema": { "$ref": "#/components/schemas/Error" } } } })
    };
    let Some(paths) = spec["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else { continue };
        for (method, operation) in operations.iter_mut() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            if crate::access::is_public(path) {
                operation["security"] = json!([]);
                continue;
            }
            operation["security"] = json!([{ "bearer": [] }]);
            let responses = &mut operation["responses"];
            responses["401"] = error("No token, a malformed one, or one unknown, revoked or expired");
            if crate::access::required_scope(&method, path) > events::Scope::Read {
                let needed = crate::access::required_scope(&method, path);
                responses["403"] = error(&format!("The token's scope is narrower than `{needed}`"));
            }
            let mut limited = error("Too many failed authentications from this address");
            limited["headers"] =
                json!({ "Retry-After": { "description": "Seconds to wait", "schema": { "type": "integer" } } });
            responses["429"] = limited;
        }
    }
}

/// The whole API as one endpoint, for the server and for in-process tests.
pub fn app(state: Arc<ApiState>) -> BoxEndpoint<'static> {
    let spec = description(&state);
    let mut allowed = Allowed::from_spec(&spec);
    for path in ["/", "/docs", "/openapi.json", "/assets/{name}"] {
        allowed.add(path, vec![Method::GET]);
    }
    allowed.add("/session", vec![Method::GET, Method::POST, Method::DELETE]);
    allowed.add("/metrics", vec![Method::GET]);
    for path in ["/status/{slug}", "/status/{slug}/feed.atom", "/status/{slug}/confirm", "/badge/{website}/{file}"] {
        allowed.add(path, vec![Method::GET]);
    }
    allowed.add("/status/{slug}/subscribe", vec![Method::POST]);
    allowed.add("/status/{slug}/unsubscribe", vec![Method::GET, Method::POST]);
    let access_control = state.access.clone();
    // The operations answer under the first segments of their paths
    // (`/websites`, `/monitor`, ...), the pages and the description beside.
    let prefixes: std::collections::BTreeSet<String> = spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.keys())
        .filter_map(|path| path.split('/').nth(1).map(|first| format!("/{first}")))
        .collect();
    let operations = Arc::new(operations(&state).into_endpoint());
    let spec = bytes::Bytes::from(serde_json::to_vec(&spec).unwrap_or_default());
    let allowed = Arc::new(allowed);
    prefixes
        .into_iter()
        .fold(Route::new(), |route, prefix| route.nest_no_strip(prefix, operations.clone()))
        .at("/", get(assets::index))
        .at("/docs", get(assets::docs))
        .at(
            "/openapi.json",
            get(make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .header("cache-control", "no-cache")
                    .body(spec.clone())
            })),
        )
        .at("/assets/:name", get(assets::asset))
        .at("/session", post(session::sign_in).get(session::current).delete(session::sign_out))
        // Behind the access rules like every read: a scraper sends a
        // `read` token (see crate::metrics).
        .at("/metrics", get(make_sync(|request| crate::metrics::response(&request))))
        .at("/status/:slug", get(status_public::serve_page))
        .at("/status/:slug/feed.atom", get(status_public::serve_feed))
        .at("/status/:slug/subscribe", post(status_public::serve_subscribe))
        .at("/status/:slug/confirm", get(status_public::serve_confirm))
        .at(
            "/status/:slug/unsubscribe",
            get(status_public::serve_unsubscribe_form).post(status_public::serve_unsubscribe),
        )
        .at("/badge/:website/:file", get(status_public::serve_badge))
        .data(state.clone())
        .data(access_control.clone())
        .with(access_control)
        .with(browser_hardening())
        .with(Tracing)
        .catch_all_error(|e| async move { error::from_poem(e) })
        .around(move |endpoint, request| {
            let allowed = allowed.clone();
            async move {
                let path = request.uri().path().to_owned();
                let method = request.method().clone();
                let started = std::time::Instant::now();
                let response = endpoint.get_response(request).await;
                let status = response.status().as_u16();
                crate::metrics::http_request(&method, allowed.template(&path), status, started.elapsed());
                Ok(allowed.complete(&path, response))
            }
        })
        .into_endpoint()
        .boxed()
}

/// Headers every answer carries: pages run only this server's scripts and
/// cannot be framed (the signed-in dashboard), responses are not sniffed
/// into another type, and no URL leaks to other sites.
fn browser_hardening() -> SetHeader {
    SetHeader::new()
        .overriding(
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        )
        .overriding("x-content-type-options", "nosniff")
        .overriding("referrer-policy", "same-origin")
        .overriding("x-frame-options", "DENY")
}

/// Makes sure a region exists, then serves on `API_HOST:API_PORT` until
/// cancelled.
pub async fn serve(deps: Deps, config: ApiConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    deps.database_ready(&cancel).await?;
    ensure_default_region(&deps.bus, &config.default_region).await?;
    let address = format!("{}:{}", config.host, config.port);
    let state = Arc::new(ApiState { shutdown: cancel.clone(), ..ApiState::new(deps, &config) });
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
    let envelope =
        Envelope::new(Event::RegionAdded(RegionAdded { region: region.clone() }), Utc::now()).by(Actor::System, None);
    match bus.publish(&envelope, Some(0)).await {
        Ok(_) => {
            tracing::info!(%region, "default region added");
            Ok(())
        }
        Err(BusError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Publishes the events a command decided, with optimistic concurrency:
/// the first expects the aggregate's last sequence to be `expected`, each
/// next one the sequence before it. Waits for the projection to show them
/// and returns them as published; `None` when someone else wrote first
/// (nothing was published): the caller decides again, against the state
/// the projection now shows.
pub(crate) async fn publish_decided(
    state: &ApiState,
    caller: &access_control::Caller,
    subject: &str,
    decided: Vec<Event>,
    mut expected: u64,
) -> Result<Option<Vec<Envelope>>, ApiError> {
    let mut published = Vec::with_capacity(decided.len());
    for event in decided {
        let envelope = Envelope::new(event, Utc::now()).by(caller.actor.clone(), Some(caller.request_id));
        match state.bus.publish(&envelope, Some(expected)).await {
            Ok(seq) => {
                expected = seq;
                published.push(envelope);
            }
            Err(BusError::Conflict) if published.is_empty() => {
                tracing::debug!(subject, "concurrent write; deciding again");
                let last = state.bus.last_subject_seq(subject).await?;
                settle(state, last).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !published.is_empty() {
        settle(state, expected).await?;
    }
    Ok(Some(published))
}

/// What a list of ids in a body names.
pub(crate) enum Named {
    Websites,
    Channels,
}

/// Refuses (422 naming `field`) ids among `ids` that name nothing.
pub(crate) async fn all_exist(state: &ApiState, named: Named, ids: &[uuid::Uuid], field: &str) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Ok(());
    }
    let (query, what) = match named {
        Named::Websites => ("select id from websites where id = any($1)", "website"),
        Named::Channels => ("select id from channels where id = any($1)", "channel"),
    };
    let found: Vec<uuid::Uuid> =
        sqlx::query_scalar(query).bind(ids).fetch_all(&state.pool).await.map_err(projections::Error::from)?;
    let unknown: Vec<String> = ids.iter().filter(|id| !found.contains(id)).map(ToString::to_string).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("no such {what}: {}", unknown.join(", "))))
    }
}

/// Waits for the projection to apply `seq`. Not seeing it in time is not an
/// error (the event is stored and will be applied); it is logged.
pub(crate) async fn settle(state: &ApiState, seq: u64) -> Result<(), ApiError> {
    if !cursor::wait_for(&state.pool, postgres::PROJECTION, seq, state.projection_wait).await? {
        tracing::warn!(seq, wait = ?state.projection_wait, "projection did not catch up in time");
    }
    Ok(())
}

#[derive(Tags)]
enum Tag {
    /// Whether the API can serve
    Health,
}

/// `{"status": "ok"}`.
#[derive(Object)]
struct HealthView {
    status: String,
}

struct HealthApi {
    state: Arc<ApiState>,
}

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Whether PostgreSQL and NATS are reachable (503 if not)
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Result<Json<HealthView>, error::Refusal<{ error::UNAVAILABLE }>> {
        let state = &self.state;
        sqlx::query("select 1")
            .execute(&state.pool)
            .await
            .map_err(|e| ApiError::Unavailable(format!("postgres: {e}")))?;
        let nats = state.bus.client.connection_state();
        if nats != async_nats::connection::State::Connected {
            return Err(ApiError::Unavailable(format!("nats: {nats:?}")).into());
        }
        Ok(Json(HealthView { status: "ok".into() }))
    }
}
