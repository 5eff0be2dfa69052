//! Seeding every kind of table; `corpus` replays the real-world migration folders.

mod corpus;

use rusqlite::Connection;

use super::*;
use crate::backend::Statement;
use crate::core::rows;

const LEDGERS: &[&str] = &["d1_migrations", "__drizzle_migrations"];

fn database(sql: &str) -> Connection {
    let connection = Connection::open_in_memory().unwrap();
    crate::local::configure(&connection).unwrap();
    connection.execute_batch(sql).unwrap();
    connection
}

fn count(connection: &Connection, sql: &str) -> i64 {
    connection.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// Every foreign key holds and the file is sound.
fn assert_consistent(connection: &Connection, case: &str) {
    let broken: Vec<String> = connection
        .prepare(
            "SELECT \"table\" || ' row ' || coalesce(rowid, '?') FROM pragma_foreign_key_check",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(broken, Vec::<String>::new(), "{case}: foreign_key_check");
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{case}");
}

struct Case {
    name: &'static str,
    sql: &'static str,
    seeded: &'static [&'static str],
    /// Table and the start of its reason.
    not_seeded: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        name: "each ON DELETE action, three generations",
        sql: "CREATE TABLE grandchild (id INTEGER PRIMARY KEY, child_id INTEGER NOT NULL REFERENCES child(id) ON DELETE CASCADE);
              CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE, note TEXT);
              CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
              CREATE TABLE nulled (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE SET NULL);
              CREATE TABLE plain (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));
              CREATE TABLE restricted (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent ON DELETE RESTRICT);
              CREATE TABLE deferred (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
        seeded: &["parent", "child", "deferred", "grandchild", "nulled", "plain", "restricted"],
        not_seeded: &[],
    },
    Case {
        name: "composite foreign keys, with and without referenced columns",
        sql: "CREATE TABLE account (org TEXT NOT NULL, number INTEGER NOT NULL, PRIMARY KEY (org, number));
              CREATE TABLE invoice (id INTEGER PRIMARY KEY, org TEXT NOT NULL, number INTEGER NOT NULL,
                FOREIGN KEY (org, number) REFERENCES account (org, number) ON DELETE CASCADE);
              CREATE TABLE payment (org TEXT NOT NULL, number INTEGER NOT NULL, FOREIGN KEY (number, org) REFERENCES account (number, org));
              CREATE TABLE refund (org TEXT, number INTEGER, FOREIGN KEY (org, number) REFERENCES account);",
        seeded: &["account", "invoice", "payment", "refund"],
        not_seeded: &[],
    },
    Case {
        name: "self-references",
        sql: "CREATE TABLE category (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES category(id));
              CREATE TABLE node (id TEXT PRIMARY KEY NOT NULL, parent TEXT NOT NULL REFERENCES node(id) ON DELETE CASCADE);
              CREATE TABLE employee (id INTEGER PRIMARY KEY, manager INTEGER NOT NULL REFERENCES employee);",
        seeded: &["category", "employee", "node"],
        not_seeded: &[],
    },
    Case {
        name: "a cycle broken by a nullable key",
        sql: "CREATE TABLE author (id INTEGER PRIMARY KEY, favourite_book INTEGER REFERENCES book(id));
              CREATE TABLE book (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES author(id));
              CREATE TABLE review (id INTEGER PRIMARY KEY, book_id INTEGER NOT NULL REFERENCES book(id));",
        seeded: &["author", "book", "review"],
        not_seeded: &[],
    },
    Case {
        name: "a NOT NULL cycle, and what depends on it",
        sql: "CREATE TABLE chicken (id INTEGER PRIMARY KEY, egg_id INTEGER NOT NULL REFERENCES egg(id));
              CREATE TABLE egg (id INTEGER PRIMARY KEY, chicken_id INTEGER NOT NULL REFERENCES chicken(id));
              CREATE TABLE farm (id INTEGER PRIMARY KEY, chicken_id INTEGER NOT NULL REFERENCES chicken(id));
              CREATE TABLE lonely (id INTEGER PRIMARY KEY);",
        seeded: &["lonely"],
        not_seeded: &[
            ("chicken", "a NOT NULL foreign key cycle with `egg`"),
            ("egg", "a NOT NULL foreign key cycle with `chicken`"),
            ("farm", "`chicken_id` references `chicken`, which has no rows to point at"),
        ],
    },
    Case {
        name: "CHECK constraints: IN lists (long ones too), comparisons, length, OR, ranges, LIKE, json",
        sql: "CREATE TABLE post (id INTEGER PRIMARY KEY,
                status TEXT NOT NULL CHECK (status IN ('draft', 'live')),
                score INTEGER NOT NULL CHECK (score > 0 AND score <= 100),
                code TEXT NOT NULL UNIQUE CHECK (length(code) = 8),
                short TEXT NOT NULL CHECK (length(short) < 1000000000 AND length(short) > 4),
                kind TEXT NOT NULL,
                starts INTEGER NOT NULL, ends INTEGER NOT NULL,
                ratio REAL NOT NULL CHECK (ratio BETWEEN 0.25 AND 0.75),
                debt INTEGER NOT NULL CHECK (debt < -10),
                grade TEXT NOT NULL UNIQUE CHECK (grade IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n')),
                level INTEGER NOT NULL CHECK (level IN (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)),
                meta TEXT NOT NULL CHECK (json_valid(meta) AND json_type(meta) = 'object'),
                email TEXT NOT NULL CHECK (email LIKE '%_@_%.__%'),
                CONSTRAINT kind_is_known CHECK (kind = 'a' OR kind = 'b'),
                CHECK (ends > starts));",
        seeded: &["post"],
        not_seeded: &[],
    },
    Case {
        name: "UNIQUE: composite, expression index, partial index",
        sql: "CREATE TABLE member (id INTEGER PRIMARY KEY, team TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'user',
                email TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, UNIQUE (team, role));
              CREATE UNIQUE INDEX member_email ON member (lower(email));
              CREATE UNIQUE INDEX member_live_team ON member (team) WHERE deleted = 0;
              CREATE TABLE flag (on_off BOOLEAN UNIQUE CHECK (on_off IN (0, 1)));
              CREATE TABLE initial (code TEXT NOT NULL);
              CREATE UNIQUE INDEX One_Per_Letter ON initial (substr(code, 1, 1));",
        seeded: &["flag", "initial", "member"],
        not_seeded: &[],
    },
    Case {
        name: "STRICT, WITHOUT ROWID, AUTOINCREMENT, odd type names",
        sql: "CREATE TABLE typed (id INTEGER PRIMARY KEY, n INT NOT NULL, r REAL NOT NULL, t TEXT NOT NULL, b BLOB NOT NULL, a ANY NOT NULL) STRICT;
              CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
              CREATE TABLE pair (a INTEGER, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
              CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                flag boolean NOT NULL, size VARCHAR(255) NOT NULL, zone TIMESTAMP WITH TIME ZONE NOT NULL, raw NOT NULL);",
        seeded: &["kv", "log", "pair", "typed"],
        not_seeded: &[],
    },
    Case {
        name: "generated columns are never written",
        sql: "CREATE TABLE person (id INTEGER PRIMARY KEY, first TEXT NOT NULL, last TEXT NOT NULL,
                full TEXT GENERATED ALWAYS AS (first || ' ' || last) VIRTUAL, initial TEXT AS (substr(first, 1, 1)) STORED NOT NULL);",
        seeded: &["person"],
        not_seeded: &[],
    },
    Case {
        name: "virtual tables: FTS5 and R*Tree get rows, their shadow tables none",
        sql: "CREATE VIRTUAL TABLE docs USING fts5(title, body);
              CREATE VIRTUAL TABLE box USING rtree(id, min_x, max_x);
              CREATE VIRTUAL TABLE words_of_nothing USING fts5vocab('missing', 'row');",
        seeded: &["box", "docs"],
        not_seeded: &[("words_of_nothing", "no such fts5 table: main.missing")],
    },
    Case {
        name: "NOT NULL BLOB without a default",
        sql: "CREATE TABLE file (id INTEGER PRIMARY KEY, content BLOB NOT NULL, digest BLOB NOT NULL UNIQUE);",
        seeded: &["file"],
        not_seeded: &[],
    },
    Case {
        name: "tables that cannot be seeded, and a failed attempt leaves nothing",
        sql: "CREATE TABLE never (id INTEGER PRIMARY KEY, x TEXT CHECK (0));
              CREATE TABLE audit (what TEXT);
              CREATE TABLE guarded (id INTEGER PRIMARY KEY);
              CREATE TRIGGER guard BEFORE INSERT ON guarded BEGIN
                INSERT INTO audit VALUES ('tried'); SELECT RAISE(FAIL, 'guarded takes no rows');
              END;
              CREATE TABLE orphan (id INTEGER PRIMARY KEY, gone_id INTEGER REFERENCES gone(id));
              CREATE TABLE stuck (id INTEGER PRIMARY KEY, gone_id INTEGER NOT NULL REFERENCES gone(id));
              CREATE TABLE target (id INTEGER PRIMARY KEY);
              CREATE TABLE late (target_id INTEGER NOT NULL REFERENCES target(id) DEFERRABLE INITIALLY DEFERRED);
              CREATE TABLE poisoned (id INTEGER PRIMARY KEY);
              CREATE TRIGGER poison AFTER INSERT ON poisoned BEGIN INSERT INTO late VALUES (999); END;",
        // With foreign keys on, SQLite refuses any row of a child whose parent does not exist.
        // `poisoned`'s trigger breaks a deferred key, which only the commit of each attempt sees.
        seeded: &["audit", "target", "late"],
        not_seeded: &[
            ("guarded", "guarded takes no rows"),
            ("never", "CHECK constraint failed: 0"),
            ("orphan", "`gone_id` references `gone`, which does not exist"),
            ("poisoned", "FOREIGN KEY constraint failed"),
            ("stuck", "`gone_id` references `gone`, which does not exist"),
        ],
    },
    Case {
        name: "SQLite's, D1's, d1ctl's and the ledgers' tables are left alone",
        sql: "CREATE TABLE \"_cf_KV\" (key TEXT PRIMARY KEY, value BLOB);
              CREATE TABLE d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT);
              CREATE TABLE _D1CTL_lock (id INTEGER PRIMARY KEY);
              CREATE TABLE \"odd name\" (\"a b\" TEXT NOT NULL UNIQUE, [c\"d] INTEGER NOT NULL CHECK ([c\"d] > 5));",
        seeded: &["odd name"],
        not_seeded: &[],
    },
];

