//! Routes, envelopes, authentication, statistics and fault injection of the simulator.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::{Future, poll_fn};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path as FilePath, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rusqlite::types::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::d1::api::{
    ApiMessage, BookmarkResult, CreateDatabaseRequest, DatabaseDetails, Envelope, ExportFile,
    ExportPolling, ExportRequest, ImportOutcome, ImportPolling, ImportRequest, PollStatus,
    QueryResult, RawResult, RawResults, ReadReplication, RestoreResult, ResultInfo,
    UpdateDatabaseRequest,
};
use crate::d1::dump::DumpOptions;
use crate::sim::conn::{ConnectionControl, SimListener};
use crate::sim::engine::{Database, QueryEntry, RestoreError, StatementOutput};
use crate::sim::registry::{CreateError, DatabaseMeta, NewDatabase, Registry, valid_name};
use crate::sim::{Faults, SimConfig, Stats, clock};

const DATABASES: &str = "/client/v4/accounts/{account_id}/d1/database";
/// How long a poll of a running export or import waits for it to finish.
const LONG_POLL: Duration = Duration::from_secs(20);

type Outcome<T> = Option<Result<T, String>>;

struct ExportTask {
    at_bookmark: String,
    token: String,
    filename: String,
    done: watch::Receiver<Outcome<()>>,
}

struct ImportTask {
    at_bookmark: String,
    done: watch::Receiver<Outcome<ImportOutcome>>,
}

#[derive(Debug, Clone)]
struct Upload {
    database: String,
    path: PathBuf,
    md5: Option<String>,
}

/// A directory removed when the simulator stops (in-memory mode).
struct TemporaryRoot(PathBuf);

impl Drop for TemporaryRoot {
    fn drop(&mut self) {
        let _ = fs_err::remove_dir_all(&self.0);
    }
}

/// Shared state of a running simulator.
pub(crate) struct App {
    registry: Registry,
    tokens: Vec<String>,
    root: PathBuf,
    stats: Mutex<Stats>,
    faults: Mutex<Faults>,
    window: Mutex<Option<(Instant, u32)>>,
    exports: Mutex<HashMap<String, ExportTask>>,
    downloads: Mutex<HashMap<String, PathBuf>>,
    uploads: Mutex<HashMap<String, Upload>>,
    imports: Mutex<HashMap<String, ImportTask>>,
    local_address: OnceLock<SocketAddr>,
    // Declared last: removed after the registry closed its databases.
    _temporary: Option<TemporaryRoot>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl App {
    pub(crate) fn new(config: SimConfig) -> anyhow::Result<Self> {
        let (root, temporary) = if let Some(directory) = &config.data_dir {
            (directory.clone(), None)
        } else {
            let directory =
                std::env::temp_dir().join(format!("d1ctl-sim-{}", uuid::Uuid::new_v4().simple()));
            (directory.clone(), Some(TemporaryRoot(directory)))
        };
        fs_err::create_dir_all(root.join("exports"))?;
        fs_err::create_dir_all(root.join("imports"))?;
        let registry = Registry::open(&root, config.data_dir.is_some())?;
        for (name, uuid) in &config.databases {
            if registry.by_uuid(uuid).is_some() {
                continue;
            }
            registry
                .create(NewDatabase {
                    name: name.clone(),
                    uuid: Some(uuid.clone()),
                    ..NewDatabase::default()
                })
                .map_err(|error| anyhow::anyhow!("database `{name}` ({uuid}): {error}"))?;
        }
        Ok(Self {
            registry,
            tokens: config.tokens,
            root,
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(Faults::default()),
            window: Mutex::new(None),
            exports: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
            imports: Mutex::new(HashMap::new()),
            local_address: OnceLock::new(),
            _temporary: temporary,
        })
    }

    pub(crate) fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub(crate) fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
        *lock(&self.window) = None;
    }

    pub(crate) fn create_or_find_database(&self, name: &str) -> anyhow::Result<String> {
        if let Some((meta, _)) = self.registry.by_uuid_or_name(name) {
            return Ok(meta.uuid);
        }
        let meta = self.registry.create(NewDatabase {
            name: name.to_owned(),
            ..NewDatabase::default()
        })?;
        Ok(meta.uuid)
    }

    pub(crate) fn database_for_test(&self, id: &str) -> anyhow::Result<Arc<Database>> {
        self.registry
            .by_uuid_or_name(id)
            .map(|(_, database)| database)
            .ok_or_else(|| anyhow::anyhow!("the simulator has no database `{id}`"))
    }

    fn count(&self, endpoint: &str) {
        let mut stats = lock(&self.stats);
        stats.total += 1;
        *stats.by_endpoint.entry(endpoint.to_owned()).or_default() += 1;
    }

