//! `d1ctl export` and `d1ctl pull`: D1's dump format on both sides (a local file and the bundled
//! simulator over real HTTP), round trips, refusals and backups.

use std::process::Stdio;

use d1ctl::sim::{SimConfig, Simulator};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::common::{Output, Project, rows, schema_lines};

const TOKEN: &str = "export-test-token-91c2";
const ACCOUNT: &str = "abcdefabcdefabcdefabcdefabcdef34";
const STAGING: &str = "33333333-3333-4333-8333-333333333333";

const MIGRATIONS: [(&str, &str); 3] = [
    (
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, \
         score REAL, avatar BLOB, bio TEXT);\n",
    ),
    (
        "0002_posts.sql",
        "CREATE TABLE \"posts\" (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, \
         body TEXT);\nCREATE INDEX posts_user ON posts(user_id);\n",
    ),
    (
        "0003_views.sql",
        "CREATE VIEW post_counts AS SELECT user_id, count(*) AS n FROM posts GROUP BY user_id;\n\
         CREATE TRIGGER users_touch AFTER UPDATE ON users BEGIN\n  UPDATE posts SET body = body || ';' WHERE user_id = NEW.id;\nEND;\n",
    ),
];

/// Rows with every kind of value a dump has to carry.
const DATA: &str = "INSERT INTO users (email, score, avatar, bio) VALUES \
    ('a@example.com', 1.5, X'00ff10', 'it''s\nmulti-line\r\nwith \\n inside'), \
    ('b@example.com', -0.000001, NULL, 'ünïcødé ✓'), \
    ('c@example.com', 1e300, X'', NULL);\n\
    INSERT INTO posts (user_id, body) VALUES (1, 'hello; world'), (1, '-- not a comment'), (2, NULL);\n\
    DELETE FROM users WHERE email = 'c@example.com';";

/// Every table's rows (ledgers and `sqlite_sequence` included), for comparing two databases.
fn backup_count(project: &Project) -> usize {
    fs_err::read_dir(project.path(".d1ctl/backups")).map_or(0, Iterator::count)
}

fn contents(connection: &Connection) -> Vec<String> {
    let tables = rows(
        connection,
        // d1ctl's lock, sessions and rollback points are bookkeeping of the write that made a
        // file, not its contents.
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%' \
         AND (name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' OR name = '_d1ctl_migrations') ORDER BY name",
    );
    let mut out = Vec::new();
    for table in tables {
        for row in rows(
            connection,
            &format!("SELECT * FROM \"{table}\" ORDER BY rowid"),
        ) {
            if table == "sqlite_sequence" && row.starts_with("_d1ctl_") {
                continue;
            }
            out.push(format!("{table}: {row}"));
        }
    }
    // Exact values (types, blob bytes, reals) rather than their rendering.
    for row in rows(
        connection,
        "SELECT id, quote(email), quote(score), quote(avatar), quote(bio), typeof(score) FROM users ORDER BY id",
    ) {
        out.push(format!("users exact: {row}"));
    }
    out
}

fn local_project() -> Project {
    let project = Project::new();
    for (name, sql) in MIGRATIONS {
        project.migration(name, sql);
    }
    project.run_ok(&["apply", "local"], 0);
    project.db("local.sqlite").execute_batch(DATA).unwrap();
    project
}

/// A fresh SQLite database loaded from a dump with `execute_batch`.
fn load(dump: &str) -> Connection {
    let connection = Connection::open_in_memory().unwrap();
    connection.execute_batch(dump).unwrap();
    connection
}

