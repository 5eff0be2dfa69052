//! The write engine end to end: refusals under a lock held elsewhere, a plan re-made under the
//! lock, a lease lost between two units, and what `rollback --last` and `pull` leave behind
//! (`engine_recovery.rs` has answers held, garbled or lost, `--no-hooks` and `--dry-run`).
//! Every write test has rows in its target and checks them after.

use std::process::{Command, Stdio};

use d1ctl::sim::{Faults, SimConfig, Simulator};

use crate::common::{Output, Project, rows, sim_rows};

const TOKEN: &str = "engine-token";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const STAGING: &str = "77777777-7777-4777-8777-777777777777";
const PRODUCTION: &str = "66666666-6666-4666-8666-666666666666";

const USERS: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n";
const POSTS: &str = "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\n";
const INDEX: &str = "CREATE INDEX posts_user ON posts(user_id);\n";
const MIGRATIONS: [(&str, &str); 3] = [
    ("0001_users.sql", USERS),
    ("0002_posts.sql", POSTS),
    ("0003_index.sql", INDEX),
];

/// A lease of another holder on another host, live for ten minutes.
pub(crate) const FOREIGN_LEASE: &str = "CREATE TABLE IF NOT EXISTS _d1ctl_lock (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, command TEXT NOT NULL, acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);\
     INSERT INTO _d1ctl_lock VALUES (1, 'other-holder', 'ci-runner-7', 4242, 'promote --to staging', unixepoch(), unixepoch() + 600);";

/// local (sqlite) → staging (simulator A) → production (simulator B, protected), with all three
/// migrations in `migrations/`; `first/` and `second/` are projects on the same two databases
/// whose folders hold only the first one or the first two migrations (another writer).
pub(crate) struct Fixture {
    pub(crate) staging: Simulator,
    pub(crate) production: Simulator,
    pub(crate) project: Project,
}

