//! D1-aware lint of migrations.
//!
//! Three kinds of evidence: each statement's words (PRAGMAs, transactions, ATTACH, `_cf_`
//! names, size); what each `DROP` reaches through foreign keys at the point it runs
//! ([`cascade`]); and the effect of the whole migration on an in-memory shadow of the schema
//! before it, diffed with the drift engine, so drizzle's rebuild that keeps every column is not
//! called a drop, and a real column loss is, whatever the SQL looked like.

mod cascade;
mod data;
mod effects;
pub mod report;
mod statements;
pub mod waiver;

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::backend::Statement;
use crate::core::migrations::Migration;
use crate::core::schema::{Change, Schema, Snapshot};
use crate::core::sql;
use crate::d1::authorizer::D1Rules;
use cascade::CascadeWatch;
use effects::effect_findings;
use statements::statement_findings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub migration: String,
    /// 1-based line in the migration file, when one statement is to blame.
    pub line: Option<usize>,
    pub message: String,
    /// How to fix it.
    pub fix: String,
    /// The reason given in a `-- d1ctl:allow CODE reason` comment of the migration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waived: Option<String>,
    /// MF103's `(table, column)`, which the target's row counts settle.
    #[serde(skip)]
    pub column: Option<(String, String)>,
    /// The table a finding is about; a row loss (DS105) is covered only by a waiver naming it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl Finding {
    /// An error that no waiver covers: it blocks.
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Error && self.waived.is_none()
    }
}

/// Every rule: code, severity, what it means.
pub const RULES: &[(&str, Severity, &str)] = &[
    ("DS102", Severity::Error, "table dropped"),
    ("DS103", Severity::Error, "column dropped"),
    ("DS104", Severity::Warning, "index dropped"),
    ("BC101", Severity::Warning, "table renamed"),
    ("BC102", Severity::Warning, "column renamed"),
    (
        "MF103",
        Severity::Error,
        "NOT NULL column without default added to a table that has rows",
    ),
    (
        "MF105",
        Severity::Warning,
        "column type changed through a rebuild",
    ),
    (
        "D1001",
        Severity::Error,
        "a DROP whose ON DELETE CASCADE / SET NULL / SET DEFAULT children lose rows or values",
    ),
    (
        "D1002",
        Severity::Warning,
        "PRAGMA foreign_keys, which D1 ignores",
    ),
    (
        "D1003",
        Severity::Warning,
        "unpaired PRAGMA defer_foreign_keys",
    ),
    (
        "D1004",
        Severity::Error,
        "BEGIN / COMMIT / ROLLBACK / SAVEPOINT / RELEASE",
    ),
    ("D1005", Severity::Error, "ATTACH / DETACH"),
    (
        "D1006",
        Severity::Error,
        "statement over D1's 100,000-byte limit",
    ),
    (
        "D1007",
        Severity::Error,
        "a name starting with _cf_ (reserved by D1)",
    ),
    ("D1008", Severity::Error, "a PRAGMA D1 refuses"),
    (
        "D1011",
        Severity::Error,
        "another statement D1's authorizer refuses",
    ),
    (
        "D1009",
        Severity::Error,
        "a DROP that fails once children without an ON DELETE action hold rows",
    ),
    (
        "D1010",
        Severity::Error,
        "a DROP that fails once ON DELETE RESTRICT children hold rows",
    ),
    (
        "DS105",
        Severity::Error,
        "rows or values lost that the migration does not name (seen on a shadow with rows)",
    ),
    (
        "DS106",
        Severity::Error,
        "rows left pointing at rows that no longer exist",
    ),
    (
        "MF106",
        Severity::Error,
        "the migration fails once its tables hold rows",
    ),
    (
        "LT001",
        Severity::Error,
        "the migration fails on the schema before it",
    ),
    (
        "LT002",
        Severity::Warning,
        "a table lint could not give rows, so it was not checked with data",
    ),
];

fn severity_of(code: &str) -> Severity {
    RULES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(Severity::Error, |(_, severity, _)| *severity)
}

/// Row counts of tables on the target env, when `lint --to ENV` knows them.
pub type RowCounts = BTreeMap<String, i64>;