#[test]
fn export_of_a_local_env_loads_into_a_fresh_sqlite() {
    let project = local_project();
    let output = project.run_ok(&["export", "local", "-o", "dump.sql"], 0);
    assert_eq!(output.stdout, "", "the dump went to the file");
    let dump = fs_err::read_to_string(project.path("dump.sql")).unwrap();
    assert!(
        dump.starts_with("PRAGMA defer_foreign_keys=TRUE;\n"),
        "{dump}"
    );
    assert!(!dump.ends_with('\n'), "D1's format has no trailing newline");
    assert!(
        output.stderr.contains(&format!(
            "exported `local` (sqlite, local.sqlite) to dump.sql: {} bytes",
            dump.len()
        )),
        "{}",
        output.stderr
    );
    assert!(
        dump.contains("CREATE TABLE IF NOT EXISTS \"posts\""),
        "the shell's quirk"
    );

    let source = project.db("local.sqlite");
    let copy = load(&dump);
    assert_eq!(schema_lines(&copy), schema_lines(&source));
    assert_eq!(contents(&copy), contents(&source));
    assert!(
        contents(&copy)
            .iter()
            .any(|row| row.starts_with("d1_migrations: ")),
        "the ledgers travel with the dump"
    );

    // To stdout: the same dump (the printer ends it with a line break), nothing else.
    let stdout = project.run_ok(&["export", "local", "--format", "json"], 0);
    assert_eq!(stdout.stdout, format!("{dump}\n"));

    let json = project.run_ok(
        &[
            "export",
            "local",
            "-o",
            "again.sql",
            "--format",
            "json",
            "-q",
        ],
        0,
    );
    assert_eq!(
        json.json(),
        json!({"environment": "local", "backend": "sqlite", "simulator": false, "output": "again.sql", "bytes": dump.len()})
    );
    assert_eq!(json.stderr, "", "-q");
    assert_eq!(
        project
            .files()
            .iter()
            .filter(|file| file.contains("partial"))
            .count(),
        0
    );
}

#[test]
fn export_filters_no_data_no_schema_and_tables() {
    let project = local_project();
    let schema = project.run_ok(&["export", "local", "--no-data"], 0).stdout;
    assert!(!schema.contains("INSERT INTO"), "{schema}");
    assert!(schema.contains("CREATE TABLE users"), "{schema}");
    assert!(schema.contains("CREATE VIEW post_counts"), "{schema}");
    let copy = load(&schema);
    assert_eq!(
        schema_lines(&copy),
        schema_lines(&project.db("local.sqlite"))
    );
    assert_eq!(rows(&copy, "SELECT count(*) FROM users"), ["0"]);

    let data = project
        .run_ok(&["export", "local", "--no-schema"], 0)
        .stdout;
    assert!(!data.contains("CREATE "), "{data}");
    assert!(
        data.starts_with("PRAGMA defer_foreign_keys=TRUE;\n"),
        "{data}"
    );
    assert!(
        data.contains(
            "INSERT INTO \"users\" (\"id\",\"email\",\"score\",\"avatar\",\"bio\") VALUES(1,"
        ),
        "{data}"
    );
    // Rows only: they load into a database that has the schema.
    // (As in D1's format, a data-only dump does not clear `sqlite_sequence` first.)
    let target = load(&schema);
    target.execute_batch(&data).unwrap();
    let without_sequence = |connection: &Connection| {
        contents(connection)
            .into_iter()
            .filter(|row| !row.starts_with("sqlite_sequence"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_sequence(&target),
        without_sequence(&project.db("local.sqlite"))
    );

    let users = project
        .run_ok(
            &[
                "export",
                "local",
                "--table",
                "users",
                "--table",
                "posts_user",
            ],
            0,
        )
        .stdout;
    let statements: Vec<&str> = users
        .lines()
        .filter(|line| !line.starts_with("INSERT"))
        .collect();
    assert_eq!(
        statements,
        [
            "PRAGMA defer_foreign_keys=TRUE;",
            "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, score REAL, avatar BLOB, bio TEXT);",
            "CREATE INDEX posts_user ON posts(user_id);",
        ],
        "a filter keeps the named table and objects named themselves: {users}"
    );
    assert_eq!(
        users
            .lines()
            .filter(|line| line.starts_with("INSERT INTO \"users\""))
            .count(),
        2
    );

    let unknown = project.run_ok(&["export", "local", "--table", "nope"], 0);
    assert!(
        unknown
            .stderr
            .contains("no table, index, trigger or view named `nope`"),
        "{}",
        unknown.stderr
    );
    assert_eq!(unknown.stdout, "PRAGMA defer_foreign_keys=TRUE;\n");
}

#[test]
fn virtual_tables_are_refused_unless_only_ordinary_tables_are_named() {
    let project = local_project();
    project
        .db("local.sqlite")
        .execute_batch(
            "CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('searchable');",
        )
        .unwrap();
    let refused = project.run_ok(&["export", "local", "-o", "all.sql"], 2);
    assert!(
        refused.stderr.contains(
            "D1 refuses to export databases with virtual tables (FTS5), and env `local` has virtual tables (`docs`)"
        ),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("hint: `--table` naming only ordinary tables works, e.g. \
                `d1ctl export local --table users --table d1_migrations --table _d1ctl_migrations --table posts`"),
        "the hint lists the ordinary tables, not the FTS shadow ones: {}",
        refused.stderr
    );
    assert!(!project.path("all.sql").exists());
    assert_eq!(refused.stdout, "");

    let named = project.run_ok(&["export", "local", "--table", "users"], 0);
    assert!(
        named.stdout.contains("CREATE TABLE users"),
        "{}",
        named.stdout
    );
    assert!(!named.stdout.contains("docs"), "{}", named.stdout);

    let named_virtual = project.run_ok(&["export", "local", "--table", "docs"], 2);
    assert!(
        named_virtual.stderr.contains("has virtual tables (`docs`)"),
        "{}",
        named_virtual.stderr
    );
}

/// A project whose `staging` env is a database of a simulator started in this process.
struct Remote {
    sim: Simulator,
    project: Project,
}

fn remote(extra_config: &str) -> Remote {
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
         [env.staging]\nbackend = \"d1\"\naccount_id = \"{ACCOUNT}\"\ndatabase_id = \"{STAGING}\"\ndatabase_name = \"app-staging\"\n\n\
         {extra_config}"
    ));
    for (name, sql) in MIGRATIONS {
        project.migration(name, sql);
    }
    Remote { sim, project }
}

