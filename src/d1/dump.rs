//! D1's export format (d1-platform.md section 5): a port of the sqlite3 shell's `.dump` with
//! D1's deviations, written statement by statement so a large database never sits in memory.
//!
//! Shared by the simulator's export and by `d1ctl export`/`pull` of local SQLite envs, so a dump
//! of either side loads into the other.

use std::io::Write;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use crate::d1::api;

/// What to leave out of a dump (the `dump_options` of an export).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOptions {
    pub no_schema: bool,
    pub no_data: bool,
    /// Empty means every table. Otherwise a table is dumped when its name is listed, and an
    /// index, trigger or view only when its own name is listed.
    pub tables: Vec<String>,
}

impl From<api::DumpOptions> for DumpOptions {
    fn from(options: api::DumpOptions) -> Self {
        Self {
            no_schema: options.no_schema.unwrap_or(false),
            no_data: options.no_data.unwrap_or(false),
            tables: options.tables.unwrap_or_default(),
        }
    }
}

impl From<&DumpOptions> for api::DumpOptions {
    /// The wire form, as wrangler sends it: both flags always, `tables` only when filtering.
    fn from(options: &DumpOptions) -> Self {
        Self {
            no_schema: Some(options.no_schema),
            no_data: Some(options.no_data),
            tables: (!options.tables.is_empty()).then(|| options.tables.clone()),
        }
    }
}

/// The message D1 answers an export of a database with a virtual table with.
pub const VIRTUAL_TABLE_MESSAGE: &str =
    "D1 Export error: cannot export databases with Virtual Tables (fts5)";

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// D1 refuses to export virtual tables; `table` is the first one met.
    #[error("D1 Export error: cannot export databases with Virtual Tables (fts5)")]
    VirtualTable { table: String },
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes statements separated by `\n`, without a trailing newline, counting bytes.
struct StatementWriter<W: Write> {
    out: W,
    first: bool,
    bytes: u64,
}

impl<W: Write> StatementWriter<W> {
    fn statement(&mut self, parts: &[&str]) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b"\n")?;
            self.bytes += 1;
        }
        self.first = false;
        for part in parts {
            self.out.write_all(part.as_bytes())?;
            self.bytes += part.len() as u64;
        }
        Ok(())
    }
}

/// Writes the dump of `connection` to `out` row by row (no table is ever held in memory) and
/// returns the number of bytes written. For a consistent dump of a database others may write
/// to, run it inside a read transaction.
pub fn write_dump<W: Write>(
    connection: &Connection,
    options: &DumpOptions,
    out: W,
) -> Result<u64, DumpError> {
    let mut writer = StatementWriter {
        out,
        first: true,
        bytes: 0,
    };
    let wanted = |name: &str| options.tables.is_empty() || options.tables.iter().any(|t| t == name);
    let tables: Vec<(String, String)> = {
        let mut statement = connection.prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type == 'table' AND sql NOT NULL \
             ORDER BY tbl_name == 'sqlite_sequence', rowid",
        )?;
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?
    };

    // Checked before anything is written, so a refused dump leaves no partial output.
    if let Some((table, _)) = tables
        .iter()
        .find(|(table, sql)| wanted(table) && is_virtual(table, sql))
    {
        return Err(DumpError::VirtualTable {
            table: table.clone(),
        });
    }
    writer.statement(&["PRAGMA defer_foreign_keys=TRUE;"])?;

    for (table, sql) in &tables {
        if !wanted(table) {
            continue;
        }
        if table == "sqlite_sequence" {
            if !options.no_schema {
                writer.statement(&["DELETE FROM sqlite_sequence;"])?;
            }
        } else if table.starts_with("sqlite_stat") && table.len() > "sqlite_stat".len() {
            if !options.no_schema {
                writer.statement(&["ANALYZE sqlite_schema;"])?;
            }
        } else if table.starts_with("_cf_") || table.starts_with("sqlite_") {
            continue;
        } else if !options.no_schema {
            // The shell's quirk: a quoted table name gets `IF NOT EXISTS`.
            if sql.starts_with("CREATE TABLE '") || sql.starts_with("CREATE TABLE \"") {
                let rest = sql.get("CREATE TABLE ".len()..).unwrap_or_default();
                writer.statement(&["CREATE TABLE IF NOT EXISTS ", rest, ";"])?;
            } else {
                writer.statement(&[sql, ";"])?;
            }
        }
        if options.no_data {
            continue;
        }
        write_rows(connection, table, &mut writer)?;
    }

    if !options.no_schema {
        let mut statement = connection.prepare(
            "SELECT name, sql FROM sqlite_schema WHERE sql NOT NULL \
             AND type IN ('index', 'trigger', 'view') ORDER BY type COLLATE NOCASE, rowid",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let sql: String = row.get(1)?;
            if wanted(&name) {
                writer.statement(&[&sql, ";"])?;
            }
        }
    }
    writer.out.flush()?;
    Ok(writer.bytes)
}

