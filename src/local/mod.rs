//! Local SQLite backend: a file of the project's own, or wrangler's `.wrangler/state` file.

pub mod dump;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::backend::{
    Backend, BackendError, BackendKind, Identity, RollbackPoint, Rows, Statement, Value,
};
use crate::d1::authorizer::{D1Rules, harden};

pub struct SqliteBackend {
    path: PathBuf,
    /// Whether D1's rules judge what the env is sent (`d1_rules` in environments.toml).
    d1_rules: bool,
    connection: Mutex<Option<Opened>>,
}

/// The file's connection and, when the env keeps D1's rules, their handle on it.
struct Opened {
    connection: Connection,
    rules: Option<D1Rules>,
}

impl SqliteBackend {
    /// A backend for the file at `path`; with `d1_rules`, every statement it is sent is judged
    /// as D1 would judge it (d1ctl's own statements are sent to D1 as well, so they pass).
    pub fn new(path: &Path, d1_rules: bool) -> Self {
        Self {
            path: path.to_path_buf(),
            d1_rules,
            connection: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> BackendError {
        BackendError::Unavailable {
            message: format!("cannot open `{}`: {error}", self.path.display()),
            hint: Some(
                "check the path in environments.toml and that no other process (e.g. `wrangler dev`) holds the file"
                    .to_owned(),
            ),
        }
    }

    fn rules_on(&self, connection: &mut Connection) -> Result<Option<D1Rules>, BackendError> {
        if self.d1_rules {
            Ok(Some(
                D1Rules::install(connection).map_err(|e| self.unavailable(e))?,
            ))
        } else {
            Ok(None)
        }
    }

    /// Runs `work` on the file's connection, opening (and creating, when `create`) it first.
    fn with_connection<T>(
        &self,
        create: bool,
        work: impl FnOnce(&mut Connection, Option<&D1Rules>) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut guard = self
            .connection
            .lock()
            .map_err(|_| self.unavailable("the connection lock was poisoned"))?;
        if guard.is_none() {
            if !create && !self.path.exists() {
                // A file that does not exist yet reads as an empty database; reading never creates it.
                let mut empty = open_in_memory().map_err(|e| self.unavailable(e))?;
                let rules = self.rules_on(&mut empty)?;
                return work(&mut empty, rules.as_ref());
            }
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs_err::create_dir_all(parent).map_err(|e| self.unavailable(e))?;
            }
            let mut connection = open(&self.path).map_err(|e| self.unavailable(e))?;
            let rules = self.rules_on(&mut connection)?;
            *guard = Some(Opened { connection, rules });
        }
        let opened = guard.as_mut().expect("opened above");
        work(&mut opened.connection, opened.rules.as_ref())
    }
}

/// `<backups>/<label>-<UTC time>.sqlite`, creating the folder.
fn backup_file(backups: &Path, label: &str) -> std::io::Result<PathBuf> {
    fs_err::create_dir_all(backups)?;
    let stamp = crate::clock::iso8601_now().replace([':', '.'], "-");
    Ok(backups.join(format!("{label}-{stamp}.sqlite")))
}

/// Opens a database file the way D1 behaves: foreign keys enforced (see [`configure`]).
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&connection)?;
    Ok(connection)
}

/// An in-memory database with [`configure`]'s settings.
pub fn open_in_memory() -> rusqlite::Result<Connection> {
    let connection = Connection::open_in_memory()?;
    configure(&connection)?;
    Ok(connection)
}

/// An in-memory database with [`configure`]'s settings and D1's rules installed: where
/// migration text is run to learn what it does (lint's shadow, replays, `lint --fix`'s check).
pub fn open_in_memory_with_rules() -> rusqlite::Result<(Connection, D1Rules)> {
    let mut connection = open_in_memory()?;
    let rules = D1Rules::install(&mut connection)?;
    Ok((connection, rules))
}

/// Settings every d1ctl connection gets: nothing its SQL says reaches the file system
/// ([`harden`]), D1 always enforces foreign keys, and D1 accepts double-quoted strings as
/// literals where no such identifier exists (real migrations rely on it).
pub fn configure(connection: &Connection) -> rusqlite::Result<()> {
    harden(connection)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DML, true)?;
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DDL, true)?;
    Ok(())
}

/// Whether `sql` ends with a complete statement, by `sqlite3_complete`.
pub fn is_complete(sql: &str) -> bool {
    let Ok(text) = CString::new(sql) else {
        // An interior NUL cannot end a statement; SQLite would stop reading there anyway.
        return false;
    };
    #[expect(
        unsafe_code,
        reason = "sqlite3_complete only reads a NUL-terminated string"
    )]
    // SAFETY: `text` is a valid NUL-terminated C string that outlives the call.
    let complete = unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) };
    complete != 0
}