impl Remote {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.project.command(args);
        command
            .env("CLOUDFLARE_API_BASE_URL", self.sim.base_url())
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
            .stdin(Stdio::null());
        command
    }

    fn run_ok(&self, args: &[&str], code: i32) -> Output {
        Output::of(&mut self.command(args)).expect_code(code, args)
    }

    /// Staging with the migrations applied and the test rows in it.
    fn seeded(self) -> Self {
        self.run_ok(&["apply", "staging"], 0);
        self.sim.execute(STAGING, DATA).unwrap();
        self
    }

    /// A local SQLite with the same migrations and rows, made without the simulator: what a
    /// copy of staging must look like.
    fn reference(&self) -> Connection {
        let path = self.project.path("reference.sqlite");
        let connection = Connection::open(&path).unwrap();
        for (_, sql) in MIGRATIONS {
            connection.execute_batch(sql).unwrap();
        }
        connection.execute_batch(DATA).unwrap();
        connection
    }

    fn sim_rows(&self, sql: &str) -> Vec<String> {
        self.sim
            .query_rows(STAGING, sql)
            .unwrap()
            .into_iter()
            .map(|row| {
                row.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }
}

/// `name: state` of every migration of the one env `status ENV --format json` shows.
fn states(output: &Output) -> Vec<String> {
    output.json()["environments"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|migration| format!("{}: {}", migration["name"], migration["state"]))
        .collect()
}

#[test]
fn export_from_the_simulator_loads_into_sqlite() {
    let remote = remote("").seeded();
    let output = remote.run_ok(&["export", "staging", "-o", "staging.sql"], 0);
    assert!(
        output.stderr.contains(&format!(
            "exported `staging` (d1, app-staging {STAGING}) to staging.sql:"
        )),
        "{}",
        output.stderr
    );
    let dump = fs_err::read_to_string(remote.project.path("staging.sql")).unwrap();
    let copy = load(&dump);
    let reference = remote.reference();
    assert_eq!(schema_lines(&copy), schema_lines(&reference));
    let user_rows = |connection: &Connection| {
        rows(
            connection,
            "SELECT id, quote(email), quote(score), quote(avatar), quote(bio) FROM users ORDER BY id",
        )
    };
    assert_eq!(user_rows(&copy), user_rows(&reference));
    assert_eq!(
        rows(&copy, "SELECT * FROM posts ORDER BY id"),
        rows(&reference, "SELECT * FROM posts ORDER BY id")
    );
    assert_eq!(
        rows(&copy, "SELECT name FROM d1_migrations ORDER BY id"),
        remote.sim_rows("SELECT name FROM d1_migrations ORDER BY id")
    );

    // To stdout through a temporary file that is gone afterwards.
    let stdout = remote.run_ok(&["export", "staging", "--no-data"], 0);
    assert!(!stdout.stdout.contains("INSERT"), "{}", stdout.stdout);
    assert_eq!(
        schema_lines(&load(&stdout.stdout)),
        schema_lines(&reference)
    );
    let leftovers: Vec<String> = remote
        .project
        .files()
        .into_iter()
        .filter(|file| file.starts_with(".d1ctl/tmp/"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let json = remote.run_ok(
        &[
            "export",
            "staging",
            "--table",
            "posts",
            "-o",
            "posts.sql",
            "--format",
            "json",
        ],
        0,
    );
    let report = json.json();
    assert_eq!(report["environment"], "staging");
    assert_eq!(report["backend"], "d1");
    assert_eq!(report["output"], "posts.sql");
    let posts = fs_err::read_to_string(remote.project.path("posts.sql")).unwrap();
    assert_eq!(report["bytes"], posts.len());
    assert!(
        posts.contains("CREATE TABLE IF NOT EXISTS \"posts\""),
        "{posts}"
    );
    assert!(!posts.contains("INSERT INTO \"users\""), "{posts}");
}

#[test]
fn a_virtual_table_on_d1_is_refused_before_any_export_starts() {
    let remote = remote("").seeded();
    remote
        .sim
        .execute(STAGING, "CREATE VIRTUAL TABLE docs USING fts5(body);")
        .unwrap();
    remote.sim.reset_stats();
    let refused = remote.run_ok(&["export", "staging", "-o", "x.sql"], 2);
    assert!(
        refused
            .stderr
            .contains("env `staging` has virtual tables (`docs`)"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(
            "--table users --table d1_migrations --table _d1ctl_migrations --table posts"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(
        remote
            .sim
            .stats()
            .by_endpoint
            .get("export")
            .copied()
            .unwrap_or(0),
        0,
        "no export was started: {:?}",
        remote.sim.stats()
    );
    let named = remote.run_ok(
        &["export", "staging", "--table", "users", "-o", "users.sql"],
        0,
    );
    assert!(
        named.stderr.contains("exported `staging`"),
        "{}",
        named.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_dump_loads_into_d1_through_the_query_api() {
    let remote = remote("");
    let project = &remote.project;
    project.run_ok(&["apply", "local"], 0);
    project.db("local.sqlite").execute_batch(DATA).unwrap();
    let dump = project.run_ok(&["export", "local"], 0).stdout;

    let response: Value = reqwest::Client::new()
        .post(format!(
            "{}/accounts/{ACCOUNT}/d1/database/{STAGING}/query",
            remote.sim.base_url()
        ))
        .bearer_auth(TOKEN)
        .json(&json!({ "sql": dump }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["success"], json!(true), "{response}");

    let local = project.db("local.sqlite");
    assert_eq!(
        remote.sim_rows(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' \
             AND name NOT LIKE '_cf_%' AND name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' AND name NOT IN ('d1_migrations', '__drizzle_migrations') \
             ORDER BY type, name"
        )
        .into_iter()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>(),
        schema_lines(&local)
    );
    let exact =
        "SELECT id, quote(email), quote(score), quote(avatar), quote(bio) FROM users ORDER BY id";
    assert_eq!(remote.sim_rows(exact), rows(&local, exact));
    // The ledgers came along: staging now reports what local reports.
    assert_eq!(
        states(&remote.run_ok(&["status", "staging", "--format", "json"], 0)),
        states(&remote.run_ok(&["status", "local", "--format", "json"], 0))
    );
}

#[test]
fn pull_from_d1_into_a_local_env_brings_the_ledgers_along() {
    let remote = remote("").seeded();
    let pulled = remote.run_ok(
        &["pull", "staging", "--into", "local", "--format", "json"],
        0,
    );
    let first_line = pulled.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first_line, "target: local (sqlite, local.sqlite)",
        "{}",
        pulled.stderr
    );
    let report = pulled.json();
    assert_eq!(report["source"], "staging");
    assert_eq!(report["target"], "local");
    // There was no file: the session's rollback point is the empty database its lock made.
    assert!(report["backup"].is_string(), "{report}");
    assert!(report["bytes"].as_u64().unwrap() > 0);
    // users, posts, sqlite_sequence left out; d1_migrations and _d1ctl_migrations.
    assert_eq!(report["tables"], 4, "{report}");

    let local = remote.project.db("local.sqlite");
    let reference = remote.reference();
    assert_eq!(schema_lines(&local), schema_lines(&reference));
    let exact =
        "SELECT id, quote(email), quote(score), quote(avatar), quote(bio) FROM users ORDER BY id";
    assert_eq!(rows(&local, exact), rows(&reference, exact));

    let staging = states(&remote.run_ok(&["status", "staging", "--format", "json"], 0));
    let pulled_states = states(&remote.run_ok(&["status", "local", "--format", "json"], 0));
    assert_eq!(pulled_states, staging);
    assert!(
        pulled_states
            .iter()
            .all(|line| line.ends_with("\"applied\"")),
        "{pulled_states:?}"
    );
    // Nothing left behind but the new file.
    let stray: Vec<String> = remote
        .project
        .files()
        .into_iter()
        .filter(|file| file.contains("d1ctl-pull") || file.starts_with(".d1ctl/tmp/"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // With the drift command: the copy's schema is staging's.
    remote.run_ok(&["drift", "staging", "local"], 0);
}

#[test]
fn pull_refuses_protected_d1_and_same_targets() {
    let remote =
        remote("[env.golden]\nbackend = \"sqlite\"\npath = \"golden.sqlite\"\nprotected = true\n")
            .seeded();
    let protected = remote.run_ok(&["pull", "staging", "--into", "golden"], 2);
    assert!(
        protected.stderr.contains(
            "env `golden` is protected; `pull` does not overwrite protected environments"
        ),
        "{}",
        protected.stderr
    );
    assert!(protected.stderr.contains("hint:"), "{}", protected.stderr);

    let d1_target = remote.run_ok(&["pull", "local", "--into", "staging"], 2);
    assert!(
        d1_target.stderr.contains(
            "env `staging` is a d1 env; `pull` writes only into local (`backend = \"sqlite\"`) envs"
        ),
        "{}",
        d1_target.stderr
    );

    let same = remote.run_ok(&["pull", "local", "--into", "local"], 2);
    assert!(
        same.stderr.contains("two different envs"),
        "{}",
        same.stderr
    );

    let missing = remote.run_ok(&["export", "local"], 2);
    assert!(
        missing
            .stderr
            .contains("env `local` has no database yet: `local.sqlite` does not exist"),
        "{}",
        missing.stderr
    );
    assert!(!remote.project.path("golden.sqlite").exists());
    assert!(!remote.project.path("local.sqlite").exists());
}

#[test]
fn pull_over_data_asks_for_yes_without_a_terminal_and_keeps_a_backup() {
    let project = local_project();
    project.config(
        "[project]\nladder = [\"seed\", \"local\"]\n\n\
         [env.seed]\nbackend = \"sqlite\"\npath = \"seed.sqlite\"\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n",
    );
    project.run_ok(&["apply", "seed"], 0);
    project
        .db("seed.sqlite")
        .execute_batch("INSERT INTO users (email) VALUES ('seed@example.com');")
        .unwrap();
    let before = contents(&project.db("local.sqlite"));
    let backups_before = backup_count(&project);

    let mut command = project.command(&["pull", "seed", "--into", "local"]);
    let refused = command.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("env `local` (`local.sqlite`) holds rows in 2 tables (`users`, `posts`)"),
        "{stderr}"
    );
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(contents(&project.db("local.sqlite")), before, "untouched");
    assert_eq!(backup_count(&project), backups_before, "no backup taken");

    // CI=true confirms nothing by itself.
    let mut command = project.command(&["pull", "seed", "--into", "local"]);
    let in_ci = command
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(in_ci.status.code(), Some(1));

    let pulled = project.run_ok(
        &[
            "pull", "seed", "--into", "local", "--yes", "--format", "json",
        ],
        0,
    );
    let backup = pulled.json()["backup"].as_str().unwrap().to_owned();
    assert!(
        backup.starts_with(".d1ctl/backups/local-") && backup.ends_with(".sqlite"),
        "{backup}"
    );
    assert!(
        pulled
            .stderr
            .contains(&format!("rollback point: backup {backup}")),
        "{}",
        pulled.stderr
    );
    assert_eq!(
        contents(&project.db(&backup)),
        before,
        "the backup is the old file"
    );
    assert_eq!(
        rows(&project.db("local.sqlite"), "SELECT email FROM users"),
        ["seed@example.com"]
    );
    assert_eq!(
        contents(&project.db("local.sqlite")),
        contents(&project.db("seed.sqlite"))
    );
    project.run_ok(&["drift", "seed", "local"], 0);

    // A schema without rows is replaced without asking (the backup is still kept).
    project
        .db("local.sqlite")
        .execute_batch("DELETE FROM posts; DELETE FROM users;")
        .unwrap();
    let mut command = project.command(&["pull", "seed", "--into", "local"]);
    let quiet = command.stdin(Stdio::null()).output().unwrap();
    assert_eq!(
        quiet.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    // The two pulls' backups, beside those of the applies that made the file.
    assert_eq!(backup_count(&project), backups_before + 2);
}

#[test]
fn pull_takes_over_a_target_in_wal_mode() {
    let project = local_project();
    project.config(
        "[project]\nladder = [\"seed\", \"local\"]\n\n\
         [env.seed]\nbackend = \"sqlite\"\npath = \"seed.sqlite\"\n\n\
         [env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n",
    );
    project.run_ok(&["apply", "seed"], 0);
    {
        let local = project.db("local.sqlite");
        let mode: String = local
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        local
            .execute_batch("INSERT INTO users (email) VALUES ('wal@example.com');")
            .unwrap();
    }
    let old = contents(&project.db("local.sqlite"));
    let pulled = project.run_ok(
        &[
            "pull", "seed", "--into", "local", "--yes", "--format", "json",
        ],
        0,
    );
    let backup = pulled.json()["backup"].as_str().unwrap().to_owned();
    assert_eq!(contents(&project.db(&backup)), old);
    assert_eq!(
        rows(&project.db("local.sqlite"), "SELECT count(*) FROM users"),
        ["0"]
    );
    assert!(!project.path("local.sqlite-wal").exists());
    assert!(!project.path("local.sqlite-shm").exists());
    assert_eq!(
        rows(&project.db("local.sqlite"), "PRAGMA journal_mode"),
        ["delete"]
    );
}