    /// Decrements the counter `pick` selects; true if it was positive.
    fn take_fault(&self, pick: impl Fn(&mut Faults) -> &mut u32) -> bool {
        let mut faults = lock(&self.faults);
        let counter = pick(&mut faults);
        if *counter > 0 {
            *counter -= 1;
            true
        } else {
            false
        }
    }

    /// `Some(retry_after_secs)` when this request must be answered with 429.
    fn rate_limited(&self) -> Option<u64> {
        let limit = {
            let mut faults = lock(&self.faults);
            if faults.rate_limit_burst > 0 {
                faults.rate_limit_burst -= 1;
                return Some(faults.retry_after_secs);
            }
            faults.requests_per_minute
        };
        if limit == 0 {
            return None;
        }
        let window_length = Duration::from_secs(60);
        let now = Instant::now();
        let mut window = lock(&self.window);
        match *window {
            Some((start, count)) if now.duration_since(start) < window_length => {
                if count >= limit {
                    let remaining = window_length.saturating_sub(now.duration_since(start));
                    return Some(remaining.as_secs() + 1);
                }
                *window = Some((start, count + 1));
            }
            _ => *window = Some((now, 1)),
        }
        None
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let accepted = |token: &str| {
            !token.is_empty() && (self.tokens.is_empty() || self.tokens.iter().any(|t| t == token))
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        };
        let bearer = header(AUTHORIZATION.as_str()).map(|value| {
            value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map_or("", |(_, token)| token.trim())
        });
        if bearer.is_some_and(accepted) {
            return Ok(());
        }
        let email = header("x-auth-email");
        let key = header("x-auth-key");
        if email.is_some_and(|email| !email.is_empty()) && key.is_some_and(accepted) {
            return Ok(());
        }
        let status = if bearer.is_none() && email.is_none() && key.is_none() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        Err(ApiError::new(status, 10000, "Authentication error"))
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        match headers.get(HOST).and_then(|host| host.to_str().ok()) {
            Some(host) => format!("http://{host}"),
            None => self
                .local_address
                .get()
                .map_or_else(String::new, |address| format!("http://{address}")),
        }
    }

    fn database(&self, uuid: &str) -> Result<(DatabaseMeta, Arc<Database>), ApiError> {
        self.registry
            .by_uuid(uuid)
            .ok_or_else(|| ApiError::database_not_found(uuid))
    }

    fn details(meta: &DatabaseMeta, database: &Database) -> DatabaseDetails {
        let (num_tables, file_size) = database.details();
        DatabaseDetails {
            uuid: meta.uuid.clone(),
            name: meta.name.clone(),
            created_at: Some(meta.created_at.clone()),
            version: Some(meta.version.clone()),
            num_tables: Some(num_tables),
            file_size: Some(file_size),
            jurisdiction: meta.jurisdiction.clone(),
            read_replication: Some(ReadReplication {
                mode: meta.read_replication.clone(),
            }),
            running_in_region: None,
        }
    }
}

/// A Cloudflare failure envelope with its HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    errors: Vec<ApiMessage>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![ApiMessage::new(code, message)],
            retry_after: None,
        }
    }

    fn malformed(detail: impl Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            7400,
            format!("The request is malformed: {detail}"),
        )
    }

    fn database_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            7404,
            format!("The database {id} could not be found"),
        )
    }

    fn sql(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 7500, message)
    }

    fn internal(message: impl Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            1000,
            format!("Internal server error: {message}"),
        )
    }

    fn no_route(status: StatusCode, path: &str) -> Self {
        let path = path.strip_prefix("/client/v4").unwrap_or(path);
        Self {
            status,
            errors: vec![
                ApiMessage::new(
                    7003,
                    format!(
                        "Could not route to {path}, perhaps your object identifier is invalid?"
                    ),
                ),
                ApiMessage::new(7000, "No route for that URI"),
            ],
            retry_after: None,
        }
    }

    fn rate_limited(retry_after: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            errors: vec![ApiMessage::new(
                971,
                "Please wait and consider throttling your request speed",
            )],
            retry_after: Some(retry_after),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(Envelope::<()>::failure(self.errors))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Runs `work` (which may wait for a database lock) off the async worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

async fn details_of(
    meta: DatabaseMeta,
    database: Arc<Database>,
) -> Result<DatabaseDetails, ApiError> {
    blocking(move || App::details(&meta, &database)).await
}

fn respond<T: Serialize>(status: StatusCode, result: T) -> Response {
    (status, Json(Envelope::ok(result))).into_response()
}

fn respond_null() -> Response {
    let envelope = Envelope::<()> {
        result: None,
        ..Envelope::ok(())
    };
    (StatusCode::OK, Json(envelope)).into_response()
}

/// Converts an SQLite value to its JSON form (BLOB → array of byte values).
pub(crate) fn json_value(value: Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(integer) => integer.into(),
        Value::Real(real) => serde_json::Number::from_f64(real)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Text(text) => text.into(),
        Value::Blob(bytes) => bytes.into_iter().map(serde_json::Value::from).collect(),
    }
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::malformed("the request body is empty"));
    }
    serde_json::from_slice(body).map_err(ApiError::malformed)
}

