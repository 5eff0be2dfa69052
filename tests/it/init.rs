//! `d1ctl init`: environments.toml written from a wrangler config (and a drizzle config), and
//! updated in place on a re-run.

use std::path::{Path, PathBuf};

use d1ctl::core::registry::{Registry, Target};

use crate::common::{Project, copy_dir};

/// wrangler's local file for database id `6f1c2a3e-1b2c-4d5e-8f90-0123456789ab` (interop §5).
const DEV_LOCAL_FILE: &str = ".wrangler/state/v3/d1/miniflare-D1DatabaseObject/d4d861e5d14433f7f2d1c01d1030318502c8c056bd682e75b3d16b47dad2ab73.sqlite";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/init")
        .join(name)
}

/// A project holding the files of `tests/fixtures/init/<name>` under `into` (`.` for the root).
fn project_from(name: &str, into: &str) -> Project {
    let project = Project::empty();
    copy_dir(&fixture(name), &project.path(into));
    project
}

fn read(project: &Project, relative: &str) -> String {
    fs_err::read_to_string(project.path(relative)).unwrap()
}

fn registry(project: &Project) -> Registry {
    let path = project.path("environments.toml");
    Registry::parse(&path, &read(project, "environments.toml"), &|_| None)
        .unwrap_or_else(|error| panic!("generated registry does not parse: {error}"))
}

fn d1_ids(registry: &Registry, env: &str) -> (String, Option<String>, Option<String>) {
    match &registry.resolve(env).unwrap().target {
        Target::D1(target) => (
            target.database_name.clone(),
            target.database_id.clone(),
            target.account_id.clone(),
        ),
        Target::Sqlite(_) => panic!("`{env}` should be a d1 env"),
    }
}

/// Every comment of a TOML text (from `#` to the end of its line), byte for byte.
fn comments(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.find('#').map(|start| &line[start..]))
        .collect()
}

