//! d1 environments over real HTTP against the bundled simulator on 127.0.0.1, port 0.

use d1ctl::sim::{Faults, SimConfig, Simulator};

use crate::common::{Output, Project, sim_rows};

const TOKEN: &str = "sim-test-token-6d1f0e";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const STAGING: &str = "22222222-2222-4222-8222-222222222222";
const PRODUCTION: &str = "44444444-4444-4444-8444-444444444444";

struct Remote {
    sim: Simulator,
    project: Project,
}

fn config(extra: &str) -> String {
    format!(
        "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
         [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\n{extra}\n\
         [env.production]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{PRODUCTION}\"\ndatabase_name = \"app-production\"\n"
    )
}

fn remote() -> Remote {
    let sim = Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec![TOKEN.to_owned()],
        databases: vec![
            ("app-staging".to_owned(), STAGING.to_owned()),
            ("app-production".to_owned(), PRODUCTION.to_owned()),
        ],
    })
    .expect("start the simulator");
    let project = Project::new();
    project.config(&config(""));
    project
        .migration("0001_users.sql", "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n")
        .migration(
            "0002_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\nCREATE INDEX posts_user ON posts(user_id);\n",
        );
    Remote { sim, project }
}

impl Remote {
    /// Runs d1ctl pointed at the simulator with the token in the process environment.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[("CLOUDFLARE_API_TOKEN", TOKEN)])
    }

    fn run_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut command = self.project.command(args);
        command.env("CLOUDFLARE_API_BASE_URL", self.sim.base_url());
        for (name, value) in vars {
            command.env(name, value);
        }
        Output::of(&mut command)
    }

    fn run_ok(&self, args: &[&str], code: i32) -> Output {
        self.run(args).expect_code(code, args)
    }

    fn requests(&self) -> u64 {
        self.sim.stats().total
    }

    fn rows(&self, database: &str, sql: &str) -> Vec<String> {
        sim_rows(&self.sim, database, sql)
    }
}

