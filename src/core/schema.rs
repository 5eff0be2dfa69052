//! Schemas as d1ctl compares them: a snapshot of `sqlite_master` (one request per environment),
//! replayed into an in-memory SQLite and read back through SQLite's own PRAGMAs into a
//! normalised model, so quoting, keyword case, whitespace and `IF NOT EXISTS` never count as
//! differences and a real difference always does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rusqlite::Connection;
use serde::Serialize;

use crate::backend::{Rows, Statement};
use crate::core::migrations::Migration;

/// One row of `sqlite_master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawObject {
    pub kind: String,
    pub name: String,
    pub table: String,
    pub sql: Option<String>,
}

/// The schema rows of a database, in creation (rowid) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub objects: Vec<RawObject>,
}

/// The statement that reads a snapshot.
pub fn snapshot_statement() -> Statement {
    Statement::new("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid")
}

impl Snapshot {
    pub fn from_rows(rows: &Rows) -> Self {
        let text = |row: &[crate::backend::Value], column: &str| rows.get(row, column).to_text();
        Self {
            objects: rows
                .rows
                .iter()
                .map(|row| RawObject {
                    kind: text(row, "type").unwrap_or_default(),
                    name: text(row, "name").unwrap_or_default(),
                    table: text(row, "tbl_name").unwrap_or_default(),
                    sql: text(row, "sql"),
                })
                .collect(),
        }
    }

