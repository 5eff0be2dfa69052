//! The row guard: statements inside every unit d1ctl writes that abort the whole unit when a
//! table at risk ends it with fewer rows, or fewer non-null foreign-key values, than it started
//! with, and the migration does not name that change.
//!
//! Tables at risk come from the target's own schema: those a `DROP` or `DELETE` in the unit
//! reaches through `ON DELETE` actions ([`fk`]), and the tables the unit rebuilds. Nothing else
//! is counted, so a large table nobody touches costs nothing. Each guarded table costs two
//! statements in the same request: one counts at the start of the unit, one compares at its
//! end. A migration names a change with a `DELETE`/`UPDATE` of that table, or with the waiver
//! `-- d1ctl:allow DS105(table) why`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;
use serde::Serialize;

use crate::backend::{BackendError, Statement, Value};
use crate::core::fk::{self, Action};
use crate::core::lint::{self, waiver};
use crate::core::migrations::Migration;
use crate::core::schema::{self, Snapshot};
use crate::core::sql::quote_identifier;

/// d1ctl's scratch table for one unit: its start time and the counts the guard compares.
pub const UNIT_STATE_TABLE: &str = "_d1ctl_unit_state";

/// The guard's mark in SQLite's error text. D1 does not say which batch entry failed, so the
/// guard raises an error whose text carries what it found: `json_extract` with a path that is
/// not a path fails with the path in its message, on every SQLite D1 runs.
const MARK: &str = "d1ctl-row-guard";

/// A table the guard counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guarded {
    pub table: String,
    /// Foreign-key columns whose non-null values are counted besides the rows.
    pub columns: Vec<String>,
}

/// The guard of one unit.
#[derive(Debug, Clone, Default)]
pub struct UnitGuard {
    pub tables: Vec<Guarded>,
}

/// What a tripped guard found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tripped {
    pub table: String,
    /// `None` for rows, else the column whose non-null values dropped.
    pub column: Option<String>,
    pub before: i64,
    pub after: i64,
}

impl std::fmt::Display for Tripped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            None => write!(
                f,
                "`{}` would have gone from {} to {} rows",
                self.table, self.before, self.after
            ),
            Some(column) => write!(
                f,
                "`{}.{column}` would have gone from {} to {} non-null values",
                self.table, self.before, self.after
            ),
        }
    }
}

