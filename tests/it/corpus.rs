//! Every folder of the project's own fixture corpus (`tests/fixtures/corpus`, always run) and of
//! the real-world corpus (`../shared/corpus`, where present) applies to a fresh database and
//! yields exactly its `expected_schema.sql`, in the layout its `SOURCE.txt` names, or fails the
//! way its `expected_outcome.txt` says.

use std::path::Path;

use crate::common::{
    Project, copy_dir, corpus_dir, corpus_entries, fixtures_dir, rows, schema_lines,
};

pub(crate) struct Entry {
    pub(crate) dir: String,
    pub(crate) style: String,
    cross_check_wrangler: bool,
    pub(crate) applied_order: Vec<String>,
    /// The migration whose apply must fail, and SQLite's error, when the outcome is `failed`.
    pub(crate) failure: Option<(String, String)>,
    expected_schema: Vec<String>,
}

pub(crate) fn entry(root: &Path, name: &str) -> Entry {
    let root = root.join(name);
    let read = |file: &str| fs_err::read_to_string(root.join(file)).unwrap();
    let source = read("SOURCE.txt");
    let field = |key: &str| {
        source
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}: ")))
            .map(|value| value.trim().to_owned())
    };
    let outcome = read("expected_outcome.txt");
    let outcome_field = |key: &str| {
        outcome
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}: ")))
            .map(|value| value.trim().to_owned())
    };
    let failure = match outcome_field("status").as_deref() {
        Some("ok") => None,
        Some("failed") => Some((
            outcome_field("failed").expect("failed: MIGRATION in a failed outcome"),
            outcome_field("error").expect("error: MESSAGE in a failed outcome"),
        )),
        other => panic!("{name}: status {other:?} in expected_outcome.txt"),
    };
    let applied_order = outcome
        .lines()
        .skip_while(|line| !line.starts_with("applied_order:"))
        .skip(1)
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect();
    Entry {
        dir: field("dir").expect("dir in SOURCE.txt"),
        style: field("style").expect("style in SOURCE.txt"),
        cross_check_wrangler: field("cross_check").as_deref() == Some("wrangler"),
        applied_order,
        failure,
        expected_schema: read("expected_schema.sql")
            .lines()
            .map(str::to_owned)
            .collect(),
    }
}

/// A project holding a copy of the entry's folder, read in `layout`.
fn project_of(root: &Path, name: &str, entry: &Entry, layout: &str) -> Project {
    let project = Project::empty();
    copy_dir(&root.join(name).join(&entry.dir), &project.path(&entry.dir));
    project.config(&format!(
        "[project]\nmigrations_dir = \"{}\"\nlayout = \"{layout}\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n",
        entry.dir
    ));
    project
}

/// Applies the entry to a fresh database: its schema, ledger and second run are what
/// `expected_outcome.txt` and `expected_schema.sql` say. Returns the project, applied.
fn check_entry(root: &Path, name: &str) -> Project {
    let entry = entry(root, name);
    let project = project_of(root, name, &entry, &entry.style);
    let output = project.run(&["apply", "local", "-q"]);
    match &entry.failure {
        None => assert_eq!(output.code, 0, "{name}: {}", output.stderr),
        Some((migration, error)) => {
            assert_eq!(output.code, 1, "{name}: {}", output.stderr);
            assert!(
                output.stderr.contains(migration) && output.stderr.contains(error),
                "{name}: expected {migration} to fail with {error}:\n{}",
                output.stderr
            );
        }
    }
    let check_database = |project: &Project, reading: &str| {
        let db = project.db("local.sqlite");
        assert_eq!(
            schema_lines(&db),
            entry.expected_schema,
            "{name}{reading}: schema differs"
        );
        assert_eq!(
            rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
            entry.applied_order,
            "{name}{reading}: applied order differs"
        );
    };
    check_database(&project, "");
    // A second run has nothing to do, or fails the same way having changed nothing.
    let again = project.run(&["apply", "local"]);
    match &entry.failure {
        None => assert!(
            again.code == 0 && again.stderr.contains("nothing to apply"),
            "{name}: {}",
            again.stderr
        ),
        Some((migration, error)) => assert!(
            again.code == 1 && again.stderr.contains(migration) && again.stderr.contains(error),
            "{name}: {}",
            again.stderr
        ),
    }
    check_database(&project, " (second run)");

    if entry.cross_check_wrangler {
        // The same folder read the way wrangler reads it (breakpoints are comments there).
        let project = project_of(root, name, &entry, "wrangler");
        project.run_ok(&["apply", "local", "-q"], 0);
        check_database(&project, " as wrangler");
    }
    project
}