fn query_parameters(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|Query(parameters)| parameters)
        .map_err(|rejection| ApiError::malformed(rejection.body_text()))
}

pub(crate) async fn serve_app(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _ = app.local_address.set(listener.local_addr()?);
    let router = router(app);
    axum::serve(
        SimListener(listener),
        router.into_make_service_with_connect_info::<ConnectionControl>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

fn router(app: Arc<App>) -> Router {
    let database = format!("{DATABASES}/{{database_id}}");
    let cloudflare = Router::new()
        .route(DATABASES, get(list_databases).post(create_database))
        .route(
            &database,
            get(get_database)
                .delete(delete_database)
                .put(update_database)
                .patch(patch_database),
        )
        .route(&format!("{database}/query"), post(query))
        .route(&format!("{database}/raw"), post(raw))
        .route(&format!("{database}/export"), post(export))
        .route(&format!("{database}/import"), post(import))
        .route(
            &format!("{database}/time_travel/bookmark"),
            get(get_bookmark),
        )
        .route(&format!("{database}/time_travel/restore"), post(restore))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), gate));
    let simulator = Router::new()
        .route("/__sim/stats", get(sim_stats))
        .route("/__sim/stats/reset", post(sim_reset_stats))
        .route("/__sim/faults", get(sim_faults).post(sim_set_faults))
        .route("/__sim/exports/{token}", get(download_export))
        .route("/__sim/uploads/{filename}", put(upload_import));
    cloudflare.merge(simulator).with_state(app)
}

fn endpoint_name(method: &Method, matched: Option<&str>) -> &'static str {
    let Some(tail) = matched.and_then(|path| path.strip_prefix(DATABASES)) else {
        return "unknown";
    };
    match (method.as_str(), tail) {
        ("GET", "") => "list_databases",
        ("POST", "") => "create_database",
        ("GET", "/{database_id}") => "get_database",
        ("DELETE", "/{database_id}") => "delete_database",
        ("PUT", "/{database_id}") => "update_database",
        ("PATCH", "/{database_id}") => "patch_database",
        ("POST", "/{database_id}/query") => "query",
        ("POST", "/{database_id}/raw") => "raw",
        ("POST", "/{database_id}/export") => "export",
        ("POST", "/{database_id}/import") => "import",
        ("GET", "/{database_id}/time_travel/bookmark") => "get_bookmark",
        ("POST", "/{database_id}/time_travel/restore") => "restore",
        _ => "unknown",
    }
}

