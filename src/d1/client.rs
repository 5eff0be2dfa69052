//! The D1 HTTP API client: one struct, one error-mapping function, retries only where repeating
//! is safe.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::backend::{
    Backend, BackendError, BackendKind, Identity, OtherError, RollbackPoint, Rows, Statement, Value,
};
use crate::credentials::Secret;
use crate::d1::api::{
    ApiMessage, BookmarkResult, DatabaseDetails, DumpOptions, Envelope, ExportPolling,
    ExportRequest, PollStatus, RawResult, RestoreResult, SingleQuery,
};
use crate::d1::budget::Budget;

pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// How a migration's statements travel: separate entries of one `batch` (default), or the
/// documented multi-statement `sql` form, for accounts where `batch` atomicity is in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestMode {
    #[default]
    Batch,
    Sql,
}

#[derive(Debug, thiserror::Error)]
pub enum D1Error {
    /// Cloudflare answered with its error envelope.
    #[error("{message} [code: {code}]")]
    Api {
        status: u16,
        code: i64,
        message: String,
    },
    #[error("Cloudflare rate-limited the request (HTTP 429) and retries ran out")]
    RateLimited { retry_after: Option<u64> },
    #[error("could not reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("unexpected answer from {url} (HTTP {status}): {excerpt}")]
    Protocol {
        url: String,
        status: u16,
        excerpt: String,
    },
    #[error("the export failed: {message}")]
    Export { message: String },
    #[error("`{url}` is not a usable API base URL: {reason}")]
    BadBaseUrl { url: String, reason: String },
    #[error("could not write `{path}`: {message}")]
    Write { path: String, message: String },
}

impl D1Error {
    /// A write that ended this way may or may not have committed.
    fn may_have_committed(&self) -> bool {
        match self {
            D1Error::Api { status, .. } => *status >= 500,
            // An unreadable 2xx ran on the server: it may well have committed.
            D1Error::Protocol { status, .. } => *status >= 500 || (200..300).contains(status),
            D1Error::Unreachable { .. } => true,
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            D1Error::Api { code: 10000, .. } => {
                "the API token was refused: it needs the `D1 Edit` (or `D1 Read`) permission on this account; `d1ctl auth status` shows where each env's token came from".to_owned()
            }
            D1Error::Api { code: 7404, .. } => {
                "check `database_id` in environments.toml against `wrangler d1 list`".to_owned()
            }
            D1Error::Api { code: 7003 | 7000, .. } => {
                "check `account_id` in environments.toml: Cloudflare knows no such account path".to_owned()
            }
            D1Error::Api { code: 7400, .. } => {
                "D1 refused the request's shape; run with `-v` and report it as a d1ctl bug".to_owned()
            }
            D1Error::Api { code: 7500, .. } => {
                "D1 refused the SQL; fix the statement named above".to_owned()
            }
            D1Error::Api { code: 971, .. } | D1Error::RateLimited { .. } => {
                "Cloudflare allows 1,200 API requests per 5 minutes; wait a few minutes and rerun".to_owned()
            }
            D1Error::Unreachable { .. } => {
                "check the network, or `api_base_url` / `CLOUDFLARE_API_BASE_URL`".to_owned()
            }
            _ => return None,
        })
    }
}

impl From<D1Error> for BackendError {
    /// Keeps the error typed, with its hint taken here: `backend` knows nothing of D1.
    fn from(error: D1Error) -> Self {
        let hint = error.hint();
        BackendError::Other(OtherError::new(error, hint))
    }
}

/// Connection settings of one D1 database.
#[derive(Debug, Clone)]
pub struct D1Config {
    pub base_url: String,
    pub account_id: String,
    pub database_id: String,
    pub database_name: String,
    pub token: Secret,
    pub mode: RequestMode,
}

