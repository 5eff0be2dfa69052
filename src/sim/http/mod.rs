//! The simulator's HTTP side: shared state, the router and the gate every Cloudflare-API
//! request passes. Handlers live beside it by area: databases, queries, export, import and
//! time travel; authentication, fault injection and the failure envelope have files of their own.

mod auth;
mod databases;
mod export;
mod faults;
mod fleet;
mod import;
mod query;
mod rate_limit;
mod response;
mod time_travel;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::sync::watch;

use self::auth::{credential, valid_account};
use self::databases::{
    create_database, delete_database, get_database, list_databases, patch_database, update_database,
};
use self::export::{ExportTask, download_export, export};
use self::faults::{sim_faults, sim_reset_stats, sim_set_faults, sim_stats};
use self::fleet::sim_create_databases;
use self::import::{ImportTask, Upload, import, upload_import};
pub(crate) use self::query::json_value;
use self::query::{query, raw};
use self::rate_limit::RateLimiter;
use self::response::ApiError;
use self::time_travel::{get_bookmark, restore};
use crate::d1::api::{DatabaseDetails, ReadReplication};
use crate::sim::conn::{ConnectionControl, SimListener};
use crate::sim::engine::Database;
use crate::sim::registry::{DatabaseMeta, NewDatabase, Registry};
use crate::sim::{Faults, SimConfig, Stats};

const DATABASES: &str = "/client/v4/accounts/{account_id}/d1/database";
/// How long a poll of a running export or import waits for it to finish.
const LONG_POLL: Duration = Duration::from_secs(20);

type Outcome<T> = Option<Result<T, String>>;

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
    rate_limiter: Mutex<RateLimiter>,
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
            rate_limiter: Mutex::new(RateLimiter::default()),
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
        *lock(&self.rate_limiter) = RateLimiter::default();
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

    pub(crate) fn create_databases(
        &self,
        prefix: &str,
        count: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let metas = self.registry.create_many(prefix, count)?;
        Ok(metas
            .into_iter()
            .map(|meta| (meta.name, meta.uuid))
            .collect())
    }

    pub(crate) fn database_for_test(&self, id: &str) -> anyhow::Result<Arc<Database>> {
        self.registry
            .by_uuid_or_name(id)
            .map(|(_, database)| database)
            .ok_or_else(|| anyhow::anyhow!("the simulator has no database `{id}`"))
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

    fn details(meta: &DatabaseMeta, database: &Database) -> Result<DatabaseDetails, ApiError> {
        let (num_tables, file_size) = database.details().map_err(ApiError::internal)?;
        Ok(DatabaseDetails {
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
        })
    }
}

/// Waits up to [`LONG_POLL`] for a task's outcome; `None` while it still runs.
async fn wait_for<T: Clone>(mut done: watch::Receiver<Outcome<T>>) -> Outcome<T> {
    let waited = tokio::time::timeout(LONG_POLL, done.wait_for(Option::is_some)).await;
    match waited {
        Ok(Ok(outcome)) => outcome.clone(),
        Ok(Err(_)) => Some(Err("the task stopped unexpectedly".to_owned())),
        Err(_) => None,
    }
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
        .route("/__sim/databases", post(sim_create_databases))
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

/// The database a request's path addresses (`…/database/{database_id}…`) and whether the
/// route takes a name there too (only GET of the database does, §4).
fn addressed_database(path: &str, endpoint: &str) -> Option<(String, bool)> {
    let (_, rest) = path.split_once("/d1/database/")?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    Some((id.to_owned(), endpoint == "get_database"))
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
    let database = addressed_database(&path, endpoint)
        .filter(|_| endpoint != "unknown")
        .and_then(|(id, or_name)| app.registry.name_of(&id, or_name));
    app.count(endpoint, database);
    let latency = lock(&app.faults).latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(retry_after) = app.burst_rate_limited() {
        return ApiError::rate_limited(retry_after).into_response();
    }
    // The limit is per user (§12); the simulator keys it by the credential as sent, before
    // checking it, and lets requests without one through to be refused by authentication
    // (the reference says nothing of how Cloudflare counts those).
    let decision =
        credential(request.headers()).and_then(|credential| app.check_rate_limit(&credential));
    if let Some(decision @ rate_limit::Decision::Refused { .. }) = decision {
        let mut response = ApiError::rate_limited(0).into_response();
        decision.write_headers(response.headers_mut());
        return response;
    }
    let mut response = 'answer: {
        if endpoint != "unknown" {
            if let Err(error) = app.authenticate(request.headers()) {
                break 'answer error.into_response();
            }
            if !valid_account(&path) {
                break 'answer ApiError::no_route(StatusCode::BAD_REQUEST, &path).into_response();
            }
        }
        next.run(request).await
    };
    if let Some(decision) = decision {
        decision.write_headers(response.headers_mut());
    }
    response
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::no_route(StatusCode::NOT_FOUND, uri.path())
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
    fn addressed_databases() {
        let path = "/client/v4/accounts/a/d1/database/tenant-1/time_travel/bookmark";
        assert_eq!(
            addressed_database(path, "get_bookmark"),
            Some(("tenant-1".to_owned(), false))
        );
        assert_eq!(
            addressed_database("/client/v4/accounts/a/d1/database/x", "get_database"),
            Some(("x".to_owned(), true))
        );
        assert_eq!(
            addressed_database("/client/v4/accounts/a/d1/database", "list_databases"),
            None
        );
    }
}
