//! `rehearse --to ENV`, `promote --rehearse` and the checklist's rehearsal line, on a SQLite
//! target and on a D1 target served by the simulator. Every target holds rows first: a
//! rehearsal of an empty database proves nothing.

use std::collections::BTreeMap;
use std::process::Stdio;

use d1ctl::sim::{SimConfig, Simulator};
use serde_json::{Value, json};

use crate::common::{Output, Project, rows, sim_rows};

const TOKEN: &str = "rehearse-token";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef12";
const PRODUCTION: &str = "77777777-7777-4777-8777-777777777777";

const SCHEMA: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT);
CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE, body TEXT);
CREATE TABLE likes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE SET NULL, post_id INTEGER);
";

/// 3 users, 4 posts, 5 comments, 6 likes of which 4 name a user.
const ROWS: &str =
    "INSERT INTO users VALUES (1, 'ana@example.com'), (2, 'bo@example.com'), (3, 'cy@example.com');
INSERT INTO posts VALUES (1, 1, 'one'), (2, 1, 'two'), (3, 2, 'three'), (4, 3, 'four');
INSERT INTO comments VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, 3, 'd'), (5, 4, 'e');
INSERT INTO likes VALUES (1, 1, 1), (2, 2, 1), (3, 3, 2), (4, 1, 3), (5, NULL, 4), (6, NULL, 1);
";

/// drizzle's rebuild of `users`, inside the pair lint recommends: on D1 foreign keys stay on,
/// so the DROP still cascades to posts (and their comments) and nulls likes.user_id.
const REBUILD: &str = "PRAGMA defer_foreign_keys = on;
CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);
INSERT INTO __new_users (id, email) SELECT id, email FROM users;
DROP TABLE users;
ALTER TABLE __new_users RENAME TO users;
PRAGMA defer_foreign_keys = off;
";

const ADDITIVE: &str = "ALTER TABLE users ADD COLUMN bio TEXT;
CREATE INDEX posts_user ON posts(user_id);
";

/// Fine on an empty table; "Cannot add a column with non-constant default" once it has rows.
const CREATED_AT: &str = "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);
ALTER TABLE users ADD COLUMN created_at TEXT DEFAULT (strftime('%s','now'));
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    D1,
}

/// The ladder local (sqlite) → production (a SQLite file, or D1 on the simulator), with the
/// schema on both and ROWS in production.
struct Rig {
    project: Project,
    sim: Option<Simulator>,
}

fn rig(kind: Kind) -> Rig {
    let project = Project::new();
    let sim = (kind == Kind::D1).then(|| {
        Simulator::start(SimConfig {
            data_dir: None,
            tokens: vec![TOKEN.to_owned()],
            databases: vec![("app-production".to_owned(), PRODUCTION.to_owned())],
        })
        .unwrap()
    });
    let production = match &sim {
        None => "backend = \"sqlite\"\npath = \"production.sqlite\"\n".to_owned(),
        Some(sim) => format!(
            "backend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{PRODUCTION}\"\ndatabase_name = \"app-production\"\napi_base_url = \"{}\"\n",
            sim.base_url()
        ),
    };
    project.config(&format!(
        "[project]\nladder = [\"local\", \"production\"]\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n\n\
         [env.production]\n{production}"
    ));
    project.migration("0001_schema.sql", SCHEMA);
    let rig = Rig { project, sim };
    rig.run_ok(&["promote", "--to", "production", "--cascade"], 0);
    match &rig.sim {
        None => rig
            .project
            .db("production.sqlite")
            .execute_batch(ROWS)
            .unwrap(),
        Some(sim) => sim.execute(PRODUCTION, ROWS).unwrap(),
    }
    rig
}