/// Hears about the client's longer waits (a 429's `Retry-After`), so that the command line can
/// show them: the client itself never prints.
pub trait WaitReporter: Send + Sync {
    /// A wait of `total` begins; `reason` says why, e.g. `Cloudflare rate-limited the request
    /// (HTTP 429)`.
    fn wait_started(&self, total: Duration, reason: &str);
    /// `left` of the wait remains (called about once a second).
    fn wait_progress(&self, left: Duration);
    fn wait_finished(&self);
}

/// Waits this long or longer are reported; shorter ones (a reconnect's 200 ms, the first
/// backoffs) pass without a word.
const REPORTED_WAIT: Duration = Duration::from_secs(1);

/// The longest `Retry-After` honoured as given (Cloudflare's lockout is 5 minutes).
const MAX_RETRY_AFTER_SECS: u64 = 600;

pub struct D1Client {
    http: reqwest::Client,
    config: D1Config,
    retries: u32,
    waits: Option<std::sync::Arc<dyn WaitReporter>>,
    /// The account's request budget, shared by every client of the process.
    budget: Option<std::sync::Arc<Budget>>,
    /// The uuid of a database configured by name, once looked up.
    resolved_id: tokio::sync::OnceCell<String>,
}

/// Whether the request may have reached the server (so a retry could repeat a write).
enum Attempt<T> {
    Done(T),
    /// Safe to send again: nothing was executed (429, connect error).
    Retry {
        after: Duration,
        error: D1Error,
    },
    /// Sent, but the answer was lost or a server error came back: the write may have committed.
    Unknown(D1Error),
    Failed(D1Error),
}

impl D1Client {
    pub fn new(config: D1Config) -> Result<Self, D1Error> {
        let http = http_client().map_err(|error| D1Error::Unreachable {
            url: config.base_url.clone(),
            message: error.to_string(),
        })?;
        Self::with_http(config, http)
    }

    /// A client on a shared HTTP client (one per process: building one loads the system's
    /// certificate store, which costs milliseconds per environment).
    pub fn with_http(config: D1Config, http: reqwest::Client) -> Result<Self, D1Error> {
        check_base_url(&config.base_url)?;
        Ok(Self {
            http,
            config,
            retries: 4,
            waits: None,
            budget: None,
            resolved_id: tokio::sync::OnceCell::new(),
        })
    }

