//! `d1ctl drift`: equal schemas written differently compare equal; every kind of real change is
//! reported precisely with exit 1.

use std::path::Path;
use std::process::Command;

use crate::common::{Project, copy_dir, corpus_dir, corpus_entries, fixtures_dir};

const TWO_ENVS: &str = "[project]\nladder = [\"a\", \"b\"]\n\n[env.a]\nbackend = \"sqlite\"\npath = \"a.sqlite\"\n\n[env.b]\nbackend = \"sqlite\"\npath = \"b.sqlite\"\n";

/// Two local envs whose databases are made by hand from `a` and `b`.
fn envs(a: &str, b: &str) -> Project {
    let project = Project::new();
    project.config(TWO_ENVS);
    project.db("a.sqlite").execute_batch(a).unwrap();
    project.db("b.sqlite").execute_batch(b).unwrap();
    project
}

const BASE: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT DEFAULT 'anon');\n\
    CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, title TEXT);\n\
    CREATE INDEX posts_user ON posts(user_id);\n\
    CREATE TRIGGER users_email AFTER INSERT ON users BEGIN UPDATE users SET email = lower(NEW.email) WHERE id = NEW.id; END;\n\
    CREATE VIEW named AS SELECT id, name FROM users WHERE name IS NOT NULL;";

#[test]
fn the_same_schema_spelled_three_ways_has_no_drift() {
    let drizzle = "CREATE TABLE IF NOT EXISTS `users` (\n\t`id` integer PRIMARY KEY,\n\t`email` text NOT NULL,\n\t`name` text DEFAULT 'anon'\n);\n\
        CREATE TABLE `posts` (\n\t`id` integer PRIMARY KEY,\n\t`user_id` integer REFERENCES `users`(`id`) ON DELETE cascade,\n\t`title` text\n);\n\
        CREATE INDEX IF NOT EXISTS `posts_user` ON `posts` (`user_id`);\n\
        CREATE TRIGGER IF NOT EXISTS \"users_email\" AFTER INSERT ON \"users\" BEGIN\n  UPDATE \"users\" SET \"email\" = LOWER(new.\"email\") WHERE \"id\" = new.\"id\";\nEND;\n\
        CREATE VIEW IF NOT EXISTS [named] AS SELECT [id], [name] FROM [users] WHERE [name] IS NOT NULL;";
    let project = envs(BASE, drizzle);
    let output = project.run_ok(&["drift", "a", "b"], 0);
    assert_eq!(
        output.stdout,
        "no drift: `a` and `b` have the same schema (2 tables, 1 index, 1 trigger, 1 view)\n"
    );
    let hand = "create table users (\n  id integer primary key,\n  email text not null,\n  name text default 'anon'\n);\n\
        create table posts (id integer primary key, user_id integer references users (id) on delete cascade, title text);\n\
        create index posts_user on posts (user_id);\n\
        create trigger users_email after insert on users begin update users set email = lower(new.email) where id = new.id; end;\n\
        create view named as select id, name from users where name is not null;";
    fs_err::remove_file(project.path("a.sqlite")).unwrap();
    project.db("a.sqlite").execute_batch(hand).unwrap();
    project.run_ok(&["drift", "a", "b"], 0);
}

