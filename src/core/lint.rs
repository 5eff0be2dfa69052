//! D1-aware lint of migrations.
//!
//! Two kinds of evidence: each statement's words (PRAGMAs, transactions, ATTACH, `_cf_` names,
//! size), and the effect of the whole migration on an in-memory shadow of the schema before it,
//! diffed with the drift engine, so drizzle's rebuild that keeps every column is not called a
//! drop, and a real column loss is, whatever the SQL looked like.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::backend::Statement;
use crate::core::migrations::Migration;
use crate::core::schema::{self, Change, Schema, Snapshot};
use crate::core::sql::{self, D1_MAX_STATEMENT_BYTES};

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
        "rebuild of a table referenced with ON DELETE CASCADE / SET NULL",
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
        "LT001",
        Severity::Error,
        "the migration fails on the schema before it",
    ),
];

fn severity_of(code: &str) -> Severity {
    RULES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(Severity::Error, |(_, severity, _)| *severity)
}

/// PRAGMAs D1 allows (workerd's allow-list).
const ALLOWED_PRAGMAS: &[&str] = &[
    "data_version",
    "page_size",
    "case_sensitive_like",
    "foreign_keys",
    "defer_foreign_keys",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "foreign_key_check",
    "quick_check",
    "optimize",
    "table_list",
    "table_info",
    "table_xinfo",
];

/// Row counts of tables on the target env, when `lint --to ENV` knows them.
pub type RowCounts = BTreeMap<String, i64>;

/// Lints `targets` (a subset of `all`, in folder order); each is applied to a shadow of the
/// migrations of `all` that come before it.
pub fn lint(all: &[Migration], targets: &[&str], ignore: &[&str]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Ok(mut shadow) = Connection::open_in_memory() else {
        return findings;
    };
    if crate::local::configure(&shadow).is_err() {
        return findings;
    }
    for migration in all {
        let linted = targets.contains(&migration.name.as_str());
        let before = if linted {
            read_schema(&shadow, ignore)
        } else {
            None
        };
        // Transaction control is D1004's to report; the shadow runs the rest in its own unit.
        let statements: Vec<Statement> = migration
            .statements
            .iter()
            .filter(|s| !sql::is_transaction_control(&s.sql))
            .map(|s| Statement::new(s.sql.clone()))
            .collect();
        let applied = crate::local::run_batch(&mut shadow, &statements);
        if !linted {
            continue;
        }
        let mut found = statement_findings(migration);
        match (&applied, before) {
            (Err(error), _) => found.push(finding(
                "LT001",
                migration,
                None,
                format!("fails when applied to the schema before it: {error}"),
                "fix the SQL; `d1ctl apply` on a local env shows the failing statement".to_owned(),
            )),
            (Ok(_), Some(before)) => {
                if let Some(after) = read_schema(&shadow, ignore) {
                    found.extend(effect_findings(migration, &before, &after));
                }
            }
            (Ok(_), None) => {}
        }
        apply_waivers(migration, &mut found);
        findings.extend(found);
    }
    findings
}

fn read_schema(connection: &Connection, ignore: &[&str]) -> Option<Schema> {
    let mut statement = connection
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")
        .ok()?;
    let objects = statement
        .query_map([], |row| {
            Ok(schema::RawObject {
                kind: row.get(0)?,
                name: row.get(1)?,
                table: row.get(2)?,
                sql: row.get(3)?,
            })
        })
        .ok()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ok()?;
    Schema::build(&Snapshot { objects }, ignore).ok()
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
    }
}