#[test]
fn seeds_every_kind_of_table() {
    for case in CASES {
        let connection = database(case.sql);
        let report = seed(&connection, None, LEDGERS, 3);
        assert_eq!(report.seeded, case.seeded, "{}: seeded", case.name);
        let reasons: Vec<(&str, &str)> = report
            .not_seeded
            .iter()
            .map(|(table, reason)| {
                let expected = case
                    .not_seeded
                    .iter()
                    .find(|(t, _)| t == table)
                    .map_or("", |(_, r)| *r);
                let shown = if reason.starts_with(expected) {
                    expected
                } else {
                    reason
                };
                (table.as_str(), shown)
            })
            .collect();
        assert_eq!(reasons, case.not_seeded, "{}: not seeded", case.name);
        assert_consistent(&connection, case.name);
        assert!(
            connection.is_autocommit(),
            "{}: a transaction was left open",
            case.name
        );
        let counts = rows::count_all(&connection, LEDGERS).unwrap();
        for table in case.seeded {
            let rows = counts.get(*table).map_or_else(
                || count(&connection, &format!("SELECT count(*) FROM \"{table}\"")),
                |c| c.rows,
            );
            assert_eq!(rows, 3, "{}: rows of {table}", case.name);
        }
        for (table, _) in case.not_seeded {
            assert_eq!(
                counts.get(*table).map_or(0, |c| c.rows),
                0,
                "{}: {table}",
                case.name
            );
        }
    }
}

