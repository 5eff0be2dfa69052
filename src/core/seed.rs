//! Synthetic rows for the lint shadow.
//!
//! An empty shadow database hides what a migration does to data: a parent-table rebuild whose
//! `DROP` cascades into every child row looks harmless when there are no rows. [`seed`] gives
//! every empty user table a few rows that satisfy its constraints, so that counting rows before
//! and after the migration ([`crate::core::rows`]) shows what it would delete or null.
//!
//! Values are found by trial, not by understanding every constraint: each row tries candidate
//! values (one per column type, the literals of the table's CHECK expressions and their
//! neighbours, other shapes, the default, NULL) inside a savepoint, and SQLite's message about a
//! failed attempt says which columns to vary next. Nothing is random, so the same schema always
//! gets the same rows.

mod tables;
#[cfg(test)]
mod tests;
mod trial;
mod values;

use std::collections::HashSet;

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::core::sql::quote_identifier;
use crate::d1::authorizer::D1Rules;
use tables::TableShape;
use trial::{Blame, Choices, MOST_ATTEMPTS_PER_ROW, Search, Slot, culprits, row_values};
use values::{ColumnKind, Literals};

/// What [`seed`] did, table by table (names lower-cased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Tables that received rows, in the order they were seeded (parents before children).
    pub seeded: Vec<String>,
    /// Tables that already had rows and were left as they were (rows from before the call, or
    /// put there while seeding another table: a trigger, an `fts5vocab` table).
    pub kept: Vec<String>,
    /// Tables that could not be given rows, with the reason: SQLite's message about the last
    /// attempt, or e.g. "a NOT NULL foreign key cycle with `x`".
    pub not_seeded: Vec<(String, String)>,
}

/// The savepoint around each attempt, so that a failed one (its trigger effects included)
/// leaves nothing behind.
const SAVEPOINT: &str = "SAVEPOINT d1ctl_seed_row";
const RELEASE: &str = "RELEASE d1ctl_seed_row";
const ROLLBACK: &str = "ROLLBACK TO d1ctl_seed_row";

