//! `d1ctl reset ENV`: a local env recreated from the migrations (or copied `--from` another env,
//! as `pull` does), through the write engine, with a backup and the command that restores it.

use std::process::Stdio;

use d1ctl::sim::{SimConfig, Simulator};
use rusqlite::Connection;

use crate::common::{Output, Project, rows, schema_lines, sim_rows};

const DEV_ID: &str = "6f1c2a3e-1b2c-4d5e-8f90-0123456789ab";

const CONFIG: &str = "[project]\nladder = [\"local\", \"dev\"]\n\n\
    [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
    [env.dev]\nbackend = \"d1\"\nsimulator = true\ndatabase_name = \"reset-dev\"\ndatabase_id = \"6f1c2a3e-1b2c-4d5e-8f90-0123456789ab\"\n\n\
    [env.scratch]\nbackend = \"sqlite\"\npath = \"scratch.sqlite\"\n\n\
    [env.golden]\nbackend = \"sqlite\"\npath = \"golden.sqlite\"\nprotected = true\n";

const ROWS: &str = "INSERT INTO users (email) VALUES ('old@example.com'), ('older@example.com');\n\
    INSERT INTO posts (user_id, body) VALUES (1, 'kept in the backup');";

/// A project whose `local` has both migrations applied and rows in both tables.
fn project() -> Project {
    let project = Project::new();
    project.config(CONFIG);
    project
        .migration(
            "0001_users.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE);\n",
        )
        .migration(
            "0002_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT);\n\
             CREATE INDEX posts_user ON posts(user_id);\n",
        );
    project.run_ok(&["apply", "local"], 0);
    project.db("local.sqlite").execute_batch(ROWS).unwrap();
    project
}

fn user_rows(connection: &Connection) -> Vec<String> {
    let mut out = rows(connection, "SELECT id, email FROM users ORDER BY id");
    out.extend(rows(
        connection,
        "SELECT id, user_id, body FROM posts ORDER BY id",
    ));
    out
}

/// The ledger rows that do not depend on when or how fast a migration ran.
fn ledgers(connection: &Connection) -> Vec<String> {
    let mut out = rows(connection, "SELECT id, name FROM d1_migrations ORDER BY id");
    out.extend(rows(
        connection,
        "SELECT name, sha256, sha256_lf, applied_by, statements, d1ctl_version, typeof(applied_at), typeof(duration_ms) FROM _d1ctl_migrations ORDER BY name",
    ));
    out
}

fn backup_count(project: &Project) -> usize {
    fs_err::read_dir(project.path(".d1ctl/backups")).map_or(0, Iterator::count)
}

/// The `d1ctl rollback …` command a run printed last.
fn printed_restore(output: &Output) -> Vec<String> {
    let line = output
        .stderr
        .lines()
        .rev()
        .find_map(|line| line.split_once("restore it with: d1ctl "))
        .unwrap_or_else(|| panic!("no restore command in:\n{}", output.stderr))
        .1;
    line.split_whitespace().map(str::to_owned).collect()
}

/// A simulator on the project's `.d1ctl/sim`, for seeding and reading `dev` directly.
fn simulator(project: &Project) -> Simulator {
    Simulator::start(SimConfig {
        data_dir: Some(project.path(".d1ctl/sim")),
        tokens: vec!["test".to_owned()],
        databases: vec![("reset-dev".to_owned(), DEV_ID.to_owned())],
    })
    .unwrap()
}