#[test]
fn foreign_keys_point_at_real_rows_and_nullable_ones_are_filled() {
    let connection = database(CASES[0].sql);
    seed(&connection, None, &[], 3);
    // Nullable keys get values too: that is what ON DELETE SET NULL would take away.
    for table in ["nulled", "plain"] {
        let sql = format!("SELECT count(parent_id) FROM {table}");
        assert_eq!(count(&connection, &sql), 3, "{table}");
    }
    // Each child row has its own parent while there are enough.
    assert_eq!(
        count(&connection, "SELECT count(DISTINCT parent_id) FROM child"),
        3
    );
    let composite = database(CASES[1].sql);
    seed(&composite, None, &[], 3);
    assert_eq!(
        count(
            &composite,
            "SELECT count(*) FROM refund WHERE org IS NOT NULL"
        ),
        3
    );
    let itself = database(CASES[2].sql);
    seed(&itself, None, &[], 3);
    assert_eq!(count(&itself, "SELECT count(parent_id) FROM category"), 0);
    assert_eq!(
        count(&itself, "SELECT count(*) FROM node WHERE parent = id"),
        3
    );
}

#[test]
fn a_cascading_rebuild_shows_as_lost_rows() {
    let mut connection = database(CASES[0].sql);
    let report = seed(&connection, None, &[], 3);
    assert!(report.not_seeded.is_empty(), "{report:?}");
    let before = rows::count_all(&connection, &[]).unwrap();
    // The rebuild D1 runs with foreign keys on: RESTRICT and NO ACTION children must go first.
    let rebuild = [
        "DROP TABLE restricted",
        "DROP TABLE plain",
        "DROP TABLE deferred",
        "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, extra TEXT)",
        "INSERT INTO parent_new (id, name) SELECT id, name FROM parent",
        "DROP TABLE parent",
        "ALTER TABLE parent_new RENAME TO parent",
    ];
    let statements: Vec<Statement> = rebuild.iter().map(|s| Statement::new(*s)).collect();
    crate::local::run_batch(&mut connection, &statements, None).unwrap();
    let after = rows::count_all(&connection, &[]).unwrap();
    let lost: Vec<String> = rows::losses(&before, &after)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lost,
        [
            "`child` went from 3 to 0 rows",
            "`grandchild` went from 3 to 0 rows",
            "`nulled.parent_id` went from 3 to 0 non-null values",
        ]
    );
}