impl Rig {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = self.project.command(args);
        command
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
            .stdin(Stdio::null());
        Output::of(&mut command)
    }

    fn run_ok(&self, args: &[&str], code: i32) -> Output {
        self.run(args).expect_code(code, args)
    }

    /// Adds a migration and runs it on local, so it is pending on production.
    fn pending(&self, name: &str, sql: &str) -> &Self {
        self.project.migration(name, sql);
        // `apply`: the lossy migrations are what lint exists to block; local has no rows to lose.
        self.run_ok(&["apply", "local"], 0);
        if let Some(sim) = &self.sim {
            sim.reset_stats();
        }
        self
    }

    fn target_rows(&self, sql: &str) -> Vec<String> {
        match &self.sim {
            None => rows(&self.project.db("production.sqlite"), sql),
            Some(sim) => sim_rows(sim, PRODUCTION, sql),
        }
    }

    /// Everything production holds: rows, ledgers and schema.
    fn target_state(&self) -> Vec<String> {
        [
            "SELECT * FROM users ORDER BY id",
            "SELECT * FROM posts ORDER BY id",
            "SELECT * FROM comments ORDER BY id",
            "SELECT * FROM likes ORDER BY id",
            "SELECT name, applied_at FROM d1_migrations ORDER BY id",
            "SELECT name, sha256 FROM _d1ctl_migrations ORDER BY name",
            "SELECT type, name, sql FROM sqlite_master ORDER BY name",
        ]
        .iter()
        .flat_map(|sql| {
            let mut lines = vec![format!("-- {sql}")];
            lines.extend(self.target_rows(sql));
            lines
        })
        .collect()
    }

    /// The simulator's requests since the last reset, by endpoint (D1 only).
    fn requests(&self) -> BTreeMap<String, u64> {
        self.sim
            .as_ref()
            .map(|sim| sim.stats().by_endpoint)
            .unwrap_or_default()
    }

    /// Files left under `.d1ctl/tmp`: a rehearsal removes its copy and its dump.
    fn leftovers(&self) -> Vec<String> {
        self.project
            .files()
            .into_iter()
            .filter(|file| file.starts_with(".d1ctl/tmp"))
            .collect()
    }
}

/// Reads only and one export: describing the database, one read of ledgers and schema, and the
/// export's start and poll. Nothing that writes (`raw` is the one read; no lock, no bookmark).
fn reads_and_export_only() -> BTreeMap<String, u64> {
    [("export", 2), ("get_database", 1), ("raw", 1)]
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect()
}

/// `{table: [rows_before, rows_after, {column: [before, after]}]}` from the JSON report.
fn deltas(report: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for table in report["tables"].as_array().unwrap() {
        let lost: serde_json::Map<String, Value> = table["lost_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["column"].as_str().unwrap().to_owned(),
                    json!([c["before"], c["after"]]),
                )
            })
            .collect();
        out.insert(
            table["table"].as_str().unwrap().to_owned(),
            json!([table["rows_before"], table["rows_after"], lost]),
        );
    }
    Value::Object(out)
}