fn simulator(name: &str, id: &str) -> Simulator {
    Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec![TOKEN.to_owned()],
        databases: vec![(name.to_owned(), id.to_owned())],
    })
    .unwrap()
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let fixture = Self {
            staging: simulator("app-staging", STAGING),
            production: simulator("app-production", PRODUCTION),
            project: Project::new(),
        };
        fixture.configure("", "");
        for (name, sql) in MIGRATIONS {
            fixture.project.migration(name, sql);
        }
        for (folder, count) in [("first", 1), ("second", 2)] {
            fixture.project.write(
                &format!("{folder}/environments.toml"),
                fixture.config_text("", "", false),
            );
            for (name, sql) in &MIGRATIONS[..count] {
                fixture
                    .project
                    .write(&format!("{folder}/migrations/{name}"), sql);
            }
        }
        fixture
    }

    /// The config of the ladder; `protected` marks production (the sub-projects, other
    /// writers, do not, so their `apply` may write to it).
    fn config_text(&self, extra_staging: &str, extra_production: &str, protected: bool) -> String {
        format!(
            "[project]\nladder = [\"local\", \"staging\", \"production\"]\n\n\
             [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
             [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\napi_base_url = \"{}\"\n{extra_staging}\n\
             [env.production]\nbackend = \"d1\"\nprotected = {protected}\naliases = [\"prod\"]\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{PRODUCTION}\"\ndatabase_name = \"app-production\"\napi_base_url = \"{}\"\n{extra_production}",
            self.staging.base_url(),
            self.production.base_url()
        )
    }

    /// Rewrites the main project's `environments.toml` with extra lines per env (hooks).
    pub(crate) fn configure(&self, extra_staging: &str, extra_production: &str) {
        self.project
            .config(&self.config_text(extra_staging, extra_production, true));
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = self.project.command(args);
        command
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
            .env("D1CTL_TEST_BIN", env!("CARGO_BIN_EXE_d1ctl"))
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run_ok(&self, args: &[&str], code: i32) -> Output {
        Output::of(&mut self.command(args)).expect_code(code, args)
    }

    /// Runs d1ctl in the sub-project `folder` (`first` or `second`).
    pub(crate) fn run_in(&self, folder: &str, args: &[&str]) -> Output {
        let mut command = self.command(args);
        command.current_dir(self.project.path(folder));
        Output::of(&mut command).expect_code(0, args)
    }

    pub(crate) fn staging(&self, sql: &str) -> Vec<String> {
        sim_rows(&self.staging, STAGING, sql)
    }

    pub(crate) fn production(&self, sql: &str) -> Vec<String> {
        sim_rows(&self.production, PRODUCTION, sql)
    }

    /// Staging with the first migration applied (by `first/`) and two users in it.
    pub(crate) fn staging_with_users(&self) {
        self.run_in("first", &["apply", "staging"]);
        self.staging
            .execute(
                STAGING,
                "INSERT INTO users VALUES (1, 'a@example.com'), (2, 'b@example.com');",
            )
            .unwrap();
    }

    pub(crate) fn production_with_users(&self) {
        self.run_in("first", &["apply", "production"]);
        self.production
            .execute(
                PRODUCTION,
                "INSERT INTO users VALUES (1, 'a@example.com'), (2, 'b@example.com');",
            )
            .unwrap();
    }
}

impl Fixture {
    /// Staging's ledger records each of the three migrations once, and its users are intact.
    pub(crate) fn assert_staging_has_each_migration_once_and_its_rows(&self) {
        assert_eq!(
            ledger_counts(&|sql| self.staging(sql)),
            [
                "0001_users.sql x1",
                "0002_posts.sql x1",
                "0003_index.sql x1"
            ]
        );
        assert_eq!(self.staging("SELECT * FROM users ORDER BY id"), USERS_ROWS);
    }
}

pub(crate) const USERS_ROWS: [&str; 2] = ["1|a@example.com", "2|b@example.com"];

/// Each ledger name with how often it is recorded, in order.
pub(crate) fn ledger_counts(rows: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    rows("SELECT name || ' x' || count(*) FROM d1_migrations GROUP BY name ORDER BY name")
}

#[test]
fn apply_baseline_and_rollback_refuse_a_lock_held_elsewhere() {
    let fixture = Fixture::new();
    fixture.staging_with_users();
    fixture.staging.execute(STAGING, FOREIGN_LEASE).unwrap();
    let holder = "is locked by other-holder on ci-runner-7 (pid 4242, `promote --to staging`)";
    assert!(
        !fixture
            .staging("SELECT * FROM _d1ctl_rollback_points")
            .is_empty(),
        "`first/`'s apply recorded a rollback point for the rollback to restore"
    );
    let untouched = |what: &str| {
        assert_eq!(
            fixture.staging("SELECT * FROM users ORDER BY id"),
            USERS_ROWS,
            "{what}"
        );
        assert_eq!(
            ledger_counts(&|sql| fixture.staging(sql)),
            ["0001_users.sql x1"],
            "{what}"
        );
        assert_eq!(
            fixture.staging("SELECT holder FROM _d1ctl_lock"),
            ["other-holder"],
            "{what}"
        );
        assert!(
            fixture
                .staging("SELECT name FROM sqlite_master WHERE name = 'posts'")
                .is_empty(),
            "{what}"
        );
    };

    let apply = fixture.run_ok(&["apply", "staging"], 1);
    assert!(apply.stderr.contains(holder), "{}", apply.stderr);
    untouched("apply");

    let rollback = fixture.run_ok(&["rollback", "staging", "--last", "--yes"], 1);
    assert!(rollback.stderr.contains(holder), "{}", rollback.stderr);
    untouched("rollback");

    // baseline: production holds the schema of the first migration, untracked, and is locked.
    fixture
        .production
        .execute(
            PRODUCTION,
            &format!("{USERS}INSERT INTO users VALUES (1, 'a@example.com'), (2, 'b@example.com');{FOREIGN_LEASE}"),
        )
        .unwrap();
    let baseline = fixture.run_ok(
        &[
            "baseline",
            "production",
            "--through",
            "0001_users.sql",
            "--yes",
        ],
        1,
    );
    assert!(
        baseline.stderr.contains(&format!("`production` {holder}")),
        "{}",
        baseline.stderr
    );
    assert_eq!(
        fixture.production("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
    assert!(
        fixture
            .production("SELECT name FROM sqlite_master WHERE name IN ('d1_migrations', '_d1ctl_migrations')")
            .is_empty()
    );
    assert_eq!(
        fixture.production("SELECT holder FROM _d1ctl_lock"),
        ["other-holder"]
    );
}

#[test]
fn a_target_changed_between_plan_and_lock_is_planned_again() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "local"], 0);
    fixture.staging_with_users();
    // The `before` hook is another writer: it lands 0002 between the plan and the lock.
    let hook = "before = [\"cd second && \\\"$D1CTL_TEST_BIN\\\" apply $D1CTL_ENV\"]\n";
    fixture.configure(hook, hook);

    let promote = fixture.run_ok(&["promote", "--to", "staging"], 0);
    assert!(
        promote
            .stderr
            .contains("the target changed between the plan and the lock; this is the plan now:"),
        "{}",
        promote.stderr
    );
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        [
            "0001_users.sql x1",
            "0002_posts.sql x1",
            "0003_index.sql x1"
        ],
        "{}",
        promote.stderr
    );
    assert_eq!(
        fixture.staging(
            "SELECT name || ' x' || count(*) FROM _d1ctl_migrations GROUP BY name ORDER BY name"
        ),
        [
            "0001_users.sql x1",
            "0002_posts.sql x1",
            "0003_index.sql x1"
        ]
    );
    assert_eq!(
        fixture.staging("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
    assert_eq!(fixture.staging("SELECT count(*) FROM _d1ctl_lock"), ["0"]);

    // `--yes` approved the plan it was shown, not the one made under the lock.
    fixture.production_with_users();
    let refused = fixture.run_ok(&["promote", "--to", "production", "--yes"], 1);
    assert!(
        refused.stderr.contains(
            "the plan for `production` changed after `--yes` approved it; nothing was written"
        ),
        "{}",
        refused.stderr
    );
    // Only the hook's 0002 landed; the promotion wrote nothing (0003's index is absent).
    assert_eq!(
        ledger_counts(&|sql| fixture.production(sql)),
        ["0001_users.sql x1", "0002_posts.sql x1"]
    );
    assert!(
        fixture
            .production("SELECT name FROM sqlite_master WHERE name = 'posts_user'")
            .is_empty()
    );
    assert_eq!(
        fixture.production("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
    assert_eq!(
        fixture.production("SELECT count(*) FROM _d1ctl_lock"),
        ["0"]
    );
}

/// SQL requests of `apply staging` on a tracked target before its first unit: the read, the
/// lock batch, the re-read under the lock (the bookmark is not an SQL request).
pub(crate) const SQL_BEFORE_FIRST_UNIT: u32 = 3;

#[test]
fn a_unit_sent_after_its_lease_was_taken_over_aborts_on_the_guard() {
    let fixture = Fixture::new();
    fixture.staging_with_users();
    fixture.staging.set_faults(Faults {
        skip_sql_requests: SQL_BEFORE_FIRST_UNIT,
        interleave_sql: Some("UPDATE _d1ctl_lock SET holder = 'thief'".to_owned()),
        ..Faults::default()
    });
    let output = fixture.run_ok(&["apply", "staging", "--format", "json"], 1);
    assert_eq!(
        fixture.staging.faults().interleave_sql,
        None,
        "the takeover never ran: {}",
        output.stderr
    );
    let json = output.json();
    assert_eq!(json["failure"]["kind"], "lease_lost", "{json:#}");
    for said in [
        "error: the lock on `staging` was lost (its lease expired or another session took it) before `0002_posts.sql` ran; its unit was aborted by the lease guard",
        "`0002_posts.sql` was rolled back and left no trace; not attempted: 0003_index.sql",
        "hint: the migration is not at fault: `d1ctl lock status staging` shows who holds the lock now",
    ] {
        assert!(output.stderr.contains(said), "{said}\n{}", output.stderr);
    }
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        ["0001_users.sql x1"]
    );
    assert!(
        fixture
            .staging("SELECT name FROM sqlite_master WHERE name = 'posts'")
            .is_empty()
    );
    assert_eq!(
        fixture.staging("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
    // The thief's lease is not ours to release.
    assert_eq!(fixture.staging("SELECT holder FROM _d1ctl_lock"), ["thief"]);
}

#[test]
fn rollback_last_refuses_when_the_last_promotion_failed_in_its_first_batch() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "local"], 0);
    // Two points: `first/`'s apply of 0001, then `second/`'s of 0002.
    fixture.staging_with_users();
    fixture.run_in("second", &["apply", "staging"]);
    fixture.staging.set_faults(Faults {
        skip_sql_requests: SQL_BEFORE_FIRST_UNIT,
        fail_before_commit: 1,
        ..Faults::default()
    });
    fixture.run_ok(&["promote", "--to", "staging"], 1);
    fixture.staging.set_faults(Faults::default());
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        ["0001_users.sql x1", "0002_posts.sql x1"]
    );

    let output = fixture.run_ok(&["rollback", "staging", "--last", "--yes"], 1);
    let mut listing = output.snapshot(&fixture.project);
    for point in fixture.staging("SELECT point FROM _d1ctl_rollback_points") {
        listing = listing.replace(&point, "[BOOKMARK]");
    }
    let listing = ages_filtered(&listing);
    insta::assert_snapshot!(listing);
    assert_eq!(
        fixture.staging("SELECT * FROM users ORDER BY id"),
        USERS_ROWS
    );
    assert_eq!(
        ledger_counts(&|sql| fixture.staging(sql)),
        ["0001_users.sql x1", "0002_posts.sql x1"]
    );
}

