//! The public side of status pages, served without a token: the page
//! (`/status/<slug>`, server-rendered HTML that needs no JavaScript), its
//! data (`/status/<slug>.json`), an Atom feed of its incidents
//! (`/status/<slug>/feed.atom`), subscribing by email (double opt-in:
//! `subscribe`, `confirm`, `unsubscribe`), and badges of the websites it
//! shows (`/badge/<website>/status.svg`, `/badge/<website>/uptime.svg`).
//!
//! Guarantees:
//! - Only what a page publishes is public: a website's display name, its
//!   state, daily uptime and public incidents; its checked URL only when the
//!   page says `show_url`. A website on no page has no public route (404).
//!   Subscribers' addresses never appear. User text is escaped.
//! - Every answer carries an `ETag` and `Cache-Control: public, max-age=30`;
//!   `If-None-Match` with the current tag is 304. A page's data is computed
//!   once per [`SNAPSHOT_TTL`] per API instance from the maintained tables
//!   (incidents, pauses, maintenance windows; no InfluxDB), so a burst of
//!   visitors costs one computation.

use super::error::ApiError;
use super::ApiState;
use crate::access::limiter::FailureLimiter;
use crate::access::middleware::{client_address, Caller};
use crate::notification::subscribers;
use bytes::Bytes;
use chrono::{DateTime, Duration, DurationRound, Utc};
use events::access::secret_hash;
use events::maintenance::Window;
use events::status_page::{IncidentStatus, Page, PageWebsite, Subscriber};
use events::{Actor, DownPolicy, EmailAddress, Envelope, Event};
use poem::error::ResponseError;
use poem::http::{header, StatusCode};
use poem::web::{Data, Path, Query};
use poem::{handler, Body, Request, Response};
use projections::status_pages::{self as store, PageWebsiteRow, PublicIncident, SubscriberKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use uuid::Uuid;

/// How long a page's computed data is served before it is computed again.
pub const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Days of the uptime bar.
pub const DAYS: i64 = 90;
const CACHE_CONTROL: &str = "public, max-age=30";
/// Past incidents the HTML shows.
const PAST_SHOWN: usize = 20;

/// Subscriptions asked for per client address and minute: each mails a
/// stranger's address, so a script must not turn the system into a mailer.
pub const SUBSCRIPTIONS_PER_MINUTE: usize = 10;

/// Computed pages of this API instance, by slug: when one is stale, the
/// first request recomputes it while the others get the stale one, so a
/// burst never computes a page twice at once. And the subscriptions each
/// client address asked for lately.
pub struct Cache {
    pages: Mutex<HashMap<String, Cached>>,
    subscriptions: FailureLimiter,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            pages: Mutex::default(),
            subscriptions: FailureLimiter::new(SUBSCRIPTIONS_PER_MINUTE, std::time::Duration::from_secs(60)),
        }
    }
}

struct Cached {
    at: Instant,
    snapshot: Arc<Snapshot>,
    refreshing: bool,
}

/// A page's data and its three renderings, computed at one instant.
pub struct Snapshot {
    pub data: PageData,
    json: Bytes,
    html: Bytes,
    feed: Bytes,
}

