//! The monitor's vocabulary: event types and their envelope, the subjects they
//! are published on, validated value types, the pure decide/apply rules of
//! the website and region aggregates, downtime detection ([`detection`]) and
//! the website-level outage verdict under a down policy ([`outage`]).
//!
//! This crate performs no I/O. Everything else depends on it, never the
//! reverse, so the rules here can be tested without any server.

pub mod access;
pub mod batch;
pub mod certificate;
pub mod channel;
pub mod check;
pub mod detection;
pub mod envelope;
pub mod event;
pub mod history;
pub mod maintenance;
pub mod outage;
pub mod region;
pub mod status_page;
pub mod subject;
pub mod values;
pub mod website;

pub use access::{Actor, Scope, TokenName};
pub use channel::{ChannelKind, ChannelName};
pub use envelope::{DecodeError, Envelope};
pub use event::{
    CertificateExpiring, ChannelAdded, ChannelDisabled, ChannelRemoved, ChannelUpdated, CheckCompleted, Event,
    FailureCause, IncidentUpdatePosted, MaintenanceEnded, MaintenanceRemoved, MaintenanceScheduled, MaintenanceUpdated,
    RegionAdded, RegionRemoved, SiteDown, SiteUp, StatusPageCreated, StatusPageRemoved, StatusPageUpdated,
    StatusSubscriberAdded, StatusSubscriberConfirmed, StatusSubscriberRemoved, TokenCreated, TokenRevoked,
    WebsiteAdded, WebsitePaused, WebsiteRemoved, WebsiteResumed, WebsiteUpdated,
};
pub use values::{
    DownPolicy, EmailAddress, FailuresBeforeDown, IntervalSecs, RegionName, TimeoutMs, ValueError, WebsiteName,
    WebsiteUrl,
};

/// Why a command was refused by the domain rules (as opposed to failing in
/// the infrastructure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("website {0} does not exist")]
    WebsiteNotFound(uuid::Uuid),
    #[error("website {0} already exists")]
    WebsiteExists(uuid::Uuid),
    #[error("region {0} already exists")]
    RegionExists(RegionName),
    #[error("unknown region(s): {}", .0.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownRegions(Vec<RegionName>),
    #[error("a website must be checked from at least one region")]
    NoRegions,
    #[error("region {0} does not exist")]
    RegionNotFound(RegionName),
    #[error("region {0} is the last region; add another before removing it")]
    LastRegion(RegionName),
    /// Removing the region would leave these websites with no region.
    #[error("region {region} is the only region of website(s) {}; remove it with force=true to pause them", .websites.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(", "))]
    RegionInUse { region: RegionName, websites: Vec<uuid::Uuid> },
    #[error("website {0} has no region to be checked from; give it one (PATCH regions) before resuming it")]
    NoRegionToResume(uuid::Uuid),
}
