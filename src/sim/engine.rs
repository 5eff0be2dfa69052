//! One simulated D1 database: an SQLite connection behind a mutex, the atomic execution of a
//! request, the authorizer, and time-travel bookmarks backed by snapshot files.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, StatementStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::d1::api::{QueryMeta, QueryTimings};
use crate::d1::authorizer::D1Rules;
use crate::d1::dump::{self, DumpError, DumpOptions};
use crate::d1::sqlite_text::describe;
use crate::sim::clock;
use crate::sim::split::split_statements;

/// D1's limit on the length of one statement, in bytes.
pub(crate) const MAX_STATEMENT_BYTES: usize = 100_000;
/// D1's limit on bound parameters per statement.
pub(crate) const MAX_PARAMETERS: usize = 100;

/// One entry of a request: `sql` (possibly several statements) and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryEntry {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

/// What one executed statement produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatementOutput {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    pub(crate) meta: QueryMeta,
}

/// A failed request: the message D1 would put in its code-7500 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SqlError(pub(crate) String);

/// A time-travel bookmark and the snapshot holding the database as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bookmark {
    pub(crate) id: String,
    pub(crate) millis: i64,
    pub(crate) sequence: u64,
    /// File name inside the database's snapshot directory.
    pub(crate) snapshot: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error("no bookmark {0} exists for this database")]
    UnknownBookmark(String),
    #[error("{0}")]
    Failed(String),
}

/// Where a database keeps its files.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseFiles {
    /// The SQLite file; `None` keeps the database in memory.
    pub(crate) database: Option<PathBuf>,
    /// Where the bookmark list is persisted; `None` keeps it in memory only.
    pub(crate) bookmarks: Option<PathBuf>,
    /// Directory of snapshot files.
    pub(crate) snapshots: PathBuf,
}

struct Inner {
    connection: Connection,
    rules: D1Rules,
    bookmarks: Vec<Bookmark>,
    files: DatabaseFiles,
}

/// A simulated D1 database.
pub(crate) struct Database {
    pub(crate) uuid: String,
    inner: Mutex<Inner>,
}

/// Pragmas D1 scopes to one transaction; they are reset after every request.
const RESET_PRAGMAS: &str = "PRAGMA foreign_keys=ON; PRAGMA case_sensitive_like=OFF; \
    PRAGMA ignore_check_constraints=OFF; PRAGMA legacy_alter_table=OFF; \
    PRAGMA recursive_triggers=OFF; PRAGMA reverse_unordered_selects=OFF;";