    /// Draws every request from `budget` (and pauses it on a 429).
    #[must_use]
    pub fn with_budget(mut self, budget: std::sync::Arc<Budget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The same account and credentials, addressing another database of it (a fleet member).
    #[must_use]
    pub fn for_database(&self, database_id: &str, database_name: &str) -> Self {
        let mut config = self.config.clone();
        database_id.clone_into(&mut config.database_id);
        database_name.clone_into(&mut config.database_name);
        Self {
            http: self.http.clone(),
            config,
            retries: self.retries,
            waits: self.waits.clone(),
            budget: self.budget.clone(),
            resolved_id: tokio::sync::OnceCell::new(),
        }
    }

    /// Reports waits of a second or more to `reporter`.
    #[must_use]
    pub fn with_wait_reporter(mut self, reporter: std::sync::Arc<dyn WaitReporter>) -> Self {
        self.waits = Some(reporter);
        self
    }

    /// Sleeps `after` before a retry, telling the reporter when the wait is long enough to be
    /// noticed.
    async fn wait(&self, after: Duration, error: &D1Error) {
        let Some(reporter) = self.waits.as_ref().filter(|_| after >= REPORTED_WAIT) else {
            tokio::time::sleep(after).await;
            return;
        };
        let reason = match error {
            D1Error::RateLimited { .. } => {
                "Cloudflare rate-limited the request (HTTP 429)".to_owned()
            }
            other => format!("retrying after: {other}"),
        };
        reporter.wait_started(after, &reason);
        let mut left = after;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(1));
            tokio::time::sleep(step).await;
            left -= step;
            reporter.wait_progress(left);
        }
        reporter.wait_finished();
    }

    pub fn config(&self) -> &D1Config {
        &self.config
    }

    fn database_url_for(&self, id: &str, suffix: &str) -> String {
        format!(
            "{}/accounts/{}/d1/database/{id}{suffix}",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_id,
        )
    }

    /// The URL of an operation on the database. A database known only by name (a fleet member
    /// given as `--member NAME`) is looked up once: only the get operation accepts a name, every
    /// other one wants the uuid (§4).
    async fn database_url(&self, suffix: &str) -> Result<String, D1Error> {
        let id = &self.config.database_id;
        if looks_like_uuid(id) {
            return Ok(self.database_url_for(id, suffix));
        }
        let uuid = self
            .resolved_id
            .get_or_try_init(|| async {
                let url = format!("{}?fields=uuid,name", self.database_url_for(id, ""));
                let details: DatabaseDetails = self
                    .send_read(reqwest::Method::GET, &url, None::<&()>)
                    .await?;
                Ok::<String, D1Error>(details.uuid)
            })
            .await?;
        Ok(self.database_url_for(uuid, suffix))
    }

    /// `GET /database/{id}`: the database's name and details, to show what a write will target.
    pub async fn database(&self) -> Result<DatabaseDetails, D1Error> {
        let url = self.database_url_for(&self.config.database_id, "");
        self.send_read(reqwest::Method::GET, &url, None::<&()>)
            .await
    }

    /// `GET /database?name=…`: one page of the account's databases whose name matches `name`
    /// (Cloudflare calls it a search; whether it matches a prefix or anywhere in the name is
    /// not documented, so callers filter the names themselves).
    pub async fn list_databases(
        &self,
        name: Option<&str>,
        page: u32,
        per_page: u32,
    ) -> Result<Vec<DatabaseDetails>, D1Error> {
        let mut url = format!(
            "{}/accounts/{}/d1/database?page={page}&per_page={per_page}",
            self.config.base_url.trim_end_matches('/'),
            self.config.account_id,
        );
        if let Some(name) = name {
            url.push_str(&format!("&name={}", percent_encode(name)));
        }
        self.send_read(reqwest::Method::GET, &url, None::<&()>)
            .await
    }

    /// Runs statements through `/raw`; `write` decides whether a lost answer may be retried.
    async fn raw(&self, statements: &[Statement], write: bool) -> Result<Vec<Rows>, BackendError> {
        let url = self.database_url("/raw").await?;
        let body = match self.config.mode {
            RequestMode::Batch => serde_json::json!({
                "batch": statements.iter().map(|s| SingleQuery {
                    sql: s.sql.clone(),
                    params: s.params.iter().map(param_json).collect(),
                }).collect::<Vec<_>>()
            }),
            RequestMode::Sql => serde_json::json!({ "sql": one_sql_text(statements)? }),
        };
        let result: Result<Vec<RawResult>, D1Error> = if write {
            self.send_write(&url, &body).await
        } else {
            self.send_read(reqwest::Method::POST, &url, Some(&body))
                .await
        };
        match result {
            Ok(results) => Ok(results.into_iter().map(rows_of).collect()),
            Err(D1Error::Api {
                code: 7500,
                message,
                ..
            }) => Err(BackendError::sql(None, message)),
            Err(error) if write && error.may_have_committed() => {
                Err(BackendError::OutcomeUnknown {
                    message: error.to_string(),
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A request that may be repeated freely: retried on 429, 5xx and network errors.
    async fn send_read<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, D1Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(method.clone(), url, body).await;
            let (after, error) = match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(error) => return Err(error),
                Attempt::Retry { after, error } => (after, error),
                Attempt::Unknown(error) => (backoff(attempt), error),
            };
            if attempt > self.retries {
                return Err(error);
            }
            tracing::debug!(attempt, ?after, "retrying read: {error}");
            self.wait(after, &error).await;
        }
    }

    /// A write: re-sent only when it certainly did not run; otherwise the caller learns the
    /// outcome from the ledger.
    async fn send_write<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &impl Serialize,
    ) -> Result<T, D1Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(reqwest::Method::POST, url, Some(body)).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(error) | Attempt::Unknown(error) => return Err(error),
                Attempt::Retry { after, error } => {
                    if attempt > self.retries {
                        return Err(error);
                    }
                    tracing::debug!(attempt, ?after, "retrying write that did not run: {error}");
                    self.wait(after, &error).await;
                }
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&impl Serialize>,
    ) -> Attempt<T> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(self.config.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(budget) = &self.budget {
            budget.take().await;
        }
        tracing::debug!(url, "D1 request");
        let started = std::time::Instant::now();
        let sent = request.send().await;
        // `-vv`: one line per request. The URL holds ids only; the token travels in a header,
        // which is never logged.
        let millis = started.elapsed().as_millis();
        if let Some(budget) = &self.budget {
            budget.answered(sent.as_ref().ok().and_then(|response| {
                response
                    .headers()
                    .get("x-ratelimit-remaining")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            }));
        }
        match &sent {
            Ok(response) => tracing::debug!(
                target: "d1ctl::http",
                "{method} {url} -> {} ({millis} ms)",
                response.status().as_u16()
            ),
            Err(error) => tracing::debug!(
                target: "d1ctl::http",
                "{method} {url} -> failed: {} ({millis} ms)",
                describe_reqwest(error)
            ),
        }
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let d1_error = D1Error::Unreachable {
                    url: url.to_owned(),
                    message: describe_reqwest(&error),
                };
                // A request that could not be built (a header value no HTTP allows) never left:
                // sending it again cannot help. A failed connect never reached the server
                // either; anything later may have.
                return if error.is_builder() {
                    Attempt::Failed(d1_error)
                } else if error.is_connect() {
                    Attempt::Retry {
                        after: Duration::from_millis(200),
                        error: d1_error,
                    }
                } else {
                    Attempt::Unknown(d1_error)
                };
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            // Cloudflare blocks every call for the rest of its lockout, so the whole wait is
            // honoured, for every client of the process: a request sent early is answered 429
            // again.
            let after = Duration::from_secs(retry_after.unwrap_or(1).min(MAX_RETRY_AFTER_SECS));
            if let Some(budget) = &self.budget {
                budget.pause(after);
            }
            return Attempt::Retry {
                after,
                error: D1Error::RateLimited { retry_after },
            };
        }
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                return Attempt::Unknown(D1Error::Unreachable {
                    url: url.to_owned(),
                    message: describe_reqwest(&error),
                });
            }
        };
        let Ok(envelope) = serde_json::from_str::<Envelope<T>>(&text) else {
            let error = D1Error::Protocol {
                url: url.to_owned(),
                status: status.as_u16(),
                excerpt: text.chars().take(200).collect(),
            };
            // A 2xx means the server ran the request: an answer that cannot be read leaves
            // its outcome unknown (a read may be sent again; a write's is found in the ledger).
            return if status.is_server_error() || status.is_success() {
                Attempt::Unknown(error)
            } else {
                Attempt::Failed(error)
            };
        };
        if envelope.success
            && let Some(result) = envelope.result
        {
            return Attempt::Done(result);
        }
        let first = envelope.errors.first().cloned().unwrap_or(ApiMessage {
            code: 0,
            message: format!("HTTP {status} without an error message"),
        });
        let error = D1Error::Api {
            status: status.as_u16(),
            code: first.code,
            message: first.message,
        };
        if status.is_server_error() {
            Attempt::Unknown(error)
        } else {
            Attempt::Failed(error)
        }
    }

    /// `GET …/time_travel/bookmark`: the current bookmark (the rollback point).
    pub async fn bookmark(&self) -> Result<String, D1Error> {
        let url = self.database_url("/time_travel/bookmark").await?;
        let result: BookmarkResult = self
            .send_read(reqwest::Method::GET, &url, None::<&()>)
            .await?;
        Ok(result.bookmark)
    }

    /// `POST …/time_travel/restore?bookmark=B`, or `?timestamp=T` for a point recorded as
    /// the database's own clock (a fleet member's: `2026-12-01T10:00:00.123Z`). A bookmark is
    /// hex parts joined by `-` (§7) and never holds a `:`, so the two cannot be confused.
    pub async fn restore(&self, point: &str) -> Result<RestoreResult, D1Error> {
        let key = if point.contains(':') {
            "timestamp"
        } else {
            "bookmark"
        };
        let url = format!(
            "{}?{key}={}",
            self.database_url("/time_travel/restore").await?,
            percent_encode(point)
        );
        self.send_write(&url, &serde_json::json!({})).await
    }

    /// Runs the export polling protocol and streams the dump to `destination`. `on_poll` hears
    /// each poll's messages.
    pub async fn export(
        &self,
        options: DumpOptions,
        destination: &Path,
        on_poll: &(dyn Fn(&[String]) + Send + Sync),
    ) -> Result<u64, D1Error> {
        let url = self.database_url("/export").await?;
        let mut request = ExportRequest {
            output_format: "polling".to_owned(),
            dump_options: Some(options),
            current_bookmark: None,
        };
        let signed_url = loop {
            let polling: ExportPolling = self
                .send_read(reqwest::Method::POST, &url, Some(&request))
                .await?;
            on_poll(&polling.messages);
            match polling.status {
                PollStatus::Complete => match polling.result {
                    Some(file) => break file.signed_url,
                    None => {
                        return Err(D1Error::Export {
                            message: "the export completed without a download URL".to_owned(),
                        });
                    }
                },
                PollStatus::Error => {
                    return Err(D1Error::Export {
                        message: polling
                            .error
                            .unwrap_or_else(|| "no reason given".to_owned()),
                    });
                }
                PollStatus::Active => request.current_bookmark = polling.at_bookmark,
            }
        };
        self.download(&signed_url, destination).await
    }

    /// Streams a signed URL to disk (no auth header: the URL carries its own signature).
    async fn download(&self, signed_url: &str, destination: &Path) -> Result<u64, D1Error> {
        let unreachable = |message: String| D1Error::Unreachable {
            url: signed_url.to_owned(),
            message,
        };
        let write_error = |error: std::io::Error| D1Error::Write {
            path: destination.display().to_string(),
            message: error.to_string(),
        };
        let mut response = self
            .http
            .get(signed_url)
            .send()
            .await
            .map_err(|e| unreachable(describe_reqwest(&e)))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        let mut file = fs_err::tokio::File::create(destination)
            .await
            .map_err(write_error)?;
        let mut written = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(describe_reqwest(&e)))?
        {
            file.write_all(&chunk).await.map_err(write_error)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(write_error)?;
        Ok(written)
    }
}

