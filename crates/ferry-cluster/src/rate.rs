//! A rate limit for what the writer sends: ops per second and bytes per
//! second, each a token bucket, for the whole process (one writer).
//!
//! Pure: the caller passes the time (a monotonic [`Duration`] since any
//! fixed start) and sleeps for the wait it gets back. A bucket holds at most
//! a tenth of a second of its rate, so a burst after an idle spell is
//! short; an op bigger than that (a large `RESTORE` under a byte limit)
//! is never refused: the bucket goes into debt and the following ops wait
//! it off. So over any interval the target gets at most `rate × time +
//! burst`, and the writer falls behind (lag grows) instead of the target.

use std::time::Duration;

/// Limits; 0 = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Commands per second (a source transaction counts each of its commands).
    pub ops_per_sec: u64,
    /// Bytes of command arguments per second.
    pub bytes_per_sec: u64,
}

impl RateLimit {
    /// True when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.ops_per_sec == 0 && self.bytes_per_sec == 0
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// Most tokens held.
    burst: f64,
    /// Tokens now (negative: debt).
    level: f64,
    /// When `level` was computed.
    at: Duration,
}

impl Bucket {
    fn new(rate: u64, now: Duration) -> Option<Bucket> {
        (rate > 0).then(|| {
            let rate = rate as f64;
            let burst = (rate / 10.0).max(1.0);
            Bucket {
                rate,
                burst,
                level: burst,
                at: now,
            }
        })
    }

    /// Take `n` tokens at `now`; how long the caller must wait before sending.
    fn take(&mut self, n: u64, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.level = (self.level + elapsed * self.rate).min(self.burst);
        self.level -= n as f64;
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / self.rate)
        }
    }
}

/// Both buckets, plus what the status needs: whether the limit binds.
#[derive(Debug, Clone)]
pub struct Limiter {
    ops: Option<Bucket>,
    bytes: Option<Bucket>,
    /// Total time callers were told to wait.
    waited: Duration,
    /// The end of the last wait handed out.
    last_wait_end: Option<Duration>,
}

impl Limiter {
    /// A limiter starting at `now`; `None` when `limit` is unlimited.
    pub fn new(limit: RateLimit, now: Duration) -> Option<Limiter> {
        if limit.is_unlimited() {
            return None;
        }
        Some(Limiter {
            ops: Bucket::new(limit.ops_per_sec, now),
            bytes: Bucket::new(limit.bytes_per_sec, now),
            waited: Duration::ZERO,
            last_wait_end: None,
        })
    }

    /// Account `ops` commands of `bytes` bytes sent at `now`; returns how
    /// long to wait before sending them.
    pub fn take(&mut self, ops: u64, bytes: u64, now: Duration) -> Duration {
        let a = self
            .ops
            .as_mut()
            .map_or(Duration::ZERO, |b| b.take(ops, now));
        let b = self
            .bytes
            .as_mut()
            .map_or(Duration::ZERO, |b| b.take(bytes, now));
        let wait = a.max(b);
        if !wait.is_zero() {
            self.waited += wait;
            self.last_wait_end = Some(now + wait);
        }
        wait
    }

    /// Total time spent waiting for the limit.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// True when the limit held writes back within the last second before
    /// `now` (or is holding them now): it is what bounds the write rate.
    pub fn binding(&self, now: Duration) -> bool {
        self.last_wait_end
            .is_some_and(|end| end + Duration::from_secs(1) >= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn about(d: Duration, want_ms: u64) -> bool {
        d.abs_diff(ms(want_ms)) < Duration::from_micros(10)
    }

    /// Send `n` ops of `bytes` each as fast as allowed; the time it takes.
    fn run(limit: RateLimit, n: u64, bytes: u64) -> Duration {
        let mut l = Limiter::new(limit, Duration::ZERO).expect("limited");
        let mut now = Duration::ZERO;
        for _ in 0..n {
            now += l.take(1, bytes, now);
        }
        now
    }

    #[test]
    fn unlimited_is_none() {
        assert!(Limiter::new(RateLimit::default(), ms(0)).is_none());
    }

    #[test]
    fn ops_rate_is_kept_over_time() {
        // 10 000 ops at 1 000/s: 10 s minus the initial burst of 100.
        let t = run(
            RateLimit {
                ops_per_sec: 1000,
                bytes_per_sec: 0,
            },
            10_000,
            10,
        );
        assert!(t >= ms(9_890) && t <= ms(9_910), "{t:?}");
    }

    #[test]
    fn bytes_rate_binds_when_it_is_the_tighter_one() {
        // 1 000 ops of 1 000 bytes at 100 kB/s (ops limit far away): ≈ 10 s.
        let t = run(
            RateLimit {
                ops_per_sec: 1_000_000,
                bytes_per_sec: 100_000,
            },
            1000,
            1000,
        );
        assert!(t >= ms(9_890) && t <= ms(9_910), "{t:?}");
    }

    #[test]
    fn an_op_bigger_than_the_burst_goes_into_debt() {
        let mut l = Limiter::new(
            RateLimit {
                ops_per_sec: 0,
                bytes_per_sec: 1000,
            },
            ms(0),
        )
        .expect("limited");
        // The burst is 100 bytes; 5 100 bytes leave a debt of 5 000 = 5 s.
        assert!(about(l.take(1, 5_100, ms(0)), 5_000));
        assert!(l.binding(ms(5_500)));
        // After the debt is paid off the next small op waits only its own share.
        assert!(about(l.take(1, 100, ms(5_000)), 100));
        assert!(about(l.waited(), 5_100));
        assert!(!l.binding(ms(7_200)));
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let mut l = Limiter::new(
            RateLimit {
                ops_per_sec: 100,
                bytes_per_sec: 0,
            },
            ms(0),
        )
        .expect("limited");
        // A long idle spell: still only 10 ops (0.1 s) free, then 10 ms each.
        let mut now = ms(60_000);
        let mut free = 0;
        while l.take(1, 0, now).is_zero() {
            free += 1;
        }
        assert_eq!(free, 10);
        now += ms(10);
        assert!(about(l.take(1, 0, now), 10));
        assert!(l.binding(now));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut l = Limiter::new(
            RateLimit {
                ops_per_sec: 10,
                bytes_per_sec: 0,
            },
            ms(1000),
        )
        .expect("limited");
        assert!(l.take(1, 0, ms(500)).is_zero());
        assert!(!l.take(5, 0, ms(500)).is_zero());
    }
}