/// Inserts `rows_per_table` synthetic rows into every user table of `connection` that has none
/// yet, and says which tables got rows and which could not.
///
/// Skipped: SQLite's tables (`sqlite_*`), D1's (`_cf_*`), d1ctl's (`_d1ctl_*`), those `ignore`
/// names (ledgers; all case-insensitively) and the shadow tables of virtual tables. A table that
/// already has rows (seeded before an earlier migration and still there) is left as it is and
/// listed in [`SeedReport::kept`], so a caller can seed before every migration without rows
/// piling up; its rows still serve as parents for the tables that are seeded.
///
/// Parents are seeded before their children, and a child's foreign key columns take values read
/// back from the parent. A self-reference is NULL where it may be, else points at its own row
/// or an earlier one. A foreign key cycle is broken where a key may be NULL; a cycle of NOT NULL
/// keys leaves its tables in [`SeedReport::not_seeded`]. Generated columns are never written; a
/// column may be left to its default when no explicit value passes. Triggers fire as usual.
///
/// Every row is inserted in its own savepoint, committed at once when `connection` is in
/// autocommit mode; call it outside a transaction, so that a deferred foreign key that a row
/// would break fails that row and not the caller's commit. It never panics and never gives up
/// on every table because one cannot be seeded.
///
/// With `rules` (lint always passes them), each INSERT is judged by D1's rules: it runs the
/// migrations' triggers, defaults and CHECKs, which are migration text. The savepoints around
/// it are d1ctl's own.
pub fn seed(
    connection: &Connection,
    rules: Option<&D1Rules>,
    ignore: &[&str],
    rows_per_table: usize,
) -> SeedReport {
    let mut report = SeedReport::default();
    if rows_per_table == 0 {
        return report;
    }
    let listed = match tables::list(connection) {
        Ok(listed) => listed,
        Err(error) => {
            report
                .not_seeded
                .push(("sqlite_master".to_owned(), sqlite_message(&error)));
            return report;
        }
    };
    let existing: HashSet<String> = listed.iter().map(|t| t.name.to_ascii_lowercase()).collect();
    // Tables that have rows now: parents a child can point at.
    let mut filled: HashSet<String> = HashSet::new();
    let mut pending: Vec<TableShape> = Vec::new();
    for table in &listed {
        let key = table.name.to_ascii_lowercase();
        if is_skipped(&key, ignore) || table.kind == "shadow" {
            continue;
        }
        let shape = has_rows(connection, &table.name).and_then(|rows| {
            Ok(if rows {
                None
            } else {
                Some(tables::read(connection, table)?)
            })
        });
        match shape {
            Ok(Some(shape)) => pending.push(shape),
            Ok(None) => {
                filled.insert(key.clone());
                report.kept.push(key);
            }
            Err(error) => report.not_seeded.push((key, sqlite_message(&error))),
        }
    }
    let has_triggers = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger')",
            [],
            |row| row.get(0),
        )
        .unwrap_or(true);
    let mut seeder = Seeder {
        connection,
        rules,
        has_triggers,
        rows_per_table,
        existing,
        filled,
        report,
    };
    while !pending.is_empty() {
        let waiting: HashSet<String> = pending
            .iter()
            .map(|t| t.name.to_ascii_lowercase())
            .collect();
        let ready = pending
            .iter()
            .position(|table| parents_waiting(table, &waiting).next().is_none());
        if let Some(index) = ready {
            let table = pending.remove(index);
            seeder.seed_table(&table, &HashSet::new());
            continue;
        }
        // Every table left waits for another: break a cycle where a key may be NULL.
        let on_cycle: Vec<usize> = (0..pending.len())
            .filter(|&index| cycle(&pending, index, false).is_some())
            .collect();
        let breakable = |index: &usize| {
            let table = &pending[*index];
            table.foreign_keys.iter().all(|key| {
                !waiting.contains(&key.parent.to_ascii_lowercase())
                    || key.parent.eq_ignore_ascii_case(&table.name)
                    || key.nullable(&table.columns)
            })
        };
        if let Some(&index) = on_cycle.iter().find(|index| breakable(index)) {
            let table = pending.remove(index);
            let nulled: HashSet<String> = parents_waiting(&table, &waiting).collect();
            seeder.seed_table(&table, &nulled);
            continue;
        }
        let not_null_cycle = (0..pending.len()).find_map(|index| cycle(&pending, index, true));
        let Some(members) = not_null_cycle else {
            // Not reached (a stuck graph has a cycle); give up on what is left rather than loop.
            for table in pending.drain(..) {
                let reason = "its foreign keys wait on tables that were not seeded".to_owned();
                seeder.not_seeded(&table.name, reason);
            }
            break;
        };
        let names: Vec<String> = members
            .iter()
            .map(|&index| pending[index].name.to_ascii_lowercase())
            .collect();
        for (position, name) in names.iter().enumerate() {
            let next = &names[(position + 1) % names.len()];
            let reason = format!("a NOT NULL foreign key cycle with `{next}`");
            seeder.not_seeded(name, reason);
        }
        pending.retain(|table| !names.contains(&table.name.to_ascii_lowercase()));
    }
    seeder.report
}

/// Tables that are never the user's data.
fn is_skipped(lower_name: &str, ignore: &[&str]) -> bool {
    lower_name.starts_with("sqlite_")
        || lower_name.starts_with("_cf_")
        || lower_name.starts_with("_d1ctl_")
        || ignore.iter().any(|i| i.eq_ignore_ascii_case(lower_name))
}

fn has_rows(connection: &Connection, table: &str) -> rusqlite::Result<bool> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quote_identifier(table));
    connection
        .prepare_cached(&sql)?
        .query_row([], |row| row.get(0))
}

