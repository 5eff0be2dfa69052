//! Run-once data steps: chunked backfills on SQLite and over HTTP, exactly once per env, the
//! ladder's order, interrupted commands and edited steps. Every target holds rows.

use d1ctl::sim::{SimConfig, Simulator};

use crate::common::{Output, Project, rows, sim_rows};

const TOKEN: &str = "sim-test-token-5a1c2e";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const STAGING: &str = "22222222-2222-4222-8222-222222222222";
const PRODUCTION: &str = "44444444-4444-4444-8444-444444444444";

const FILL: &str = "[[step]]\nname = \"fill-slugs\"\nafter = \"0002_slug.sql\"\nsql = \"steps/fill_slugs.sql\"\nchunked = true\n";
const FILL_SQL: &str = "-- 500 rows a request: one UPDATE of the whole table would pass D1's 30 s limit\nUPDATE posts SET slug = lower(title) WHERE id IN (SELECT id FROM posts WHERE slug IS NULL ORDER BY id LIMIT 500);\n";

struct Ladder {
    sim: Simulator,
    project: Project,
}

fn config(steps: &str) -> String {
    format!(
        "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
         [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\n\n\
         [env.production]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{PRODUCTION}\"\ndatabase_name = \"app-production\"\nprotected = true\n\n{steps}"
    )
}

/// local → staging → production (both on the simulator), posts with a `slug` to fill.
fn ladder(steps: &str) -> Ladder {
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
    project
        .config(&config(steps))
        .migration(
            "0001_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL);\nCREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);\n",
        )
        .migration("0002_slug.sql", "ALTER TABLE posts ADD COLUMN slug TEXT;\n")
        .write("steps/fill_slugs.sql", FILL_SQL);
    Ladder { sim, project }
}

/// `n` posts (and the `visits` counter at 0), as one script.
fn posts_script(n: usize) -> String {
    let mut sql = String::from("INSERT INTO counters VALUES ('visits', 0);\n");
    for chunk in (1..=n).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, 'Post {i}')")).collect();
        sql.push_str(&format!(
            "INSERT INTO posts (id, title) VALUES {};\n",
            values.join(", ")
        ));
    }
    sql
}

impl Ladder {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = self.project.command(args);
        command
            .env("CLOUDFLARE_API_BASE_URL", self.sim.base_url())
            .env("CLOUDFLARE_API_TOKEN", TOKEN);
        Output::of(&mut command)
    }

    fn run_ok(&self, args: &[&str], code: i32) -> Output {
        self.run(args).expect_code(code, args)
    }

    /// Applies the migrations to local and fills it with `n` posts.
    fn local_with_posts(&self, n: usize) {
        self.run_ok(&["apply", "local"], 0);
        self.project
            .db("local.sqlite")
            .execute_batch(&posts_script(n))
            .unwrap();
    }

    /// Promotes the migrations to a simulated env (the rung below has them) and fills it.
    fn remote_with_posts(&self, database: &str, env: &str, n: usize) {
        self.run_ok(&["promote", "--to", env, "--yes"], 0);
        self.sim.execute(database, &posts_script(n)).unwrap();
    }

    fn local(&self, sql: &str) -> Vec<String> {
        rows(&self.project.db("local.sqlite"), sql)
    }
}

const UNFILLED: &str = "SELECT count(*) FROM posts WHERE slug IS NULL OR slug <> lower(title)";

/// The `-v` progress lines of a run: one per batch.
fn progress_lines(output: &Output) -> Vec<&str> {
    output
        .stderr
        .lines()
        .filter(|line| line.contains("rows done in"))
        .collect()
}