/// The data of a page, as `/status/<slug>.json` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct PageData {
    pub slug: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// `operational`, `degraded`, `outage` or `maintenance`.
    pub status: &'static str,
    pub updated_at: DateTime<Utc>,
    pub groups: Vec<GroupData>,
    /// Open incidents first, then the recent ones (90 days), newest first.
    pub incidents: Vec<IncidentData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupData {
    pub name: String,
    pub websites: Vec<WebsiteData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebsiteData {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub status: &'static str,
    /// Over the 90 days of the bar (time before the website was added,
    /// paused or under maintenance not counted).
    pub uptime_percent: Option<f64>,
    /// Oldest first, today last.
    pub days: Vec<DayData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayData {
    pub date: String,
    /// `None`: no time counted that day (not yet added, paused, or under
    /// maintenance all day).
    pub uptime_percent: Option<f64>,
    pub down_seconds: i64,
    /// Titles of the public incidents of the day.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentData {
    pub id: Uuid,
    pub website_id: Uuid,
    pub website: String,
    pub title: String,
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: &'static str,
    pub ongoing: bool,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub updates: Vec<UpdateData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateData {
    pub status: &'static str,
    pub message: String,
    pub posted_at: DateTime<Utc>,
}

/// What every reader of a website's public state needs, loaded at once.
struct Facts {
    rows: HashMap<Uuid, PageWebsiteRow>,
    outages: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)>,
    pauses: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)>,
    windows: Vec<Window>,
}

impl Facts {
    async fn load(state: &ApiState, ids: &[Uuid], since: DateTime<Utc>) -> Result<Facts, ApiError> {
        let rows = store::page_websites(&state.pool, ids).await?;
        Ok(Facts {
            rows: rows.into_iter().map(|r| (r.id, r)).collect(),
            outages: store::region_outages(&state.pool, ids, since).await?,
            pauses: store::pauses(&state.pool, ids, since).await?,
            windows: projections::postgres::maintenance_windows(&state.pool, None).await?,
        })
    }

    /// The website's region outages as (start, end).
    fn intervals(&self, id: Uuid) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        self.outages.iter().filter(|(w, _, _)| *w == id).map(|(_, s, e)| (*s, *e)).collect()
    }

    /// Paused and maintenance time of `[from, to]`, merged.
    fn excluded(&self, id: Uuid, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut all = events::maintenance::excluded(&self.windows, id, from, to);
        all.extend(
            self.pauses
                .iter()
                .filter(|(w, _, _)| *w == id)
                .map(|(_, s, e)| ((*s).max(from), e.unwrap_or(to).min(to)))
                .filter(|(s, e)| s < e),
        );
        events::maintenance::merge(all)
    }

    fn policy(row: &PageWebsiteRow) -> (DownPolicy, usize) {
        (DownPolicy::parse(&row.down_policy).unwrap_or_default(), usize::try_from(row.regions).unwrap_or(1).max(1))
    }

    /// `operational`, `degraded` (a region down, not enough for its down
    /// policy), `outage` or `maintenance` (paused or in a window).
    fn status(&self, row: &PageWebsiteRow, now: DateTime<Utc>) -> &'static str {
        let (policy, regions) = Self::policy(row);
        let open = self.outages.iter().filter(|(w, _, e)| *w == row.id && e.is_none()).count();
        let maintenance = self.windows.iter().any(|w| w.covers(row.id) && w.active_at(now));
        if row.paused || maintenance {
            "maintenance"
        } else if events::outage::down_now(policy, open, regions) {
            "outage"
        } else if open > 0 {
            "degraded"
        } else {
            "operational"
        }
    }

    /// Uptime percent of `[from, to]` (from no earlier than the website was
    /// added) and the seconds down; `None` when no time counts.
    fn uptime(&self, row: &PageWebsiteRow, from: DateTime<Utc>, to: DateTime<Utc>) -> (Option<f64>, i64) {
        let from = from.max(row.created_at);
        if to <= from {
            return (None, 0);
        }
        let (policy, regions) = Self::policy(row);
        let excluded = self.excluded(row.id, from, to);
        let (total, down) =
            events::outage::counted_downtime(&self.intervals(row.id), policy, regions, from, to, &excluded);
        if total <= 0 {
            return (None, down);
        }
        (Some(((1.0 - down as f64 / total as f64) * 100_000.0).round() / 1000.0), down)
    }
}

/// The first instant of the day of `at` (UTC).
fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Duration::days(1)).unwrap_or(at)
}

fn incident_status(incident: &PublicIncident) -> IncidentStatus {
    match (incident.ended_at, incident.status) {
        (Some(_), _) => IncidentStatus::Resolved,
        (None, Some(status)) => status,
        (None, None) => IncidentStatus::Investigating,
    }
}

fn incident_title(incident: &PublicIncident, name: &str) -> String {
    match (&incident.title, incident.ended_at) {
        (Some(title), _) => title.clone(),
        (None, None) => format!("{name} is down"),
        (None, Some(_)) => format!("{name} was down"),
    }
}

