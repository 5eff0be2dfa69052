//! Every claim of the rewrite checked against real SQLite, foreign keys on, each migration in
//! one transaction, as D1 runs it.

use rusqlite::Connection;

use super::verify::applied_statements;
use super::*;
use crate::core::{rows, sql};

const BLOG: &str = "
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title TEXT,
  touched INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX posts_user ON posts (user_id);
CREATE UNIQUE INDEX posts_title ON posts (user_id, title);
CREATE TRIGGER posts_touch AFTER UPDATE OF title ON posts BEGIN
  UPDATE posts SET touched = touched + 1 WHERE id = new.id;
END;
CREATE VIEW post_titles AS SELECT id, title FROM posts;
CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id) ON DELETE CASCADE, body TEXT);
CREATE TABLE likes (user_id INTEGER REFERENCES users(id) ON DELETE SET NULL, note TEXT);
CREATE TABLE follows (
  follower_id INTEGER NOT NULL REFERENCES users(id),
  followee_id INTEGER NOT NULL REFERENCES users(id),
  PRIMARY KEY (follower_id, followee_id)
) WITHOUT ROWID;
";

const BLOG_ROWS: &str = "
INSERT INTO users VALUES (1, 'ada'), (2, 'bob'), (3, 'cy');
INSERT INTO posts (id, user_id, title) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, 3, 'd');
INSERT INTO comments VALUES (1, 1, 'x'), (2, 1, 'y'), (3, 2, 'z'), (4, 3, 'w'), (5, 4, 'v');
INSERT INTO likes (rowid, user_id, note) VALUES (10, 1, 'p'), (20, 2, 'q'), (30, 3, 'r');
INSERT INTO follows VALUES (1, 2), (2, 1), (3, 1);
";

/// The common rebuild, with the deferral D1001's old advice added: it runs on D1 and on SQLite
/// with foreign keys on, and still loses rows.
const REBUILD: &str = "-- Migration number: 0002 \t 2026-11-20T10:00:00.000Z
-- users gets an email column
PRAGMA defer_foreign_keys = on;

CREATE TABLE __new_users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
INSERT INTO __new_users (id, name) SELECT id, name FROM users;
DROP TABLE users;
ALTER TABLE __new_users RENAME TO users;

PRAGMA defer_foreign_keys = off;
";

fn database(schema_sql: &str, rows_sql: &str) -> Connection {
    let connection = Connection::open_in_memory().unwrap();
    crate::local::configure(&connection).unwrap();
    connection.execute_batch(schema_sql).unwrap();
    connection.execute_batch(rows_sql).unwrap();
    connection
}

fn run(connection: &mut Connection, text: &str, layout: Layout) {
    crate::local::run_batch(connection, &applied_statements(text, layout), None).unwrap();
}

fn fix(schema_sql: &str, text: &str, layout: Layout) -> Result<Fixed, FixError> {
    let before = Snapshot::read(&database(schema_sql, "")).unwrap();
    family_rebuild(&before, text, layout)
}

fn schema_of(connection: &Connection) -> Schema {
    Schema::build(&Snapshot::read(connection).unwrap(), &[]).unwrap()
}