fn valid_account(path: &str) -> bool {
    let account = path
        .strip_prefix("/client/v4/accounts/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    !account.is_empty()
        && account.len() <= 32
        && account
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Runs before every Cloudflare-API request: counting, latency, rate limits, authentication.
async fn gate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if !path.starts_with("/client/v4/") {
        return next.run(request).await;
    }
    let endpoint = endpoint_name(
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    app.count(endpoint);
    let latency = lock(&app.faults).latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(retry_after) = app.rate_limited() {
        return ApiError::rate_limited(retry_after).into_response();
    }
    if endpoint != "unknown" {
        if let Err(error) = app.authenticate(request.headers()) {
            return error.into_response();
        }
        if !valid_account(&path) {
            return ApiError::no_route(StatusCode::BAD_REQUEST, &path).into_response();
        }
    }
    next.run(request).await
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::no_route(StatusCode::NOT_FOUND, uri.path())
}

// ---------------------------------------------------------------------------------------------
// Databases

async fn list_databases(State(app): State<Arc<App>>, uri: Uri) -> Result<Response, ApiError> {
    let parameters = query_parameters(&uri)?;
    let number = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| {
        parameters.get(name).map_or(Ok(default), |text| {
            text.parse::<u64>()
                .ok()
                .filter(|value| range.contains(value))
                .ok_or_else(|| {
                    ApiError::malformed(format!(
                        "`{name}` must be a number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                })
        })
    };
    let page = number("page", 1, 1..=u64::from(u32::MAX))?;
    let per_page = number("per_page", 1000, 10..=10_000)?;
    let name = parameters.get("name").map(String::as_str);
    let matching: Vec<DatabaseMeta> = app
        .registry
        .list()
        .into_iter()
        .filter(|meta| name.is_none_or(|name| meta.name.contains(name)))
        .collect();
    let total = matching.len() as u64;
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let page_items: Vec<(DatabaseMeta, Arc<Database>)> = matching
        .into_iter()
        .skip(skip)
        .take(take)
        .filter_map(|meta| app.registry.by_uuid(&meta.uuid))
        .collect();
    let items = blocking(move || {
        page_items
            .into_iter()
            .map(|(meta, database)| DatabaseDetails {
                read_replication: None,
                ..App::details(&meta, &database)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let info = ResultInfo {
        count: items.len() as u64,
        page,
        per_page,
        total_count: total,
    };
    let envelope = Envelope {
        result_info: Some(info),
        ..Envelope::ok(items)
    };
    Ok((StatusCode::OK, Json(envelope)).into_response())
}

fn check_replication(replication: Option<&ReadReplication>) -> Result<(), ApiError> {
    match replication {
        Some(replication) if !matches!(replication.mode.as_str(), "auto" | "disabled") => Err(
            ApiError::malformed("`read_replication.mode` must be `auto` or `disabled`"),
        ),
        _ => Ok(()),
    }
}

async fn create_database(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, ApiError> {
    let request: CreateDatabaseRequest = parse_body(&body)?;
    if !valid_name(&request.name) {
        return Err(ApiError::malformed(
            "`name` must match ^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
        ));
    }
    if let Some(hint) = &request.primary_location_hint
        && !matches!(
            hint.as_str(),
            "wnam" | "enam" | "weur" | "eeur" | "apac" | "oc"
        )
    {
        return Err(ApiError::malformed(
            "`primary_location_hint` must be one of wnam, enam, weur, eeur, apac, oc",
        ));
    }
    if let Some(jurisdiction) = &request.jurisdiction
        && !matches!(jurisdiction.as_str(), "eu" | "fedramp" | "us")
    {
        return Err(ApiError::malformed(
            "`jurisdiction` must be one of eu, fedramp, us",
        ));
    }
    check_replication(request.read_replication.as_ref())?;
    let app_for_task = Arc::clone(&app);
    let created = tokio::task::spawn_blocking(move || {
        app_for_task.registry.create(NewDatabase {
            name: request.name,
            uuid: None,
            jurisdiction: request.jurisdiction,
            primary_location_hint: request.primary_location_hint,
            read_replication: request.read_replication.map(|replication| replication.mode),
        })
    })
    .await
    .map_err(ApiError::internal)?;
    let meta = match created {
        Ok(meta) => meta,
        Err(CreateError::NameTaken(name)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                7502,
                format!("A database with the name \"{name}\" already exists."),
            ));
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    let (meta, database) = app.database(&meta.uuid)?;
    Ok(respond(StatusCode::OK, details_of(meta, database).await?))
}

const DETAIL_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "created_at",
    "version",
    "jurisdiction",
    "num_tables",
    "file_size",
    "running_in_region",
    "read_replication",
];

async fn get_database(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let parameters = query_parameters(&uri)?;
    let fields: Option<Vec<String>> = parameters.get("fields").map(|fields| {
        fields
            .split(',')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(str::to_owned)
            .collect()
    });
    if let Some(unknown) = fields
        .iter()
        .flatten()
        .find(|field| !DETAIL_FIELDS.contains(&field.as_str()))
    {
        return Err(ApiError::malformed(format!(
            "unknown field `{unknown}` in `fields`"
        )));
    }
    let (meta, database) = app
        .registry
        .by_uuid_or_name(&id)
        .ok_or_else(|| ApiError::database_not_found(&id))?;
    let mut details = details_of(meta, database).await?;
    let Some(fields) = fields else {
        return Ok(respond(StatusCode::OK, details));
    };
    details.running_in_region = Some("WEUR".to_owned());
    let serde_json::Value::Object(mut all) =
        serde_json::to_value(&details).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal("details are not an object"));
    };
    if fields.iter().any(|field| field == "jurisdiction") && !all.contains_key("jurisdiction") {
        all.insert("jurisdiction".to_owned(), serde_json::Value::Null);
    }
    all.retain(|key, _| fields.iter().any(|field| field == key));
    Ok(respond(StatusCode::OK, all))
}

async fn delete_database(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (meta, _) = app.database(&id)?;
    lock(&app.exports).remove(&meta.uuid);
    lock(&app.imports).remove(&meta.uuid);
    let app_for_task = Arc::clone(&app);
    tokio::task::spawn_blocking(move || app_for_task.registry.delete(&meta.uuid))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(respond_null())
}

async fn update(app: &App, id: &str, body: &Bytes, required: bool) -> Result<Response, ApiError> {
    let (meta, _) = app.database(id)?;
    let request: UpdateDatabaseRequest = parse_body(body)?;
    if required && request.read_replication.is_none() {
        return Err(ApiError::malformed("missing field `read_replication`"));
    }
    check_replication(request.read_replication.as_ref())?;
    if let Some(replication) = &request.read_replication {
        app.registry
            .set_read_replication(&meta.uuid, &replication.mode)
            .map_err(ApiError::internal)?;
    }
    let (meta, database) = app.database(&meta.uuid)?;
    Ok(respond(StatusCode::OK, details_of(meta, database).await?))
}

async fn update_database(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    update(&app, &id, &body, true).await
}

async fn patch_database(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    update(&app, &id, &body, false).await
}

// ---------------------------------------------------------------------------------------------
// Queries

fn parse_param(value: &serde_json::Value, place: &str) -> Result<Value, ApiError> {
    Ok(match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Integer(i64::from(*flag)),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(integer) => Value::Integer(integer),
            None => Value::Real(number.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(text) => Value::Text(text.clone()),
        _ => {
            return Err(ApiError::malformed(format!(
                "{place} must be a string, number, boolean or null"
            )));
        }
    })
}

fn parse_single(value: &serde_json::Value, place: &str) -> Result<QueryEntry, ApiError> {
    let serde_json::Value::Object(object) = value else {
        return Err(ApiError::malformed(format!("{place} must be an object")));
    };
    let sql = match object.get("sql") {
        Some(serde_json::Value::String(sql)) => sql.clone(),
        Some(_) => return Err(ApiError::malformed(format!("{place}.sql must be a string"))),
        None => return Err(ApiError::malformed(format!("{place}: missing field `sql`"))),
    };
    let params = match object.get("params") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_param(item, &format!("{place}.params[{index}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::malformed(format!(
                "{place}.params must be an array"
            )));
        }
    };
    Ok(QueryEntry { sql, params })
}

fn parse_query_body(body: &Bytes) -> Result<Vec<QueryEntry>, ApiError> {
    let value: serde_json::Value = parse_body(body)?;
    let serde_json::Value::Object(object) = &value else {
        return Err(ApiError::malformed("the body must be a JSON object"));
    };
    match (object.get("sql"), object.get("batch")) {
        (Some(_), Some(_)) => Err(ApiError::malformed(
            "the body must have either `sql` or `batch`, not both",
        )),
        (None, Some(serde_json::Value::Array(items))) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_single(item, &format!("batch[{index}]")))
            .collect(),
        (None, Some(_)) => Err(ApiError::malformed("`batch` must be an array")),
        (Some(_), None) => Ok(vec![parse_single(&value, "body")?]),
        (None, None) => Err(ApiError::malformed("missing field `sql` or `batch`")),
    }
}

fn object_results(outputs: Vec<StatementOutput>) -> Vec<QueryResult> {
    outputs
        .into_iter()
        .map(|output| {
            let results = output
                .rows
                .into_iter()
                .map(|row| {
                    output
                        .columns
                        .iter()
                        .cloned()
                        .zip(row.into_iter().map(json_value))
                        .collect()
                })
                .collect();
            QueryResult {
                results,
                success: true,
                meta: output.meta,
            }
        })
        .collect()
}

fn raw_results(outputs: Vec<StatementOutput>) -> Vec<RawResult> {
    outputs
        .into_iter()
        .map(|output| RawResult {
            results: RawResults {
                columns: output.columns,
                rows: output
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(json_value).collect())
                    .collect(),
            },
            success: true,
            meta: output.meta,
        })
        .collect()
}

async fn run_sql(
    app: &App,
    id: &str,
    connection: &ConnectionControl,
    body: &Bytes,
    raw: bool,
) -> Result<Response, ApiError> {
    let (_, database) = app.database(id)?;
    let entries = parse_query_body(body)?;
    let spared = app.take_fault(|faults| &mut faults.skip_sql_requests);
    if !spared && app.take_fault(|faults| &mut faults.reject_as_malformed) {
        return Err(ApiError::malformed(
            "simulated rejection of the request's shape",
        ));
    }
    if !spared && app.take_fault(|faults| &mut faults.fail_before_commit) {
        return Err(ApiError::internal("simulated failure before commit"));
    }
    let outputs = tokio::task::spawn_blocking(move || database.execute(&entries))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| ApiError::sql(error.0))?;
    if !spared && app.take_fault(|faults| &mut faults.fail_after_commit) {
        return Err(ApiError::internal("simulated failure after commit"));
    }
    if !spared && app.take_fault(|faults| &mut faults.drop_after_commit) {
        connection.cut();
        return Err(ApiError::internal("simulated dropped connection"));
    }
    Ok(if raw {
        respond(StatusCode::OK, raw_results(outputs))
    } else {
        respond(StatusCode::OK, object_results(outputs))
    })
}

async fn query(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(connection): ConnectInfo<ConnectionControl>,
    body: Bytes,
) -> Result<Response, ApiError> {
    run_sql(&app, &id, &connection, &body, false).await
}

async fn raw(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(connection): ConnectInfo<ConnectionControl>,
    body: Bytes,
) -> Result<Response, ApiError> {
    run_sql(&app, &id, &connection, &body, true).await
}

// ---------------------------------------------------------------------------------------------
// Export

/// Waits up to [`LONG_POLL`] for a task's outcome; `None` while it still runs.
async fn wait_for<T: Clone>(mut done: watch::Receiver<Outcome<T>>) -> Outcome<T> {
    let waited = tokio::time::timeout(LONG_POLL, done.wait_for(Option::is_some)).await;
    match waited {
        Ok(Ok(outcome)) => outcome.clone(),
        Ok(Err(_)) => Some(Err("the task stopped unexpectedly".to_owned())),
        Err(_) => None,
    }
}

fn export_polling(at_bookmark: &str, status: PollStatus, messages: Vec<String>) -> ExportPolling {
    ExportPolling {
        success: true,
        kind: "export".to_owned(),
        at_bookmark: Some(at_bookmark.to_owned()),
        status,
        messages,
        error: None,
        result: None,
    }
}

async fn export(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (meta, database) = app.database(&id)?;
    let request: ExportRequest = parse_body(&body)?;
    if request.output_format != "polling" {
        return Err(ApiError::malformed("`output_format` must be `polling`"));
    }
    let Some(current) = request.current_bookmark else {
        return start_export(&app, &meta, database, request.dump_options).await;
    };
    let (done, token, filename) = {
        let exports = lock(&app.exports);
        match exports.get(&meta.uuid) {
            Some(task) if task.at_bookmark == current => {
                (task.done.clone(), task.token.clone(), task.filename.clone())
            }
            _ => {
                return Err(ApiError::malformed(format!(
                    "no export of this database is running at bookmark {current}"
                )));
            }
        }
    };
    let polling = match wait_for(done).await {
        None => {
            let polling = export_polling(&current, PollStatus::Active, Vec::new());
            return Ok(respond(StatusCode::ACCEPTED, polling));
        }
        Some(Ok(())) => ExportPolling {
            result: Some(ExportFile {
                filename,
                signed_url: format!("{}/__sim/exports/{token}", app.base_url(&headers)),
            }),
            ..export_polling(
                &current,
                PollStatus::Complete,
                vec!["Uploaded part 1".to_owned()],
            )
        },
        Some(Err(error)) => ExportPolling {
            error: Some(error),
            ..export_polling(&current, PollStatus::Error, Vec::new())
        },
    };
    Ok(respond(StatusCode::OK, polling))
}

async fn start_export(
    app: &App,
    meta: &DatabaseMeta,
    database: Arc<Database>,
    options: Option<crate::d1::api::DumpOptions>,
) -> Result<Response, ApiError> {
    if let Some(task) = lock(&app.exports).get(&meta.uuid)
        && task.done.borrow().is_none()
    {
        let polling = export_polling(&task.at_bookmark, PollStatus::Active, Vec::new());
        return Ok(respond(StatusCode::ACCEPTED, polling));
    }
    let options = DumpOptions::from(options.unwrap_or_default());
    let token = uuid::Uuid::new_v4().simple().to_string();
    let path = app.root.join("exports").join(format!("{token}.sql"));
    let (sender, done) = watch::channel(None);
    let (started, at_bookmark) = tokio::sync::oneshot::channel::<String>();
    let dump_path = path.clone();
    tokio::task::spawn_blocking(move || {
        let outcome = database
            .dump_to(&options, &dump_path, |bookmark| {
                let _ = started.send(bookmark.to_owned());
            })
            .map_err(|error| error.to_string());
        let _ = sender.send(Some(outcome));
    });
    let at_bookmark = at_bookmark.await.map_err(ApiError::internal)?;
    lock(&app.downloads).insert(token.clone(), path);
    lock(&app.exports).insert(
        meta.uuid.clone(),
        ExportTask {
            at_bookmark: at_bookmark.clone(),
            token,
            filename: format!("{}-{at_bookmark}.sql", meta.name),
            done,
        },
    );
    let message = format!(
        "Generating SQL dump of {} at bookmark {at_bookmark}",
        meta.uuid
    );
    Ok(respond(
        StatusCode::ACCEPTED,
        export_polling(&at_bookmark, PollStatus::Active, vec![message]),
    ))
}

/// A stream of file chunks read on a blocking thread.
struct ChunkStream(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl futures::Stream for ChunkStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context)
    }
}

