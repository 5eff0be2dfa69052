//! `POST /__sim/databases`: many databases at once, for tests and benchmarks of fleets.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::App;
use super::response::blocking;

/// Cloudflare's limit on databases per account (§12, Workers Paid); a larger request is a
/// mistake, not a fleet.
const MOST_DATABASES: usize = 50_000;

#[derive(Debug, Deserialize)]
struct CreateDatabases {
    prefix: String,
    count: usize,
}

#[derive(Debug, Serialize)]
struct CreatedDatabase {
    name: String,
    uuid: String,
}

#[derive(Debug, Serialize)]
struct CreatedDatabases {
    databases: Vec<CreatedDatabase>,
}

/// `{"prefix": "tenant-", "count": 200}` creates (or finds) `tenant-1` … `tenant-200` and
/// answers `{"databases": [{"name", "uuid"}, …]}` in that order.
pub(super) async fn sim_create_databases(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request = match serde_json::from_slice::<CreateDatabases>(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    if request.count > MOST_DATABASES {
        return (
            StatusCode::BAD_REQUEST,
            format!("`count` is at most {MOST_DATABASES}, D1's limit of databases per account"),
        )
            .into_response();
    }
    let created = blocking(move || app.create_databases(&request.prefix, request.count)).await;
    match created {
        Ok(Ok(databases)) => Json(CreatedDatabases {
            databases: databases
                .into_iter()
                .map(|(name, uuid)| CreatedDatabase { name, uuid })
                .collect(),
        })
        .into_response(),
        Ok(Err(error)) => (StatusCode::BAD_REQUEST, format!("{error:#}")).into_response(),
        Err(error) => error.into_response(),
    }
}