/// Every row of `table`, in key order, as text.
fn dump(connection: &Connection, table: &str, order: &str) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
        .unwrap();
    let width = statement.column_count();
    statement
        .query_map([], |row| {
            (0..width)
                .map(|i| {
                    row.get::<_, rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|values| values.join("|"))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// The rewrite only inserted: every byte of `original` is still there, in order.
fn only_inserts(original: &str, fixed: &str) {
    let mut rest = fixed.bytes();
    assert!(
        original.bytes().all(|byte| rest.any(|b| b == byte)),
        "the rewrite changed existing bytes:\n{fixed}"
    );
}

#[test]
fn the_rebuild_as_written_loses_rows_and_the_family_rebuild_keeps_every_one() {
    let fixed = fix(BLOG, REBUILD, Layout::Wrangler).unwrap();
    only_inserts(REBUILD, &fixed.text);
    // A second run finds the family already rebuilt.
    let again = fix(BLOG, &fixed.text, Layout::Wrangler).unwrap();
    assert!(again.rebuilds.is_empty());
    assert_eq!(again.text, fixed.text);
    assert_eq!(fixed.rebuilds.len(), 1);
    let rebuild = &fixed.rebuilds[0];
    assert_eq!((rebuild.table.as_str(), rebuild.line), ("users", 7));
    assert_eq!(
        rebuild.copies,
        [
            ("follows".to_owned(), "follows_next".to_owned()),
            ("likes".to_owned(), "likes_next".to_owned()),
            ("posts".to_owned(), "posts_next".to_owned()),
            ("comments".to_owned(), "comments_next".to_owned()),
        ]
    );
    assert_eq!(
        rebuild.recreated,
        ["posts_user", "posts_title", "posts_touch", "post_titles"]
    );

    // As written: the DROP cascades into posts and comments and nulls likes.
    let mut original = database(BLOG, BLOG_ROWS);
    let counts = rows::count_all(&original, &[]).unwrap();
    run(&mut original, REBUILD, Layout::Wrangler);
    let lost: Vec<String> = rows::losses(&counts, &rows::count_all(&original, &[]).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lost,
        [
            "`comments` went from 5 to 0 rows",
            "`likes.user_id` went from 3 to 0 non-null values",
            "`posts` went from 4 to 0 rows",
        ]
    );

    // Rewritten: every row and every key kept, nothing dangling.
    let mut rewritten = database(BLOG, BLOG_ROWS);
    let tables = [
        ("users", "id"),
        ("posts", "id"),
        ("comments", "id"),
        ("likes", "rowid"),
        ("follows", "1, 2"),
    ];
    let before: Vec<Vec<String>> = tables.iter().map(|(t, o)| dump(&rewritten, t, o)).collect();
    run(&mut rewritten, &fixed.text, Layout::Wrangler);
    assert!(rows::losses(&counts, &rows::count_all(&rewritten, &[]).unwrap()).is_empty());
    let after: Vec<Vec<String>> = tables.iter().map(|(t, o)| dump(&rewritten, t, o)).collect();
    // users gained the NULL email column; every other table is row for row what it was.
    assert_eq!(
        after[0],
        [
            "Integer(1)|Text(\"ada\")|Null",
            "Integer(2)|Text(\"bob\")|Null",
            "Integer(3)|Text(\"cy\")|Null"
        ]
    );
    assert_eq!(after[1..], before[1..]);
    let likes_rowids: Vec<i64> = rewritten
        .prepare("SELECT rowid FROM likes ORDER BY rowid")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(likes_rowids, [10, 20, 30]);
    let dangling: i64 = rewritten
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(dangling, 0);

    // The schema is the one the migration meant, with the family's indexes, trigger and view.
    let mut intended = database(BLOG, "");
    run(&mut intended, REBUILD, Layout::Wrangler);
    let schema = schema_of(&rewritten);
    assert_eq!(schema, schema_of(&intended));
    assert!(
        schema.tables["users"]
            .columns
            .iter()
            .any(|c| c.name == "email")
    );
    assert_eq!(
        schema.indexes.keys().collect::<Vec<_>>(),
        ["posts_title", "posts_user"]
    );
    assert!(schema.triggers.contains_key("posts_touch"));
    assert!(schema.views.contains_key("post_titles"));
    assert_eq!(schema.tables["posts"].foreign_keys[0].references, "users");
    assert_eq!(
        schema.tables["comments"].foreign_keys[0].references,
        "posts"
    );

    // And they work: the trigger fires, the view reads, a deletion still cascades.
    rewritten
        .execute_batch(
            "UPDATE posts SET title = 'a2' WHERE id = 1;
             DELETE FROM follows WHERE follower_id = 3;
             DELETE FROM users WHERE id = 3;",
        )
        .unwrap();
    let touched: i64 = rewritten
        .query_row("SELECT touched FROM posts WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(touched, 1);
    let titles: i64 = rewritten
        .query_row("SELECT count(*) FROM post_titles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(titles, 3);
}

#[test]
fn the_rewrite_has_this_exact_form() {
    let schema_sql = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\nCREATE INDEX posts_user ON posts (user_id);\nCREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id) ON DELETE CASCADE);\n";
    let migration = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, name TEXT, email TEXT);\nINSERT INTO __new_users (id, name) SELECT id, name FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n";
    let fixed = fix(schema_sql, migration, Layout::Wrangler).unwrap();
    assert_eq!(
        fixed.text,
        r#"CREATE TABLE __new_users (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
INSERT INTO __new_users (id, name) SELECT id, name FROM users;
-- d1ctl lint --fix: copy the tables that reference `users` (posts, comments) first: D1 keeps foreign keys on, so its DROP would reach their rows
CREATE TABLE posts_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id) ON DELETE CASCADE);
INSERT INTO "posts_next" ("id", "user_id") SELECT "id", "user_id" FROM "posts";
CREATE TABLE comments_next (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts_next(id) ON DELETE CASCADE);
INSERT INTO "comments_next" ("id", "post_id") SELECT "id", "post_id" FROM "comments";
DROP TABLE "comments";
DROP TABLE "posts";
DROP TABLE users;
ALTER TABLE __new_users RENAME TO users;
-- d1ctl lint --fix: the copies take the place of the originals, with their indexes, triggers and views
ALTER TABLE "posts_next" RENAME TO "posts";
ALTER TABLE "comments_next" RENAME TO "comments";
CREATE INDEX posts_user ON posts (user_id);
"#
    );
}

