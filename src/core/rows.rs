//! Row counts: what "verified" means for data.
//!
//! A table's rows and the non-null values of each of its columns, counted in one statement per
//! table, before and after a migration. The lint shadow, the row guard and rehearsals compare
//! the same numbers, so a loss means the same thing everywhere.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::backend::{Rows, Statement};
use crate::core::sql::quote_identifier;

/// One table's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub rows: i64,
    /// Non-null values per column (lower-cased name).
    pub non_null: BTreeMap<String, i64>,
}

/// Counts per table (lower-cased name).
pub type Counts = BTreeMap<String, TableCounts>;

/// `SELECT count(*), count("a"), … FROM "t"`: the table's rows and each column's non-null values.
pub fn count_statement(table: &str, columns: &[String]) -> Statement {
    let mut sql = String::from("SELECT count(*)");
    for column in columns {
        sql.push_str(", count(");
        sql.push_str(&quote_identifier(column));
        sql.push(')');
    }
    sql.push_str(" FROM ");
    sql.push_str(&quote_identifier(table));
    Statement::new(sql)
}

/// Reads what [`count_statement`] returned for `columns`.
pub fn parse_counts(rows: &Rows, columns: &[String]) -> TableCounts {
    let values = rows.rows.first().map(Vec::as_slice).unwrap_or_default();
    let number = |i: usize| {
        values
            .get(i)
            .and_then(crate::backend::Value::as_i64)
            .unwrap_or_default()
    };
    TableCounts {
        rows: number(0),
        non_null: columns
            .iter()
            .enumerate()
            .map(|(i, column)| (column.to_ascii_lowercase(), number(i + 1)))
            .collect(),
    }
}

/// The user tables of a connection with their columns, skipping SQLite's, D1's, virtual
/// tables' shadow tables and those `ignore` names (ledgers).
pub fn user_tables(
    connection: &Connection,
    ignore: &[&str],
) -> rusqlite::Result<Vec<(String, Vec<String>)>> {
    let mut list = connection.prepare(
        "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' ORDER BY name",
    )?;
    let names: Vec<String> = list
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut tables = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("sqlite_")
            || lower.starts_with("_cf_")
            || lower.starts_with("_d1ctl_")
            || ignore.iter().any(|i| i.eq_ignore_ascii_case(&name))
        {
            continue;
        }
        let mut info = connection.prepare_cached("SELECT name FROM pragma_table_info(?1)")?;
        let columns: Vec<String> = info
            .query_map([&name], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        tables.push((name, columns));
    }
    Ok(tables)
}

/// Counts every user table of `connection` (a lint shadow, a rehearsal copy).
pub fn count_all(connection: &Connection, ignore: &[&str]) -> rusqlite::Result<Counts> {
    let mut counts = Counts::new();
    for (table, columns) in user_tables(connection, ignore)? {
        let statement = count_statement(&table, &columns);
        let values: Vec<i64> = connection.query_row(&statement.sql, [], |row| {
            (0..=columns.len()).map(|i| row.get(i)).collect()
        })?;
        counts.insert(
            table.to_ascii_lowercase(),
            TableCounts {
                rows: values[0],
                non_null: columns
                    .iter()
                    .zip(&values[1..])
                    .map(|(c, n)| (c.to_ascii_lowercase(), *n))
                    .collect(),
            },
        );
    }
    Ok(counts)
}

/// `PRAGMA foreign_key_check`, counted per child table and parent (streamed, not collected).
pub fn foreign_key_violations(
    connection: &Connection,
) -> rusqlite::Result<BTreeMap<(String, String), i64>> {
    let mut found = BTreeMap::new();
    let mut statement = connection.prepare("PRAGMA foreign_key_check")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let table: String = row.get(0)?;
        let parent: String = row.get(2)?;
        *found.entry((table, parent)).or_default() += 1;
    }
    Ok(found)
}

/// Rows or non-null values a table kept by name has fewer of afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Loss {
    pub table: String,
    /// `None` for rows; the column whose non-null values dropped otherwise.
    pub column: Option<String>,
    pub before: i64,
    pub after: i64,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            None => write!(
                f,
                "`{}` went from {} to {} rows",
                self.table, self.before, self.after
            ),
            Some(column) => write!(
                f,
                "`{}.{column}` went from {} to {} non-null values",
                self.table, self.before, self.after
            ),
        }
    }
}

/// What tables present on both sides lost. A table only in `before` was dropped (the schema
/// diff reports that); a column only in `before` likewise.
pub fn losses(before: &Counts, after: &Counts) -> Vec<Loss> {
    let mut found = Vec::new();
    for (table, was) in before {
        let Some(now) = after.get(table) else {
            continue;
        };
        if now.rows < was.rows {
            found.push(Loss {
                table: table.clone(),
                column: None,
                before: was.rows,
                after: now.rows,
            });
            // Fewer rows means fewer values in every column; the row loss says it all.
            continue;
        }
        for (column, &n) in &was.non_null {
            if let Some(&m) = now.non_null.get(column)
                && m < n
            {
                found.push(Loss {
                    table: table.clone(),
                    column: Some(column.clone()),
                    before: n,
                    after: m,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_and_values_and_finds_losses() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT);
                 CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER);
                 CREATE TABLE _d1ctl_lock (x);
                 CREATE TABLE d1_migrations (x);
                 INSERT INTO p VALUES (1, 'a'), (2, NULL);
                 INSERT INTO c VALUES (1, 1), (2, 2);",
            )
            .unwrap();
        let before = count_all(&connection, &["d1_migrations"]).unwrap();
        assert_eq!(before.keys().collect::<Vec<_>>(), ["c", "p"]);
        assert_eq!(before["p"].rows, 2);
        assert_eq!(before["p"].non_null["name"], 1);
        connection
            .execute_batch("UPDATE c SET p_id = NULL WHERE id = 2; DELETE FROM p WHERE id = 2;")
            .unwrap();
        let after = count_all(&connection, &["d1_migrations"]).unwrap();
        let found: Vec<String> = losses(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "`c.p_id` went from 2 to 1 non-null values",
                "`p` went from 2 to 1 rows"
            ]
        );
    }
}
