//! `plan` / `promote` / `rollback` / `lock` / `baseline`: the ladder local → staging → production
//! on SQLite and the simulator.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use d1ctl::sim::{Faults, SimConfig, Simulator};

use crate::common::{Output, Project, rows, sim_rows};

const TOKEN: &str = "promote-token";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const STAGING: &str = "88888888-8888-4888-8888-888888888888";
const PRODUCTION: &str = "99999999-9999-4999-8999-999999999999";

/// A ladder local (sqlite) → staging (d1, simulator A) → production (d1, simulator B,
/// protected), each simulator counting only its own env's requests.
struct Ladder {
    staging: Simulator,
    production: Simulator,
    project: Project,
}

fn simulator(name: &str, id: &str) -> Simulator {
    Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec![TOKEN.to_owned()],
        databases: vec![(name.to_owned(), id.to_owned())],
    })
    .unwrap()
}

fn config(staging: &Simulator, production: &Simulator, extra_staging: &str) -> String {
    format!(
        "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
         [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\napi_base_url = \"{}\"\n{extra_staging}\n\
         [env.production]\nbackend = \"d1\"\nprotected = true\naliases = [\"prod\"]\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{PRODUCTION}\"\ndatabase_name = \"app-production\"\napi_base_url = \"{}\"\n",
        staging.base_url(),
        production.base_url()
    )
}

fn ladder() -> Ladder {
    let staging = simulator("app-staging", STAGING);
    let production = simulator("app-production", PRODUCTION);
    let project = Project::new();
    project.config(&config(&staging, &production, ""));
    project
        .migration("0001_users.sql", "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n")
        .migration(
            "0002_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\n",
        )
        .migration("0003_index.sql", "CREATE INDEX posts_user ON posts(user_id);\n");
    Ladder {
        staging,
        production,
        project,
    }
}

impl Ladder {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.project.command(args);
        command.env("CLOUDFLARE_API_TOKEN", TOKEN);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        Output::of(self.command(args).stdin(Stdio::null()))
    }

    fn run_ok(&self, args: &[&str], code: i32) -> Output {
        self.run(args).expect_code(code, args)
    }

    fn staging_rows(&self, sql: &str) -> Vec<String> {
        query(&self.staging, STAGING, sql)
    }
}

fn query(sim: &Simulator, database: &str, sql: &str) -> Vec<String> {
    sim_rows(sim, database, sql)
}

#[test]
fn the_full_ladder_in_one_command_then_nothing_to_do() {
    let ladder = ladder();
    let output = ladder.run_ok(&["promote", "--to", "prod", "--cascade", "--yes"], 0);
    assert!(
        output
            .stderr
            .contains("verified: `production` now has the same schema as `staging`"),
        "{}",
        output.stderr
    );
    let last = output.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("rollback: d1ctl rollback production --bookmark "),
        "{last}"
    );
    assert_eq!(
        query(
            &ladder.production,
            PRODUCTION,
            "SELECT name FROM d1_migrations ORDER BY id"
        ),
        ["0001_users.sql", "0002_posts.sql", "0003_index.sql"]
    );
    let again = ladder.run_ok(&["promote", "--to", "prod", "--cascade", "--yes"], 0);
    assert_eq!(
        again.stderr.matches("nothing to do").count(),
        3,
        "{}",
        again.stderr
    );
}