/// What each statement's words say.
fn statement_findings(migration: &Migration) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut defer_open: Option<usize> = None;
    for statement in &migration.statements {
        let words = schema::words(&statement.sql);
        let line = Some(statement.line);
        let first = words.first().map_or("", String::as_str);
        if sql::is_transaction_control(&statement.sql) {
            found.push(finding(
                "D1004",
                migration,
                line,
                format!("`{}` controls a transaction: D1 refuses it remotely, wrangler strips it locally", first.to_uppercase()),
                "remove it: every migration already runs as one atomic unit".to_owned(),
            ));
        }
        if matches!(first, "attach" | "detach") {
            found.push(finding(
                "D1005",
                migration,
                line,
                format!("`{}` is not available on D1", first.to_uppercase()),
                "keep each migration within its own database".to_owned(),
            ));
        }
        if statement.sql.len() > D1_MAX_STATEMENT_BYTES {
            found.push(finding(
                "D1006",
                migration,
                line,
                format!("the statement is {} bytes; D1 refuses statements over {D1_MAX_STATEMENT_BYTES} bytes (SQLITE_TOOBIG)", statement.sql.len()),
                "split it, e.g. one INSERT per few hundred rows".to_owned(),
            ));
        }
        if let Some(name) = words
            .iter()
            .find(|w| w.trim_matches('"').starts_with("_cf_"))
        {
            found.push(finding(
                "D1007",
                migration,
                line,
                format!("`{name}` starts with `_cf_`, which D1 reserves (SQLITE_AUTH)"),
                "rename the object".to_owned(),
            ));
        }
        if first == "pragma" {
            let name = words.get(1).map_or("", String::as_str);
            let value = words
                .iter()
                .skip(2)
                .find(|w| !matches!(w.as_str(), "=" | "(" | ")"))
                .map(String::as_str);
            match name {
                "foreign_keys" => found.push(finding(
                    "D1002",
                    migration,
                    line,
                    "`PRAGMA foreign_keys` has no effect on D1: foreign keys are always enforced inside a migration".to_owned(),
                    "remove it; if it guards a table rebuild, see D1001 (use `PRAGMA defer_foreign_keys = on` … `off`)".to_owned(),
                )),
                "defer_foreign_keys" => {
                    let on = value.is_some_and(|v| matches!(v.trim_matches('\''), "on" | "true" | "yes" | "1"));
                    if on {
                        defer_open = Some(statement.line);
                    } else if defer_open.take().is_none() {
                        found.push(finding(
                            "D1003",
                            migration,
                            line,
                            "`PRAGMA defer_foreign_keys = off` without an earlier `= on`".to_owned(),
                            "pair it: `on` as the first statement, `off` as the last".to_owned(),
                        ));
                    }
                }
                other if !ALLOWED_PRAGMAS.contains(&other) => found.push(finding(
                    "D1008",
                    migration,
                    line,
                    format!("`PRAGMA {other}` is refused by D1 (not authorized: SQLITE_AUTH)"),
                    "remove it; D1 allows only the PRAGMAs of its allow-list".to_owned(),
                )),
                _ => {}
            }
        }
    }
    if let Some(line) = defer_open {
        found.push(finding(
            "D1003",
            migration,
            Some(line),
            "`PRAGMA defer_foreign_keys = on` is never switched `off` in this migration".to_owned(),
            "end the migration with `PRAGMA defer_foreign_keys = off;`".to_owned(),
        ));
    }
    found
}