#[test]
fn apply_and_status_over_http_within_the_request_budget() {
    let remote = remote();
    let apply = remote.run_ok(&["apply", "staging"], 0);
    assert!(
        apply
            .stderr
            .contains(&format!("target: staging (d1, app-staging {STAGING}, API redirected by CLOUDFLARE_API_BASE_URL to {})", remote.sim.base_url())),
        "{}",
        apply.stderr
    );
    // k = 2 migrations on a fresh database: get database, lock, the re-read under the lock
    // (2: the ledgers are not there yet), bookmark, 2 units, release-and-verify: k + 6.
    assert_eq!(remote.requests(), 2 + 6, "{:?}", remote.sim.stats());
    assert_eq!(
        remote.rows(STAGING, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_posts.sql"]
    );

    remote.sim.reset_stats();
    let status = remote
        .run_ok(&["status", "staging", "--format", "json"], 0)
        .json();
    assert_eq!(
        remote.requests(),
        1,
        "status reads every ledger in one request"
    );
    assert_eq!(status["environments"][0]["backend"], "d1");
    assert_eq!(
        status["environments"][0]["migrations"][1]["state"],
        "applied"
    );

    remote.sim.reset_stats();
    let again = remote.run_ok(&["apply", "staging"], 0);
    assert!(
        again.stderr.contains("nothing to apply"),
        "{}",
        again.stderr
    );
    assert_eq!(remote.requests(), 2, "get database + ledger read");
}

#[test]
fn apply_of_k_migrations_to_a_tracked_database_takes_k_plus_6_requests() {
    let remote = remote();
    remote.run_ok(&["apply", "staging"], 0);
    remote
        .project
        .migration("0003_a.sql", "CREATE TABLE a (x);\n")
        .migration("0004_b.sql", "CREATE TABLE b (x);\n")
        .migration("0005_c.sql", "CREATE TABLE c (x);\n");
    remote.sim.reset_stats();
    remote.run_ok(&["apply", "staging"], 0);
    // Get database, read, lock, re-read under the lock, bookmark, k units, release-and-verify.
    assert_eq!(remote.requests(), 3 + 6, "{:?}", remote.sim.stats());
}

#[test]
fn status_of_several_envs_makes_one_request_each() {
    let remote = remote();
    remote.run_ok(&["apply", "staging"], 0);
    remote.project.config(&config("").replace(
        "database_name = \"app-production\"\n",
        "database_name = \"app-production\"\nprotected = true\n",
    ));
    // Production is tracked too (applied by hand with wrangler's ledger only).
    remote
        .sim
        .execute(PRODUCTION, "CREATE TABLE \"d1_migrations\"(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL); CREATE TABLE _d1ctl_migrations (name TEXT PRIMARY KEY, sha256 TEXT, sha256_lf TEXT, applied_at TEXT, applied_by TEXT, duration_ms INTEGER, statements INTEGER, d1ctl_version TEXT);")
        .unwrap();
    remote.sim.reset_stats();
    // The variable redirects protected production: its token goes there only with `--yes`.
    let output = remote.run_ok(&["status", "staging", "production", "--yes"], 0);
    assert_eq!(remote.requests(), 2, "{:?}", remote.sim.stats());
    assert!(
        output.stdout.contains("0002_posts.sql  applied  pending"),
        "{}",
        output.stdout
    );
}

#[test]
fn a_trigger_migration_goes_through_batch_whole() {
    let remote = remote();
    remote.project.migration(
        "0003_trigger.sql",
        "CREATE TABLE audit (post_id INTEGER, note TEXT);\n\
         CREATE TRIGGER posts_audit AFTER INSERT ON posts BEGIN\n  INSERT INTO audit VALUES (NEW.id, 'created; checked');\n  UPDATE audit SET note = note || '!' WHERE post_id = NEW.id;\nEND;\n",
    );
    remote.run_ok(&["apply", "staging"], 0);
    remote
        .sim
        .execute(
            STAGING,
            "INSERT INTO users VALUES (1, 'a@b'); INSERT INTO posts VALUES (7, 1);",
        )
        .unwrap();
    assert_eq!(
        remote.rows(STAGING, "SELECT post_id, note FROM audit"),
        ["7|created; checked!"]
    );
}

#[test]
fn the_sql_request_mode_applies_atomically_too() {
    let remote = remote();
    remote.project.config(&config("request_mode = \"sql\"\n"));
    remote.project.migration(
        "0003_bad.sql",
        "CREATE TABLE c (x);\nINSERT INTO nope VALUES (1);\n",
    );
    let output = remote.run_ok(&["apply", "staging"], 1);
    assert!(
        output.stderr.contains("no such table: nope"),
        "{}",
        output.stderr
    );
    assert_eq!(
        remote.rows(
            STAGING,
            "SELECT count(*) FROM sqlite_master WHERE name = 'c'"
        ),
        ["0"]
    );
    assert_eq!(
        remote.rows(STAGING, "SELECT count(*) FROM d1_migrations"),
        ["2"]
    );
}

#[test]
fn a_sql_error_reaches_the_user_with_its_code() {
    let remote = remote();
    remote
        .project
        .migration("0003_bad.sql", "CREATE TABLE c (x);\nSELEC 1;\n");
    let output = remote.run_ok(&["apply", "staging"], 1);
    assert!(
        output.stderr.contains("migration `0003_bad.sql` failed"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("syntax error"), "{}", output.stderr);
    assert!(
        output.stderr.contains("was rolled back and left no trace"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("its tables and views now: posts, users"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_refused_token_is_code_10000_with_a_hint_and_never_printed() {
    let remote = remote();
    let wrong = "wrong-token-7c2a91";
    let output = remote.run_with(
        &["apply", "staging", "-v"],
        &[("CLOUDFLARE_API_TOKEN", wrong)],
    );
    assert_eq!(output.code, 2, "{}", output.stderr);
    assert!(output.stderr.contains("[code: 10000]"), "{}", output.stderr);
    assert!(
        output.stderr.contains("hint: the API token was refused"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains(wrong) && !output.stdout.contains(wrong),
        "token leaked:\n{}",
        output.stderr
    );
}

#[test]
fn a_malformed_request_is_code_7400_with_a_hint() {
    let remote = remote();
    remote.sim.set_faults(Faults {
        reject_as_malformed: 1,
        ..Faults::default()
    });
    let output = remote.run_ok(&["status", "staging"], 2);
    assert!(
        output.stderr.contains(
            "The request is malformed: simulated rejection of the request's shape [code: 7400]"
        ),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains(
            "hint: D1 refused the request's shape; run with `-v` and report it as a d1ctl bug"
        ),
        "{}",
        output.stderr
    );
}

#[test]
fn an_unknown_database_is_code_7404_with_a_hint() {
    let remote = remote();
    remote
        .project
        .config(&config("").replace(STAGING, "99999999-9999-4999-8999-999999999999"));
    let output = remote.run_ok(&["apply", "staging"], 2);
    assert!(output.stderr.contains("[code: 7404]"), "{}", output.stderr);
    assert!(
        output.stderr.contains("hint: check `database_id`"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_database_with_another_name_is_refused() {
    let remote = remote();
    remote
        .project
        .config(&config("").replace("\"app-staging\"", "\"app-stagign\""));
    let output = remote.run_ok(&["apply", "staging"], 2);
    assert!(
        output.stderr.contains(&format!("database {STAGING} is named `app-staging` on Cloudflare, but environments.toml expects `app-stagign`")),
        "{}",
        output.stderr
    );
    assert_eq!(
        remote.rows(
            STAGING,
            "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
        ),
        ["0"]
    );
}

#[test]
fn rate_limits_are_retried_after_the_servers_delay() {
    let remote = remote();
    remote.sim.set_faults(Faults {
        rate_limit_burst: 2,
        retry_after_secs: 0,
        ..Faults::default()
    });
    remote.run_ok(&["apply", "staging"], 0);
    assert_eq!(
        remote.requests(),
        8 + 2,
        "two 429s, then the eight requests of a fresh apply"
    );
    assert_eq!(
        remote.rows(STAGING, "SELECT count(*) FROM d1_migrations"),
        ["2"]
    );
}

#[test]
fn a_server_error_before_commit_is_verified_and_nothing_runs_twice() {
    let remote = remote();
    remote.sim.set_faults(Faults {
        fail_before_commit: 1,
        // Past the lock and the re-read under it: the fault hits the first unit.
        skip_sql_requests: 3,
        ..Faults::default()
    });
    let output = remote.run_ok(&["apply", "staging"], 1);
    assert!(
        output
            .stderr
            .contains("ledger shows `0001_users.sql` did not commit"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("not attempted: 0002_posts.sql"),
        "{}",
        output.stderr
    );
    assert_eq!(
        remote.rows(
            STAGING,
            "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
        ),
        ["0"]
    );

    remote.run_ok(&["apply", "staging"], 0);
    assert_eq!(
        remote.rows(STAGING, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_posts.sql"]
    );
    assert_eq!(
        remote.rows(STAGING, "SELECT count(*) FROM _d1ctl_migrations"),
        ["2"]
    );
}

#[test]
fn a_server_error_after_commit_is_recognised_from_the_ledger() {
    let remote = remote();
    remote.sim.set_faults(Faults {
        fail_after_commit: 1,
        // Past the lock and the re-read under it: the fault hits the first unit.
        skip_sql_requests: 3,
        ..Faults::default()
    });
    let output = remote.run_ok(&["apply", "staging"], 0);
    assert!(
        output.stderr.contains(
            "the response for `0001_users.sql` was lost; `staging`'s ledger shows it committed"
        ),
        "{}",
        output.stderr
    );
    assert_eq!(
        remote.rows(STAGING, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_posts.sql"]
    );
}

#[test]
fn a_dropped_connection_after_commit_is_recognised_from_the_ledger() {
    let remote = remote();
    remote.sim.set_faults(Faults {
        drop_after_commit: 1,
        // Past the lock and the re-read under it: the fault hits the first unit.
        skip_sql_requests: 3,
        ..Faults::default()
    });
    let output = remote.run_ok(&["apply", "staging"], 0);
    assert!(output.stderr.contains("was lost"), "{}", output.stderr);
    assert_eq!(
        remote.rows(STAGING, "SELECT count(*) FROM d1_migrations"),
        ["2"]
    );
    assert_eq!(
        remote.rows(STAGING, "SELECT count(*) FROM _d1ctl_migrations"),
        ["2"]
    );
}

#[test]
fn oversized_statements_and_transactions_are_refused_before_anything_is_sent() {
    let remote = remote();
    let big = format!(
        "INSERT INTO users (email) VALUES ('{}');\n",
        "x".repeat(100_001)
    );
    remote
        .project
        .migration("0003_big.sql", &format!("CREATE TABLE big (x);\n{big}"));
    remote.sim.reset_stats();
    let output = remote.run_ok(&["apply", "staging"], 2);
    assert!(output.stderr.contains("migrations/0003_big.sql:2: statement 2 is 100039 bytes; D1 refuses statements over 100000 bytes"), "{}", output.stderr);
    // Only the reads that find what is pending: nothing was written.
    assert_eq!(
        remote
            .sim
            .stats()
            .by_endpoint
            .get("raw")
            .copied()
            .unwrap_or(0)
            + remote
                .sim
                .stats()
                .by_endpoint
                .get("query")
                .copied()
                .unwrap_or(0),
        0
    );
    assert_eq!(
        remote.rows(
            STAGING,
            "SELECT count(*) FROM sqlite_master WHERE name = 'users'"
        ),
        ["0"]
    );
}

#[test]
fn a_missing_token_lists_every_place_looked() {
    let remote = remote();
    let output = remote.run_with(&["status", "staging"], &[]);
    assert_eq!(output.code, 2, "{}", output.stderr);
    for place in [
        "CLOUDFLARE_D1_TOKEN_STAGING",
        "CLOUDFLARE_D1_TOKEN",
        "CLOUDFLARE_API_TOKEN",
        ".dev.vars",
        ".env",
    ] {
        assert!(
            output.stderr.contains(place),
            "`{place}` not listed:\n{}",
            output.stderr
        );
    }
}

#[test]
fn the_token_can_come_from_dev_vars_and_the_more_specific_file_wins() {
    let remote = remote();
    remote
        .project
        .write(".dev.vars", "CLOUDFLARE_API_TOKEN=wrong-generic-token\n");
    remote.project.write(
        ".dev.vars.staging",
        format!("CLOUDFLARE_D1_TOKEN=\"{TOKEN}\"\n"),
    );
    let output = remote.run_with(&["status", "staging", "-v"], &[]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    assert!(
        output.stderr.contains(".dev.vars.staging"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains(TOKEN),
        "token leaked:\n{}",
        output.stderr
    );
}

#[test]
fn the_token_can_come_from_dot_env_when_nothing_else_has_one() {
    let remote = remote();
    remote.project.write(
        ".env",
        format!("# local secrets\nCLOUDFLARE_API_TOKEN='{TOKEN}'\n"),
    );
    let output = remote.run_with(&["status", "staging", "-v"], &[]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    assert!(output.stderr.contains(".env"), "{}", output.stderr);
    assert!(
        !output.stderr.contains(TOKEN),
        "token leaked:\n{}",
        output.stderr
    );
}

#[test]
fn the_process_environment_beats_dev_vars() {
    let remote = remote();
    remote
        .project
        .write(".dev.vars", format!("CLOUDFLARE_API_TOKEN={TOKEN}\n"));
    let output = remote.run_with(
        &["status", "staging"],
        &[("CLOUDFLARE_D1_TOKEN_STAGING", "env-wins-but-is-wrong")],
    );
    assert_eq!(
        output.code, 2,
        "the wrong token from the environment must be the one used:\n{}",
        output.stderr
    );
    assert!(output.stderr.contains("[code: 10000]"), "{}", output.stderr);
}

#[test]
fn a_token_env_variable_named_in_the_table_is_read() {
    let remote = remote();
    remote
        .project
        .config(&config("token_env = \"STAGING_D1_SECRET\"\n"));
    let output = remote.run_with(&["status", "staging"], &[("STAGING_D1_SECRET", TOKEN)]);
    assert_eq!(output.code, 0, "{}", output.stderr);
}

#[test]
fn the_repository_example_runs_offline_on_the_bundled_simulator() {
    let project = Project::empty();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    fs_err::copy(
        root.join("environments.toml"),
        project.path("environments.toml"),
    )
    .unwrap();
    crate::common::copy_dir(&root.join("migrations"), &project.path("migrations"));
    project.run_ok(&["apply", "local"], 0);
    let dev = project.run_ok(&["apply", "dev"], 0);
    assert!(
        dev.stderr
            .contains("target: dev (simulator) (d1, example-dev "),
        "{}",
        dev.stderr
    );
    let status = project
        .run_ok(&["status", "dev", "--format", "json"], 0)
        .json();
    let migrations = status["environments"][0]["migrations"].as_array().unwrap();
    assert!(
        !migrations.is_empty() && migrations.iter().all(|m| m["state"] == "applied"),
        "{status:#}"
    );
    // The simulator keeps its data across runs.
    let again = project.run_ok(&["apply", "dev"], 0);
    assert!(
        again.stderr.contains("nothing to apply"),
        "{}",
        again.stderr
    );
    project.run_ok(&["apply", "production"], 2);
}

fn client_for(sim: &Simulator, database_id: &str, name: &str) -> d1ctl::d1::client::D1Backend {
    use d1ctl::d1::client::{D1Backend, D1Client, D1Config, RequestMode};
    D1Backend::new(
        D1Client::new(D1Config {
            base_url: sim.base_url(),
            account_id: ACCOUNT.to_owned(),
            database_id: database_id.to_owned(),
            database_name: name.to_owned(),
            token: d1ctl::credentials::Secret::new(TOKEN.to_owned()),
            mode: RequestMode::Batch,
        })
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_takes_bookmarks_restores_them_and_streams_exports() {
    use d1ctl::backend::{Backend, Statement};

    let remote = remote();
    let backend = client_for(&remote.sim, STAGING, "app-staging");
    let client = backend.client();
    backend
        .batch(&[
            Statement::new("CREATE TABLE t (x TEXT)"),
            Statement::new("INSERT INTO t VALUES ('one')"),
        ])
        .await
        .unwrap();
    let before = client.bookmark().await.unwrap();
    backend
        .batch(&[Statement::new("INSERT INTO t VALUES ('two\nlines')")])
        .await
        .unwrap();

    let dump = remote.project.path("staging.sql");
    let polls = std::sync::atomic::AtomicUsize::new(0);
    let bytes = client
        .export(d1ctl::d1::api::DumpOptions::default(), &dump, &|_| {
            polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .unwrap();
    let text = fs_err::read_to_string(&dump).unwrap();
    assert_eq!(bytes, u64::try_from(text.len()).unwrap());
    assert!(
        polls.into_inner() >= 2,
        "the export answers `active` before `complete`"
    );
    assert!(
        text.starts_with("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (x TEXT);"),
        "{text}"
    );
    assert!(
        text.contains("INSERT INTO \"t\" (\"x\") VALUES(replace('two\\nlines','\\n',char(10)));"),
        "{text}"
    );

    let restored = client.restore(&before).await.unwrap();
    assert!(!restored.previous_bookmark.is_empty());
    assert_eq!(remote.rows(STAGING, "SELECT x FROM t"), ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_off_loopback() {
    use d1ctl::d1::client::{D1Client, D1Config, RequestMode};
    let error = D1Client::new(D1Config {
        base_url: "http://192.0.2.1/client/v4".to_owned(),
        account_id: ACCOUNT.to_owned(),
        database_id: STAGING.to_owned(),
        database_name: "app-staging".to_owned(),
        token: d1ctl::credentials::Secret::new(TOKEN.to_owned()),
        mode: RequestMode::Batch,
    })
    .err()
    .expect("refused");
    assert!(error.to_string().contains("only for loopback"), "{error}");
}

/// Hex of every value of `t` in table `a`, in insertion order: bytes, not their rendering.
const LITERAL_BYTES: &str = "SELECT hex(t) FROM a ORDER BY rowid";

#[test]
fn a_crlf_file_stores_its_literals_byte_for_byte_on_both_backends() {
    let remote = remote();
    remote.project.migration(
        "0003_crlf.sql",
        "CREATE TABLE a (t TEXT);\r\n\
         INSERT INTO a(t) VALUES('l1\r\nl2');\r\n\
         INSERT INTO a(t) VALUES('lone\rcr');\r\n\
         CREATE TRIGGER a_copy AFTER INSERT ON a WHEN NEW.t = 'go' BEGIN\r\n  INSERT INTO a(t) VALUES('t1\r\nt2');\r\nEND;\r\n\
         INSERT INTO a(t) VALUES('go');\r\n",
    );
    let expected: Vec<String> = ["l1\r\nl2", "lone\rcr", "go", "t1\r\nt2"]
        .iter()
        .map(|text| hex_upper(text.as_bytes()))
        .collect();
    remote.run_ok(&["apply", "local"], 0);
    let local = crate::common::rows(&remote.project.db("local.sqlite"), LITERAL_BYTES);
    remote.run_ok(&["apply", "staging"], 0);
    assert_eq!(local, expected);
    assert_eq!(remote.rows(STAGING, LITERAL_BYTES), expected);
    // The checksums are the file's: both ledgers agree with the folder.
    let status = remote.run_ok(&["status", "local", "staging"], 0);
    assert!(!status.stdout.contains("checksum"), "{}", status.stdout);
}

#[test]
fn in_sql_request_mode_a_last_line_comment_cannot_swallow_the_ledger_rows() {
    let remote = remote();
    remote.project.config(&config("request_mode = \"sql\"\n"));
    remote.project.migration(
        "0003_tail.sql",
        "CREATE TABLE tail (x);\nINSERT INTO tail VALUES (1) -- the last statement has no `;`",
    );
    remote.run_ok(&["apply", "staging"], 0);
    assert_eq!(remote.rows(STAGING, "SELECT x FROM tail"), ["1"]);
    assert_eq!(
        remote.rows(STAGING, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_posts.sql", "0003_tail.sql"]
    );
    assert_eq!(
        remote.rows(
            STAGING,
            "SELECT name, statements FROM _d1ctl_migrations ORDER BY name"
        ),
        ["0001_users.sql|1", "0002_posts.sql|2", "0003_tail.sql|2"]
    );
}

#[test]
fn in_sql_request_mode_a_crlf_trigger_is_refused_not_rewritten() {
    let remote = remote();
    remote.project.config(&config("request_mode = \"sql\"\n"));
    remote.run_ok(&["apply", "staging"], 0);
    remote
        .sim
        .execute(
            STAGING,
            "INSERT INTO users (id, email) VALUES (1, 'a@example.com');",
        )
        .unwrap();
    remote.project.migration(
        "0003_touch.sql",
        "CREATE TRIGGER users_touch AFTER UPDATE ON users\r\nBEGIN\r\n  SELECT 1;\r\nEND;\r\n",
    );
    let output = remote.run_ok(&["apply", "staging"], 1);
    assert!(
        output
            .stderr
            .contains("D1's splitter of `sql` requests breaks on"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("`0003_touch.sql` was rolled back and left no trace"),
        "{}",
        output.stderr
    );
    assert_eq!(
        remote.rows(
            STAGING,
            "SELECT count(*) FROM sqlite_master WHERE name = 'users_touch'"
        ),
        ["0"]
    );
    assert_eq!(
        remote.rows(STAGING, "SELECT email FROM users"),
        ["a@example.com"]
    );
}

#[test]
fn an_unterminated_literal_is_refused_with_its_line_before_anything_is_sent() {
    let remote = remote();
    remote.project.config(&config("request_mode = \"sql\"\n"));
    remote.project.migration(
        "0003_open.sql",
        "CREATE TABLE open (x);\r\nINSERT INTO open VALUES ('it''s;\r\n);\r\n",
    );
    remote.sim.reset_stats();
    let output = remote.run_ok(&["apply", "staging"], 2);
    assert!(
        output
            .stderr
            .contains("0003_open.sql` has an unterminated string literal (`'`) starting on line 2"),
        "{}",
        output.stderr
    );
    assert_eq!(remote.requests(), 0, "{:?}", remote.sim.stats());
}

fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}
