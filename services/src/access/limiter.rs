//! Failed authentications per client address in a sliding window. Past the
//! limit, an address is refused (429) until its oldest failure leaves the
//! window; its credentials are not even checked, so guessing stops paying.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FailureLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Some(retry_after)` while `address` is over the limit at `now`.
    pub fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().ok()?;
        let list = failures.get_mut(&address)?;
        Self::expire(list, now, self.window);
        if list.len() < self.max {
            return None;
        }
        let oldest = *list.front()?;
        Some((oldest + self.window).saturating_duration_since(now).max(Duration::from_secs(1)))
    }

    /// Counts one failed authentication of `address`; returns how many it
    /// has in the window now.
    pub fn record(&self, address: IpAddr, now: Instant) -> usize {
        let Ok(mut failures) = self.failures.lock() else { return 0 };
        if failures.len() > 100_000 {
            failures.retain(|_, list| list.back().is_some_and(|last| now.duration_since(*last) < self.window));
        }
        let list = failures.entry(address).or_default();
        Self::expire(list, now, self.window);
        list.push_back(now);
        list.len()
    }

    fn expire(list: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while list.front().is_some_and(|at| now.duration_since(*at) >= window) {
            list.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_the_limit_and_freed_when_the_window_passes() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let (ip, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}")), [198, 51, 100, 1].into());
        let start = Instant::now();
        for n in 0..3 {
            assert_eq!(limiter.blocked(ip, start), None, "after {n} failures");
            limiter.record(ip, start + Duration::from_secs(n));
        }
        let retry = limiter.blocked(ip, start + Duration::from_secs(10));
        assert_eq!(retry, Some(Duration::from_secs(50)));
        assert_eq!(limiter.blocked(other, start), None, "other addresses are not affected");
        assert_eq!(limiter.blocked(ip, start + Duration::from_secs(60)), None, "the first failure left the window");
    }
}
