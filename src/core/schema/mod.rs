//! Schemas as d1ctl compares them: a snapshot of `sqlite_master` (one request per environment),
//! replayed into an in-memory SQLite and read back through SQLite's own PRAGMAs into a
//! normalised model, so quoting, keyword case, whitespace and `IF NOT EXISTS` never count as
//! differences and a real difference always does.
//!
//! `snapshot` reads and replays `sqlite_master`; `model` rebuilds it into [`Schema`];
//! `tokenizer` normalises SQL text; `render` writes canonical DDL; `diff` compares two schemas.

mod diff;
mod model;
mod render;
mod snapshot;
mod tokenizer;

pub use self::diff::{Change, diff};
pub use self::model::{Body, Column, ForeignKey, Index, Schema, Table};
pub use self::snapshot::{RawObject, SchemaError, Snapshot, replay, shadow, snapshot_statement};
pub use self::tokenizer::words;
pub(crate) use self::tokenizer::{Token, join_tokens, tokenize};

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn schema(sql: &str) -> Schema {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(sql).unwrap();
        Schema::build(&Snapshot::read(&connection).unwrap(), &["d1_migrations"]).unwrap()
    }

    #[test]
    fn equal_schemas_from_different_spellings_compare_equal() {
        let wrangler = schema(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL DEFAULT '', created_at TEXT DEFAULT (strftime('%s','now')));\n\
             CREATE UNIQUE INDEX users_email ON users(email);\n\
             CREATE TRIGGER t AFTER INSERT ON users BEGIN UPDATE users SET email = lower(NEW.email) WHERE id = NEW.id; END;\n\
             CREATE VIEW v AS SELECT id, email FROM users WHERE email <> '';",
        );
        let drizzle = schema(
            "CREATE TABLE IF NOT EXISTS `users` (\n\t`id` integer PRIMARY KEY,\n\t`email` text NOT NULL DEFAULT '',\n\t`created_at` text DEFAULT (STRFTIME('%s','now'))\n);\n\
             CREATE UNIQUE INDEX IF NOT EXISTS \"users_email\" ON `users` (`email`);\n\
             create trigger if not exists [t] after insert on [users] begin\n  update users set email = LOWER(new.email) where id = new.id;\nend;\n\
             create view \"v\" as select id, email from users where email <> '';",
        );
        assert_eq!(diff(&wrangler, &drizzle), Vec::<Change>::new());
        assert_eq!(wrangler.render(), drizzle.render());
    }

    #[test]
    fn reports_column_changes_precisely() {
        let a = schema("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);");
        let b = schema(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT 'x', email TEXT NOT NULL DEFAULT '');",
        );
        let summaries: Vec<String> = diff(&a, &b).into_iter().map(|c| c.summary).collect();
        assert_eq!(
            summaries,
            [
                "table users: column name NOT NULL added, default (none) → 'x'",
                "table users: column email added (TEXT NOT NULL DEFAULT '')",
            ]
        );
    }

    #[test]
    fn ignores_internal_and_shadow_tables() {
        let a = schema(
            "CREATE TABLE d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT);\nCREATE VIRTUAL TABLE docs USING fts5(title, body);\nCREATE TABLE _cf_KV(k, v);",
        );
        assert_eq!(a.tables.keys().collect::<Vec<_>>(), ["docs"]);
    }

    #[test]
    fn string_literals_keep_their_case() {
        let a = schema("CREATE TABLE t (x TEXT DEFAULT 'Hello');");
        let b = schema("CREATE TABLE t (x TEXT DEFAULT 'hello');");
        assert_eq!(diff(&a, &b).len(), 1);
    }
}
