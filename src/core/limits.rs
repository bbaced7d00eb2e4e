//! Per-session rate limiting: a token bucket over requests.

use std::time::{Duration, Instant};

/// How fast a session may send requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (0 disables the limit).
    pub per_second: f64,
    /// Requests that may be sent at once above the sustained rate.
    pub burst: f64,
}

impl RateLimit {
    /// Whether any limit applies.
    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }
}

/// What the bucket says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// Refuse this request (`RATE_LIMITED`).
    Refused,
    /// The client kept sending while refused: close the session.
    Persisting,
}

/// A token bucket. Refusals are counted; a run of refusals as long as the
/// burst means the client ignores `RATE_LIMITED`, and the session is closed.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
    refusals_in_a_row: u32,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        TokenBucket {
            limit,
            tokens: limit.burst.max(1.0),
            refilled_at: Instant::now(),
            refusals_in_a_row: 0,
        }
    }

    /// Takes a token for one request made `now`.
    pub fn take(&mut self, now: Instant) -> Verdict {
        if !self.limit.enabled() {
            return Verdict::Allowed;
        }
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.refilled_at = now;
        let capacity = self.limit.burst.max(1.0);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.limit.per_second).min(capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refusals_in_a_row = 0;
            return Verdict::Allowed;
        }
        self.refusals_in_a_row += 1;
        if f64::from(self.refusals_in_a_row) > capacity {
            Verdict::Persisting
        } else {
            Verdict::Refused
        }
    }

    /// Whether the bucket is full again at `now`: no different from a new one.
    pub fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens + elapsed.as_secs_f64() * self.limit.per_second >= self.limit.burst.max(1.0)
    }

    /// How long until the next token (for error messages).
    pub fn retry_after(&self) -> Duration {
        if !self.limit.enabled() || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusals_then_close() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Verdict::Allowed);
        }
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Verdict::Refused);
        }
        assert_eq!(bucket.take(start), Verdict::Persisting);
        // A tenth of a second later one token is back.
        assert_eq!(
            bucket.take(start + Duration::from_millis(100)),
            Verdict::Allowed
        );
    }

    #[test]
    fn disabled_allows_everything() {
        let mut bucket = TokenBucket::new(RateLimit {
            per_second: 0.0,
            burst: 0.0,
        });
        let now = Instant::now();
        assert!((0..10_000).all(|_| bucket.take(now) == Verdict::Allowed));
    }
}
