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
mod statements;
pub mod waiver;

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::backend::Statement;
use crate::core::migrations::Migration;
use crate::core::schema::{Change, Schema, Snapshot};
use crate::core::sql;
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

/// PRAGMAs D1 allows (workerd's allow-list).
pub(crate) const ALLOWED_PRAGMAS: &[&str] = &[
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
    // The copy with rows, made when the first linted migration comes.
    let mut data: Option<data::DataShadow> = None;
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
        let mut watch = linted.then(CascadeWatch::default);
        if linted && data.is_none() {
            data = data::DataShadow::copy_of(&shadow);
        }
        let applied = run_watched(&mut shadow, migration, watch.as_mut(), ignore);
        if !linted {
            if applied.is_err() || data.as_mut().is_some_and(|d| !d.follow(migration, ignore)) {
                data = None;
            }
            continue;
        }
        let mut found = statement_findings(migration);
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
            (Ok(()), Some(before)) => {
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
            (Ok(()), None) => {
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

/// Runs `migration` on `shadow` as one unit, a statement at a time so that `watch` sees the
/// schema as it is before each statement; on failure nothing of it stays.
fn run_watched(
    shadow: &mut Connection,
    migration: &Migration,
    mut watch: Option<&mut CascadeWatch>,
    ignore: &[&str],
) -> Result<(), ShadowFailure> {
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
    for (index, statement) in migration.statements.iter().enumerate() {
        // Transaction control is D1004's to report; the shadow runs the rest in its own unit.
        if sql::is_transaction_control(&statement.sql) {
            continue;
        }
        if let Some(watch) = watch.as_deref_mut() {
            watch.before(&transaction, index, statement, ignore);
        }
        crate::local::run_statement(&transaction, &Statement::new(statement.sql.clone()))
            .map_err(|e| failure(Some(index), &e))?;
    }
    transaction.commit().map_err(|e| failure(None, &e))
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

    /// Each case's codes: the statement-order judgement (D10xx) and what the shadow seeded
    /// with rows saw (DS105 rows lost, MF106 fails with rows) agree.
    ///
    /// users ← posts (CASCADE) ← comments (CASCADE), likes (SET NULL), follows (NO ACTION),
    /// audits (RESTRICT), as the promotion tests use it too.
    fn family(children: &[&str]) -> String {
        let mut sql =
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n".to_owned();
        for child in children {
            sql.push_str(match *child {
                "posts" => "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT);\nCREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE, body TEXT);\n",
                "likes" => "CREATE TABLE likes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE SET NULL);\n",
                "follows" => "CREATE TABLE follows (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\n",
                "audits" => "CREATE TABLE audits (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE RESTRICT);\n",
                other => panic!("{other}"),
            });
        }
        sql
    }

    const USERS_REBUILD: &str = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);\nINSERT INTO __new_users (id, email) SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n";

    fn deferred(sql: &str) -> String {
        format!("PRAGMA defer_foreign_keys = on;\n{sql}PRAGMA defer_foreign_keys = off;\n")
    }

    #[test]
    fn each_foreign_key_action_is_judged_on_its_own() {
        let only = |found: Vec<(&'static str, bool)>| -> Vec<&'static str> {
            found
                .into_iter()
                .map(|(c, _)| c)
                .filter(|c| *c != "D1002")
                .collect()
        };
        let cases: Vec<(&str, String, String, &[&str])> = vec![
            ("naive rebuild, cascading children", family(&["posts"]), USERS_REBUILD.to_owned(), &["D1001", "DS105", "DS105"]),
            ("deferred rebuild, cascading children", family(&["posts"]), deferred(USERS_REBUILD), &["D1001", "DS105", "DS105"]),
            ("deferred rebuild, SET NULL child", family(&["likes"]), deferred(USERS_REBUILD), &["D1001", "DS105"]),
            ("undeferred rebuild, NO ACTION child", family(&["follows"]), USERS_REBUILD.to_owned(), &["D1009", "MF106"]),
            ("deferred rebuild, NO ACTION child", family(&["follows"]), deferred(USERS_REBUILD), &[]),
            ("deferred rebuild, RESTRICT child", family(&["audits"]), deferred(USERS_REBUILD), &["D1010"]),
            ("undeferred rebuild, RESTRICT child", family(&["audits"]), USERS_REBUILD.to_owned(), &["D1010", "MF106"]),
            ("drizzle rebuild, cascading children", family(&["posts"]), REBUILD_USERS_DRIZZLE.to_owned(), &["D1001", "DS105", "DS105"]),
            ("no children", family(&[]), USERS_REBUILD.to_owned(), &[]),
            ("schema-qualified DROP", family(&["posts"]), USERS_REBUILD.replace("DROP TABLE users", "DROP TABLE main.\"users\""), &["D1001", "DS105", "DS105"]),
            ("a bare PRAGMA read does not close the pair", family(&["follows"]), "PRAGMA defer_foreign_keys = on;\nPRAGMA defer_foreign_keys;\nCREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO __new_users SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n".to_owned(), &["D1003", "D1009", "MF106"]),
            ("a child dropped later but never copied", family(&["posts"]), "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO __new_users SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\nDROP TABLE comments;\nDROP TABLE posts;\n".to_owned(), &["D1001", "DS102", "DS102"]),
            (
                "family rebuild",
                family(&["posts", "likes", "follows", "audits"]),
                "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);\nINSERT INTO __new_users (id, email) SELECT id, email FROM users;\nCREATE TABLE posts_next (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES __new_users(id) ON DELETE CASCADE, title TEXT);\nINSERT INTO posts_next SELECT * FROM posts;\nCREATE TABLE comments_next (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts_next(id) ON DELETE CASCADE, body TEXT);\nINSERT INTO comments_next SELECT * FROM comments;\nCREATE TABLE likes_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id) ON DELETE SET NULL);\nINSERT INTO likes_next SELECT * FROM likes;\nCREATE TABLE follows_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id));\nINSERT INTO follows_next SELECT * FROM follows;\nCREATE TABLE audits_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id) ON DELETE RESTRICT);\nINSERT INTO audits_next SELECT * FROM audits;\nDROP TABLE comments;\nDROP TABLE posts;\nDROP TABLE likes;\nDROP TABLE follows;\nDROP TABLE audits;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\nALTER TABLE posts_next RENAME TO posts;\nALTER TABLE comments_next RENAME TO comments;\nALTER TABLE likes_next RENAME TO likes;\nALTER TABLE follows_next RENAME TO follows;\nALTER TABLE audits_next RENAME TO audits;\n".to_owned(),
                &[],
            ),
            ("a plain drop with a cascading child", family(&["posts"]), "DROP TABLE comments;\nDROP TABLE users;\n".to_owned(), &["D1001", "DS102", "DS102", "DS105"]),
        ];
        for (case, base, migration, expected) in &cases {
            let found = only(codes(
                &[("0001_a.sql", base), ("0002_b.sql", migration)],
                "0002_b.sql",
            ));
            assert_eq!(found, *expected, "{case}");
        }
    }

    #[test]
    fn rows_reveal_what_an_empty_shadow_cannot() {
        let base = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nCREATE TABLE follows (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\nCREATE TABLE never (x INTEGER CHECK (0));\n";
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "a non-constant default added to a table with rows",
                "ALTER TABLE users ADD COLUMN created_at TEXT DEFAULT (strftime('%s', 'now'));\n",
                &["MF106"],
            ),
            (
                "a copy that drops rows of the rebuilt table itself",
                "CREATE TABLE u2 (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO u2 SELECT * FROM users WHERE id > 1;\nPRAGMA defer_foreign_keys = on;\nDROP TABLE users;\nALTER TABLE u2 RENAME TO users;\nPRAGMA defer_foreign_keys = off;\n",
                &["DS105", "DS106"],
            ),
            (
                "the same, with a waiver naming the table",
                "-- d1ctl:allow DS105(users) the first user is a test account\n-- d1ctl:allow DS106 its follows go with it\nCREATE TABLE u2 (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO u2 SELECT * FROM users WHERE id > 1;\nPRAGMA defer_foreign_keys = on;\nDROP TABLE users;\nALTER TABLE u2 RENAME TO users;\nPRAGMA defer_foreign_keys = off;\n",
                &[],
            ),
            (
                "an intended DELETE",
                "DELETE FROM follows WHERE id = 1;\n",
                &[],
            ),
        ];
        for (case, migration, expected) in cases {
            let (_dir, migrations) = folder(&[("0001_a.sql", base), ("0002_b.sql", migration)]);
            let found = lint(&migrations, &["0002_b.sql"], &[]);
            let blocking: Vec<&str> = found
                .iter()
                .filter(|f| f.blocks())
                .map(|f| f.code)
                .collect();
            assert_eq!(blocking, *expected, "{case}: {found:#?}");
            // `never` cannot hold a row: said, never passed silently.
            assert!(
                found
                    .iter()
                    .any(|f| f.code == "LT002" && f.table.as_deref() == Some("never")),
                "{case}: {found:#?}"
            );
        }
    }

    const REBUILD_USERS_DRIZZLE: &str = "PRAGMA foreign_keys=OFF;--> statement-breakpoint\nCREATE TABLE `__new_users` (`id` integer PRIMARY KEY, `email` text NOT NULL);\n--> statement-breakpoint\nINSERT INTO `__new_users`(\"id\", \"email\") SELECT \"id\", \"email\" FROM `users`;--> statement-breakpoint\nDROP TABLE `users`;--> statement-breakpoint\nALTER TABLE `__new_users` RENAME TO `users`;--> statement-breakpoint\nPRAGMA foreign_keys=ON;\n";

    #[test]
    fn a_cascade_finding_names_tables_columns_and_actions() {
        let (_dir, migrations) = folder(&[
            ("0001_a.sql", &family(&["posts", "likes"])),
            ("0002_b.sql", &deferred(USERS_REBUILD)),
        ]);
        let found = lint(&migrations, &["0002_b.sql"], &[]);
        let d1001 = found.iter().find(|f| f.code == "D1001").unwrap();
        assert_eq!(d1001.line, Some(4));
        assert_eq!(
            d1001.message,
            "rebuilding `users` drops it, and the DROP deletes every row of `posts` (`posts.user_id` ON DELETE CASCADE), `comments` (`comments.post_id` ON DELETE CASCADE, through `posts`) and nulls `likes.user_id` (`likes.user_id` ON DELETE SET NULL): on D1 foreign keys are always on and `PRAGMA defer_foreign_keys` / `foreign_keys = off` do not stop ON DELETE actions"
        );
        assert!(d1001.fix.starts_with("rebuild the whole family instead: copy `likes`, `posts`, `comments` into `_next` tables"), "{}", d1001.fix);
        assert!(d1001.fix.contains("d1ctl lint --fix"), "{}", d1001.fix);
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
}