/// What applying the migration to the shadow changed.
fn effect_findings(migration: &Migration, before: &Schema, after: &Schema) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut table_renames: Vec<(String, String)> = Vec::new();
    let mut column_renames: Vec<(String, String, String)> = Vec::new();
    let mut dropped_tables: Vec<(String, usize)> = Vec::new();
    let mut deferred = false;
    for statement in &migration.statements {
        let words = schema::words(&statement.sql);
        let w = |i: usize| words.get(i).map_or("", String::as_str);
        if w(0) == "pragma" && w(1) == "defer_foreign_keys" {
            deferred = true;
        }
        if w(0) == "drop" && w(1) == "table" {
            let name = if w(2) == "if" { w(4) } else { w(2) };
            dropped_tables.push((name.to_owned(), statement.line));
        }
        if w(0) == "alter" && w(1) == "table" {
            let table = w(2).to_owned();
            if w(3) == "rename" && w(4) == "to" {
                table_renames.push((table, w(5).to_owned()));
            } else if w(3) == "rename" {
                let (from, to) = if w(4) == "column" {
                    (w(5), w(7))
                } else {
                    (w(4), w(6))
                };
                column_renames.push((table, from.to_owned(), to.to_owned()));
            }
        }
    }
    let renamed_away = |table: &str| {
        table_renames.iter().any(|(from, to)| {
            from == table && !after.tables.contains_key(from) && after.tables.contains_key(to)
        })
    };

    // D1001: a table dropped and present again afterwards was rebuilt; its referencing
    // children lose rows on D1, where foreign keys stay on.
    for (table, line) in &dropped_tables {
        if !after.tables.contains_key(table) {
            continue;
        }
        let children: Vec<String> = before
            .tables
            .values()
            // The table's own rows are copied before the drop: only other tables lose rows.
            .filter(|child| child.name != *table)
            .flat_map(|child| {
                child
                    .foreign_keys
                    .iter()
                    .filter(|key| {
                        key.references == *table
                            && matches!(key.on_delete.as_str(), "CASCADE" | "SET NULL")
                    })
                    .map(|key| format!("`{}` (ON DELETE {})", child.name, key.on_delete))
            })
            .collect();
        if !children.is_empty() && !deferred {
            found.push(finding(
                "D1001",
                migration,
                Some(*line),
                format!(
                    "rebuilding `{table}` drops it while {} {} it: on D1 foreign keys stay on (`PRAGMA foreign_keys=OFF` is ignored), so the DROP deletes or nulls their rows",
                    children.join(", "),
                    if children.len() == 1 { "references" } else { "reference" }
                ),
                format!(
                    "start the migration with `PRAGMA defer_foreign_keys = on;` and end it with `PRAGMA defer_foreign_keys = off;`, or rebuild the child tables first so nothing references `{table}` while it is dropped"
                ),
            ));
        }
    }

    for change in schema::diff(before, after) {
        match (change.object, change.change) {
            ("table", "removed") => {
                if renamed_away(&change.name) {
                    let to = table_renames.iter().find(|(from, _)| *from == change.name).map_or("", |(_, to)| to.as_str());
                    found.push(finding(
                        "BC101",
                        migration,
                        None,
                        format!("table `{}` renamed to `{to}`: code that still uses the old name breaks", change.name),
                        "deploy code that reads both names first, or keep a view with the old name".to_owned(),
                    ));
                } else {
                    found.push(finding(
                        "DS102",
                        migration,
                        dropped_tables.iter().find(|(t, _)| *t == change.name).map(|(_, l)| *l),
                        format!("table `{}` is dropped with all its rows", change.name),
                        "make sure nothing reads it and its data is not needed (export it first), then waive: `-- d1ctl:allow DS102 <why>`".to_owned(),
                    ));
                }
            }
            ("column", "removed") => {
                let (table, column) = change.name.split_once('.').unwrap_or((&change.name, ""));
                if let Some((_, _, to)) = column_renames.iter().find(|(t, from, _)| t == table && from == column) {
                    found.push(finding(
                        "BC102",
                        migration,
                        None,
                        format!("column `{table}.{column}` renamed to `{to}`: code that still uses the old name breaks"),
                        "deploy code that reads both names first (2-phase rename)".to_owned(),
                    ));
                } else if !renamed_away(table) {
                    found.push(finding(
                        "DS103",
                        migration,
                        None,
                        format!("column `{table}.{column}` is dropped with its data"),
                        "stop reading and writing it first, then drop it in a later release; waive with `-- d1ctl:allow DS103 <why>`".to_owned(),
                    ));
                }
            }
            ("index", "removed") => found.push(finding(
                "DS104",
                migration,
                None,
                format!("index `{}` is dropped: queries that used it may slow down", change.name),
                "check the queries on that table, or create the replacement index in the same migration".to_owned(),
            )),
            ("column", "changed") if change.summary.contains(" type ") => found.push(finding(
                "MF105",
                migration,
                None,
                format!("{}: values are copied through a rebuild and may be converted", change.summary),
                "check the existing values convert as intended".to_owned(),
            )),
            ("column", "added") => found.extend(not_null_finding(migration, &change, before)),
            _ => {}
        }
    }
    found
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