#[test]
fn a_chunked_backfill_of_10k_rows_on_sqlite_runs_500_rows_a_batch_and_only_once() {
    let ladder = ladder(FILL);
    ladder.local_with_posts(10_000);
    let output = ladder.run_ok(
        &[
            "step",
            "run",
            "fill-slugs",
            "--env",
            "local",
            "-v",
            "--format",
            "json",
        ],
        0,
    );
    assert_eq!(ladder.local(UNFILLED), ["0"]);
    assert_eq!(ladder.local("SELECT count(*) FROM posts"), ["10000"]);
    let report = output.json();
    assert_eq!(report["outcome"], "ran");
    assert_eq!(report["estimated_rows"], 10_000);
    assert_eq!(report["record"]["rows"], 10_000);
    assert_eq!(report["record"]["batches"], 20);
    // 20 batches of 500 and the one that finds nothing left and records the finish.
    assert_eq!(report["requests"], 21);
    assert_eq!(report["verified"], true);
    let progress = progress_lines(&output);
    assert_eq!(progress.len(), 21, "{}", output.stderr);
    assert!(
        progress[0].contains("500 rows done in 1 batch (of 10000"),
        "{}",
        progress[0]
    );
    assert!(
        progress[19].contains("10000 rows done in 20 batches"),
        "{}",
        progress[19]
    );
    assert_eq!(
        ladder.local("SELECT name, kind, rows, batches, run_by FROM _d1ctl_steps"),
        [format!(
            "fill-slugs|chunked|10000|20|tester@{}",
            gethostname::gethostname().to_string_lossy()
        )]
    );

    // A second run finds it finished and writes nothing (no backup either).
    let backups = ladder.project.files().len();
    let again = ladder.run_ok(&["step", "run", "fill-slugs", "--env", "local"], 0);
    assert!(
        again
            .stderr
            .contains("already finished on `local` (10000 rows in 20 batches"),
        "{}",
        again.stderr
    );
    assert_eq!(ladder.project.files().len(), backups);
}

#[test]
fn a_chunked_backfill_over_http_is_one_request_per_batch() {
    let ladder = ladder("");
    ladder.local_with_posts(3);
    ladder.remote_with_posts(STAGING, "staging", 10_000);
    ladder.project.config(&config(FILL));
    ladder.run_ok(&["step", "run", "fill-slugs", "--env", "local"], 0);
    ladder.sim.reset_stats();
    let output = ladder.run_ok(
        &[
            "step",
            "run",
            "fill-slugs",
            "--env",
            "staging",
            "-v",
            "--format",
            "json",
        ],
        0,
    );
    assert_eq!(
        sim_rows(&ladder.sim, STAGING, UNFILLED),
        ["0"],
        "{}",
        output.stderr
    );
    let report = output.json();
    assert_eq!(report["record"]["rows"], 10_000);
    assert_eq!(report["record"]["batches"], 20);
    assert_eq!(report["requests"], 21);
    assert_eq!(progress_lines(&output).len(), 21);
    // Get database; the step's read (ledgers, its record, the count); lock; the same read
    // under the lock; bookmark; 21 batches; release-and-verify (with the count of rows left).
    assert_eq!(
        ladder.sim.stats().total,
        1 + 3 + 1 + 3 + 1 + 21 + 1,
        "{:?}",
        ladder.sim.stats()
    );
    assert_eq!(
        sim_rows(
            &ladder.sim,
            STAGING,
            "SELECT rows, batches, finished_at IS NOT NULL FROM _d1ctl_steps"
        ),
        ["10000|20|1"]
    );
}

