//! `apply`, `status` and `new` on a local SQLite env.

use crate::common::{Project, rows};

fn two_migrations() -> Project {
    let project = Project::new();
    project
        .migration("0001_users.sql", "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n")
        .migration(
            "0002_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\nCREATE INDEX posts_user ON posts(user_id);\n",
        );
    project
}

#[test]
fn applies_then_status_shows_applied_and_a_rerun_changes_nothing() {
    let project = two_migrations();
    let first = project.run_ok(&["apply", "local"], 0);
    insta::assert_snapshot!("apply_two", first.snapshot(&project));

    let status = project.run_ok(&["status", "--format", "json"], 0).json();
    let migration_states: Vec<(&str, &str)> = status["environments"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        migration_states,
        [("0001_users.sql", "applied"), ("0002_posts.sql", "applied")]
    );
    assert_eq!(status["environments"][0]["name"], "local");
    assert_eq!(status["environments"][0]["backend"], "sqlite");

    let db = project.db("local.sqlite");
    let ledger_before = rows(
        &db,
        "SELECT id, name, applied_at FROM d1_migrations ORDER BY id",
    );
    let second = project.run_ok(&["apply", "local"], 0);
    assert!(
        second.stderr.contains("nothing to apply"),
        "{}",
        second.stderr
    );
    assert_eq!(
        rows(
            &db,
            "SELECT id, name, applied_at FROM d1_migrations ORDER BY id"
        ),
        ledger_before
    );
    assert_eq!(rows(&db, "SELECT count(*) FROM _d1ctl_migrations"), ["2"]);
}

#[test]
fn records_checksums_statement_counts_and_a_duration() {
    let project = two_migrations();
    project.run_ok(&["apply", "local"], 0);
    let db = project.db("local.sqlite");
    let recorded = rows(
        &db,
        "SELECT name, sha256, statements, applied_by, duration_ms >= 0, d1ctl_version FROM _d1ctl_migrations ORDER BY name",
    );
    let sha = |name: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            fs_err::read(project.path(&format!("migrations/{name}"))).unwrap(),
        ))
    };
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert_eq!(
        recorded,
        [
            format!(
                "0001_users.sql|{}|1|tester@{host}|1|{}",
                sha("0001_users.sql"),
                env!("CARGO_PKG_VERSION")
            ),
            format!(
                "0002_posts.sql|{}|2|tester@{host}|1|{}",
                sha("0002_posts.sql"),
                env!("CARGO_PKG_VERSION")
            ),
        ]
    );
}

#[test]
fn a_failing_migration_leaves_no_trace_and_a_rerun_continues() {
    let project = Project::new();
    project
        .migration("0001_ok.sql", "CREATE TABLE a (x INTEGER);\n")
        .migration(
            "0002_bad.sql",
            "CREATE TABLE b (y INTEGER);\nINSERT INTO nope VALUES (1);\n",
        )
        .migration("0003_later.sql", "CREATE TABLE c (z INTEGER);\n");
    let failed = project.run_ok(&["apply", "local"], 1);
    insta::assert_snapshot!("apply_failure", failed.snapshot(&project));

    let db = project.db("local.sqlite");
    // 0002's first statement ran inside its transaction and was rolled back with it.
    assert_eq!(
        rows(
            &db,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('a', 'b', 'c') ORDER BY name"
        ),
        ["a"]
    );
    assert_eq!(rows(&db, "SELECT name FROM d1_migrations"), ["0001_ok.sql"]);
    assert_eq!(
        rows(&db, "SELECT name FROM _d1ctl_migrations"),
        ["0001_ok.sql"]
    );

    project.migration(
        "0002_bad.sql",
        "CREATE TABLE b (y INTEGER);\nINSERT INTO b VALUES (1);\n",
    );
    let rerun = project.run_ok(&["apply", "local"], 0);
    assert!(
        !rerun.stderr.contains("0001_ok.sql"),
        "0001 must not run again:\n{}",
        rerun.stderr
    );
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_ok.sql", "0002_bad.sql", "0003_later.sql"]
    );
    assert_eq!(rows(&db, "SELECT y FROM b"), ["1"]);
}