/// The HTTP client d1ctl talks to D1 with.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("d1ctl/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // D1 bounds a request at 30 s; leave room for the network on top.
        .timeout(Duration::from_secs(75))
        // Credentials must never follow a redirect to another origin.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 2_u64.pow(attempt.min(6)))
}

fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `https://` anywhere; plain `http://` only to this machine.
fn check_base_url(url: &str) -> Result<(), D1Error> {
    let bad = |reason: &str| D1Error::BadBaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(domain)) => domain == "localhost",
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(bad(
                    "plain http is accepted only for loopback addresses (a local simulator)",
                ))
            }
        }
        _ => Err(bad("use an https:// URL")),
    }
}

/// A D1 database uuid (`8-4-4-4-12` hex, or the 32 hex digits without dashes).
fn looks_like_uuid(id: &str) -> bool {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// D1 types `params` as strings: numbers travel as decimal text.
fn param_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(v) => serde_json::Value::String(v.to_string()),
        Value::Real(v) => serde_json::Value::String(v.to_string()),
        Value::Text(v) => serde_json::Value::String(v.clone()),
        Value::Blob(v) => serde_json::Value::String(hex::encode(v)),
    }
}

/// The statements as one multi-statement `sql` text that the server splits back into exactly
/// these statements: each is ended (a newline closes a trailing line comment, then `;` when it
/// has none), and one that would still be open after that (an unterminated literal, quoted
/// identifier or block comment, a trigger without `END;`) is refused, naming its index, before
/// anything is sent: it would swallow the statements after it, d1ctl's ledger rows among them.
fn one_sql_text(statements: &[Statement]) -> Result<String, BackendError> {
    let mut text = String::new();
    for (index, statement) in statements.iter().enumerate() {
        // D1's server splits a `sql` text itself, and its splitter breaks on a CR inside a
        // trigger body (workers-sdk #14991, reference §8). d1ctl sends the file's bytes as they
        // are, so such a statement is refused in this mode rather than rewritten; batch mode
        // sends it as an entry of its own.
        if statement.sql.contains('\r') && is_trigger(&statement.sql) {
            return Err(BackendError::Statement {
                index: Some(index),
                message: "the trigger has CRLF line endings, which D1's splitter of `sql` requests breaks on (workers-sdk #14991); nothing was sent: use `request_mode = \"batch\"` for this env, or save the file with LF line endings".to_owned(),
                missing_table: None,
            });
        }
        let mut sql = inline_params(statement);
        if !is_complete(&sql) {
            sql.push_str("\n;");
            if !is_complete(&sql) {
                return Err(BackendError::Statement {
                    index: Some(index),
                    message: "the statement leaves a string literal, quoted identifier, block comment or trigger body open: with `request_mode = \"sql\"` it would swallow the statements after it, so nothing was sent".to_owned(),
                    missing_table: None,
                });
            }
        }
        text.push_str(&sql);
        text.push('\n');
    }
    Ok(text)
}