fn check(name: &str) {
    let Some(root) = corpus_dir() else {
        return;
    };
    check_entry(&root, name);
}

/// The fixture corpus, by name: a fixture added without being listed here fails, so none is
/// forgotten (and none silently vanishes).
const FIXTURES: [&str; 4] = [
    "drizzle_rebuild",
    "wrangler_dqs",
    "wrangler_failure",
    "wrangler_search",
];

#[test]
fn every_fixture_applies_as_its_expected_outcome_says() {
    let root = fixtures_dir();
    assert_eq!(corpus_entries(&root), FIXTURES);
    for name in FIXTURES {
        let project = check_entry(&root, name);
        let db = project.db("local.sqlite");
        match name {
            // The rows 0001 wrote survive 0002's failure.
            "wrangler_failure" => assert_eq!(
                rows(&db, "SELECT id, email FROM members ORDER BY id"),
                [
                    "1|ada@example.com",
                    "2|grace@example.com",
                    "3|ada@example.com"
                ]
            ),
            // DQS at work: "done" and "import" were strings, and so was the "label" the rebuild
            // copied in place of a column.
            "wrangler_dqs" => assert_eq!(
                rows(&db, "SELECT state, kind, label, attempts FROM jobs"),
                ["done|import|label|0"]
            ),
            // The orphan and the duplicate prefix are named, not silently dealt with.
            "drizzle_rebuild" => {
                let output = project.run_ok(&["status"], 0);
                assert!(
                    output
                        .stderr
                        .contains("`0003_tidy_orchard.sql` is not in meta/_journal.json"),
                    "{}",
                    output.stderr
                );
            }
            "wrangler_search" => {
                let output = project.run_ok(&["status"], 0);
                assert!(
                    output.stderr.contains(
                        "`0002_add_tags.sql` and `0002_index-tags.sql` share the number 2"
                    ),
                    "{}",
                    output.stderr
                );
            }
            _ => {}
        }
    }
}

/// The DQS fixture means it: SQLite with double-quoted strings off refuses its first migration,
/// so d1ctl's connections (DQS on, as D1's SQLite) are what make it apply.
#[test]
fn the_dqs_fixture_needs_double_quoted_strings() {
    use rusqlite::config::DbConfig;
    let folder = fixtures_dir().join("wrangler_dqs/migrations");
    let sql = fs_err::read_to_string(folder.join("0001_jobs.sql")).unwrap();
    let strict = rusqlite::Connection::open_in_memory().unwrap();
    strict
        .set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)
        .unwrap();
    strict
        .set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)
        .unwrap();
    let error = strict.execute_batch(&sql).unwrap_err().to_string();
    assert!(error.contains("no such column"), "{error}");
}

#[test]
fn wildebeest() {
    check("cloudflare__wildebeest");
}

#[test]
fn filbeam_worker() {
    check("filbeam__worker");
}

#[test]
fn moemail() {
    check("beilunyang__moemail");
}

#[test]
fn agor() {
    check("preset-io__agor");
}

#[test]
fn every_corpus_entry_has_a_test() {
    let Some(root) = corpus_dir() else {
        return;
    };
    let names = corpus_entries(&root);
    assert_eq!(
        names,
        [
            "beilunyang__moemail",
            "cloudflare__wildebeest",
            "filbeam__worker",
            "preset-io__agor"
        ],
        "a new corpus entry needs its own test above"
    );
}