/// Whether a table of `sqlite_schema` (its name and stored SQL) is one D1 refuses to export.
/// `sqlite_sequence` and `sqlite_stat*` are handled before this check in D1's dumper.
pub fn is_virtual(table: &str, sql: &str) -> bool {
    table != "sqlite_sequence"
        && !(table.starts_with("sqlite_stat") && table.len() > "sqlite_stat".len())
        && sql.starts_with("CREATE VIRTUAL TABLE")
}

fn write_rows<W: Write>(
    connection: &Connection,
    table: &str,
    writer: &mut StatementWriter<W>,
) -> Result<(), DumpError> {
    let columns: Vec<String> = {
        let mut statement =
            connection.prepare(&format!("PRAGMA table_info={}", escape_identifier(table)))?;
        statement
            .query_map([], |row| row.get::<_, String>("name"))?
            .collect::<Result<_, _>>()?
    };
    let quoted: Vec<String> = columns
        .iter()
        .map(|column| escape_identifier(column))
        .collect();
    let select = format!(
        "SELECT {} FROM {};",
        quoted.join(", "),
        escape_identifier(table)
    );
    let prefix = format!(
        "INSERT INTO {} ({}) VALUES(",
        escape_identifier(table),
        quoted.join(",")
    );
    let mut statement = connection.prepare(&select)?;
    let mut rows = statement.query([])?;
    let mut line = String::new();
    while let Some(row) = rows.next()? {
        line.clear();
        line.push_str(&prefix);
        for index in 0..columns.len() {
            if index > 0 {
                line.push(',');
            }
            push_literal(&mut line, row.get_ref(index)?);
        }
        line.push_str(");");
        writer.statement(&[&line])?;
    }
    Ok(())
}

/// `"name"` with embedded quotes doubled.
pub fn escape_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Appends the SQL literal for `value` in D1's dump style.
pub fn push_literal(out: &mut String, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push_str("NULL"),
        ValueRef::Integer(integer) => out.push_str(&integer.to_string()),
        ValueRef::Real(real) => out.push_str(&js_number(real)),
        ValueRef::Text(bytes) => out.push_str(&quote_text(&String::from_utf8_lossy(bytes))),
        ValueRef::Blob(bytes) => {
            out.push_str("X'");
            out.push_str(&hex::encode(bytes));
            out.push('\'');
        }
    }
}

/// A number as JavaScript's `String(number)` writes it (D1's dump is generated in JavaScript).
pub fn js_number(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs();
    if (1e-6..1e21).contains(&magnitude) {
        format!("{value}")
    } else {
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        }
    }
}

/// A string literal: `'…'` with `''`; line feeds and carriage returns are written as escape
/// sequences undone with `replace(…, char(10))` / `replace(…, char(13))`.
pub fn quote_text(value: &str) -> String {
    let has_newline = value.contains('\n');
    let has_carriage_return = value.contains('\r');
    if !has_newline && !has_carriage_return {
        return format!("'{}'", value.replace('\'', "''"));
    }
    let newline = unused_placeholder(value, "\\n", "\\012");
    let carriage_return = unused_placeholder(value, "\\r", "\\015");
    let escaped = value
        .replace('\'', "''")
        .replace('\n', &newline)
        .replace('\r', &carriage_return);
    let mut output = format!("'{escaped}'");
    if has_carriage_return {
        output = format!("replace({output},'{carriage_return}',char(13))");
    }
    if has_newline {
        output = format!("replace({output},'{newline}',char(10))");
    }
    output
}

