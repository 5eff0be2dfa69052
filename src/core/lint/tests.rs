//! Lint rules on folders written for each case.

use super::*;
use crate::core::migrations::load;

fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<Migration>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        fs_err::write(dir.path().join(name), sql).unwrap();
    }
    let set = load(dir.path(), None).unwrap();
    (dir, set.migrations)
}

fn codes(files: &[(&str, &str)], target: &str) -> Vec<(&'static str, bool)> {
    let (_dir, migrations) = folder(files);
    lint(&migrations, &[target], &[])
        .into_iter()
        .map(|f| (f.code, f.waived.is_some()))
        .collect()
}

/// Each case's codes: the statement-order judgement (D10xx) and what the shadow seeded
/// with rows saw (DS105 rows lost, MF106 fails with rows) agree.
///
/// users ← posts (CASCADE) ← comments (CASCADE), likes (SET NULL), follows (NO ACTION),
/// audits (RESTRICT), as the promotion tests use it too.
fn family(children: &[&str]) -> String {
    let mut sql = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n".to_owned();
    for child in children {
        sql.push_str(match *child {
            "posts" => "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT);\nCREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE, body TEXT);\n",
            "likes" => "CREATE TABLE likes (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE SET NULL);\n",
            "follows" => "CREATE TABLE follows (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\n",
            "audits" => "CREATE TABLE audits (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE RESTRICT);\n",
            other => panic!("{other}"),
        });
    }
    sql
}

const USERS_REBUILD: &str = "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);\nINSERT INTO __new_users (id, email) SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n";

fn deferred(sql: &str) -> String {
    format!("PRAGMA defer_foreign_keys = on;\n{sql}PRAGMA defer_foreign_keys = off;\n")
}

#[test]
fn each_foreign_key_action_is_judged_on_its_own() {
    let only = |found: Vec<(&'static str, bool)>| -> Vec<&'static str> {
        found
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| *c != "D1002")
            .collect()
    };
    let cases: Vec<(&str, String, String, &[&str])> = vec![
        ("naive rebuild, cascading children", family(&["posts"]), USERS_REBUILD.to_owned(), &["D1001", "DS105", "DS105"]),
        ("deferred rebuild, cascading children", family(&["posts"]), deferred(USERS_REBUILD), &["D1001", "DS105", "DS105"]),
        ("deferred rebuild, SET NULL child", family(&["likes"]), deferred(USERS_REBUILD), &["D1001", "DS105"]),
        ("undeferred rebuild, NO ACTION child", family(&["follows"]), USERS_REBUILD.to_owned(), &["D1009", "MF106"]),
        ("deferred rebuild, NO ACTION child", family(&["follows"]), deferred(USERS_REBUILD), &[]),
        ("deferred rebuild, RESTRICT child", family(&["audits"]), deferred(USERS_REBUILD), &["D1010"]),
        ("undeferred rebuild, RESTRICT child", family(&["audits"]), USERS_REBUILD.to_owned(), &["D1010", "MF106"]),
        ("drizzle rebuild, cascading children", family(&["posts"]), REBUILD_USERS_DRIZZLE.to_owned(), &["D1001", "DS105", "DS105"]),
        ("no children", family(&[]), USERS_REBUILD.to_owned(), &[]),
        ("schema-qualified DROP", family(&["posts"]), USERS_REBUILD.replace("DROP TABLE users", "DROP TABLE main.\"users\""), &["D1001", "DS105", "DS105"]),
        ("a bare PRAGMA read does not close the pair", family(&["follows"]), "PRAGMA defer_foreign_keys = on;\nPRAGMA defer_foreign_keys;\nCREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO __new_users SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\n".to_owned(), &["D1003", "D1009", "MF106"]),
        ("a child dropped later but never copied", family(&["posts"]), "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO __new_users SELECT id, email FROM users;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\nDROP TABLE comments;\nDROP TABLE posts;\n".to_owned(), &["D1001", "DS102", "DS102"]),
        (
            "family rebuild",
            family(&["posts", "likes", "follows", "audits"]),
            "CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);\nINSERT INTO __new_users (id, email) SELECT id, email FROM users;\nCREATE TABLE posts_next (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES __new_users(id) ON DELETE CASCADE, title TEXT);\nINSERT INTO posts_next SELECT * FROM posts;\nCREATE TABLE comments_next (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts_next(id) ON DELETE CASCADE, body TEXT);\nINSERT INTO comments_next SELECT * FROM comments;\nCREATE TABLE likes_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id) ON DELETE SET NULL);\nINSERT INTO likes_next SELECT * FROM likes;\nCREATE TABLE follows_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id));\nINSERT INTO follows_next SELECT * FROM follows;\nCREATE TABLE audits_next (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES __new_users(id) ON DELETE RESTRICT);\nINSERT INTO audits_next SELECT * FROM audits;\nDROP TABLE comments;\nDROP TABLE posts;\nDROP TABLE likes;\nDROP TABLE follows;\nDROP TABLE audits;\nDROP TABLE users;\nALTER TABLE __new_users RENAME TO users;\nALTER TABLE posts_next RENAME TO posts;\nALTER TABLE comments_next RENAME TO comments;\nALTER TABLE likes_next RENAME TO likes;\nALTER TABLE follows_next RENAME TO follows;\nALTER TABLE audits_next RENAME TO audits;\n".to_owned(),
            &[],
        ),
        ("a plain drop with a cascading child", family(&["posts"]), "DROP TABLE comments;\nDROP TABLE users;\n".to_owned(), &["D1001", "DS102", "DS102", "DS105"]),
    ];
    for (case, base, migration, expected) in &cases {
        let found = only(codes(
            &[("0001_a.sql", base), ("0002_b.sql", migration)],
            "0002_b.sql",
        ));
        assert_eq!(found, *expected, "{case}");
    }
}