#[test]
fn writes_a_ladder_from_wrangler_toml() {
    let project = project_from("toml", ".");
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY);\n",
    );
    let output = project.run_ok(&["init"], 0);
    assert_eq!(output.stdout, "");
    insta::assert_snapshot!(output.stderr, @r"
    warning: `wrangler.toml` [env.preview-docs] declares no `d1_databases` (wrangler does not inherit them from the top level); it gets no env
    warning: `wrangler.toml` (top level) declares 2 D1 databases (`DB`, `ANALYTICS`); d1ctl manages one migrations folder per environments.toml, so init used `DB`
    created `environments.toml` from `wrangler.toml` (4 environments)
      local       sqlite  added  wrangler's local state for `6f1c2a3e-1b2c-4d5e-8f90-0123456789ab`
      dev         d1      added  blog-dev
      staging     d1      added  blog-staging
      production  d1      added  blog-prod, protected
    migrations: `migrations`
    ladder: local → dev → staging → production
    next: `d1ctl status` shows where every env stands
    ");
    insta::assert_snapshot!(read(&project, "environments.toml"), @r#"
    # d1ctl's environment registry, written by `d1ctl init` from wrangler.toml.
    # Reference: README.md, section "environments.toml". `d1ctl init --force` refreshes the
    # database ids from wrangler.toml and keeps your own keys, envs and comments.
    # d1 envs without `account_id` read it from CLOUDFLARE_ACCOUNT_ID (environment, .dev.vars
    # or .env); `d1ctl auth status` shows where each credential comes from.

    [project]
    migrations_dir = "migrations"
    ladder = ["local", "dev", "staging", "production"]

    # wrangler's local state (`wrangler dev`, `wrangler d1 ... --local`) for `DB` of wrangler.toml
    [env.local]
    backend = "sqlite"
    wrangler_database_id = "6f1c2a3e-1b2c-4d5e-8f90-0123456789ab"
    wrangler_dir = "."

    # `DB` of wrangler.toml (top level)
    [env.dev]
    backend = "d1"
    database_name = "blog-dev"
    database_id = "6f1c2a3e-1b2c-4d5e-8f90-0123456789ab"

    # `DB` of wrangler.toml [env.staging]
    [env.staging]
    backend = "d1"
    database_name = "blog-staging"
    database_id = "11111111-1111-4111-8111-111111111111"

    # `DB` of wrangler.toml [env.production]
    [env.production]
    backend = "d1"
    aliases = ["prod"]
    protected = true
    database_name = "blog-prod"
    database_id = "33333333-3333-4333-8333-333333333333"
    "#);

    let registry = registry(&project);
    assert_eq!(
        registry.project.ladder,
        ["local", "dev", "staging", "production"]
    );
    let production = registry.resolve("prod").unwrap();
    assert_eq!(production.name, "production");
    assert!(production.protected);
    assert!(
        registry
            .environments
            .iter()
            .filter(|env| env.name != "production")
            .all(|env| !env.protected)
    );
    assert_eq!(
        d1_ids(&registry, "staging"),
        (
            "blog-staging".to_owned(),
            Some("11111111-1111-4111-8111-111111111111".to_owned()),
            None
        )
    );

    // `local` is wrangler's own local state file: d1ctl reads and writes the file wrangler uses.
    let status = project
        .run_ok(&["status", "local", "--format", "json"], 0)
        .json();
    let location = status["environments"][0]["location"].as_str().unwrap();
    assert!(location.ends_with(DEV_LOCAL_FILE), "{location}");
    project.run_ok(&["apply", "local"], 0);
    assert!(project.path(DEV_LOCAL_FILE).is_file());
}

#[test]
fn reads_wrangler_jsonc_with_comments_and_trailing_commas() {
    let from_toml = project_from("toml", ".");
    from_toml.run_ok(&["init"], 0);
    let project = project_from("jsonc", ".");
    let output = project.run_ok(&["init"], 0);
    assert!(
        !output.stderr.contains("warning"),
        "no warning expected:\n{}",
        output.stderr
    );
    // The same Worker in JSONC gives the same registry, naming its own file.
    assert_eq!(
        read(&project, "environments.toml"),
        read(&from_toml, "environments.toml").replace("wrangler.toml", "wrangler.jsonc")
    );
    let registry = registry(&project);
    assert_eq!(
        d1_ids(&registry, "production").1.as_deref(),
        Some("33333333-3333-4333-8333-333333333333")
    );
}

#[test]
fn a_rerun_without_force_refuses_and_changes_nothing() {
    let project = project_from("toml", ".");
    project.run_ok(&["init"], 0);
    let before = read(&project, "environments.toml");
    let files = project.files();
    let output = project.run_ok(&["init"], 2);
    insta::assert_snapshot!(output.stderr, @r"
    error: `environments.toml` already exists; nothing was written

    hint: run `d1ctl init --dry-run` to see the update, then `d1ctl init --force` to apply it in place (your comments, keys and other envs are kept)
    ");
    assert_eq!(output.stdout, "");
    assert_eq!(read(&project, "environments.toml"), before);
    assert_eq!(project.files(), files);
}

#[test]
fn force_updates_in_place_keeping_comments_keys_and_envs() {
    let project = project_from("toml", ".");
    project.run_ok(&["init"], 0);

    // The user edits the registry: comments, a hook, a ladder of their own, an env of their own.
    let edited = read(&project, "environments.toml")
        .replace(
            "[env.staging]\n",
            "[env.staging]\nbefore = [\"pnpm test\"]   # run the suite first\n",
        )
        .replace(
            "ladder = [\"local\", \"dev\", \"staging\", \"production\"]",
            "ladder = [\"local\", \"dev\", \"alice\", \"staging\", \"production\"]  # our ladder",
        )
        .replace("protected = true\n", "protected = true   # never by hand\n")
        + "\n# Alice's own database, not in wrangler.toml.\n[env.alice]\nbackend = \"d1\"\ndatabase_name = \"blog-alice\"\ndatabase_id = \"44444444-4444-4444-8444-444444444444\"\n";
    project.config(&edited);
    // wrangler.toml gains an environment and staging moves to another database.
    let wrangler = read(&project, "wrangler.toml").replace(
        "database_id = \"11111111-1111-4111-8111-111111111111\"",
        "database_id = \"11111111-1111-4111-8111-999999999999\"",
    ) + "\n[env.qa]\n[[env.qa.d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"blog-qa\"\ndatabase_id = \"55555555-5555-4555-8555-555555555555\"\n";
    project.write("wrangler.toml", wrangler);

    let output = project
        .run_ok(&["init", "--force", "--format", "json"], 0)
        .json();
    assert_eq!(output["created"], false);
    assert_eq!(output["written"], true);
    let statuses: Vec<String> = output["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|env| format!("{} {} {}", env["name"], env["backend"], env["status"]).replace('"', ""))
        .collect();
    assert_eq!(
        statuses,
        [
            "local sqlite unchanged",
            "dev d1 unchanged",
            "staging d1 updated",
            "qa d1 added",
            "production d1 unchanged"
        ]
    );
    assert_eq!(output["environments"][2]["changes"][0], "database_id");
    assert_eq!(output["project"]["changes"][0], "ladder");

    let after = read(&project, "environments.toml");
    // Every comment the user had is still there, byte for byte and in order; the only new one
    // heads the new env, appended after the last env table.
    let mut expected = comments(&edited);
    expected.push("# `DB` of wrangler.toml [env.qa]");
    assert_eq!(comments(&after), expected);
    assert!(after.starts_with(&edited[..edited.find("ladder").unwrap()]));
    assert!(after.contains(
        "ladder = [\"local\", \"dev\", \"alice\", \"staging\", \"qa\", \"production\"]  # our ladder\n"
    ));
    assert!(after.contains(
        "[env.staging]\nbefore = [\"pnpm test\"]   # run the suite first\nbackend = \"d1\"\ndatabase_name = \"blog-staging\"\ndatabase_id = \"11111111-1111-4111-8111-999999999999\"\n"
    ));
    assert!(after.contains(
        "# Alice's own database, not in wrangler.toml.\n[env.alice]\nbackend = \"d1\"\ndatabase_name = \"blog-alice\"\ndatabase_id = \"44444444-4444-4444-8444-444444444444\"\n"
    ));
    assert!(after.ends_with(
        "\n# `DB` of wrangler.toml [env.qa]\n[env.qa]\nbackend = \"d1\"\ndatabase_name = \"blog-qa\"\ndatabase_id = \"55555555-5555-4555-8555-555555555555\"\n"
    ));
    let registry = registry(&project);
    assert_eq!(
        registry.project.ladder,
        ["local", "dev", "alice", "staging", "qa", "production"]
    );
    assert!(!registry.resolve("qa").unwrap().protected);

    // Once in step, a re-run changes nothing and says so.
    let again = project.run_ok(&["init", "--force", "-q"], 0);
    assert_eq!(again.stderr, "");
    assert_eq!(read(&project, "environments.toml"), after);
    let again = project.run_ok(&["init", "--force"], 0);
    assert!(
        again
            .stderr
            .contains("nothing to change in `environments.toml` from `wrangler.toml`"),
        "{}",
        again.stderr
    );
}

#[test]
fn force_leaves_envs_the_user_repointed_alone() {
    let project = project_from("toml", ".");
    project.config(
        "[project]\nmigrations_dir = \"migrations\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \".d1ctl/local.sqlite\"  # my own file\n\n[env.production]\naliases = [\"prod\"]\nbackend = \"d1\"\nprotected = true\ndatabase_name = \"blog-prod\"\ndatabase_id = \"${PROD_DATABASE_ID}\"\n",
    );
    let before = read(&project, "environments.toml");
    let output = project.run_ok(&["init", "--force"], 0);
    assert!(
        output.stderr.contains(
            "env `local` uses a file of its own (`path`), not wrangler's local state; left as it is"
        ),
        "{}",
        output.stderr
    );
    let after = read(&project, "environments.toml");
    // `local` keeps its own file; `production` keeps its `${VAR}`; the others are added, and with
    // no `ladder` in the file its order stays file order.
    assert!(after.starts_with(&before), "{after}");
    assert!(after.contains("[env.dev]") && after.contains("[env.staging]"));
    let registry = Registry::parse(&project.path("environments.toml"), &after, &|name| {
        (name == "PROD_DATABASE_ID").then(|| "x".to_owned())
    })
    .unwrap();
    assert_eq!(
        registry.project.ladder,
        ["local", "production", "dev", "staging"]
    );
    assert!(
        output.stderr.contains("has no `ladder`"),
        "{}",
        output.stderr
    );
}

#[test]
fn dry_run_prints_the_file_and_writes_nothing() {
    let project = project_from("toml", ".");
    let files = project.files();
    let dry = project.run_ok(&["init", "--dry-run"], 0);
    assert_eq!(project.files(), files, "a dry run writes nothing");
    assert!(dry.stderr.contains("would create `environments.toml`"));
    assert!(dry.stderr.contains("dry run: nothing was written"));
    project.run_ok(&["init"], 0);
    assert_eq!(dry.stdout, read(&project, "environments.toml"));

    // On an existing file it shows the update, also without `--force`.
    project.write(
        "wrangler.toml",
        read(&project, "wrangler.toml")
            + "\n[env.qa]\n[[env.qa.d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"blog-qa\"\ndatabase_id = \"55555555-5555-4555-8555-555555555555\"\n",
    );
    let before = read(&project, "environments.toml");
    let dry = project
        .run_ok(&["init", "--dry-run", "--format", "json"], 0)
        .json();
    assert_eq!(read(&project, "environments.toml"), before);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["written"], false);
    assert_eq!(dry["environments"][3]["name"], "qa");
    assert_eq!(dry["environments"][3]["status"], "added");
    assert!(
        dry["content"]
            .as_str()
            .unwrap()
            .contains("[env.qa]\nbackend = \"d1\"\ndatabase_name = \"blog-qa\"\n")
    );
}

#[test]
fn a_drizzle_out_folder_becomes_migrations_dir() {
    let project = project_from("drizzle", ".");
    let output = project.run_ok(&["init", "--format", "json"], 0).json();
    assert_eq!(output["created"], true);
    assert_eq!(output["project"]["migrations_dir"], "src/db/migrations");
    assert_eq!(output["project"]["ledger"], "__wrangler_migrations");
    insta::assert_snapshot!(read(&project, "environments.toml"), @r#"
    # d1ctl's environment registry, written by `d1ctl init` from wrangler.toml.
    # Reference: README.md, section "environments.toml". `d1ctl init --force` refreshes the
    # database ids from wrangler.toml and keeps your own keys, envs and comments.

    [project]
    migrations_dir = "src/db/migrations"
    ledger = "__wrangler_migrations"
    ladder = ["local", "remote"]

    # wrangler's local state (`wrangler dev`, `wrangler d1 ... --local`) for `DB` of wrangler.toml
    [env.local]
    backend = "sqlite"
    wrangler_database_id = "DB_PREVIEW"
    wrangler_dir = "."

    # `DB` of wrangler.toml (top level)
    [env.remote]
    backend = "d1"
    database_name = "shop"
    database_id = "22222222-2222-4222-8222-222222222222"
    account_id = "0123456789abcdef0123456789abcdef"
    "#);
    let registry = registry(&project);
    assert_eq!(
        registry.project.migrations_dir,
        project.path("src/db/migrations")
    );
    // The local file follows `preview_database_id`, as wrangler's does.
    let Target::Sqlite(local) = &registry.resolve("local").unwrap().target else {
        panic!("sqlite expected")
    };
    assert_eq!(local.wrangler_database_id.as_deref(), Some("DB_PREVIEW"));
}

#[test]
fn reads_a_wrangler_config_in_another_folder() {
    let project = project_from("toml", "worker");
    project.migration("0001_users.sql", "CREATE TABLE users (id INTEGER);\n");
    project.run_ok(&["init", "--wrangler-config", "worker/wrangler.toml"], 0);
    let text = read(&project, "environments.toml");
    assert!(
        text.contains("migrations_dir = \"worker/migrations\"\n"),
        "{text}"
    );
    assert!(text.contains("wrangler_dir = \"worker\"\n"), "{text}");
    let registry = registry(&project);
    let Target::Sqlite(local) = &registry.resolve("local").unwrap().target else {
        panic!("sqlite expected")
    };
    assert_eq!(local.path, project.path("worker").join(DEV_LOCAL_FILE));
}

/// Runs `init` where it must fail: exit 2, a hint, nothing written; returns stderr.
fn refused(project: &Project) -> String {
    let files = project.files();
    let output = project.run_ok(&["init"], 2);
    assert_eq!(project.files(), files, "nothing may be written");
    assert_eq!(output.stdout, "");
    assert!(
        output.stderr.contains("\n\nhint: "),
        "no hint in:\n{}",
        output.stderr
    );
    output.stderr
}

#[test]
fn refuses_without_a_wrangler_config() {
    let stderr = refused(&Project::empty());
    insta::assert_snapshot!(stderr, @r"
    error: no wrangler config (wrangler.json, wrangler.jsonc, wrangler.toml) in `.`; nothing was written

    hint: run `d1ctl init` in your Worker's folder, or pass `--wrangler-config PATH`
    ");
}

#[test]
fn refuses_a_broken_wrangler_toml_naming_the_line() {
    let project = Project::empty();
    project.write(
        "wrangler.toml",
        "name = \"w\"\n\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_id = 42\n",
    );
    let stderr = refused(&project);
    insta::assert_snapshot!(stderr, @r"
    error: wrangler.toml:5:15: invalid type: integer `42`, expected a string

    hint: fix the wrangler config (wrangler itself would refuse it), then run `d1ctl init` again
    ");
}

#[test]
fn refuses_a_broken_wrangler_jsonc_naming_the_line() {
    let project = Project::empty();
    project.write(
        "wrangler.jsonc",
        "{\n  // comment\n  \"d1_databases\": [\n    { \"binding\": \"DB\" \"database_id\": \"x\" },\n  ],\n}\n",
    );
    let stderr = refused(&project);
    assert!(
        stderr.starts_with("error: wrangler.jsonc:4:23: expected `,` or `}`"),
        "{stderr}"
    );
}

#[test]
fn refuses_a_wrangler_config_without_d1_databases() {
    let project = Project::empty();
    project.write(
        "wrangler.toml",
        "name = \"w\"\n\n[[kv_namespaces]]\nbinding = \"KV\"\nid = \"1\"\n\n[env.production]\nname = \"w-prod\"\n",
    );
    let stderr = refused(&project);
    assert!(
        stderr.contains("error: `wrangler.toml` declares no D1 database (`[[d1_databases]]`); nothing was written"),
        "{stderr}"
    );
}