fn stream_file(path: &FilePath) -> std::io::Result<(Body, u64)> {
    let mut file = fs_err::File::open(path)?;
    let length = file.metadata()?.len();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => {
                    let chunk = Bytes::copy_from_slice(&buffer[..read]);
                    if sender.blocking_send(Ok(chunk)).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    break;
                }
            }
        }
    });
    Ok((Body::from_stream(ChunkStream(receiver)), length))
}

async fn download_export(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let Some(path) = lock(&app.downloads).get(&token).cloned() else {
        return (StatusCode::NOT_FOUND, "no such export").into_response();
    };
    match stream_file(&path) {
        Ok((body, length)) => (
            StatusCode::OK,
            [
                (CONTENT_TYPE, HeaderValue::from_static("application/sql")),
                (CONTENT_LENGTH, HeaderValue::from(length)),
            ],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::NOT_FOUND, error.to_string()).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Import

fn import_polling(at_bookmark: Option<&str>, status: Option<PollStatus>) -> ImportPolling {
    ImportPolling {
        success: true,
        kind: Some("import".to_owned()),
        at_bookmark: at_bookmark.map(str::to_owned),
        status,
        messages: Vec::new(),
        error: None,
        filename: None,
        upload_url: None,
        result: None,
    }
}

fn import_failure(error: impl Into<String>) -> Response {
    let polling = ImportPolling {
        success: false,
        kind: None,
        error: Some(error.into()),
        ..import_polling(None, None)
    };
    respond(StatusCode::OK, polling)
}

async fn import(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (meta, database) = app.database(&id)?;
    match parse_body::<ImportRequest>(&body)? {
        ImportRequest::Init { etag } => {
            let etag = etag.to_ascii_lowercase();
            if etag.len() != 32 || !etag.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(ApiError::malformed(
                    "`etag` must be the hex MD5 of the file",
                ));
            }
            let filename = format!("{}-{etag}.sql", meta.uuid);
            let upload = Upload {
                database: meta.uuid.clone(),
                path: app.root.join("imports").join(&filename),
                md5: None,
            };
            lock(&app.uploads).insert(filename.clone(), upload);
            let polling = ImportPolling {
                kind: None,
                upload_url: Some(format!(
                    "{}/__sim/uploads/{filename}",
                    app.base_url(&headers)
                )),
                filename: Some(filename),
                ..import_polling(None, None)
            };
            Ok(respond(StatusCode::OK, polling))
        }
        ImportRequest::Ingest { etag, filename } => {
            let upload = lock(&app.uploads).get(&filename).cloned();
            let Some(upload) = upload.filter(|upload| upload.database == meta.uuid) else {
                return Ok(import_failure(format!(
                    "No upload named {filename} for this database."
                )));
            };
            if upload.md5.as_deref() != Some(etag.to_ascii_lowercase().as_str()) {
                return Ok(import_failure(
                    "The uploaded file does not match the etag; upload it again.",
                ));
            }
            let bookmark_database = Arc::clone(&database);
            let at_bookmark = blocking(move || bookmark_database.current_bookmark()).await?;
            let (sender, done) = watch::channel(None);
            let path = upload.path.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = database
                    .import_file(&path)
                    .map(|(num_queries, meta, final_bookmark)| ImportOutcome {
                        final_bookmark,
                        num_queries,
                        meta,
                    })
                    .map_err(|error| error.0);
                let _ = sender.send(Some(outcome));
            });
            lock(&app.imports).insert(
                meta.uuid.clone(),
                ImportTask {
                    at_bookmark: at_bookmark.clone(),
                    done,
                },
            );
            let polling = ImportPolling {
                messages: vec![format!("Starting import of {filename}")],
                ..import_polling(Some(&at_bookmark), Some(PollStatus::Active))
            };
            Ok(respond(StatusCode::ACCEPTED, polling))
        }
        ImportRequest::Poll { current_bookmark } => {
            let done = lock(&app.imports)
                .get(&meta.uuid)
                .filter(|task| task.at_bookmark == current_bookmark)
                .map(|task| task.done.clone());
            let Some(done) = done else {
                return Ok(import_failure("Not currently importing anything."));
            };
            let at = Some(current_bookmark.as_str());
            Ok(match wait_for(done).await {
                None => respond(
                    StatusCode::ACCEPTED,
                    import_polling(at, Some(PollStatus::Active)),
                ),
                Some(Ok(outcome)) => respond(
                    StatusCode::OK,
                    ImportPolling {
                        result: Some(outcome),
                        messages: vec!["Import complete".to_owned()],
                        ..import_polling(at, Some(PollStatus::Complete))
                    },
                ),
                Some(Err(error)) => respond(
                    StatusCode::OK,
                    ImportPolling {
                        success: false,
                        error: Some(error),
                        ..import_polling(at, Some(PollStatus::Error))
                    },
                ),
            })
        }
    }
}