/// Timings vary: `12 ms` becomes `[MS] ms`.
fn without_timings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find(" ms") {
        let head = &rest[..position];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&head[..head.len() - digits]);
        out.push_str(if digits > 0 { "[MS] ms" } else { " ms" });
        rest = &rest[position + 3..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_rebuild_on_sqlite_shows_the_cascade_table_by_table_and_leaves_the_target_alone() {
    let rig = rig(Kind::Sqlite);
    rig.pending("0002_rebuild_users.sql", REBUILD);
    let before = rig.target_state();

    let output = rig.run_ok(&["rehearse", "--to", "production"], 1);
    insta::assert_snapshot!(
        "rehearse_rebuild_sqlite",
        without_timings(&output.snapshot(&rig.project))
    );
    assert_eq!(rig.target_state(), before, "the target must not change");
    assert!(rig.leftovers().is_empty(), "{:?}", rig.leftovers());

    let record: Value = serde_json::from_str(
        &fs_err::read_to_string(rig.project.path(".d1ctl/rehearsals/production.json")).unwrap(),
    )
    .unwrap();
    let file = fs_err::read(rig.project.path("migrations/0002_rebuild_users.sql")).unwrap();
    assert_eq!(record["migrations"][0]["name"], "0002_rebuild_users.sql");
    assert_eq!(
        record["migrations"][0]["sha256"],
        d1ctl::core::migrations::sha256_hex(&file)
    );
    assert_eq!(record["outcome"], "rows_lost");
    assert_eq!(record["copy"]["method"], "vacuum_into");
    assert!(record["duration_ms"].is_u64() && record["rehearsed_at"].is_string());
}

#[test]
fn a_rebuild_on_d1_reports_the_exact_deltas_with_reads_and_one_export() {
    let rig = rig(Kind::D1);
    rig.pending("0002_rebuild_users.sql", REBUILD);
    let before = rig.target_state();

    let output = rig.run_ok(&["rehearse", "--to", "production", "--format", "json"], 1);
    let report = output.json();
    assert_eq!(
        deltas(&report),
        json!({
            "comments": [5, 0, {}],
            "likes": [6, 6, {"user_id": [4, 0]}],
            "posts": [4, 0, {}],
            "users": [3, 3, {}],
        }),
        "{report:#}"
    );
    assert_eq!(report["outcome"], "rows_lost");
    assert_eq!(report["passed"], false);
    assert_eq!(report["copy"]["method"], "export");
    assert_eq!(report["foreign_keys"]["after"], 0);
    assert_eq!(report["migrations"][0]["outcome"], "applied");
    assert!(
        output
            .stderr
            .contains("warning: D1 serves no queries while an export runs: `production` ("),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("copying `production` (d1, "),
        "the size is shown first: {}",
        output.stderr
    );
    assert_eq!(rig.requests(), reads_and_export_only());
    assert_eq!(rig.target_state(), before, "the target must not change");
    assert!(rig.leftovers().is_empty(), "{:?}", rig.leftovers());
}

#[test]
fn an_additive_migration_passes_with_every_count_unchanged() {
    for kind in [Kind::Sqlite, Kind::D1] {
        let rig = rig(kind);
        rig.pending("0002_bio.sql", ADDITIVE);
        let before = rig.target_state();
        let output = rig.run_ok(&["rehearse", "--to", "production", "--format", "json"], 0);
        let report = output.json();
        assert_eq!(
            deltas(&report),
            json!({
                "comments": [5, 5, {}],
                "likes": [6, 6, {}],
                "posts": [4, 4, {}],
                "users": [3, 3, {}],
            }),
            "{kind:?}"
        );
        assert_eq!(report["outcome"], "passed", "{kind:?}");
        assert_eq!(report["losses"], json!([]));
        assert_eq!(
            rig.target_state(),
            before,
            "{kind:?}: the target must not change"
        );
        if kind == Kind::D1 {
            assert_eq!(rig.requests(), reads_and_export_only());
        }
        let text = rig.run_ok(&["rehearse", "--to", "production"], 0);
        assert!(
            text.stdout.contains(
                "result: pass 1 migration rehearsed on a copy of `production`: no rows lost"
            ),
            "{}",
            text.stdout
        );
    }
}

#[test]
fn a_migration_that_fails_only_with_rows_names_its_statement_and_line() {
    for kind in [Kind::Sqlite, Kind::D1] {
        let rig = rig(kind);
        rig.pending("0002_created_at.sql", CREATED_AT);
        let before = rig.target_state();
        let output = rig.run_ok(&["rehearse", "--to", "production", "--format", "json"], 1);
        let report = output.json();
        assert_eq!(report["outcome"], "failed", "{kind:?}");
        assert_eq!(report["migrations"][0]["outcome"], "failed");
        let failure = &report["failure"];
        assert_eq!(failure["migration"], "0002_created_at.sql");
        assert_eq!(failure["statement"], 2);
        assert_eq!(failure["line"], 2);
        assert!(
            failure["message"]
                .as_str()
                .unwrap()
                .contains("Cannot add a column with non-constant default"),
            "{failure}"
        );
        // The failed unit rolled back on the copy: `tags` is not among the tables after.
        assert!(
            report["tables"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["table"] != "tags")
        );
        assert_eq!(
            rig.target_state(),
            before,
            "{kind:?}: the target must not change"
        );

        let text = rig.run_ok(&["rehearse", "--to", "production"], 1);
        assert!(
            text.stdout.contains(
                "result: FAIL on a copy of `production`, `0002_created_at.sql` failed at statement 2 (line 2): Cannot add a column with non-constant default"
            ),
            "{}",
            text.stdout
        );
    }
}

#[test]
fn all_in_one_rolls_the_whole_unit_back_at_the_first_failure() {
    let rig = rig(Kind::Sqlite);
    rig.project.migration("0002_bio.sql", ADDITIVE);
    rig.pending("0003_created_at.sql", CREATED_AT);
    let report = rig
        .run_ok(
            &[
                "rehearse",
                "--to",
                "production",
                "--all-in-one",
                "--format",
                "json",
            ],
            1,
        )
        .json();
    let outcomes: Vec<&str> = report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rolled_back", "failed"]);
    assert_eq!(report["failure"]["migration"], "0003_created_at.sql");
    assert_eq!(report["failure"]["statement"], 2);
    assert_eq!(report["all_in_one"], true);

    // One unit per migration (the default): the first stays applied on the copy.
    let report = rig
        .run_ok(&["rehearse", "--to", "production", "--format", "json"], 1)
        .json();
    let outcomes: Vec<&str> = report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["applied", "failed"]);
}

