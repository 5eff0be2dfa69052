//! The normalised model, rebuilt from a snapshot in memory and read back through SQLite's
//! PRAGMAs.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use super::snapshot::{RawObject, SchemaError, Snapshot};
use super::tokenizer::{
    balanced_after, column_definitions, join_tokens, matching, normalize_type, split_top_level,
    strip_outer_parens, tokenize,
};

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
pub(super) fn is_internal(name: &str, ignore: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("sqlite_")
        || lower.starts_with("_cf_")
        || ignore.iter().any(|i| i.eq_ignore_ascii_case(name))
}

impl Schema {
    /// Rebuilds `snapshot` in memory and reads it back; `ignore` names ledger tables.
    pub fn build(snapshot: &Snapshot, ignore: &[&str]) -> Result<Self, SchemaError> {
        let connection = Connection::open_in_memory()?;
        crate::d1::authorizer::harden(&connection)?;
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
}

pub(super) fn table_names(connection: &Connection) -> rusqlite::Result<Vec<String>> {
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