#[test]
fn request_budgets_of_a_promotion() {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    // k = 3 migrations to a fresh D1 target: get database (it says the database is empty, so
    // no read), lock, the re-read under it (2: no ledgers yet), bookmark, k units,
    // release-and-verify: k + 6.
    ladder.run_ok(&["promote", "--to", "staging"], 0);
    assert_eq!(
        ladder.staging.stats().total,
        3 + 6,
        "{:?}",
        ladder.staging.stats()
    );
    ladder.staging.reset_stats();
    let output = ladder.run_ok(
        &["promote", "--to", "production", "--yes", "--format", "json"],
        0,
    );
    assert_eq!(output.json()["rungs"][0]["outcome"], "promoted");
    assert!(
        ladder.staging.stats().total <= 2,
        "source: {:?}",
        ladder.staging.stats()
    );
    assert_eq!(
        ladder.production.stats().total,
        3 + 6,
        "target: {:?}",
        ladder.production.stats()
    );
    // A tracked target, all in one unit, whatever k: get database, read, lock, re-read,
    // bookmark, the unit, release-and-verify.
    for n in 4..=9 {
        ladder.project.migration(
            &format!("000{n}_t{n}.sql"),
            &format!("CREATE TABLE t{n} (x);\n"),
        );
    }
    ladder.run_ok(&["promote", "--to", "staging", "--cascade"], 0);
    ladder.production.reset_stats();
    ladder.run_ok(
        &["promote", "--to", "production", "--yes", "--all-in-one"],
        0,
    );
    assert_eq!(
        ladder.production.stats().total,
        7,
        "all-in-one: {:?}",
        ladder.production.stats()
    );
    assert_eq!(
        query(
            &ladder.production,
            PRODUCTION,
            "SELECT count(*) FROM d1_migrations"
        ),
        ["9"]
    );
}

#[test]
fn promote_applies_only_what_the_source_ran() {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    ladder
        .project
        .migration("0004_new.sql", "CREATE TABLE fresh (x);\n");
    let output = ladder.run_ok(&["plan", "--to", "staging"], 0);
    assert!(
        output.stderr.contains("not yet at `local`: 0004_new.sql"),
        "{}",
        output.stderr
    );
    // `--exit-code`: pending work is a 1, as `git diff --exit-code` has it.
    ladder.run_ok(&["plan", "--to", "staging", "--exit-code"], 1);
    ladder.run_ok(&["promote", "--to", "staging"], 0);
    ladder.run_ok(&["plan", "--to", "staging", "--exit-code"], 0);
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM d1_migrations"),
        ["3"]
    );
}