#[test]
fn tables_with_rows_are_kept_and_seeding_again_adds_nothing() {
    let connection = database(
        "CREATE TABLE country (code TEXT PRIMARY KEY);
         INSERT INTO country VALUES ('fr');
         CREATE TABLE city (id INTEGER PRIMARY KEY, country TEXT NOT NULL REFERENCES country(code));",
    );
    let first = seed(&connection, None, &[], 3);
    assert_eq!(first.kept, ["country"]);
    assert_eq!(first.seeded, ["city"]);
    assert_eq!(
        count(
            &connection,
            "SELECT count(*) FROM city WHERE country = 'fr'"
        ),
        3
    );
    let again = seed(&connection, None, &[], 3);
    assert_eq!(again.kept, ["city", "country"]);
    assert!(
        again.seeded.is_empty() && again.not_seeded.is_empty(),
        "{again:?}"
    );
    assert_eq!(count(&connection, "SELECT count(*) FROM city"), 3);
    assert_eq!(count(&connection, "SELECT count(*) FROM country"), 1);
    assert!(seed(&connection, None, &[], 0) == SeedReport::default());
}

#[test]
fn rows_are_the_same_every_time() {
    let dump = |connection: &Connection| -> Vec<String> {
        let mut lines = Vec::new();
        for (table, _) in rows::user_tables(connection, &[]).unwrap() {
            // A table scan's order is fixed for the same content.
            let sql = format!("SELECT * FROM \"{table}\"");
            let mut statement = connection.prepare(&sql).unwrap();
            let width = statement.column_count();
            let mut cursor = statement.query([]).unwrap();
            while let Some(row) = cursor.next().unwrap() {
                let values: Vec<String> = (0..width)
                    .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect();
                lines.push(format!("{table}: {}", values.join(", ")));
            }
        }
        lines
    };
    for case in CASES {
        let (one, two) = (database(case.sql), database(case.sql));
        seed(&one, None, &[], 3);
        seed(&two, None, &[], 3);
        assert_eq!(dump(&one), dump(&two), "{}", case.name);
    }
}