#[test]
fn every_kind_of_change_is_reported_precisely() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "column added",
            "ALTER TABLE users ADD COLUMN bio TEXT NOT NULL DEFAULT '';",
            "table users: column bio added (TEXT NOT NULL DEFAULT '')",
        ),
        (
            "column removed",
            "ALTER TABLE posts DROP COLUMN title;",
            "table posts: column title removed",
        ),
        (
            "type changed",
            "DROP VIEW named; CREATE TABLE u2 (id INTEGER PRIMARY KEY, email BLOB NOT NULL, name TEXT DEFAULT 'anon'); DROP TRIGGER users_email; PRAGMA foreign_keys=OFF; DROP TABLE users; ALTER TABLE u2 RENAME TO users; CREATE VIEW named AS SELECT id, name FROM users WHERE name IS NOT NULL; CREATE TRIGGER users_email AFTER INSERT ON users BEGIN UPDATE users SET email = lower(NEW.email) WHERE id = NEW.id; END;",
            "table users: column email type TEXT → BLOB",
        ),
        (
            "default changed",
            "DROP VIEW named; CREATE TABLE u2 (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT DEFAULT 'nobody'); DROP TRIGGER users_email; DROP TABLE users; ALTER TABLE u2 RENAME TO users; CREATE VIEW named AS SELECT id, name FROM users WHERE name IS NOT NULL; CREATE TRIGGER users_email AFTER INSERT ON users BEGIN UPDATE users SET email = lower(NEW.email) WHERE id = NEW.id; END;",
            "table users: column name default 'anon' → 'nobody'",
        ),
        (
            "not null changed",
            "DROP VIEW named; CREATE TABLE u2 (id INTEGER PRIMARY KEY, email TEXT, name TEXT DEFAULT 'anon'); DROP TRIGGER users_email; DROP TABLE users; ALTER TABLE u2 RENAME TO users; CREATE VIEW named AS SELECT id, name FROM users WHERE name IS NOT NULL; CREATE TRIGGER users_email AFTER INSERT ON users BEGIN UPDATE users SET email = lower(NEW.email) WHERE id = NEW.id; END;",
            "table users: column email NOT NULL dropped",
        ),
        (
            "index added",
            "CREATE INDEX users_name ON users(name);",
            "index users_name: added (ON users (name))",
        ),
        (
            "index removed",
            "DROP INDEX posts_user;",
            "index posts_user: removed",
        ),
        (
            "index made unique",
            "DROP INDEX posts_user; CREATE UNIQUE INDEX posts_user ON posts(user_id);",
            "index posts_user: now UNIQUE",
        ),
        (
            "foreign key action changed",
            "CREATE TABLE p2 (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE SET NULL, title TEXT); DROP TABLE posts; ALTER TABLE p2 RENAME TO posts; CREATE INDEX posts_user ON posts(user_id);",
            "table posts: foreign key (user_id) → users: ON DELETE CASCADE → SET NULL",
        ),
        (
            "table added",
            "CREATE TABLE tags (name TEXT);",
            "table tags: added",
        ),
        (
            "table removed",
            "DROP TABLE posts;",
            "table posts: removed (with 1 index)",
        ),
        (
            "trigger changed",
            "DROP TRIGGER users_email; CREATE TRIGGER users_email AFTER INSERT ON users BEGIN UPDATE users SET email = upper(NEW.email) WHERE id = NEW.id; END;",
            "trigger users_email: body differs",
        ),
        (
            "view changed",
            "DROP VIEW named; CREATE VIEW named AS SELECT id, name, email FROM users WHERE name IS NOT NULL;",
            "view named: body differs",
        ),
    ];
    for (case, change, expected) in cases {
        let project = envs(BASE, &format!("{BASE}\n{change}"));
        let output = project.run(&["drift", "a", "b"]);
        assert_eq!(
            output.code, 1,
            "{case}: {}\n{}",
            output.stdout, output.stderr
        );
        let summaries: Vec<&str> = output
            .stdout
            .lines()
            .skip_while(|line| !line.starts_with("schema, going from A to B:"))
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(str::trim)
            .collect();
        assert_eq!(summaries, [*expected], "{case}:\n{}", output.stdout);
        let json = project.run(&["drift", "a", "b", "--format", "json"]).json();
        assert_eq!(json["drift"], true, "{case}");
        assert_eq!(json["changes"][0]["summary"], *expected, "{case}");
    }
}

#[test]
fn the_unified_diff_shows_the_change() {
    let project = envs(
        BASE,
        &format!("{BASE}\nALTER TABLE users ADD COLUMN bio TEXT;"),
    );
    let output = project.run_ok(&["drift", "a", "b"], 1);
    assert!(
        output.stdout.contains("--- A `a`\n+++ B `b`\n@@ "),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("\n+  bio TEXT,\n"),
        "{}",
        output.stdout
    );
}

#[test]
fn internal_tables_are_ignored() {
    let project = envs(
        BASE,
        &format!(
            "{BASE}\nCREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB);\n\
             CREATE TABLE \"d1_migrations\"(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);\n\
             INSERT INTO d1_migrations (name) VALUES ('x');\n\
             CREATE TABLE __drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric);\n\
             CREATE TABLE _d1ctl_migrations (name TEXT PRIMARY KEY, sha256 TEXT, sha256_lf TEXT, applied_at TEXT, applied_by TEXT);\nANALYZE;"
        ),
    );
    // The ledgers differ (b records `x`, a folder migration it does not have), but no schema does.
    let output = project.run(&["drift", "a", "b", "--format", "json"]);
    let json = output.json();
    assert_eq!(json["changes"].as_array().unwrap().len(), 0, "{json:#}");
}