#[test]
fn rows_reveal_what_an_empty_shadow_cannot() {
    let base = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nCREATE TABLE follows (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));\nCREATE TABLE never (x INTEGER CHECK (0));\n";
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "a non-constant default added to a table with rows",
            "ALTER TABLE users ADD COLUMN created_at TEXT DEFAULT (strftime('%s', 'now'));\n",
            &["MF106"],
        ),
        (
            "a copy that drops rows of the rebuilt table itself",
            "CREATE TABLE u2 (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO u2 SELECT * FROM users WHERE id > 1;\nPRAGMA defer_foreign_keys = on;\nDROP TABLE users;\nALTER TABLE u2 RENAME TO users;\nPRAGMA defer_foreign_keys = off;\n",
            &["DS105", "DS106"],
        ),
        (
            "the same, with a waiver naming the table",
            "-- d1ctl:allow DS105(users) the first user is a test account\n-- d1ctl:allow DS106 its follows go with it\nCREATE TABLE u2 (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\nINSERT INTO u2 SELECT * FROM users WHERE id > 1;\nPRAGMA defer_foreign_keys = on;\nDROP TABLE users;\nALTER TABLE u2 RENAME TO users;\nPRAGMA defer_foreign_keys = off;\n",
            &[],
        ),
        (
            "an intended DELETE",
            "DELETE FROM follows WHERE id = 1;\n",
            &[],
        ),
    ];
    for (case, migration, expected) in cases {
        let (_dir, migrations) = folder(&[("0001_a.sql", base), ("0002_b.sql", migration)]);
        let found = lint(&migrations, &["0002_b.sql"], &[]);
        let blocking: Vec<&str> = found
            .iter()
            .filter(|f| f.blocks())
            .map(|f| f.code)
            .collect();
        assert_eq!(blocking, *expected, "{case}: {found:#?}");
        // `never` cannot hold a row: said, never passed silently.
        assert!(
            found
                .iter()
                .any(|f| f.code == "LT002" && f.table.as_deref() == Some("never")),
            "{case}: {found:#?}"
        );
    }
}

const REBUILD_USERS_DRIZZLE: &str = "PRAGMA foreign_keys=OFF;--> statement-breakpoint\nCREATE TABLE `__new_users` (`id` integer PRIMARY KEY, `email` text NOT NULL);\n--> statement-breakpoint\nINSERT INTO `__new_users`(\"id\", \"email\") SELECT \"id\", \"email\" FROM `users`;--> statement-breakpoint\nDROP TABLE `users`;--> statement-breakpoint\nALTER TABLE `__new_users` RENAME TO `users`;--> statement-breakpoint\nPRAGMA foreign_keys=ON;\n";