/// The lower-cased parents of `table` that are still waiting to be seeded (itself excepted).
fn parents_waiting<'a>(
    table: &'a TableShape,
    waiting: &'a HashSet<String>,
) -> impl Iterator<Item = String> + 'a {
    table
        .foreign_keys
        .iter()
        .map(|key| key.parent.to_ascii_lowercase())
        .filter(move |parent| {
            waiting.contains(parent) && *parent != table.name.to_ascii_lowercase()
        })
}

/// A cycle of foreign keys through `pending[start]` (indexes, `start` first), following only
/// NOT NULL keys when `not_null_only`.
fn cycle(pending: &[TableShape], start: usize, not_null_only: bool) -> Option<Vec<usize>> {
    let position = |name: &str| {
        pending
            .iter()
            .position(|table| table.name.eq_ignore_ascii_case(name))
    };
    let edges = |index: usize| -> Vec<usize> {
        let table = &pending[index];
        table
            .foreign_keys
            .iter()
            .filter(|key| !(not_null_only && key.nullable(&table.columns)))
            .filter_map(|key| position(&key.parent))
            .filter(|&parent| parent != index)
            .collect()
    };
    // Depth-first, remembering the path; the graph has at most a few hundred tables.
    let mut path = vec![start];
    let mut next_edge = vec![0usize];
    let mut seen = HashSet::from([start]);
    while let (Some(&node), Some(edge)) = (path.last(), next_edge.last_mut()) {
        let out = edges(node);
        let Some(&parent) = out.get(*edge) else {
            path.pop();
            next_edge.pop();
            continue;
        };
        *edge += 1;
        if parent == start {
            return Some(path);
        }
        if seen.insert(parent) {
            path.push(parent);
            next_edge.push(0);
        }
    }
    None
}

struct Seeder<'a> {
    connection: &'a Connection,
    rules: Option<&'a D1Rules>,
    /// Whether inserting into one table can fill another.
    has_triggers: bool,
    rows_per_table: usize,
    /// Every table of the database, lower-cased, internal ones included.
    existing: HashSet<String>,
    filled: HashSet<String>,
    report: SeedReport,
}

/// Why an attempt failed.
enum Failure {
    /// The INSERT itself cannot be prepared (a read-only virtual table, a foreign key mismatch):
    /// no value helps.
    Statement(String),
    /// SQLite refused the row.
    Row(String),
}