#[test]
fn promote_rehearse_blocks_a_lossy_promotion_and_writes_nothing() {
    for kind in [Kind::Sqlite, Kind::D1] {
        let rig = rig(kind);
        rig.pending("0002_rebuild_users.sql", REBUILD);
        let before = rig.target_state();
        let output = rig.run_ok(
            &[
                "promote",
                "--to",
                "production",
                "--rehearse",
                "--format",
                "json",
            ],
            1,
        );
        let rung = &output.json()["rungs"][0];
        assert_eq!(rung["outcome"], "blocked", "{kind:?}");
        let gate = rung["plan"]["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "rehearsal")
            .expect("a rehearsal gate");
        assert_eq!(gate["passed"], false);
        assert_eq!(
            gate["detail"],
            "rows lost on a copy of `production`: `comments` went from 5 to 0 rows; \
             `likes.user_id` went from 4 to 0 non-null values; `posts` went from 4 to 0 rows"
        );
        assert_eq!(rung["rehearsal"]["outcome"], "rows_lost");
        assert!(
            output.stderr.contains("nothing was written"),
            "{}",
            output.stderr
        );
        assert_eq!(
            rig.target_state(),
            before,
            "{kind:?}: nothing may be written"
        );
        if kind == Kind::D1 {
            assert_eq!(rig.requests(), reads_and_export_only());
        }
        assert!(rig.leftovers().is_empty(), "{:?}", rig.leftovers());
    }
}

#[test]
fn promote_rehearse_passes_an_additive_migration_and_applies_it() {
    for kind in [Kind::Sqlite, Kind::D1] {
        let rig = rig(kind);
        rig.pending("0002_bio.sql", ADDITIVE);
        let output = rig.run_ok(&["promote", "--to", "production", "--rehearse"], 0);
        assert!(
            output.stderr.contains(
                "pass rehearsal     1 migration rehearsed on a copy of `production`: no rows lost"
            ),
            "{kind:?}: {}",
            output.stderr
        );
        assert_eq!(
            rig.target_rows("SELECT name FROM d1_migrations ORDER BY id"),
            ["0001_schema.sql", "0002_bio.sql"]
        );
        assert_eq!(rig.target_rows("SELECT count(*) FROM posts"), ["4"]);
        // Up to date: nothing to rehearse, no export.
        if let Some(sim) = &rig.sim {
            sim.reset_stats();
        }
        rig.run_ok(&["promote", "--to", "production", "--rehearse"], 0);
        assert!(
            !rig.requests().contains_key("export"),
            "{:?}",
            rig.requests()
        );
    }
}

#[test]
fn the_checklist_shows_the_recorded_rehearsal_of_the_same_migrations_or_offers_one() {
    let rig = rig(Kind::Sqlite);
    rig.pending("0002_rebuild_users.sql", REBUILD);
    let checklist = |code| {
        rig.run_ok(
            &["checklist", "--to", "production", "--format", "json"],
            code,
        )
        .json()["rehearsal"]
            .clone()
    };
    let markdown = |code| {
        rig.run_ok(&["checklist", "--to", "production"], code)
            .stdout
    };

    // Lint blocks the lossy rebuild on its own (exit 1); the rehearsal line is offered anyway.
    let never = checklist(1);
    assert_eq!(never["status"], "not_rehearsed");
    assert_eq!(never["command"], "d1ctl rehearse --to production");
    assert!(
        markdown(1).contains(
            "- [ ] not rehearsed: run `d1ctl rehearse --to production` to apply these migrations to a copy of its data first"
        )
    );

    rig.run_ok(&["rehearse", "--to", "production"], 1);
    let recorded = rig.run_ok(&["checklist", "--to", "production"], 1);
    insta::assert_snapshot!("checklist_rehearsed", recorded.snapshot(&rig.project));
    let failed = checklist(1);
    assert_eq!(failed["status"], "failed");
    assert!(failed["rehearsed_at"].is_string());
    let text = markdown(1);
    assert!(
        text.contains("- [ ] **BLOCKING** rows lost on a copy of `production`: `comments` went from 5 to 0 rows;"),
        "{text}"
    );
    assert!(
        text.contains("- rehearsal: rows lost on a copy of `production`"),
        "{text}"
    );

    // The same name with other contents is another migration: the record no longer counts.
    rig.project.migration("0002_rebuild_users.sql", ADDITIVE);
    fs_err::remove_file(rig.project.path("local.sqlite")).unwrap();
    rig.run_ok(&["apply", "local"], 0);
    let outdated = checklist(0);
    assert_eq!(outdated["status"], "outdated");
    assert!(
        outdated["detail"]
            .as_str()
            .unwrap()
            .contains("run `d1ctl rehearse --to production`"),
        "{outdated}"
    );

    rig.run_ok(&["rehearse", "--to", "production"], 0);
    let passed = checklist(0);
    assert_eq!(passed["status"], "passed");
    assert_eq!(
        passed["detail"],
        "1 migration rehearsed on a copy of `production`: no rows lost"
    );
    let text = markdown(0);
    assert!(
        text.contains("- [x] 1 migration rehearsed on a copy of `production`: no rows lost"),
        "{text}"
    );
}

#[test]
fn nothing_pending_is_nothing_to_rehearse() {
    let rig = rig(Kind::D1);
    let output = rig.run_ok(&["rehearse", "--to", "production", "--format", "json"], 0);
    assert_eq!(output.json()["outcome"], "up_to_date");
    assert!(
        output
            .stderr
            .contains("nothing to rehearse: `production` has run everything `local` has"),
        "{}",
        output.stderr
    );
    assert!(!rig.requests().contains_key("export"));
    assert!(!rig.project.path(".d1ctl/rehearsals").exists());
}

#[test]
fn mistakes_exit_2_with_a_hint() {
    let rig = rig(Kind::Sqlite);
    let unknown = rig.run_ok(&["rehearse", "--to", "nowhere"], 2);
    assert!(unknown.stderr.contains("nowhere"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("hint:"), "{}", unknown.stderr);
    let missing = rig.run_ok(&["rehearse"], 2);
    assert!(missing.stderr.contains("--to <ENV>"), "{}", missing.stderr);
}

#[test]
fn a_d1_target_with_a_virtual_table_is_refused_before_any_export() {
    let rig = rig(Kind::D1);
    rig.sim
        .as_ref()
        .unwrap()
        .execute(PRODUCTION, "CREATE VIRTUAL TABLE docs USING fts5(body);")
        .unwrap();
    rig.pending("0002_bio.sql", ADDITIVE);
    let output = rig.run_ok(&["rehearse", "--to", "production"], 2);
    assert!(
        output
            .stderr
            .contains("env `production` has virtual tables (`docs`)"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("hint:"), "{}", output.stderr);
    assert!(
        !rig.requests().contains_key("export"),
        "{:?}",
        rig.requests()
    );
}