/// drizzle-kit's rebuild: `PRAGMA foreign_keys=OFF` (ignored inside a transaction, as on D1),
/// backticks, `--> statement-breakpoint` between statements.
const DRIZZLE_BEFORE: &str = "CREATE TABLE `users` (\n\t`id` integer PRIMARY KEY NOT NULL,\n\t`name` text NOT NULL\n);\nCREATE TABLE `posts` (\n\t`id` integer PRIMARY KEY NOT NULL,\n\t`user_id` integer NOT NULL,\n\t`title` text,\n\tFOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade\n);\nCREATE INDEX `posts_user_idx` ON `posts` (`user_id`);\n";
const DRIZZLE_REBUILD: &str = "PRAGMA foreign_keys=OFF;--> statement-breakpoint\nCREATE TABLE `__new_users` (\n\t`id` integer PRIMARY KEY NOT NULL,\n\t`name` text NOT NULL,\n\t`email` text\n);\n--> statement-breakpoint\nINSERT INTO `__new_users`(\"id\", \"name\") SELECT \"id\", \"name\" FROM `users`;--> statement-breakpoint\nDROP TABLE `users`;--> statement-breakpoint\nALTER TABLE `__new_users` RENAME TO `users`;--> statement-breakpoint\nPRAGMA foreign_keys=ON;";

