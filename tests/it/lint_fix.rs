//! `lint --fix`: a rebuild that loses rows on D1 rewritten into one that keeps them, only for
//! migrations no env has applied.

use d1ctl::core::rows;
use d1ctl::sim::{SimConfig, Simulator};

use crate::common::{Project, rows as query};

const INIT: &str = "\
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT NOT NULL);
CREATE INDEX posts_user ON posts (user_id);
CREATE TRIGGER posts_trim AFTER INSERT ON posts BEGIN UPDATE posts SET title = trim(title) WHERE id = new.id; END;
CREATE VIEW recent_posts AS SELECT id, title FROM posts ORDER BY id DESC;
CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE, body TEXT);
CREATE TABLE likes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE SET NULL);
";

const ROWS: &str = "\
INSERT INTO users VALUES (1, 'ada'), (2, 'bob');
INSERT INTO posts VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c');
INSERT INTO comments VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 3, 'z');
INSERT INTO likes VALUES (1, 1), (2, 2);
";

/// The rebuild as drizzle-kit and most hands write it.
const REBUILD: &str = "\
-- Migration number: 0002 \t 2026-11-20T10:00:00.000Z
-- users gets an email
PRAGMA foreign_keys=OFF;
CREATE TABLE __new_users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
INSERT INTO __new_users (id, name) SELECT id, name FROM users;
DROP TABLE users;
ALTER TABLE __new_users RENAME TO users;
PRAGMA foreign_keys=ON;
";

const FILE: &str = "migrations/0002_users_email.sql";

/// `0001` applied to `local.sqlite` and rows in every table, `0002` (the rebuild) pending.
fn project_with_rows() -> Project {
    let project = Project::new();
    project.migration("0001_init.sql", INIT);
    project.run_ok(&["apply", "local"], 0);
    project.db("local.sqlite").execute_batch(ROWS).unwrap();
    project.migration("0002_users_email.sql", REBUILD);
    project
}

fn counts(project: &Project) -> rows::Counts {
    rows::count_all(&project.db("local.sqlite"), &["d1_migrations"]).unwrap()
}

#[test]
fn fix_rewrites_a_pending_rebuild_and_applying_it_keeps_every_row() {
    let project = project_with_rows();
    let lint = project.run_ok(&["lint", FILE], 1);
    assert!(lint.stdout.contains("error[D1001]"), "{}", lint.stdout);

    let output = project.run_ok(&["lint", "--fix", FILE], 0);
    insta::assert_snapshot!("lint_fix_rewrite", output.snapshot(&project));
    assert!(!output.stdout.contains("[D1001]"), "{}", output.stdout);
    let written = fs_err::read_to_string(project.path(FILE)).unwrap();
    assert!(written.starts_with("-- Migration number: 0002 \t 2026-11-20T10:00:00.000Z\n"));
    assert!(written.contains("CREATE TABLE posts_next ("));

    // A second run has nothing left to fix.
    let again = project.run_ok(&["lint", "--fix", FILE], 0);
    assert!(
        again
            .stderr
            .contains("nothing to fix in `migrations/0002_users_email.sql`")
    );
    assert_eq!(fs_err::read_to_string(project.path(FILE)).unwrap(), written);

    let before = counts(&project);
    project.run_ok(&["apply", "local"], 0);
    assert_eq!(rows::losses(&before, &counts(&project)), []);
    let db = project.db("local.sqlite");
    assert_eq!(
        query(&db, "SELECT id, user_id, title FROM posts ORDER BY id"),
        ["1|1|a", "2|1|b", "3|2|c"]
    );
    assert_eq!(
        query(&db, "SELECT id, user_id FROM likes ORDER BY id"),
        ["1|1", "2|2"]
    );
    assert_eq!(
        query(&db, "SELECT count(*) FROM pragma_foreign_key_check"),
        ["0"]
    );
    assert_eq!(
        query(
            &db,
            "SELECT type, name FROM sqlite_master WHERE name IN ('posts_user', 'posts_trim', 'recent_posts') ORDER BY name"
        ),
        [
            "trigger|posts_trim",
            "index|posts_user",
            "view|recent_posts"
        ]
    );
    assert_eq!(
        query(
            &db,
            "SELECT name FROM pragma_table_info('users') ORDER BY cid"
        ),
        ["id", "name", "email"]
    );
}

#[test]
fn dry_run_shows_the_diff_and_writes_nothing() {
    let project = project_with_rows();
    let files = project.files();
    let output = project.run_ok(&["lint", "--fix", "--dry-run", FILE], 0);
    assert!(
        output.stdout.contains("+CREATE TABLE posts_next ("),
        "{}",
        output.stdout
    );
    assert!(output.stderr.contains("nothing written (--dry-run)"));
    // The lint of the rewrite, run in memory.
    assert!(!output.stdout.contains("[D1001]"), "{}", output.stdout);
    assert_eq!(fs_err::read_to_string(project.path(FILE)).unwrap(), REBUILD);
    assert_eq!(project.files(), files);
}

#[test]
fn an_applied_migration_is_refused_and_left_as_it_is() {
    let project = Project::new();
    project.migration("0001_init.sql", INIT);
    project.migration("0002_users_email.sql", REBUILD);
    project.run_ok(&["apply", "local"], 0);
    let output = project.run_ok(&["lint", "--fix", FILE], 2);
    insta::assert_snapshot!("lint_fix_applied", output.snapshot(&project));
    assert_eq!(fs_err::read_to_string(project.path(FILE)).unwrap(), REBUILD);
}

#[test]
fn an_env_that_cannot_be_read_is_a_refusal_naming_it() {
    let staging = Simulator::start(SimConfig {
        data_dir: None,
        tokens: vec!["the-right-token".to_owned()],
        databases: vec![(
            "app-staging".to_owned(),
            "88888888-8888-4888-8888-888888888888".to_owned(),
        )],
    })
    .unwrap();
    let project = project_with_rows();
    project.config(&format!(
        "{}\n[env.staging]\nbackend = \"d1\"\naccount_id = \"abcdefabcdefabcdefabcdefabcdef12\"\ndatabase_id = \"88888888-8888-4888-8888-888888888888\"\ndatabase_name = \"app-staging\"\napi_base_url = \"{}\"\n",
        crate::common::LOCAL_ONLY.replace("[\"local\"]", "[\"local\", \"staging\"]"),
        staging.base_url()
    ));
    let output = crate::common::Output::of(
        project
            .command(&["lint", "--fix", FILE])
            .env("CLOUDFLARE_API_TOKEN", "a-wrong-token"),
    )
    .expect_code(2, &["lint", "--fix", FILE]);
    insta::assert_snapshot!("lint_fix_unreadable_env", output.snapshot(&project));
    assert_eq!(fs_err::read_to_string(project.path(FILE)).unwrap(), REBUILD);
}

#[test]
fn a_rebuild_it_cannot_rewrite_is_refused_with_a_hint() {
    let project = project_with_rows();
    project.migration(
        "0002_users_email.sql",
        "ALTER TABLE users RENAME TO users_old;\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);\nINSERT INTO users (id, name) SELECT id, name FROM users_old;\nDROP TABLE users_old;\n",
    );
    let output = project.run_ok(&["lint", "--fix", FILE], 2);
    insta::assert_snapshot!("lint_fix_refused", output.snapshot(&project));
}