async fn upload_import(
    State(app): State<Arc<App>>,
    Path(filename): Path<String>,
    body: Body,
) -> Response {
    let Some(upload) = lock(&app.uploads).get(&filename).cloned() else {
        return (StatusCode::NOT_FOUND, "no such upload").into_response();
    };
    let written = async {
        let mut file = fs_err::File::create(&upload.path)?;
        let mut hasher = <md5::Md5 as md5::Digest>::new();
        let mut body = body;
        while let Some(frame) = poll_fn(|context| Pin::new(&mut body).poll_frame(context)).await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                md5::Digest::update(&mut hasher, &data);
                file.write_all(&data)?;
            }
        }
        file.flush()?;
        Ok::<_, std::io::Error>(hex::encode(md5::Digest::finalize(hasher)))
    }
    .await;
    match written {
        Ok(md5) => {
            if let Some(stored) = lock(&app.uploads).get_mut(&filename) {
                stored.md5 = Some(md5.clone());
            }
            let etag = HeaderValue::from_str(&format!("\"{md5}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
            (StatusCode::OK, [(ETAG, etag)]).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Time travel

fn parse_time(text: &str) -> Result<i64, ApiError> {
    clock::parse_timestamp(text).ok_or_else(|| {
        ApiError::malformed(format!("`timestamp` {text:?} is not an ISO 8601 timestamp"))
    })
}

fn no_bookmark_before(text: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        7400,
        format!("The request is malformed: no bookmark exists at or before {text}"),
    )
}

async fn get_bookmark(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, database) = app.database(&id)?;
    let parameters = query_parameters(&uri)?;
    let bookmark = match parameters.get("timestamp") {
        None => blocking(move || database.current_bookmark()).await?,
        Some(text) => {
            let millis = parse_time(text)?;
            blocking(move || database.bookmark_at(millis))
                .await?
                .ok_or_else(|| no_bookmark_before(text))?
        }
    };
    Ok(respond(StatusCode::OK, BookmarkResult { bookmark }))
}

async fn restore(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, database) = app.database(&id)?;
    let parameters = query_parameters(&uri)?;
    let target = match (parameters.get("bookmark"), parameters.get("timestamp")) {
        (Some(bookmark), _) => bookmark.clone(),
        (None, Some(text)) => {
            let millis = parse_time(text)?;
            let lookup = Arc::clone(&database);
            blocking(move || lookup.bookmark_at(millis))
                .await?
                .ok_or_else(|| no_bookmark_before(text))?
        }
        (None, None) => {
            return Err(ApiError::malformed(
                "either `bookmark` or `timestamp` is required",
            ));
        }
    };
    let restored = blocking(move || database.restore(&target)).await?;
    match restored {
        Ok((bookmark, previous_bookmark)) => Ok(respond(
            StatusCode::OK,
            RestoreResult {
                bookmark,
                previous_bookmark,
                message: "Database restored successfully".to_owned(),
            },
        )),
        Err(RestoreError::UnknownBookmark(bookmark)) => Err(ApiError::malformed(format!(
            "bookmark {bookmark} does not exist for this database"
        ))),
        Err(RestoreError::Failed(error)) => Err(ApiError::internal(error)),
    }
}

// ---------------------------------------------------------------------------------------------
// /__sim

async fn sim_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    Json(app.stats())
}