/// Whether a statement creates a trigger (a compound statement with a `BEGIN … END` body).
fn is_trigger(sql: &str) -> bool {
    sql.split_whitespace()
        .take(6)
        .any(|word| word.eq_ignore_ascii_case("TRIGGER"))
}

/// Whether `sql` ends with a complete statement, by `sqlite3_complete`: the question D1's
/// server asks where it splits. (`local::is_complete` asks it too, but `local` depends on `d1`.)
fn is_complete(sql: &str) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        // SQLite stops reading at a NUL: what follows could never end the statement.
        return false;
    };
    #[expect(
        unsafe_code,
        reason = "sqlite3_complete only reads a NUL-terminated string"
    )]
    // SAFETY: `text` is a valid NUL-terminated C string that outlives the call.
    let complete = unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) };
    complete != 0
}

/// The statement with its `?` parameters written as SQL literals, for the multi-statement
/// `sql` form (which has no per-statement parameters).
pub fn inline_params(statement: &Statement) -> String {
    let mut params = statement.params.iter();
    let mut out = String::with_capacity(statement.sql.len());
    let mut quote: Option<char> = None;
    for ch in statement.sql.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            None if matches!(ch, '\'' | '"' | '`') => quote = Some(ch),
            None if ch == '?' => {
                if let Some(value) = params.next() {
                    out.push_str(&literal(value));
                    continue;
                }
            }
            _ => {}
        }
        out.push(ch);
    }
    out
}

fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Integer(v) => v.to_string(),
        Value::Real(v) => v.to_string(),
        Value::Text(v) => format!("'{}'", v.replace('\'', "''")),
        Value::Blob(v) => format!("X'{}'", hex::encode(v)),
    }
}

fn rows_of(result: RawResult) -> Rows {
    Rows {
        columns: result.results.columns,
        rows: result
            .results
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_of).collect())
            .collect(),
    }
}

fn value_of(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(b)),
        serde_json::Value::Number(n) => n.as_i64().map_or_else(
            || Value::Real(n.as_f64().unwrap_or(f64::NAN)),
            Value::Integer,
        ),
        serde_json::Value::String(s) => Value::Text(s),
        serde_json::Value::Array(items) => {
            // Blobs arrive as arrays of byte values.
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|item| item.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            bytes.map_or_else(
                || Value::Text(serde_json::Value::Array(items).to_string()),
                Value::Blob,
            )
        }
        other @ serde_json::Value::Object(_) => Value::Text(other.to_string()),
    }
}

/// A D1 database as a backend.
pub struct D1Backend {
    client: D1Client,
}

impl D1Backend {
    pub fn new(client: D1Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &D1Client {
        &self.client
    }
}

#[async_trait]
impl Backend for D1Backend {
    fn kind(&self) -> BackendKind {
        BackendKind::D1
    }