#[test]
fn reset_local_recreates_the_file_and_the_printed_command_restores_the_old_one() {
    let project = project();
    let old = user_rows(&project.db("local.sqlite"));
    assert_eq!(old.len(), 3, "{old:?}");
    // What `apply` writes into a fresh file, to compare the reset file with.
    project.run_ok(&["apply", "scratch"], 0);

    let reset = project.run_ok(&["reset", "local", "--yes"], 0);
    insta::assert_snapshot!("reset_local", reset.snapshot(&project));

    let local = project.db("local.sqlite");
    assert_eq!(
        user_rows(&local),
        Vec::<String>::new(),
        "the old rows are gone"
    );
    let scratch = project.db("scratch.sqlite");
    assert_eq!(schema_lines(&local), schema_lines(&scratch));
    assert_eq!(ledgers(&local), ledgers(&scratch));
    assert_eq!(ledgers(&local).len(), 4, "{:?}", ledgers(&local));
    // The reset's session and point are on record in the new file, for `rollback --last`.
    assert_eq!(
        rows(&local, "SELECT command FROM _d1ctl_sessions"),
        ["reset local"]
    );
    // No lock row came along: it stayed in the old file, now the backup.
    assert_eq!(
        rows(
            &local,
            "SELECT count(*) FROM sqlite_master WHERE name = '_d1ctl_lock'"
        ),
        ["0"]
    );
    drop((local, scratch));
    project.run_ok(&["drift", "local"], 0);
    let status = project
        .run_ok(&["status", "local", "--format", "json"], 0)
        .json();
    let recorded: Vec<&str> = status["environments"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ["applied", "applied"], "{status}");
    let stray: Vec<String> = project
        .files()
        .into_iter()
        .filter(|file| file.contains("d1ctl-reset"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // The backup holds the old rows, and the command the reset printed brings them back.
    let restore = printed_restore(&reset);
    assert_eq!(
        restore[..3],
        ["rollback", "local", "--bookmark"],
        "{restore:?}"
    );
    assert_eq!(user_rows(&project.db(&restore[3])), old);
    let args: Vec<&str> = restore.iter().map(String::as_str).collect();
    project.run_ok(&args, 0);
    assert_eq!(user_rows(&project.db("local.sqlite")), old);
}

#[test]
fn reset_over_rows_without_a_terminal_or_yes_is_refused_and_an_empty_schema_is_not_asked() {
    let project = project();
    let before = user_rows(&project.db("local.sqlite"));
    let backups = backup_count(&project);

    let mut command = project.command(&["reset", "local"]);
    let refused = Output::of(command.stdin(Stdio::null()));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("env `local` (`local.sqlite`) holds rows in 2 tables (`users`, `posts`)"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("`d1ctl reset local --yes`"),
        "{}",
        refused.stderr
    );
    assert_eq!(user_rows(&project.db("local.sqlite")), before, "untouched");
    assert_eq!(backup_count(&project), backups, "no backup taken");

    // CI=true confirms nothing by itself.
    let mut command = project.command(&["reset", "local"]);
    let in_ci = Output::of(command.env("CI", "true").stdin(Stdio::null()));
    assert_eq!(in_ci.code, 1, "{}", in_ci.stderr);
    assert_eq!(user_rows(&project.db("local.sqlite")), before, "untouched");

    // Schema and ledgers without rows: nothing to lose, nothing to ask (the backup is kept).
    project
        .db("local.sqlite")
        .execute_batch("DELETE FROM posts; DELETE FROM users;")
        .unwrap();
    let mut command = project.command(&["reset", "local"]);
    let quiet = Output::of(command.stdin(Stdio::null()));
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(backup_count(&project), backups + 1);
}

#[test]
fn reset_refuses_d1_protected_and_unknown_envs_and_writes_nothing() {
    let project = project();
    project.run_ok(&["apply", "dev"], 0);
    project.run_ok(&["apply", "scratch"], 0);
    fs_err::copy(
        project.path("scratch.sqlite"),
        project.path("golden.sqlite"),
    )
    .unwrap();
    project
        .db("golden.sqlite")
        .execute_batch("INSERT INTO users (email) VALUES ('golden@example.com');")
        .unwrap();
    simulator(&project)
        .execute(
            DEV_ID,
            "INSERT INTO users (email) VALUES ('dev@example.com');",
        )
        .unwrap();
    let files = project.files();

    for (env, message) in [
        (
            "dev",
            "error: env `dev` is a d1 env (on d1ctl's simulator); `reset` writes only into local (`backend = \"sqlite\"`) envs",
        ),
        (
            "golden",
            "error: env `golden` is protected; `reset` does not overwrite protected environments",
        ),
        ("nowhere", "no environment `nowhere`"),
    ] {
        for args in [
            vec!["reset", env, "--yes"],
            vec!["reset", env, "--from", "local", "--yes"],
        ] {
            let output = project.run_ok(&args, 2);
            assert!(
                output.stderr.contains(message),
                "{args:?}\n{}",
                output.stderr
            );
            assert!(
                output.stderr.contains("\nhint: "),
                "{args:?}\n{}",
                output.stderr
            );
        }
    }
    assert_eq!(project.files(), files, "nothing written");
    assert_eq!(
        rows(&project.db("golden.sqlite"), "SELECT email FROM users"),
        ["golden@example.com"]
    );
    assert_eq!(
        sim_rows(&simulator(&project), DEV_ID, "SELECT email FROM users"),
        ["dev@example.com"]
    );
}

#[test]
fn reset_from_a_simulator_env_copies_its_rows_as_pull_does() {
    let project = project();
    project.run_ok(&["apply", "dev"], 0);
    simulator(&project)
        .execute(
            DEV_ID,
            "INSERT INTO users (id, email) VALUES (7, 'dev@example.com');\n\
             INSERT INTO posts (id, user_id, body) VALUES (70, 7, 'from dev');",
        )
        .unwrap();
    let old = user_rows(&project.db("local.sqlite"));

    let reset = project.run_ok(
        &[
            "reset", "local", "--from", "dev", "--yes", "--format", "json",
        ],
        0,
    );
    let report = reset.json();
    assert_eq!(report["source"], "dev", "{report}");
    assert_eq!(report["target"], "local");
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["migrations"], 2, "{report}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        user_rows(&project.db("local.sqlite")),
        ["7|dev@example.com", "70|7|from dev"]
    );
    let backup = report["backup"].as_str().unwrap();
    assert_eq!(user_rows(&project.db(backup)), old);
    project.run_ok(&["drift", "dev", "local"], 0);
    let session = rows(
        &project.db("local.sqlite"),
        "SELECT command FROM _d1ctl_sessions",
    );
    assert_eq!(session, ["reset local --from dev"]);
}

#[test]
fn reset_dry_run_writes_nothing_and_json_has_the_report_shape() {
    let project = project();
    // The simulator's own files exist before the dry run reads `dev`.
    project.run_ok(&["apply", "dev"], 0);
    let files = project.files();
    let bytes = fs_err::read(project.path("local.sqlite")).unwrap();
    let before = user_rows(&project.db("local.sqlite"));

    let dry = project.run_ok(&["reset", "local", "--dry-run"], 0);
    insta::assert_snapshot!("reset_dry_run", dry.snapshot(&project));
    let dry_json = project.run_ok(&["reset", "local", "--dry-run", "--format", "json"], 0);
    insta::assert_snapshot!("reset_dry_run_json", dry_json.stdout);
    let dry_from = project.run_ok(&["reset", "local", "--from", "dev", "--dry-run"], 0);
    assert!(
        dry_from.stdout.contains(
            "would replace `local` (`local.sqlite`) with a copy of `dev`'s schema and data"
        ),
        "{}",
        dry_from.stdout
    );
    assert_eq!(project.files(), files, "nothing written");
    assert_eq!(fs_err::read(project.path("local.sqlite")).unwrap(), bytes);
    assert_eq!(user_rows(&project.db("local.sqlite")), before);

    let written = project.run_ok(&["reset", "local", "--yes", "--format", "json"], 0);
    insta::assert_snapshot!("reset_json", written.snapshot(&project));
    let report = written.json();
    assert!(
        project.path(report["backup"].as_str().unwrap()).is_file(),
        "{report}"
    );
}

#[test]
fn reset_of_a_missing_file_says_there_is_nothing_to_back_up() {
    let project = project();
    fs_err::remove_file(project.path("local.sqlite")).unwrap();
    let reset = project.run_ok(&["reset", "local"], 0);
    assert!(
        reset.stderr.contains(
            "`local` has no file yet (`local.sqlite`): there is nothing of it to back up"
        ),
        "{}",
        reset.stderr
    );
    assert!(
        reset
            .stderr
            .contains("there was no file before; `.d1ctl/backups/local-"),
        "{}",
        reset.stderr
    );
    assert_eq!(
        printed_restore(&reset)[..3],
        ["rollback", "local", "--bookmark"]
    );
    assert_eq!(
        rows(
            &project.db("local.sqlite"),
            "SELECT name FROM d1_migrations ORDER BY id"
        ),
        ["0001_users.sql", "0002_posts.sql"]
    );
}

#[test]
fn a_migration_that_fails_on_the_new_file_leaves_the_target_untouched() {
    let project = project();
    project.migration(
        "0003_broken.sql",
        "CREATE TABLE broken (id INTEGER PRIMARY KEY;\n",
    );
    let before = user_rows(&project.db("local.sqlite"));
    let backups = backup_count(&project);

    let failed = project.run_ok(&["reset", "local", "--yes"], 1);
    assert!(
        failed.stderr.contains("migration `0003_broken.sql` failed"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("hint: fix the migration and run `d1ctl reset local` again"),
        "{}",
        failed.stderr
    );
    assert_eq!(user_rows(&project.db("local.sqlite")), before, "untouched");
    assert_eq!(backup_count(&project), backups, "no backup taken");
    let stray: Vec<String> = project
        .files()
        .into_iter()
        .filter(|file| file.contains("d1ctl-reset"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