#[test]
fn a_failure_in_the_first_migration_leaves_no_ledger_tables() {
    let project = Project::new();
    project.migration("0001_bad.sql", "CREATE TABLE a (x);\nSELEC 1;\n");
    let failed = project.run_ok(&["apply", "local", "--format", "json"], 1);
    let report = failed.json();
    assert_eq!(report["failure"]["migration"], "0001_bad.sql");
    assert_eq!(report["failure"]["statement"], 2);
    assert_eq!(report["failure"]["line"], 2);
    assert!(
        report["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("syntax error")
    );
    let db = project.db("local.sqlite");
    // Only the session's own bookkeeping is left (its lock, released, and the record that it
    // ran and committed nothing, which `rollback --last` reads): no table, no ledger.
    assert_eq!(
        rows(
            &db,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'sqlite_sequence' ORDER BY name"
        ),
        ["_d1ctl_lease_guard", "_d1ctl_lock", "_d1ctl_sessions"]
    );
    assert_eq!(rows(&db, "SELECT count(*) FROM _d1ctl_lock"), ["0"]);
    assert_eq!(
        rows(&db, "SELECT command, point IS NULL FROM _d1ctl_sessions"),
        ["apply local|1"]
    );
}

#[test]
fn crlf_copy_of_an_applied_file_is_a_line_ending_only_difference() {
    let project = two_migrations();
    project.run_ok(&["apply", "local"], 0);
    let original = fs_err::read_to_string(project.path("migrations/0002_posts.sql")).unwrap();
    project.migration("0002_posts.sql", &original.replace('\n', "\r\n"));

    let status = project
        .run_ok(&["status", "local", "--format", "json"], 0)
        .json();
    let migration = &status["environments"][0]["migrations"][1];
    assert_eq!(migration["state"], "checksum_mismatch");
    assert_eq!(migration["line_endings_only"], true);

    let text = project.run_ok(&["status", "local"], 0);
    assert!(
        text.stdout
            .contains("checksum_mismatch (line endings only) 0002_posts.sql"),
        "{}",
        text.stdout
    );
    // Line endings alone do not block an apply.
    let apply = project.run_ok(&["apply", "local"], 0);
    assert!(
        apply.stderr.contains("only in line endings"),
        "{}",
        apply.stderr
    );
}

#[test]
fn an_edited_applied_file_blocks_apply_and_status_exits_1() {
    let project = two_migrations();
    project.run_ok(&["apply", "local"], 0);
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);\n",
    );
    project.migration("0003_more.sql", "CREATE TABLE more (x);\n");

    let status = project
        .run_ok(&["status", "local", "--format", "json"], 1)
        .json();
    assert_eq!(
        status["environments"][0]["migrations"][0]["state"],
        "checksum_mismatch"
    );
    assert_eq!(
        status["environments"][0]["migrations"][0]["line_endings_only"],
        false
    );

    let apply = project.run_ok(&["apply", "local"], 1);
    assert!(
        apply
            .stderr
            .contains("`0001_users.sql` was edited after it ran"),
        "{}",
        apply.stderr
    );
    assert!(apply.stderr.contains("hint:"), "{}", apply.stderr);
    let db = project.db("local.sqlite");
    assert_eq!(rows(&db, "SELECT count(*) FROM d1_migrations"), ["2"]);
}

#[test]
fn files_missing_from_the_folder_are_reported() {
    let project = two_migrations();
    project.run_ok(&["apply", "local"], 0);
    fs_err::remove_file(project.path("migrations/0002_posts.sql")).unwrap();
    let status = project
        .run_ok(&["status", "local", "--format", "json"], 0)
        .json();
    let migration = &status["environments"][0]["migrations"][1];
    assert_eq!(migration["name"], "0002_posts.sql");
    assert_eq!(migration["state"], "missing_locally");
}

