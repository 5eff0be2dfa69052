//! Listing, creating, reading, updating and deleting databases.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::response::{ApiError, details_of, parse_body, query_parameters, respond, respond_null};
use super::{App, lock};
use crate::d1::api::{
    CreateDatabaseRequest, DatabaseDetails, Envelope, ReadReplication, ResultInfo,
    UpdateDatabaseRequest,
};
use crate::sim::registry::{CreateError, NewDatabase, valid_name};

pub(super) async fn list_databases(
    State(app): State<Arc<App>>,
    uri: Uri,
) -> Result<Response, ApiError> {
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
    let asked = number("per_page", 1000, 10..=10_000)?;
    // `Faults::max_per_page`: a server answering fewer per page than asked, which a client
    // paging through the list must not mistake for the last page.
    let cap = u64::from(app.faults().max_per_page);
    let per_page = if cap > 0 { asked.min(cap) } else { asked };
    // The OpenAPI file calls `name` "a database name to search for"; whether Cloudflare
    // matches a prefix, a substring or the whole name is unverified. The simulator matches a
    // substring (the loosest reading, so a client that filters the answer itself stays right).
    let name = parameters.get("name").map(String::as_str);
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let (total, page_items) = app.registry.page(name, skip, take);
    // Items are `d1_database-response`: uuid, name, version, created_at, jurisdiction (§4);
    // nothing that needs the database opened, so a page of 10,000 costs no file.
    let items: Vec<DatabaseDetails> = page_items
        .into_iter()
        .map(|meta| DatabaseDetails {
            uuid: meta.uuid,
            name: meta.name,
            created_at: Some(meta.created_at),
            version: Some(meta.version),
            jurisdiction: meta.jurisdiction,
            ..DatabaseDetails::default()
        })
        .collect();
    // `count` is the page's items and `total_count` all matches, Cloudflare's usual
    // `result_info`. The OpenAPI file words `total_count` "Total results available without any
    // search parameters", which would ignore `name`; that reading is unverified, not followed.
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

pub(super) async fn create_database(
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<Response, ApiError> {
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

pub(super) async fn get_database(
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

pub(super) async fn delete_database(
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

pub(super) async fn update_database(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    update(&app, &id, &body, true).await
}

pub(super) async fn patch_database(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    update(&app, &id, &body, false).await
}
