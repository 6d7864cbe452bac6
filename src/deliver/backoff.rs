//! Retry timing: when a deferred recipient is tried again, and what a throttle reply costs it.

use std::collections::HashMap;
use std::time::Duration;

use super::Settings;
use crate::store::Outcome;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The delay before attempt `attempts + 1`: `base * 2^attempts`, at most `max`, scaled by a random
/// factor in [0.5, 1.0] so retries of many recipients spread out.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    capped.mul_f64(rand::random_range(0.5..=1.0))
}

/// What throttle replies cost the recipients of one run.
#[derive(Debug, Default)]
pub(super) struct ThrottleCharges {
    /// Times each recipient was throttled in this run.
    throttled_in_run: HashMap<String, u32>,
}

impl ThrottleCharges {
    /// What a throttle reply costs the recipient `key`. Normally nothing: it is deferred without
    /// spending an attempt, for a backoff that grows with the times it was throttled in this run,
    /// so other recipients go first. But once the server has accepted nothing over
    /// `max_attempts × concurrency` throttle replies in a row (`streak`), it is not slowing us
    /// down but refusing: each throttle is then a transient failure that spends an attempt, so a
    /// run against a server that always throttles ends.
    pub(super) fn charge(
        &mut self,
        key: String,
        reply: String,
        streak: u64,
        settings: &Settings,
    ) -> Outcome {
        let n = self.throttled_in_run.entry(key.clone()).or_insert(0);
        *n += 1;
        let next_attempt_at =
            now_ms() + backoff(*n - 1, settings.retry_base, settings.retry_max).as_millis() as i64;
        let patience = u64::from(settings.max_attempts) * settings.concurrency as u64;
        if streak > patience {
            Outcome::Deferred {
                key,
                reply,
                next_attempt_at,
            }
        } else {
            Outcome::Throttled {
                key,
                reply,
                next_attempt_at,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for _ in 0..50 {
            let d0 = backoff(0, base, max);
            assert!(d0 >= Duration::from_millis(50) && d0 <= base, "{d0:?}");
            let d3 = backoff(3, base, max);
            assert!(
                d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800),
                "{d3:?}"
            );
            assert!(backoff(40, base, max) <= max);
        }
    }

    #[test]
    fn a_throttle_spends_no_attempt_until_the_server_accepts_nothing() {
        let settings = Settings {
            concurrency: 2,
            max_attempts: 2,
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            rate_per_second: 0.0,
            hourly_cap: 0,
            hourly_cap_wait: Duration::ZERO,
        };
        let before = now_ms();
        let mut charges = ThrottleCharges::default();
        let mut charge = |key: &str, streak| {
            charges.charge(key.into(), "454 slow down".into(), streak, &settings)
        };
        // Throttled now and then (messages get through in between): never an attempt, however
        // often the same recipient is unlucky.
        for _ in 0..10 {
            assert!(matches!(charge("a@x.org", 1), Outcome::Throttled { .. }));
        }
        // Nothing accepted over max_attempts × concurrency = 4 throttles: now it costs attempts.
        assert!(matches!(charge("b@x.org", 4), Outcome::Throttled { .. }));
        match charge("b@x.org", 5) {
            Outcome::Deferred {
                key,
                reply,
                next_attempt_at,
            } => {
                assert_eq!((key.as_str(), reply.as_str()), ("b@x.org", "454 slow down"));
                assert!(next_attempt_at >= before);
            }
            other => panic!("expected a deferral, got {other:?}"),
        }
    }
}