/// Computes a page's data now.
async fn compute(state: &ApiState, page: &Page) -> Result<PageData, ApiError> {
    let now = Utc::now();
    let first_day = day_start(now) - Duration::days(DAYS - 1);
    let shown: Vec<&PageWebsite> = page.websites();
    let ids: Vec<Uuid> = shown.iter().map(|w| w.website_id).collect();
    let facts = Facts::load(state, &ids, first_day).await?;
    let names: HashMap<Uuid, &str> = shown.iter().map(|w| (w.website_id, w.name.as_str())).collect();
    let incidents = store::incidents(&state.pool, &ids, first_day, None).await?;
    let incidents: Vec<IncidentData> = incidents
        .iter()
        .filter(|i| facts.rows.contains_key(&i.website_id))
        .map(|i| {
            let name = names.get(&i.website_id).copied().unwrap_or_default();
            IncidentData {
                id: i.id,
                website_id: i.website_id,
                website: name.to_owned(),
                title: incident_title(i, name),
                status: incident_status(i).as_str(),
                ongoing: i.ended_at.is_none(),
                started_at: i.started_at,
                ended_at: i.ended_at,
                updates: i
                    .updates
                    .iter()
                    .map(|u| UpdateData {
                        status: u.status.as_str(),
                        message: u.message.clone(),
                        posted_at: u.posted_at,
                    })
                    .collect(),
            }
        })
        .collect();
    let website = |w: &PageWebsite| -> Option<WebsiteData> {
        let row = facts.rows.get(&w.website_id)?;
        let days = (0..DAYS)
            .map(|n| {
                let from = first_day + Duration::days(n);
                let to = (from + Duration::days(1)).min(now);
                let (uptime_percent, down_seconds) = facts.uptime(row, from, to);
                let incidents = incidents
                    .iter()
                    .filter(|i| {
                        i.website_id == w.website_id && i.started_at < to && i.ended_at.is_none_or(|e| e > from)
                    })
                    .map(|i| i.title.clone())
                    .collect();
                DayData { date: from.format("%Y-%m-%d").to_string(), uptime_percent, down_seconds, incidents }
            })
            .collect();
        Some(WebsiteData {
            id: w.website_id,
            name: w.name.clone(),
            url: w.show_url.then(|| row.url.clone()),
            status: facts.status(row, now),
            uptime_percent: facts.uptime(row, first_day, now).0,
            days,
        })
    };
    let groups: Vec<GroupData> = page
        .groups
        .iter()
        .map(|g| GroupData { name: g.name.clone(), websites: g.websites.iter().filter_map(website).collect() })
        .collect();
    let states: Vec<&str> = groups.iter().flat_map(|g| &g.websites).map(|w| w.status).collect();
    let status = if !states.is_empty() && states.iter().all(|s| *s == "outage") {
        "outage"
    } else if states.iter().any(|s| *s == "outage" || *s == "degraded") {
        "degraded"
    } else if states.contains(&"maintenance") {
        "maintenance"
    } else {
        "operational"
    };
    let mut incidents = incidents;
    incidents.sort_by_key(|i| (!i.ongoing, std::cmp::Reverse(i.started_at)));
    Ok(PageData {
        slug: page.slug.to_string(),
        title: page.title.clone(),
        description: page.description.clone(),
        logo_url: page.logo_url.clone(),
        status,
        updated_at: now,
        groups,
        incidents,
    })
}

/// The page's snapshot: from the cache while fresh, else computed.
async fn snapshot(state: &ApiState, slug: &str) -> Result<Option<Arc<Snapshot>>, ApiError> {
    if let Ok(mut pages) = state.status_pages.pages.lock() {
        if let Some(cached) = pages.get_mut(slug) {
            if cached.at.elapsed() < SNAPSHOT_TTL || cached.refreshing {
                return Ok(Some(cached.snapshot.clone()));
            }
            cached.refreshing = true;
        }
    }
    let computed = build(state, slug).await;
    if let Ok(mut pages) = state.status_pages.pages.lock() {
        match &computed {
            Ok(Some(snapshot)) => {
                if pages.len() > 1000 {
                    pages.retain(|_, cached| cached.at.elapsed() < SNAPSHOT_TTL);
                }
                let cached = Cached { at: Instant::now(), snapshot: snapshot.clone(), refreshing: false };
                pages.insert(slug.to_owned(), cached);
            }
            // Gone: no stale copy outlives the page.
            Ok(None) => {
                pages.remove(slug);
            }
            Err(_) => {
                if let Some(cached) = pages.get_mut(slug) {
                    cached.refreshing = false;
                }
            }
        }
    }
    computed
}

/// Computes and renders a page now (`None`: no such page).
async fn build(state: &ApiState, slug: &str) -> Result<Option<Arc<Snapshot>>, ApiError> {
    let Some((page, _)) = store::page_by_slug(&state.pool, slug).await? else { return Ok(None) };
    let data = compute(state, &page).await?;
    let json = Bytes::from(serde_json::to_vec(&data).map_err(|e| ApiError::Internal(e.to_string()))?);
    let html = Bytes::from(render_html(&data));
    let feed = Bytes::from(render_feed(&data, page.id, &state.public_url));
    Ok(Some(Arc::new(Snapshot { data, json, html, feed })))
}

fn etag(bytes: &[u8]) -> String {
    let hash = secret_hash(&String::from_utf8_lossy(bytes));
    format!("\"{}\"", &hash[..32])
}

/// 200 with `body`, or 304 when the client holds this version.
fn cached(req: &Request, content_type: &str, body: Bytes) -> Response {
    let tag = etag(&body);
    let held = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let builder = Response::builder().header(header::ETAG, tag).header(header::CACHE_CONTROL, CACHE_CONTROL);
    if held {
        builder.status(StatusCode::NOT_MODIFIED).finish()
    } else {
        builder.content_type(content_type).body(Body::from_bytes(body))
    }
}

fn not_found(what: &str) -> Response {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(html_page("Not found", &format!("<h1>Not found</h1><p>{}</p>", esc(what))))
}

