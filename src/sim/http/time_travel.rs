//! Time travel: bookmarks at a time and restores.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::App;
use super::response::{ApiError, blocking, query_parameters, respond};
use crate::d1::api::{BookmarkResult, RestoreResult};
use crate::sim::bookmarks::RestoreError;
use crate::sim::clock;

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

pub(super) async fn get_bookmark(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, database) = app.database(&id)?;
    let parameters = query_parameters(&uri)?;
    let bookmark = match parameters.get("timestamp") {
        None => blocking(move || database.current_bookmark()).await??,
        Some(text) => {
            let millis = parse_time(text)?;
            blocking(move || database.bookmark_at(millis))
                .await??
                .ok_or_else(|| no_bookmark_before(text))?
        }
    };
    Ok(respond(StatusCode::OK, BookmarkResult { bookmark }))
}

pub(super) async fn restore(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, database) = app.database(&id)?;
    let parameters = query_parameters(&uri)?;
    let target = match (parameters.get("bookmark"), parameters.get("timestamp")) {
        (Some(bookmark), _) => bookmark.clone(),
        // §7: "the nearest bookmark at or before the timestamp"; how a timestamp read inside a
        // write relates to that write's bookmark is settled in sim/bookmarks.rs.
        (None, Some(text)) => {
            let millis = parse_time(text)?;
            let lookup = Arc::clone(&database);
            blocking(move || lookup.bookmark_at(millis))
                .await??
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