/// `primary` or `secondary` if `value` does not contain it, else `(primaryN)` for the first
/// `N = 0, 1, …` not in `value`.
fn unused_placeholder(value: &str, primary: &str, secondary: &str) -> String {
    if !value.contains(primary) {
        return primary.to_owned();
    }
    if !value.contains(secondary) {
        return secondary.to_owned();
    }
    let mut suffix = 0u64;
    loop {
        let candidate = format!("({primary}{suffix})");
        if !value.contains(candidate.as_str()) {
            return candidate;
        }
        suffix += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(connection: &Connection, options: &DumpOptions) -> Result<String, DumpError> {
        let mut out = Vec::new();
        let bytes = write_dump(connection, options, &mut out)?;
        assert_eq!(
            bytes,
            out.len() as u64,
            "the byte count matches what was written"
        );
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_virtual_table_message_is_the_error_text() {
        let error = DumpError::VirtualTable {
            table: "docs".to_owned(),
        };
        assert_eq!(error.to_string(), VIRTUAL_TABLE_MESSAGE);
    }

    #[test]
    fn options_convert_to_and_from_the_wire_form() {
        let options = DumpOptions {
            no_schema: false,
            no_data: true,
            tables: vec!["users".to_owned()],
        };
        let wire = api::DumpOptions::from(&options);
        assert_eq!(wire.no_data, Some(true));
        assert_eq!(wire.tables.as_deref(), Some(&["users".to_owned()][..]));
        assert_eq!(DumpOptions::from(wire), options);
        let all = api::DumpOptions::from(&DumpOptions::default());
        assert_eq!(all.tables, None);
        assert_eq!(
            DumpOptions::from(api::DumpOptions::default()),
            DumpOptions::default()
        );
    }

    #[test]
    fn only_a_leading_quoted_name_gets_if_not_exists() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (a TEXT DEFAULT 'CREATE TABLE \"x\"');")
            .unwrap();
        let options = DumpOptions {
            no_data: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            dump(&connection, &options).unwrap(),
            "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (a TEXT DEFAULT 'CREATE TABLE \"x\"');"
        );
    }

    #[test]
    fn a_dump_loads_back_into_an_identical_database() {
        let source = Connection::open_in_memory().unwrap();
        source
            .execute_batch(
                "CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT, r REAL, b BLOB);
                 CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id), x ANY) STRICT;
                 CREATE TRIGGER c_touch AFTER UPDATE ON c BEGIN UPDATE p SET t = t || ';'; END;
                 INSERT INTO p (t, r, b) VALUES ('a\r\nb''c', 0.1, X'00ff'), (NULL, -1e300, x'');
                 INSERT INTO c VALUES (1, 2, 'x'), (2, 1, 3.5), (3, NULL, X'01');
                 DELETE FROM p WHERE id = 99;",
            )
            .unwrap();
        let text = dump(&source, &DumpOptions::default()).unwrap();
        let copy = Connection::open_in_memory().unwrap();
        copy.execute_batch(&format!("BEGIN;\n{text}\nCOMMIT;"))
            .unwrap();
        let everything = |connection: &Connection, sql: &str| -> Vec<String> {
            let mut statement = connection.prepare(sql).unwrap();
            let columns = statement.column_count();
            statement
                .query_map([], |row| {
                    Ok((0..columns)
                        .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for sql in [
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name",
            "SELECT * FROM p ORDER BY id",
            "SELECT *, typeof(x) FROM c ORDER BY id",
            "SELECT * FROM sqlite_sequence",
        ] {
            assert_eq!(everything(&source, sql), everything(&copy, sql), "{sql}");
        }
    }

    #[test]
    fn text_quoting() {
        assert_eq!(quote_text("plain"), "'plain'");
        assert_eq!(quote_text("it's"), "'it''s'");
        assert_eq!(quote_text("a\nb"), "replace('a\\nb','\\n',char(10))");
        assert_eq!(
            quote_text("a\r\nb"),
            "replace(replace('a\\r\\nb','\\r',char(13)),'\\n',char(10))"
        );
        assert_eq!(
            quote_text("has \\n already\n"),
            "replace('has \\n already\\012','\\012',char(10))"
        );
        assert_eq!(
            quote_text("\\n \\012\n"),
            "replace('\\n \\012(\\n0)','(\\n0)',char(10))"
        );
    }

    #[test]
    fn numbers_follow_javascript() {
        assert_eq!(js_number(1.5), "1.5");
        assert_eq!(js_number(2.0), "2");
        assert_eq!(js_number(-0.25), "-0.25");
        assert_eq!(js_number(1e21), "1e+21");
        assert_eq!(js_number(1.5e-7), "1.5e-7");
        assert_eq!(js_number(0.000_001), "0.000001");
        assert_eq!(js_number(123_456_789.125), "123456789.125");
    }

    #[test]
    fn literals() {
        let mut out = String::new();
        push_literal(&mut out, ValueRef::Blob(&[0, 0xab, 0x10]));
        out.push(',');
        push_literal(&mut out, ValueRef::Null);
        out.push(',');
        push_literal(&mut out, ValueRef::Integer(-42));
        assert_eq!(out, "X'00ab10',NULL,-42");
    }

    #[test]
    fn full_dump_of_a_small_database() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE _cf_METADATA (key INTEGER PRIMARY KEY, value BLOB);
                 INSERT INTO _cf_METADATA VALUES (2, 1);
                 CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, data BLOB);
                 CREATE TABLE \"Quoted\" (a);
                 CREATE INDEX users_name ON users(name);
                 CREATE VIEW v AS SELECT name FROM users;
                 CREATE TRIGGER trg AFTER INSERT ON users BEGIN SELECT 1; END;
                 INSERT INTO users (name, data) VALUES ('a''b', X'0102'), ('line\nbreak', NULL);
                 INSERT INTO \"Quoted\" VALUES (1.5);",
            )
            .unwrap();
        let expected = "PRAGMA defer_foreign_keys=TRUE;\n\
            CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, data BLOB);\n\
            INSERT INTO \"users\" (\"id\",\"name\",\"data\") VALUES(1,'a''b',X'0102');\n\
            INSERT INTO \"users\" (\"id\",\"name\",\"data\") VALUES(2,replace('line\\nbreak','\\n',char(10)),NULL);\n\
            CREATE TABLE IF NOT EXISTS \"Quoted\" (a);\n\
            INSERT INTO \"Quoted\" (\"a\") VALUES(1.5);\n\
            DELETE FROM sqlite_sequence;\n\
            INSERT INTO \"sqlite_sequence\" (\"name\",\"seq\") VALUES('users',2);\n\
            CREATE INDEX users_name ON users(name);\n\
            CREATE TRIGGER trg AFTER INSERT ON users BEGIN SELECT 1; END;\n\
            CREATE VIEW v AS SELECT name FROM users;";
        assert_eq!(
            dump(&connection, &DumpOptions::default()).unwrap(),
            expected
        );

        let only_data = DumpOptions {
            no_schema: true,
            tables: vec!["Quoted".to_owned()],
            ..DumpOptions::default()
        };
        assert_eq!(
            dump(&connection, &only_data).unwrap(),
            "PRAGMA defer_foreign_keys=TRUE;\nINSERT INTO \"Quoted\" (\"a\") VALUES(1.5);"
        );
        let only_schema = DumpOptions {
            no_data: true,
            tables: vec!["users".to_owned(), "users_name".to_owned()],
            ..DumpOptions::default()
        };
        assert_eq!(
            dump(&connection, &only_schema).unwrap(),
            "PRAGMA defer_foreign_keys=TRUE;\n\
             CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, data BLOB);\n\
             CREATE INDEX users_name ON users(name);"
        );
    }

    #[test]
    fn virtual_tables_fail_unless_filtered_out() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE t (a); CREATE VIRTUAL TABLE docs USING fts5(body); \
                 INSERT INTO t VALUES (1);",
            )
            .unwrap();
        let error = dump(&connection, &DumpOptions::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "D1 Export error: cannot export databases with Virtual Tables (fts5)"
        );
        let filtered = DumpOptions {
            tables: vec!["t".to_owned()],
            ..DumpOptions::default()
        };
        assert_eq!(
            dump(&connection, &filtered).unwrap(),
            "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (a);\nINSERT INTO \"t\" (\"a\") VALUES(1);"
        );
    }
}
