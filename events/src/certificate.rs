//! When a website's TLS certificate is announced as expiring: once per
//! threshold crossed (the website's `cert_expiry_days`, default 14, then 7
//! and 1 days left), never again for the same certificate and threshold,
//! and afresh for a renewed certificate. Pure; the detector applies it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Days before expiry of the first warning, unless a website says.
pub const DEFAULT_EXPIRY_DAYS: u32 = 14;

/// The thresholds of a website that warns `expiry_days` ahead (0: never),
/// largest first.
pub fn thresholds(expiry_days: u32) -> Vec<u32> {
    let mut all: Vec<u32> = [expiry_days, 7, 1].into_iter().filter(|t| *t > 0 && *t <= expiry_days).collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.dedup();
    all
}

/// The threshold `days_left` has crossed: the smallest one it is at or
/// below. `None` while it is above them all.
pub fn crossed(days_left: i64, expiry_days: u32) -> Option<u32> {
    thresholds(expiry_days).into_iter().rev().find(|t| days_left <= i64::from(*t))
}

/// Whole days from `at` to `not_after` (negative once expired).
pub fn days_left(not_after: DateTime<Utc>, at: DateTime<Utc>) -> i64 {
    (not_after - at).num_seconds().div_euclid(86_400)
}

/// The event id of the warning for `threshold` of the certificate expiring
/// at `not_after`: the same from every region and every check, so it is
/// stored once.
pub fn warning_id(website_id: Uuid, not_after: DateTime<Utc>, threshold: u32) -> Uuid {
    let name = format!("certificate/{website_id}/{}/{threshold}", not_after.timestamp());
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thresholds_are_the_setting_then_a_week_then_a_day() {
        assert_eq!(thresholds(14), vec![14, 7, 1]);
        assert_eq!(thresholds(30), vec![30, 7, 1]);
        assert_eq!(thresholds(3), vec![3, 1]);
        assert_eq!(thresholds(0), Vec::<u32>::new());
    }

    #[test]
    fn each_threshold_is_crossed_at_its_day() {
        assert_eq!(crossed(20, 14), None);
        assert_eq!(crossed(14, 14), Some(14));
        assert_eq!(crossed(8, 14), Some(14));
        assert_eq!(crossed(7, 14), Some(7));
        assert_eq!(crossed(1, 14), Some(1));
        assert_eq!(crossed(-3, 14), Some(1), "an expired certificate is past the last threshold");
        assert_eq!(crossed(1, 0), None, "0 turns warnings off");
    }

    #[test]
    fn days_left_are_whole_days_and_a_warning_id_is_stable() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert_eq!(days_left(at + chrono::Duration::hours(36), at), 1);
        assert_eq!(days_left(at - chrono::Duration::hours(1), at), -1);
        assert_eq!(warning_id(Uuid::nil(), at, 7), warning_id(Uuid::nil(), at, 7));
        assert_ne!(warning_id(Uuid::nil(), at, 7), warning_id(Uuid::nil(), at, 1));
    }
}
