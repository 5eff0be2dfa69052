//! DS105, DS106, MF106, LT002: the migration run on a copy of the shadow that holds rows.
//!
//! A schema-only shadow cannot see a rebuild that deletes every child row, nor a migration that
//! only fails once tables have rows (a non-constant `DEFAULT` added by `ALTER TABLE`, a NOT NULL
//! or CHECK the copied rows break): an empty staging database passes them, production does not.
//! So before each linted migration a copy of the shadow gets synthetic rows in every table
//! ([`seed`]), the migration runs on it, and every table kept by name must end with as many
//! rows and non-null values as it started with, unless the migration names the change.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::Connection;

use super::{Finding, finding, run_watched};
use crate::core::guard::{self, RowChange};
use crate::core::migrations::Migration;
use crate::core::rows;
use crate::core::{schema, seed};
use crate::d1::authorizer::D1Rules;

/// Rows given to every table of the copy.
const ROWS_PER_TABLE: usize = 3;

/// A copy of the shadow that holds rows. It follows the migrations as the shadow does, so the
/// rows seeded before one migration are still there for the next: only tables that are empty
/// (new, or emptied) are seeded again.
pub(super) struct DataShadow {
    connection: Connection,
    rules: D1Rules,
}

impl DataShadow {
    /// Copies `shadow`; `None` when SQLite cannot make the copy.
    pub(super) fn copy_of(shadow: &Connection) -> Option<Self> {
        let (mut connection, rules) = crate::local::open_in_memory_with_rules().ok()?;
        rusqlite::backup::Backup::new(shadow, &mut connection)
            .ok()?
            .run_to_completion(1024, Duration::ZERO, None)
            .ok()?;
        Some(Self { connection, rules })
    }

    /// Runs a migration that is not linted, to stay in step; false when it failed here (the
    /// copy is then out of step and must be made again).
    pub(super) fn follow(&mut self, migration: &Migration, ignore: &[&str]) -> bool {
        run_watched(&mut self.connection, &self.rules, migration, None, ignore).is_ok()
    }

    /// Seeds the empty tables, runs `migration` and says what rows revealed; the flag is false
    /// when the migration failed here (the copy is then out of step).
    pub(super) fn check(&mut self, migration: &Migration, ignore: &[&str]) -> (Vec<Finding>, bool) {
        let report = seed::seed(&self.connection, Some(&self.rules), ignore, ROWS_PER_TABLE);
        let Ok(before) = rows::count_all(&self.connection, ignore) else {
            return (Vec::new(), false);
        };
        let not_seeded = report.not_seeded;
        let mut found: Vec<Finding> = not_seeded
            .iter()
            .map(|(table, reason)| Finding {
                table: Some(table.clone()),
                ..finding(
                    "LT002",
                    migration,
                    None,
                    format!("`{table}` was not checked with data: it could not be given rows ({reason})"),
                    "check what this migration does to that table's rows by hand, or `d1ctl rehearse` it on a copy of real data".to_owned(),
                )
            })
            .collect();
        if let Err(failure) =
            run_watched(&mut self.connection, &self.rules, migration, None, ignore)
        {
            found.push(finding(
                "MF106",
                migration,
                failure.line,
                format!(
                    "fails once its tables hold rows (it passes on an empty database, such as a fresh staging): {}",
                    failure.message
                ),
                fix_for(failure.extended_code),
            ));
            return (found, false);
        }
        let Ok(after) = rows::count_all(&self.connection, ignore) else {
            return (found, true);
        };
        let (rows_named, values_named) = named(migration);
        for loss in rows::losses(&before, &after) {
            let named = rows_named.contains(&loss.table)
                || (loss.column.is_some() && values_named.contains(&loss.table));
            if named {
                continue;
            }
            let what = loss.to_string();
            found.push(Finding {
                table: Some(loss.table.clone()),
                ..finding(
                    "DS105",
                    migration,
                    None,
                    format!(
                        "{what} on a shadow seeded with rows, and the migration does not name that change (no DELETE or UPDATE of `{}`)",
                        loss.table
                    ),
                    format!(
                        "keep them (D1001 says what each DROP reaches); if the loss is intended, say so in the migration: `-- d1ctl:allow DS105({}) <why>`",
                        loss.table
                    ),
                )
            });
        }
        found.extend(dangling(&self.connection, migration));
        (found, true)
    }
}

/// Tables whose rows (`DELETE`, `REPLACE`) and values (`UPDATE`) the migration names.
fn named(migration: &Migration) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut rows_named = BTreeSet::new();
    let mut values_named = BTreeSet::new();
    for statement in &migration.statements {
        match guard::row_change(&schema::words(&statement.sql)) {
            Some(RowChange::Deletes(table)) => {
                rows_named.insert(table.clone());
                values_named.insert(table);
            }
            Some(RowChange::Updates(table)) => {
                values_named.insert(table);
            }
            _ => {}
        }
    }
    (rows_named, values_named)
}

/// DS106: rows the migration left pointing at nothing (the deferred pair forgets them).
fn dangling(connection: &Connection, migration: &Migration) -> Vec<Finding> {
    let Ok(pairs) = rows::foreign_key_violations(connection) else {
        return Vec::new();
    };
    pairs
        .into_iter()
        .map(|((table, parent), count)| Finding {
            table: Some(table.to_ascii_lowercase()),
            ..finding(
                "DS106",
                migration,
                None,
                format!("leaves {count} rows of `{table}` pointing at rows of `{parent}` that no longer exist"),
                format!("recreate `{parent}` with the keys its children use, or delete or update those rows in the migration"),
            )
        })
        .collect()
}

/// The fix for a failure that only rows reveal, by SQLite's extended result code.
fn fix_for(extended_code: Option<i32>) -> String {
    match extended_code {
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
            "a DROP or a copy leaves rows pointing at nothing: see D1009/D1010, or rebuild the whole family".to_owned()
        }
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL) => {
            "give the new NOT NULL column a DEFAULT, or fill it in the copy (`coalesce(col, …)`)".to_owned()
        }
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
            "existing rows break the new UNIQUE constraint: remove the duplicates first, in this migration or an earlier one".to_owned()
        }
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_CHECK) => {
            "existing rows break the new CHECK: fix them first, in this migration or an earlier one".to_owned()
        }
        Some(rusqlite::ffi::SQLITE_ERROR) => "if it adds a column with a non-constant DEFAULT (e.g. `strftime(…)`), add it with a constant one (or none) and fill it with an UPDATE: ALTER TABLE cannot add a non-constant default to a table with rows".to_owned(),
        _ => "make the statement work on a table with rows; `d1ctl rehearse` tries it on a copy of real data".to_owned(),
    }
}
