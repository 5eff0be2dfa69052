//! Cloudflare's API rate limit per credential: a sliding window and the lockout that follows an
//! excess (d1-platform.md §3, §12), and the `x-ratelimit-*` headers of the answers.
//!
//! The reference names the headers (`x-ratelimit-limit`, `x-ratelimit-remaining`,
//! `x-ratelimit-reset`, and `retry-after` in seconds on 429) but not their values' format; the
//! simulator's reading: the limit is the window's request count, the remaining count is what
//! this credential may still send in the window after this request, and the reset is the whole
//! seconds (rounded up) until the window frees a slot, or until the lockout ends.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

use crate::sim::RateLimit;

/// The longest window or lockout honoured (a year), so `Instant` arithmetic cannot overflow.
const LONGEST_MILLIS: u64 = 365 * 24 * 3600 * 1000;

#[derive(Debug, Default)]
struct Window {
    /// When this credential's accepted requests arrived, oldest first, within the window.
    accepted: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

/// What the limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Allowed {
        limit: u32,
        remaining: u32,
        reset_secs: u64,
    },
    Refused {
        limit: u32,
        /// True when this request began the lockout.
        lockout_began: bool,
        retry_after_secs: u64,
    },
}

impl Decision {
    /// The `x-ratelimit-*` headers (and `retry-after` when refused) of the answer.
    pub(super) fn write_headers(self, headers: &mut HeaderMap) {
        let (limit, remaining, reset) = match self {
            Decision::Allowed {
                limit,
                remaining,
                reset_secs,
            } => (limit, remaining, reset_secs),
            Decision::Refused {
                limit,
                retry_after_secs,
                ..
            } => {
                headers.insert("retry-after", HeaderValue::from(retry_after_secs));
                (limit, 0, retry_after_secs)
            }
        };
        headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    }
}

/// Whole seconds, rounded up.
fn seconds_up(duration: Duration) -> u64 {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    millis.div_ceil(1000)
}

/// Each credential's window.
#[derive(Debug, Default)]
pub(super) struct RateLimiter {
    windows: HashMap<String, Window>,
}

impl RateLimiter {
    /// Decides about a request of `credential` arriving at `now`, and records it when allowed.
    pub(super) fn check(&mut self, credential: &str, limit: RateLimit, now: Instant) -> Decision {
        let length = Duration::from_millis(limit.window_ms.min(LONGEST_MILLIS));
        let lockout = Duration::from_millis(limit.lockout_ms.min(LONGEST_MILLIS));
        let window = self.windows.entry(credential.to_owned()).or_default();
        if let Some(until) = window.locked_until {
            if now < until {
                return Decision::Refused {
                    limit: limit.requests,
                    lockout_began: false,
                    retry_after_secs: seconds_up(until - now),
                };
            }
            window.locked_until = None;
        }
        while window
            .accepted
            .front()
            .is_some_and(|arrived| now.duration_since(*arrived) >= length)
        {
            window.accepted.pop_front();
        }
        let used = u32::try_from(window.accepted.len()).unwrap_or(u32::MAX);
        if used >= limit.requests {
            window.locked_until = Some(now + lockout);
            return Decision::Refused {
                limit: limit.requests,
                lockout_began: true,
                retry_after_secs: seconds_up(lockout),
            };
        }
        window.accepted.push_back(now);
        let oldest = window.accepted.front().copied().unwrap_or(now);
        Decision::Allowed {
            limit: limit.requests,
            remaining: limit.requests - used - 1,
            reset_secs: seconds_up((oldest + length).saturating_duration_since(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        requests: 3,
        window_ms: 1000,
        lockout_ms: 2500,
    };

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn the_request_past_the_limit_begins_a_lockout_that_ends() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for (index, millis) in [0, 100, 200].into_iter().enumerate() {
            assert_eq!(
                limiter.check("token", LIMIT, at(start, millis)),
                Decision::Allowed {
                    limit: 3,
                    remaining: 2 - u32::try_from(index).unwrap(),
                    reset_secs: 1,
                }
            );
        }
        assert_eq!(
            limiter.check("token", LIMIT, at(start, 300)),
            Decision::Refused {
                limit: 3,
                lockout_began: true,
                retry_after_secs: 3,
            }
        );
        // Locked out even once the window has emptied; another credential is not.
        assert_eq!(
            limiter.check("token", LIMIT, at(start, 1500)),
            Decision::Refused {
                limit: 3,
                lockout_began: false,
                retry_after_secs: 2,
            }
        );
        assert!(matches!(
            limiter.check("other", LIMIT, at(start, 1500)),
            Decision::Allowed { remaining: 2, .. }
        ));
        // The lockout ends 2.5 s after it began, and the window is empty by then.
        assert!(matches!(
            limiter.check("token", LIMIT, at(start, 2800)),
            Decision::Allowed { remaining: 2, .. }
        ));
    }

    #[test]
    fn the_window_slides() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for millis in [0, 400, 800] {
            assert!(matches!(
                limiter.check("token", LIMIT, at(start, millis)),
                Decision::Allowed { .. }
            ));
        }
        // At 1000 ms the first request has left the window: a slot is free again.
        assert_eq!(
            limiter.check("token", LIMIT, at(start, 1000)),
            Decision::Allowed {
                limit: 3,
                remaining: 0,
                reset_secs: 1,
            }
        );
        assert!(matches!(
            limiter.check("token", LIMIT, at(start, 1001)),
            Decision::Refused {
                lockout_began: true,
                ..
            }
        ));
    }

    #[test]
    fn headers_follow_the_decision() {
        let mut headers = HeaderMap::new();
        Decision::Refused {
            limit: 1200,
            lockout_began: true,
            retry_after_secs: 300,
        }
        .write_headers(&mut headers);
        assert_eq!(headers["retry-after"], "300");
        assert_eq!(headers["x-ratelimit-limit"], "1200");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert_eq!(headers["x-ratelimit-reset"], "300");
    }
}
