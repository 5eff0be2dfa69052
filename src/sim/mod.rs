//! D1 HTTP API simulator (axum + rusqlite): used by tests and served by `d1ctl sim`.
//!
//! It answers the operations of Cloudflare's D1 OpenAPI document under
//! `/client/v4/accounts/{account_id}/d1/database…` with Cloudflare's envelopes and D1's
//! behaviour (see `shared/reference/d1-platform.md`): atomic multi-statement requests, the SQL
//! authorizer, limits, export/import polling, time travel. Outside Cloudflare's paths it serves
//! `/__sim/…`: statistics, fault injection, export downloads and import uploads.
//!
//! Result values: INTEGER and REAL become JSON numbers, NULL `null`, TEXT a string and BLOB an
//! array of byte values (`[1, 2, 255]`).

mod bookmarks;
mod clock;
mod conn;
mod engine;
mod http;
mod recency;
mod registry;
mod split;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sim::http::App;

/// How to run a simulator.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Where databases, the registry, snapshots and exports live. `None` keeps databases in
    /// memory (snapshots and exports then go to a temporary directory removed on shutdown).
    pub data_dir: Option<PathBuf>,
    /// Accepted API tokens (`Authorization: Bearer …`, or as `X-Auth-Key` together with any
    /// `X-Auth-Email`), valid for every account id. Empty accepts any non-empty credential.
    pub tokens: Vec<String>,
    /// Databases `(name, uuid)` created at start (version `production`) unless they exist.
    pub databases: Vec<(String, String)>,
}

/// Faults to inject, set from tests or with `POST /__sim/faults` (same JSON shape; absent
/// fields are zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Milliseconds added to every Cloudflare-API request.
    pub latency_ms: u64,
    /// The next N `/query` or `/raw` requests run untouched before the faults below apply to
    /// the ones after (so a test can aim past a client's lock and reads at its first unit).
    pub skip_sql_requests: u32,
    /// The next N `/query` or `/raw` requests answer HTTP 500 without executing.
    pub fail_before_commit: u32,
    /// The next N `/query` or `/raw` requests answer 400 with code 7400 (malformed), as
    /// Cloudflare does when the API's request schema changes under a client.
    pub reject_as_malformed: u32,
    /// The next N successful `/query` or `/raw` requests commit, then answer HTTP 500.
    pub fail_after_commit: u32,
    /// The next N successful `/query` or `/raw` requests commit, then the connection closes
    /// without a response.
    pub drop_after_commit: u32,
    /// The next N successful `/query` or `/raw` requests commit, then never answer: the
    /// response is held until the connection is dropped (each held request is counted in
    /// [`Stats::held`], so a test knows when to kill the client).
    pub hold_after_commit: u32,
    /// The next N successful `/query` or `/raw` requests commit, then answer HTTP 200 with a
    /// body that is not JSON (a proxy's or a truncated answer).
    pub garble_after_commit: u32,
    /// SQL run on the database, bypassing the API and the authorizer, right before the first
    /// `/query` or `/raw` request that `skip_sql_requests` does not spare executes (then
    /// cleared): another writer acting between two of a client's requests, e.g.
    /// `UPDATE _d1ctl_lock SET holder = 'thief'` to take a lease over under a client.
    pub interleave_sql: Option<String>,
    /// The next N Cloudflare-API requests answer 429 (code 971) with `Retry-After`.
    pub rate_limit_burst: u32,
    /// At most this many databases per page of the list operation, whatever `per_page` asks
    /// (0: no cap).
    pub max_per_page: u32,
    /// The `Retry-After` seconds of simulated 429 answers.
    pub retry_after_secs: u64,
    /// Cloudflare's rate limit with its lockout, per credential; `None` disables it.
    pub rate_limit: Option<RateLimit>,
}

/// Cloudflare's API rate limit (d1-platform.md §3, §12: 1,200 requests per 5 minutes per
/// user, then HTTP 429 with code 971 and every call blocked for 5 minutes), kept per credential
/// (the bearer token, or the `X-Auth-Key`): a request that would make more than `requests`
/// Cloudflare-API requests within the last `window_ms` is answered 429 without executing, and
/// its credential is locked out for `lockout_ms`, during which every request is answered 429
/// without executing too. Refused requests do not fill the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_ms: u64,
    pub lockout_ms: u64,
}

impl RateLimit {
    /// Cloudflare's documented numbers.
    pub const CLOUDFLARE: RateLimit = RateLimit {
        requests: 1200,
        window_ms: 300_000,
        lockout_ms: 300_000,
    };
}