/// Each gate on its own: exit 1, and nothing written to the target.
#[test]
fn each_gate_blocks_on_its_own() {
    fn blocked(ladder: &Ladder, gate: &str) {
        let before = ladder.staging_rows("SELECT name FROM sqlite_master ORDER BY name");
        let output = ladder.run_ok(&["promote", "--to", "staging", "--format", "json"], 1);
        let json = output.json();
        let gates = json["rungs"][0]["plan"]["gates"].as_array().unwrap();
        let failed: Vec<&str> = gates
            .iter()
            .filter(|g| g["passed"] == false)
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(failed, [gate], "{json:#}");
        assert_eq!(
            ladder.staging_rows("SELECT name FROM sqlite_master ORDER BY name"),
            before,
            "{gate}: nothing may be written"
        );
    }

    // checksums: a file edited after it ran on the source.
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    // (A comment only: the schema stays the same, so no other gate fires.)
    let edited = format!(
        "-- reviewed\n{}",
        fs_err::read_to_string(ladder.project.path("migrations/0002_posts.sql")).unwrap()
    );
    ladder.project.migration("0002_posts.sql", &edited);
    blocked(&ladder, "checksums");

    // files: a migration applied on the source is gone from the folder.
    let ladder = self::ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    fs_err::remove_file(ladder.project.path("migrations/0003_index.sql")).unwrap();
    blocked(&ladder, "files");

    // source drift: the source was changed by hand.
    let ladder = self::ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    ladder
        .project
        .db("local.sqlite")
        .execute_batch("ALTER TABLE users ADD COLUMN hacked TEXT")
        .unwrap();
    blocked(&ladder, "source drift");

    // lint: a pending migration controls a transaction.
    let ladder = self::ladder();
    ladder
        .project
        .migration("0004_tx.sql", "BEGIN;\nCREATE TABLE t (x);\nCOMMIT;\n");
    ladder.project.db("local.sqlite");
    let output = ladder.run_ok(&["promote", "--to", "local", "--format", "json"], 1);
    let json = output.json();
    let failed: Vec<&str> = json["rungs"][0]["plan"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["passed"] == false)
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["lint"]);

    // ancestry: the target has a migration its source lacks.
    let ladder = self::ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    ladder
        .project
        .migration("0004_hotfix.sql", "CREATE TABLE hotfix (x);\n");
    ladder.run_ok(&["apply", "staging"], 0);
    fs_err::remove_file(ladder.project.path("local.sqlite")).unwrap();
    ladder.run_ok(&["apply", "local"], 0);
    ladder.project.db("local.sqlite").execute_batch("DELETE FROM d1_migrations WHERE name = '0004_hotfix.sql'; DELETE FROM _d1ctl_migrations WHERE name = '0004_hotfix.sql'; DROP TABLE hotfix;").unwrap();
    blocked(&ladder, "ancestry");

    // order: the target has a later migration but lacks an earlier one.
    let ladder = self::ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    fs_err::rename(
        ladder.project.path("migrations/0002_posts.sql"),
        ladder.project.path("hold.sql"),
    )
    .unwrap();
    fs_err::write(
        ladder.project.path("migrations/0003_index.sql"),
        "CREATE TABLE other (x);\n",
    )
    .unwrap();
    ladder.run_ok(&["apply", "staging"], 0);
    fs_err::rename(
        ladder.project.path("hold.sql"),
        ladder.project.path("migrations/0002_posts.sql"),
    )
    .unwrap();
    fs_err::write(
        ladder.project.path("migrations/0003_index.sql"),
        "CREATE INDEX posts_user ON posts(user_id);\n",
    )
    .unwrap();
    ladder.staging.execute(STAGING, "DROP TABLE other; UPDATE _d1ctl_migrations SET sha256 = (SELECT sha256 FROM _d1ctl_migrations WHERE name = '0003_index.sql')").unwrap();
    let output = ladder.run(&["promote", "--to", "staging", "--format", "json"]);
    let json = output.json();
    let failed: Vec<&str> = json["rungs"][0]["plan"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["passed"] == false)
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"order"), "{json:#}");
    assert_eq!(output.code, 1);

    // lock: a live lease held by another machine.
    let ladder = self::ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    ladder
        .staging
        .execute(
            STAGING,
            "CREATE TABLE _d1ctl_lock (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, command TEXT NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);\
             INSERT INTO _d1ctl_lock VALUES (1, 'other-runner', 'ci-runner-7', 4242, 'promote --to staging', unixepoch(), unixepoch() + 600);",
        )
        .unwrap();
    blocked(&ladder, "lock");
    let status = ladder.run_ok(&["lock", "status", "staging"], 0);
    assert!(
        status.stdout.contains("locked by other-runner"),
        "{}",
        status.stdout
    );
    ladder.run_ok(&["lock", "release", "staging", "--id", "other-runner"], 0);
    ladder.run_ok(&["promote", "--to", "staging"], 0);
}

#[test]
fn an_expired_lease_is_taken_over() {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    ladder
        .staging
        .execute(
            STAGING,
            "CREATE TABLE _d1ctl_lock (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, command TEXT NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);\
             INSERT INTO _d1ctl_lock VALUES (1, 'gone-runner', 'ci-runner-7', 4242, 'promote --to staging', unixepoch() - 900, unixepoch() - 300);",
        )
        .unwrap();
    let output = ladder.run_ok(&["promote", "--to", "staging"], 0);
    assert!(
        output
            .stderr
            .contains("free (the lease of gone-runner expired)"),
        "{}",
        output.stderr
    );
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM _d1ctl_lock"),
        ["0"]
    );
}

