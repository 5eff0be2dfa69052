//! Databases wrangler migrated, and wrangler's own local state file.

use crate::common::{Project, rows};

/// wrangler 4.105+ `getCreateMigrationsTableQuery`, byte for byte.
const WRANGLER_DDL: &str = "CREATE TABLE IF NOT EXISTS \"d1_migrations\"(\n\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n\t\tname       TEXT UNIQUE,\n\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n);";

fn project() -> Project {
    let project = Project::new();
    project
        .migration(
            "0001_users.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY);\n",
        )
        .migration(
            "0002_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY);\n",
        )
        .migration(
            "0003_tags.sql",
            "CREATE TABLE tags (id INTEGER PRIMARY KEY);\n",
        );
    project
}

#[test]
fn reads_a_database_wrangler_migrated_and_continues() {
    let project = project();
    let db = project.db("local.sqlite");
    db.execute_batch(WRANGLER_DDL).unwrap();
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY);\nINSERT INTO \"d1_migrations\" (name)\nvalues ('0001_users.sql');\n\
         CREATE TABLE posts (id INTEGER PRIMARY KEY);\nINSERT INTO \"d1_migrations\" (name)\nvalues ('0002_posts.sql');",
    )
    .unwrap();
    let status = project.run_ok(&["status", "--format", "json"], 0).json();
    let migrations = status["environments"][0]["migrations"].as_array().unwrap();
    assert_eq!(migrations[0]["state"], "applied");
    assert_eq!(migrations[0]["verified"], false);
    assert!(
        migrations[0]["applied_at"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    assert_eq!(migrations[2]["state"], "pending");

    project.run_ok(&["apply", "local"], 0);
    assert_eq!(
        rows(&db, "SELECT id, name FROM d1_migrations ORDER BY id"),
        ["1|0001_users.sql", "2|0002_posts.sql", "3|0003_tags.sql"]
    );
    // What wrangler applied is now tracked by d1ctl too, with checksums from here on.
    assert_eq!(rows(&db, "SELECT count(*) FROM _d1ctl_migrations"), ["3"]);
    // wrangler's pending query (`SELECT name`) sees everything applied.
    assert_eq!(
        rows(
            &db,
            "SELECT count(*) FROM d1_migrations WHERE name IN ('0001_users.sql','0002_posts.sql','0003_tags.sql')"
        ),
        ["3"]
    );
}

#[test]
fn reads_the_unquoted_ledger_of_older_wranglers() {
    let project = project();
    let db = project.db("local.sqlite");
    db.execute_batch(
        "\n\t\t\t\t\t\tCREATE TABLE IF NOT EXISTS d1_migrations\n\t\t\t\t\t\t(\n\t\t\t\t\t\t\t\tid INTEGER PRIMARY KEY AUTOINCREMENT,\n\t\t\t\t\t\t\t\tname TEXT UNIQUE,\n\t\t\t\t\t\t\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n\t\t\t\t\t\t);\
         CREATE TABLE users (id INTEGER PRIMARY KEY); INSERT INTO d1_migrations (name) values ('0001_users.sql');",
    )
    .unwrap();
    project.run_ok(&["apply", "local"], 0);
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0001_users.sql", "0002_posts.sql", "0003_tags.sql"]
    );
}

#[test]
fn creates_wranglers_ledger_exactly() {
    let project = project();
    project.run_ok(&["apply", "local"], 0);
    let db = project.db("local.sqlite");
    assert_eq!(
        rows(
            &db,
            "SELECT sql FROM sqlite_master WHERE name = 'd1_migrations'"
        ),
        [
            "CREATE TABLE \"d1_migrations\"(\n\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n\t\tname       TEXT UNIQUE,\n\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n)"
        ]
    );
    let applied_at = rows(&db, "SELECT applied_at FROM d1_migrations WHERE id = 1");
    // CURRENT_TIMESTAMP: `YYYY-MM-DD HH:MM:SS` in UTC, as wrangler's rows have.
    assert_eq!(applied_at[0].len(), 19, "{applied_at:?}");
    assert_eq!(&applied_at[0][10..11], " ");
}

#[test]
fn honours_a_custom_ledger_table_name() {
    let project = project();
    project.config("[project]\nledger = \"schema_history\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n");
    project.run_ok(&["apply", "local"], 0);
    let db = project.db("local.sqlite");
    assert_eq!(rows(&db, "SELECT count(*) FROM schema_history"), ["3"]);
    assert!(
        rows(
            &db,
            "SELECT name FROM sqlite_master WHERE name = 'd1_migrations'"
        )
        .is_empty()
    );
}

#[test]
fn targets_wranglers_local_state_file() {
    let project = project();
    project.config(
        "[env.local]\nbackend = \"sqlite\"\nwrangler_database_id = \"6f1c2a3e-1b2c-4d5e-8f90-0123456789ab\"\nwrangler_dir = \"worker\"\n",
    );
    let output = project.run_ok(&["apply", "local"], 0);
    let expected = "worker/.wrangler/state/v3/d1/miniflare-D1DatabaseObject/d4d861e5d14433f7f2d1c01d1030318502c8c056bd682e75b3d16b47dad2ab73.sqlite";
    assert!(output.stderr.contains(expected), "{}", output.stderr);
    let db = project.db(expected);
    assert_eq!(rows(&db, "SELECT count(*) FROM d1_migrations"), ["3"]);
}