#[test]
fn a_drizzle_rebuild_is_rewritten_with_breakpoints_and_keeps_its_rows() {
    let fixed = fix(DRIZZLE_BEFORE, DRIZZLE_REBUILD, Layout::Drizzle).unwrap();
    only_inserts(DRIZZLE_REBUILD, &fixed.text);
    // drizzle's migrator runs chunk by chunk: each inserted statement is a chunk of its own.
    for chunk in fixed.text.split(sql::DRIZZLE_BREAKPOINT) {
        assert!(
            sql::split_statements(chunk, 1).unwrap().len() <= 1,
            "two statements in one chunk: {chunk:?}"
        );
    }
    assert!(fixed.text.contains(
        "FOREIGN KEY (`user_id`) REFERENCES `__new_users`(`id`) ON UPDATE no action ON DELETE cascade"
    ));
    assert!(fixed.text.ends_with("CREATE INDEX `posts_user_idx` ON `posts` (`user_id`);--> statement-breakpoint\nPRAGMA foreign_keys=ON;"));

    let seed = "INSERT INTO users VALUES (1, 'ada'), (2, 'bob'); INSERT INTO posts VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 2, 'c');";
    let mut original = database(DRIZZLE_BEFORE, seed);
    let counts = rows::count_all(&original, &[]).unwrap();
    run(&mut original, DRIZZLE_REBUILD, Layout::Drizzle);
    assert_eq!(
        rows::losses(&counts, &rows::count_all(&original, &[]).unwrap())
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["`posts` went from 3 to 0 rows"]
    );
    let mut rewritten = database(DRIZZLE_BEFORE, seed);
    run(&mut rewritten, &fixed.text, Layout::Drizzle);
    assert!(rows::losses(&counts, &rows::count_all(&rewritten, &[]).unwrap()).is_empty());
    let mut intended = database(DRIZZLE_BEFORE, "");
    run(&mut intended, DRIZZLE_REBUILD, Layout::Drizzle);
    assert_eq!(schema_of(&rewritten), schema_of(&intended));
    assert!(schema_of(&rewritten).indexes.contains_key("posts_user_idx"));
}

#[test]
fn crlf_files_stay_crlf() {
    let migration = REBUILD.replace('\n', "\r\n");
    let fixed = fix(BLOG, &migration, Layout::Wrangler).unwrap();
    only_inserts(&migration, &fixed.text);
    assert!(!fixed.text.replace("\r\n", "").contains('\n'));
    let mut rewritten = database(BLOG, BLOG_ROWS);
    let counts = rows::count_all(&rewritten, &[]).unwrap();
    run(&mut rewritten, &fixed.text, Layout::Wrangler);
    assert!(rows::losses(&counts, &rows::count_all(&rewritten, &[]).unwrap()).is_empty());
}

#[test]
fn triggers_elsewhere_that_read_the_family_are_dropped_and_recreated() {
    let schema_sql = "CREATE TABLE users (id INTEGER PRIMARY KEY);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, parent_id INTEGER REFERENCES posts(id) ON DELETE CASCADE);\nCREATE TABLE audit (what TEXT);\nCREATE TRIGGER audit_posts AFTER INSERT ON audit BEGIN DELETE FROM posts WHERE id = 0; END;\n";
    let migration = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT);\nINSERT INTO __new_users (id) SELECT id FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;";
    let fixed = fix(schema_sql, migration, Layout::Wrangler).unwrap();
    only_inserts(migration, &fixed.text);
    assert!(fixed.text.contains("DROP TRIGGER \"audit_posts\";"));
    // The self-reference follows the copy.
    assert!(
        fixed
            .text
            .contains("parent_id INTEGER REFERENCES posts_next(id)")
    );
    let mut rewritten = database(
        schema_sql,
        "INSERT INTO users VALUES (1); INSERT INTO posts VALUES (1, 1, NULL), (2, 1, 1);",
    );
    run(&mut rewritten, &fixed.text, Layout::Wrangler);
    assert_eq!(dump(&rewritten, "posts", "id").len(), 2);
    assert!(schema_of(&rewritten).triggers.contains_key("audit_posts"));
}

#[test]
fn a_rebuild_nobody_references_is_left_alone() {
    let schema_sql = "CREATE TABLE users (id INTEGER PRIMARY KEY);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\n";
    let migration = "CREATE TABLE __new_posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, title TEXT);\nINSERT INTO __new_posts (id, user_id) SELECT id, user_id FROM posts;\nDROP TABLE posts;\nALTER TABLE __new_posts RENAME TO posts;\n";
    let fixed = fix(schema_sql, migration, Layout::Wrangler).unwrap();
    assert!(fixed.rebuilds.is_empty());
    assert_eq!(fixed.text, migration);
}

