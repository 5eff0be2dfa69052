//! Exports: a dump started on a blocking thread, polled, then downloaded from `/__sim/exports`.

use std::io::Read;
use std::path::Path as FilePath;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::response::{ApiError, parse_body, respond};
use super::{App, Outcome, lock, wait_for};
use crate::d1::api::{ExportFile, ExportPolling, ExportRequest, PollStatus};
use crate::d1::dump::DumpOptions;
use crate::sim::engine::Database;
use crate::sim::registry::DatabaseMeta;

pub(super) struct ExportTask {
    at_bookmark: String,
    token: String,
    filename: String,
    done: watch::Receiver<Outcome<()>>,
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

pub(super) async fn export(
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

pub(super) async fn download_export(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
) -> Response {
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
