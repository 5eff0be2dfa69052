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

pub struct SqliteBackend {
    path: PathBuf,
    connection: Mutex<Option<Connection>>,
}

impl SqliteBackend {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
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

    /// Runs `work` on the file's connection, opening (and creating, when `create`) it first.
    fn with_connection<T>(
        &self,
        create: bool,
        work: impl FnOnce(&mut Connection) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut guard = self
            .connection
            .lock()
            .map_err(|_| self.unavailable("the connection lock was poisoned"))?;
        if guard.is_none() {
            if !create && !self.path.exists() {
                // A file that does not exist yet reads as an empty database; reading never creates it.
                let mut empty = Connection::open_in_memory().map_err(|e| self.unavailable(e))?;
                return work(&mut empty);
            }
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs_err::create_dir_all(parent).map_err(|e| self.unavailable(e))?;
            }
            *guard = Some(open(&self.path).map_err(|e| self.unavailable(e))?);
        }
        let connection = guard.as_mut().expect("opened above");
        work(connection)
    }
}

/// `<backups>/<label>-<UTC time>.sqlite`, creating the folder.
fn backup_file(backups: &Path, label: &str) -> std::io::Result<PathBuf> {
    fs_err::create_dir_all(backups)?;
    let stamp = crate::clock::iso8601_now().replace([':', '.'], "-");
    Ok(backups.join(format!("{label}-{stamp}.sqlite")))
}

/// Opens a database file the way D1 behaves: foreign keys enforced.
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

/// Settings every d1ctl connection gets: D1 always enforces foreign keys, and accepts
/// double-quoted strings as literals where no such identifier exists (real migrations rely on it).
pub fn configure(connection: &Connection) -> rusqlite::Result<()> {
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
pub fn run_batch(
    connection: &mut Connection,
    statements: &[Statement],
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
        let rows = run_statement(&transaction, statement)
            .map_err(|error| BackendError::sql(Some(index), sqlite_message(&error)))?;
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
        self.with_connection(true, |connection| {
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
        self.with_connection(true, |connection| {
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
        self.with_connection(true, |connection| run_batch(connection, statements))
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Rows>, BackendError> {
        self.with_connection(false, |connection| run_batch(connection, statements))
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
        )
        .unwrap_err();
        assert!(
            matches!(error, BackendError::Statement { index: Some(1), .. }),
            "{error:?}"
        );
        let rows = run_batch(
            &mut connection,
            &[Statement::new("SELECT count(*) FROM sqlite_master")],
        )
        .unwrap();
        assert_eq!(rows[0].rows[0][0], Value::Integer(0));
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
        )
        .unwrap_err();
        assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
    }
}
