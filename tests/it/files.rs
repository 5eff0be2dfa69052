//! Bad migration files: a clear error naming the file (exit 2, nothing written), or a warning
//! where wrangler or drizzle would carry on.

use crate::common::{Project, rows};

#[test]
fn a_file_that_is_not_utf8_is_refused() {
    let project = Project::new();
    project.migration("0001_a.sql", "CREATE TABLE a (x);\n");
    project.write(
        "migrations/0002_latin1.sql",
        b"INSERT INTO a VALUES ('caf\xe9');\n",
    );
    let output = project.run_ok(&["apply", "local"], 2);
    assert!(
        output.stderr.contains(
            "migrations/0002_latin1.sql` is not valid UTF-8 (first bad byte at offset 26)"
        ),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("hint: save the file as UTF-8"),
        "{}",
        output.stderr
    );
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn an_empty_file_is_refused() {
    let project = Project::new();
    project
        .migration("0001_a.sql", "CREATE TABLE a (x);\n")
        .migration("0002_empty.sql", "");
    let output = project.run_ok(&["status"], 2);
    assert!(
        output
            .stderr
            .contains("migrations/0002_empty.sql` is empty"),
        "{}",
        output.stderr
    );
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn a_file_with_only_comments_cannot_be_applied() {
    let project = Project::new();
    project
        .migration("0001_a.sql", "CREATE TABLE a (x);\n")
        .migration(
            "0002_todo.sql",
            "-- Migration number: 0002 \t 2026-11-21T00:00:00.000Z\n",
        );
    let output = project.run_ok(&["apply", "local"], 2);
    assert!(
        output
            .stderr
            .contains("migrations/0002_todo.sql: has no SQL statements"),
        "{}",
        output.stderr
    );
    assert!(
        !project.path("local.sqlite").exists(),
        "0001 must not be applied either"
    );
}

#[test]
fn two_files_with_one_number_warn_and_apply_in_wrangler_order() {
    let project = Project::new();
    project
        .migration("0002_b_second.sql", "CREATE TABLE b2 (x);\n")
        .migration("0002_a_first.sql", "CREATE TABLE b1 (x);\n")
        .migration("10_c.sql", "CREATE TABLE c (x);\n")
        .migration("9_b.sql", "CREATE TABLE b (x);\n")
        .migration("init.sql", "CREATE TABLE i (x);\n")
        .write("migrations/notes.sql.bak", "garbage")
        .write("migrations/.hidden.sql", "garbage");
    let output = project.run_ok(&["apply", "local"], 0);
    assert!(
        output
            .stderr
            .contains("warning: `0002_a_first.sql` and `0002_b_second.sql` share the number 2"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("warning: `init.sql` has no leading number"),
        "{}",
        output.stderr
    );
    let db = project.db("local.sqlite");
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        [
            "0002_a_first.sql",
            "0002_b_second.sql",
            "9_b.sql",
            "10_c.sql",
            "init.sql"
        ]
    );
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let project = Project::empty();
    project.config(crate::common::LOCAL_ONLY);
    let output = project.run_ok(&["status"], 2);
    assert!(
        output.stderr.contains("error: migrations folder `"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("hint: create the folder, or set `migrations_dir`"),
        "{}",
        output.stderr
    );
}

fn drizzle_project(journal: &str) -> Project {
    let project = Project::new();
    project.config("[project]\nmigrations_dir = \"drizzle\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n");
    project.write("drizzle/meta/_journal.json", journal).write(
        "drizzle/0000_first.sql",
        "CREATE TABLE `a` (`x` integer);\n",
    );
    project
}

#[test]
fn a_journal_entry_without_its_file_is_refused() {
    let project = drizzle_project(
        r#"{"version":"7","dialect":"sqlite","entries":[{"idx":0,"version":"6","when":1700000000000,"tag":"0000_first","breakpoints":true},{"idx":1,"version":"6","when":1700000001000,"tag":"0001_gone","breakpoints":true}]}"#,
    );
    let output = project.run_ok(&["apply", "local"], 2);
    assert!(
        output.stderr.contains("lists `0001_gone` (idx 1) but `")
            && output
                .stderr
                .contains("drizzle/0001_gone.sql` does not exist"),
        "{}",
        output.stderr
    );
    assert!(!project.path("local.sqlite").exists());
}

#[test]
fn a_file_missing_from_the_journal_is_a_warning() {
    let project = drizzle_project(
        r#"{"version":"7","dialect":"sqlite","entries":[{"idx":0,"version":"6","when":1700000000000,"tag":"0000_first","breakpoints":true}]}"#,
    );
    project.write("drizzle/0001_stray.sql", "CREATE TABLE stray (x);\n");
    let output = project.run_ok(&["apply", "local"], 0);
    assert!(
        output.stderr.contains("warning: `0001_stray.sql` is not in meta/_journal.json; drizzle ignores it and so does d1ctl"),
        "{}",
        output.stderr
    );
    let db = project.db("local.sqlite");
    assert!(rows(&db, "SELECT name FROM sqlite_master WHERE name = 'stray'").is_empty());
}

#[test]
fn a_broken_journal_is_refused() {
    let project = drizzle_project("{\"entries\": [");
    let output = project.run_ok(&["status"], 2);
    assert!(
        output.stderr.contains("drizzle journal `")
            && output.stderr.contains("is not valid: EOF while parsing"),
        "{}",
        output.stderr
    );
}