/// Every corpus folder linted with rows seeded before each migration: the losses and the
/// failures that only rows reveal are findings, each listed here with why it is real.
#[test]
fn lint_with_rows_reports_collateral_losses_in_the_corpus() {
    let Some(root) = corpus_dir() else {
        return;
    };
    let expected: [(&str, &[&str]); 4] = [
        ("beilunyang__moemail", &[]),
        // `DROP table subscriptions;` then `CREATE TABLE subscriptions (…)`: its rows are gone,
        // and no DELETE says so (the table exists afterwards, so DS102 does not fire).
        (
            "cloudflare__wildebeest",
            &["DS105 0007_change_subscriptions_id.sql subscriptions"],
        ),
        // The same drop-and-create, of `retrieval_logs` (0014) and of `pieces` and `data_sets`
        // (0024). 0021's `DELETE FROM …` and 0024's `DELETE FROM service_providers` name their
        // tables, and 0023's `UPDATE … = NULL` names its column: none of those is reported.
        (
            "filbeam__worker",
            &[
                "DS105 0014_m2_5_upgrades.sql retrieval_logs",
                "DS105 0024_events_out_of_order.sql data_sets",
                "DS105 0024_events_out_of_order.sql pieces",
            ],
        ),
        // 0004 rebuilds `worktrees` under `PRAGMA foreign_keys=OFF`, which D1 ignores: the DROP
        // cascades through every table below it. 0009's copy into `sessions_new` adds foreign
        // keys the old columns never had, so it fails once `sessions` holds rows.
        (
            "preset-io__agor",
            &[
                "DS105 0004_add_static_urls.sql board_comments",
                "DS105 0004_add_static_urls.sql board_objects",
                "DS105 0004_add_static_urls.sql mcp_servers",
                "DS105 0004_add_static_urls.sql messages",
                "DS105 0004_add_static_urls.sql session_mcp_servers",
                "DS105 0004_add_static_urls.sql sessions",
                "DS105 0004_add_static_urls.sql tasks",
                "MF106 0009_reconcile-missing-columns.sql -",
            ],
        ),
    ];
    for (name, expected) in expected {
        assert_eq!(lint_with_rows(&root, name), expected, "{name}");
    }
}

/// The findings of `d1ctl lint` over an entry that only a shadow with rows reveals, as
/// `CODE migration table`.
fn lint_with_rows(root: &Path, name: &str) -> Vec<String> {
    lint_findings(root, name, Some(&["DS105", "DS106", "MF106", "LT002"]))
}

/// The findings of `d1ctl lint` over an entry (those with a code in `only`, if given), as
/// `CODE migration table`.
fn lint_findings(root: &Path, name: &str, only: Option<&[&str]>) -> Vec<String> {
    let entry = entry(root, name);
    let project = project_of(root, name, &entry, &entry.style);
    let output = project.run(&["lint", "--format", "json"]);
    let json = output.json();
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| only.is_none_or(|codes| codes.contains(&f["code"].as_str().unwrap())))
        .map(|f| {
            format!(
                "{} {} {}",
                f["code"].as_str().unwrap(),
                f["migration"].as_str().unwrap(),
                f["table"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// Every fixture linted, with rows seeded before each migration: each finding is there on
/// purpose, and every rule that needs rows is among them.
#[test]
fn lint_reports_what_the_fixtures_hide() {
    let root = fixtures_dir();
    let expected: [(&str, &[&str]); 4] = [
        (
            "drizzle_rebuild",
            &[
                // `PRAGMA foreign_keys=OFF` / `=ON` around the rebuild: ignored on D1.
                "D1002 0002_rebuild_accounts.sql -",
                "D1002 0002_rebuild_accounts.sql -",
                // So `DROP TABLE accounts` deletes every session (ON DELETE cascade).
                "D1001 0002_rebuild_accounts.sql -",
                // The rebuild leaves `deleted_at` out.
                "DS103 0002_rebuild_accounts.sql -",
                // The cascade, seen on the shadow with rows.
                "DS105 0002_rebuild_accounts.sql sessions",
                // The backfill of the NOT NULL `secret_hash` with NULL fails once `accounts`
                // has rows.
                "MF106 0004_silent_meadow.sql -",
            ],
        ),
        // The rebuild's new NOT NULL `label` has no default. (It is filled, by the DQS string
        // 'label', so the copy with rows passes: a warning, not MF106.)
        ("wrangler_dqs", &["MF103 0003_rebuild_jobs.sql -"]),
        // The expected failure, found without applying anything.
        ("wrangler_failure", &["LT001 0002_unique_email.sql -"]),
        // `PRAGMA foreign_keys = ON` at the top of 0000, a no-op on D1.
        ("wrangler_search", &["D1002 0000_init.sql -"]),
    ];
    for (name, expected) in expected {
        assert_eq!(lint_findings(&root, name, None), expected, "{name}");
    }
}