/// Lints `targets` (a subset of `all`, in folder order); each is applied to a shadow of the
/// migrations of `all` that come before it.
pub fn lint(all: &[Migration], targets: &[&str], ignore: &[&str]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // The copy with rows, made when the first linted migration comes.
    let mut data: Option<data::DataShadow> = None;
    // D1's rules judge every statement before it runs: what D1 refuses never runs here.
    let Ok((mut shadow, rules)) = crate::local::open_in_memory_with_rules() else {
        return findings;
    };
    for migration in all {
        let linted = targets.contains(&migration.name.as_str());
        let before = if linted {
            read_schema(&shadow, ignore)
        } else {
            None
        };
        let mut watch = linted.then(CascadeWatch::default);
        if linted && data.is_none() {
            data = data::DataShadow::copy_of(&shadow);
        }
        let applied = run_watched(&mut shadow, &rules, migration, watch.as_mut(), ignore);
        if !linted {
            if applied.is_err() || data.as_mut().is_some_and(|d| !d.follow(migration, ignore)) {
                data = None;
            }
            continue;
        }
        let mut found = statement_findings(migration);
        if let Ok(refused) = &applied {
            found.extend(refused_findings(migration, refused, &found));
        }
        match (&applied, before) {
            (Err(failure), _) => {
                data = None;
                found.push(finding(
                    "LT001",
                    migration,
                    failure.line,
                    format!(
                        "fails when applied to the schema before it: {}",
                        failure.message
                    ),
                    "fix the SQL; `d1ctl apply` on a local env shows the failing statement"
                        .to_owned(),
                ));
            }
            (Ok(_), Some(before)) => {
                if let Some(after) = read_schema(&shadow, ignore) {
                    if let Some(watch) = watch {
                        found.extend(watch.findings(migration, &after));
                    }
                    found.extend(effect_findings(migration, &before, &after));
                }
                if let Some(copy) = data.as_mut() {
                    let (revealed, in_step) = copy.check(migration, ignore);
                    found.extend(revealed);
                    if !in_step {
                        data = None;
                    }
                }
            }
            (Ok(_), None) => {
                if data.as_mut().is_some_and(|d| !d.follow(migration, ignore)) {
                    data = None;
                }
            }
        }
        apply_waivers(migration, &mut found);
        findings.extend(found);
    }
    findings
}

/// Why a migration failed on a shadow.
#[derive(Debug, Clone)]
pub(crate) struct ShadowFailure {
    pub line: Option<usize>,
    pub message: String,
    /// SQLite's extended result code, when SQLite failed the statement.
    pub extended_code: Option<i32>,
}

/// A statement D1's rules refused on the shadow.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub index: usize,
    /// D1's words for the refusal.
    pub message: String,
}

/// Runs `migration` on `shadow` as one unit, a statement at a time so that `watch` sees the
/// schema as it is before each statement; on failure nothing of it stays. `rules` judge each
/// statement: one they refuse never runs, and is skipped as transaction control is (the
/// statement rules, or [`refused_findings`], report it) so the rest is still checked.
fn run_watched(
    shadow: &mut Connection,
    rules: &D1Rules,
    migration: &Migration,
    mut watch: Option<&mut CascadeWatch>,
    ignore: &[&str],
) -> Result<Vec<Refused>, ShadowFailure> {
    let failure = |index: Option<usize>, error: &rusqlite::Error| ShadowFailure {
        line: index
            .and_then(|i| migration.statements.get(i))
            .map(|s| s.line),
        message: crate::local::sqlite_message(error),
        extended_code: match error {
            rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
            _ => None,
        },
    };
    let transaction = shadow.transaction().map_err(|e| failure(None, &e))?;
    let mut refused = Vec::new();
    for (index, statement) in migration.statements.iter().enumerate() {
        // Transaction control is D1004's to report; the shadow runs the rest in its own unit.
        if sql::is_transaction_control(&statement.sql) {
            continue;
        }
        if let Some(watch) = watch.as_deref_mut() {
            watch.before(&transaction, index, statement, ignore);
        }
        let statement = Statement::new(statement.sql.clone());
        match crate::local::run_judged(&transaction, &statement, Some(rules)) {
            Ok(_) => {}
            Err(error) => match rules.refusal(&error) {
                Some(message) => refused.push(Refused { index, message }),
                None => return Err(failure(Some(index), &error)),
            },
        }
    }
    transaction.commit().map_err(|e| failure(None, &e))?;
    Ok(refused)
}

