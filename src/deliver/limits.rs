//! Pacing for the delivery engine: the server's throttling, and the configured rate limits.
//!
//! [`Throttle`] reacts to the server (421/454/"too many"): every worker pauses, the pause doubling
//! with each further throttle reply and shrinking again as messages get through; it also counts
//! the throttle replies since the last accepted message (the streak), which tells a server that
//! throttles now and then from one that accepts nothing. [`Limiter`] keeps
//! the configured messages-per-second and per-sliding-hour caps: a limit reached makes a worker
//! wait, never fail. Only an hourly cap whose next free slot is further away than the configured
//! longest wait ends the run instead, with the rest left queued for a later run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A shared pause that grows while the server throttles us.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<ThrottleState>,
    max: Duration,
    hits: AtomicU64,
}

#[derive(Debug)]
struct ThrottleState {
    until: Option<Instant>,
    delay: Duration,
    streak: u64,
}

/// What [`Throttle::hit`] made of a throttle reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleHit {
    /// How long every worker now pauses.
    pub pause: Duration,
    /// Throttle replies since the server last accepted a message, this one included.
    pub streak: u64,
}

impl Throttle {
    /// A throttle whose pause never exceeds `max`.
    pub fn new(max: Duration) -> Throttle {
        Throttle {
            state: Mutex::new(ThrottleState {
                until: None,
                delay: Duration::ZERO,
                streak: 0,
            }),
            max: max.max(Duration::from_millis(10)),
            hits: AtomicU64::new(0),
        }
    }

    /// Records a throttle reply: pause everyone for twice the last pause (starting at 100 ms, at
    /// most `max`). Returns the new pause and streak; the caller logs them.
    pub fn hit(&self) -> ThrottleHit {
        self.hits.fetch_add(1, Ordering::Relaxed);
        match self.state.lock() {
            Ok(mut s) => {
                s.delay = (s.delay * 2).clamp(Duration::from_millis(100), self.max);
                s.until = Some(Instant::now() + s.delay);
                s.streak += 1;
                ThrottleHit {
                    pause: s.delay,
                    streak: s.streak,
                }
            }
            Err(_) => ThrottleHit {
                pause: self.max,
                streak: u64::MAX,
            },
        }
    }

    /// Records a message that got through: the next pause starts smaller, the streak ends.
    pub fn success(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.streak = 0;
            if !s.delay.is_zero() {
                s.delay /= 2;
                if s.delay < Duration::from_millis(50) {
                    s.delay = Duration::ZERO;
                }
            }
        }
    }

    /// Waits out the current pause, if any.
    pub async fn wait(&self) {
        let until = self.state.lock().ok().and_then(|s| s.until);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// How many throttle replies were seen.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// Messages-per-second and per-sliding-hour caps shared by all workers.
#[derive(Debug)]
pub struct Limiter {
    interval: Option<Duration>,
    hourly_cap: u64,
    max_wait: Duration,
    state: Mutex<LimiterState>,
}

/// The hourly cap is reached and its next slot is further away than the longest wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapReached {
    /// How long until the sliding hour frees a slot.
    pub wait: Duration,
}

