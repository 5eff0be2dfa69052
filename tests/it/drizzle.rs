//! drizzle-kit 0.x folders: `__drizzle_migrations` written as drizzle's migrator writes it, and
//! databases only drizzle touched read correctly.

use crate::common::{Project, rows};

const JOURNAL: &str = r#"{
  "version": "7",
  "dialect": "sqlite",
  "entries": [
    { "idx": 0, "version": "6", "when": 1732696446109, "tag": "0000_cuddly_black_bolt", "breakpoints": true },
    { "idx": 1, "version": "6", "when": 1732696500000, "tag": "0001_add_posts", "breakpoints": true }
  ]
}"#;

const FIRST: &str = "CREATE TABLE `users` (\n\t`id` integer PRIMARY KEY NOT NULL,\n\t`email` text NOT NULL\n);\n--> statement-breakpoint\nCREATE UNIQUE INDEX `users_email_unique` ON `users` (`email`);";
const SECOND: &str = "CREATE TABLE `posts` (\n\t`id` integer PRIMARY KEY NOT NULL,\n\t`user_id` integer REFERENCES `users`(`id`) ON DELETE cascade\n);";

fn project() -> Project {
    let project = Project::new();
    project.config("[project]\nmigrations_dir = \"drizzle\"\n\n[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n");
    project
        .write("drizzle/meta/_journal.json", JOURNAL)
        .write("drizzle/0000_cuddly_black_bolt.sql", FIRST)
        .write("drizzle/0001_add_posts.sql", SECOND);
    project
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[test]
fn apply_writes_every_ledger_in_drizzle_order() {
    let project = project();
    project.run_ok(&["apply", "local"], 0);
    let db = project.db("local.sqlite");
    assert_eq!(
        rows(
            &db,
            "SELECT id, hash, created_at, typeof(created_at) FROM __drizzle_migrations ORDER BY rowid"
        ),
        [
            format!("NULL|{}|1732696446109|integer", sha256(FIRST)),
            format!("NULL|{}|1732696500000|integer", sha256(SECOND)),
        ]
    );
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0000_cuddly_black_bolt.sql", "0001_add_posts.sql"]
    );
    // The table is drizzle's own, whitespace included, so drizzle sees its ledger unchanged.
    assert_eq!(
        rows(
            &db,
            "SELECT sql FROM sqlite_master WHERE name = '__drizzle_migrations'"
        ),
        [
            "CREATE TABLE \"__drizzle_migrations\" (\n\t\t\tid SERIAL PRIMARY KEY,\n\t\t\thash text NOT NULL,\n\t\t\tcreated_at numeric\n\t\t)"
        ]
    );
    let status = project.run_ok(&["status", "--format", "json"], 0).json();
    let migrations = status["environments"][0]["migrations"].as_array().unwrap();
    assert!(
        migrations.iter().all(|m| m["state"] == "applied"),
        "{status:#}"
    );
    assert_eq!(status["layout"], "drizzle");
}

#[test]
fn continues_where_drizzles_own_migrator_left_off() {
    let project = project();
    // What drizzle-orm's D1 migrator leaves after running the first migration.
    let db = project.db("local.sqlite");
    db.execute_batch(&format!(
        "\n\t\tCREATE TABLE IF NOT EXISTS \"__drizzle_migrations\" (\n\t\t\tid SERIAL PRIMARY KEY,\n\t\t\thash text NOT NULL,\n\t\t\tcreated_at numeric\n\t\t)\n\t;\
         CREATE TABLE `users` (`id` integer PRIMARY KEY NOT NULL, `email` text NOT NULL);\
         CREATE UNIQUE INDEX `users_email_unique` ON `users` (`email`);\
         INSERT INTO \"__drizzle_migrations\" (\"hash\", \"created_at\") VALUES('{}', 1732696446109);",
        sha256(FIRST)
    ))
    .unwrap();

    let status = project.run_ok(&["status", "--format", "json"], 0).json();
    let migration_states: Vec<&str> = status["environments"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(migration_states, ["applied", "pending"]);

    project.run_ok(&["apply", "local"], 0);
    assert_eq!(
        rows(
            &db,
            "SELECT hash = ?1 FROM __drizzle_migrations ORDER BY rowid"
                .replace("?1", &format!("'{}'", sha256(FIRST)))
                .as_str()
        ),
        ["1", "0"]
    );
    assert_eq!(
        rows(&db, "SELECT count(*) FROM __drizzle_migrations"),
        ["2"]
    );
    // The migration drizzle ran is now in wrangler's and d1ctl's ledgers too.
    assert_eq!(
        rows(&db, "SELECT name FROM d1_migrations ORDER BY id"),
        ["0000_cuddly_black_bolt.sql", "0001_add_posts.sql"]
    );
    assert_eq!(rows(&db, "SELECT count(*) FROM _d1ctl_migrations"), ["2"]);
}

#[test]
fn an_edited_drizzle_migration_is_caught_by_drizzles_own_hash() {
    let project = project();
    let db = project.db("local.sqlite");
    db.execute_batch(&format!(
        "CREATE TABLE \"__drizzle_migrations\" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric);\
         INSERT INTO \"__drizzle_migrations\" (\"hash\", \"created_at\") VALUES('{}', '1732696446109');",
        sha256(&FIRST.replace("NOT NULL", "NOT NULL DEFAULT ''"))
    ))
    .unwrap();
    let status = project.run_ok(&["status", "--format", "json"], 1).json();
    assert_eq!(
        status["environments"][0]["migrations"][0]["state"],
        "checksum_mismatch"
    );
}

#[test]
fn new_refuses_with_a_hint() {
    let project = project();
    let output = project.run_ok(&["new", "add_x"], 2);
    assert!(
        output.stderr.contains("is a drizzle-kit folder"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("hint: run `drizzle-kit generate`"),
        "{}",
        output.stderr
    );
}
