//! D1's authorizer rules on every connection that runs migration text: a migration that
//! `ATTACH`es a file, runs `PRAGMA journal_mode=WAL` or `VACUUM INTO` reaches no file through
//! any command, local envs refuse what D1 refuses with D1's words, and `d1_rules = false` lets a
//! project that is not on D1 through on its own env, never on lint's shadow.

use std::path::Path;

use d1ctl::sim::{SimConfig, Simulator};

use crate::common::{Project, rows, sim_rows};

const STAGING: &str = "11111111-1111-4111-8111-111111111111";

const CONFIG: &str = "[project]\nladder = [\"local\", \"staging\"]\n\n\
[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
[env.staging]\nbackend = \"d1\"\nsimulator = true\ndatabase_name = \"app-staging\"\ndatabase_id = \"11111111-1111-4111-8111-111111111111\"\n";

/// The bundled simulator's data, opened from the test as the binary opens it.
fn bundled(project: &Project) -> Simulator {
    Simulator::start(SimConfig {
        data_dir: Some(project.path(".d1ctl/sim")),
        tokens: vec!["test".to_owned()],
        databases: vec![("app-staging".to_owned(), STAGING.to_owned())],
    })
    .unwrap()
}

const USERS: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n\
INSERT INTO users (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com');\n";

/// A local env and a simulated staging, both holding `0001_users.sql` and its two rows.
fn project() -> Project {
    let project = Project::new();
    project.config(CONFIG).migration("0001_users.sql", USERS);
    project.run_ok(&["promote", "--to", "staging", "--cascade", "--yes"], 0);
    project
}

fn attach_migration(file: &Path) -> String {
    format!(
        "ATTACH 'file:{}?mode=rwc' AS u;\nCREATE TABLE u.t(x);\nINSERT INTO u.t VALUES (1);\n",
        file.display()
    )
}

fn local_rows(project: &Project) -> (Vec<String>, Vec<String>) {
    let db = project.db("local.sqlite");
    (
        rows(&db, "SELECT id, email FROM users ORDER BY id"),
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
    )
}

fn unchanged() -> (Vec<String>, Vec<String>) {
    (
        vec!["1|a@example.com".to_owned(), "2|b@example.com".to_owned()],
        vec!["0001_users.sql".to_owned()],
    )
}

#[test]
fn a_migration_that_attaches_a_file_reaches_no_file_through_any_command() {
    let project = project();
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("x.db");
    project.migration("0002_attach.sql", &attach_migration(&file));

    let lint = project.run_ok(&["lint"], 1);
    assert!(
        lint.stdout.contains("D1005") || lint.stderr.contains("D1005"),
        "{}\n{}",
        lint.stdout,
        lint.stderr
    );
    assert!(!file.exists(), "lint created the attached file");

    let reads: &[&[&str]] = &[
        &["plan", "--to", "staging"],
        &["checklist", "--to", "staging"],
        &["drift", "migrations", "local"],
        &["drift", "migrations", "staging"],
        &["status"],
        &["promote", "--to", "staging", "--dry-run"],
        &["rehearse", "--to", "staging"],
    ];
    for args in reads {
        project.run(args);
        assert!(
            !file.exists(),
            "`d1ctl {}` created the attached file",
            args.join(" ")
        );
    }

    let apply = project.run_ok(&["apply", "local"], 1);
    assert!(
        apply.stderr.contains("0002_attach.sql")
            && apply.stderr.contains("not authorized: SQLITE_AUTH"),
        "{}",
        apply.stderr
    );
    assert!(!file.exists());
    assert_eq!(local_rows(&project), unchanged());

    let remote = project.run_ok(&["apply", "staging", "--yes"], 1);
    assert!(
        remote.stderr.contains("not authorized: SQLITE_AUTH"),
        "{}",
        remote.stderr
    );
    assert!(!file.exists());
    let simulator = bundled(&project);
    assert_eq!(
        sim_rows(
            &simulator,
            STAGING,
            "SELECT id, email FROM users ORDER BY id"
        ),
        unchanged().0
    );
    assert_eq!(
        sim_rows(
            &simulator,
            STAGING,
            "SELECT name FROM d1_migrations ORDER BY id"
        ),
        unchanged().1
    );
}

#[test]
fn journal_mode_and_vacuum_into_are_refused_locally_as_on_d1() {
    let project = project();
    let outside = tempfile::tempdir().unwrap();
    let copy = outside.path().join("copy.db");
    let cases = [
        (
            "0002_wal.sql",
            "PRAGMA journal_mode=WAL;\n".to_owned(),
            "not authorized: SQLITE_AUTH",
        ),
        (
            "0002_vacuum.sql",
            format!("VACUUM INTO '{}';\n", copy.display()),
            "cannot VACUUM from within a transaction",
        ),
    ];
    for (name, sql, message) in &cases {
        project.migration(name, sql);
        let local = project.run_ok(&["apply", "local"], 1);
        assert!(
            local.stderr.contains(name) && local.stderr.contains(message),
            "{name}: {}",
            local.stderr
        );
        let remote = project.run_ok(&["apply", "staging", "--yes"], 1);
        assert!(remote.stderr.contains(message), "{name}: {}", remote.stderr);
        assert!(!copy.exists(), "{name} wrote a copy");
        assert_eq!(local_rows(&project), unchanged(), "{name}");
        let mode = rows(&project.db("local.sqlite"), "PRAGMA journal_mode");
        assert_eq!(mode, ["delete"], "{name}");
        fs_err::remove_file(project.path(&format!("migrations/{name}"))).unwrap();
    }
}

/// A PRAGMA and a function D1 refuses: lint's statement rules see the first (D1008), only the
/// shadow, judged by D1's rules, sees the second (D1011).
const SETTINGS: &str = "PRAGMA user_version = 7;\n\
INSERT INTO users (id, email) SELECT 3, 'c@example.com' WHERE sqlite_version() IS NOT NULL;\n";

#[test]
fn d1_rules_false_lets_a_project_not_on_d1_through_its_own_env_but_never_the_shadow() {
    let project = Project::new();
    project.config(
        "[project]\nladder = [\"local\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\nd1_rules = false\n",
    );
    project
        .migration("0001_users.sql", USERS)
        .migration("0002_settings.sql", SETTINGS);
    let lint = project.run_ok(&["lint"], 1);
    let said = format!("{}{}", lint.stdout, lint.stderr);
    assert!(
        said.contains("D1008") && said.contains("D1011") && said.contains("sqlite_version"),
        "{said}"
    );
    project.run_ok(&["apply", "local"], 0);
    let db = project.db("local.sqlite");
    assert_eq!(rows(&db, "PRAGMA user_version"), ["7"]);
    assert_eq!(
        rows(&db, "SELECT id, email FROM users ORDER BY id"),
        ["1|a@example.com", "2|b@example.com", "3|c@example.com"]
    );
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_settings.sql"]
    );

    // The same project with D1's rules (the default) is refused as D1 would refuse it.
    let strict = Project::new();
    strict
        .migration("0001_users.sql", USERS)
        .migration("0002_settings.sql", SETTINGS);
    let refused = strict.run_ok(&["apply", "local"], 1);
    assert!(
        refused.stderr.contains("not authorized: SQLITE_AUTH"),
        "{}",
        refused.stderr
    );
    let db = strict.db("local.sqlite");
    assert_eq!(rows(&db, "PRAGMA user_version"), ["0"]);
    assert_eq!(
        rows(&db, "SELECT id, email FROM users ORDER BY id"),
        ["1|a@example.com", "2|b@example.com"]
    );
}

#[test]
fn d1_rules_is_a_key_of_sqlite_envs_only() {
    let project = Project::new();
    project.config(&CONFIG.replace("simulator = true\n", "simulator = true\nd1_rules = false\n"));
    let output = project.run_ok(&["status"], 2);
    assert!(output.stderr.contains("d1_rules"), "{}", output.stderr);
}