#[derive(Debug)]
struct LimiterState {
    next_slot: Instant,
    window: VecDeque<Instant>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Limiter {
    /// A limiter for `rate_per_second` (0 = none) and `hourly_cap` (0 = none), counting the
    /// messages already sent at `sent_times` (Unix seconds) against the hour. A worker waits at
    /// most `max_wait` for the hourly cap (see [`Limiter::acquire`]).
    pub fn new(
        rate_per_second: f64,
        hourly_cap: u64,
        max_wait: Duration,
        sent_times: &[i64],
    ) -> Limiter {
        let now = Instant::now();
        let now_unix = chrono::Utc::now().timestamp();
        let window = if hourly_cap > 0 {
            sent_times
                .iter()
                .filter_map(|&t| {
                    let age = Duration::from_secs(now_unix.saturating_sub(t).max(0) as u64);
                    now.checked_sub(age)
                })
                .collect()
        } else {
            VecDeque::new()
        };
        Limiter {
            interval: (rate_per_second > 0.0)
                .then(|| Duration::from_secs_f64(1.0 / rate_per_second)),
            hourly_cap,
            max_wait,
            state: Mutex::new(LimiterState {
                next_slot: now,
                window,
            }),
        }
    }

    /// Waits until one more message may go out, and takes its slot.
    ///
    /// # Errors
    /// [`CapReached`] when the hourly cap is reached and a slot frees only after more than the
    /// longest wait; no slot is taken then.
    pub async fn acquire(&self) -> Result<(), CapReached> {
        if self.interval.is_none() && self.hourly_cap == 0 {
            return Ok(());
        }
        loop {
            let wait = match self.reserve() {
                Reservation::Go => return Ok(()),
                Reservation::At(wait) => {
                    tokio::time::sleep(wait).await;
                    return Ok(());
                }
                Reservation::Retry(wait) if wait > self.max_wait => {
                    return Err(CapReached { wait })
                }
                Reservation::Retry(wait) => wait,
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn reserve(&self) -> Reservation {
        let Ok(mut s) = self.state.lock() else {
            return Reservation::Go;
        };
        let now = Instant::now();
        while s
            .window
            .front()
            .is_some_and(|&t| now.duration_since(t) >= HOUR)
        {
            s.window.pop_front();
        }
        if self.hourly_cap > 0 && s.window.len() as u64 >= self.hourly_cap {
            let oldest = s.window.front().copied().unwrap_or(now);
            return Reservation::Retry(
                (oldest + HOUR)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        let slot = s.next_slot.max(now);
        if let Some(interval) = self.interval {
            s.next_slot = slot + interval;
        }
        if self.hourly_cap > 0 {
            s.window.push_back(slot);
        }
        let wait = slot.saturating_duration_since(now);
        if wait.is_zero() {
            Reservation::Go
        } else {
            Reservation::At(wait)
        }
    }
}

enum Reservation {
    /// Send now.
    Go,
    /// A slot is reserved after this wait.
    At(Duration),
    /// The hourly cap is reached: try again after this wait.
    Retry(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_messages() {
        let l = Limiter::new(10.0, 0, Duration::ZERO, &[]);
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            l.acquire().await.unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(999), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn hourly_cap_waits_for_the_window() {
        let now = chrono::Utc::now().timestamp();
        // Two of three already used 59 minutes ago: the third goes at once, the fourth waits ~1 min.
        let l = Limiter::new(0.0, 3, Duration::from_secs(300), &[now - 3540, now - 3540]);
        let start = tokio::time::Instant::now();
        l.acquire().await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        l.acquire().await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_secs(55),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_hourly_cap_too_far_away_ends_the_wait() {
        let now = chrono::Utc::now().timestamp();
        // Both slots used 10 minutes ago: the next frees in ~50 minutes, more than 5.
        let l = Limiter::new(0.0, 2, Duration::from_secs(300), &[now - 600, now - 600]);
        let start = tokio::time::Instant::now();
        let reached = l.acquire().await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(
            reached.wait > Duration::from_secs(49 * 60)
                && reached.wait <= Duration::from_secs(3000),
            "{reached:?}"
        );
        assert_eq!(l.state.lock().unwrap().window.len(), 2, "no slot was taken");
    }

    #[test]
    fn throttle_pause_grows_and_shrinks() {
        let t = Throttle::new(Duration::from_secs(1));
        assert_eq!(t.hit().pause, Duration::from_millis(100));
        assert_eq!(
            t.hit(),
            ThrottleHit {
                pause: Duration::from_millis(200),
                streak: 2
            }
        );
        t.success();
        t.success();
        assert_eq!(t.state.lock().unwrap().delay, Duration::from_millis(50));
        t.success();
        assert_eq!(t.state.lock().unwrap().delay, Duration::ZERO);
        assert_eq!(t.hits(), 2);
        assert_eq!(t.hit().streak, 1, "a message got through: a new streak");
    }

    #[test]
    fn throttle_pause_is_capped() {
        let t = Throttle::new(Duration::from_millis(300));
        let pauses: Vec<u128> = (0..4).map(|_| t.hit().pause.as_millis()).collect();
        assert_eq!(pauses, [100, 200, 300, 300]);
    }
}
