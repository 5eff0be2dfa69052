//! The account's request budget: a token bucket every D1 request of the process draws from.
//!
//! Cloudflare allows 1,200 API requests per 5 minutes per user, and answers one more with a 429
//! that blocks every call for 5 minutes (`d1-platform.md` §12). A bucket of capacity `C`
//! refilling at `(limit - 2C) / window` sends at most `limit - C` requests in any window of that
//! length (`C` saved up plus what refills during it), so even a run started right after another
//! one ended (a rerun after a kill: its burst lands in the same window) stays within the limit,
//! and d1ctl on its own never trips the lockout. Where the answers carry
//! `x-ratelimit-remaining` (§3), the bucket never holds more than that allows, with the
//! requests still in flight counted. A 429 that comes anyway (the same user's dashboard or another tool spends
//! the budget too) pauses every request of the process for its `Retry-After`: sending during the
//! lockout would only be answered 429 again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many requests per how long: `1200/5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub window: Duration,
}

impl Rate {
    /// Cloudflare's documented API limit.
    pub const CLOUDFLARE: Rate = Rate {
        requests: 1200,
        window: Duration::from_secs(300),
    };

    /// Requests per second this rate allows on average.
    pub fn per_second(self) -> f64 {
        f64::from(self.requests) / self.window.as_secs_f64()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.window.as_secs();
        let window = if seconds.is_multiple_of(3600) {
            format!("{}h", seconds / 3600)
        } else if seconds.is_multiple_of(60) {
            format!("{}m", seconds / 60)
        } else if self.window.subsec_millis() == 0 {
            format!("{seconds}s")
        } else {
            format!("{}ms", self.window.as_millis())
        };
        write!(f, "{}/{window}", self.requests)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `N/PERIOD`, PERIOD a number and a unit (`ms`, `s`, `m`, `h`): `1200/5m`, `20/s`.
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!("`{text}` is not a rate; write requests per period, e.g. `1200/5m` or `20/s`")
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(usage)?;
        let requests: u32 = count.trim().parse().map_err(|_| usage())?;
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (amount, unit) = period.split_at(split);
        let amount: u64 = if amount.is_empty() {
            1
        } else {
            amount.parse().map_err(|_| usage())?
        };
        let window = match unit {
            "ms" => Duration::from_millis(amount),
            "s" => Duration::from_secs(amount),
            "m" | "min" => Duration::from_secs(amount * 60),
            "h" => Duration::from_secs(amount * 3600),
            _ => return Err(usage()),
        };
        if requests == 0 || window.is_zero() {
            return Err(format!(
                "`{text}`: a rate needs at least one request per period"
            ));
        }
        Ok(Rate { requests, window })
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// No request leaves before this (a 429's `Retry-After`).
    paused_until: Option<Instant>,
}

/// The process's request budget, shared by every D1 client.
pub struct Budget {
    rate: Rate,
    capacity: f64,
    per_second: f64,
    bucket: Mutex<Bucket>,
    sent: AtomicU64,
    /// Requests sent and not answered yet.
    in_flight: AtomicU64,
}

impl Budget {
    pub fn new(rate: Rate) -> Self {
        // A fortieth of the window's requests may go at once (a single env's whole session
        // fits in it without waiting); the rest come at 95 % of the average rate, so that two
        // bursts and the refill together stay within `rate` over any window.
        let capacity = (f64::from(rate.requests) / 40.0).max(1.0).floor();
        let per_second =
            (f64::from(rate.requests) - 2.0 * capacity).max(0.5) / rate.window.as_secs_f64();
        Self {
            rate,
            capacity,
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                refilled: Instant::now(),
                paused_until: None,
            }),
            sent: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Requests sent through this budget so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// How long the next request would wait now, and takes its token when that is zero.
    fn try_take(&self, now: Instant) -> Duration {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = bucket.paused_until {
            if until > now {
                return until - now;
            }
            bucket.paused_until = None;
        }
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.refilled = now;
        // Within a rounding error of a whole token is a token: a wait computed from a
        // shortfall of 1e-12 would round to no wait at all.
        if bucket.tokens >= 1.0 - 1e-9 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            self.sent.fetch_add(1, Ordering::Relaxed);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            Duration::ZERO
        } else {
            // Rounded up to whole nanoseconds: a wait that rounded to zero would spin.
            let nanos = ((1.0 - bucket.tokens) / self.per_second * 1e9)
                .ceil()
                .max(1.0);
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive wait of at most a window"
            )]
            Duration::from_nanos(nanos as u64)
        }
    }

    /// Waits until the budget allows one more request and takes it.
    pub async fn take(&self) {
        loop {
            let wait = self.try_take(Instant::now());
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A request taken from the budget was answered (or failed); `remaining` is the answer's
    /// `x-ratelimit-remaining`, when it had one: what the account may still send in the
    /// window, which the requests still in flight will spend too.
    pub fn answered(&self, remaining: Option<u64>) {
        let in_flight = self
            .in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        if let Some(remaining) = remaining {
            #[expect(clippy::cast_precision_loss, reason = "request counts are small")]
            let allowed = remaining.saturating_sub(in_flight) as f64;
            let mut bucket = self
                .bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            bucket.tokens = bucket.tokens.min(allowed);
        }
    }

    /// Holds every request back for `wait` (Cloudflare answered 429 with this `Retry-After`),
    /// and spends the saved-up burst: the account's budget is evidently spent elsewhere too.
    pub fn pause(&self, wait: Duration) {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = Instant::now() + wait;
        bucket.paused_until = Some(bucket.paused_until.map_or(until, |known| known.max(until)));
        bucket.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let rate: Rate = "1200/5m".parse().unwrap();
        assert_eq!(rate, Rate::CLOUDFLARE);
        assert_eq!(rate.to_string(), "1200/5m");
        assert_eq!(
            "20/s".parse::<Rate>().unwrap().window,
            Duration::from_secs(1)
        );
        assert_eq!(
            "50/250ms".parse::<Rate>().unwrap().window,
            Duration::from_millis(250)
        );
        assert!("0/5m".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert!("10/5y".parse::<Rate>().is_err());
    }

    /// Over any window of the rate's length, the bucket lets through at most the rate's count:
    /// simulated on a clock that a test moves, taking whenever a token is there.
    #[test]
    fn never_more_than_the_rate_in_any_window() {
        let rate = Rate {
            requests: 100,
            window: Duration::from_secs(10),
        };
        let budget = Budget::new(rate);
        let start = Instant::now();
        let mut sent: Vec<Duration> = Vec::new();
        let mut clock = Duration::ZERO;
        while clock < Duration::from_secs(60) {
            let wait = budget.try_take(start + clock);
            if wait.is_zero() {
                sent.push(clock);
            } else {
                clock += wait.min(Duration::from_millis(7));
            }
        }
        for (index, first) in sent.iter().enumerate() {
            let within = sent[index..]
                .iter()
                .take_while(|at| at.saturating_sub(*first) < rate.window)
                .count();
            // Room is left for the burst of a run started right after this one.
            assert!(
                within <= 100 - 2,
                "{within} requests within one window from {first:?}"
            );
        }
        // And it does not starve: close to the rate over the minute (96 % plus the burst).
        assert!(sent.len() >= 570, "only {} requests in 60 s", sent.len());
    }

    #[test]
    fn the_servers_remaining_count_caps_the_bucket() {
        let budget = Budget::new(Rate::CLOUDFLARE);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(budget.try_take(now).is_zero());
        }
        // Two still in flight; the account may send 4 more: 2 of them are ours to take now.
        budget.answered(Some(4));
        assert!(budget.try_take(now).is_zero());
        assert!(budget.try_take(now).is_zero());
        assert!(!budget.try_take(now).is_zero());
    }

    #[test]
    fn a_pause_holds_every_request_back() {
        let budget = Budget::new(Rate::CLOUDFLARE);
        budget.pause(Duration::from_secs(300));
        let wait = budget.try_take(Instant::now());
        assert!(wait > Duration::from_secs(299), "{wait:?}");
    }
}
