//! Wire types of the Cloudflare D1 HTTP API (`shared/cloudflare-d1-openapi.json`), shared by the
//! client and the simulator. Optional fields are skipped when absent so requests stay minimal and
//! responses match what Cloudflare sends.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Cloudflare's response envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<ApiMessage>,
    #[serde(default)]
    pub messages: Vec<ApiMessage>,
    #[serde(default = "none")]
    pub result: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_info: Option<ResultInfo>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> Envelope<T> {
    /// A successful envelope around `result`.
    pub fn ok(result: T) -> Self {
        Self {
            success: true,
            errors: Vec::new(),
            messages: Vec::new(),
            result: Some(result),
            result_info: None,
        }
    }

    /// A failed envelope with `errors` and a null result.
    pub fn failure(errors: Vec<ApiMessage>) -> Self {
        Self {
            success: false,
            errors,
            messages: Vec::new(),
            result: None,
            result_info: None,
        }
    }
}

/// One item of `errors` or `messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiMessage {
    pub code: i64,
    pub message: String,
}

impl ApiMessage {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Pagination of the list operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInfo {
    pub count: u64,
    pub page: u64,
    pub per_page: u64,
    pub total_count: u64,
}

/// One statement (or several joined by `;`) with positional parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SingleQuery {
    pub sql: String,
    /// Strings in the spec; the simulator also binds numbers, booleans and null by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Value>,
}

/// Body of `/query` and `/raw` (`d1_batch-query`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryBody {
    Single {
        sql: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        params: Vec<Value>,
    },
    Batch {
        batch: Vec<SingleQuery>,
    },
}

/// `d1_query-meta`: every field is optional in the schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_db: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_row_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by_colo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by_primary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<QueryTimings>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryTimings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_duration_ms: Option<f64>,
}

/// One element of a `/query` result: rows as objects keyed by column name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    #[serde(default)]
    pub results: Vec<Map<String, Value>>,
    #[serde(default = "default_true")]
    pub success: bool,
    #[serde(default)]
    pub meta: QueryMeta,
}

fn default_true() -> bool {
    true
}

/// Columns and rows of a `/raw` result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawResults {
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub rows: Vec<Vec<Value>>,
}

/// One element of a `/raw` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawResult {
    #[serde(default)]
    pub results: RawResults,
    #[serde(default = "default_true")]
    pub success: bool,
    #[serde(default)]
    pub meta: QueryMeta,
}

/// `read_replication` of a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReplication {
    /// `auto` or `disabled`.
    pub mode: String,
}

/// `d1_database-details-response` (and the list items, a subset of it). Every field may be
/// absent when `fields` restricted the answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_tables: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_replication: Option<ReadReplication>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_in_region: Option<String>,
}

/// Body of POST `/database`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDatabaseRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_location_hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_replication: Option<ReadReplication>,
}

/// Body of PUT (field required) and PATCH (optional) `/database/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateDatabaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_replication: Option<ReadReplication>,
}

/// `dump_options` of an export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_schema: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
}

/// Body of POST `/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// Always `polling`.
    pub output_format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_options: Option<DumpOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_bookmark: Option<String>,
}

/// `status` of an export or import task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollStatus {
    Active,
    Complete,
    Error,
}

/// Where the finished export can be downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    pub filename: String,
    pub signed_url: String,
}

/// Result of POST `/export` (HTTP 202 while active, 200 when complete or failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPolling {
    #[serde(default)]
    pub success: bool,
    /// Always `export`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_bookmark: Option<String>,
    pub status: PollStatus,
    #[serde(default)]
    pub messages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExportFile>,
}

/// Body of POST `/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ImportRequest {
    Init { etag: String },
    Ingest { etag: String, filename: String },
    Poll { current_bookmark: String },
}

/// The outcome of a finished import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportOutcome {
    pub final_bookmark: String,
    pub num_queries: u64,
    #[serde(default)]
    pub meta: QueryMeta,
}

/// Result of POST `/import`: `init` answers `filename` + `upload_url`; `ingest` and `poll` answer
/// a polling object (HTTP 202 while active).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportPolling {
    #[serde(default)]
    pub success: bool,
    /// `import` on polling objects.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_bookmark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PollStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ImportOutcome>,
}

/// Result of GET `/time_travel/bookmark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookmarkResult {
    pub bookmark: String,
}

/// Result of POST `/time_travel/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub bookmark: String,
    pub previous_bookmark: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_body_shapes() {
        let single: QueryBody =
            serde_json::from_value(json!({"sql": "SELECT ?", "params": ["1"]})).unwrap();
        assert_eq!(
            single,
            QueryBody::Single {
                sql: "SELECT ?".to_owned(),
                params: vec![json!("1")]
            }
        );
        let batch: QueryBody =
            serde_json::from_value(json!({"batch": [{"sql": "SELECT 1"}]})).unwrap();
        assert!(matches!(batch, QueryBody::Batch { ref batch } if batch.len() == 1));
        assert_eq!(
            serde_json::to_value(&batch).unwrap(),
            json!({"batch": [{"sql": "SELECT 1"}]})
        );
    }

    #[test]
    fn failure_envelope_has_null_result() {
        let envelope: Envelope<Vec<QueryResult>> =
            Envelope::failure(vec![ApiMessage::new(7500, "boom")]);
        assert_eq!(
            serde_json::to_value(&envelope).unwrap(),
            json!({"success": false, "errors": [{"code": 7500, "message": "boom"}], "messages": [], "result": null})
        );
        let parsed: Envelope<Vec<QueryResult>> = serde_json::from_value(
            json!({"success": false, "errors": [{"code": 7500, "message": "boom"}], "messages": [], "result": null}),
        )
        .unwrap();
        assert_eq!(parsed, envelope);
    }

    #[test]
    fn import_request_is_tagged_by_action() {
        let request = ImportRequest::Poll {
            current_bookmark: "b".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"action": "poll", "current_bookmark": "b"})
        );
    }
}
