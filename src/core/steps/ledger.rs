//! `_d1ctl_steps`: which data steps ran on an env, in that env's own database.
//!
//! One row per step. A run writes `started_at` first and `finished_at` last: an SQL step in
//! the same atomic request as its (last) batch, a command step in a request after its command
//! exited. A row with `started_at` and no `finished_at` is a run that did not finish.

use serde::Serialize;

use crate::backend::{Backend, BackendError, Rows, Statement, Value};

pub const STEPS_TABLE: &str = "_d1ctl_steps";

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A step's row in an env's `_d1ctl_steps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    pub name: String,
    /// `sql`, `chunked` or `command`.
    pub kind: String,
    /// SHA-256 of what ran (the SQL file with LF line endings, or the command's text).
    pub checksum: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Rows the step's statements changed (`changes()` summed); `None` for a command.
    pub rows: Option<i64>,
    /// A chunked step's batches that changed rows.
    pub batches: i64,
    pub run_by: String,
    /// How many times the step was started on this env.
    pub runs: i64,
    /// How a command that did not finish ended (`exit status 3`), when d1ctl saw it end.
    pub ended: Option<String>,
}

impl StepRecord {
    pub fn finished(&self) -> bool {
        self.finished_at.is_some()
    }
}

pub fn create_statement() -> Statement {
    Statement::new(format!(
        "CREATE TABLE IF NOT EXISTS {STEPS_TABLE} (\n  name TEXT PRIMARY KEY NOT NULL,\n  kind TEXT NOT NULL,\n  checksum TEXT NOT NULL,\n  started_at TEXT NOT NULL,\n  finished_at TEXT,\n  rows INTEGER,\n  batches INTEGER NOT NULL DEFAULT 0,\n  run_by TEXT NOT NULL,\n  runs INTEGER NOT NULL DEFAULT 1,\n  ended TEXT,\n  d1ctl_version TEXT NOT NULL\n)"
    ))
}

/// Records that a run starts (a new row, or a rerun over the old one): the table and the row.
pub fn start_statements(name: &str, kind: &str, checksum: &str, run_by: &str) -> Vec<Statement> {
    let rows = if kind == "command" {
        Value::Null
    } else {
        Value::Integer(0)
    };
    vec![
        create_statement(),
        Statement::with_params(
            format!(
                "INSERT INTO {STEPS_TABLE} (name, kind, checksum, started_at, finished_at, rows, batches, run_by, runs, ended, d1ctl_version) VALUES (?, ?, ?, {NOW}, NULL, ?, 0, ?, 1, NULL, ?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, checksum = excluded.checksum, started_at = excluded.started_at, finished_at = NULL, rows = excluded.rows, batches = 0, run_by = excluded.run_by, runs = runs + 1, ended = NULL, d1ctl_version = excluded.d1ctl_version"
            ),
            vec![
                Value::from(name),
                Value::from(kind),
                Value::from(checksum),
                rows,
                Value::from(run_by),
                Value::from(env!("CARGO_PKG_VERSION")),
            ],
        ),
    ]
}

/// Adds the rows the statement just before it changed (`changes()` is the last completed
/// INSERT, UPDATE or DELETE's count, so this goes right after a writing statement).
pub fn count_statement(name: &str) -> Statement {
    Statement::with_params(
        format!("UPDATE {STEPS_TABLE} SET rows = rows + changes() WHERE name = ?"),
        vec![Value::from(name)],
    )
}

/// After one repetition of a chunked statement: its rows counted, and the step finished when
/// it changed none. Both read `changes()` of the statement before, in the same request.
pub fn chunk_statement(name: &str) -> Statement {
    Statement::with_params(
        format!(
            "UPDATE {STEPS_TABLE} SET rows = rows + changes(), batches = batches + (changes() > 0), finished_at = CASE WHEN changes() = 0 THEN {NOW} END WHERE name = ?"
        ),
        vec![Value::from(name)],
    )
}

pub fn finish_statement(name: &str) -> Statement {
    Statement::with_params(
        format!("UPDATE {STEPS_TABLE} SET finished_at = {NOW} WHERE name = ?"),
        vec![Value::from(name)],
    )
}

/// A command that did not finish: how it ended, kept for `status`.
pub fn ended_statement(name: &str, how: &str) -> Statement {
    Statement::with_params(
        format!("UPDATE {STEPS_TABLE} SET ended = ? WHERE name = ? AND finished_at IS NULL"),
        vec![Value::from(how), Value::from(name)],
    )
}

pub fn read_statement() -> Statement {
    Statement::new(format!(
        "SELECT name, kind, checksum, started_at, finished_at, rows, batches, run_by, runs, ended FROM {STEPS_TABLE} ORDER BY started_at, name"
    ))
}

/// One step's row (after a batch, to follow its progress).
pub fn read_one_statement(name: &str) -> Statement {
    Statement::with_params(
        format!(
            "SELECT name, kind, checksum, started_at, finished_at, rows, batches, run_by, runs, ended FROM {STEPS_TABLE} WHERE name = ?"
        ),
        vec![Value::from(name)],
    )
}

pub fn parse(rows: &Rows) -> Vec<StepRecord> {
    rows.rows
        .iter()
        .map(|row| {
            let text = |column: &str| rows.get(row, column).to_text();
            StepRecord {
                name: text("name").unwrap_or_default(),
                kind: text("kind").unwrap_or_default(),
                checksum: text("checksum").unwrap_or_default(),
                started_at: text("started_at").unwrap_or_default(),
                finished_at: text("finished_at"),
                rows: rows.get(row, "rows").as_i64(),
                batches: rows.get(row, "batches").as_i64().unwrap_or(0),
                run_by: text("run_by").unwrap_or_default(),
                runs: rows.get(row, "runs").as_i64().unwrap_or(1),
                ended: text("ended"),
            }
        })
        .collect()
}

/// Every step's row of an env; none when the table does not exist yet.
pub async fn read(backend: &dyn Backend) -> Result<Vec<StepRecord>, BackendError> {
    match backend.read(&[read_statement()]).await {
        Ok(rows) => Ok(rows.first().map(parse).unwrap_or_default()),
        Err(error) if error.is_missing_table().as_deref() == Some(STEPS_TABLE) => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::SqliteBackend;

    #[tokio::test]
    async fn counts_the_rows_of_the_statement_before_and_finishes_on_a_batch_of_none() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::new(&dir.path().join("db.sqlite"), true);
        assert_eq!(read(&backend).await.unwrap(), Vec::new());
        backend
            .batch(&[
                Statement::new("CREATE TABLE t (id INTEGER PRIMARY KEY, done INTEGER)"),
                Statement::new("INSERT INTO t (done) VALUES (0), (0), (0)"),
            ])
            .await
            .unwrap();
        let chunked = "UPDATE t SET done = 1 WHERE id IN (SELECT id FROM t WHERE done = 0 LIMIT 2)";
        let mut first = start_statements("fill", "chunked", "abc", "me@here");
        first.extend([Statement::new(chunked), chunk_statement("fill")]);
        backend.batch(&first).await.unwrap();
        let after_one = read(&backend).await.unwrap();
        assert_eq!(after_one[0].rows, Some(2));
        assert_eq!(after_one[0].batches, 1);
        assert!(!after_one[0].finished());
        for _ in 0..2 {
            backend
                .batch(&[Statement::new(chunked), chunk_statement("fill")])
                .await
                .unwrap();
        }
        let done = read(&backend).await.unwrap();
        assert_eq!(done[0].rows, Some(3));
        assert_eq!(done[0].batches, 2);
        assert!(done[0].finished());

        // A rerun starts the row over and counts the run.
        let mut again = start_statements("fill", "sql", "def", "me@here");
        again.extend([
            Statement::new("UPDATE t SET done = 2"),
            count_statement("fill"),
            finish_statement("fill"),
        ]);
        backend.batch(&again).await.unwrap();
        let rerun = &read(&backend).await.unwrap()[0];
        assert_eq!(
            (rerun.rows, rerun.runs, rerun.checksum.as_str()),
            (Some(3), 2, "def")
        );
        assert!(rerun.finished());
    }
}
