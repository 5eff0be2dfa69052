//! Snapshots of `sqlite_master`: read from a database or from rows, replayed from migrations,
//! and turned back into an empty shadow database.

use rusqlite::Connection;

use super::model::{is_internal, table_names};
use crate::backend::{Rows, Statement};
use crate::core::migrations::Migration;

/// One row of `sqlite_master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawObject {
    pub kind: String,
    pub name: String,
    pub table: String,
    pub sql: Option<String>,
}

/// The schema rows of a database, in creation (rowid) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub objects: Vec<RawObject>,
}

/// The statement that reads a snapshot.
pub fn snapshot_statement() -> Statement {
    Statement::new("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")
}

impl Snapshot {
    pub fn from_rows(rows: &Rows) -> Self {
        let text = |row: &[crate::backend::Value], column: &str| rows.get(row, column).to_text();
        Self {
            objects: rows
                .rows
                .iter()
                .map(|row| RawObject {
                    kind: text(row, "type").unwrap_or_default(),
                    name: text(row, "name").unwrap_or_default(),
                    table: text(row, "tbl_name").unwrap_or_default(),
                    sql: text(row, "sql"),
                })
                .collect(),
        }
    }

    /// The snapshot of a database this process holds open.
    pub fn read(connection: &Connection) -> rusqlite::Result<Self> {
        let mut statement = connection.prepare(&snapshot_statement().sql)?;
        let objects = statement
            .query_map([], |row| {
                Ok(RawObject {
                    kind: row.get(0)?,
                    name: row.get(1)?,
                    table: row.get(2)?,
                    sql: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self { objects })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("migration `{migration}` fails when replayed in memory: {message}")]
    Replay { migration: String, message: String },
    #[error("the schema object `{name}` cannot be recreated in memory: {message}")]
    Rebuild { name: String, message: String },
    #[error("SQLite error while reading a schema: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies `migrations` to a fresh in-memory database, each in its own transaction, and returns
/// its snapshot: what an environment that ran exactly these migrations should hold.
///
/// D1's rules judge every statement, whatever the envs' `d1_rules` say, so migration text never
/// reaches the file system from here: a statement they refuse is skipped (D1 would refuse the
/// migration; a `d1_rules = false` env ran it, and it is one that changes no table of `main`
/// unless it creates a virtual table of another module than FTS5).
pub fn replay(migrations: &[&Migration]) -> Result<Snapshot, SchemaError> {
    let (mut connection, rules) = crate::local::open_in_memory_with_rules()?;
    for migration in migrations {
        let statements: Vec<Statement> = migration
            .statements
            .iter()
            .map(|s| Statement::new(s.sql.clone()))
            .collect();
        crate::local::run_skipping_refused(&mut connection, &statements, &rules).map_err(
            |error| SchemaError::Replay {
                migration: migration.name.clone(),
                message: error.to_string(),
            },
        )?;
    }
    Ok(Snapshot::read(&connection)?)
}

/// An empty in-memory database with `snapshot`'s schema (D1's connection settings): where a
/// write is rehearsed without rows, e.g. to learn which tables a unit leaves. Objects SQLite
/// cannot recreate are left out.
pub fn shadow(snapshot: &Snapshot) -> Result<Connection, SchemaError> {
    let connection = crate::local::open_in_memory()?;
    let objects: Vec<&RawObject> = snapshot
        .objects
        .iter()
        .filter(|o| o.sql.is_some() && !is_internal(&o.name, &[]) && !is_internal(&o.table, &[]))
        .collect();
    let sql = |o: &RawObject| o.sql.clone().unwrap_or_default();
    connection.execute_batch("BEGIN")?;
    // Virtual tables first: they create their own shadow tables, which are then skipped.
    for object in objects
        .iter()
        .filter(|o| o.kind == "table" && is_virtual_sql(&sql(o)))
    {
        let _ = connection.execute_batch(&sql(object));
    }
    let existing: std::collections::HashSet<String> =
        table_names(&connection)?.into_iter().collect();
    for object in objects.iter().filter(|o| {
        o.kind == "table"
            && !is_virtual_sql(&sql(o))
            && !existing.contains(&o.name.to_ascii_lowercase())
    }) {
        let _ = connection.execute_batch(&sql(object));
    }
    for object in objects.iter().filter(|o| o.kind != "table") {
        let _ = connection.execute_batch(&sql(object));
    }
    connection.execute_batch("COMMIT")?;
    Ok(connection)
}

fn is_virtual_sql(sql: &str) -> bool {
    sql.trim_start()
        .get(..14)
        .is_some_and(|head| head.eq_ignore_ascii_case("create virtual"))
}