#[test]
fn promote_runs_a_step_once_per_env_and_only_after_the_rung_below_finished_it() {
    let counter =
        "[[step]]\nname = \"count-visit\"\nafter = \"0001_posts.sql\"\nsql = \"steps/count.sql\"\n";
    let ladder = ladder("");
    ladder.local_with_posts(20);
    ladder.remote_with_posts(STAGING, "staging", 30);
    ladder.remote_with_posts(PRODUCTION, "production", 40);
    // Not idempotent: a second run would count twice.
    ladder
        .project
        .write(
            "steps/count.sql",
            "UPDATE counters SET n = n + 1 WHERE name = 'visits';\nINSERT INTO counters SELECT 'post-' || id, 1 FROM posts WHERE id <= 2;\n",
        )
        .config(&config(&format!("{FILL}\n{counter}")));
    let visits = "SELECT n FROM counters WHERE name = 'visits'";

    // Production first: staging has not run either step, so production waits for it.
    let waits = ladder.run_ok(&["promote", "--to", "production", "--yes"], 0);
    assert!(
        waits
            .stderr
            .contains("step `fill-slugs` waits on `production`: `staging` has not finished it"),
        "{}",
        waits.stderr
    );
    assert_eq!(sim_rows(&ladder.sim, PRODUCTION, visits), ["0"]);
    assert_eq!(sim_rows(&ladder.sim, PRODUCTION, UNFILLED), ["40"]);

    ladder.run_ok(&["promote", "--to", "staging", "--cascade", "--yes"], 0);
    assert_eq!(ladder.local(visits), ["1"]);
    assert_eq!(ladder.local(UNFILLED), ["0"]);
    assert_eq!(sim_rows(&ladder.sim, STAGING, visits), ["1"]);
    assert_eq!(sim_rows(&ladder.sim, STAGING, UNFILLED), ["0"]);

    // The plan of production lists both with their estimates; then promote runs them once.
    let plan = ladder.run_ok(&["plan", "--to", "production", "--yes"], 0);
    assert!(
        plan.stderr
            .contains("fill-slugs (chunked, after 0002_slug.sql): runs, about 40 rows"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr
            .contains("count-visit (sql, after 0001_posts.sql): runs, about 3 rows"),
        "{}",
        plan.stderr
    );
    let promoted = ladder.run_ok(
        &["promote", "--to", "production", "--yes", "--format", "json"],
        0,
    );
    let rung = &promoted.json()["rungs"][0];
    assert_eq!(rung["step_runs"][0]["outcome"], "ran");
    assert_eq!(rung["step_runs"][1]["record"]["rows"], 3);
    assert_eq!(sim_rows(&ladder.sim, PRODUCTION, visits), ["1"]);
    assert_eq!(sim_rows(&ladder.sim, PRODUCTION, UNFILLED), ["0"]);

    // Again, along the whole ladder: nothing runs twice.
    ladder.sim.reset_stats();
    let again = ladder.run_ok(&["promote", "--to", "production", "--cascade", "--yes"], 0);
    assert!(!again.stderr.contains("rollback point"), "{}", again.stderr);
    assert_eq!(ladder.local(visits), ["1"]);
    assert_eq!(sim_rows(&ladder.sim, STAGING, visits), ["1"]);
    assert_eq!(sim_rows(&ladder.sim, PRODUCTION, visits), ["1"]);
    assert_eq!(
        sim_rows(&ladder.sim, PRODUCTION, "SELECT count(*) FROM counters"),
        ["3"]
    );

    // `--yes`: production is protected, and the test redirects its API to the simulator.
    let status = ladder.run_ok(&["status", "--yes"], 0);
    assert!(
        status
            .stdout
            .contains("count-visit     done     done     done"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_step_waits_while_its_env_lacks_its_migration() {
    let ladder = ladder("");
    ladder.local_with_posts(5);
    ladder
        .project
        .migration(
            "0003_tags.sql",
            "CREATE TABLE tags (post_id INTEGER, tag TEXT);\n",
        )
        .write(
            "steps/tag.sql",
            "INSERT INTO tags SELECT id, 'new' FROM posts;\n",
        )
        .config(&config(
            "[[step]]\nname = \"tag-all\"\nafter = \"0003_tags.sql\"\nsql = \"steps/tag.sql\"\n",
        ));
    let files = ladder.project.files();
    let output = ladder.run_ok(&["step", "run", "tag-all", "--env", "local"], 1);
    assert!(
        output
            .stderr
            .contains("step `tag-all` waits on `local`: `local` does not have `0003_tags.sql` yet"),
        "{}",
        output.stderr
    );
    assert_eq!(ladder.project.files(), files, "nothing written");
    let status = ladder.run_ok(&["status", "local"], 0);
    assert!(
        status
            .stdout
            .contains("waiting tag-all (sql, after 0003_tags.sql)"),
        "{}",
        status.stdout
    );

    // Once the migration is there, promote applies it and then runs the step.
    ladder.run_ok(&["promote", "--to", "local"], 0);
    assert_eq!(ladder.local("SELECT count(*) FROM tags"), ["5"]);
}

#[test]
fn a_command_step_killed_half_way_is_interrupted_and_reruns_only_when_asked() {
    // The first run kills d1ctl itself (its parent) after starting: a crash mid-step.
    let command = "echo run >> runs.log; if [ ! -e crashed ]; then touch crashed; kill -KILL $PPID; exit 0; fi; sqlite3_free=1; echo \"$D1CTL_ENV $D1CTL_BACKEND $(basename \"$D1CTL_SQLITE_PATH\")\" >> runs.log";
    let ladder = ladder(&format!(
        "[[step]]\nname = \"script\"\nafter = \"0001_posts.sql\"\ncommand = '{command}'\n"
    ));
    ladder.local_with_posts(10);
    let crashed = ladder.run(&["step", "run", "script", "--env", "local"]);
    assert_ne!(crashed.code, 0, "{}", crashed.stderr);
    let log = || fs_err::read_to_string(ladder.project.path("runs.log")).unwrap();
    assert_eq!(log(), "run\n");

    let status = ladder.run_ok(&["status", "local"], 1);
    assert!(
        status.stdout.contains("interrupted script (command"),
        "{}",
        status.stdout
    );

    // Neither promote nor a plain `step run` runs it again.
    let promote = ladder.run_ok(&["promote", "--to", "local"], 1);
    assert!(
        promote
            .stderr
            .contains("step `script` started on `local` and did not finish"),
        "{}",
        promote.stderr
    );
    assert!(
        promote.stderr.contains("--rerun-interrupted"),
        "{}",
        promote.stderr
    );
    ladder.run_ok(&["step", "run", "script", "--env", "local"], 1);
    assert_eq!(log(), "run\n");

    // Rerun once checked: the interrupted run's rows are untouched, the step finishes.
    ladder.run_ok(
        &[
            "step",
            "run",
            "script",
            "--env",
            "local",
            "--rerun-interrupted",
            "--yes",
        ],
        0,
    );
    assert_eq!(log(), "run\nrun\nlocal sqlite local.sqlite\n");
    assert_eq!(ladder.local("SELECT count(*) FROM posts"), ["10"]);
    assert_eq!(
        ladder.local("SELECT runs, finished_at IS NOT NULL FROM _d1ctl_steps"),
        ["2|1"]
    );
}

#[test]
fn a_failing_command_is_recorded_as_interrupted_with_its_exit_status() {
    let ladder = ladder(
        "[[step]]\nname = \"script\"\nafter = \"0001_posts.sql\"\ncommand = \"echo half >> half.log; exit 3\"\n",
    );
    ladder.local_with_posts(4);
    let output = ladder.run_ok(&["step", "run", "script", "--env", "local"], 1);
    assert!(
        output.stderr.contains("ended with exit status 3"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("records step `script` as started at"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("rollback: d1ctl rollback local --bookmark"),
        "{}",
        output.stderr
    );
    let status = ladder
        .run_ok(&["status", "local", "--format", "json"], 1)
        .json();
    let step = &status["environments"][0]["steps"][0];
    assert_eq!(step["state"], "interrupted");
    assert_eq!(step["record"]["ended"], "exit status 3");
    assert_eq!(ladder.local("SELECT count(*) FROM posts"), ["4"]);
}

#[test]
fn a_command_step_gets_the_envs_identity_and_the_token_only_when_it_needs_it() {
    let probe = "echo \"$D1CTL_ENV|$D1CTL_BACKEND|$D1CTL_DATABASE_NAME|$D1CTL_DATABASE_ID|$D1CTL_ACCOUNT_ID|${CLOUDFLARE_API_TOKEN:+token}\" >> ids.log";
    let ladder = ladder("");
    ladder.local_with_posts(2);
    ladder.remote_with_posts(STAGING, "staging", 2);
    ladder.project.config(&config(&format!(
        "[[step]]\nname = \"plain\"\nafter = \"0001_posts.sql\"\ncommand = '{probe}'\n\n[[step]]\nname = \"with-token\"\nafter = \"0001_posts.sql\"\ncommand = '{probe}'\nneeds_token = true\n"
    )));
    ladder.run_ok(&["promote", "--to", "staging", "--cascade", "--yes"], 0);
    let log = fs_err::read_to_string(ladder.project.path("ids.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "local|sqlite||||",
            "local|sqlite||||",
            &format!("staging|d1|app-staging|{STAGING}|{ACCOUNT}|"),
            &format!("staging|d1|app-staging|{STAGING}|{ACCOUNT}|token"),
        ]
    );
    // The commands changed no row, and the posts of both envs are still there.
    assert_eq!(ladder.local("SELECT count(*) FROM posts"), ["2"]);
    assert_eq!(
        sim_rows(&ladder.sim, STAGING, "SELECT count(*) FROM posts"),
        ["2"]
    );
}

#[test]
fn a_step_edited_after_it_ran_blocks_like_an_edited_migration() {
    let ladder = ladder(FILL);
    ladder.local_with_posts(600);
    ladder.remote_with_posts(STAGING, "staging", 700);
    ladder.run_ok(&["step", "run", "fill-slugs", "--env", "local"], 0);
    ladder.project.write(
        "steps/fill_slugs.sql",
        FILL_SQL.replace("lower(title)", "upper(title)"),
    );
    let status = ladder.run_ok(&["status", "--yes"], 1);
    assert!(
        status.stdout.contains("fill-slugs      edited"),
        "{}",
        status.stdout
    );

    // Staging would run another version than local ran: the promotion is blocked whole.
    let blocked = ladder.run_ok(&["promote", "--to", "staging", "--yes"], 1);
    assert!(blocked.stderr.contains("FAIL steps"), "{}", blocked.stderr);
    assert!(
        blocked
            .stderr
            .contains("`local` ran another version of step `fill-slugs`"),
        "{}",
        blocked.stderr
    );
    assert_eq!(sim_rows(&ladder.sim, STAGING, UNFILLED), ["700"]);
    let checklist = ladder.run_ok(&["checklist", "--to", "staging"], 1);
    assert!(
        checklist.stdout.contains("**BLOCKING** steps"),
        "{}",
        checklist.stdout
    );

    let again = ladder.run_ok(&["step", "run", "fill-slugs", "--env", "local"], 1);
    assert!(
        again.stderr.contains("was edited after it ran on `local`"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("--force"), "{}", again.stderr);

    // `--force` says what it repeats, and runs the new version.
    let forced = ladder.run_ok(
        &[
            "step",
            "run",
            "fill-slugs",
            "--env",
            "local",
            "--force",
            "--yes",
        ],
        0,
    );
    assert!(
        forced
            .stderr
            .contains("running it again repeats all of its work there"),
        "{}",
        forced.stderr
    );
    // Every slug was filled by the first version, which the new one's `WHERE` skips.
    let record = ladder.local("SELECT runs, rows FROM _d1ctl_steps");
    assert_eq!(record, ["2|0"]);
    assert!(
        forced
            .stderr
            .contains("verified: step `fill-slugs` finished on `local`"),
        "{}",
        forced.stderr
    );
}

#[test]
fn a_chunked_step_that_fails_half_way_says_what_committed_and_continues_after_the_fix() {
    let ladder = ladder(FILL);
    ladder.local_with_posts(1_200);
    // Post 700's title makes the UPDATE fail in the second batch.
    ladder
        .project
        .db("local.sqlite")
        .execute_batch(
            "CREATE TRIGGER no_bad BEFORE UPDATE OF slug ON posts WHEN NEW.title = 'bad' BEGIN SELECT RAISE(ABORT, 'bad title'); END;\nUPDATE posts SET title = 'bad' WHERE id = 700;",
        )
        .unwrap();
    let failed = ladder.run_ok(&["step", "run", "fill-slugs", "--env", "local"], 1);
    assert!(
        failed
            .stderr
            .contains("batch 2 of step `fill-slugs` failed"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("records step `fill-slugs` as partial: 500 rows in 1 batch committed"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        ladder.local("SELECT count(*) FROM posts WHERE slug IS NULL"),
        ["700"]
    );
    let status = ladder.run_ok(&["status", "local"], 0);
    assert!(
        status.stdout.contains("partial fill-slugs"),
        "{}",
        status.stdout
    );

    ladder
        .project
        .db("local.sqlite")
        .execute_batch("UPDATE posts SET title = 'Post 700' WHERE id = 700;")
        .unwrap();
    let resumed = ladder.run_ok(
        &[
            "step",
            "run",
            "fill-slugs",
            "--env",
            "local",
            "--format",
            "json",
        ],
        0,
    );
    let report = resumed.json();
    assert_eq!(report["state"], "partial");
    assert_eq!(report["record"]["rows"], 1_200);
    assert_eq!(report["record"]["batches"], 3);
    assert_eq!(report["record"]["runs"], 1);
    assert_eq!(ladder.local(UNFILLED), ["0"]);
}

#[test]
fn a_step_naming_no_migration_stops_promote_before_anything_is_written() {
    let ladder = ladder(
        "[[step]]\nname = \"x\"\nafter = \"0009_missing.sql\"\nsql = \"steps/fill_slugs.sql\"\n",
    );
    ladder
        .project
        .db("local.sqlite")
        .execute_batch("CREATE TABLE keep (x); INSERT INTO keep VALUES (1);")
        .unwrap();
    let files = ladder.project.files();
    let output = ladder.run_ok(&["promote", "--to", "local"], 2);
    assert!(
        output.stderr.contains("environments.toml:21:1: step `x`: `after` names `0009_missing.sql`, which is not a migration of the folder"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("hint: "), "{}", output.stderr);
    assert_eq!(ladder.project.files(), files);
    assert_eq!(ladder.local("SELECT count(*) FROM keep"), ["1"]);
}