fn failed(e: &ApiError) -> Response {
    tracing::warn!(error = %e, "status page failed");
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(html_page("Unavailable", "<h1>Temporarily unavailable</h1><p>Please try again in a minute.</p>"))
}

/// `GET /status/<slug>` (HTML) and `GET /status/<slug>.json`.
#[handler]
pub async fn serve_page(state: Data<&Arc<ApiState>>, Path(slug): Path<String>, req: &Request) -> Response {
    let (slug, json) = match slug.strip_suffix(".json") {
        Some(slug) => (slug.to_owned(), true),
        None => (slug, false),
    };
    match snapshot(&state, &slug).await {
        Ok(Some(s)) if json => cached(req, "application/json; charset=utf-8", s.json.clone()),
        Ok(Some(s)) => cached(req, "text/html; charset=utf-8", s.html.clone()),
        Ok(None) => not_found("There is no status page here."),
        Err(e) => failed(&e),
    }
}

/// `GET /status/<slug>/feed.atom`.
#[handler]
pub async fn serve_feed(state: Data<&Arc<ApiState>>, Path(slug): Path<String>, req: &Request) -> Response {
    match snapshot(&state, &slug).await {
        Ok(Some(s)) => cached(req, "application/atom+xml; charset=utf-8", s.feed.clone()),
        Ok(None) => not_found("There is no status page here."),
        Err(e) => failed(&e),
    }
}

