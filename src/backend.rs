//! The one trait every database d1ctl talks to implements: local SQLite files and the D1 HTTP API.
//!
//! Everything above this layer (ledgers, apply, status, drift) is written as batches of SQL
//! statements, so a backend only has to run a batch atomically and hand back its rows.

use std::fmt;

use async_trait::async_trait;

/// An SQL value, as SQLite and D1 know them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(value) => Some(*value),
            #[expect(
                clippy::cast_possible_truncation,
                reason = "D1 returns integers as JSON numbers"
            )]
            Value::Real(value) if value.fract() == 0.0 => Some(*value as i64),
            Value::Text(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// Text rendering used where a value is shown or compared as text.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Integer(value) => Some(value.to_string()),
            Value::Real(value) => Some(value.to_string()),
            Value::Text(text) => Some(text.clone()),
            Value::Blob(bytes) => Some(hex::encode(bytes)),
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Integer(value)
    }
}

/// One statement of a batch, with its positional (`?`) parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    pub fn with_params(sql: impl Into<String>, params: Vec<Value>) -> Self {
        Self {
            sql: sql.into(),
            params,
        }
    }
}

/// The rows one statement returned (empty for statements without rows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The value of `column` in `row`, or `Null` when the column is absent.
    pub fn get<'a>(&'a self, row: &'a [Value], column: &str) -> &'a Value {
        self.columns
            .iter()
            .position(|name| name == column)
            .and_then(|index| row.get(index))
            .unwrap_or(&Value::Null)
    }
}

/// What kind of database an environment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Sqlite,
    D1,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::D1 => "d1",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A statement of the batch failed; the whole batch was rolled back.
    #[error("{message}")]
    Statement {
        /// Index of the failing statement in the batch, when the backend can tell.
        index: Option<usize>,
        message: String,
        /// The table a "no such table" failure names (ledger reads take it as "absent").
        missing_table: Option<String>,
    },
    /// The database could not be reached or opened; nothing was run.
    #[error("{message}")]
    Unavailable {
        message: String,
        hint: Option<String>,
    },
    /// The request may or may not have committed (its response was lost).
    #[error("{message}")]
    OutcomeUnknown { message: String },
    /// Any other error of a backend, kept typed for the printer.
    #[error(transparent)]
    Other(OtherError),
}

/// Another error of a backend, with the hint the backend had for it when it built it: this
/// module knows no backend's error types.
#[derive(Debug)]
pub struct OtherError {
    error: Box<dyn std::error::Error + Send + Sync>,
    hint: Option<String>,
}

impl OtherError {
    pub fn new(
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
        hint: Option<String>,
    ) -> Self {
        Self {
            error: error.into(),
            hint,
        }
    }
}

impl fmt::Display for OtherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Transparent: the chain goes on with the wrapped error's own causes.
impl std::error::Error for OtherError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl BackendError {
    pub fn hint(&self) -> Option<String> {
        match self {
            BackendError::Unavailable { hint, .. } => hint.clone(),
            BackendError::OutcomeUnknown { .. } => Some(
                "d1ctl re-reads the ledger to learn whether it committed; run `d1ctl status` to see the state"
                    .to_owned(),
            ),
            BackendError::Other(error) => error.hint.clone(),
            BackendError::Statement { .. } => None,
        }
    }

    /// The table a "no such table" failure names, which ledger reads treat as "table absent".
    pub fn is_missing_table(&self) -> Option<String> {
        match self {
            BackendError::Statement { missing_table, .. } => missing_table.clone(),
            _ => None,
        }
    }

    /// An SQL failure as SQLite (or D1, which is SQLite) words it: the one place the text of
    /// its message is read, to tell a missing table from other failures; D1 gives no code.
    pub fn sql(index: Option<usize>, message: String) -> Self {
        let missing_table = message.split("no such table: ").nth(1).map(|rest| {
            rest.split([':', ' ', ','])
                .next()
                .unwrap_or_default()
                .trim_start_matches("main.")
                .to_owned()
        });
        BackendError::Statement {
            index,
            message,
            missing_table,
        }
    }
}

/// A point a database can be restored to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RollbackPoint {
    /// `bookmark` (D1 Time Travel) or `backup` (a SQLite file).
    pub kind: &'static str,
    /// The bookmark, or the backup file's path.
    pub point: String,
}

/// What `describe` learned about a target.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How to name the target: a path, or `name uuid` as Cloudflare reports them.
    pub label: String,
    /// The database certainly has no tables yet (so no ledger to read).
    pub known_empty: bool,
    /// Its size in bytes as its host reports it (D1's `file_size`, a local file's length).
    pub size_bytes: Option<u64>,
}

/// A database d1ctl can read and migrate.
#[async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Where the database is, for messages: a path, or `name (uuid)` of a D1 database.
    fn location(&self) -> String;

    /// Runs every statement in one atomic unit: all commit or none. Returns one `Rows` per
    /// statement.
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError>;

    /// Confirms the target exists and is the configured one. Every command that writes shows
    /// it first.
    async fn describe(&self) -> Result<Identity, BackendError> {
        Ok(Identity {
            label: self.location(),
            known_empty: false,
            size_bytes: None,
        })
    }

    /// Takes a point the database can be restored to: a Time Travel bookmark on D1, a backup
    /// file under `backups` for SQLite.
    async fn rollback_point(
        &self,
        backups: &std::path::Path,
        label: &str,
    ) -> Result<RollbackPoint, BackendError>;

    /// Replaces the whole database with its state at `point`. The undo point is the caller's
    /// to take first (the write engine takes one in every session).
    async fn restore(&self, point: &str) -> Result<(), BackendError>;

    /// Lets go of any open file of the database (SQLite keeps its connection between batches),
    /// so the file can be replaced; the next call opens it again.
    fn release_files(&self) {}

    /// Runs read-only statements; a backend may retry these freely.
    async fn read(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError> {
        self.batch(statements).await
    }
}