#[test]
fn dry_run_lists_and_writes_nothing() {
    let project = two_migrations();
    let output = project.run_ok(&["apply", "local", "--dry-run"], 0);
    assert_eq!(
        output.stdout,
        "would apply 2 migrations to `local`:\n  0001_users.sql (1 statement)\n  0002_posts.sql (2 statements)\n"
    );
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn status_reads_without_creating_the_database() {
    let project = two_migrations();
    let output = project.run_ok(&["status"], 0);
    insta::assert_snapshot!("status_fresh", output.snapshot(&project));
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn status_of_several_envs_is_a_matrix() {
    let project = two_migrations();
    project.config(
        "[project]\nladder = [\"local\", \"dev\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n[env.dev]\nbackend = \"sqlite\"\npath = \"dev.sqlite\"\naliases = [\"development\"]\n",
    );
    project.run_ok(&["apply", "local"], 0);
    let output = project.run_ok(&["status", "local", "development"], 0);
    insta::assert_snapshot!("status_matrix", output.snapshot(&project));
}

#[test]
fn protected_envs_are_refused() {
    let project = two_migrations();
    project.config("[env.production]\nbackend = \"sqlite\"\npath = \"prod.sqlite\"\nprotected = true\naliases = [\"prod\"]\n");
    let output = project.run_ok(&["apply", "prod"], 2);
    insta::assert_snapshot!("apply_protected", output.snapshot(&project));
    assert!(!project.path("prod.sqlite").exists());
}

#[test]
fn transaction_control_is_refused_before_anything_runs() {
    let project = Project::new();
    project
        .migration("0001_ok.sql", "CREATE TABLE a (x);\n")
        .migration(
            "0002_tx.sql",
            "BEGIN TRANSACTION;\nCREATE TABLE b (y);\nCOMMIT;\n",
        );
    let output = project.run_ok(&["apply", "local"], 2);
    assert!(
        output.stderr.contains(
            "migrations/0002_tx.sql:1: statement 1 `BEGIN TRANSACTION` controls a transaction"
        ),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("nothing was applied"));
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn unknown_env_and_usage_errors_exit_2() {
    let project = two_migrations();
    let output = project.run_ok(&["apply", "staging"], 2);
    assert!(
        output
            .stderr
            .contains("error: environments.toml: no environment `staging`"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("hint: environments are: `local`"),
        "{}",
        output.stderr
    );
    let usage = project.run_ok(&["apply"], 2);
    assert!(usage.stderr.contains("Usage:"), "{}", usage.stderr);
    project.run_ok(&["--version"], 0);
}

#[test]
fn new_creates_the_next_wrangler_file() {
    let project = two_migrations();
    let output = project.run_ok(&["new", "add comments"], 0);
    assert_eq!(output.stdout, "migrations/0003_add_comments.sql\n");
    let text = fs_err::read_to_string(project.path("migrations/0003_add_comments.sql")).unwrap();
    assert!(
        text.starts_with("-- Migration number: 0003 \t 20"),
        "{text:?}"
    );
    assert!(text.ends_with("Z\n"), "{text:?}");
    project.run_ok(&["new", "../escape"], 2);
}

#[test]
fn new_creates_the_folder_when_missing() {
    let project = Project::empty();
    project.config(crate::common::LOCAL_ONLY);
    let output = project.run_ok(&["new", "init"], 0);
    assert_eq!(output.stdout, "migrations/0001_init.sql\n");
}

#[test]
fn colour_follows_the_flag() {
    let project = two_migrations();
    project.run_ok(&["apply", "local"], 0);
    let plain = project.run_ok(&["status", "local"], 0);
    assert!(!plain.stdout.contains('\x1b'));
    let coloured = project.run_ok(&["status", "local", "--color", "always"], 0);
    assert!(
        coloured.stdout.contains("\x1b[32mapplied"),
        "{:?}",
        coloured.stdout
    );
    let quiet = project.run_ok(&["apply", "local", "-q"], 0);
    assert_eq!(quiet.stderr, "");
}