#[test]
fn a_cascade_finding_names_tables_columns_and_actions() {
    let (_dir, migrations) = folder(&[
        ("0001_a.sql", &family(&["posts", "likes"])),
        ("0002_b.sql", &deferred(USERS_REBUILD)),
    ]);
    let found = lint(&migrations, &["0002_b.sql"], &[]);
    let d1001 = found.iter().find(|f| f.code == "D1001").unwrap();
    assert_eq!(d1001.line, Some(4));
    assert_eq!(
        d1001.message,
        "rebuilding `users` drops it, and the DROP deletes every row of `posts` (`posts.user_id` ON DELETE CASCADE), `comments` (`comments.post_id` ON DELETE CASCADE, through `posts`) and nulls `likes.user_id` (`likes.user_id` ON DELETE SET NULL): on D1 foreign keys are always on and `PRAGMA defer_foreign_keys` / `foreign_keys = off` do not stop ON DELETE actions"
    );
    assert!(d1001.fix.starts_with("rebuild the whole family instead: copy `likes`, `posts`, `comments` into `_next` tables"), "{}", d1001.fix);
    assert!(d1001.fix.contains("d1ctl lint --fix"), "{}", d1001.fix);
}

#[test]
fn drops_and_renames_are_told_apart() {
    let base = "CREATE TABLE t (a TEXT, b TEXT);\nCREATE INDEX t_a ON t(a);\nCREATE TABLE u (x);\n";
    assert_eq!(
        codes(
            &[("0001_a.sql", base), ("0002_b.sql", "DROP TABLE u;\n")],
            "0002_b.sql"
        ),
        [("DS102", false)]
    );
    assert_eq!(
        codes(
            &[
                ("0001_a.sql", base),
                ("0002_b.sql", "ALTER TABLE t DROP COLUMN b;\n")
            ],
            "0002_b.sql"
        ),
        [("DS103", false)]
    );
    assert_eq!(
        codes(
            &[("0001_a.sql", base), ("0002_b.sql", "DROP INDEX t_a;\n")],
            "0002_b.sql"
        ),
        [("DS104", false)]
    );
    assert_eq!(
        codes(
            &[
                ("0001_a.sql", base),
                ("0002_b.sql", "ALTER TABLE u RENAME TO v;\n")
            ],
            "0002_b.sql"
        ),
        [("BC101", false)]
    );
    assert_eq!(
        codes(
            &[
                ("0001_a.sql", base),
                ("0002_b.sql", "ALTER TABLE t RENAME COLUMN b TO c;\n")
            ],
            "0002_b.sql"
        ),
        [("BC102", false)]
    );
    // A rebuild that keeps every column is not a drop.
    let rebuild = "CREATE TABLE t_new (a TEXT, b TEXT NOT NULL DEFAULT '');\nINSERT INTO t_new SELECT a, coalesce(b, '') FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nCREATE INDEX t_a ON t(a);\n";
    assert!(
        codes(
            &[("0001_a.sql", base), ("0002_b.sql", rebuild)],
            "0002_b.sql"
        )
        .is_empty()
    );
    // A rebuild that loses a column is.
    let lossy = "CREATE TABLE t_new (a TEXT);\nINSERT INTO t_new SELECT a FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nCREATE INDEX t_a ON t(a);\n";
    assert_eq!(
        codes(&[("0001_a.sql", base), ("0002_b.sql", lossy)], "0002_b.sql"),
        [("DS103", false)]
    );
    let retyped = "CREATE TABLE t_new (a INTEGER, b TEXT);\nINSERT INTO t_new SELECT a, b FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nCREATE INDEX t_a ON t(a);\n";
    assert_eq!(
        codes(
            &[("0001_a.sql", base), ("0002_b.sql", retyped)],
            "0002_b.sql"
        ),
        [("MF105", false)]
    );
}

