//! A token bucket per rate-limited API key: `burst` requests at once, then
//! `per_sec` on average. The bucket is refilled lazily from the time between
//! requests, so nothing runs in the background; the lock is held for a few
//! float operations. Time is passed in, so tests need not sleep.
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::RateLimit;

pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    state: Mutex<Level>,
}

struct Level {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        let burst = f64::from(limit.burst);
        TokenBucket {
            per_sec: limit.per_sec,
            burst,
            state: Mutex::new(Level {
                tokens: burst,
                at: now,
            }),
        }
    }

    /// Takes one request's token at `now`; when there is none, how long
    /// until there will be.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut level = self.state.lock();
        // A `now` earlier than the last one (callers race to the lock) adds
        // nothing rather than going backwards.
        let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
        level.tokens = (level.tokens + elapsed * self.per_sec).min(self.burst);
        level.at = level.at.max(now);
        if level.tokens >= 1.0 {
            level.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - level.tokens) / self.per_sec))
        }
    }
}

/// A wait as a `Retry-After` value: whole seconds, rounded up, at least 1
/// (a client told 0 would retry at once and be refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(per_sec: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket::new(RateLimit { per_sec, burst }, now)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let b = bucket(1.0, 2, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Half a token later: still refused, half a second to go.
        let wait = b.take(t0 + Duration::from_millis(500)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(b.take(t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn an_idle_bucket_fills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let b = bucket(10.0, 3, t0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        assert!(b.take(t0).is_err());
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn fractional_rates_and_time_going_backwards() {
        let t0 = Instant::now();
        let b = bucket(0.25, 1, t0);
        assert!(b.take(t0).is_ok());
        assert_eq!(b.take(t0).unwrap_err(), Duration::from_secs(4));
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(b.take(t3).unwrap_err(), Duration::from_secs(1));
        // An earlier instant (a request that lost the race to the lock)
        // neither refills nor rewinds the clock.
        assert_eq!(b.take(t0).unwrap_err(), Duration::from_secs(1));
        assert!(b.take(t0 + Duration::from_secs(4)).is_ok());
    }

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(4)), 4);
    }
}