impl Database {
    /// Opens (or creates) the database, with `_cf_METADATA` and a first bookmark.
    pub(crate) fn open(uuid: &str, files: DatabaseFiles) -> anyhow::Result<Self> {
        let mut connection = match &files.database {
            Some(path) => Connection::open(path)?,
            None => Connection::open_in_memory()?,
        };
        crate::d1::authorizer::harden(&connection)?;
        connection.execute_batch(
            "PRAGMA foreign_keys=ON; \
             CREATE TABLE IF NOT EXISTS _cf_METADATA (key INTEGER PRIMARY KEY, value BLOB);",
        )?;
        let rules = D1Rules::install(&mut connection)?;
        fs_err::create_dir_all(&files.snapshots)?;
        let bookmarks = match &files.bookmarks {
            Some(path) if path.exists() => serde_json::from_str(&fs_err::read_to_string(path)?)?,
            _ => Vec::new(),
        };
        let database = Self {
            uuid: uuid.to_owned(),
            inner: Mutex::new(Inner {
                connection,
                rules,
                bookmarks,
                files,
            }),
        };
        {
            let mut inner = database.lock();
            if inner.bookmarks.is_empty() {
                inner
                    .record_bookmark(uuid)
                    .map_err(|error| anyhow::anyhow!(error))?;
            }
        }
        Ok(database)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs every statement of `entries` in one transaction: all commit or none. On success
    /// returns one output per executed statement; a new bookmark is recorded when the database
    /// changed.
    pub(crate) fn execute(&self, entries: &[QueryEntry]) -> Result<Vec<StatementOutput>, SqlError> {
        let mut inner = self.lock();
        inner
            .connection
            .execute_batch("BEGIN")
            .map_err(|error| SqlError(describe(&error)))?;
        let outcome = inner.run_entries(entries);
        let outcome = match outcome {
            Ok(outputs) => match inner.connection.execute_batch("COMMIT") {
                Ok(()) => Ok(outputs),
                Err(error) => Err(SqlError(describe(&error))),
            },
            Err(error) => Err(error),
        };
        if !inner.connection.is_autocommit() {
            // Best effort: SQLite may already have rolled back on its own.
            let _ = inner.connection.execute_batch("ROLLBACK");
        }
        let _ = inner.connection.execute_batch(RESET_PRAGMAS);
        let mut outputs = outcome?;
        let size_after = inner.size();
        if outputs
            .iter()
            .any(|output| output.meta.changed_db == Some(true))
        {
            inner.record_bookmark(&self.uuid).map_err(SqlError)?;
        }
        for output in &mut outputs {
            output.meta.size_after = Some(size_after);
        }
        Ok(outputs)
    }

    /// Runs `sql` with every permission and no transaction of its own (test setup); records a
    /// bookmark if it changed the database.
    pub(crate) fn execute_trusted(&self, sql: &str) -> Result<(), SqlError> {
        let mut inner = self.lock();
        let before = inner.change_marker();
        inner
            .connection
            .execute_batch(sql)
            .map_err(|error| SqlError(describe(&error)))?;
        if inner.change_marker() != before {
            inner.record_bookmark(&self.uuid).map_err(SqlError)?;
        }
        Ok(())
    }

    /// Rows of one trusted query.
    pub(crate) fn query_trusted(&self, sql: &str) -> Result<Vec<Vec<Value>>, SqlError> {
        let inner = self.lock();
        let run = || -> rusqlite::Result<Vec<Vec<Value>>> {
            let mut statement = inner.connection.prepare(sql)?;
            let count = statement.column_count();
            let mut rows = statement.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(
                    (0..count)
                        .map(|index| row.get::<_, Value>(index))
                        .collect::<Result<_, _>>()?,
                );
            }
            Ok(out)
        };
        run().map_err(|error| SqlError(describe(&error)))
    }

    /// (`num_tables`, `file_size`) for the database details.
    pub(crate) fn details(&self) -> (u64, u64) {
        let inner = self.lock();
        let tables = inner
            .connection
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .unwrap_or(0);
        (u64::try_from(tables).unwrap_or(0), inner.size())
    }

    /// The newest bookmark.
    pub(crate) fn current_bookmark(&self) -> String {
        let inner = self.lock();
        inner
            .bookmarks
            .last()
            .map(|bookmark| bookmark.id.clone())
            .unwrap_or_default()
    }

    /// The newest bookmark taken at or before `millis`.
    pub(crate) fn bookmark_at(&self, millis: i64) -> Option<String> {
        let inner = self.lock();
        inner
            .bookmarks
            .iter()
            .rev()
            .find(|bookmark| bookmark.millis <= millis)
            .map(|bookmark| bookmark.id.clone())
    }