    fn location(&self) -> String {
        format!(
            "{} {}",
            self.client.config.database_name, self.client.config.database_id
        )
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError> {
        self.client.raw(statements, true).await
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError> {
        self.client.raw(statements, false).await
    }

    async fn rollback_point(
        &self,
        _backups: &std::path::Path,
        _label: &str,
    ) -> Result<RollbackPoint, BackendError> {
        let bookmark = self.client.bookmark().await.map_err(BackendError::from)?;
        Ok(RollbackPoint {
            kind: "bookmark",
            point: bookmark,
        })
    }

    async fn restore(&self, point: &str) -> Result<(), BackendError> {
        let restored = self
            .client
            .restore(point)
            .await
            .map_err(BackendError::from)?;
        tracing::debug!(previous = %restored.previous_bookmark, "restored");
        Ok(())
    }

    /// Asks Cloudflare what the id names, and refuses when it is not the configured database.
    async fn describe(&self) -> Result<Identity, BackendError> {
        let details = self.client.database().await.map_err(BackendError::from)?;
        let config = &self.client.config;
        if details.name != config.database_name {
            return Err(BackendError::Unavailable {
                message: format!(
                    "database {} is named `{}` on Cloudflare, but environments.toml expects `{}`",
                    config.database_id, details.name, config.database_name
                ),
                hint: Some(
                    "check `database_id` and `database_name` of this env: d1ctl will not write to a database it cannot confirm"
                        .to_owned(),
                ),
            });
        }
        Ok(Identity {
            label: format!("{} {}", details.name, details.uuid),
            known_empty: details.num_tables == Some(0),
            size_bytes: details.file_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlines_parameters_outside_quotes() {
        let statement = Statement::with_params(
            "INSERT INTO t (a, b, c) VALUES (?, '?', ?)",
            vec![Value::from("it's"), Value::Integer(3)],
        );
        assert_eq!(
            inline_params(&statement),
            "INSERT INTO t (a, b, c) VALUES ('it''s', '?', 3)"
        );
    }

    #[test]
    fn one_sql_text_ends_every_statement() {
        let statements = [
            Statement::new("CREATE TABLE a (t);"),
            Statement::new("INSERT INTO a VALUES ('x\r\ny') -- no semicolon"),
            Statement::with_params("INSERT INTO l VALUES (?)", vec![Value::from("0001.sql")]),
        ];
        assert_eq!(
            one_sql_text(&statements).unwrap(),
            "CREATE TABLE a (t);\nINSERT INTO a VALUES ('x\r\ny') -- no semicolon\n;\nINSERT INTO l VALUES ('0001.sql')\n;\n"
        );
        for open in [
            "SELECT 'a",
            "SELECT 1 /* a",
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1;",
        ] {
            let statements = [Statement::new("SELECT 1;"), Statement::new(open)];
            let Err(BackendError::Statement { index, .. }) = one_sql_text(&statements) else {
                panic!("{open} was accepted");
            };
            assert_eq!(index, Some(1));
        }
    }

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(check_base_url("http://127.0.0.1:8787/client/v4").is_ok());
        assert!(check_base_url("http://localhost:1/client/v4").is_ok());
        assert!(check_base_url("http://[::1]:1/client/v4").is_ok());
        assert!(check_base_url("https://api.cloudflare.com/client/v4").is_ok());
        assert!(check_base_url("http://10.0.0.1/client/v4").is_err());
        assert!(check_base_url("ftp://x").is_err());
    }
}
