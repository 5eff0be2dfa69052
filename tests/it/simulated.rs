//! Envs on the bundled simulator (`simulator = true`) are never mistaken for Cloudflare: every
//! output says `(simulator)`, a token or URL meant for a real API is a config error, and a
//! protected simulated env is a warning on every command.

use d1ctl::sim::{SimConfig, Simulator};

use crate::common::{Output, Project, sim_rows};

const STAGING: &str = "11111111-1111-4111-8111-111111111111";
const PRODUCTION: &str = "33333333-3333-4333-8333-333333333333";

const CONFIG: &str = "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
[env.staging]\nbackend = \"d1\"\nsimulator = true\ndatabase_name = \"app-staging\"\ndatabase_id = \"11111111-1111-4111-8111-111111111111\"\n\n\
[env.production]\nbackend = \"d1\"\nprotected = true\nsimulator = true\ndatabase_name = \"app-production\"\ndatabase_id = \"33333333-3333-4333-8333-333333333333\"\n";

const WARNING: &str = "warning: `production` is protected but runs on d1ctl's bundled simulator";

/// The bundled simulator's data, opened from the test as the binary opens it.
fn bundled(project: &Project) -> Simulator {
    Simulator::start(SimConfig {
        data_dir: Some(project.path(".d1ctl/sim")),
        tokens: vec!["test".to_owned()],
        databases: vec![
            ("app-staging".to_owned(), STAGING.to_owned()),
            ("app-production".to_owned(), PRODUCTION.to_owned()),
        ],
    })
    .unwrap()
}

/// A ladder whose staging and production run on the bundled simulator, both tracked with
/// `0001_users.sql` and holding rows, and `0002_nickname.sql` pending everywhere but local.
fn project() -> Project {
    let project = Project::new();
    project.config(CONFIG).migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n",
    );
    project.run_ok(&["promote", "--to", "production", "--cascade", "--yes"], 0);
    {
        let simulator = bundled(&project);
        for database in [STAGING, PRODUCTION] {
            simulator
                .execute(
                    database,
                    "INSERT INTO users (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com');",
                )
                .unwrap();
        }
    }
    project.migration(
        "0002_nickname.sql",
        "ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';\n",
    );
    project.run_ok(&["promote", "--to", "local"], 0);
    project
}

/// Output with Time Travel bookmarks (they name the clock) filtered.
fn filtered(output: &Output, project: &Project) -> String {
    output
        .snapshot(project)
        .split_inclusive(char::is_whitespace)
        .map(|word| {
            let bare = word.trim_end();
            let is_bookmark = bare.split('-').count() == 4
                && bare
                    .split('-')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_hexdigit()));
            if is_bookmark {
                format!("[BOOKMARK]{}", &word[bare.len()..])
            } else {
                word.to_owned()
            }
        })
        .collect()
}

fn warnings(output: &Output) -> usize {
    output.stderr.matches(WARNING).count()
}