/// Counts of Cloudflare-API requests (not `/__sim/` ones), by endpoint: `list_databases`,
/// `create_database`, `get_database`, `delete_database`, `update_database` (PUT),
/// `patch_database`, `query`, `raw`, `export`, `import`, `get_bookmark`, `restore`, `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub total: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    /// Requests committed and held without an answer (`Faults::hold_after_commit`).
    #[serde(default)]
    pub held: u64,
    /// Requests answered 429 by [`Faults::rate_limit`], on exceeding it or during a lockout
    /// (not the simulated bursts of `rate_limit_burst`).
    #[serde(default)]
    pub rate_limited: u64,
    /// Times a lockout of [`Faults::rate_limit`] began.
    #[serde(default)]
    pub lockouts: u64,
    /// Requests that addressed one database (every route with a `{database_id}`: query, raw,
    /// get, update, delete, export, import, bookmark, restore), keyed by the database's name,
    /// counted like `by_endpoint` (so also those refused by a rate limit or authentication).
    /// A request naming no existing database is not counted here.
    #[serde(default)]
    pub by_database: BTreeMap<String, u64>,
}

/// Serves the simulator on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    config: SimConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_fleets(config, &[], listener, shutdown).await
}

/// [`serve`], first creating (or finding) each fleet `(prefix, count)`: the databases
/// `{prefix}1` … `{prefix}{count}`, as [`Simulator::create_databases`] does.
pub async fn serve_with_fleets(
    config: SimConfig,
    fleets: &[(String, usize)],
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Arc::new(App::new(config)?);
    for (prefix, count) in fleets {
        app.create_databases(prefix, *count)?;
    }
    http::serve_app(app, listener, shutdown).await
}

/// An in-process simulator for tests: its own thread and tokio runtime, listening on
/// `127.0.0.1` on a free port. Dropping it shuts it down.
pub struct Simulator {
    app: Arc<App>,
    address: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    pub fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        let app = Arc::new(App::new(config)?);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (shutdown, mut signal) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("d1-sim")
            .enable_all()
            .build()?;
        let thread_app = Arc::clone(&app);
        let thread = std::thread::Builder::new()
            .name("d1-sim".to_owned())
            .spawn(move || {
                let outcome = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let mut hard_stop = signal.clone();
                    let graceful = async move {
                        let _ = signal.wait_for(|stop| *stop).await;
                    };
                    tokio::select! {
                        outcome = http::serve_app(thread_app, listener, graceful) => outcome,
                        () = async move {
                            let _ = hard_stop.wait_for(|stop| *stop).await;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        } => Ok(()),
                    }
                });
                if let Err(error) = outcome {
                    tracing::error!(%error, "simulator stopped with an error");
                }
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Simulator {
            app,
            address,
            shutdown,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/client/v4`, the value for `CLOUDFLARE_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.address)
    }

    /// `http://127.0.0.1:PORT`, the root of `/__sim/…`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stats(&self) -> Stats {
        self.app.stats()
    }

    pub fn reset_stats(&self) {
        self.app.reset_stats();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.app.set_faults(faults);
    }

    pub fn faults(&self) -> Faults {
        self.app.faults()
    }

    /// Creates a database named `name` (or finds the existing one) and returns its uuid.
    pub fn create_database(&self, name: &str) -> String {
        self.app
            .create_or_find_database(name)
            .expect("the simulator could not create the database")
    }

    /// Creates (or finds) the databases `{prefix}1` … `{prefix}{count}` at once and returns
    /// their `(name, uuid)` in that order; they open on first use, so thousands are cheap.
    pub fn create_databases(&self, prefix: &str, count: usize) -> Vec<(String, String)> {
        self.app
            .create_databases(prefix, count)
            .expect("the simulator could not create the databases")
    }

    /// Runs SQL directly against a database (uuid or name), bypassing the API, the authorizer
    /// and the counters (for test setup and inspection). A change still records a bookmark.
    pub fn execute(&self, database_id: &str, sql: &str) -> anyhow::Result<()> {
        let database = self.app.database_for_test(database_id)?;
        database.execute_trusted(sql)?;
        Ok(())
    }

    /// Rows of one query run directly against a database (uuid or name), values converted as
    /// the API converts them.
    pub fn query_rows(
        &self,
        database_id: &str,
        sql: &str,
    ) -> anyhow::Result<Vec<Vec<serde_json::Value>>> {
        let database = self.app.database_for_test(database_id)?;
        let rows = database.query_trusted(sql)?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_iter().map(http::json_value).collect())
            .collect())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