/// Replaces the number in each `N s ago` with `[AGE]`.
fn ages_filtered(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(position) = rest.find(" s ago") {
        let head = &rest[..position];
        out.push_str(head.trim_end_matches(|c: char| c.is_ascii_digit()));
        out.push_str("[AGE] s ago");
        rest = &rest[position + " s ago".len()..];
    }
    out.push_str(rest);
    out
}

#[test]
fn pull_records_its_own_point_and_carries_no_bookkeeping() {
    let fixture = Fixture::new();
    fixture.run_ok(&["promote", "--to", "production", "--cascade", "--yes"], 0);
    fixture
        .production
        .execute(
            PRODUCTION,
            "INSERT INTO users VALUES (7, 'prod@example.com');",
        )
        .unwrap();
    fixture
        .production
        .execute(PRODUCTION, FOREIGN_LEASE)
        .unwrap();
    assert_ne!(
        fixture.production("SELECT count(*) FROM _d1ctl_rollback_points"),
        ["0"]
    );
    let local = fixture.project.db("local.sqlite");
    local
        .execute_batch("INSERT INTO users VALUES (1, 'local@example.com');")
        .unwrap();
    drop(local);

    let pull = fixture.run_ok(&["pull", "prod", "--into", "local", "--yes"], 0);
    let local = fixture.project.db("local.sqlite");
    assert_eq!(rows(&local, "SELECT * FROM users"), ["7|prod@example.com"]);
    let count = |table: &str| {
        let exists = rows(
            &local,
            &format!("SELECT count(*) FROM sqlite_master WHERE name = '{table}'"),
        );
        if exists == ["0"] {
            return Vec::new();
        }
        rows(&local, &format!("SELECT * FROM {table}"))
    };
    assert!(
        count("_d1ctl_lock").is_empty(),
        "{:?}",
        count("_d1ctl_lock")
    );
    // The only session and point are the pull's own, a backup file of local's old data.
    let sessions = count("_d1ctl_sessions");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].contains("pull"), "{sessions:?}");
    let points = count("_d1ctl_rollback_points");
    assert_eq!(points.len(), 1, "{points:?}\n{}", pull.stderr);
    assert!(points[0].contains(".d1ctl/backups"), "{points:?}");
    drop(local);

    fixture.run_ok(&["rollback", "local", "--last", "--yes"], 0);
    let local = fixture.project.db("local.sqlite");
    assert_eq!(rows(&local, "SELECT * FROM users"), ["1|local@example.com"]);
    // Production is untouched by all of it.
    assert_eq!(
        fixture.production("SELECT * FROM users"),
        ["7|prod@example.com"]
    );
    assert_eq!(
        fixture.production("SELECT holder FROM _d1ctl_lock"),
        ["other-holder"]
    );
}