    /// The snapshot of a database this process holds open.
    pub fn read(connection: &Connection) -> rusqlite::Result<Self> {
        let mut statement = connection.prepare(&snapshot_statement().sql)?;
        let objects = statement
            .query_map([], |row| {
                Ok(RawObject {
                    kind: row.get(0)?,
                    name: row.get(1)?,
                    table: row.get(2)?,
                    sql: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self { objects })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("migration `{migration}` fails when replayed in memory: {message}")]
    Replay { migration: String, message: String },
    #[error("the schema object `{name}` cannot be recreated in memory: {message}")]
    Rebuild { name: String, message: String },
    #[error("SQLite error while reading a schema: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies `migrations` to a fresh in-memory database, each in its own transaction, and returns
/// its snapshot: what an environment that ran exactly these migrations should hold.
pub fn replay(migrations: &[&Migration]) -> Result<Snapshot, SchemaError> {
    let mut connection = Connection::open_in_memory()?;
    crate::local::configure(&connection)?;
    for migration in migrations {
        let statements: Vec<Statement> = migration
            .statements
            .iter()
            .map(|s| Statement::new(s.sql.clone()))
            .collect();
        crate::local::run_batch(&mut connection, &statements).map_err(|error| {
            SchemaError::Replay {
                migration: migration.name.clone(),
                message: error.to_string(),
            }
        })?;
    }
    Ok(Snapshot::read(&connection)?)
}

/// An empty in-memory database with `snapshot`'s schema (D1's connection settings): where a
/// write is rehearsed without rows, e.g. to learn which tables a unit leaves. Objects SQLite
/// cannot recreate are left out.
pub fn shadow(snapshot: &Snapshot) -> Result<Connection, SchemaError> {
    let connection = Connection::open_in_memory()?;
    crate::local::configure(&connection)?;
    let objects: Vec<&RawObject> = snapshot
        .objects
        .iter()
        .filter(|o| o.sql.is_some() && !is_internal(&o.name, &[]) && !is_internal(&o.table, &[]))
        .collect();
    let sql = |o: &RawObject| o.sql.clone().unwrap_or_default();
    connection.execute_batch("BEGIN")?;
    // Virtual tables first: they create their own shadow tables, which are then skipped.
    for object in objects
        .iter()
        .filter(|o| o.kind == "table" && is_virtual_sql(&sql(o)))
    {
        let _ = connection.execute_batch(&sql(object));
    }
    let existing: std::collections::HashSet<String> =
        table_names(&connection)?.into_iter().collect();
    for object in objects.iter().filter(|o| {
        o.kind == "table"
            && !is_virtual_sql(&sql(o))
            && !existing.contains(&o.name.to_ascii_lowercase())
    }) {
        let _ = connection.execute_batch(&sql(object));
    }
    for object in objects.iter().filter(|o| o.kind != "table") {
        let _ = connection.execute_batch(&sql(object));
    }
    connection.execute_batch("COMMIT")?;
    Ok(connection)
}

fn is_virtual_sql(sql: &str) -> bool {
    sql.trim_start()
        .get(..14)
        .is_some_and(|head| head.eq_ignore_ascii_case("create virtual"))
}

/// The normalised schema: every user object, keyed by lower-cased name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
    pub indexes: BTreeMap<String, Index>,
    pub triggers: BTreeMap<String, Body>,
    pub views: BTreeMap<String, Body>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub autoincrement: bool,
    pub unique: Vec<Vec<String>>,
    pub checks: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub without_rowid: bool,
    pub strict: bool,
    /// `USING module(args)` of a virtual table.
    pub virtual_module: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// Declared type, upper-cased with whitespace collapsed (`TEXT`, `VARCHAR(255)`).
    pub declared_type: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub collate: Option<String>,
    /// Generated columns: `VIRTUAL` or `STORED` with the expression.
    pub generated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub references: String,
    pub referenced_columns: Vec<String>,
    pub on_delete: String,
    pub on_update: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Index {
    pub name: String,
    pub table: String,
    pub unique: bool,
    /// Each indexed column or expression, normalised (`email`, `lower(address)`, `x desc`).
    pub columns: Vec<String>,
    /// The `WHERE` of a partial index, normalised.
    pub partial: Option<String>,
}

/// A trigger or view: its normalised text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Body {
    pub name: String,
    pub table: String,
    pub sql: String,
}

/// Tables that belong to SQLite, D1 or a ledger, never to the user's schema.
fn is_internal(name: &str, ignore: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("sqlite_")
        || lower.starts_with("_cf_")
        || ignore.iter().any(|i| i.eq_ignore_ascii_case(name))
}

impl Schema {
    /// Rebuilds `snapshot` in memory and reads it back; `ignore` names ledger tables.
    pub fn build(snapshot: &Snapshot, ignore: &[&str]) -> Result<Self, SchemaError> {
        let connection = Connection::open_in_memory()?;
        let objects: Vec<&RawObject> = snapshot
            .objects
            .iter()
            .filter(|o| {
                o.sql.is_some() && !is_internal(&o.name, ignore) && !is_internal(&o.table, ignore)
            })
            .collect();
        let create = |object: &RawObject| {
            let sql = object.sql.as_deref().unwrap_or_default();
            connection
                .execute_batch(sql)
                .map_err(|error| SchemaError::Rebuild {
                    name: object.name.clone(),
                    message: error.to_string(),
                })
        };
        // Virtual tables first: creating them creates their shadow tables, which are then
        // skipped (they are the module's, not the user's).
        let is_virtual = |o: &RawObject| {
            // sqlite_master keeps the statement from its `CREATE` keyword on.
            o.kind == "table"
                && o.sql
                    .as_deref()
                    .unwrap_or_default()
                    .trim_start()
                    .get(..14)
                    .is_some_and(|head| head.eq_ignore_ascii_case("create virtual"))
        };
        // One transaction: a schema change per autocommit would re-read the schema each time.
        connection.execute_batch("BEGIN")?;
        for object in objects.iter().filter(|o| is_virtual(o)) {
            create(object)?;
        }
        let existing: std::collections::HashSet<String> =
            table_names(&connection)?.into_iter().collect();
        for object in objects
            .iter()
            .filter(|o| o.kind == "table" && !is_virtual(o))
        {
            if !existing.contains(&object.name.to_ascii_lowercase()) {
                create(object)?;
            }
        }
        connection.execute_batch("COMMIT")?;
        // Indexes, triggers and views are compared by their text, so only tables need SQLite:
        // creating every object would cost a scan of sqlite_master each, quadratic in its size.
        let mut schema = Self::read_tables(&connection)?;
        for object in objects
            .iter()
            .filter(|o| matches!(o.kind.as_str(), "index" | "trigger" | "view"))
        {
            let (name, table, sql) = (
                &object.name,
                &object.table,
                object.sql.as_deref().unwrap_or_default(),
            );
            let key = name.to_ascii_lowercase();
            match object.kind.as_str() {
                "index" => {
                    schema.indexes.insert(key, parse_index(name, table, sql));
                }
                "trigger" => {
                    schema.triggers.insert(key, body(name, table, sql));
                }
                _ => {
                    schema.views.insert(key, body(name, table, sql));
                }
            }
        }
        Ok(schema)
    }

    fn read_tables(connection: &Connection) -> Result<Self, SchemaError> {
        let mut schema = Schema::default();
        let mut list = connection.prepare_cached(
            "SELECT name, type, wr, strict FROM pragma_table_list WHERE schema = 'main'",
        )?;
        let tables: Vec<(String, String, bool, bool)> = list
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let sql_of = |kind: &str, name: &str| -> rusqlite::Result<String> {
            connection
                .prepare_cached(
                    "SELECT coalesce(sql, '') FROM sqlite_master WHERE type = ?1 AND name = ?2",
                )?
                .query_row([kind, name], |row| row.get(0))
        };
        for (name, kind, without_rowid, strict) in tables {
            if name.starts_with("sqlite_") || !(kind == "table" || kind == "virtual") {
                continue;
            }
            let sql = sql_of("table", &name)?;
            let table = read_table(
                connection,
                &name,
                &sql,
                kind == "virtual",
                without_rowid,
                strict,
            )?;
            schema.tables.insert(name.to_ascii_lowercase(), table);
        }
        Ok(schema)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
            && self.indexes.is_empty()
            && self.triggers.is_empty()
            && self.views.is_empty()
    }

    /// `3 tables, 2 indexes, 1 trigger, 0 views`.
    pub fn summary(&self) -> String {
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{}, {}, {}, {}",
            count(self.tables.len(), "table", "tables"),
            count(self.indexes.len(), "index", "indexes"),
            count(self.triggers.len(), "trigger", "triggers"),
            count(self.views.len(), "view", "views")
        )
    }

    /// Canonical DDL, one object after another, for a readable unified diff.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for table in self.tables.values() {
            out.push_str(&render_table(table));
        }
        for index in self.indexes.values() {
            let _ = writeln!(
                out,
                "CREATE {}INDEX {} ON {} ({}){};",
                if index.unique { "UNIQUE " } else { "" },
                ident(&index.name),
                ident(&index.table),
                index.columns.join(", "),
                index
                    .partial
                    .as_ref()
                    .map_or_else(String::new, |w| format!(" WHERE {w}"))
            );
        }
        for view in self.views.values() {
            let _ = writeln!(out, "{};", view.sql);
        }
        for trigger in self.triggers.values() {
            let _ = writeln!(out, "{};", trigger.sql);
        }
        out
    }
}