#[test]
fn what_it_cannot_rewrite_is_refused_with_the_reason() {
    let schema_sql = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\nCREATE TABLE a (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id), user_id INTEGER REFERENCES users(id) ON DELETE SET NULL);\nCREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));\n";
    let posts_only = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\n";
    let rebuild = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, name TEXT, email TEXT);\nINSERT INTO __new_users (id, name) SELECT id, name FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            posts_only,
            "DROP TABLE users;\n",
            "line 1: `users` is dropped and never recreated while `posts` references it: there is no rebuild to rewrite",
        ),
        (
            posts_only,
            "CREATE TABLE users_old AS SELECT * FROM users;\nDROP TABLE users;\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT);\nINSERT INTO users (id, name) SELECT id, name FROM users_old;\nDROP TABLE users_old;\n",
            "line 2: `users` is dropped and then created again under its own name, so copies of the tables that reference it have no new table to point at before the DROP",
        ),
        (
            posts_only,
            "ALTER TABLE users RENAME TO users_old;\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT);\nINSERT INTO users (id, name) SELECT id, name FROM users_old;\nDROP TABLE users_old;\n",
            "line 1: `users` is renamed to `users_old` and created again: with foreign keys on, the rename points every table that references `users` at `users_old`",
        ),
        (
            posts_only,
            &format!("ALTER TABLE posts ADD COLUMN title TEXT;\n{rebuild}"),
            "line 1: `posts` references `users`, so the fix rebuilds it with `users`, but this statement changes it or uses it while `users` is rebuilt",
        ),
        (
            posts_only,
            &rebuild.replace("email TEXT)", "referrer_id INTEGER REFERENCES users(id))"),
            "line 1: `__new_users` references `users`, the table it replaces: dropping `users` reaches its own copied rows",
        ),
        (
            schema_sql,
            rebuild,
            "the tables that reference `users` reference each other in a cycle (a, b)",
        ),
        (
            posts_only,
            &rebuild.replace("SELECT id, name FROM users", "SELECT id, nope FROM users"),
            "the migration fails on the schema before it: no such column: nope in INSERT INTO __new_users (id, name) SELECT id, nope FROM users; at offset 46",
        ),
    ];
    for (schema_sql, migration, expected) in cases {
        let error = fix(schema_sql, migration, Layout::Wrangler).unwrap_err();
        assert_eq!(error.to_string(), *expected, "for:\n{migration}");
        assert!(!error.hint().is_empty());
    }
}

#[test]
fn two_rebuilds_with_separate_families_are_both_rewritten() {
    let schema_sql = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, title TEXT, slug TEXT GENERATED ALWAYS AS (lower(title)) VIRTUAL);\nCREATE TABLE teams (id INTEGER PRIMARY KEY);\nCREATE TABLE \"Team Members\" (team_id INTEGER REFERENCES teams(id) ON DELETE SET NULL, who TEXT);\n";
    let migration = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, name TEXT, email TEXT);\nINSERT INTO __new_users (id, name) SELECT id, name FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n\nCREATE TABLE __new_teams (id INTEGER PRIMARY KEY, label TEXT);\nINSERT INTO __new_teams (id) SELECT id FROM teams;\nDROP TABLE teams;\nALTER TABLE __new_teams RENAME TO teams;\n";
    let fixed = fix(schema_sql, migration, Layout::Wrangler).unwrap();
    only_inserts(migration, &fixed.text);
    assert_eq!(fixed.rebuilds.len(), 2);
    assert_eq!(
        fixed.rebuilds[1].copies,
        [("Team Members".to_owned(), "Team Members_next".to_owned())]
    );
    let seed = "INSERT INTO users VALUES (1, 'a'); INSERT INTO posts (id, user_id, title) VALUES (1, 1, 'Hello'); INSERT INTO teams VALUES (7); INSERT INTO \"Team Members\" VALUES (7, 'ada');";
    let mut rewritten = database(schema_sql, seed);
    let counts = rows::count_all(&rewritten, &[]).unwrap();
    run(&mut rewritten, &fixed.text, Layout::Wrangler);
    assert!(rows::losses(&counts, &rows::count_all(&rewritten, &[]).unwrap()).is_empty());
    assert_eq!(
        dump(&rewritten, "posts", "id"),
        ["Integer(1)|Integer(1)|Text(\"Hello\")|Text(\"hello\")"]
    );
    let mut intended = database(schema_sql, "");
    run(&mut intended, migration, Layout::Wrangler);
    assert_eq!(schema_of(&rewritten), schema_of(&intended));
}

