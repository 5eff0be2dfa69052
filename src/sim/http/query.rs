//! `/query` and `/raw`: request bodies, parameters, result shapes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use rusqlite::types::Value;

use super::App;
use super::response::{ApiError, parse_body, respond};
use crate::d1::api::{QueryResult, RawResult, RawResults};
use crate::sim::conn::ConnectionControl;
use crate::sim::engine::{QueryEntry, StatementOutput};

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
    if !spared && let Some(sql) = app.take_interleave() {
        let other = Arc::clone(&database);
        tokio::task::spawn_blocking(move || other.execute_trusted(&sql))
            .await
            .map_err(ApiError::internal)?
            .map_err(|error| ApiError::internal(error.0))?;
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
    if !spared && app.take_fault(|faults| &mut faults.hold_after_commit) {
        app.count_held();
        // Never answers: the request stays open until the server drops the connection (when
        // it sees the client gone, or at the simulator's shutdown).
        std::future::pending::<()>().await;
    }
    if !spared && app.take_fault(|faults| &mut faults.garble_after_commit) {
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{\"result\": [{\"results\": "))
            .map_err(ApiError::internal);
    }
    Ok(if raw {
        respond(StatusCode::OK, raw_results(outputs))
    } else {
        respond(StatusCode::OK, object_results(outputs))
    })
}

pub(super) async fn query(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(connection): ConnectInfo<ConnectionControl>,
    body: Bytes,
) -> Result<Response, ApiError> {
    run_sql(&app, &id, &connection, &body, false).await
}

pub(super) async fn raw(
    State(app): State<Arc<App>>,
    Path((_, id)): Path<(String, String)>,
    ConnectInfo(connection): ConnectInfo<ConnectionControl>,
    body: Bytes,
) -> Result<Response, ApiError> {
    run_sql(&app, &id, &connection, &body, true).await
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

#[cfg(test)]
mod tests {
    use super::*;

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
