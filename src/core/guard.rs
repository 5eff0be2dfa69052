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
use crate::d1::authorizer::D1Rules;

/// d1ctl's scratch table for one unit: its start time and the counts the guard compares.
pub const UNIT_STATE_TABLE: &str = "_d1ctl_unit_state";

/// The guard's mark in SQLite's error text. D1 does not say which batch entry failed, so the
/// guard raises an error whose text carries what it found: `json_extract` with a path that is
/// not a path fails with the path in its message, on every SQLite D1 runs.
const MARK: &str = "d1ctl-row-guard";

/// A table the guard counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guarded {
    /// Its name at the start of the unit.
    pub table: String,
    /// Its name at the end (the same, unless the unit renamed it).
    pub end: String,
    /// Columns whose values are counted besides the rows.
    pub columns: Vec<Counted>,
}

/// A column the guard counts the values of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub name: String,
    /// For an `ON DELETE SET DEFAULT` key: its default, so that values reset to it count as
    /// lost (`count(nullif(column, default))`).
    pub default: Option<String>,
}

/// The guard of one unit.
#[derive(Debug, Clone, Default)]
pub struct UnitGuard {
    pub tables: Vec<Guarded>,
    /// Why the unit could not be guarded, when it could not: said, never silent.
    pub unguarded: Option<String>,
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
                vec![Value::from(format!("rows:{}", guarded.end))],
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
                        quote_identifier(&guarded.end)
                    ),
                    vec![
                        Value::from(format!("{MARK}|{position}|")),
                        Value::from(format!("rows:{}", guarded.end)),
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
                .and_then(|c| guarded.columns.get(c))
                .map(|c| c.name.clone()),
            before: *b,
            after: *a,
        })
    }
}

