//! Cloudflare's envelopes: the failure type every handler returns, successful replies, and
//! reading request bodies and query strings.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::App;
use crate::d1::api::{ApiMessage, DatabaseDetails, Envelope};
use crate::sim::engine::{Database, Unavailable};
use crate::sim::registry::DatabaseMeta;

/// A Cloudflare failure envelope with its HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    errors: Vec<ApiMessage>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![ApiMessage::new(code, message)],
            retry_after: None,
        }
    }

    pub(super) fn malformed(detail: impl Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            7400,
            format!("The request is malformed: {detail}"),
        )
    }

    pub(super) fn database_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            7404,
            format!("The database {id} could not be found"),
        )
    }

    pub(super) fn sql(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 7500, message)
    }

    pub(super) fn internal(message: impl Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            1000,
            format!("Internal server error: {message}"),
        )
    }

    pub(super) fn no_route(status: StatusCode, path: &str) -> Self {
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

    pub(super) fn rate_limited(retry_after: u64) -> Self {
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

impl From<Unavailable> for ApiError {
    fn from(error: Unavailable) -> Self {
        Self::internal(error)
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
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

pub(super) async fn details_of(
    meta: DatabaseMeta,
    database: Arc<Database>,
) -> Result<DatabaseDetails, ApiError> {
    blocking(move || App::details(&meta, &database)).await?
}

pub(super) fn respond<T: Serialize>(status: StatusCode, result: T) -> Response {
    (status, Json(Envelope::ok(result))).into_response()
}

pub(super) fn respond_null() -> Response {
    let envelope = Envelope::<()> {
        result: None,
        ..Envelope::ok(())
    };
    (StatusCode::OK, Json(envelope)).into_response()
}

pub(super) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::malformed("the request body is empty"));
    }
    serde_json::from_slice(body).map_err(ApiError::malformed)
}

pub(super) fn query_parameters(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|Query(parameters)| parameters)
        .map_err(|rejection| ApiError::malformed(rejection.body_text()))
}