impl Seeder<'_> {
    fn not_seeded(&mut self, table: &str, reason: String) {
        self.report
            .not_seeded
            .push((table.to_ascii_lowercase(), reason));
    }

    /// Seeds `table`; foreign keys to the `nulled` parents (a broken cycle) get NULL.
    fn seed_table(&mut self, table: &TableShape, nulled: &HashSet<String>) {
        let key = table.name.to_ascii_lowercase();
        // Seeding an earlier table may have filled this one (a trigger, an `fts5vocab` table).
        let may_have_filled = self.has_triggers || table.is_virtual;
        if may_have_filled && has_rows(self.connection, &table.name).unwrap_or(false) {
            self.filled.insert(key.clone());
            self.report.kept.push(key);
            return;
        }
        let outcome = self
            .slots(table, nulled)
            .and_then(|mut slots| self.fill(table, &mut slots));
        match outcome {
            Ok(()) => {
                self.filled.insert(key.clone());
                self.report.seeded.push(key);
            }
            Err(reason) => self.not_seeded(&table.name, reason),
        }
    }

    fn slots(&self, table: &TableShape, nulled: &HashSet<String>) -> Result<Vec<Slot>, String> {
        let mut slots = Vec::new();
        let mut in_key = vec![false; table.columns.len()];
        for key in &table.foreign_keys {
            let parent = key.parent.to_ascii_lowercase();
            let nullable = key.nullable(&table.columns);
            let names = || {
                key.columns
                    .iter()
                    .map(|&c| table.columns[c].name.as_str())
                    .collect::<Vec<_>>()
                    .join("`, `")
            };
            let referenced = if key.referenced.is_empty() {
                let primary = tables::primary_key(self.connection, &key.parent)
                    .map_err(|error| sqlite_message(&error))?;
                if primary.is_empty() {
                    vec!["rowid".to_owned()]
                } else {
                    primary
                }
            } else {
                key.referenced.clone()
            };
            let choices = if parent == table.name.to_ascii_lowercase() {
                Choices::Itself {
                    nullable,
                    referenced: referenced
                        .iter()
                        .map(|name| {
                            table
                                .columns
                                .iter()
                                .position(|c| c.name.eq_ignore_ascii_case(name))
                        })
                        .collect(),
                    names: referenced,
                    earlier: Vec::new(),
                }
            } else if nulled.contains(&parent) {
                Choices::Parent {
                    tuples: Vec::new(),
                    nullable: true,
                }
            } else if !self.existing.contains(&parent) {
                // SQLite refuses every row of such a child, NULL key or not.
                return Err(format!(
                    "`{}` references `{parent}`, which does not exist",
                    names()
                ));
            } else {
                let tuples = if self.filled.contains(&parent) {
                    read_tuples(
                        self.connection,
                        &key.parent,
                        &referenced,
                        self.rows_per_table,
                    )
                    .map_err(|error| sqlite_message(&error))?
                } else {
                    Vec::new()
                };
                if tuples.is_empty() && !nullable {
                    return Err(format!(
                        "`{}` references `{parent}`, which has no rows to point at",
                        names()
                    ));
                }
                Choices::Parent { tuples, nullable }
            };
            key.columns.iter().for_each(|&c| in_key[c] = true);
            slots.push(Slot {
                columns: key.columns.clone(),
                choices,
            });
        }
        for (index, column) in table.columns.iter().enumerate() {
            if in_key[index] {
                continue;
            }
            let mut literals = Literals::default();
            for check in table.checks.iter().filter(|c| c.columns.contains(&index)) {
                literals.merge(&check.literals);
            }
            let kind = ColumnKind {
                name: &column.name,
                declared_type: &column.declared_type,
                nullable: column.nullable,
                has_default: column.has_default,
                full_text: table.full_text,
            };
            slots.push(Slot {
                columns: vec![index],
                choices: Choices::Column(values::candidates(&kind, &literals)),
            });
        }
        Ok(slots)
    }

    /// Inserts up to `rows_per_table` rows, varying the slots SQLite's messages blame.
    fn fill(&self, table: &TableShape, slots: &mut [Slot]) -> Result<(), String> {
        let mut slot_of = vec![0; table.columns.len()];
        for (index, slot) in slots.iter().enumerate() {
            slot.columns.iter().for_each(|&c| slot_of[c] = index);
        }
        let defaults: Vec<Option<usize>> = slots.iter().map(Slot::default_choice).collect();
        let mut choice = vec![0; slots.len()];
        let mut inserted = 0;
        let mut last_message = String::new();
        'rows: for row in 0..self.rows_per_table {
            // What worked for the row before is where this one starts.
            let start = choice.clone();
            let mut tried: HashSet<Vec<usize>> = HashSet::new();
            for _ in 0..MOST_ATTEMPTS_PER_ROW {
                tried.insert(choice.clone());
                let values = row_values(slots, &choice, row, table.columns.len());
                let failure = match self.attempt(table, &values) {
                    Ok(()) => {
                        inserted += 1;
                        self.refresh_itself(table, slots);
                        continue 'rows;
                    }
                    Err(failure) => failure,
                };
                let message = match failure {
                    Failure::Statement(message) if values.iter().all(Option::is_some) => {
                        return Err(message);
                    }
                    Failure::Statement(message) | Failure::Row(message) => message,
                };
                let blamed = match culprits(self.connection, table, &message) {
                    Blame::Columns(columns) => {
                        let mut blamed: Vec<usize> = columns.iter().map(|&c| slot_of[c]).collect();
                        blamed.sort_unstable();
                        blamed.dedup();
                        Some(blamed)
                    }
                    Blame::Unknown => None,
                    Blame::Hopeless => {
                        last_message = message;
                        break;
                    }
                };
                last_message = message;
                let search = Search {
                    sizes: slots.iter().map(Slot::len).collect(),
                    defaults: &defaults,
                    start: &start,
                    tried: &tried,
                };
                match search.next(&choice, blamed.as_deref()) {
                    Some(next) => choice = next,
                    None => break,
                }
            }
            // No combination left for this row; the rows already in are enough to count.
            break;
        }
        if inserted == 0 {
            Err(last_message)
        } else {
            Ok(())
        }
    }

    /// One INSERT inside its own savepoint.
    fn attempt(&self, table: &TableShape, values: &[Option<Value>]) -> Result<(), Failure> {
        let included: Vec<usize> = (0..values.len()).filter(|&c| values[c].is_some()).collect();
        let sql = if included.is_empty() {
            format!(
                "INSERT INTO {} DEFAULT VALUES",
                quote_identifier(&table.name)
            )
        } else {
            let names: Vec<String> = included
                .iter()
                .map(|&c| quote_identifier(&table.columns[c].name))
                .collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({})",
                quote_identifier(&table.name),
                names.join(", "),
                vec!["?"; included.len()].join(", ")
            )
        };
        let run = |sql: &str| -> rusqlite::Result<()> {
            self.connection.prepare_cached(sql)?.execute([])?;
            Ok(())
        };
        run(SAVEPOINT).map_err(|error| Failure::Statement(sqlite_message(&error)))?;
        let insert = || match self.connection.prepare_cached(&sql) {
            Err(error) => Err(Failure::Statement(sqlite_message(&error))),
            Ok(mut statement) => {
                match statement.execute(rusqlite::params_from_iter(values.iter().flatten())) {
                    Ok(0) => Err(Failure::Row(
                        "the row was ignored (an `OR IGNORE` conflict clause or a trigger)"
                            .to_owned(),
                    )),
                    Ok(_) => Ok(()),
                    Err(error) => Err(Failure::Row(sqlite_message(&error))),
                }
            }
        };
        let inserted = match self.rules {
            Some(rules) => rules.enforce(insert),
            None => insert(),
        };
        // Releasing commits in autocommit mode, where a deferred foreign key is checked.
        let outcome =
            inserted.and_then(|()| run(RELEASE).map_err(|e| Failure::Row(sqlite_message(&e))));
        if outcome.is_err() {
            // Nothing useful to do if these fail too: the attempt's error is what to report.
            let _ = run(ROLLBACK);
            let _ = run(RELEASE);
        }
        outcome
    }

    /// Rereads the rows a self-reference can point at after a row went in.
    fn refresh_itself(&self, table: &TableShape, slots: &mut [Slot]) {
        for slot in slots {
            if let Choices::Itself { names, earlier, .. } = &mut slot.choices {
                *earlier = read_tuples(self.connection, &table.name, names, self.rows_per_table)
                    .unwrap_or_default();
            }
        }
    }
}

/// Up to `limit` rows of `columns` of `table` with no NULL among them.
fn read_tuples(
    connection: &Connection,
    table: &str,
    columns: &[String],
    limit: usize,
) -> rusqlite::Result<Vec<Vec<Value>>> {
    let quoted: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
    let not_null: Vec<String> = quoted.iter().map(|c| format!("{c} IS NOT NULL")).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} LIMIT {}",
        quoted.join(", "),
        quote_identifier(table),
        not_null.join(" AND "),
        limit.max(1)
    );
    let mut statement = connection.prepare_cached(&sql)?;
    statement
        .query_map([], |row| (0..columns.len()).map(|i| row.get(i)).collect())?
        .collect()
}

/// SQLite's own message, without rusqlite's wrapping.
fn sqlite_message(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}