#[test]
fn a_drizzle_rebuild_that_ends_the_file_gets_a_breakpoint_before_the_renames() {
    let migration = DRIZZLE_REBUILD
        .trim_end_matches(";--> statement-breakpoint\nPRAGMA foreign_keys=ON;")
        .to_owned()
        + ";\n";
    let fixed = fix(DRIZZLE_BEFORE, &migration, Layout::Drizzle).unwrap();
    only_inserts(&migration, &fixed.text);
    assert!(fixed.text.ends_with("RENAME TO `users`;--> statement-breakpoint\n-- d1ctl lint --fix: the copies take the place of the originals, with their indexes, triggers and views\nALTER TABLE `posts_next` RENAME TO `posts`;--> statement-breakpoint\nCREATE INDEX `posts_user_idx` ON `posts` (`user_id`);\n"));
    for chunk in fixed.text.split(sql::DRIZZLE_BREAKPOINT) {
        assert!(
            sql::split_statements(chunk, 1).unwrap().len() <= 1,
            "{chunk:?}"
        );
    }
    let mut rewritten = database(
        DRIZZLE_BEFORE,
        "INSERT INTO users VALUES (1, 'ada'); INSERT INTO posts VALUES (1, 1, 'a');",
    );
    run(&mut rewritten, &fixed.text, Layout::Drizzle);
    assert_eq!(dump(&rewritten, "posts", "id").len(), 1);
}

#[test]
fn statements_sharing_a_line_get_the_copies_on_lines_of_their_own() {
    let schema_sql = "CREATE TABLE users (id INTEGER PRIMARY KEY);\nCREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE);\n";
    let migration = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO __new_users (id) SELECT id FROM users; /* swap */ DROP TABLE users; ALTER TABLE __new_users RENAME TO users; -- done\n";
    let fixed = fix(schema_sql, migration, Layout::Wrangler).unwrap();
    only_inserts(migration, &fixed.text);
    assert_eq!(
        fixed.text,
        "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO __new_users (id) SELECT id FROM users;\n-- d1ctl lint --fix: copy the tables that reference `users` (posts) first: D1 keeps foreign keys on, so its DROP would reach their rows\nCREATE TABLE posts_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id) ON DELETE CASCADE);\nINSERT INTO \"posts_next\" (\"id\", \"user_id\") SELECT \"id\", \"user_id\" FROM \"posts\";\nDROP TABLE \"posts\";\n /* swap */ DROP TABLE users; ALTER TABLE __new_users RENAME TO users; -- done\n-- d1ctl lint --fix: the copies take the place of the originals, with their indexes, triggers and views\nALTER TABLE \"posts_next\" RENAME TO \"posts\";\n"
    );
    let mut rewritten = database(
        schema_sql,
        "INSERT INTO users VALUES (1); INSERT INTO posts VALUES (1, 1);",
    );
    run(&mut rewritten, &fixed.text, Layout::Wrangler);
    assert_eq!(dump(&rewritten, "posts", "id"), ["Integer(1)|Integer(1)"]);
}
