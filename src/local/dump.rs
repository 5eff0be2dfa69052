//! D1's dump format on local SQLite files: dumping a file (`d1ctl export` / `pull` of a local
//! env) and loading a dump into a database (`d1ctl pull`), statement by statement.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::d1::dump::{DumpError, DumpOptions, write_dump};
use crate::local::is_complete;

/// Opens an existing database file read-only (never creates it).
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    crate::d1::authorizer::harden(&connection)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(connection)
}

/// Writes D1's dump of the file at `path` to `out`, inside one read transaction so a concurrent
/// writer cannot make it inconsistent. Returns the number of bytes written.
pub fn dump_file(path: &Path, options: &DumpOptions, out: impl Write) -> Result<u64, DumpError> {
    let connection = open_read_only(path)?;
    connection.execute_batch("BEGIN")?;
    let result = write_dump(&connection, options, out);
    // A read transaction has nothing to commit; ending it cannot lose anything.
    let _ = connection.execute_batch("ROLLBACK");
    result
}

/// What loading a dump did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    pub statements: u64,
    pub bytes: u64,
    /// Rows that violate a foreign key after the load (copied as they were in the source).
    pub foreign_key_violations: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("statement at line {line} of the dump failed: {message}\n  statement: {excerpt}")]
    Statement {
        line: usize,
        message: String,
        excerpt: String,
    },
    #[error("line {line} of the dump is not valid UTF-8")]
    NotUtf8 { line: usize },
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("could not read the dump: {0}")]
    Io(#[from] std::io::Error),
}

/// Executes a dump (D1's format, or any SQL text) into `connection` in one transaction: all of it
/// or nothing. Statements are read one at a time (a statement ends at a line ending in `;` that
/// SQLite calls complete), so the dump never sits in memory whole.
///
/// Foreign keys are not enforced while loading, so rows arrive exactly as the source held them
/// whatever their order; violations are counted afterwards.
pub fn load(connection: &Connection, mut reader: impl BufRead) -> Result<Loaded, LoadError> {
    connection.pragma_update(None, "foreign_keys", "OFF")?;
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let mut loaded = Loaded::default();
    let result = (|| -> Result<(), LoadError> {
        let mut line = Vec::new();
        let mut line_number = 0;
        let mut statement = String::new();
        let mut statement_line = 1;
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 {
                break;
            }
            line_number += 1;
            loaded.bytes += read as u64;
            let text =
                std::str::from_utf8(&line).map_err(|_| LoadError::NotUtf8 { line: line_number })?;
            if statement.trim().is_empty() {
                statement.clear();
                statement_line = line_number;
            }
            statement.push_str(text);
            if text.trim_end().ends_with(';') && is_complete(&statement) {
                run(connection, &statement, statement_line)?;
                loaded.statements += 1;
                statement.clear();
            }
        }
        if !statement.trim().is_empty() {
            // Let SQLite say what is wrong with (or accept) a last statement without its `;`.
            run(connection, &statement, statement_line)?;
            loaded.statements += 1;
        }
        Ok(())
    })();
    match result {
        Ok(()) => connection.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    loaded.foreign_key_violations = connection
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |_| Ok(()))?
        .count() as u64;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(loaded)
}

fn run(connection: &Connection, statement: &str, line: usize) -> Result<(), LoadError> {
    connection
        .execute_batch(statement)
        .map_err(|error| LoadError::Statement {
            line,
            message: match &error {
                rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
                other => other.to_string(),
            },
            excerpt: excerpt(statement),
        })
}

/// The first 120 characters of a statement's first line.
fn excerpt(statement: &str) -> String {
    let first = statement.trim().lines().next().unwrap_or_default();
    match first.char_indices().nth(120) {
        Some((end, _)) => format!("{}…", &first[..end]),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump_of(connection: &Connection) -> Vec<u8> {
        let mut out = Vec::new();
        write_dump(connection, &DumpOptions::default(), &mut out).unwrap();
        out
    }

    #[test]
    fn loads_statement_by_statement_with_trigger_bodies_and_multi_line_schema() {
        let source = Connection::open_in_memory().unwrap();
        source
            .execute_batch(
                "PRAGMA foreign_keys = OFF;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY,\n  note TEXT DEFAULT 'a;\nb');
                 CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id));
                 CREATE TRIGGER t AFTER INSERT ON child BEGIN\n  UPDATE parent SET note = note || '+;';\nEND;
                 INSERT INTO parent (id) VALUES (1);
                 INSERT INTO child VALUES (1, 1), (2, 7);",
            )
            .unwrap();
        let dump = dump_of(&source);
        let target = Connection::open_in_memory().unwrap();
        let loaded = load(&target, dump.as_slice()).unwrap();
        assert_eq!(loaded.bytes, dump.len() as u64);
        // PRAGMA, 2 tables, 1 + 2 rows, the trigger.
        assert_eq!(loaded.statements, 7);
        assert_eq!(loaded.foreign_key_violations, 1, "child 2 points nowhere");
        let count: i64 = target
            .query_row("SELECT count(*) FROM child", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 2);
        let note: String = target
            .query_row("SELECT note FROM parent", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            note, "a;\nb+;+;",
            "the source's trigger fired twice; the copy's came after the rows and did not"
        );
    }

    #[test]
    fn a_failing_statement_rolls_everything_back_and_names_its_line() {
        let target = Connection::open_in_memory().unwrap();
        let dump = "CREATE TABLE a (x);\nINSERT INTO a VALUES (1);\nINSERT INTO nope VALUES (2);";
        let error = load(&target, dump.as_bytes()).unwrap_err();
        assert!(
            matches!(&error, LoadError::Statement { line: 3, message, .. } if message.contains("no such table")),
            "{error}"
        );
        let tables: i64 = target
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn dump_file_reads_without_creating() {
        let dir = std::env::temp_dir().join(format!("d1ctl-dump-{}", uuid::Uuid::new_v4()));
        fs_err::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.sqlite");
        assert!(dump_file(&missing, &DumpOptions::default(), Vec::new()).is_err());
        assert!(!missing.exists());
        let path = dir.join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (a); INSERT INTO t VALUES ('x');")
            .unwrap();
        let mut out = Vec::new();
        dump_file(&path, &DumpOptions::default(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (a);\nINSERT INTO \"t\" (\"a\") VALUES('x');"
        );
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
