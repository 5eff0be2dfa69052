//! Messages that are true and useful: a bad token named by its source, waits that say why,
//! hints with real names, `-vv` HTTP traces without secrets, JSON errors on stdout.

use d1ctl::sim::{Faults, SimConfig, Simulator};

use crate::common::{Output, Project};

const TOKEN: &str = "messages-test-token-81c2";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const STAGING: &str = "22222222-2222-4222-8222-222222222222";

fn remote() -> (Simulator, Project) {
    let sim = Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec![TOKEN.to_owned()],
        databases: vec![("app-staging".to_owned(), STAGING.to_owned())],
    })
    .expect("start the simulator");
    let project = Project::new();
    project.config(&format!(
        "[project]\nladder = [\"local\", \"staging\"]\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
         [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\n"
    ));
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n",
    );
    (sim, project)
}

fn run(sim: &Simulator, project: &Project, args: &[&str], token: &str) -> Output {
    let mut command = project.command(args);
    command
        .env("CLOUDFLARE_API_BASE_URL", sim.base_url())
        .env("CLOUDFLARE_API_TOKEN", token);
    Output::of(&mut command)
}

#[test]
fn a_token_with_a_control_character_is_a_credential_error_and_never_sent() {
    let (sim, project) = remote();
    let output = run(
        &sim,
        &project,
        &["status", "staging"],
        "messages-\u{1}secret",
    );
    assert_eq!(output.code, 2, "{}", output.stderr);
    assert!(
        output.stderr.contains(
            "from environment variable `CLOUDFLARE_API_TOKEN` contains a control character (U+0001)"
        ),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("check the network"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("secret"), "{}", output.stderr);
    assert_eq!(sim.stats().total, 0, "nothing was sent, nothing retried");
}

#[test]
fn a_token_with_a_newline_in_dev_vars_names_the_file_and_line() {
    let (sim, project) = remote();
    project.write(
        ".dev.vars",
        "# staging\nCLOUDFLARE_API_TOKEN=\"messages-test\ntoken\"\n",
    );
    let mut command = project.command(&["status", "staging"]);
    command.env("CLOUDFLARE_API_BASE_URL", sim.base_url());
    let output = Output::of(&mut command);
    assert_eq!(output.code, 2, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains(".dev.vars` (`CLOUDFLARE_API_TOKEN`), line 2 contains a newline"),
        "{}",
        output.stderr
    );
    assert_eq!(sim.stats().total, 0);
}

#[test]
fn a_rate_limit_wait_is_announced_on_a_non_terminal() {
    let (sim, project) = remote();
    sim.set_faults(Faults {
        rate_limit_burst: 1,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let output = run(&sim, &project, &["status", "staging"], TOKEN);
    assert_eq!(output.code, 0, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("waiting 1 s: Cloudflare rate-limited the request (HTTP 429)\n"),
        "{}",
        output.stderr
    );
}

#[test]
fn the_lock_held_hint_names_the_env_and_the_holder() {
    let project = Project::new();
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY);\n",
    );
    project.run_ok(&["apply", "local"], 0);
    project.migration(
        "0002_more.sql",
        "CREATE TABLE more (id INTEGER PRIMARY KEY);\n",
    );
    project
        .db("local.sqlite")
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS _d1ctl_lock (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, command TEXT NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);\
             INSERT INTO _d1ctl_lock VALUES (1, 'holder-7f3a', 'another-machine', 4242, 'promote --to local', unixepoch(), unixepoch() + 600);",
        )
        .unwrap();
    let output = project.run(&["apply", "local"]);
    assert_ne!(output.code, 0, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("`d1ctl lock release local --id holder-7f3a` frees it"),
        "{}",
        output.stderr
    );
}

#[test]
fn double_verbose_traces_http_requests_without_the_token() {
    let (sim, project) = remote();
    let traced = run(&sim, &project, &["-vv", "status", "staging"], TOKEN);
    assert_eq!(traced.code, 0, "{}", traced.stderr);
    let request = format!(
        "POST {}/accounts/{ACCOUNT}/d1/database/{STAGING}/raw -> 200 (",
        sim.base_url().trim_end_matches('/')
    );
    assert!(traced.stderr.contains(&request), "{}", traced.stderr);
    assert!(!traced.stderr.contains(TOKEN), "{}", traced.stderr);
    assert!(!traced.stderr.to_lowercase().contains("authorization"));
    let verbose = run(&sim, &project, &["-v", "status", "staging"], TOKEN);
    assert_eq!(verbose.code, 0, "{}", verbose.stderr);
    assert!(!verbose.stderr.contains(" -> 200 ("), "{}", verbose.stderr);
}

#[test]
fn with_json_format_an_error_is_a_json_object_on_stdout_too() {
    let project = Project::new();
    let output = project.run(&["--format", "json", "status", "nowhere"]);
    assert_eq!(output.code, 2, "{}", output.stderr);
    assert!(output.stderr.contains("error: "), "{}", output.stderr);
    let json = output.json();
    assert_eq!(json["error"]["code"], 2, "{json}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nowhere"), "{json}");
    assert!(output.stderr.contains(message), "{}", output.stderr);
    assert!(json["error"].get("hint").is_some(), "{json}");
}

#[test]
fn a_failed_migration_on_d1_names_its_statement_and_line() {
    let (sim, project) = remote();
    project.migration(
        "0002_broken.sql",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY);\n\n-- the typo\nINSERT INTO post (id) VALUES (1);\n",
    );
    let output = run(&sim, &project, &["apply", "staging"], TOKEN);
    assert_eq!(output.code, 1, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("`0002_broken.sql` failed at statement 2 (line 4): no such table: post"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_d1_failure_that_depends_on_rows_is_not_placed_by_guess() {
    let (sim, project) = remote();
    project.migration(
        "0002_seed.sql",
        "INSERT INTO users (id, email) VALUES (1, 'a');\nINSERT INTO users (id, email) VALUES (1, 'b');\n",
    );
    let output = run(&sim, &project, &["apply", "staging"], TOKEN);
    assert_eq!(output.code, 1, "{}", output.stderr);
    assert!(
        output.stderr.contains("UNIQUE constraint failed"),
        "{}",
        output.stderr
    );
    // The empty shadow has no rows to collide with: no statement is named rather than a guess.
    assert!(!output.stderr.contains("at statement"), "{}", output.stderr);
}

#[test]
fn the_drift_hint_names_an_env_of_the_project() {
    let project = Project::new();
    let output = project.run(&["drift", "migrations"]);
    assert_eq!(output.code, 2, "{}", output.stderr);
    assert!(
        output.stderr.contains("`d1ctl drift migrations local`"),
        "{}",
        output.stderr
    );
}