#[test]
fn fts5_shadow_tables_are_not_reported() {
    let fts = "CREATE VIRTUAL TABLE docs USING fts5(title, body);";
    let project = envs(
        &format!("{BASE}\n{fts}"),
        &format!("{BASE}\n{fts}\nINSERT INTO docs VALUES ('a', 'b');"),
    );
    project.run_ok(&["drift", "a", "b"], 0);
    let project = envs(BASE, &format!("{BASE}\n{fts}"));
    let output = project.run_ok(&["drift", "a", "b", "--format", "json"], 1);
    let changes = output.json()["changes"].clone();
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes:#}");
    assert_eq!(changes[0]["summary"], "table docs: added");
}

#[test]
fn drift_env_reports_a_hand_made_alter_table() {
    let project = Project::new();
    project
        .migration(
            "0001_users.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n",
        )
        .migration(
            "0002_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\n",
        );
    project.run_ok(&["apply", "local"], 0);
    project.run_ok(&["drift", "local"], 0);
    project
        .db("local.sqlite")
        .execute_batch("ALTER TABLE users ADD COLUMN phone TEXT;")
        .unwrap();
    let output = project.run_ok(&["drift", "local", "--format", "json"], 1);
    let json = output.json();
    let summaries: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["summary"].as_str().unwrap())
        .collect();
    // A is the env, B the replay of its ledger: the env has a column the migrations never made.
    assert_eq!(summaries, ["table users: column phone removed"]);
    assert_eq!(json["ledgers"]["only_in_a"].as_array().unwrap().len(), 0);
}