async fn sim_reset_stats(State(app): State<Arc<App>>) -> Json<Stats> {
    app.reset_stats();
    Json(app.stats())
}

async fn sim_faults(State(app): State<Arc<App>>) -> Json<Faults> {
    Json(app.faults())
}

async fn sim_set_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            app.set_faults(faults);
            Json(app.faults()).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names() {
        let database = format!("{DATABASES}/{{database_id}}");
        assert_eq!(
            endpoint_name(&Method::GET, Some(DATABASES)),
            "list_databases"
        );
        assert_eq!(endpoint_name(&Method::GET, Some(&database)), "get_database");
        assert_eq!(
            endpoint_name(&Method::POST, Some(&format!("{database}/query"))),
            "query"
        );
        assert_eq!(endpoint_name(&Method::DELETE, Some(DATABASES)), "unknown");
        assert_eq!(endpoint_name(&Method::GET, None), "unknown");
    }

    #[test]
    fn accounts() {
        assert!(valid_account(
            "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/d1/database"
        ));
        assert!(!valid_account(
            "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353aa/d1/database"
        ));
        assert!(!valid_account("/client/v4/accounts/bad%20id/d1/database"));
    }

    #[test]
    fn params_bind_by_json_type() {
        assert_eq!(
            parse_param(&serde_json::json!("1"), "p").unwrap(),
            Value::Text("1".to_owned())
        );
        assert_eq!(
            parse_param(&serde_json::json!(7), "p").unwrap(),
            Value::Integer(7)
        );
        assert_eq!(
            parse_param(&serde_json::json!(1.5), "p").unwrap(),
            Value::Real(1.5)
        );
        assert_eq!(
            parse_param(&serde_json::json!(true), "p").unwrap(),
            Value::Integer(1)
        );
        assert_eq!(
            parse_param(&serde_json::Value::Null, "p").unwrap(),
            Value::Null
        );
        assert!(parse_param(&serde_json::json!([1]), "p").is_err());
    }

    #[test]
    fn blobs_become_byte_arrays() {
        assert_eq!(
            json_value(Value::Blob(vec![1, 255])),
            serde_json::json!([1, 255])
        );
        assert_eq!(
            json_value(Value::Real(f64::INFINITY)),
            serde_json::Value::Null
        );
    }
}