/// `-- d1ctl:allow CODE reason` anywhere in the migration waives that code there.
fn apply_waivers(migration: &Migration, findings: &mut [Finding]) {
    let Ok(text) = fs_err::read_to_string(&migration.path) else {
        return;
    };
    let waivers: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let rest = line
                .trim()
                .strip_prefix("--")?
                .trim()
                .strip_prefix("d1ctl:allow")?
                .trim();
            let (code, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Some((code.to_uppercase(), reason.trim().to_owned()))
        })
        .collect();
    for finding in findings {
        if let Some((_, reason)) = waivers.iter().find(|(code, _)| code == finding.code) {
            finding.waived = Some(if reason.is_empty() {
                "no reason given".to_owned()
            } else {
                reason.clone()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::migrations::load;

    fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<Migration>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in files {
            fs_err::write(dir.path().join(name), sql).unwrap();
        }
        let set = load(dir.path(), None).unwrap();
        (dir, set.migrations)
    }

    fn codes(files: &[(&str, &str)], target: &str) -> Vec<(&'static str, bool)> {
        let (_dir, migrations) = folder(files);
        lint(&migrations, &[target], &[])
            .into_iter()
            .map(|f| (f.code, f.waived.is_some()))
            .collect()
    }

    const PARENT_CHILD: &str = "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);\n";
    const REBUILD: &str = "PRAGMA foreign_keys=OFF;\nCREATE TABLE `__new_parent` (id INTEGER PRIMARY KEY, name TEXT);\nINSERT INTO `__new_parent` SELECT id, name FROM parent;\nDROP TABLE `parent`;\nALTER TABLE `__new_parent` RENAME TO `parent`;\nPRAGMA foreign_keys=ON;\n";

    #[test]
    fn a_rebuild_of_a_parent_without_referencing_children_is_fine() {
        let alone = "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));\n";
        assert_eq!(
            codes(
                &[("0001_a.sql", alone), ("0002_b.sql", REBUILD)],
                "0002_b.sql"
            ),
            [("D1002", false), ("D1002", false)]
        );
    }

    #[test]
    fn the_deferred_rewrite_of_a_rebuild_passes() {
        let deferred = REBUILD
            .replace(
                "PRAGMA foreign_keys=OFF;",
                "PRAGMA defer_foreign_keys = on;",
            )
            .replace(
                "PRAGMA foreign_keys=ON;",
                "PRAGMA defer_foreign_keys = off;",
            );
        assert!(
            codes(
                &[("0001_a.sql", PARENT_CHILD), ("0002_b.sql", &deferred)],
                "0002_b.sql"
            )
            .is_empty()
        );
    }

    #[test]
    fn drops_and_renames_are_told_apart() {
        let base =
            "CREATE TABLE t (a TEXT, b TEXT);\nCREATE INDEX t_a ON t(a);\nCREATE TABLE u (x);\n";
        assert_eq!(
            codes(
                &[("0001_a.sql", base), ("0002_b.sql", "DROP TABLE u;\n")],
                "0002_b.sql"
            ),
            [("DS102", false)]
        );
        assert_eq!(
            codes(
                &[
                    ("0001_a.sql", base),
                    ("0002_b.sql", "ALTER TABLE t DROP COLUMN b;\n")
                ],
                "0002_b.sql"
            ),
            [("DS103", false)]
        );
        assert_eq!(
            codes(
                &[("0001_a.sql", base), ("0002_b.sql", "DROP INDEX t_a;\n")],
                "0002_b.sql"
            ),
            [("DS104", false)]
        );
        assert_eq!(
            codes(
                &[
                    ("0001_a.sql", base),
                    ("0002_b.sql", "ALTER TABLE u RENAME TO v;\n")
                ],
                "0002_b.sql"
            ),
            [("BC101", false)]
        );
        assert_eq!(
            codes(
                &[
                    ("0001_a.sql", base),
                    ("0002_b.sql", "ALTER TABLE t RENAME COLUMN b TO c;\n")
                ],
                "0002_b.sql"
            ),
            [("BC102", false)]
        );
        // A rebuild that keeps every column is not a drop.
        let rebuild = "CREATE TABLE t_new (a TEXT, b TEXT NOT NULL DEFAULT '');\nINSERT INTO t_new SELECT a, coalesce(b, '') FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nCREATE INDEX t_a ON t(a);\n";
        assert!(
            codes(
                &[("0001_a.sql", base), ("0002_b.sql", rebuild)],
                "0002_b.sql"
            )
            .is_empty()
        );
        // A rebuild that loses a column is.
        let lossy = "CREATE TABLE t_new (a TEXT);\nINSERT INTO t_new SELECT a FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nCREATE INDEX t_a ON t(a);\n";
        assert_eq!(
            codes(&[("0001_a.sql", base), ("0002_b.sql", lossy)], "0002_b.sql"),
            [("DS103", false)]
        );
        let retyped = "CREATE TABLE t_new (a INTEGER, b TEXT);\nINSERT INTO t_new SELECT a, b FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nCREATE INDEX t_a ON t(a);\n";
        assert_eq!(
            codes(
                &[("0001_a.sql", base), ("0002_b.sql", retyped)],
                "0002_b.sql"
            ),
            [("MF105", false)]
        );
    }

    #[test]
    fn statement_rules_fire_and_stay_quiet() {
        let base = "CREATE TABLE t (a TEXT);\n";
        let cases: &[(&str, &[&str])] = &[
            (
                "BEGIN;\nINSERT INTO t VALUES ('x');\nCOMMIT;\n",
                &["D1004", "D1004"],
            ),
            ("ATTACH DATABASE 'x.db' AS x;\n", &["D1005"]),
            (
                "PRAGMA defer_foreign_keys = on;\nINSERT INTO t VALUES ('x');\n",
                &["D1003"],
            ),
            (
                "PRAGMA defer_foreign_keys = on;\nINSERT INTO t VALUES ('x');\nPRAGMA defer_foreign_keys = off;\n",
                &[],
            ),
            ("PRAGMA writable_schema = on;\n", &["D1008"]),
            ("PRAGMA table_info(t);\n", &[]),
            ("CREATE TABLE _cf_mine (x);\n", &["D1007"]),
            ("INSERT INTO t VALUES ('_cf_ is fine in a string');\n", &[]),
        ];
        for (sql, expected) in cases {
            let found: Vec<&str> =
                codes(&[("0001_a.sql", base), ("0002_b.sql", sql)], "0002_b.sql")
                    .into_iter()
                    .map(|(c, _)| c)
                    .collect();
            assert_eq!(found, *expected, "{sql}");
        }
        let big = format!("INSERT INTO t VALUES ('{}');\n", "x".repeat(100_001));
        let found: Vec<&str> = codes(&[("0001_a.sql", base), ("0002_b.sql", &big)], "0002_b.sql")
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(found, ["D1006"]);
    }

    #[test]
    fn not_null_columns_need_row_counts_to_be_errors() {
        let base = "CREATE TABLE t (a TEXT);\n";
        let add = "CREATE TABLE t_new (a TEXT, b TEXT NOT NULL);\nINSERT INTO t_new SELECT a, '' FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\n";
        let (_dir, migrations) = folder(&[("0001_a.sql", base), ("0002_b.sql", add)]);
        let without = lint(&migrations, &["0002_b.sql"], &[]);
        assert_eq!(
            without
                .iter()
                .map(|f| (f.code, f.severity))
                .collect::<Vec<_>>(),
            [("MF103", Severity::Warning)]
        );
        let empty: RowCounts = [("t".to_owned(), 0)].into();
        assert!(with_row_counts(without.clone(), &empty).is_empty());
        let full: RowCounts = [("t".to_owned(), 12)].into();
        let found = with_row_counts(without, &full);
        assert!(
            found[0].blocks() && found[0].message.contains("has 12 rows"),
            "{found:?}"
        );
    }

    #[test]
    fn a_migration_that_fails_on_the_schema_before_it_is_lt001() {
        let base = "CREATE TABLE t (a TEXT);\n";
        assert_eq!(
            codes(
                &[
                    ("0001_a.sql", base),
                    ("0002_b.sql", "ALTER TABLE nope ADD COLUMN x TEXT;\n")
                ],
                "0002_b.sql"
            ),
            [("LT001", false)]
        );
        assert!(
            codes(
                &[
                    ("0001_a.sql", base),
                    ("0002_b.sql", "ALTER TABLE t ADD COLUMN x TEXT;\n")
                ],
                "0002_b.sql"
            )
            .is_empty()
        );
    }

    #[test]
    fn a_waiver_in_the_migration_is_shown_with_its_reason() {
        let base = "CREATE TABLE t (a TEXT);\nCREATE TABLE legacy (x);\n";
        let drop =
            "-- d1ctl:allow DS102 the legacy table was emptied in release 41\nDROP TABLE legacy;\n";
        let (_dir, migrations) = folder(&[("0001_a.sql", base), ("0002_b.sql", drop)]);
        let found = lint(&migrations, &["0002_b.sql"], &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].waived.as_deref(),
            Some("the legacy table was emptied in release 41")
        );
        assert!(!found[0].blocks());
    }

    #[test]
    fn a_rebuild_of_a_parent_with_cascading_children_is_an_error() {
        assert_eq!(
            codes(
                &[("0001_a.sql", PARENT_CHILD), ("0002_b.sql", REBUILD)],
                "0002_b.sql"
            ),
            [("D1002", false), ("D1002", false), ("D1001", false)]
        );
    }
}
