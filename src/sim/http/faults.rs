//! Statistics, rate limits and injected faults, and the `/__sim` routes that read and set them.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::rate_limit::Decision;
use super::{App, lock};
use crate::sim::{Faults, Stats};

impl App {
    /// Counts a Cloudflare-API request to `endpoint`, and to the database named `database`.
    pub(super) fn count(&self, endpoint: &str, database: Option<String>) {
        let mut stats = lock(&self.stats);
        stats.total += 1;
        *stats.by_endpoint.entry(endpoint.to_owned()).or_default() += 1;
        if let Some(name) = database {
            *stats.by_database.entry(name).or_default() += 1;
        }
    }

    /// Decrements the counter `pick` selects; true if it was positive.
    pub(super) fn take_fault(&self, pick: impl Fn(&mut Faults) -> &mut u32) -> bool {
        let mut faults = lock(&self.faults);
        let counter = pick(&mut faults);
        if *counter > 0 {
            *counter -= 1;
            true
        } else {
            false
        }
    }

    /// Takes the interleaved SQL of `Faults::interleave_sql`, once.
    pub(super) fn take_interleave(&self) -> Option<String> {
        lock(&self.faults).interleave_sql.take()
    }

    /// Counts a request held without an answer (`Faults::hold_after_commit`).
    pub(super) fn count_held(&self) {
        lock(&self.stats).held += 1;
    }

    /// `Some(retry_after_secs)` when `Faults::rate_limit_burst` answers this request 429.
    pub(super) fn burst_rate_limited(&self) -> Option<u64> {
        let mut faults = lock(&self.faults);
        if faults.rate_limit_burst > 0 {
            faults.rate_limit_burst -= 1;
            return Some(faults.retry_after_secs);
        }
        None
    }

    /// What `Faults::rate_limit` decides about a request of `credential` (`None` without a
    /// limit), counting refusals and lockouts.
    pub(super) fn check_rate_limit(&self, credential: &str) -> Option<Decision> {
        let limit = lock(&self.faults).rate_limit?;
        let decision = lock(&self.rate_limiter).check(credential, limit, Instant::now());
        if let Decision::Refused { lockout_began, .. } = decision {
            let mut stats = lock(&self.stats);
            stats.rate_limited += 1;
            if lockout_began {
                stats.lockouts += 1;
            }
        }
        Some(decision)
    }
}

pub(super) async fn sim_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    Json(app.stats())
}

pub(super) async fn sim_reset_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    app.reset_stats();
    Json(app.stats())
}

pub(super) async fn sim_faults(State(app): State<Arc<App>>) -> Json<Faults> {
    Json(app.faults())
}

pub(super) async fn sim_set_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            app.set_faults(faults);
            Json(app.faults()).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}