#[test]
fn two_concurrent_promoters_exactly_one_applies() {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    // Slow requests make both runs overlap: each promotion takes several round trips.
    ladder.staging.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let spawn = || {
        ladder
            .command(&["promote", "--to", "staging"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let codes: Vec<i32> = outputs
        .iter()
        .map(|o| o.status.code().unwrap_or(-1))
        .collect();
    let stderr: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1], "{stderr:#?}");
    let loser = &stderr[codes.iter().position(|c| *c == 1).unwrap()];
    assert!(
        loser.contains("is locked by") || loser.contains("FAIL lock"),
        "{loser}"
    );
    assert_eq!(
        ladder.staging_rows("SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_posts.sql", "0003_index.sql"]
    );
}

/// Kills `promote` with SIGKILL while request `at` is in flight (the simulator counts a request
/// when it arrives, then waits out the latency), then reruns it.
fn killed_at(at: u64) {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "local"], 0);
    ladder.staging.reset_stats();
    ladder.staging.set_faults(Faults {
        latency_ms: 2_000,
        ..Faults::default()
    });
    let mut child: Child = ladder
        .command(&["promote", "--to", "staging"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ladder.staging.stats().total < at {
        assert!(
            Instant::now() < deadline,
            "request {at} never came: {:?}",
            ladder.staging.stats()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "promote ended before request {at}"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    ladder.staging.set_faults(Faults::default());

    let rerun = ladder.run_ok(&["promote", "--to", "staging"], 0);
    let names = ladder.staging_rows("SELECT name FROM d1_migrations ORDER BY id");
    assert_eq!(
        names,
        ["0001_users.sql", "0002_posts.sql", "0003_index.sql"],
        "killed at {at}: {}",
        rerun.stderr
    );
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM _d1ctl_migrations"),
        ["3"]
    );
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM _d1ctl_lock"),
        ["0"]
    );
    ladder.run_ok(&["drift", "local", "staging"], 0);
}

#[test]
fn killed_while_locking() {
    killed_at(2);
}

#[test]
fn killed_while_taking_the_bookmark() {
    killed_at(3);
}

#[test]
fn killed_during_the_second_migration() {
    killed_at(5);
}

#[test]
fn killed_while_verifying() {
    killed_at(7);
}

#[test]
fn rollback_restores_schema_and_data_on_both_backends() {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "staging", "--cascade"], 0);
    ladder
        .project
        .db("local.sqlite")
        .execute_batch("INSERT INTO users VALUES (1, 'a@b.c');")
        .unwrap();
    ladder
        .staging
        .execute(STAGING, "INSERT INTO users VALUES (1, 'a@b.c');")
        .unwrap();
    ladder
        .project
        .migration(
            "0004_drop.sql",
            "-- d1ctl:allow DS102 the rollback below restores it\nDROP TABLE posts;\nDELETE FROM users;\n",
        );
    ladder.run_ok(&["promote", "--to", "staging", "--cascade"], 0);
    assert_eq!(ladder.staging_rows("SELECT count(*) FROM users"), ["0"]);

    let output = ladder.run_ok(&["rollback", "staging", "--last"], 0);
    assert!(
        output
            .stderr
            .contains("undo with: d1ctl rollback staging --bookmark "),
        "{}",
        output.stderr
    );
    assert_eq!(ladder.staging_rows("SELECT email FROM users"), ["a@b.c"]);
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM sqlite_master WHERE name = 'posts'"),
        ["1"]
    );
    assert!(
        output
            .stderr
            .contains("`staging` records 3 applied migrations (the last is `0003_index.sql`)"),
        "{}",
        output.stderr
    );

    ladder.run_ok(&["rollback", "local", "--last"], 0);
    let db = ladder.project.db("local.sqlite");
    assert_eq!(rows(&db, "SELECT email FROM users"), ["a@b.c"]);
    assert_eq!(
        rows(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'posts'"
        ),
        ["1"]
    );
    // The state the rollback replaced is kept as a backup too.
    let backups = fs_err::read_dir(ladder.project.path(".d1ctl/backups"))
        .unwrap()
        .count();
    assert!(backups >= 3, "{backups}");
}

#[test]
fn a_protected_env_refuses_without_a_terminal_even_in_ci() {
    let ladder = ladder();
    ladder.run_ok(&["promote", "--to", "staging", "--cascade"], 0);
    let output = ladder
        .command(&["promote", "--to", "production"])
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "`production` is protected and there is no terminal to confirm on; nothing was written"
        ),
        "{stderr}"
    );
    assert_eq!(
        query(
            &ladder.production,
            PRODUCTION,
            "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
        ),
        ["0"]
    );
    ladder.run_ok(
        &[
            "rollback",
            "prod",
            "--bookmark",
            "00000000-00000000-00000000-00000000000000000000000000000000",
        ],
        1,
    );
}

