//! Failed admin authentications, counted per client address: each address
//! may fail [`BURST`] times at once and then once a second; past that its
//! calls are refused before their token is looked at, so guessing the
//! token runs at one try a second per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::sync::lock;

/// Failed attempts an address may make at once.
const BURST: f64 = 10.0;
/// Failed attempts an address earns back per second.
const PER_SECOND: f64 = 1.0;
/// Addresses tracked at most. Past it, addresses whose allowance is whole
/// again are forgotten; if every one is still short, a new address is not
/// tracked (counted in the log, never unbounded memory).
const MAX_TRACKED: usize = 10_000;

/// Each address's remaining allowance of failed attempts.
#[derive(Debug, Default)]
pub(super) struct FailedAttempts {
    allowance: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// The allowance `left` as of `at`, refilled up to `now`.
fn refilled((left, at): (f64, Instant), now: Instant) -> f64 {
    (left + now.saturating_duration_since(at).as_secs_f64() * PER_SECOND).min(BURST)
}

impl FailedAttempts {
    /// Whether `ip` has used up its allowance (its calls are refused).
    pub(super) fn throttled(&self, ip: IpAddr, now: Instant) -> bool {
        lock(&self.allowance)
            .get(&ip)
            .is_some_and(|entry| refilled(*entry, now) < 1.0)
    }

    /// Counts a failed attempt from `ip`.
    pub(super) fn failed(&self, ip: IpAddr, now: Instant) {
        let mut allowance = lock(&self.allowance);
        if !allowance.contains_key(&ip) && allowance.len() >= MAX_TRACKED {
            allowance.retain(|_, entry| refilled(*entry, now) < BURST);
            if allowance.len() >= MAX_TRACKED {
                tracing::warn!(
                    %ip,
                    "too many addresses failing admin authentication to track them all"
                );
                return;
            }
        }
        let entry = allowance.entry(ip).or_insert((BURST, now));
        *entry = (refilled(*entry, now) - 1.0, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_address_fails_ten_times_then_once_a_second() {
        let failures = FailedAttempts::default();
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let start = Instant::now();
        for _ in 0..10 {
            assert!(!failures.throttled(a, start));
            failures.failed(a, start);
        }
        assert!(failures.throttled(a, start));
        assert!(
            !failures.throttled(b, start),
            "other addresses are untouched"
        );
        let later = start + Duration::from_millis(1_100);
        assert!(!failures.throttled(a, later));
        failures.failed(a, later);
        assert!(failures.throttled(a, later));
    }
}
