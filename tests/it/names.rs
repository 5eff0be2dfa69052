//! Identity and names: env names that would share credential variables, migration names outside
//! `new`'s alphabet, files skipped beside the migrations, a local `path` into a missing folder,
//! an empty ladder or registry. Each refusal exits 2 with a hint and writes nothing.

use crate::common::{Output, Project};

/// Runs `args` on `project`, checking exit 2, a hint, empty stdout and that no file appeared.
fn refused(project: &Project, args: &[&str]) -> Output {
    let before = project.files();
    let output = project.run_ok(args, 2);
    assert_eq!(
        project.files(),
        before,
        "nothing may be written by {args:?}"
    );
    assert!(
        output.stderr.contains("\nhint: "),
        "no hint in:\n{}",
        output.stderr
    );
    assert_eq!(output.stdout, "");
    output
}

fn with_config(config: &str) -> Project {
    let project = Project::new();
    project.migration("0001_a.sql", "CREATE TABLE a (x);\n");
    project.config(config);
    project
}

#[test]
fn env_names_differing_only_by_case_are_refused() {
    let project = with_config(
        "[env.prod]\nbackend = \"sqlite\"\npath = \"a.sqlite\"\n\n[env.Prod]\nbackend = \"sqlite\"\npath = \"b.sqlite\"\n",
    );
    let output = refused(&project, &["status"]);
    insta::assert_snapshot!(output.stderr, @"
    error: environments.toml:5:6: envs `prod` (line 1) and `Prod` (line 5) differ only by case or `-`/`_`; both would use the variable `CLOUDFLARE_D1_TOKEN_PROD`

    hint: rename one of them: env names must stay distinct when upper-cased with `-` read as `_`, so each env has its own credentials (`CLOUDFLARE_D1_TOKEN_PROD`)
    ");
}

#[test]
fn env_names_differing_only_by_dash_and_underscore_are_refused() {
    let project = with_config(
        "[project]\nladder = [\"stg-eu\"]\n\n[env.stg-eu]\nbackend = \"sqlite\"\npath = \"a.sqlite\"\n\n[env.stg_eu]\nbackend = \"sqlite\"\npath = \"b.sqlite\"\n",
    );
    let output = refused(&project, &["apply", "stg-eu"]);
    assert!(
        output.stderr.starts_with(
            "error: environments.toml:8:6: envs `stg-eu` (line 4) and `stg_eu` (line 8)"
        ),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("CLOUDFLARE_D1_TOKEN_STG_EU"));
}

#[test]
fn new_refuses_names_outside_its_alphabet() {
    let project = Project::new();
    for name in ["$(id)", "a-b", "x;y", "ü", "../up", ""] {
        let output = refused(&project, &["new", name]);
        assert!(
            output
                .stderr
                .contains("hint: use only ASCII letters, digits and `_`"),
            "{name:?}: {}",
            output.stderr
        );
    }
    assert!(
        !project.files().iter().any(|f| f.starts_with("migrations/")),
        "{:?}",
        project.files()
    );
    let output = project.run_ok(&["new", "Add_users2.sql"], 0);
    assert_eq!(output.stdout, "migrations/0001_Add_users2.sql\n");
}

/// A folder with a migration and files beside it that are not loaded.
fn with_look_alikes() -> Project {
    let project = Project::new();
    project
        .migration("0001_a.sql", "CREATE TABLE a (x);\n")
        .migration("0002_up.SQL", "CREATE TABLE b (x);\n")
        .migration("0003_x.sql.bak", "CREATE TABLE c (x);\n")
        .migration("0004_add_users", "CREATE TABLE d (x);\n")
        .migration("0005_notes.txt", "notes\n")
        .migration("README.md", "# migrations\n");
    project
}

#[test]
fn skipped_look_alikes_warn_when_they_look_like_typos() {
    let project = with_look_alikes();
    let output = project.run_ok(&["status", "local"], 0);
    let warnings: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.contains("skipped"))
        .collect();
    insta::assert_snapshot!(warnings.join("\n"), @"
    warning: skipped `migrations/0002_up.SQL`: its extension is not lower-case `.sql`, which is all wrangler and d1ctl read; rename it `0002_up.sql` if it is a migration
    warning: skipped `migrations/0004_add_users`: it has a migration number but no `.sql` extension; rename it `0004_add_users.sql` if it is a migration
    ");
}

#[test]
fn skipped_look_alikes_are_listed_under_verbose() {
    let project = with_look_alikes();
    let output = project.run_ok(&["-v", "status", "local"], 0);
    for name in [
        "0002_up.SQL",
        "0003_x.sql.bak",
        "0004_add_users",
        "0005_notes.txt",
    ] {
        assert!(
            output
                .stderr
                .contains(&format!("skipped `migrations/{name}`")),
            "{name} not listed:\n{}",
            output.stderr
        );
    }
    assert!(!output.stderr.contains("README.md"), "{}", output.stderr);
    assert!(output.stdout.contains("0001_a.sql"), "{}", output.stdout);
    assert!(!output.stdout.contains("0002_up"), "{}", output.stdout);
}

const MISSING_FOLDER: &str = "[project]\nladder = [\"local\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"data/local.sqlite\"\n";

#[test]
fn a_path_into_a_missing_folder_is_an_error_for_reads() {
    let project = with_config(MISSING_FOLDER);
    for args in [
        &["status", "local"][..],
        &["drift", "local", "migrations"],
        &["plan", "--to", "local"],
        &["checklist", "--to", "local"],
        &["lint", "--to", "local"],
        &["export", "local"],
        &["lock", "status", "local"],
        &["apply", "local", "--dry-run"],
    ] {
        let output = refused(&project, args);
        assert!(
            output.stderr.contains(
                "env `local`: the folder `data` of its `path` does not exist (environments.toml:4:6)"
            ),
            "{args:?}:\n{}",
            output.stderr
        );
        assert!(output.stderr.contains("`d1ctl apply local` creates it"));
    }
    assert!(!project.path("data").exists());
}

#[test]
fn a_missing_file_in_an_existing_folder_reads_as_nothing_applied() {
    let project = with_config(MISSING_FOLDER);
    fs_err::create_dir_all(project.path("data")).unwrap();
    let output = project.run_ok(&["status", "local"], 0);
    assert!(output.stdout.contains("pending"), "{}", output.stdout);
    assert!(!project.path("data/local.sqlite").exists());
}

#[test]
fn apply_creates_the_missing_folder_and_says_so() {
    let project = with_config(MISSING_FOLDER);
    let output = project.run_ok(&["apply", "local"], 0);
    assert!(
        output
            .stderr
            .contains("created folder `data` for env `local`"),
        "{}",
        output.stderr
    );
    assert!(project.path("data/local.sqlite").is_file());
    project.run_ok(&["status", "local"], 0);
}

#[test]
fn baseline_creates_the_missing_folder_and_says_so() {
    let project = with_config(MISSING_FOLDER);
    // A migration whose replay is an empty schema, which the new empty file matches.
    project.migration("0001_a.sql", "CREATE TABLE a (x);\nDROP TABLE a;\n");
    let output = project.run_ok(&["baseline", "local", "--yes"], 0);
    assert!(
        output
            .stderr
            .contains("created folder `data` for env `local`"),
        "{}",
        output.stderr
    );
}

#[test]
fn promote_creates_the_missing_folder_and_dry_run_does_not() {
    let project = with_config(MISSING_FOLDER);
    refused(&project, &["promote", "--to", "local", "--dry-run"]);
    let output = project.run_ok(&["promote", "--to", "local", "--yes"], 0);
    assert!(
        output
            .stderr
            .contains("created folder `data` for env `local`"),
        "{}",
        output.stderr
    );
    assert!(project.path("data/local.sqlite").is_file());
}

#[test]
fn pull_creates_the_missing_folder_of_its_target_and_says_so() {
    let project = with_config(
        "[project]\nladder = [\"local\", \"dev\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"data/local.sqlite\"\n\n[env.dev]\nbackend = \"d1\"\nsimulator = true\ndatabase_name = \"names-dev\"\ndatabase_id = \"6f1c2a3e-1b2c-4d5e-8f90-0123456789ab\"\n",
    );
    project.run_ok(&["apply", "dev"], 0);
    {
        // A row in dev, written through the bundled simulator's own data, for the copy to carry.
        let simulator = d1ctl::sim::Simulator::start(d1ctl::sim::SimConfig {
            data_dir: Some(project.path(".d1ctl/sim")),
            tokens: vec!["test".to_owned()],
            databases: vec![(
                "names-dev".to_owned(),
                "6f1c2a3e-1b2c-4d5e-8f90-0123456789ab".to_owned(),
            )],
        })
        .unwrap();
        simulator
            .execute(
                "6f1c2a3e-1b2c-4d5e-8f90-0123456789ab",
                "INSERT INTO a VALUES (7);",
            )
            .unwrap();
    }
    let output = project.run_ok(&["pull", "dev", "--into", "local", "--yes"], 0);
    assert!(
        output
            .stderr
            .contains("created folder `data` for env `local`"),
        "{}",
        output.stderr
    );
    assert!(project.path("data/local.sqlite").is_file());
    assert_eq!(
        crate::common::rows(&project.db("data/local.sqlite"), "SELECT x FROM a"),
        ["7"]
    );
}

#[test]
fn folders_d1ctl_and_wrangler_own_read_as_empty_until_written() {
    let project = with_config(
        "[env.local]\nbackend = \"sqlite\"\npath = \".d1ctl/local.sqlite\"\n\n[env.wrangler]\nbackend = \"sqlite\"\nwrangler_database_id = \"6f1c2a3e-1b2c-4d5e-8f90-0123456789ab\"\n",
    );
    let before = project.files();
    let output = project.run_ok(&["status"], 0);
    assert!(output.stdout.contains("pending"), "{}", output.stdout);
    assert_eq!(project.files(), before);
    assert!(!project.path(".d1ctl").exists());
}

#[test]
fn an_empty_ladder_is_refused() {
    let project = with_config(
        "[project]\nladder = []\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n",
    );
    let output = refused(&project, &["status"]);
    insta::assert_snapshot!(output.stderr, @r#"
    error: environments.toml:2:10: `ladder` is empty

    hint: list the environments in promotion order, e.g. `ladder = ["local"]`, or leave `ladder` out to use every env in file order
    "#);
}

#[test]
fn a_registry_without_envs_is_refused() {
    for config in ["", "[project]\nmigrations_dir = \"migrations\"\n"] {
        let project = with_config(config);
        let output = refused(&project, &["status"]);
        assert!(
            output
                .stderr
                .starts_with("error: environments.toml: no environments"),
            "{}",
            output.stderr
        );
        assert!(output.stderr.contains("d1ctl init"), "{}", output.stderr);
    }
}
