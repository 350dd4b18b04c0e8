//! The what-if parameters of `/monitor/:id/uptime` and the part of the
//! answer that says what was recomputed (the recomputing is
//! [`crate::whatif`]).

use super::body::{Bounded, Described, DescribedQuery, Timestamp, Validation};
use super::error::ApiError;
use super::monitor::IncidentView;
use super::websites::PolicyName;
use crate::whatif::{Recomputed, Rules};
use events::website::Website;
use events::{DownPolicy, FailuresBeforeDown};
use poem_openapi::registry::MetaSchema;
use poem_openapi::Object;

/// A `down_policy` in a query string: documented as its values, checked by
/// the handler (422 naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyValues;

impl Described for PolicyValues {
    const NAME: &'static str = "down_policy_name";

    fn schema() -> MetaSchema {
        MetaSchema {
            enum_items: ["any", "majority", "all"].into_iter().map(Into::into).collect(),
            ..MetaSchema::new("string")
        }
    }
}

pub type PolicyQuery = DescribedQuery<PolicyValues>;

/// The rules to recompute under, if either parameter is given; the other
/// one is the website's own (`failures_before_down` defaults to the
/// detector's).
pub fn rules(
    website: &Website,
    default_failures: u32,
    failures_before_down: Option<Bounded<1, 10>>,
    down_policy: Option<&PolicyQuery>,
) -> Result<Option<Rules>, ApiError> {
    if failures_before_down.is_none() && down_policy.is_none() {
        return Ok(None);
    }
    let mut check = Validation::default();
    let failures = match failures_before_down.map(|f| f.check("failures_before_down")) {
        Some(Err(ApiError::Invalid(errors))) => {
            errors.into_iter().for_each(|e| check.refuse(&e.field, e.message));
            None
        }
        Some(Err(other)) => return Err(other),
        Some(Ok(n)) => check.field("failures_before_down", FailuresBeforeDown::parse(n)).map(FailuresBeforeDown::get),
        None => Some(website.failures_before_down.map_or(default_failures, FailuresBeforeDown::get)),
    };
    let policy = match down_policy {
        Some(raw) => check.field("down_policy", DownPolicy::parse(raw.as_str())),
        None => Some(website.down_policy),
    };
    check.finish()?;
    match (failures, policy) {
        (Some(failures_before_down), Some(down_policy)) => Ok(Some(Rules { failures_before_down, down_policy })),
        _ => Err(ApiError::Internal("validated what-if rules missing".into())),
    }
}

/// What the uptime was recomputed from.
#[derive(Debug, Object)]
#[oai(rename = "WhatIf")]
pub struct WhatIfView {
    pub failures_before_down: u32,
    pub down_policy: PolicyName,
    /// The checks cover this period (CHECKS keeps `CHECKS_MAX_AGE_HOURS`);
    /// the uptime windows are counted from here at the earliest.
    pub covered_from: Timestamp,
    pub covered_to: Timestamp,
    /// The incidents under these rules, newest first.
    pub incidents: Vec<IncidentView>,
}

impl From<Recomputed> for WhatIfView {
    fn from(r: Recomputed) -> Self {
        WhatIfView {
            failures_before_down: r.rules.failures_before_down,
            down_policy: r.rules.down_policy.into(),
            covered_from: r.covered_from.into(),
            covered_to: r.covered_to.into(),
            incidents: r.incidents.into_iter().map(Into::into).collect(),
        }
    }
}