#[test]
fn statement_rules_fire_and_stay_quiet() {
    let base = "CREATE TABLE t (a TEXT);\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "BEGIN;\nINSERT INTO t VALUES ('x');\nCOMMIT;\n",
            &["D1004", "D1004"],
        ),
        ("ATTACH DATABASE ':memory:' AS x;\n", &["D1005"]),
        // D1's rules refuse it on the shadow, and no statement rule names it.
        ("SELECT sqlite_version();\n", &["D1011"]),
        ("CREATE TEMP TABLE scratch (x);\n", &["D1011"]),
        (
            "CREATE VIRTUAL TABLE places USING rtree(id, x0, x1);\n",
            &["D1011"],
        ),
        ("CREATE VIRTUAL TABLE docs USING fts5(body);\n", &[]),
        (
            "PRAGMA defer_foreign_keys = on;\nINSERT INTO t VALUES ('x');\n",
            &["D1003"],
        ),
        (
            "PRAGMA defer_foreign_keys = on;\nINSERT INTO t VALUES ('x');\nPRAGMA defer_foreign_keys = off;\n",
            &[],
        ),
        ("PRAGMA writable_schema = on;\n", &["D1008"]),
        ("PRAGMA table_info(t);\n", &[]),
        ("CREATE TABLE _cf_mine (x);\n", &["D1007"]),
        ("INSERT INTO t VALUES ('_cf_ is fine in a string');\n", &[]),
    ];
    for (sql, expected) in cases {
        let found: Vec<&str> = codes(&[("0001_a.sql", base), ("0002_b.sql", sql)], "0002_b.sql")
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(found, *expected, "{sql}");
    }
    let big = format!("INSERT INTO t VALUES ('{}');\n", "x".repeat(100_001));
    let found: Vec<&str> = codes(&[("0001_a.sql", base), ("0002_b.sql", &big)], "0002_b.sql")
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(found, ["D1006"]);
}

#[test]
fn the_shadow_refuses_attach_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.db");
    let attach = format!(
        "ATTACH 'file:{}?mode=rwc' AS u;\nCREATE TABLE t2 (a TEXT);\n",
        file.display()
    );
    let found = codes(
        &[
            ("0001_a.sql", "CREATE TABLE t (a TEXT);\n"),
            ("0002_b.sql", &attach),
        ],
        "0002_b.sql",
    );
    assert_eq!(found, [("D1005", false)]);
    assert!(!file.exists(), "the shadow created {}", file.display());
}

#[test]
fn not_null_columns_need_row_counts_to_be_errors() {
    let base = "CREATE TABLE t (a TEXT);\n";
    let add = "CREATE TABLE t_new (a TEXT, b TEXT NOT NULL);\nINSERT INTO t_new SELECT a, '' FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\n";
    let (_dir, migrations) = folder(&[("0001_a.sql", base), ("0002_b.sql", add)]);
    let without = lint(&migrations, &["0002_b.sql"], &[]);
    assert_eq!(
        without
            .iter()
            .map(|f| (f.code, f.severity))
            .collect::<Vec<_>>(),
        [("MF103", Severity::Warning)]
    );
    let empty: RowCounts = [("t".to_owned(), 0)].into();
    assert!(with_row_counts(without.clone(), &empty).is_empty());
    let full: RowCounts = [("t".to_owned(), 12)].into();
    let found = with_row_counts(without, &full);
    assert!(
        found[0].blocks() && found[0].message.contains("has 12 rows"),
        "{found:?}"
    );
}

#[test]
fn a_migration_that_fails_on_the_schema_before_it_is_lt001() {
    let base = "CREATE TABLE t (a TEXT);\n";
    assert_eq!(
        codes(
            &[
                ("0001_a.sql", base),
                ("0002_b.sql", "ALTER TABLE nope ADD COLUMN x TEXT;\n")
            ],
            "0002_b.sql"
        ),
        [("LT001", false)]
    );
    assert!(
        codes(
            &[
                ("0001_a.sql", base),
                ("0002_b.sql", "ALTER TABLE t ADD COLUMN x TEXT;\n")
            ],
            "0002_b.sql"
        )
        .is_empty()
    );
}

#[test]
fn a_waiver_in_the_migration_is_shown_with_its_reason() {
    let base = "CREATE TABLE t (a TEXT);\nCREATE TABLE legacy (x);\n";
    let drop =
        "-- d1ctl:allow DS102 the legacy table was emptied in release 41\nDROP TABLE legacy;\n";
    let (_dir, migrations) = folder(&[("0001_a.sql", base), ("0002_b.sql", drop)]);
    let found = lint(&migrations, &["0002_b.sql"], &[]);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].waived.as_deref(),
        Some("the legacy table was emptied in release 41")
    );
    assert!(!found[0].blocks());
}
