//! Bad `environments.toml`: one clear message naming file, line and key, a hint, exit 2, and
//! nothing written.

use crate::common::Project;

/// Runs `apply local` on a project with `config` and returns stderr, checking exit 2 and that no
/// file appeared.
fn refused(config: &str) -> String {
    let project = Project::new();
    project.migration("0001_a.sql", "CREATE TABLE a (x);\n");
    project.config(config);
    let before = project.files();
    let output = project.run_ok(&["apply", "local"], 2);
    assert_eq!(project.files(), before, "nothing may be written");
    assert!(
        output.stderr.contains("\n\nhint: "),
        "no hint in:\n{}",
        output.stderr
    );
    assert_eq!(output.stdout, "");
    output.stderr
}

#[test]
fn toml_syntax_error() {
    let stderr = refused("[env.local]\nbackend = \"sqlite\npath = \"x.sqlite\"\n");
    insta::assert_snapshot!(stderr, @r#"
    error: environments.toml:2:18: invalid basic string, expected `"`

    hint: fix the TOML syntax at that position
    "#);
}

#[test]
fn unknown_key() {
    let stderr =
        refused("[env.local]\nbackend = \"sqlite\"\npath = \"x.sqlite\"\nprotect = true\n");
    assert!(
        stderr.starts_with("error: environments.toml:4:1: unknown field `protect`"),
        "{stderr}"
    );
}

#[test]
fn unknown_key_in_project() {
    let stderr = refused(
        "[project]\nmigration_dir = \"m\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"x\"\n",
    );
    assert!(
        stderr.starts_with("error: environments.toml:2:1: unknown field `migration_dir`"),
        "{stderr}"
    );
}

#[test]
fn ladder_names_an_unknown_env() {
    let stderr = refused(
        "[project]\nladder = [\"local\", \"staging\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"x\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
    error: environments.toml:2:20: `ladder` names `staging`, which is not an environment

    hint: add an `[env.staging]` table, or use one of: `local`
    ");
}

#[test]
fn duplicate_alias() {
    let stderr = refused(
        "[env.local]\nbackend = \"sqlite\"\npath = \"x\"\naliases = [\"dev\"]\n\n[env.dev]\nbackend = \"sqlite\"\npath = \"y\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
    error: environments.toml:6:6: `dev` names two environments (first used on line 4)

    hint: environment names and aliases must be unique
    ");
}

#[test]
fn duplicate_table_is_a_toml_error() {
    let stderr = refused(
        "[env.local]\nbackend = \"sqlite\"\npath = \"x\"\n\n[env.local]\nbackend = \"sqlite\"\n",
    );
    assert!(
        stderr.starts_with("error: environments.toml:5:"),
        "{stderr}"
    );
}

#[test]
fn missing_backend() {
    let stderr = refused("[env.local]\npath = \"x\"\n");
    assert!(
        stderr.starts_with("error: environments.toml:1:6: env `local`: missing key `backend`"),
        "{stderr}"
    );
}

#[test]
fn missing_d1_field() {
    let stderr = refused(
        "[env.local]\nbackend = \"sqlite\"\npath = \"x\"\n\n[env.prod]\nbackend = \"d1\"\naccount_id = \"a\"\ndatabase_id = \"d\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
    error: environments.toml:5:6: env `prod`: missing key `database_name`

    hint: add `database_name`: d1ctl shows it on every write and checks it against the database id
    ");
}

#[test]
fn sqlite_env_without_a_file() {
    let stderr = refused("[env.local]\nbackend = \"sqlite\"\n");
    assert!(
        stderr.contains("an `sqlite` env needs `path` or `wrangler_database_id`"),
        "{stderr}"
    );
}

#[test]
fn both_path_and_wrangler_database_id() {
    let stderr = refused(
        "[env.local]\nbackend = \"sqlite\"\npath = \"x.sqlite\"\nwrangler_database_id = \"6f1c2a3e-1b2c-4d5e-8f90-0123456789ab\"\n",
    );
    insta::assert_snapshot!(stderr, @r"
    error: environments.toml:3:8: env `local`: both `path` and `wrangler_database_id` are set

    hint: keep `path` for a file of your own, or `wrangler_database_id` for wrangler's local state, not both
    ");
}

#[test]
fn key_of_another_backend() {
    let stderr =
        refused("[env.local]\nbackend = \"sqlite\"\npath = \"x\"\ndatabase_id = \"abc\"\n");
    assert!(stderr.starts_with("error: environments.toml:4:15: env `local`: key `database_id` does not apply to backend `sqlite`"), "{stderr}");
}

#[test]
fn unknown_backend() {
    let stderr = refused("[env.local]\nbackend = \"postgres\"\npath = \"x\"\n");
    assert!(
        stderr
            .starts_with("error: environments.toml:2:11: env `local`: unknown backend `postgres`"),
        "{stderr}"
    );
}

#[test]
fn unset_variable() {
    let stderr = refused(
        "[env.local]\nbackend = \"sqlite\"\npath = \"${D1CTL_TEST_UNSET_VARIABLE}/x.sqlite\"\n",
    );
    assert!(
        stderr.contains("`path` reads `${D1CTL_TEST_UNSET_VARIABLE}`, which is not set"),
        "{stderr}"
    );
}

#[test]
fn reserved_name() {
    let stderr = refused("[env.migrations]\nbackend = \"sqlite\"\npath = \"x\"\n");
    assert!(stderr.contains("`migrations` is reserved"), "{stderr}");
}

#[test]
fn missing_config_file() {
    let project = Project::empty();
    let output = project.run_ok(&["status"], 2);
    insta::assert_snapshot!(output.snapshot(&project), @r"
    exit: 2
    --- stdout
    --- stderr
    error: environments.toml: no such file

    hint: run d1ctl in the folder that holds environments.toml, or pass `--config PATH`
    ");
}

#[test]
fn variables_are_interpolated() {
    let project = Project::new();
    project.migration("0001_a.sql", "CREATE TABLE a (x);\n");
    project.config("[env.local]\nbackend = \"sqlite\"\npath = \"${D1CTL_TEST_DIR}/db.sqlite\"\n");
    let output = project
        .command(&["apply", "local"])
        .env("D1CTL_TEST_DIR", "data")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(project.path("data/db.sqlite").is_file());
}

#[test]
fn config_flag_resolves_paths_from_the_file() {
    let project = Project::new();
    project.migration("0001_a.sql", "CREATE TABLE a (x);\n");
    fs_err::create_dir_all(project.path("elsewhere")).unwrap();
    let output = project
        .command(&["--config", "../environments.toml", "apply", "local"])
        .current_dir(project.path("elsewhere"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(project.path("local.sqlite").is_file());
}