/// D1011 for each refused statement that no statement rule (D1004, D1005, D1007, D1008) has
/// named already: D1 refuses it all the same (a blocked function, a temporary table, a virtual
/// table of another module than FTS5).
fn refused_findings(migration: &Migration, refused: &[Refused], found: &[Finding]) -> Vec<Finding> {
    refused
        .iter()
        .filter_map(|refusal| {
            let line = migration.statements.get(refusal.index).map(|s| s.line);
            let named = found
                .iter()
                .any(|f| f.line == line && f.code.starts_with("D1"));
            (!named).then(|| {
                finding(
                    "D1011",
                    migration,
                    line,
                    format!("D1 refuses this statement: {}", refusal.message),
                    "remove it; D1 runs only what its authorizer allows (no temporary objects, virtual tables only of FTS5, no blocked functions such as `sqlite_version()`)".to_owned(),
                )
            })
        })
        .collect()
}

pub(crate) fn read_schema(connection: &Connection, ignore: &[&str]) -> Option<Schema> {
    Schema::build(&Snapshot::read(connection).ok()?, ignore).ok()
}

fn finding(
    code: &'static str,
    migration: &Migration,
    line: Option<usize>,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        code,
        severity: severity_of(code),
        migration: migration.name.clone(),
        line,
        message,
        fix,
        waived: None,
        column: None,
        table: None,
    }
}

/// MF103: a NOT NULL column without a default added to a table that already existed. A warning
/// until the target's row count says whether the table has rows ([`with_row_counts`]).
fn not_null_finding(migration: &Migration, change: &Change, before: &Schema) -> Option<Finding> {
    let (table, column) = change.name.split_once('.')?;
    before.tables.get(table)?;
    if !change.summary.contains("NOT NULL") || change.summary.contains("DEFAULT") {
        return None;
    }
    Some(Finding {
        severity: Severity::Warning,
        column: Some((table.to_owned(), column.to_owned())),
        ..finding(
            "MF103",
            migration,
            None,
            format!(
                "`{table}.{column}` is NOT NULL without a default: the migration fails on an env where `{table}` has rows (lint with `--to ENV` to check)"
            ),
            "give the column a DEFAULT, or add it nullable, backfill, then tighten it".to_owned(),
        )
    })
}

/// The tables whose row counts settle the MF103 findings among `findings`.
pub fn tables_needing_row_counts(findings: &[Finding]) -> Vec<String> {
    let mut tables: Vec<String> = findings
        .iter()
        .filter_map(|f| f.column.as_ref().map(|(table, _)| table.clone()))
        .collect();
    tables.dedup();
    tables
}

/// Settles MF103 with the target's row counts: an empty table drops the finding, a table with
/// rows makes it an error.
pub fn with_row_counts(findings: Vec<Finding>, rows: &RowCounts) -> Vec<Finding> {
    findings
        .into_iter()
        .filter_map(|mut finding| {
            let Some((table, column)) = finding.column.clone() else {
                return Some(finding);
            };
            match rows.get(&table) {
                Some(0) => None,
                Some(n) => {
                    finding.severity = Severity::Error;
                    finding.message = format!(
                        "`{table}.{column}` is NOT NULL without a default and `{table}` has {n} rows on the target: the migration fails there"
                    );
                    Some(finding)
                }
                None => Some(finding),
            }
        })
        .collect()
}

/// `-- d1ctl:allow CODE reason` anywhere in the migration waives that code there;
/// `CODE(table)` waives it for that table only, and is the only waiver of a row loss.
fn apply_waivers(migration: &Migration, findings: &mut [Finding]) {
    let waivers = waiver::of(migration);
    for finding in findings {
        // A row loss is waived only by a waiver naming its table.
        let covering = waivers.iter().find(|w| match &finding.table {
            Some(table) if finding.code == "DS105" => {
                waiver::names_table(std::slice::from_ref(w), finding.code, table)
            }
            table => w.covers(finding.code, table.as_deref()),
        });
        if let Some(waiver) = covering {
            finding.waived = Some(if waiver.reason.is_empty() {
                "no reason given".to_owned()
            } else {
                waiver.reason.clone()
            });
        }
    }
}

#[cfg(test)]
mod tests;
