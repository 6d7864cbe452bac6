//! Pacing for the delivery engine: the server's throttling, and the configured rate limits.
//!
//! [`ConnectionBackoff`] reacts to the server telling one connection to slow down (421, a 4xx to
//! `MAIL FROM`): that connection pauses, the pause doubling with each further throttle reply on
//! it and shrinking again as its messages get through, while the other connections go on.
//! [`ThrottleStreak`] counts the throttle replies over all connections since the last accepted
//! message, which tells a server that throttles now and then from one that accepts nothing.
//! [`Limiter`] keeps
//! the configured messages-per-second and per-sliding-hour caps: a limit reached makes a worker
//! wait, never fail. Only an hourly cap whose next free slot is further away than the configured
//! longest wait ends the run instead, with the rest left queued for a later run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The pause of one connection the server asked to slow down (421, a 4xx to `MAIL FROM`):
/// 100 ms, doubling with each further throttle reply on that connection (at most `max`), halving
/// as its messages get through. Only the connection told to slow down waits; the others go on.
#[derive(Debug)]
pub struct ConnectionBackoff {
    until: Option<Instant>,
    delay: Duration,
    max: Duration,
}

impl ConnectionBackoff {
    /// A backoff whose pause never exceeds `max`.
    pub fn new(max: Duration) -> ConnectionBackoff {
        ConnectionBackoff {
            until: None,
            delay: Duration::ZERO,
            max: max.max(Duration::from_millis(10)),
        }
    }

    /// Records a throttle reply on this connection; returns the pause it now takes.
    pub fn hit(&mut self) -> Duration {
        self.delay = (self.delay * 2).clamp(Duration::from_millis(100), self.max);
        self.until = Some(Instant::now() + self.delay);
        self.delay
    }

    /// Records a message that got through on this connection: the next pause starts smaller.
    pub fn success(&mut self) {
        if !self.delay.is_zero() {
            self.delay /= 2;
            if self.delay < Duration::from_millis(50) {
                self.delay = Duration::ZERO;
            }
        }
    }

    /// Waits out this connection's pause, if any.
    pub async fn wait(&self) {
        if let Some(until) = self.until {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Throttle replies over all connections: how many in all, and how many since the server last
/// accepted a message (the streak), which tells a server that throttles now and then from one
/// that accepts nothing.
#[derive(Debug, Default)]
pub struct ThrottleStreak {
    streak: AtomicU64,
    hits: AtomicU64,
}

impl ThrottleStreak {
    /// Records a throttle reply; returns the streak, this one included.
    pub fn hit(&self) -> u64 {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.streak.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records a message that got through: the streak ends.
    pub fn success(&self) {
        self.streak.store(0, Ordering::SeqCst);
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
    /// Messages that waited for their slot.
    paced: AtomicU64,
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
    /// The pause between two of this sender's messages: the configured one times the senders
    /// sharing the relay (see [`Limiter::share`]).
    interval: Option<Duration>,
}

/// How long a message of this sender may go unrecorded in the store: its reservations younger
/// than this are kept when the window is rebuilt from the store (counted twice at worst, so the
/// cap still holds).
const UNRECORDED: Duration = Duration::from_secs(2);

/// `sent_times` (Unix seconds) as instants of the monotonic clock, oldest first.
fn instants(sent_times: &[i64], now: Instant) -> VecDeque<Instant> {
    let now_unix = chrono::Utc::now().timestamp();
    let mut window: VecDeque<Instant> = sent_times
        .iter()
        .filter_map(|&t| {
            let age = Duration::from_secs(now_unix.saturating_sub(t).max(0) as u64);
            now.checked_sub(age)
        })
        .collect();
    window.make_contiguous().sort();
    window
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
        let window = if hourly_cap > 0 {
            instants(sent_times, now)
        } else {
            VecDeque::new()
        };
        let interval =
            (rate_per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / rate_per_second));
        Limiter {
            interval,
            hourly_cap,
            max_wait,
            state: Mutex::new(LimiterState {
                next_slot: now,
                window,
                interval,
            }),
            paced: AtomicU64::new(0),
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
                    self.paced.fetch_add(1, Ordering::Relaxed);
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

    /// Whether a rate limit or an hourly cap is set.
    pub fn is_limited(&self) -> bool {
        self.interval.is_some() || self.hourly_cap > 0
    }

    /// Shares the limits with the other senders of a shared store: the hour's window becomes
    /// `sent_times` (Unix seconds: every sender's messages recorded sent in the last hour) plus
    /// this sender's reservations of the last moments, which may not be recorded yet (counted
    /// twice at worst, so the cap still holds); and the pause between two messages grows by the
    /// number of `senders` at work (this one included), so that together they keep
    /// `rate_per_second`.
    pub fn share(&self, sent_times: &[i64], senders: u32) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        if self.hourly_cap > 0 {
            let mut window = instants(sent_times, now);
            window.extend(
                s.window
                    .iter()
                    .copied()
                    .filter(|&t| now.saturating_duration_since(t) < UNRECORDED),
            );
            window.make_contiguous().sort();
            s.window = window;
        }
        s.interval = self.interval.map(|i| i * senders.max(1));
    }

    /// How many messages so far had to wait for their slot (the limits held them back).
    pub fn paced(&self) -> u64 {
        self.paced.load(Ordering::Relaxed)
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
        if let Some(interval) = s.interval {
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
    async fn shared_limits_count_the_other_senders() {
        let now = chrono::Utc::now().timestamp();
        let l = Limiter::new(10.0, 3, Duration::ZERO, &[]);
        // Two other senders at work: each message of this one waits three intervals.
        l.share(&[], 3);
        let start = tokio::time::Instant::now();
        l.acquire().await.unwrap();
        l.acquire().await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(299),
            "{:?}",
            start.elapsed()
        );
        // The others sent two in the last hour: with this sender's two (just reserved, maybe not
        // recorded yet), the cap of three is reached, and the wait is over the longest.
        l.share(&[now - 10, now - 5], 1);
        assert!(l.acquire().await.is_err(), "the shared cap holds");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_messages() {
        let l = Limiter::new(10.0, 0, Duration::ZERO, &[]);
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            l.acquire().await.unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(999), "{took:?}");
        assert_eq!(l.paced(), 10, "all but the first waited");
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

    #[tokio::test(start_paused = true)]
    async fn a_connection_backoff_grows_shrinks_and_is_capped() {
        let mut b = ConnectionBackoff::new(Duration::from_millis(300));
        let pauses: Vec<u128> = (0..4).map(|_| b.hit().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 300, 300]);
        let start = Instant::now();
        b.wait().await;
        assert!(start.elapsed() >= Duration::from_millis(300));
        b.success();
        assert_eq!(b.delay, Duration::from_millis(150));
        b.success();
        b.success();
        assert_eq!(b.delay, Duration::ZERO);
        assert_eq!(b.hit(), Duration::from_millis(100));
    }

    #[test]
    fn the_streak_counts_throttles_since_the_last_message() {
        let s = ThrottleStreak::default();
        assert_eq!((s.hit(), s.hit()), (1, 2));
        s.success();
        assert_eq!(s.hit(), 1);
        assert_eq!(s.hits(), 3);
    }
}