/// `count(*), count("a"), …` for a guarded table.
fn counted(guarded: &Guarded) -> String {
    std::iter::once("count(*)".to_owned())
        .chain(guarded.columns.iter().map(|c| match &c.default {
            Some(default) => {
                format!("count(nullif({}, {default}))", quote_identifier(&c.name))
            }
            None => format!("count({})", quote_identifier(&c.name)),
        }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table named at `words[i]`: a `schema .` prefix skipped, quotes removed, ASCII
/// lower-cased as schema keys are.
pub fn table_at(words: &[String], i: usize) -> String {
    let at = if words.get(i + 1).is_some_and(|w| w == ".") {
        i + 2
    } else {
        i
    };
    let word = words.get(at).map_or("", String::as_str);
    let unquoted = match (word.chars().next(), word.chars().last()) {
        (Some('"'), Some('"')) | (Some('`'), Some('`')) | (Some('['), Some(']'))
            if word.len() >= 2 =>
        {
            &word[1..word.len() - 1]
        }
        _ => word,
    };
    unquoted.to_ascii_lowercase()
}

/// What one statement does to a table's rows, by its words (as [`schema::words`] gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    /// `DROP TABLE t`: deletes every row (children's actions fire); names nothing.
    Dropped(String),
    /// `DELETE FROM t`, `REPLACE INTO t`, `INSERT OR REPLACE`, `UPDATE OR REPLACE`: may delete
    /// rows of `t` (children's actions fire), and names `t`'s rows.
    Deletes(String),
    /// `UPDATE t`: names `t`'s values, not its rows.
    Updates(String),
    /// `ALTER TABLE a RENAME TO b`.
    Renamed(String, String),
}

pub fn row_change(words: &[String]) -> Option<RowChange> {
    // `WITH … DELETE/UPDATE/INSERT/REPLACE`: judge the statement from its verb.
    let start = if words.first().is_some_and(|w| w == "with") {
        words
            .iter()
            .position(|w| matches!(w.as_str(), "delete" | "update" | "insert" | "replace"))?
    } else {
        0
    };
    let words = &words[start..];
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    let after = |i: usize| {
        // the table word follows a possible `schema .`
        if w(i + 1) == "." { i + 2 } else { i }
    };
    match (w(0), w(1)) {
        ("drop", "table") => Some(RowChange::Dropped(table_at(
            words,
            if w(2) == "if" { 4 } else { 2 },
        ))),
        ("delete", "from") | ("replace", "into") => Some(RowChange::Deletes(table_at(words, 2))),
        ("insert", "or") if w(2) == "replace" => Some(RowChange::Deletes(table_at(words, 4))),
        ("update", "or") if w(2) == "replace" => Some(RowChange::Deletes(table_at(words, 3))),
        ("update", "or") => Some(RowChange::Updates(table_at(words, 3))),
        ("update", _) => Some(RowChange::Updates(table_at(words, 1))),
        ("alter", "table") => {
            let from = table_at(words, 2);
            let next = after(2) + 1;
            (w(next) == "rename" && w(next + 1) == "to")
                .then(|| RowChange::Renamed(from, table_at(words, next + 2)))
        }
        _ => None,
    }
}

/// Plans the guard of each unit (one or more migrations applied atomically), in order, by
/// running the units on an empty copy of the target's schema.
pub fn plan(snapshot: &Snapshot, units: &[Vec<&Migration>], ignore: &[&str]) -> Vec<UnitGuard> {
    // D1's rules judge the units' statements here as everywhere migration text runs.
    let shadowed = schema::shadow(snapshot).and_then(|mut shadow| {
        let rules = D1Rules::install(&mut shadow)?;
        Ok((shadow, rules))
    });
    let (mut shadow, rules) = match shadowed {
        Ok(shadowed) => shadowed,
        Err(error) => {
            let reason = format!("the target's schema could not be copied in memory: {error}");
            return units
                .iter()
                .map(|_| UnitGuard {
                    tables: Vec::new(),
                    unguarded: Some(reason.clone()),
                })
                .collect();
        }
    };
    units
        .iter()
        .map(|unit| {
            plan_unit(&mut shadow, &rules, unit, ignore).unwrap_or_else(|reason| UnitGuard {
                tables: Vec::new(),
                unguarded: Some(reason),
            })
        })
        .collect()
}

fn plan_unit(
    shadow: &mut Connection,
    rules: &D1Rules,
    unit: &[&Migration],
    ignore: &[&str],
) -> Result<UnitGuard, String> {
    let unreadable = || "the schema copy could not be read back".to_owned();
    let start = lint::read_schema(shadow, ignore).ok_or_else(unreadable)?;
    // Start name → columns at risk with the default they would be reset to (empty: rows only).
    let mut at_risk: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let mut rows_named: BTreeSet<String> = BTreeSet::new();
    let mut values_named: BTreeSet<String> = BTreeSet::new();
    // Current name → name at the start of the unit, for tables the unit renamed.
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let transaction = shadow
        .transaction()
        .map_err(|e| format!("the schema copy refused a transaction: {e}"))?;
    for migration in unit {
        for waiver in waiver::of(migration) {
            if waiver.code == "DS105"
                && let Some(table) = waiver.table
            {
                rows_named.insert(table);
            }
        }
        for statement in &migration.statements {
            let words = schema::words(&statement.sql);
            let change = row_change(&words);
            let deleted = match &change {
                Some(RowChange::Dropped(table)) => Some(table.clone()),
                Some(RowChange::Deletes(table)) => {
                    rows_named.insert(origin.get(table).unwrap_or(table).clone());
                    Some(table.clone())
                }
                Some(RowChange::Updates(table)) => {
                    values_named.insert(origin.get(table).unwrap_or(table).clone());
                    None
                }
                Some(RowChange::Renamed(from, to)) => {
                    let first = origin.remove(from).unwrap_or_else(|| from.clone());
                    origin.insert(to.clone(), first);
                    None
                }
                None => None,
            };
            if let Some(table) = deleted {
                let now = lint::read_schema(&transaction, ignore).ok_or_else(unreadable)?;
                if now.tables.contains_key(&table) {
                    let start_name = |name: &String| origin.get(name).unwrap_or(name).clone();
                    at_risk.entry(start_name(&table)).or_default();
                    for effect in fk::deletion_effects(&now, std::slice::from_ref(&table)) {
                        let columns = at_risk.entry(start_name(&effect.table)).or_default();
                        if matches!(effect.action, Action::SetNull | Action::SetDefault) {
                            let child = &now.tables[&effect.table];
                            for column in &effect.columns {
                                let default = (effect.action == Action::SetDefault)
                                    .then(|| {
                                        child
                                            .columns
                                            .iter()
                                            .find(|c| c.name == *column)
                                            .and_then(|c| c.default.clone())
                                    })
                                    .flatten();
                                columns.insert(column.clone(), default);
                            }
                        }
                    }
                }
            }
            // A statement that fails on the empty copy (or that D1's rules refuse) is left out;
            // the shadow only has to say which tables exist at the end.
            let _ = crate::local::run_judged(
                &transaction,
                &Statement::new(statement.sql.clone()),
                Some(rules),
            );
        }
    }
    let end = lint::read_schema(&transaction, ignore).ok_or_else(unreadable)?;
    let _ = transaction.commit();
    let tables = at_risk
        .into_iter()
        .filter(|(table, _)| start.tables.contains_key(table) && !rows_named.contains(table))
        .filter_map(|(table, mut columns)| {
            // Compared by name: the table of that name at the end, else where it was renamed.
            let end_name = if end.tables.contains_key(&table) {
                table.clone()
            } else {
                origin
                    .iter()
                    .find(|(now, first)| **first == table && end.tables.contains_key(*now))
                    .map(|(now, _)| now.clone())?
            };
            let (before, after) = (&start.tables[&table], &end.tables[&end_name]);
            // The table's own foreign-key values count too: a rebuild must keep them.
            for key in &before.foreign_keys {
                for column in &key.columns {
                    columns.entry(column.clone()).or_insert(None);
                }
            }
            let columns = if values_named.contains(&table) {
                Vec::new()
            } else {
                columns
                    .into_iter()
                    // Counted at the start and at the end: the column must exist at both.
                    .filter(|(c, _)| {
                        before.columns.iter().any(|k| k.name == *c)
                            && after.columns.iter().any(|k| k.name == *c)
                    })
                    .map(|(name, default)| Counted { name, default })
                    .collect()
            };
            Some(Guarded {
                table,
                end: end_name,
                columns,
            })
        })
        .collect();
    Ok(UnitGuard {
        tables,
        unguarded: None,
    })
}
