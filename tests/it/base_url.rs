//! `CLOUDFLARE_API_BASE_URL` fills in only for envs without their own `api_base_url`, and
//! sends a protected env's token only when confirmed.

use std::process::Stdio;

use d1ctl::sim::{SimConfig, Simulator};

use crate::common::{Output, Project, sim_rows};

const TOKEN: &str = "base-url-token";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const STAGING: &str = "44444444-4444-4444-8444-444444444444";
const PRODUCTION: &str = "55555555-5555-4555-8555-555555555555";

fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec![TOKEN.to_owned()],
        databases: vec![
            ("app-staging".to_owned(), STAGING.to_owned()),
            ("app-production".to_owned(), PRODUCTION.to_owned()),
        ],
    })
    .unwrap()
}

/// Both simulators hold the same databases, tracked with `0001_users.sql` and holding rows, so
/// either could answer: only the request counts tell which one was asked.
fn seeded(simulator: &Simulator) {
    for database in [STAGING, PRODUCTION] {
        simulator
            .execute(
                database,
                "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL); \
                 INSERT INTO users VALUES (1, 'a@example.com'), (2, 'b@example.com');",
            )
            .unwrap();
    }
}

/// staging names its own `api_base_url` (simulator `own`); protected production names none.
fn project(own: &Simulator) -> Project {
    let project = Project::new();
    project.config(&format!(
        "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
         [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\napi_base_url = \"{}\"\n\n\
         [env.production]\nbackend = \"d1\"\nprotected = true\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{PRODUCTION}\"\ndatabase_name = \"app-production\"\n",
        own.base_url()
    ));
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n",
    );
    project
}

fn run(project: &Project, variable: &Simulator, args: &[&str]) -> Output {
    Output::of(
        project
            .command(args)
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
            .env("CLOUDFLARE_API_BASE_URL", variable.base_url())
            .stdin(Stdio::null()),
    )
}

#[test]
fn the_variable_does_not_retarget_an_env_that_names_its_own() {
    let (own, variable) = (simulator(), simulator());
    seeded(&own);
    seeded(&variable);
    let project = project(&own);
    project.run_ok(&["promote", "--to", "local"], 0);
    own.execute(
        STAGING,
        "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL); \
         INSERT INTO d1_migrations (name) VALUES ('0001_users.sql');",
    )
    .unwrap();
    project.migration(
        "0002_nickname.sql",
        "ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';\n",
    );
    project.run_ok(&["promote", "--to", "local"], 0);

    let status = run(&project, &variable, &["status", "staging"]).expect_code(0, &["status"]);
    assert!(
        status.stdout.contains("pending 0002_nickname.sql"),
        "{}",
        status.stdout
    );
    let promote =
        run(&project, &variable, &["promote", "--to", "staging"]).expect_code(0, &["promote"]);
    assert!(
        promote
            .stderr
            .contains(&format!("target: staging (d1, app-staging {STAGING})\n")),
        "{}",
        promote.stderr
    );
    assert!(own.stats().total > 0, "{:?}", own.stats());
    assert_eq!(variable.stats().total, 0, "{:?}", variable.stats());
    assert_eq!(
        sim_rows(
            &own,
            STAGING,
            "SELECT email, nickname FROM users ORDER BY id"
        ),
        ["a@example.com|", "b@example.com|"]
    );
    assert_eq!(
        sim_rows(&variable, STAGING, "SELECT email FROM users ORDER BY id"),
        ["a@example.com", "b@example.com"]
    );
}

#[test]
fn a_redirected_protected_env_needs_yes_even_to_read() {
    let (own, variable) = (simulator(), simulator());
    seeded(&variable);
    // Production (behind the variable) is tracked with 0001 and holds rows; 0002 is pending.
    variable
        .execute(
            PRODUCTION,
            "CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL); \
             INSERT INTO d1_migrations (name) VALUES ('0001_users.sql');",
        )
        .unwrap();
    let project = project(&own);
    project.migration(
        "0002_nickname.sql",
        "ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';\n",
    );

    for args in [
        &["status", "production"][..],
        &["drift", "production"],
        &["export", "production", "--no-data"],
        &["plan", "--to", "production"],
    ] {
        let output = run(&project, &variable, args).expect_code(2, args);
        let text = output
            .stderr
            .replace(&variable.base_url(), "[VARIABLE_URL]");
        assert_eq!(
            text,
            "error: `production` is protected and `CLOUDFLARE_API_BASE_URL` redirects its API to [VARIABLE_URL]; nothing was sent for it\n\n\
             hint: pass `--yes` to send it there anyway; unset `CLOUDFLARE_API_BASE_URL` to reach Cloudflare, or give the env its own `api_base_url` in environments.toml\n",
            "{args:?}"
        );
    }
    assert_eq!(variable.stats().total, 0, "{:?}", variable.stats());

    let status = run(&project, &variable, &["status", "production", "--yes"])
        .expect_code(0, &["status", "--yes"]);
    assert!(
        status.stderr.contains(&format!(
            "`production` is protected and `CLOUDFLARE_API_BASE_URL` redirects its API to {}; sending its token there, confirmed by `--yes`",
            variable.base_url()
        )),
        "{}",
        status.stderr
    );
    assert!(
        status.stdout.contains("applied 0001_users.sql")
            && status.stdout.contains("pending 0002_nickname.sql"),
        "{}",
        status.stdout
    );
    assert!(variable.stats().total > 0);

    // The rung below, on its own URL, needs no confirmation.
    run(
        &project,
        &variable,
        &["promote", "--to", "staging", "--cascade"],
    )
    .expect_code(0, &["promote", "--to", "staging"]);
    // A write: `--yes` confirms both the protected env and the redirect, which the target line
    // names.
    let promote = run(
        &project,
        &variable,
        &["promote", "--to", "production", "--yes"],
    )
    .expect_code(0, &["promote", "--yes"]);
    let target_line = format!(
        "target: production (d1, app-production {PRODUCTION}, protected, API redirected by CLOUDFLARE_API_BASE_URL to {})",
        variable.base_url()
    );
    assert!(promote.stderr.contains(&target_line), "{}", promote.stderr);
    assert_eq!(
        sim_rows(
            &variable,
            PRODUCTION,
            "SELECT email, nickname FROM users ORDER BY id"
        ),
        ["a@example.com|", "b@example.com|"]
    );
    assert_eq!(
        sim_rows(
            &variable,
            PRODUCTION,
            "SELECT name FROM d1_migrations ORDER BY id"
        ),
        ["0001_users.sql", "0002_nickname.sql"]
    );
    // Staging's own simulator served staging and nothing of production's.
    assert_eq!(
        sim_rows(
            &own,
            PRODUCTION,
            "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
        ),
        ["0"]
    );
}
