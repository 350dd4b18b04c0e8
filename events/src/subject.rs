//! Subjects and stream names. Every subject carries the aggregate it is
//! about, so JetStream can check the expected last sequence per aggregate.

use crate::values::RegionName;
use uuid::Uuid;

/// The system of record: websites, regions, incidents. Never expires.
pub const MONITOR_STREAM: &str = "MONITOR";
/// Check results: high volume, bounded age.
pub const CHECKS_STREAM: &str = "CHECKS";

pub const WEBSITES: &str = "monitor.website.>";
pub const REGIONS: &str = "monitor.region.>";
pub const TOKENS: &str = "monitor.token.>";
pub const CHANNELS: &str = "monitor.channel.>";
pub const MAINTENANCE: &str = "monitor.maintenance.>";
pub const STATUS_PAGES: &str = "monitor.status_page.>";
pub const INCIDENTS: &str = "incidents.>";
pub const CHECKS: &str = "checks.>";

pub fn website(id: Uuid) -> String {
    format!("monitor.website.{id}")
}

pub fn region(name: &RegionName) -> String {
    format!("monitor.region.{name}")
}

pub fn check(region: &RegionName, website_id: Uuid) -> String {
    format!("checks.{region}.{website_id}")
}

/// Where a worker of `region` publishes its batches of results.
pub fn check_batch(region: &RegionName) -> String {
    format!("checks.{region}.batch")
}

pub fn incident(website_id: Uuid) -> String {
    format!("incidents.{website_id}")
}

pub fn token(id: Uuid) -> String {
    format!("monitor.token.{id}")
}

pub fn channel(id: Uuid) -> String {
    format!("monitor.channel.{id}")
}

pub fn maintenance(id: Uuid) -> String {
    format!("monitor.maintenance.{id}")
}

pub fn status_page(id: Uuid) -> String {
    format!("monitor.status_page.{id}")
}