#[test]
fn every_output_of_a_simulated_env_says_so() {
    let project = project();

    let promote = project.run_ok(&["promote", "--to", "staging"], 0);
    insta::assert_snapshot!("simulated_promote", filtered(&promote, &project));
    let simulator = bundled(&project);
    assert_eq!(
        sim_rows(
            &simulator,
            STAGING,
            "SELECT email, nickname FROM users ORDER BY id"
        ),
        ["a@example.com|", "b@example.com|"]
    );
    drop(simulator);

    let status = project.run_ok(&["status"], 0);
    insta::assert_snapshot!("simulated_status_matrix", filtered(&status, &project));
    let single = project.run_ok(&["status", "staging"], 0);
    assert!(
        single.stdout.starts_with("staging (simulator) (d1, "),
        "{}",
        single.stdout
    );

    let json = project.run_ok(&["status", "--format", "json"], 0).json();
    let marks: Vec<(&str, bool)> = json["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|env| (env["name"].as_str().unwrap(), env["simulator"] == true))
        .collect();
    assert_eq!(
        marks,
        [("local", false), ("staging", true), ("production", true)]
    );

    let plan = project.run(&["plan", "--to", "production", "--format", "json"]);
    let plan_json = plan.json();
    assert_eq!(plan_json["rungs"][0]["simulator"], true, "{plan_json:#}");
    assert_eq!(warnings(&plan), 1, "{}", plan.stderr);
    let plan_text = project.run_ok(&["plan", "--to", "production"], 0);
    assert!(
        plan_text
            .stderr
            .contains("plan: `production` (simulator) ← `staging`"),
        "{}",
        plan_text.stderr
    );

    let checklist = project.run_ok(&["checklist", "--to", "production"], 0);
    assert!(
        checklist.stdout.contains(
            "**Target:** `production` (simulator: d1ctl's bundled D1 simulator, not Cloudflare) (d1, app-production "
        ),
        "{}",
        checklist.stdout
    );
    let checklist_json = project
        .run_ok(&["checklist", "--to", "production", "--format", "json"], 0)
        .json();
    assert_eq!(checklist_json["target"]["simulator"], true);

    let lock = project
        .run_ok(&["lock", "status", "staging", "--format", "json"], 0)
        .json();
    assert_eq!(lock["simulator"], true);
    let lock_text = project.run_ok(&["lock", "status", "staging"], 0);
    assert_eq!(lock_text.stdout, "`staging` (simulator) is not locked\n");

    let drift = project.run_ok(&["drift", "staging", "production"], 1);
    assert!(
        drift
            .stdout
            .contains("`staging` (simulator) (A) and `production` (simulator) (B)"),
        "{}",
        drift.stdout
    );
    let drift_json = project
        .run_ok(&["drift", "local", "staging", "--format", "json"], 0)
        .json();
    assert_eq!(drift_json["a"]["simulator"], false, "{drift_json:#}");
    assert_eq!(drift_json["b"]["simulator"], true, "{drift_json:#}");

    // A write to the protected simulated env: the warning once, the mark on the target line.
    let production = project.run_ok(&["promote", "--to", "production", "--yes"], 0);
    assert_eq!(warnings(&production), 1, "{}", production.stderr);
    assert!(
        production.stderr.contains(&format!(
            "target: production (simulator) (d1, app-production {PRODUCTION}, protected)"
        )),
        "{}",
        production.stderr
    );
    let simulator = bundled(&project);
    assert_eq!(
        sim_rows(
            &simulator,
            PRODUCTION,
            "SELECT email, nickname FROM users ORDER BY id"
        ),
        ["a@example.com|", "b@example.com|"]
    );
}

#[test]
fn the_shipped_registry_warns_about_its_simulated_production() {
    let project = Project::empty();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    fs_err::copy(
        root.join("environments.toml"),
        project.path("environments.toml"),
    )
    .unwrap();
    crate::common::copy_dir(&root.join("migrations"), &project.path("migrations"));
    for args in [&["status"][..], &["plan", "--to", "dev"], &["lint"]] {
        let output = project.run(args);
        assert_eq!(warnings(&output), 1, "{args:?}: {}", output.stderr);
        assert!(
            output.stderr.contains(
                "runs on d1ctl's bundled simulator (`simulator = true`, environments.toml:35:6): nothing done to it reaches Cloudflare"
            ),
            "{args:?}: {}",
            output.stderr
        );
    }
    // `-q` prints only data and errors.
    let quiet = project.run_ok(&["status", "-q"], 0);
    assert_eq!(warnings(&quiet), 0, "{}", quiet.stderr);
}

/// `environments.toml` with `key = value` added to the simulated staging env.
fn with_staging_key(line: &str) -> String {
    CONFIG.replace(
        "[env.staging]\nbackend = \"d1\"\nsimulator = true\n",
        &format!("[env.staging]\nbackend = \"d1\"\nsimulator = true\n{line}\n"),
    )
}

#[test]
fn a_simulated_env_with_a_url_or_token_variable_is_a_config_error() {
    let project = Project::new();
    project.config(&with_staging_key(
        "api_base_url = \"https://api.cloudflare.com/client/v4\"",
    ));
    let output = project.run_ok(&["status"], 2);
    insta::assert_snapshot!(output.stderr, @r"
    error: environments.toml:11:16: env `staging`: `simulator = true` and `api_base_url` together: the bundled simulator needs no URL

    hint: to reach Cloudflare (or your own `d1ctl sim`), delete `simulator = true`; to stay on the bundled simulator, delete `api_base_url`
    ");

    project.config(&with_staging_key("token_env = \"STAGING_TOKEN\""));
    let output = project.run_ok(&["status", "local"], 2);
    insta::assert_snapshot!(output.stderr, @r"
    error: environments.toml:11:13: env `staging`: `simulator = true` and `token_env` together: the bundled simulator needs no token

    hint: to reach Cloudflare (or your own `d1ctl sim`), delete `simulator = true`; to stay on the bundled simulator, delete `token_env`
    ");
}

#[test]
fn a_token_meant_for_a_simulated_env_is_a_config_error() {
    let project = Project::new();
    project.config(CONFIG);
    let output = Output::of(
        project
            .command(&["status", "local"])
            .env("CLOUDFLARE_D1_TOKEN_STAGING", "secret-staging-token"),
    )
    .expect_code(2, &["status", "local"]);
    insta::assert_snapshot!(output.stderr, @r"
    error: environments.toml:8:6: env `staging` runs on the bundled simulator (`simulator = true`, environments.toml:8:6) but the environment variable `CLOUDFLARE_D1_TOKEN_STAGING` is set, a token meant for it

    hint: a token means `staging` is meant for Cloudflare: delete `simulator = true` from `[env.staging]` to reach it, or remove the token to stay on the simulator
    ");
    assert!(!output.stderr.contains("secret-staging-token"));

    project.write(
        ".dev.vars",
        "# local secrets\nOTHER=1\nCLOUDFLARE_D1_TOKEN_PRODUCTION=secret\n",
    );
    let output = project.run_ok(&["apply", "local"], 2);
    insta::assert_snapshot!(output.stderr, @r"
    error: .dev.vars:3: env `production` runs on the bundled simulator (`simulator = true`, environments.toml:14:6) but `.dev.vars` sets `CLOUDFLARE_D1_TOKEN_PRODUCTION`, a token meant for it

    hint: a token means `production` is meant for Cloudflare: delete `simulator = true` from `[env.production]` to reach it, or remove the token to stay on the simulator
    ");

    // The generic token serves every env: it says nothing about a simulated one.
    project.write(".dev.vars", "CLOUDFLARE_API_TOKEN=secret\n");
    project.run_ok(&["status", "local"], 0);
    // In the env's own file, any token is meant for it.
    project.write(".dev.vars.staging", "CLOUDFLARE_API_TOKEN=secret\n");
    let output = project.run_ok(&["status", "local"], 2);
    assert!(
        output
            .stderr
            .starts_with("error: .dev.vars.staging:1: env `staging` runs on the bundled simulator"),
        "{}",
        output.stderr
    );
}