    /// Replaces the database with the snapshot of `bookmark`. Returns (new bookmark, previous
    /// bookmark).
    pub(crate) fn restore(&self, bookmark: &str) -> Result<(String, String), RestoreError> {
        let mut inner = self.lock();
        let target = inner
            .bookmarks
            .iter()
            .find(|candidate| candidate.id == bookmark)
            .cloned()
            .ok_or_else(|| RestoreError::UnknownBookmark(bookmark.to_owned()))?;
        let previous = inner
            .bookmarks
            .last()
            .map(|last| last.id.clone())
            .unwrap_or_default();
        let snapshot = inner.files.snapshots.join(&target.snapshot);
        let failed = |error: rusqlite::Error| RestoreError::Failed(describe(&error));
        {
            let source = Connection::open_with_flags(&snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(failed)?;
            crate::d1::authorizer::harden(&source).map_err(failed)?;
            let backup =
                rusqlite::backup::Backup::new(&source, &mut inner.connection).map_err(failed)?;
            backup
                .run_to_completion(256, Duration::ZERO, None)
                .map_err(failed)?;
        }
        let new = inner
            .record_bookmark(&self.uuid)
            .map_err(RestoreError::Failed)?;
        Ok((new, previous))
    }

    /// Runs the SQL file at `path` as one atomic request (the import protocol). Returns the
    /// number of statements, their combined meta and the bookmark after the import.
    pub(crate) fn import_file(&self, path: &Path) -> Result<(u64, QueryMeta, String), SqlError> {
        let sql = fs_err::read_to_string(path).map_err(|error| SqlError(error.to_string()))?;
        let outputs = self.execute(&[QueryEntry {
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
        Ok((outputs.len() as u64, meta, self.current_bookmark()))
    }

    /// Writes D1's dump of the database to `path`. `on_start` receives the bookmark being
    /// exported once the database is locked for the export (no write can slip in between).
    pub(crate) fn dump_to(
        &self,
        options: &DumpOptions,
        path: &Path,
        on_start: impl FnOnce(&str),
    ) -> Result<(), DumpError> {
        let inner = self.lock();
        on_start(
            &inner
                .bookmarks
                .last()
                .map(|bookmark| bookmark.id.clone())
                .unwrap_or_default(),
        );
        let file = fs_err::File::create(path)?;
        inner.connection.execute_batch("BEGIN")?;
        let result = dump::write_dump(&inner.connection, options, BufWriter::new(file));
        let _ = inner.connection.execute_batch("ROLLBACK");
        result.map(drop)
    }

    /// Deletes the snapshot files (the database itself is removed by the registry).
    pub(crate) fn remove_files(&self) {
        let inner = self.lock();
        let _ = fs_err::remove_dir_all(&inner.files.snapshots);
        if let Some(path) = &inner.files.bookmarks {
            let _ = fs_err::remove_file(path);
        }
    }
}

impl Inner {
    fn size(&self) -> u64 {
        let pragma = |name: &str| {
            self.connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                .unwrap_or(0)
        };
        u64::try_from(pragma("page_count") * pragma("page_size")).unwrap_or(0)
    }

    /// Changes whenever data or schema changed: (total changes, schema version).
    fn change_marker(&self) -> (u64, i64) {
        (self.connection.total_changes(), self.schema_version())
    }

    fn schema_version(&self) -> i64 {
        self.connection
            .query_row("PRAGMA schema_version", [], |row| row.get(0))
            .unwrap_or(0)
    }

    fn run_entries(&self, entries: &[QueryEntry]) -> Result<Vec<StatementOutput>, SqlError> {
        let mut outputs = Vec::new();
        for entry in entries {
            let statements = split_statements(&entry.sql);
            if statements.is_empty() {
                return Err(SqlError(
                    "SQL code did not contain a statement.: SQLITE_MISUSE".to_owned(),
                ));
            }
            let last = statements.len() - 1;
            for (index, sql) in statements.iter().enumerate() {
                let params: &[Value] = if index == last { &entry.params } else { &[] };
                let multi_with_params = index != last && !entry.params.is_empty();
                outputs.push(self.run_statement(sql, params, multi_with_params)?);
            }
        }
        Ok(outputs)
    }

    fn fail(&self, error: &rusqlite::Error) -> SqlError {
        SqlError(self.rules.refusal(error).unwrap_or_else(|| describe(error)))
    }

    fn run_statement(
        &self,
        sql: &str,
        params: &[Value],
        multi_with_params: bool,
    ) -> Result<StatementOutput, SqlError> {
        if sql.len() > MAX_STATEMENT_BYTES {
            return Err(SqlError("statement too long: SQLITE_TOOBIG".to_owned()));
        }
        if params.len() > MAX_PARAMETERS {
            return Err(SqlError("too many SQL variables: SQLITE_ERROR".to_owned()));
        }
        let started = Instant::now();
        let prepared = self.rules.enforce(|| self.connection.prepare(sql));
        let mut statement = prepared.map_err(|error| self.fail(&error))?;
        let expected = statement.parameter_count();
        if expected > MAX_PARAMETERS {
            return Err(SqlError("too many SQL variables: SQLITE_ERROR".to_owned()));
        }
        if multi_with_params && expected > 0 {
            return Err(SqlError(
                "When executing multiple SQL statements in a single call, only the last \
                 statement can have parameters."
                    .to_owned(),
            ));
        }
        if expected != params.len() {
            return Err(SqlError(
                "Wrong number of parameter bindings for SQL query.".to_owned(),
            ));
        }
        for (index, value) in params.iter().enumerate() {
            statement
                .raw_bind_parameter(index + 1, value)
                .map_err(|error| self.fail(&error))?;
        }
        let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let read_only = statement.readonly();
        let before = if read_only {
            None
        } else {
            Some(self.change_marker())
        };
        let changes_before = self.connection.total_changes();

        let mut rows_out = Vec::new();
        let stepped = self.rules.enforce(|| -> rusqlite::Result<()> {
            let mut rows = statement.raw_query();
            while let Some(row) = rows.next()? {
                rows_out.push(
                    (0..columns.len())
                        .map(|index| row.get::<_, Value>(index))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            Ok(())
        });
        stepped.map_err(|error| self.fail(&error))?;

        let changes = self.connection.total_changes() - changes_before;
        let changed_db = before.is_some_and(|before| before != self.change_marker());
        let fullscan =
            u64::try_from(statement.get_status(StatementStatus::FullscanStep)).unwrap_or_default();
        let returned = rows_out.len() as u64;
        let duration = started.elapsed().as_secs_f64() * 1000.0;
        let meta = QueryMeta {
            changed_db: Some(changed_db),
            changes: Some(changes),
            duration: Some(duration),
            last_row_id: Some(self.connection.last_insert_rowid()),
            rows_read: Some(fullscan.max(returned)),
            rows_written: Some(if read_only { 0 } else { changes }),
            size_after: None,
            served_by_colo: Some("LHR".to_owned()),
            served_by_primary: Some(true),
            served_by_region: Some("WEUR".to_owned()),
            served_by: Some("d1ctl-sim".to_owned()),
            timings: Some(QueryTimings {
                sql_duration_ms: Some(duration),
            }),
        };
        Ok(StatementOutput {
            columns,
            rows: rows_out,
            meta,
        })
    }

    /// Snapshots the database and appends a bookmark for it; returns the bookmark.
    fn record_bookmark(&mut self, uuid: &str) -> Result<String, String> {
        let last = self.bookmarks.last();
        let millis = clock::now_millis().max(last.map_or(0, |bookmark| bookmark.millis));
        let sequence = last.map_or(1, |bookmark| bookmark.sequence + 1);
        let id = bookmark_id(uuid, millis, sequence);
        let snapshot = format!("{sequence:010}.sqlite");
        let path = self.files.snapshots.join(&snapshot);
        if path.exists() {
            fs_err::remove_file(&path).map_err(|error| error.to_string())?;
        }
        let target = path
            .to_str()
            .ok_or_else(|| format!("snapshot path {} is not UTF-8", path.display()))?;
        self.connection
            .execute("VACUUM INTO ?1", [target])
            .map_err(|error| describe(&error))?;
        self.bookmarks.push(Bookmark {
            id: id.clone(),
            millis,
            sequence,
            snapshot,
        });
        if let Some(file) = &self.files.bookmarks {
            let text = serde_json::to_string(&self.bookmarks).map_err(|error| error.to_string())?;
            let temporary = file.with_extension("json.tmp");
            fs_err::write(&temporary, text).map_err(|error| error.to_string())?;
            fs_err::rename(&temporary, file).map_err(|error| error.to_string())?;
        }
        Ok(id)
    }
}

/// `%08x-%08x-%08x-<32 hex>`: milliseconds (high, low 32 bits), sequence, and a hash. Fixed
/// width hex, so bookmarks sort oldest first.
pub(crate) fn bookmark_id(uuid: &str, millis: i64, sequence: u64) -> String {
    let millis = u64::try_from(millis).unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(format!("{uuid}/{millis}/{sequence}").as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!(
        "{:08x}-{:08x}-{:08x}-{}",
        (millis >> 32) & 0xffff_ffff,
        millis & 0xffff_ffff,
        sequence & 0xffff_ffff,
        &digest[..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::d1::authorizer::TRANSACTION_REFUSED;

    fn memory_database() -> (Database, PathBuf) {
        let snapshots =
            std::env::temp_dir().join(format!("d1ctl-sim-test-{}", uuid::Uuid::new_v4()));
        let database = Database::open(
            "db",
            DatabaseFiles {
                database: None,
                bookmarks: None,
                snapshots: snapshots.clone(),
            },
        )
        .unwrap();
        (database, snapshots)
    }

    fn entry(sql: &str) -> QueryEntry {
        QueryEntry {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
    }

    #[test]
    fn bookmarks_sort_by_time_then_sequence() {
        let first = bookmark_id("x", 1_700_000_000_000, 1);
        let second = bookmark_id("x", 1_700_000_000_000, 2);
        let third = bookmark_id("x", 1_700_000_000_001, 3);
        assert!(first < second && second < third);
        assert_eq!(first.len(), 8 * 3 + 32 + 3);
        assert!(first.starts_with("0000018b-cfe56800-00000001-"));
    }

    #[test]
    fn errors_carry_sqlite_codes() {
        let (database, snapshots) = memory_database();
        database
            .execute(&[entry(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
            )])
            .unwrap();
        let error = database
            .execute(&[entry(
                "INSERT INTO t (v) VALUES ('a'); INSERT INTO t (v) VALUES ('a')",
            )])
            .unwrap_err();
        assert_eq!(
            error.0,
            "UNIQUE constraint failed: t.v: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_UNIQUE)"
        );
        let error = database
            .execute(&[entry("SELECT * FROM missing")])
            .unwrap_err();
        assert_eq!(error.0, "no such table: missing: SQLITE_ERROR");
        let error = database
            .execute(&[entry("SELECT * FROM _cf_METADATA")])
            .unwrap_err();
        assert_eq!(
            error.0,
            "access to _cf_METADATA.key is prohibited: SQLITE_AUTH"
        );
        let error = database.execute(&[entry("SAVEPOINT a")]).unwrap_err();
        assert_eq!(error.0, TRANSACTION_REFUSED);
        let error = database
            .execute(&[entry("SELECT sqlite_version()")])
            .unwrap_err();
        assert_eq!(
            error.0,
            "not authorized to use function: sqlite_version: SQLITE_ERROR"
        );
        let error = database
            .execute(&[entry("PRAGMA writable_schema=ON")])
            .unwrap_err();
        assert_eq!(error.0, "not authorized: SQLITE_AUTH");
        assert_eq!(
            database.query_trusted("SELECT count(*) FROM t").unwrap(),
            vec![vec![Value::Integer(0)]]
        );
        let _ = fs_err::remove_dir_all(snapshots);
    }

    #[test]
    fn alter_table_and_pragmas_work_under_the_authorizer() {
        let (database, snapshots) = memory_database();
        let outputs = database
            .execute(&[
                entry("CREATE TABLE t (a INTEGER, b TEXT)"),
                entry("ALTER TABLE t RENAME COLUMN b TO c"),
                entry("ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'x'"),
                entry("ALTER TABLE t RENAME TO u"),
                entry("ALTER TABLE u DROP COLUMN d"),
                entry("PRAGMA table_info(u)"),
                entry("PRAGMA defer_foreign_keys = on"),
                entry("SELECT upper('a') AS x, json_object('k', 1) AS j"),
            ])
            .unwrap();
        assert_eq!(outputs[5].rows.len(), 2);
        assert_eq!(outputs[7].rows[0][0], Value::Text("A".to_owned()));
        let _ = fs_err::remove_dir_all(snapshots);
    }
}