/// Runs `statements` in one transaction; on the first failure rolls back and names its index.
/// With `rules`, each statement is judged by D1's rules (the transaction d1ctl opens around
/// them is not) and a refusal is worded as D1 words it.
pub fn run_batch(
    connection: &mut Connection,
    statements: &[Statement],
    rules: Option<&D1Rules>,
) -> Result<Vec<Rows>, BackendError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| BackendError::Unavailable {
            message: format!("cannot start a transaction: {error}"),
            hint: Some(
                "another process may be writing to the database; retry when it is done".to_owned(),
            ),
        })?;
    let mut results = Vec::with_capacity(statements.len());
    for (index, statement) in statements.iter().enumerate() {
        let rows = run_judged(&transaction, statement, rules)
            .map_err(|error| BackendError::sql(Some(index), judged_message(&error, rules)))?;
        results.push(rows);
    }
    transaction
        .commit()
        .map_err(|error| BackendError::sql(None, sqlite_message(&error)))?;
    Ok(results)
}

/// Runs one statement with its parameters and collects its rows.
pub fn run_statement(connection: &Connection, statement: &Statement) -> rusqlite::Result<Rows> {
    let mut prepared = connection.prepare(&statement.sql)?;
    let columns: Vec<String> = prepared.column_names().map(str::to_owned).collect();
    for (position, value) in statement.params.iter().enumerate() {
        let position = position + 1;
        match value {
            Value::Null => prepared.raw_bind_parameter(position, rusqlite::types::Null)?,
            Value::Integer(v) => prepared.raw_bind_parameter(position, v)?,
            Value::Real(v) => prepared.raw_bind_parameter(position, v)?,
            Value::Text(v) => prepared.raw_bind_parameter(position, v)?,
            Value::Blob(v) => prepared.raw_bind_parameter(position, v)?,
        }
    }
    let mut rows = Vec::new();
    let mut cursor = prepared.raw_query();
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            values.push(match row.get_ref(index)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Integer(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                ValueRef::Blob(v) => Value::Blob(v.to_vec()),
            });
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

/// Runs `statements` in one transaction, each judged by `rules`, skipping every statement the
/// rules refuse (it never ran): what a replay of migration text does, so that it learns what the
/// rest of a migration does on D1 and nothing refused ever runs. Returns the skipped indexes; on
/// any other failure rolls back and names its index.
pub fn run_skipping_refused(
    connection: &mut Connection,
    statements: &[Statement],
    rules: &D1Rules,
) -> Result<Vec<usize>, BackendError> {
    let transaction = connection
        .transaction()
        .map_err(|error| BackendError::sql(None, sqlite_message(&error)))?;
    let mut skipped = Vec::new();
    for (index, statement) in statements.iter().enumerate() {
        match run_judged(&transaction, statement, Some(rules)) {
            Ok(_) => {}
            Err(error) if rules.refusal(&error).is_some() => skipped.push(index),
            Err(error) => {
                return Err(BackendError::sql(
                    Some(index),
                    judged_message(&error, Some(rules)),
                ));
            }
        }
    }
    transaction
        .commit()
        .map_err(|error| BackendError::sql(None, sqlite_message(&error)))?;
    Ok(skipped)
}

/// Runs one statement, judged by `rules` when given (preparing and stepping both: SQLite asks
/// the authorizer again for SQL a statement runs of its own).
pub fn run_judged(
    connection: &Connection,
    statement: &Statement,
    rules: Option<&D1Rules>,
) -> rusqlite::Result<Rows> {
    match rules {
        Some(rules) => rules.enforce(|| run_statement(connection, statement)),
        None => run_statement(connection, statement),
    }
}

/// D1's words for a failure its rules caused, SQLite's own message otherwise.
pub fn judged_message(error: &rusqlite::Error, rules: Option<&D1Rules>) -> String {
    rules
        .and_then(|rules| rules.refusal(error))
        .unwrap_or_else(|| sqlite_message(error))
}

/// SQLite's own message, without rusqlite's wrapping.
pub fn sqlite_message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn describe(&self) -> Result<Identity, BackendError> {
        Ok(Identity {
            label: self.location(),
            known_empty: !self.path.exists(),
            size_bytes: fs_err::metadata(&self.path).ok().map(|m| m.len()),
        })
    }

    async fn rollback_point(
        &self,
        backups: &Path,
        label: &str,
    ) -> Result<RollbackPoint, BackendError> {
        let file = backup_file(backups, label).map_err(|e| self.unavailable(e))?;
        // d1ctl's own statement: the rules are not enforcing outside `run_batch`.
        self.with_connection(true, |connection, _| {
            // VACUUM INTO copies a consistent snapshot, WAL content included.
            connection
                .execute("VACUUM INTO ?1", [file.display().to_string()])
                .map_err(|error| BackendError::Unavailable {
                    message: format!(
                        "could not back up `{}` to `{}`: {error}",
                        self.path.display(),
                        file.display()
                    ),
                    hint: Some(
                        "check free disk space and that `.d1ctl/backups` is writable".to_owned(),
                    ),
                })
        })?;
        Ok(RollbackPoint {
            kind: "backup",
            point: file.display().to_string(),
        })
    }

    async fn restore(&self, point: &str) -> Result<(), BackendError> {
        let source = Path::new(point);
        if !source.is_file() {
            return Err(BackendError::Unavailable {
                message: format!("the backup `{point}` does not exist"),
                hint: Some("list the backups in `.d1ctl/backups/`, or use `--last`".to_owned()),
            });
        }
        let backup = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| self.unavailable(e))?;
        harden(&backup).map_err(|e| self.unavailable(e))?;
        self.with_connection(true, |connection, _| {
            let copy = rusqlite::backup::Backup::new(&backup, connection)
                .map_err(|e| self.unavailable(e))?;
            copy.run_to_completion(256, Duration::ZERO, None)
                .map_err(|e| self.unavailable(e))
        })?;
        Ok(())
    }

    fn release_files(&self) {
        if let Ok(mut guard) = self.connection.lock() {
            guard.take();
        }
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError> {
        self.with_connection(true, |connection, rules| {
            run_batch(connection, statements, rules)
        })
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError> {
        self.with_connection(false, |connection, rules| {
            run_batch(connection, statements, rules)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_atomic_and_names_the_failing_statement() {
        let mut connection = Connection::open_in_memory().unwrap();
        configure(&connection).unwrap();
        let error = run_batch(
            &mut connection,
            &[
                Statement::new("CREATE TABLE a(x)"),
                Statement::new("INSERT INTO nope VALUES (1)"),
            ],
            None,
        )
        .unwrap_err();
        assert!(
            matches!(error, BackendError::Statement { index: Some(1), .. }),
            "{error:?}"
        );
        let rows = run_batch(
            &mut connection,
            &[Statement::new("SELECT count(*) FROM sqlite_master")],
            None,
        )
        .unwrap();
        assert_eq!(rows[0].rows[0][0], Value::Integer(0));
    }

    #[test]
    fn d1_rules_refuse_what_d1_refuses_and_let_d1ctl_s_own_transaction_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut connection = open(&dir.path().join("db.sqlite")).unwrap();
        let rules = D1Rules::install(&mut connection).unwrap();
        let attached = dir.path().join("x.db");
        let cases = [
            (
                format!("ATTACH 'file:{}?mode=rwc' AS u", attached.display()),
                "not authorized: SQLITE_AUTH",
            ),
            (
                "PRAGMA journal_mode=WAL".to_owned(),
                "not authorized: SQLITE_AUTH",
            ),
            (
                format!("VACUUM INTO '{}'", attached.display()),
                // Inside the batch's transaction SQLite refuses first; outside it, the ATTACH
                // that VACUUM INTO runs would be refused.
                "cannot VACUUM from within a transaction",
            ),
            (
                "SAVEPOINT a".to_owned(),
                crate::d1::authorizer::TRANSACTION_REFUSED,
            ),
            (
                "SELECT * FROM _cf_kv".to_owned(),
                "access to _cf_kv.x is prohibited: SQLITE_AUTH",
            ),
        ];
        run_batch(
            &mut connection,
            &[Statement::new("CREATE TABLE _cf_kv(x)")],
            None,
        )
        .unwrap();
        for (sql, message) in cases {
            let error = run_batch(
                &mut connection,
                &[
                    Statement::new("CREATE TABLE IF NOT EXISTS t(a)"),
                    Statement::new(sql.clone()),
                ],
                Some(&rules),
            )
            .unwrap_err();
            assert!(
                matches!(&error, BackendError::Statement { index: Some(1), message: m, .. } if m.starts_with(message)),
                "{sql}: {error:?}"
            );
        }
        assert!(!attached.exists());
        let mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        // Nothing of the refused batches stayed; an allowed one commits.
        run_batch(
            &mut connection,
            &[
                Statement::new("CREATE TABLE t(a)"),
                Statement::new("PRAGMA defer_foreign_keys = on"),
            ],
            Some(&rules),
        )
        .unwrap();
    }

    #[test]
    fn without_d1_rules_attach_still_cannot_create_or_write_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut connection = open(&dir.path().join("db.sqlite")).unwrap();
        let attached = dir.path().join("x.db");
        let error = run_batch(
            &mut connection,
            &[Statement::new(format!(
                "ATTACH 'file:{}?mode=rwc' AS u",
                attached.display()
            ))],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("unable to open"), "{error}");
        assert!(!attached.exists());
        let error = run_statement(
            &connection,
            &Statement::new("SELECT load_extension('/nonexistent')"),
        )
        .unwrap_err();
        assert!(sqlite_message(&error).contains("not authorized"), "{error}");
        assert!(
            connection
                .db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE)
                .unwrap()
        );
    }

    #[test]
    fn foreign_keys_cannot_be_switched_off_inside_a_batch() {
        let mut connection = Connection::open_in_memory().unwrap();
        configure(&connection).unwrap();
        let error = run_batch(
            &mut connection,
            &[
                Statement::new("PRAGMA foreign_keys=OFF"),
                Statement::new("CREATE TABLE p(id INTEGER PRIMARY KEY)"),
                Statement::new("CREATE TABLE c(p INTEGER REFERENCES p(id))"),
                Statement::new("INSERT INTO c VALUES (7)"),
            ],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
    }
}
