//! Imports: init (upload URL), upload to `/__sim/uploads`, ingest, poll.

use std::future::poll_fn;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::response::{ApiError, blocking, parse_body, respond};
use super::{App, Outcome, lock, wait_for};
use crate::d1::api::{
    ImportOutcome, ImportPolling, ImportRequest, PollStatus, QueryMeta, QueryTimings,
};
use crate::sim::engine::{Database, QueryEntry, SqlError};

pub(super) struct ImportTask {
    at_bookmark: String,
    done: watch::Receiver<Outcome<ImportOutcome>>,
}

#[derive(Debug, Clone)]
pub(super) struct Upload {
    database: String,
    path: PathBuf,
    md5: Option<String>,
}

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

pub(super) async fn import(
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
            let at_bookmark = blocking(move || bookmark_database.current_bookmark()).await??;
            let (sender, done) = watch::channel(None);
            let path = upload.path.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = import_file(&database, &path)
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

pub(super) async fn upload_import(
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

/// Runs the SQL file at `path` as one atomic request (the import protocol). Returns the
/// number of statements, their combined meta and the bookmark after the import.
fn import_file(
    database: &Database,
    path: &std::path::Path,
) -> Result<(u64, QueryMeta, String), SqlError> {
    let sql = fs_err::read_to_string(path).map_err(|error| SqlError(error.to_string()))?;
    let outputs = database.execute(&[QueryEntry {
        sql,
        params: Vec::new(),
    }])?;
    let sum = |pick: fn(&QueryMeta) -> Option<u64>| {
        outputs
            .iter()
            .map(|output| pick(&output.meta).unwrap_or(0))
            .sum::<u64>()
    };
    let duration: f64 = outputs
        .iter()
        .map(|output| output.meta.duration.unwrap_or(0.0))
        .sum();
    let meta = QueryMeta {
        changed_db: Some(
            outputs
                .iter()
                .any(|output| output.meta.changed_db == Some(true)),
        ),
        changes: Some(sum(|meta| meta.changes)),
        duration: Some(duration),
        last_row_id: outputs.last().and_then(|output| output.meta.last_row_id),
        rows_read: Some(sum(|meta| meta.rows_read)),
        rows_written: Some(sum(|meta| meta.rows_written)),
        size_after: outputs.last().and_then(|output| output.meta.size_after),
        timings: Some(QueryTimings {
            sql_duration_ms: Some(duration),
        }),
        ..QueryMeta::default()
    };
    let bookmark = database.current_bookmark()?;
    Ok((outputs.len() as u64, meta, bookmark))
}