#[test]
fn drift_against_the_folder_shows_the_ledger_difference() {
    let project = Project::new();
    project.migration(
        "0001_users.sql",
        "CREATE TABLE users (id INTEGER PRIMARY KEY);\n",
    );
    project.run_ok(&["apply", "local"], 0);
    project.run_ok(&["drift", "migrations", "local"], 0);
    project.migration("0002_more.sql", "CREATE TABLE more (x);\n");
    let output = project.run_ok(&["drift", "migrations", "local"], 1);
    assert!(
        output.stdout.contains("only in A: 0002_more.sql"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("table more: removed"),
        "{}",
        output.stdout
    );
}

#[test]
fn drift_of_two_d1_envs_takes_one_request_each() {
    use d1ctl::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec!["drift-token".to_owned()],
        databases: vec![
            (
                "one".to_owned(),
                "66666666-6666-4666-8666-666666666666".to_owned(),
            ),
            (
                "two".to_owned(),
                "77777777-7777-4777-8777-777777777777".to_owned(),
            ),
        ],
    })
    .unwrap();
    let project = Project::new();
    project.config(
        "[env.one]\nbackend = \"d1\"\naccount_id = \"abcdefabcdefabcdefabcdefabcdef12\"\ndatabase_id = \"66666666-6666-4666-8666-666666666666\"\ndatabase_name = \"one\"\n\n\
         [env.two]\nbackend = \"d1\"\naccount_id = \"abcdefabcdefabcdefabcdefabcdef12\"\ndatabase_id = \"77777777-7777-4777-8777-777777777777\"\ndatabase_name = \"two\"\n",
    );
    project.migration("0001_t.sql", "CREATE TABLE t (x INTEGER);\n");
    let run = |args: &[&str]| {
        let output = project
            .command(args)
            .env("CLOUDFLARE_API_BASE_URL", sim.base_url())
            .env("CLOUDFLARE_API_TOKEN", "drift-token")
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    assert_eq!(run(&["apply", "one", "-q"]).0, 0);
    assert_eq!(run(&["apply", "two", "-q"]).0, 0);
    sim.reset_stats();
    let (code, stdout) = run(&["drift", "one", "two"]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(sim.stats().total, 2, "{:?}", sim.stats());
    sim.execute("two", "CREATE INDEX t_x ON t(x)").unwrap();
    let (code, stdout) = run(&["drift", "one", "two"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("index t_x: added (ON t (x))"), "{stdout}");
}

/// A project with the entry's folder and two local envs: `d1ctl`, applied by d1ctl, and `other`,
/// left for another tool to build.
fn built_by_d1ctl(root: &Path, name: &str) -> (Project, crate::corpus::Entry) {
    let entry = crate::corpus::entry(root, name);
    let project = Project::empty();
    copy_dir(&root.join(name).join(&entry.dir), &project.path(&entry.dir));
    project.config(&format!(
        "[project]\nmigrations_dir = \"{}\"\nlayout = \"{}\"\n\n[env.d1ctl]\nbackend = \"sqlite\"\npath = \"d1ctl.sqlite\"\n\n[env.other]\nbackend = \"sqlite\"\npath = \"other.sqlite\"\n",
        entry.dir, entry.style
    ));
    // An entry whose apply is expected to fail exits 1, with what came before it applied.
    project.run_ok(
        &["apply", "d1ctl", "-q"],
        i32::from(entry.failure.is_some()),
    );
    (project, entry)
}

/// No schema difference between `d1ctl` and `other`.
fn assert_no_schema_drift(project: &Project, name: &str) {
    let json = project
        .run(&["drift", "d1ctl", "other", "--format", "json"])
        .json();
    assert_eq!(
        json["changes"].as_array().unwrap().len(),
        0,
        "{name}: {json:#}"
    );
}

/// For every corpus folder, a database built by d1ctl and one built by the `sqlite3` CLI
/// replaying the files have no drift.
#[test]
fn corpus_built_by_d1ctl_and_by_sqlite3_have_no_drift() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    for name in corpus_entries(&corpus) {
        let (project, entry) = built_by_d1ctl(&corpus, &name);
        for file in &entry.applied_order {
            let sql = fs_err::read(project.path(&format!("{}/{file}", entry.dir))).unwrap();
            let mut child = Command::new("sqlite3")
                .arg(project.path("other.sqlite"))
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the sqlite3 CLI (Debian package sqlite3) is needed for this test");
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &sql).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success() && output.stderr.is_empty(),
                "{name} {file}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert_no_schema_drift(&project, &name);
    }
}

/// For every fixture, a database built by d1ctl and one built by plain SQLite (rusqlite, each
/// file run whole in its own transaction, foreign keys on, the way the fixtures' oracle runs
/// them) have no drift. No sqlite3 CLI needed: this runs on every clone.
#[test]
fn fixtures_built_by_d1ctl_and_by_plain_sqlite_have_no_drift() {
    let root = fixtures_dir();
    for name in corpus_entries(&root) {
        let (project, entry) = built_by_d1ctl(&root, &name);
        let other = project.db("other.sqlite");
        other.pragma_update(None, "foreign_keys", "ON").unwrap();
        for file in &entry.applied_order {
            let sql =
                fs_err::read_to_string(project.path(&format!("{}/{file}", entry.dir))).unwrap();
            other
                .execute_batch(&format!("BEGIN;\n{sql}\nCOMMIT;"))
                .unwrap_or_else(|error| panic!("{name} {file}: {error}"));
        }
        drop(other);
        assert_no_schema_drift(&project, &name);
    }
}

const USERS: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n";
const POSTS: &str = "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), title TEXT);\nCREATE INDEX posts_user ON posts(user_id);\n";

/// `a` migrated by d1ctl; `b` made by hand with the same schema and rows, no ledger: a database
/// created before anyone tracked it.
fn tracked_and_untracked() -> Project {
    let project = Project::new();
    project.config(TWO_ENVS);
    project
        .migration("0001_users.sql", USERS)
        .migration("0002_posts.sql", POSTS);
    project.run_ok(&["apply", "a", "-q"], 0);
    project
        .db("b.sqlite")
        .execute_batch(&format!(
            "{USERS}{POSTS}INSERT INTO users VALUES (1, 'ada@example.com'); INSERT INTO posts VALUES (1, 1, 'hello');"
        ))
        .unwrap();
    project
}

#[test]
fn equal_schemas_with_an_untracked_side_exit_0_with_the_baseline_hint() {
    let project = tracked_and_untracked();
    let output = project.run_ok(&["drift", "a", "b"], 0);
    insta::assert_snapshot!("drift_untracked", output.snapshot(&project));

    let json = project
        .run_ok(&["drift", "a", "b", "--format", "json"], 0)
        .json();
    assert_eq!(json["drift"], false, "{json:#}");
    assert_eq!(json["schemas_differ"], false, "{json:#}");
    assert_eq!(json["ledgers_differ"], true, "{json:#}");
    assert_eq!(json["ledgers"]["counted"], false, "{json:#}");
    assert_eq!(
        json["ledgers"]["only_in_a"],
        serde_json::json!(["0001_users.sql", "0002_posts.sql"])
    );
    insta::assert_json_snapshot!("drift_untracked_lacking", json["ledgers"]["lacking"]);

    // The folder against it says the same; the hint is right: baseline records both, keeps the
    // rows, and there is no difference left.
    let output = project.run_ok(&["drift", "migrations", "b"], 0);
    assert!(
        output
            .stderr
            .contains("hint: record what `b` already has without running it: `d1ctl baseline b`"),
        "{}",
        output.stderr
    );
    project.run_ok(&["baseline", "b", "--yes", "-q"], 0);
    let output = project.run_ok(&["drift", "a", "b"], 0);
    assert_eq!(
        output.stdout,
        "no drift: `a` and `b` have the same schema (2 tables, 1 index, 0 triggers, 0 views)\n"
    );
    assert_eq!(
        crate::common::rows(
            &project.db("b.sqlite"),
            "SELECT u.email, p.title FROM posts p JOIN users u ON u.id = p.user_id"
        ),
        ["ada@example.com|hello"]
    );
}

#[test]
fn ledgers_flag_makes_a_ledger_difference_drift() {
    let project = tracked_and_untracked();
    let output = project.run_ok(&["drift", "a", "b", "--ledgers"], 1);
    insta::assert_snapshot!("drift_untracked_counted", output.snapshot(&project));
    let json = project
        .run_ok(&["drift", "a", "b", "--ledgers", "--format", "json"], 1)
        .json();
    assert_eq!(json["drift"], true, "{json:#}");
    assert_eq!(json["schemas_differ"], false, "{json:#}");
    assert_eq!(json["ledgers"]["counted"], true, "{json:#}");
    // Equal ledgers are no drift, flag or not.
    project.run_ok(&["drift", "a", "--ledgers"], 0);
}

#[test]
fn a_lacking_migration_that_changes_no_schema_gets_the_status_hint() {
    let project = Project::new();
    project.config(TWO_ENVS);
    project.migration("0001_users.sql", USERS);
    project.run_ok(&["apply", "a", "-q"], 0);
    project.run_ok(&["apply", "b", "-q"], 0);
    project.migration(
        "0002_admin.sql",
        "INSERT INTO users (id, email) VALUES (100, 'admin@example.com');\n",
    );
    project.run_ok(&["apply", "a", "-q"], 0);
    project
        .db("b.sqlite")
        .execute("INSERT INTO users VALUES (1, 'ada@example.com')", [])
        .unwrap();
    let output = project.run_ok(&["drift", "a", "b"], 0);
    insta::assert_snapshot!("drift_no_schema", output.snapshot(&project));
    let json = project
        .run_ok(&["drift", "a", "b", "--format", "json"], 0)
        .json();
    insta::assert_json_snapshot!("drift_no_schema_lacking", json["ledgers"]["lacking"]);
    project.run_ok(&["drift", "a", "b", "--ledgers"], 1);
}

#[test]
fn differing_schemas_still_exit_1_with_the_ledger_difference_explained() {
    // `b` has 0001 and 0002 untracked; 0003 makes a table it does not have.
    let project = tracked_and_untracked();
    project.migration(
        "0003_tags.sql",
        "CREATE TABLE tags (name TEXT PRIMARY KEY);\n",
    );
    project.run_ok(&["apply", "a", "-q"], 0);
    let output = project.run_ok(&["drift", "a", "b"], 1);
    insta::assert_snapshot!("drift_untracked_and_behind", output.snapshot(&project));
    let json = project
        .run_ok(&["drift", "a", "b", "--format", "json"], 1)
        .json();
    assert_eq!(json["schemas_differ"], true, "{json:#}");
    assert_eq!(
        json["ledgers"]["lacking"][0]["hint"],
        "d1ctl baseline b --through 0002_posts.sql"
    );
}

#[test]
fn a_ledger_row_with_no_file_is_named_with_the_status_hint() {
    let project = Project::new();
    project
        .migration("0001_users.sql", USERS)
        .migration("0002_posts.sql", POSTS);
    project.run_ok(&["apply", "local", "-q"], 0);
    project
        .db("local.sqlite")
        .execute("INSERT INTO users VALUES (1, 'ada@example.com')", [])
        .unwrap();
    // The file of an applied migration is deleted: `local` records what the folder lacks, and
    // its schema has a table the folder no longer makes.
    fs_err::remove_file(project.path("migrations/0002_posts.sql")).unwrap();
    let output = project.run_ok(&["drift", "migrations", "local"], 1);
    assert!(
        output.stdout.contains(
            "  only in B: 0002_posts.sql\n  the folder has no file for 0002_posts.sql: only the ledger of `local` records it\n"
        ),
        "{}",
        output.stdout
    );
    assert_eq!(
        output.stderr.matches("hint:").count(),
        1,
        "{}",
        output.stderr
    );
    let json = project
        .run_ok(&["drift", "migrations", "local", "--format", "json"], 1)
        .json();
    let lacking = &json["ledgers"]["lacking"][0];
    assert_eq!(lacking["side"], "a", "{json:#}");
    assert_eq!(
        lacking["not_in_folder"],
        serde_json::json!(["0002_posts.sql"])
    );
    assert_eq!(lacking["hint"], "d1ctl status local");
}