fn table_names(connection: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement =
        connection.prepare_cached("SELECT lower(name) FROM sqlite_master WHERE type = 'table'")?;
    statement.query_map([], |row| row.get(0))?.collect()
}

fn read_table(
    connection: &Connection,
    name: &str,
    sql: &str,
    is_virtual: bool,
    without_rowid: bool,
    strict: bool,
) -> Result<Table, SchemaError> {
    let tokens = tokenize(sql);
    if is_virtual {
        let using = tokens.iter().position(|t| t.text == "using");
        return Ok(Table {
            name: name.to_owned(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            autoincrement: false,
            unique: Vec::new(),
            checks: Vec::new(),
            foreign_keys: Vec::new(),
            without_rowid: false,
            strict: false,
            virtual_module: using.map(|i| join_tokens(&tokens[i + 1..])),
        });
    }
    let definitions = column_definitions(&tokens);
    let mut info = connection.prepare_cached("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")?;
    let mut columns = Vec::new();
    let mut primary: Vec<(i64, String)> = Vec::new();
    let rows: Vec<(String, String, bool, Option<String>, i64, i64)> = info
        .query_map([name], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (column, declared_type, not_null, default, pk, hidden) in rows {
        if pk > 0 {
            primary.push((pk, column.to_ascii_lowercase()));
        }
        let definition = definitions.iter().find(|d| {
            d.first()
                .is_some_and(|t| t.text == column.to_ascii_lowercase())
        });
        let generated = (hidden == 2 || hidden == 3).then(|| {
            let expression = definition
                .and_then(|d| {
                    d.iter()
                        .position(|t| t.text == "as")
                        .map(|i| balanced_after(d, i + 1))
                })
                .unwrap_or_default();
            format!(
                "{} {expression}",
                if hidden == 3 { "STORED" } else { "VIRTUAL" }
            )
        });
        columns.push(Column {
            name: column.to_ascii_lowercase(),
            declared_type: normalize_type(&declared_type),
            not_null,
            default: default.map(|d| strip_outer_parens(&join_tokens(&tokenize(&d)))),
            collate: definition.and_then(|d| {
                d.iter()
                    .position(|t| t.text == "collate")
                    .and_then(|i| d.get(i + 1))
                    .map(|t| t.text.clone())
            }),
            generated,
        });
    }
    primary.sort();
    let mut unique = Vec::new();
    let mut list =
        connection.prepare_cached("SELECT name FROM pragma_index_list(?1) WHERE origin = 'u'")?;
    let names: Vec<String> = list
        .query_map([name], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for index in names {
        let mut info = connection
            .prepare_cached("SELECT lower(name) FROM pragma_index_info(?1) ORDER BY seqno")?;
        let cols: Vec<String> = info
            .query_map([&index], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        unique.push(cols);
    }
    unique.sort();
    let mut keys = connection.prepare_cached(
        "SELECT id, lower(\"table\"), lower(\"from\"), lower(coalesce(\"to\", '')), on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
    )?;
    let mut foreign_keys: BTreeMap<i64, ForeignKey> = BTreeMap::new();
    let rows: Vec<(i64, String, String, String, String, String)> = keys
        .query_map([name], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, table, from, to, on_update, on_delete) in rows {
        let key = foreign_keys.entry(id).or_insert_with(|| ForeignKey {
            columns: Vec::new(),
            references: table.clone(),
            referenced_columns: Vec::new(),
            on_delete: on_delete.to_ascii_uppercase(),
            on_update: on_update.to_ascii_uppercase(),
        });
        key.columns.push(from);
        if !to.is_empty() {
            key.referenced_columns.push(to);
        }
    }
    let mut foreign_keys: Vec<ForeignKey> = foreign_keys.into_values().collect();
    foreign_keys.sort();
    let mut checks: Vec<String> = definitions
        .iter()
        .flat_map(|definition| {
            definition
                .iter()
                .enumerate()
                .filter(|(_, t)| t.text == "check")
                .map(|(i, _)| balanced_after(definition, i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    checks.sort();
    Ok(Table {
        name: name.to_ascii_lowercase(),
        columns,
        primary_key: primary.into_iter().map(|(_, c)| c).collect(),
        autoincrement: tokens.iter().any(|t| t.text == "autoincrement"),
        unique,
        checks,
        foreign_keys,
        without_rowid,
        strict,
        virtual_module: None,
    })
}

fn parse_index(name: &str, table: &str, sql: &str) -> Index {
    let tokens = tokenize(sql);
    let unique = tokens.get(1).is_some_and(|t| t.text == "unique");
    let open = tokens
        .iter()
        .position(|t| t.text == "(")
        .unwrap_or(tokens.len());
    let close = matching(&tokens, open);
    let columns = split_top_level(&tokens[(open + 1).min(tokens.len())..close])
        .into_iter()
        .map(join_tokens)
        .collect();
    let partial = tokens
        .get(close + 1)
        .filter(|t| t.text == "where")
        .map(|_| join_tokens(&tokens[close + 2..]));
    Index {
        name: name.to_ascii_lowercase(),
        table: table.to_ascii_lowercase(),
        unique,
        columns,
        partial,
    }
}

fn body(name: &str, table: &str, sql: &str) -> Body {
    Body {
        name: name.to_ascii_lowercase(),
        table: table.to_ascii_lowercase(),
        sql: join_tokens(&tokenize(sql)),
    }
}

/// The tokens of SQL text, normalised (words lower-cased, identifiers unquoted, comments
/// dropped), for rules that look at statements word by word.
pub fn words(sql: &str) -> Vec<String> {
    tokenize(sql).into_iter().map(|t| t.text).collect()
}

/// A token of SQL text, normalised: words lower-cased, quoted identifiers unquoted,
/// literals kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    /// A string or blob literal (never lower-cased).
    literal: bool,
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    let word = |text: String| Token {
        text,
        literal: false,
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'x' || c == 'X') && chars.get(i + 1) == Some(&'\'')) {
            let start = i;
            if c != '\'' {
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            let text: String = chars[start..i.min(chars.len())].iter().collect();
            tokens.push(Token {
                text,
                literal: true,
            });
        } else if c == '"' || c == '`' || c == '[' {
            let close = if c == '[' { ']' } else { c };
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == close {
                    if close != ']' && chars.get(i + 1) == Some(&close) {
                        text.push(close);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            tokens.push(word(identifier_text(&text)));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            // A number keeps its decimal point; in a name, `.` is its own token (`new.email`).
            let number = c.is_ascii_digit();
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '$'
                    || (number && chars[i] == '.'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(word(text.to_lowercase()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["||", "<=", ">=", "<>", "!=", "==", "<<", ">>"].contains(&two.as_str()) {
                tokens.push(word(two));
                i += 2;
            } else {
                tokens.push(word(c.to_string()));
                i += 1;
            }
        }
    }
    drop_if_not_exists(&tokens)
}

/// An identifier's canonical spelling: bare and lower-cased when that is unambiguous.
fn identifier_text(name: &str) -> String {
    let lower = name.to_lowercase();
    if lower.chars().all(|c| c.is_alphanumeric() || c == '_') && !lower.is_empty() {
        lower
    } else {
        format!("\"{}\"", lower.replace('"', "\"\""))
    }
}

fn drop_if_not_exists(tokens: &[Token]) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].text == "if"
            && tokens.get(i + 1).is_some_and(|t| t.text == "not")
            && tokens.get(i + 2).is_some_and(|t| t.text == "exists")
            && i > 0
            && ["table", "index", "trigger", "view"].contains(&tokens[i - 1].text.as_str())
        {
            i += 3;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Tokens joined with single spaces, none inside parentheses or before commas.
fn join_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        // A call keeps its `(` on the name (`lower(x)`); a keyword does not (`check (x)`).
        let call = token.text == "("
            && i > 0
            && !tokens[i - 1].literal
            && is_word(&tokens[i - 1].text)
            && !is_keyword(&tokens[i - 1].text);
        let glue = i > 0
            && !call
            && !matches!(token.text.as_str(), "," | ")" | ";" | ".")
            && !matches!(tokens[i - 1].text.as_str(), "(" | ".");
        if glue {
            out.push(' ');
        }
        out.push_str(&token.text);
    }
    out.trim_end_matches(';').trim_end().to_owned()
}

fn is_word(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"')
}

/// Keywords after which `(` starts a group rather than a call (kept apart for readability).
fn is_keyword(text: &str) -> bool {
    matches!(
        text,
        "as" | "in"
            | "on"
            | "and"
            | "or"
            | "not"
            | "check"
            | "key"
            | "values"
            | "using"
            | "when"
            | "then"
            | "else"
            | "exists"
            | "where"
            | "from"
            | "select"
            | "default"
    )
}

/// Index of the `)` matching the `(` at `open` (or the end).
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            "," if depth == 0 => {
                items.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        items.push(&tokens[start..]);
    }
    items
}

/// The column and constraint definitions of a `CREATE TABLE`, as token lists.
fn column_definitions(tokens: &[Token]) -> Vec<Vec<Token>> {
    let Some(open) = tokens.iter().position(|t| t.text == "(") else {
        return Vec::new();
    };
    let close = matching(tokens, open);
    split_top_level(&tokens[open + 1..close.min(tokens.len())])
        .into_iter()
        .map(<[Token]>::to_vec)
        .collect()
}

/// The normalised text of the parenthesised group starting at `start`.
fn balanced_after(tokens: &[Token], start: usize) -> String {
    if tokens.get(start).is_none_or(|t| t.text != "(") {
        return String::new();
    }
    let close = matching(tokens, start);
    join_tokens(&tokens[start..=close.min(tokens.len() - 1)])
}

fn strip_outer_parens(text: &str) -> String {
    let tokens = tokenize(text);
    if tokens.first().is_some_and(|t| t.text == "(") && matching(&tokens, 0) == tokens.len() - 1 {
        return join_tokens(&tokens[1..tokens.len() - 1]);
    }
    text.to_owned()
}

fn normalize_type(declared: &str) -> String {
    join_tokens(&tokenize(declared)).to_ascii_uppercase()
}

fn ident(name: &str) -> String {
    identifier_text(name)
}

fn render_table(table: &Table) -> String {
    if let Some(module) = &table.virtual_module {
        return format!(
            "CREATE VIRTUAL TABLE {} USING {module};\n",
            ident(&table.name)
        );
    }
    let mut lines: Vec<String> = table.columns.iter().map(render_column).collect();
    if !table.primary_key.is_empty() {
        lines.push(format!(
            "PRIMARY KEY ({}){}",
            table.primary_key.join(", "),
            if table.autoincrement {
                " AUTOINCREMENT"
            } else {
                ""
            }
        ));
    }
    for unique in &table.unique {
        lines.push(format!("UNIQUE ({})", unique.join(", ")));
    }
    for check in &table.checks {
        lines.push(format!("CHECK {check}"));
    }
    for key in &table.foreign_keys {
        lines.push(render_foreign_key(key));
    }
    let mut options = Vec::new();
    if table.without_rowid {
        options.push("WITHOUT ROWID");
    }
    if table.strict {
        options.push("STRICT");
    }
    format!(
        "CREATE TABLE {} (\n  {}\n){};\n",
        ident(&table.name),
        lines.join(",\n  "),
        if options.is_empty() {
            String::new()
        } else {
            format!(" {}", options.join(", "))
        }
    )
}

fn render_column(column: &Column) -> String {
    let mut text = ident(&column.name);
    if !column.declared_type.is_empty() {
        text.push(' ');
        text.push_str(&column.declared_type);
    }
    if column.not_null {
        text.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        text.push_str(" DEFAULT ");
        text.push_str(default);
    }
    if let Some(collate) = &column.collate {
        text.push_str(" COLLATE ");
        text.push_str(collate);
    }
    if let Some(generated) = &column.generated {
        text.push_str(" GENERATED ");
        text.push_str(generated);
    }
    text
}

fn render_foreign_key(key: &ForeignKey) -> String {
    format!(
        "FOREIGN KEY ({}) REFERENCES {}{} ON DELETE {} ON UPDATE {}",
        key.columns.join(", "),
        ident(&key.references),
        if key.referenced_columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", key.referenced_columns.join(", "))
        },
        key.on_delete,
        key.on_update
    )
}

/// One difference between two schemas, read as "going from A to B".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `table`, `column`, `index`, `trigger` or `view`.
    pub object: &'static str,
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// The human line: `table users: column email added (TEXT NOT NULL DEFAULT '')`.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

fn change(object: &'static str, name: &str, kind: &'static str, summary: String) -> Change {
    Change {
        object,
        name: name.to_owned(),
        change: kind,
        summary,
        before: None,
        after: None,
    }
}

/// How `b` differs from `a`.
pub fn diff(a: &Schema, b: &Schema) -> Vec<Change> {
    let mut changes = Vec::new();
    for (key, table) in &a.tables {
        match b.tables.get(key) {
            None => changes.push(change(
                "table",
                &table.name,
                "removed",
                format!("table {}: removed", table.name),
            )),
            Some(other) => diff_table(table, other, &mut changes),
        }
    }
    for (key, table) in &b.tables {
        if !a.tables.contains_key(key) {
            changes.push(change(
                "table",
                &table.name,
                "added",
                format!("table {}: added", table.name),
            ));
        }
    }
    // An index or trigger that goes with its table is part of that table's line.
    let table_gone = |table: &str| !b.tables.contains_key(table);
    let table_new = |table: &str| !a.tables.contains_key(table);
    for (key, index) in &a.indexes {
        match b.indexes.get(key) {
            None if table_gone(&index.table) => {}
            None => changes.push(change(
                "index",
                &index.name,
                "removed",
                format!("index {}: removed", index.name),
            )),
            Some(other) if other != index => {
                let mut what = Vec::new();
                if index.unique != other.unique {
                    what.push(if other.unique {
                        "now UNIQUE".to_owned()
                    } else {
                        "no longer UNIQUE".to_owned()
                    });
                }
                if index.table != other.table || index.columns != other.columns {
                    what.push(format!(
                        "columns {} ({}) → {} ({})",
                        index.table,
                        index.columns.join(", "),
                        other.table,
                        other.columns.join(", ")
                    ));
                }
                if index.partial != other.partial {
                    what.push(format!(
                        "WHERE {} → {}",
                        index.partial.as_deref().unwrap_or("(none)"),
                        other.partial.as_deref().unwrap_or("(none)")
                    ));
                }
                changes.push(change(
                    "index",
                    &index.name,
                    "changed",
                    format!("index {}: {}", index.name, what.join(", ")),
                ));
            }
            Some(_) => {}
        }
    }
    for (key, index) in &b.indexes {
        if !a.indexes.contains_key(key) && !table_new(&index.table) {
            changes.push(change(
                "index",
                &index.name,
                "added",
                format!(
                    "index {}: added ({}ON {} ({}))",
                    index.name,
                    if index.unique { "UNIQUE " } else { "" },
                    index.table,
                    index.columns.join(", ")
                ),
            ));
        }
    }
    let (removed_tables, added_tables): (Vec<&str>, Vec<&str>) = (
        a.tables
            .keys()
            .filter(|k| table_gone(k))
            .map(String::as_str)
            .collect(),
        b.tables
            .keys()
            .filter(|k| table_new(k))
            .map(String::as_str)
            .collect(),
    );
    let mut triggers_a = a.triggers.clone();
    triggers_a.retain(|_, t| !removed_tables.contains(&t.table.as_str()));
    let mut triggers_b = b.triggers.clone();
    triggers_b.retain(|_, t| !added_tables.contains(&t.table.as_str()));
    diff_bodies("trigger", &triggers_a, &triggers_b, &mut changes);
    diff_bodies("view", &a.views, &b.views, &mut changes);
    for entry in &mut changes {
        if entry.object == "table" && (entry.change == "added" || entry.change == "removed") {
            let side = if entry.change == "added" { b } else { a };
            let key = entry.name.to_ascii_lowercase();
            let indexes = side.indexes.values().filter(|i| i.table == key).count();
            let triggers = side.triggers.values().filter(|t| t.table == key).count();
            let mut with = Vec::new();
            if indexes > 0 {
                with.push(format!(
                    "{indexes} {}",
                    if indexes == 1 { "index" } else { "indexes" }
                ));
            }
            if triggers > 0 {
                with.push(format!(
                    "{triggers} {}",
                    if triggers == 1 { "trigger" } else { "triggers" }
                ));
            }
            if !with.is_empty() {
                entry
                    .summary
                    .push_str(&format!(" (with {})", with.join(" and ")));
            }
        }
    }
    changes
}

fn diff_bodies(
    object: &'static str,
    a: &BTreeMap<String, Body>,
    b: &BTreeMap<String, Body>,
    changes: &mut Vec<Change>,
) {
    for (key, item) in a {
        match b.get(key) {
            None => changes.push(change(
                object,
                &item.name,
                "removed",
                format!("{object} {}: removed", item.name),
            )),
            Some(other) if other.sql != item.sql => {
                let mut entry = change(
                    object,
                    &item.name,
                    "changed",
                    format!("{object} {}: body differs", item.name),
                );
                entry.before = Some(item.sql.clone());
                entry.after = Some(other.sql.clone());
                changes.push(entry);
            }
            Some(_) => {}
        }
    }
    for (key, item) in b {
        if !a.contains_key(key) {
            changes.push(change(
                object,
                &item.name,
                "added",
                format!("{object} {}: added", item.name),
            ));
        }
    }
}

fn diff_table(a: &Table, b: &Table, changes: &mut Vec<Change>) {
    let name = &a.name;
    let table_change = |summary: String, before: String, after: String| {
        let mut entry = change("table", name, "changed", format!("table {name}: {summary}"));
        entry.before = Some(before);
        entry.after = Some(after);
        entry
    };
    if a.virtual_module != b.virtual_module {
        changes.push(table_change(
            "virtual table module differs".to_owned(),
            a.virtual_module.clone().unwrap_or_default(),
            b.virtual_module.clone().unwrap_or_default(),
        ));
    }
    for column in &a.columns {
        match b.columns.iter().find(|c| c.name == column.name) {
            None => changes.push(change(
                "column",
                &format!("{name}.{}", column.name),
                "removed",
                format!("table {name}: column {} removed", column.name),
            )),
            Some(other) if other != column => {
                let mut what = Vec::new();
                if column.declared_type != other.declared_type {
                    what.push(format!(
                        "type {} → {}",
                        or_none(&column.declared_type),
                        or_none(&other.declared_type)
                    ));
                }
                if column.not_null != other.not_null {
                    what.push(if other.not_null {
                        "NOT NULL added".to_owned()
                    } else {
                        "NOT NULL dropped".to_owned()
                    });
                }
                if column.default != other.default {
                    what.push(format!(
                        "default {} → {}",
                        column.default.as_deref().unwrap_or("(none)"),
                        other.default.as_deref().unwrap_or("(none)")
                    ));
                }
                if column.collate != other.collate {
                    what.push(format!(
                        "collation {} → {}",
                        column.collate.as_deref().unwrap_or("(none)"),
                        other.collate.as_deref().unwrap_or("(none)")
                    ));
                }
                if column.generated != other.generated {
                    what.push("generated expression differs".to_owned());
                }
                let mut entry = change(
                    "column",
                    &format!("{name}.{}", column.name),
                    "changed",
                    format!("table {name}: column {} {}", column.name, what.join(", ")),
                );
                entry.before = Some(render_column(column));
                entry.after = Some(render_column(other));
                changes.push(entry);
            }
            Some(_) => {}
        }
    }
    for column in &b.columns {
        if !a.columns.iter().any(|c| c.name == column.name) {
            let definition = render_column(column);
            let details = definition
                .strip_prefix(&ident(&column.name))
                .unwrap_or(&definition)
                .trim();
            changes.push(change(
                "column",
                &format!("{name}.{}", column.name),
                "added",
                format!(
                    "table {name}: column {} added ({})",
                    column.name,
                    if details.is_empty() {
                        "no type"
                    } else {
                        details
                    }
                ),
            ));
        }
    }
    if a.primary_key != b.primary_key || a.autoincrement != b.autoincrement {
        changes.push(table_change(
            "primary key differs".to_owned(),
            format!(
                "({}){}",
                a.primary_key.join(", "),
                if a.autoincrement {
                    " AUTOINCREMENT"
                } else {
                    ""
                }
            ),
            format!(
                "({}){}",
                b.primary_key.join(", "),
                if b.autoincrement {
                    " AUTOINCREMENT"
                } else {
                    ""
                }
            ),
        ));
    }
    if a.unique != b.unique {
        changes.push(table_change(
            "UNIQUE constraints differ".to_owned(),
            format!("{:?}", a.unique),
            format!("{:?}", b.unique),
        ));
    }
    if a.checks != b.checks {
        changes.push(table_change(
            "CHECK constraints differ".to_owned(),
            a.checks.join(", "),
            b.checks.join(", "),
        ));
    }
    for key in &a.foreign_keys {
        if !b.foreign_keys.contains(key) {
            let replacement = b
                .foreign_keys
                .iter()
                .find(|k| k.columns == key.columns && k.references == key.references);
            match replacement {
                Some(other) => {
                    let mut what = Vec::new();
                    if key.on_delete != other.on_delete {
                        what.push(format!("ON DELETE {} → {}", key.on_delete, other.on_delete));
                    }
                    if key.on_update != other.on_update {
                        what.push(format!("ON UPDATE {} → {}", key.on_update, other.on_update));
                    }
                    if key.referenced_columns != other.referenced_columns {
                        what.push("referenced columns differ".to_owned());
                    }
                    changes.push(table_change(
                        format!(
                            "foreign key ({}) → {}: {}",
                            key.columns.join(", "),
                            key.references,
                            what.join(", ")
                        ),
                        render_foreign_key(key),
                        render_foreign_key(other),
                    ));
                }
                None => changes.push(table_change(
                    format!(
                        "foreign key ({}) → {} removed",
                        key.columns.join(", "),
                        key.references
                    ),
                    render_foreign_key(key),
                    String::new(),
                )),
            }
        }
    }
    for key in &b.foreign_keys {
        if !a.foreign_keys.contains(key)
            && !a
                .foreign_keys
                .iter()
                .any(|k| k.columns == key.columns && k.references == key.references)
        {
            changes.push(table_change(
                format!(
                    "foreign key ({}) → {} added",
                    key.columns.join(", "),
                    key.references
                ),
                String::new(),
                render_foreign_key(key),
            ));
        }
    }
    if a.without_rowid != b.without_rowid || a.strict != b.strict {
        changes.push(table_change(
            "table options differ (WITHOUT ROWID / STRICT)".to_owned(),
            format!("without_rowid={} strict={}", a.without_rowid, a.strict),
            format!("without_rowid={} strict={}", b.without_rowid, b.strict),
        ));
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "(none)" } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

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