#[test]
fn hooks_run_in_order_and_failures_stop_or_report() {
    let ladder = ladder();
    let hooks = "before = [\"echo before-1:$D1CTL_ENV >> hooks.log\", \"echo before-2 >> hooks.log\"]\nafter = [\"echo after-1 >> hooks.log\"]\n";
    ladder
        .project
        .config(&config(&ladder.staging, &ladder.production, hooks));
    ladder.run_ok(&["promote", "--to", "staging", "--cascade"], 0);
    assert_eq!(
        fs_err::read_to_string(ladder.project.path("hooks.log")).unwrap(),
        "before-1:staging\nbefore-2\nafter-1\n"
    );

    // A failing `before` hook stops before any write.
    ladder
        .project
        .migration("0004_more.sql", "CREATE TABLE more (x);\n");
    ladder.project.config(&config(
        &ladder.staging,
        &ladder.production,
        "before = [\"exit 3\"]\n",
    ));
    let output = ladder.run_ok(&["promote", "--to", "staging", "--cascade"], 1);
    assert!(
        output
            .stderr
            .contains("the before hook `exit 3` of `staging` failed"),
        "{}",
        output.stderr
    );
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM d1_migrations"),
        ["3"]
    );
    // `--no-hooks` skips them; a failing `after` hook is reported with exit 1, the promotion stays.
    ladder.project.config(&config(
        &ladder.staging,
        &ladder.production,
        "after = [\"false\"]\n",
    ));
    let output = ladder.run_ok(&["promote", "--to", "staging"], 1);
    assert!(
        output
            .stderr
            .contains("the after hook `false` of `staging` failed"),
        "{}",
        output.stderr
    );
    assert_eq!(
        ladder.staging_rows("SELECT count(*) FROM d1_migrations"),
        ["4"]
    );
}

#[test]
fn baseline_accepts_a_matching_database_and_refuses_a_drifted_one() {
    let ladder = ladder();
    ladder
        .staging
        .execute(
            STAGING,
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL); CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);",
        )
        .unwrap();
    let refused = ladder.run_ok(&["baseline", "staging"], 1);
    assert!(
        refused.stderr.contains("index posts_user: removed"),
        "{}",
        refused.stderr
    );
    assert!(
        ladder
            .staging_rows("SELECT name FROM sqlite_master WHERE name = 'd1_migrations'")
            .is_empty()
    );

    let output = ladder.run_ok(&["baseline", "staging", "--through", "0002_posts.sql"], 0);
    assert!(
        output
            .stderr
            .contains("recorded 2 migrations as applied: 0001_users.sql, 0002_posts.sql"),
        "{}",
        output.stderr
    );
    let status = ladder
        .run_ok(&["status", "staging", "--format", "json"], 0)
        .json();
    let migration_states: Vec<&str> = status["environments"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(migration_states, ["applied", "applied", "pending"]);
    ladder.run_ok(&["apply", "staging"], 0);
    ladder.run_ok(&["drift", "staging"], 0);
}

/// The README's first command, on a copy of the repository's example: the whole ladder through
/// the bundled simulator, then nothing to do.
#[test]
fn the_readme_quickstart_promotes_the_example_up_the_whole_ladder() {
    let project = Project::empty();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    fs_err::copy(
        root.join("environments.toml"),
        project.path("environments.toml"),
    )
    .unwrap();
    crate::common::copy_dir(&root.join("migrations"), &project.path("migrations"));
    let first = project.run_ok(&["promote", "--to", "production", "--cascade", "--yes"], 0);
    for rung in ["local", "dev", "staging", "production"] {
        assert!(
            first
                .stderr
                .contains(&format!("verified: `{rung}` now has the same schema as")),
            "{rung}:\n{}",
            first.stderr
        );
    }
    assert!(
        first
            .stderr
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("rollback: d1ctl rollback production --bookmark ")
    );
    let second = project.run_ok(&["promote", "--to", "production", "--cascade", "--yes"], 0);
    assert_eq!(
        second.stderr.matches("nothing to do").count(),
        4,
        "{}",
        second.stderr
    );
    let status = project.run_ok(&["status", "--format", "json"], 0).json();
    for env in status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] != "wrangler-local")
    {
        assert!(
            env["migrations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["state"] == "applied"),
            "{env:#}"
        );
    }
}
