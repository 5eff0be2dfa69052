//! One simulated D1 database: an SQLite connection behind a mutex, opened on first use, the
//! atomic execution of a request and the authorizer (time-travel bookmarks are in
//! `bookmarks.rs`).

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::Instant;

use rusqlite::types::Value;
use rusqlite::{Connection, StatementStatus};

use crate::d1::api::{QueryMeta, QueryTimings};
use crate::d1::authorizer::D1Rules;
use crate::d1::dump::{self, DumpError, DumpOptions};
use crate::d1::sqlite_text::describe;
use crate::sim::bookmarks::Bookmark;
use crate::sim::recency::OpenDatabases;
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

/// A database that could not be opened (its file or snapshot directory failed, or it was
/// deleted while a request still held it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the database {uuid} is unavailable: {reason}")]
pub(crate) struct Unavailable {
    uuid: String,
    reason: String,
}

impl From<Unavailable> for SqlError {
    fn from(error: Unavailable) -> Self {
        Self(error.to_string())
    }
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

/// An open database: its connection and bookmarks.
pub(crate) struct Inner {
    pub(crate) connection: Connection,
    rules: D1Rules,
    pub(crate) bookmarks: Vec<Bookmark>,
    pub(crate) files: DatabaseFiles,
}

/// A database's state behind its mutex: closed until its first use (a fleet of thousands costs
/// nothing until used), and closed again when [`OpenDatabases`] evicts it (file-backed only).
struct Slot {
    open: Option<Inner>,
    deleted: bool,
}

/// A simulated D1 database.
pub(crate) struct Database {
    pub(crate) uuid: String,
    files: DatabaseFiles,
    /// When it was created: the time of its first bookmark.
    created_millis: i64,
    /// Present for file-backed databases, which may be closed while idle.
    open_databases: Option<Arc<OpenDatabases>>,
    this: Weak<Database>,
    slot: Mutex<Slot>,
}

/// Pragmas D1 scopes to one transaction; they are reset after every request.
const RESET_PRAGMAS: &str = "PRAGMA foreign_keys=ON; PRAGMA case_sensitive_like=OFF; \
    PRAGMA ignore_check_constraints=OFF; PRAGMA legacy_alter_table=OFF; \
    PRAGMA recursive_triggers=OFF; PRAGMA reverse_unordered_selects=OFF;";

impl Database {
    /// A database that opens (or creates) its SQLite file on first use. `open_databases`
    /// limits how many file-backed ones stay open; in-memory ones pass `None`.
    pub(crate) fn new(
        uuid: &str,
        files: DatabaseFiles,
        created_millis: i64,
        open_databases: Option<Arc<OpenDatabases>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            uuid: uuid.to_owned(),
            files,
            created_millis,
            open_databases,
            this: Weak::clone(this),
            slot: Mutex::new(Slot {
                open: None,
                deleted: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the open database, opening it first if needed.
    pub(crate) fn with_open<T>(
        &self,
        work: impl FnOnce(&mut Inner) -> T,
    ) -> Result<T, Unavailable> {
        let unavailable = |reason: String| Unavailable {
            uuid: self.uuid.clone(),
            reason,
        };
        let mut slot = self.lock();
        if slot.deleted {
            return Err(unavailable("it was deleted".to_owned()));
        }
        if slot.open.is_none() {
            slot.open = Some(self.open_inner().map_err(unavailable)?);
        }
        let Some(inner) = slot.open.as_mut() else {
            return Err(unavailable("it did not open".to_owned()));
        };
        let value = work(inner);
        drop(slot);
        if let Some(open_databases) = &self.open_databases {
            open_databases.used(&self.uuid, &self.this);
        }
        Ok(value)
    }

    /// Opens the connection, with `_cf_METADATA` and, for a new database, a first bookmark.
    fn open_inner(&self) -> Result<Inner, String> {
        let opened = || -> anyhow::Result<Inner> {
            let files = self.files.clone();
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
                Some(path) if path.exists() => {
                    serde_json::from_str(&fs_err::read_to_string(path)?)?
                }
                _ => Vec::new(),
            };
            Ok(Inner {
                connection,
                rules,
                bookmarks,
                files,
            })
        };
        let mut inner = opened().map_err(|error| format!("{error:#}"))?;
        if inner.bookmarks.is_empty() {
            inner.record_bookmark(&self.uuid, Some(self.created_millis))?;
        }
        Ok(inner)
    }

    /// Closes the connection unless a request is using it; true if it is closed now. Only
    /// file-backed databases are ever closed (their data stays in the file).
    pub(crate) fn close_if_idle(&self) -> bool {
        if self.files.database.is_none() {
            return false;
        }
        match self.slot.try_lock() {
            Ok(mut slot) => {
                slot.open = None;
                true
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().open = None;
                true
            }
            Err(TryLockError::WouldBlock) => false,
        }
    }

    /// True while the SQLite connection is open.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.lock().open.is_some()
    }

    /// Runs every statement of `entries` in one transaction: all commit or none. On success
    /// returns one output per executed statement; a new bookmark is recorded when the database
    /// changed.
    pub(crate) fn execute(&self, entries: &[QueryEntry]) -> Result<Vec<StatementOutput>, SqlError> {
        self.with_open(|inner| inner.execute(&self.uuid, entries))?
    }

    /// Runs `sql` with every permission and no transaction of its own (test setup); records a
    /// bookmark if it changed the database.
    pub(crate) fn execute_trusted(&self, sql: &str) -> Result<(), SqlError> {
        self.with_open(|inner| {
            inner.wait_past_last_bookmark();
            let before = inner.change_marker();
            inner
                .connection
                .execute_batch(sql)
                .map_err(|error| SqlError(describe(&error)))?;
            if inner.change_marker() != before {
                inner.record_bookmark(&self.uuid, None).map_err(SqlError)?;
            }
            Ok(())
        })?
    }

    /// Rows of one trusted query.
    pub(crate) fn query_trusted(&self, sql: &str) -> Result<Vec<Vec<Value>>, SqlError> {
        self.with_open(|inner| {
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
        })?
    }

    /// (`num_tables`, `file_size`) for the database details.
    pub(crate) fn details(&self) -> Result<(u64, u64), Unavailable> {
        self.with_open(|inner| {
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
        })
    }

    /// Writes D1's dump of the database to `path`. `on_start` receives the bookmark being
    /// exported once the database is locked for the export (no write can slip in between).
    pub(crate) fn dump_to(
        &self,
        options: &DumpOptions,
        path: &Path,
        on_start: impl FnOnce(&str),
    ) -> Result<(), DumpError> {
        self.with_open(|inner| {
            on_start(&inner.newest_bookmark());
            let file = fs_err::File::create(path)?;
            inner.connection.execute_batch("BEGIN")?;
            let result = dump::write_dump(&inner.connection, options, BufWriter::new(file));
            let _ = inner.connection.execute_batch("ROLLBACK");
            result.map(drop)
        })
        .map_err(|error| DumpError::Io(std::io::Error::other(error)))?
    }

    /// Closes the database for good and deletes its snapshot files (the database file itself
    /// is removed by the registry). Never opens it.
    pub(crate) fn remove_files(&self) {
        let mut slot = self.lock();
        slot.open = None;
        slot.deleted = true;
        let _ = fs_err::remove_dir_all(&self.files.snapshots);
        if let Some(path) = &self.files.bookmarks {
            let _ = fs_err::remove_file(path);
        }
    }
}

impl Inner {
    fn execute(
        &mut self,
        uuid: &str,
        entries: &[QueryEntry],
    ) -> Result<Vec<StatementOutput>, SqlError> {
        self.wait_past_last_bookmark();
        self.connection
            .execute_batch("BEGIN")
            .map_err(|error| SqlError(describe(&error)))?;
        let outcome = self.run_entries(entries);
        let outcome = match outcome {
            Ok(outputs) => match self.connection.execute_batch("COMMIT") {
                Ok(()) => Ok(outputs),
                Err(error) => Err(SqlError(describe(&error))),
            },
            Err(error) => Err(error),
        };
        if !self.connection.is_autocommit() {
            // Best effort: SQLite may already have rolled back on its own.
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        let _ = self.connection.execute_batch(RESET_PRAGMAS);
        let mut outputs = outcome?;
        let size_after = self.size();
        if outputs
            .iter()
            .any(|output| output.meta.changed_db == Some(true))
        {
            self.record_bookmark(uuid, None).map_err(SqlError)?;
        }
        for output in &mut outputs {
            output.meta.size_after = Some(size_after);
        }
        Ok(outputs)
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::d1::authorizer::TRANSACTION_REFUSED;

    fn memory_database() -> (Arc<Database>, PathBuf) {
        let snapshots =
            std::env::temp_dir().join(format!("d1ctl-sim-test-{}", uuid::Uuid::new_v4()));
        let database = Database::new(
            "db",
            DatabaseFiles {
                database: None,
                bookmarks: None,
                snapshots: snapshots.clone(),
            },
            crate::sim::clock::now_millis(),
            None,
        );
        (database, snapshots)
    }

    fn entry(sql: &str) -> QueryEntry {
        QueryEntry {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
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
