//! Schedule maths, pure. A website with interval `I` is checked at the
//! instants `t ≡ offset (mod I)`, where the offset is a stable hash of its
//! id: 1M websites at 180 s spread evenly over the 180 s instead of firing
//! together at :00. A new website is checked within seconds, then settles on
//! its slot.
//!
//! The claim script in Redis computes the same [`next_slot_after`]; the tests
//! here pin the formula.

use uuid::Uuid;

/// A new website's first check comes within this many milliseconds.
pub const FIRST_CHECK_SPREAD_MS: u64 = 2_000;

/// The website's phase within its interval, stable for its id.
pub fn offset_ms(id: Uuid, interval_ms: u64) -> u64 {
    // The low bits of a v7 id are random, so they spread evenly.
    if interval_ms == 0 {
        return 0;
    }
    (id.as_u128() % u128::from(interval_ms)) as u64
}

/// The first slot strictly after `now_ms`.
pub fn next_slot_after(now_ms: u64, interval_ms: u64, offset_ms: u64) -> u64 {
    if interval_ms == 0 {
        return now_ms;
    }
    let phase = (now_ms + interval_ms - offset_ms % interval_ms) % interval_ms;
    now_ms - phase + interval_ms
}

/// When a website is first due in a schedule rebuilt from nothing (Redis
/// lost it), given the scheduled time of the oldest of its latest checks
/// (one per region): at the slot just gone if that one was missed, the
/// last check being from the slot before it (the schedule vanished while
/// the website waited), else at its next slot. A website checked longer
/// ago (an outage of more than an interval) or never waits for its next
/// slot, so a long outage or a first start does not make every website
/// due at once.
pub fn rebuilt_due(now_ms: u64, interval_ms: u64, offset_ms: u64, last_checked_ms: Option<u64>) -> u64 {
    let next = next_slot_after(now_ms, interval_ms, offset_ms);
    let gone = next.saturating_sub(interval_ms);
    match last_checked_ms {
        Some(last) if last < gone && last + interval_ms >= gone => gone,
        _ => next,
    }
}

/// When a website just added (or added to a region) is first checked.
pub fn first_due(now_ms: u64, id: Uuid) -> u64 {
    now_ms + offset_ms(id, FIRST_CHECK_SPREAD_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_slot_is_after_now_within_one_interval_and_in_phase() {
        let interval = 180_000;
        for now in [1_700_000_000_000u64, 1_700_000_000_001, 1_700_000_179_999] {
            for offset in [0, 1, 90_000, 179_999] {
                let next = next_slot_after(now, interval, offset);
                assert!(next > now && next <= now + interval, "now {now} offset {offset} next {next}");
                assert_eq!(next % interval, offset);
            }
        }
    }

    #[test]
    fn a_check_exactly_on_its_slot_is_next_due_one_interval_later() {
        // 1_700_000_100_000 is a multiple of 60 s; +7 s is the slot of offset 7 s.
        let slot = 1_700_000_107_000;
        assert_eq!(next_slot_after(slot, 60_000, 7_000), slot + 60_000);
    }

    #[test]
    fn many_websites_spread_evenly_over_the_interval() {
        // 180k websites at 180 s: 1,000 per second on average; no second of
        // the interval should be far from that.
        let interval = 180_000;
        let mut per_second = vec![0u32; 180];
        for _ in 0..180_000 {
            let offset = offset_ms(Uuid::now_v7(), interval);
            per_second[(offset / 1000) as usize] += 1;
        }
        let (min, max) = (per_second.iter().min(), per_second.iter().max());
        assert!(min.is_some_and(|&m| m > 850), "{min:?}");
        assert!(max.is_some_and(|&m| m < 1150), "{max:?}");
    }

    #[test]
    fn a_new_website_is_first_checked_within_seconds() {
        let now = 1_700_000_000_000;
        for _ in 0..1000 {
            let due = first_due(now, Uuid::now_v7());
            assert!(due >= now && due < now + FIRST_CHECK_SPREAD_MS);
        }
    }

    #[test]
    fn a_rebuilt_schedule_catches_up_the_one_slot_the_lost_schedule_missed() {
        let (interval, offset) = (10_000, 3_000);
        let now = 1_700_000_005_000; // slots at ...003_000, ...013_000
        let (gone, next) = (1_700_000_003_000, 1_700_000_013_000);
        // Checked at the slot before the one just gone: that one is made up.
        assert_eq!(rebuilt_due(now, interval, offset, Some(gone - interval)), gone);
        // Checked at the one just gone (or later): the next slot.
        assert_eq!(rebuilt_due(now, interval, offset, Some(gone)), next);
        // Two or more slots missed, or never checked: the next slot.
        assert_eq!(rebuilt_due(now, interval, offset, Some(gone - 2 * interval)), next);
        assert_eq!(rebuilt_due(now, interval, offset, None), next);
    }

    #[test]
    fn the_offset_is_stable_for_an_id() {
        let id = Uuid::now_v7();
        assert_eq!(offset_ms(id, 180_000), offset_ms(id, 180_000));
        assert!(offset_ms(id, 10_000) < 10_000);
    }
}