impl UnitGuard {
    /// The statements that open a unit: its state table, start time and the counts.
    pub fn opening(&self) -> Vec<Statement> {
        let mut statements = vec![
            Statement::new(format!(
                "CREATE TABLE IF NOT EXISTS {UNIT_STATE_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )),
            Statement::new(format!(
                "INSERT OR REPLACE INTO {UNIT_STATE_TABLE} (key, value) VALUES ('started', julianday('now'))"
            )),
        ];
        for guarded in &self.tables {
            statements.push(Statement::with_params(
                format!(
                    "INSERT OR REPLACE INTO {UNIT_STATE_TABLE} (key, value) SELECT ?, json_array({}) FROM {}",
                    counted(guarded),
                    quote_identifier(&guarded.table)
                ),
                vec![Value::from(format!("rows:{}", guarded.table))],
            ));
        }
        statements
    }

    /// The statements that close a unit: one comparison per guarded table.
    pub fn closing(&self) -> Vec<Statement> {
        self.tables
            .iter()
            .enumerate()
            .map(|(position, guarded)| {
                let n = guarded.columns.len() + 1;
                let fewer: Vec<String> = (0..n)
                    .map(|i| format!("json_extract(now.counts, '$[{i}]') < json_extract(g.value, '$[{i}]')"))
                    .collect();
                Statement::with_params(
                    format!(
                        "SELECT CASE WHEN {} THEN json_extract('{{}}', ? || g.value || '|' || now.counts || '|') END FROM {UNIT_STATE_TABLE} AS g, (SELECT json_array({}) AS counts FROM {}) AS now WHERE g.key = ?",
                        fewer.join(" OR "),
                        counted(guarded),
                        quote_identifier(&guarded.table)
                    ),
                    vec![
                        Value::from(format!("{MARK}|{position}|")),
                        Value::from(format!("rows:{}", guarded.table)),
                    ],
                )
            })
            .collect()
    }

    /// The last statement of a unit: its scratch table goes, so a database d1ctl wrote holds
    /// nothing of it between units.
    pub fn cleanup() -> Statement {
        Statement::new(format!("DROP TABLE IF EXISTS {UNIT_STATE_TABLE}"))
    }

    /// What tripped, when `error` is this guard's.
    pub fn tripped(&self, error: &BackendError) -> Option<Tripped> {
        let BackendError::Statement { message, .. } = error else {
            return None;
        };
        let payload = &message[message.find(MARK)? + MARK.len()..];
        let mut parts = payload.split('|').skip(1);
        let guarded = self.tables.get(parts.next()?.parse::<usize>().ok()?)?;
        let before: Vec<i64> = serde_json::from_str(parts.next()?).ok()?;
        let after: Vec<i64> = serde_json::from_str(parts.next()?).ok()?;
        let (i, (b, a)) = before
            .iter()
            .zip(&after)
            .enumerate()
            .find(|(_, (b, a))| a < b)?;
        Some(Tripped {
            table: guarded.table.clone(),
            column: i
                .checked_sub(1)
                .and_then(|c| guarded.columns.get(c).cloned()),
            before: *b,
            after: *a,
        })
    }
}

/// `count(*), count("a"), …` for a guarded table.
fn counted(guarded: &Guarded) -> String {
    std::iter::once("count(*)".to_owned())
        .chain(
            guarded
                .columns
                .iter()
                .map(|c| format!("count({})", quote_identifier(c))),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table a statement names as changing its rows (its words, as [`schema::words`] gives
/// them): `DELETE FROM t`, `UPDATE t`, `REPLACE INTO t`, `INSERT OR REPLACE INTO t`.
pub fn named_by(words: &[String]) -> Option<String> {
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    match (w(0), w(1)) {
        ("delete", "from") | ("replace", "into") => Some(w(2).to_owned()),
        ("update", "or") => Some(w(3).to_owned()),
        ("update", table) if !table.is_empty() => Some(table.to_owned()),
        ("insert", "or") if w(2) == "replace" => Some(w(4).to_owned()),
        _ => None,
    }
}

/// Plans the guard of each unit (one or more migrations applied atomically), in order, by
/// running the units on an empty copy of the target's schema.
pub fn plan(snapshot: &Snapshot, units: &[Vec<&Migration>], ignore: &[&str]) -> Vec<UnitGuard> {
    let Ok(mut shadow) = schema::shadow(snapshot) else {
        return units.iter().map(|_| UnitGuard::default()).collect();
    };
    units
        .iter()
        .map(|unit| plan_unit(&mut shadow, unit, ignore))
        .collect()
}

fn plan_unit(shadow: &mut Connection, unit: &[&Migration], ignore: &[&str]) -> UnitGuard {
    let Some(start) = lint::read_schema(shadow, ignore) else {
        return UnitGuard::default();
    };
    // Table → columns at risk (empty: rows only).
    let mut at_risk: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut named: BTreeSet<String> = BTreeSet::new();
    let Ok(transaction) = shadow.transaction() else {
        return UnitGuard::default();
    };
    for migration in unit {
        for waiver in waiver::of(migration) {
            if waiver.code == "DS105"
                && let Some(table) = waiver.table
            {
                named.insert(table);
            }
        }
        for statement in &migration.statements {
            let words = schema::words(&statement.sql);
            let w = |i: usize| words.get(i).map_or("", String::as_str);
            named.extend(named_by(&words));
            let deleted = match (w(0), w(1)) {
                ("drop", "table") => Some(if w(2) == "if" { w(4) } else { w(2) }),
                ("delete", "from") => Some(w(2)),
                _ => None,
            };
            if let Some(table) = deleted
                && let Some(now) = lint::read_schema(&transaction, ignore)
                && now.tables.contains_key(table)
            {
                at_risk.entry(table.to_owned()).or_default();
                for effect in fk::deletion_effects(&now, &[table.to_owned()]) {
                    let columns = at_risk.entry(effect.table.clone()).or_default();
                    if matches!(effect.action, Action::SetNull | Action::SetDefault) {
                        columns.extend(effect.columns.iter().cloned());
                    }
                }
            }
            // A statement that fails on the empty copy is left out; the shadow only has to
            // say which tables exist at the end.
            let _ =
                crate::local::run_statement(&transaction, &Statement::new(statement.sql.clone()));
        }
    }
    let end = lint::read_schema(&transaction, ignore);
    let _ = transaction.commit();
    let Some(end) = end else {
        return UnitGuard::default();
    };
    let tables = at_risk
        .into_iter()
        // Counted at the start and at the end: the table must exist at both.
        .filter(|(table, _)| start.tables.contains_key(table) && end.tables.contains_key(table))
        .filter(|(table, _)| !named.contains(table))
        .map(|(table, mut columns)| {
            // The table's own foreign-key values count too: a rebuild must keep them.
            for key in &start.tables[&table].foreign_keys {
                columns.extend(key.columns.iter().cloned());
            }
            let kept = &end.tables[&table];
            let columns = columns
                .into_iter()
                .filter(|c| kept.columns.iter().any(|k| k.name == *c))
                .collect();
            Guarded { table, columns }
        })
        .collect();
    UnitGuard { tables }
}