/// Escapes text for HTML and XML (element content and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:860px;margin:0 auto;padding:1em;color:#222}\
header img{max-height:48px}h1{margin:.2em 0}.banner{padding:.8em 1em;border-radius:6px;color:#fff;font-weight:600}\
.s-operational{background:#2e9d5b}.s-degraded{background:#d9901a}.s-outage{background:#c8372d}.s-maintenance{background:#3a6fc4}\
ul.w{list-style:none;padding:0}ul.w li{border:1px solid #ddd;border-radius:6px;padding:.6em .8em;margin:.5em 0}\
.st{float:right;font-weight:600}.t-operational{color:#2e9d5b}.t-degraded{color:#d9901a}.t-outage{color:#c8372d}.t-maintenance{color:#3a6fc4}\
.bar{display:flex;gap:1px;height:28px;margin:.4em 0 .1em}.bar i{flex:1;border-radius:1px;background:#2e9d5b}\
.bar .n{background:#ccc}.bar .b{background:#8cc152}.bar .c{background:#d9901a}.bar .d{background:#c8372d}\
small{color:#666}article{border-left:3px solid #c8372d;padding:.2em .8em;margin:.8em 0}article.r{border-color:#2e9d5b}\
ol{padding-left:1.2em}time{color:#666;font-size:.9em}form{margin:1em 0}";

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

fn label(status: &str) -> &'static str {
    match status {
        "operational" => "Operational",
        "degraded" => "Degraded",
        "outage" => "Outage",
        "maintenance" => "Maintenance",
        "investigating" => "Investigating",
        "identified" => "Identified",
        "monitoring" => "Monitoring",
        "resolved" => "Resolved",
        _ => "Unknown",
    }
}

fn banner(status: &str) -> &'static str {
    match status {
        "operational" => "All systems operational",
        "degraded" => "Some systems are affected",
        "outage" => "Major outage",
        _ => "Under maintenance",
    }
}

fn time(at: DateTime<Utc>) -> String {
    format!("<time datetime=\"{}\">{}</time>", at.to_rfc3339(), at.format("%b %-d, %H:%M UTC"))
}

/// A day's class: none for a day fully up (most days, so the page stays
/// small), `n` without data, `b`/`c`/`d` as uptime falls.
fn bar_class(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => " class=n",
        Some(u) if u >= 100.0 => "",
        Some(u) if u >= 99.0 => " class=b",
        Some(u) if u >= 95.0 => " class=c",
        Some(_) => " class=d",
    }
}

fn render_incident(out: &mut String, incident: &IncidentData) {
    let class = if incident.ongoing { "" } else { " class=r" };
    let _ = write!(
        out,
        "<article{class}><h3>{}</h3><p><b>{}</b> · {} · since {}",
        esc(&incident.title),
        label(incident.status),
        esc(&incident.website),
        time(incident.started_at)
    );
    if let Some(end) = incident.ended_at {
        let _ = write!(out, " until {}", time(end));
    }
    out.push_str("</p>");
    if !incident.updates.is_empty() {
        out.push_str("<ol class=timeline>");
        for update in incident.updates.iter().rev() {
            let _ = write!(
                out,
                "<li><b>{}</b> — {} {}</li>",
                label(update.status),
                esc(&update.message).replace('\n', "<br>"),
                time(update.posted_at)
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("</article>");
}

/// The page as HTML: everything visible without JavaScript.
pub fn render_html(data: &PageData) -> String {
    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<header>");
    if let Some(logo) = &data.logo_url {
        let _ = write!(body, "<img src=\"{}\" alt=\"\">", esc(logo));
    }
    let _ = write!(body, "<h1>{}</h1>", esc(&data.title));
    if let Some(description) = &data.description {
        let _ = write!(body, "<p>{}</p>", esc(description).replace('\n', "<br>"));
    }
    let _ = write!(
        body,
        "</header><p class=\"banner s-{}\" id=overall data-status={}>{}</p>",
        data.status,
        data.status,
        banner(data.status)
    );
    let (open, past): (Vec<&IncidentData>, Vec<&IncidentData>) = data.incidents.iter().partition(|i| i.ongoing);
    if !open.is_empty() {
        body.push_str("<section id=current><h2>Current incidents</h2>");
        for incident in open {
            render_incident(&mut body, incident);
        }
        body.push_str("</section>");
    }
    for group in &data.groups {
        let _ = write!(body, "<section><h2>{}</h2><ul class=w>", esc(&group.name));
        for website in &group.websites {
            let _ = write!(
                body,
                "<li data-status={}><span class=\"st t-{}\">{}</span><b>{}</b>",
                website.status,
                website.status,
                label(website.status),
                esc(&website.name)
            );
            if let Some(url) = &website.url {
                let _ = write!(body, " <small>{}</small>", esc(url));
            }
            body.push_str("<div class=bar>");
            for day in &website.days {
                // Only days with something to tell carry a tooltip: the
                // day, its uptime and its incidents.
                let full = day.uptime_percent.is_none_or(|u| u >= 100.0) && day.incidents.is_empty();
                if full {
                    let _ = write!(body, "<i{}></i>", bar_class(day.uptime_percent));
                    continue;
                }
                let uptime = day.uptime_percent.map_or_else(|| "no data".to_owned(), |u| format!("{u}% up"));
                let mut tip = format!("{} {uptime}", day.date);
                for title in &day.incidents {
                    let _ = write!(tip, "; {title}");
                }
                let _ = write!(body, "<i{} title=\"{}\"></i>", bar_class(day.uptime_percent), esc(&tip));
            }
            let total = website.uptime_percent.map_or_else(|| "no data".to_owned(), |u| format!("{u}% uptime"));
            let _ = write!(body, "</div><small>{DAYS} days ago · {total} · today</small></li>");
        }
        body.push_str("</ul></section>");
    }
    body.push_str("<section id=past><h2>Past incidents</h2>");
    if past.is_empty() {
        let _ = write!(body, "<p>No incidents in the last {DAYS} days.</p>");
    }
    // The newest ones: the page stays small (the JSON and the feed have
    // every incident of the 90 days).
    for incident in past.iter().take(PAST_SHOWN) {
        render_incident(&mut body, incident);
    }
    let slug = esc(&data.slug);
    let _ = write!(
        body,
        "</section><section id=subscribe><h2>Get notified</h2>\
         <form method=post action=\"/status/{slug}/subscribe\"><label>Email <input type=email name=email required maxlength=254></label> \
         <button type=submit>Subscribe</button></form>\
         <p><a href=\"/status/{slug}/feed.atom\">Atom feed</a> · <a href=\"/status/{slug}.json\">JSON</a> · \
         updated {}</p></section>",
        time(data.updated_at)
    );
    let head_links = format!(
        "<link rel=alternate type=\"application/atom+xml\" href=\"/status/{slug}/feed.atom\" title=\"Incidents\">"
    );
    html_page(&data.title, &body).replacen("</head>", &format!("{head_links}</head>"), 1)
}

/// The page's incidents as an Atom feed (absolute links under `PUBLIC_URL`).
pub fn render_feed(data: &PageData, page_id: Uuid, public_url: &str) -> String {
    let link = subscribers::page_link(public_url, &data.slug);
    let updated = data
        .incidents
        .iter()
        .map(|i| i.updates.last().map_or(i.ended_at.unwrap_or(i.started_at), |u| u.posted_at.max(i.started_at)))
        .max()
        .unwrap_or(data.updated_at);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:uuid:{page_id}</id>\
         <title>{} incidents</title><updated>{}</updated><link href=\"{}\"/><link rel=\"self\" href=\"{}/feed.atom\"/>",
        esc(&data.title),
        updated.to_rfc3339(),
        esc(&link),
        esc(&link)
    );
    for incident in data.incidents.iter().take(50) {
        let last = incident.updates.last().map_or(incident.started_at, |u| u.posted_at);
        let changed = incident.ended_at.map_or(last, |e| e.max(last));
        let mut text = format!(
            "{}: {} since {}",
            label(incident.status),
            incident.website,
            incident.started_at.format("%Y-%m-%d %H:%M UTC")
        );
        if let Some(end) = incident.ended_at {
            let _ = write!(text, " until {}", end.format("%Y-%m-%d %H:%M UTC"));
        }
        for update in &incident.updates {
            let _ = write!(
                text,
                "\n{} {}: {}",
                update.posted_at.format("%Y-%m-%d %H:%M UTC"),
                label(update.status),
                update.message
            );
        }
        let _ = write!(
            out,
            "<entry><id>urn:uuid:{}</id><title>{}</title><updated>{}</updated><published>{}</published>\
             <link href=\"{}\"/><content type=\"text\">{}</content></entry>",
            incident.id,
            esc(&incident.title),
            changed.to_rfc3339(),
            incident.started_at.to_rfc3339(),
            esc(&link),
            esc(&text)
        );
    }
    out.push_str("</feed>");
    out
}

/// A visitor's answer page (not cached).
fn answer(status: StatusCode, title: &str, message: &str, back: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(html_page(
            title,
            &format!(
                "<h1>{}</h1><p>{}</p><p><a href=\"{}\">Back to the status page</a></p>",
                esc(title),
                message,
                esc(back)
            ),
        ))
}

#[derive(Deserialize)]
struct SubscribeForm {
    email: String,
}

/// `POST /status/<slug>/subscribe` with `email` (a form, or JSON): mails a
/// confirmation link, unless the address is already confirmed. The answer
/// is the same either way, so it tells nobody who subscribed.
#[handler]
pub async fn serve_subscribe(
    state: Data<&Arc<ApiState>>,
    Path(slug): Path<String>,
    req: &Request,
    body: Body,
) -> Response {
    let back = format!("/status/{slug}");
    let page = match store::page_by_slug(&state.pool, &slug).await {
        Ok(Some((page, _))) => page,
        Ok(None) => return not_found("There is no status page here."),
        Err(e) => return failed(&e.into()),
    };
    let bytes = match body.into_bytes_limit(4096).await {
        Ok(bytes) => bytes,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "Not subscribed", "The request could not be read.", &back),
    };
    let json = req.content_type().is_some_and(|c| c.starts_with("application/json"));
    let form: Option<SubscribeForm> = if json {
        serde_json::from_slice(&bytes).ok()
    } else {
        url::form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == "email")
            .map(|(_, email)| SubscribeForm { email: email.into_owned() })
    };
    let Some(email) = form.and_then(|f| EmailAddress::parse(f.email.trim()).ok()) else {
        let error = ApiError::invalid("email", "email must be an email address");
        return if json {
            error.as_response()
        } else {
            answer(StatusCode::UNPROCESSABLE_ENTITY, "Not subscribed", "Please give a valid email address.", &back)
        };
    };
    let address = client_address(req);
    if let Some(retry_after) = state.status_pages.subscriptions.blocked(address, Instant::now()) {
        let mut response = answer(
            StatusCode::TOO_MANY_REQUESTS,
            "Not subscribed",
            "Too many subscriptions from your address; please try again in a minute.",
            &back,
        );
        if let Ok(value) = header::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    state.status_pages.subscriptions.record(address, Instant::now());
    let caller = req.extensions().get::<Caller>().map(|c| c.request_id);
    if let Err(e) = request_subscription(&state, &page, email, caller).await {
        return failed(&e);
    }
    if json {
        return Response::builder()
            .status(StatusCode::ACCEPTED)
            .content_type("application/json; charset=utf-8")
            .body(r#"{"status":"check your inbox to confirm"}"#);
    }
    answer(
        StatusCode::ACCEPTED,
        "Check your inbox",
        "We sent you a link to confirm your subscription. Nothing is sent until you follow it.",
        &back,
    )
}

/// Records the subscription (StatusSubscriberAdded) and queues the
/// confirmation mail, unless the address is confirmed already.
async fn request_subscription(
    state: &ApiState,
    page: &Page,
    email: EmailAddress,
    request_id: Option<Uuid>,
) -> Result<(), ApiError> {
    let existing = store::subscriber(&state.pool, SubscriberKey::Email(page.id, &email)).await?;
    let subscriber_id = Uuid::now_v7();
    let confirm_token = crate::access::new_secret();
    let unsubscribe_token = state
        .sealer
        .derive(&subscribers::unsubscribe_label(subscriber_id))
        .await
        .map_err(|e| ApiError::Unavailable(format!("secret key: {e}")))?;
    let decided = events::status_page::subscribe(
        page.id,
        existing.as_ref(),
        subscriber_id,
        email.clone(),
        secret_hash(&confirm_token),
        secret_hash(&unsubscribe_token),
    );
    let Some(event) = decided.into_iter().next() else { return Ok(()) };
    let envelope = publish(state, event, request_id).await?;
    let message = subscribers::confirmation(
        &state.public_url,
        page.slug.as_str(),
        &page.title,
        email.as_str(),
        &confirm_token,
        &unsubscribe_token,
    );
    let db = |e: sqlx::Error| ApiError::from(projections::Error::from(e));
    let mut tx = state.pool.begin().await.map_err(db)?;
    subscribers::queue_confirmation(&mut tx, envelope.id, subscriber_id, message).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

/// Publishes a visitor's event (actor `system`: visitors hold no token; the
/// request id is its correlation id) and waits for the projection.
async fn publish(state: &ApiState, event: Event, request_id: Option<Uuid>) -> Result<Envelope, ApiError> {
    let envelope = Envelope::new(event, Utc::now()).by(Actor::System, request_id);
    let seq = state.bus.publish(&envelope, None).await?;
    super::settle(state, seq).await?;
    Ok(envelope)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

async fn subscriber_by(state: &ApiState, slug: &str, key: SubscriberKey<'_>) -> Result<Option<Subscriber>, ApiError> {
    let Some((page, _)) = store::page_by_slug(&state.pool, slug).await? else { return Ok(None) };
    Ok(store::subscriber(&state.pool, key).await?.filter(|s| s.page_id == page.id))
}

/// `GET /status/<slug>/confirm?token=`: the double opt-in link.
#[handler]
pub async fn serve_confirm(
    state: Data<&Arc<ApiState>>,
    Path(slug): Path<String>,
    Query(query): Query<TokenQuery>,
    req: &Request,
) -> Response {
    let back = format!("/status/{slug}");
    let hash = secret_hash(query.token.as_deref().unwrap_or_default());
    let subscriber = match subscriber_by(&state, &slug, SubscriberKey::ConfirmHash(&hash)).await {
        Ok(subscriber) => subscriber,
        Err(e) => return failed(&e),
    };
    let Ok(decided) = events::status_page::confirm(subscriber.as_ref()) else {
        return answer(
            StatusCode::NOT_FOUND,
            "Link not valid",
            "This confirmation link is not valid (any more).",
            &back,
        );
    };
    if let Some(event) = decided.into_iter().next() {
        if let Err(e) = publish(&state, event, req.extensions().get::<Caller>().map(|c| c.request_id)).await {
            return failed(&e);
        }
    }
    answer(StatusCode::OK, "Subscribed", "You will get an email when an incident starts and when it ends.", &back)
}

/// `GET /status/<slug>/unsubscribe?token=`: a button (a GET must not
/// change anything: mail scanners follow links); `POST` does it.
#[handler]
pub async fn serve_unsubscribe_form(Path(slug): Path<String>, Query(query): Query<TokenQuery>) -> Response {
    let token = esc(query.token.as_deref().unwrap_or_default());
    let slug = esc(&slug);
    Response::builder().content_type("text/html; charset=utf-8").header(header::CACHE_CONTROL, "no-store").body(
        html_page(
            "Unsubscribe",
            &format!(
                "<h1>Unsubscribe</h1><form method=post action=\"/status/{slug}/unsubscribe?token={token}\">\
                 <button type=submit>Unsubscribe from these emails</button></form>"
            ),
        ),
    )
}

/// `POST /status/<slug>/unsubscribe?token=`.
#[handler]
pub async fn serve_unsubscribe(
    state: Data<&Arc<ApiState>>,
    Path(slug): Path<String>,
    Query(query): Query<TokenQuery>,
    req: &Request,
) -> Response {
    let back = format!("/status/{slug}");
    let hash = secret_hash(query.token.as_deref().unwrap_or_default());
    let subscriber = match subscriber_by(&state, &slug, SubscriberKey::UnsubscribeHash(&hash)).await {
        Ok(subscriber) => subscriber,
        Err(e) => return failed(&e),
    };
    // Unknown or already gone: the outcome the visitor wants either way.
    if let Ok(decided) = events::status_page::unsubscribe(subscriber.as_ref()) {
        for event in decided {
            if let Err(e) = publish(&state, event, req.extensions().get::<Caller>().map(|c| c.request_id)).await {
                return failed(&e);
            }
        }
    }
    answer(StatusCode::OK, "Unsubscribed", "You will not get these emails any more.", &back)
}

/// The website a badge names: its id, or the slug of its display name on a
/// page (`Checkout API` → `checkout-api`) when that names one website; only
/// websites on a page.
async fn badge_website(state: &ApiState, key: &str) -> Result<Option<Uuid>, ApiError> {
    if let Ok(id) = Uuid::parse_str(key) {
        let pages = store::pages_of_website(&state.pool, id).await?;
        let registered = !store::page_websites(&state.pool, &[id]).await?.is_empty();
        return Ok((!pages.is_empty() && registered).then_some(id));
    }
    let published = store::published_websites(&state.pool).await?;
    let mut matching: Vec<Uuid> =
        published.into_iter().filter(|(_, name)| slugify(name) == key).map(|(id, _)| id).collect();
    matching.sort();
    matching.dedup();
    Ok(if matching.len() == 1 { matching.first().copied() } else { None })
}

/// A display name as a badge slug: lowercase letters and digits, other runs
/// as `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

#[derive(Deserialize)]
pub struct DaysQuery {
    days: Option<String>,
}

/// `GET /badge/<website>/status.svg` and `/badge/<website>/uptime.svg?days=30`.
#[handler]
pub async fn serve_badge(
    state: Data<&Arc<ApiState>>,
    Path((key, file)): Path<(String, String)>,
    Query(query): Query<DaysQuery>,
    req: &Request,
) -> Response {
    let id = match badge_website(&state, &key).await {
        Ok(Some(id)) => id,
        Ok(None) => return not_found("No such public website."),
        Err(e) => return failed(&e),
    };
    let now = Utc::now();
    let svg = match file.as_str() {
        "status.svg" => {
            let facts = match Facts::load(&state, &[id], now).await {
                Ok(facts) => facts,
                Err(e) => return failed(&e),
            };
            let Some(row) = facts.rows.get(&id) else { return not_found("No such public website.") };
            let status = facts.status(row, now);
            let colour = match status {
                "operational" => "#2e9d5b",
                "degraded" => "#d9901a",
                "outage" => "#c8372d",
                _ => "#3a6fc4",
            };
            badge_svg("status", &label(status).to_lowercase(), colour)
        }
        "uptime.svg" => {
            let days = match query.days.as_deref().map(str::parse::<i64>) {
                None => 30,
                Some(Ok(days)) if (1..=DAYS).contains(&days) => days,
                Some(_) => return ApiError::invalid("days", format!("days must be 1 to {DAYS}")).as_response(),
            };
            let from = now - Duration::days(days);
            let facts = match Facts::load(&state, &[id], from).await {
                Ok(facts) => facts,
                Err(e) => return failed(&e),
            };
            let Some(row) = facts.rows.get(&id) else { return not_found("No such public website.") };
            let (uptime, _) = facts.uptime(row, from, now);
            let (value, colour) = match uptime {
                None => ("no data".to_owned(), "#999"),
                Some(u) if u >= 99.9 => (format!("{u:.2}%"), "#2e9d5b"),
                Some(u) if u >= 99.0 => (format!("{u:.2}%"), "#8cc152"),
                Some(u) if u >= 95.0 => (format!("{u:.2}%"), "#d9901a"),
                Some(u) => (format!("{u:.2}%"), "#c8372d"),
            };
            badge_svg(&format!("uptime {days}d"), &value, colour)
        }
        _ => return not_found("No such badge: status.svg or uptime.svg."),
    };
    cached(req, "image/svg+xml; charset=utf-8", Bytes::from(svg))
}

/// A flat two-part badge.
pub fn badge_svg(left: &str, right: &str, colour: &str) -> String {
    // About 7 px a character at 11 px Verdana, plus padding.
    let width = |text: &str| 10 + 7 * i64::try_from(text.chars().count()).unwrap_or(20);
    let (l, r) = (width(left), width(right));
    let total = l + r;
    let (left, right) = (esc(left), esc(right));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" aria-label=\"{left}: {right}\">\
         <title>{left}: {right}</title><rect width=\"{l}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{l}\" width=\"{r}\" height=\"20\" fill=\"{colour}\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
         <text x=\"5\" y=\"14\">{left}</text><text x=\"{}\" y=\"14\">{right}</text></g></svg>",
        l + 5
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html_attributes_and_content() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn display_names_become_badge_slugs() {
        assert_eq!(slugify("Checkout API"), "checkout-api");
        assert_eq!(slugify("  Shop -- EU! "), "shop-eu");
    }

    #[test]
    fn a_badge_is_an_svg_with_both_parts() {
        let svg = badge_svg("status", "<operational>", "#2e9d5b");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("&lt;operational&gt;"));
    }

    #[test]
    fn the_html_of_a_page_escapes_what_users_wrote() {
        let data = PageData {
            slug: "acme".into(),
            title: "<b>Acme</b>".into(),
            description: None,
            logo_url: None,
            status: "operational",
            updated_at: Utc::now(),
            groups: vec![],
            incidents: vec![],
        };
        let html = render_html(&data);
        assert!(html.contains("&lt;b&gt;Acme&lt;/b&gt;"));
        assert!(!html.contains("<b>Acme"));
        assert!(!html.contains("<script"));
    }
}
