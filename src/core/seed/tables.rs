//! Each table as seeding needs to know it, read from the connection itself through SQLite's
//! PRAGMAs; CHECK expressions, which no PRAGMA lists, come from the table's `CREATE` text.

use rusqlite::Connection;

use crate::core::schema::words;
use crate::core::seed::values::Literals;

/// A table of `sqlite_master` with what its kind means for seeding.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) name: String,
    pub(super) sql: String,
    /// `table`, `virtual` or `shadow`, as `pragma_table_list` says.
    pub(super) kind: String,
    pub(super) without_rowid: bool,
}

/// Every table of the main schema, by name case-insensitively (a stable order).
pub(super) fn list(connection: &Connection) -> rusqlite::Result<Vec<Listed>> {
    let mut statement = connection.prepare_cached(
        "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'table' \
         ORDER BY name COLLATE NOCASE",
    )?;
    let named: Vec<(String, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // One PRAGMA for every table; should it fail, one per table, so that one odd table cannot
    // hide the others.
    let mut kinds: std::collections::HashMap<String, (String, bool)> = connection
        .prepare_cached("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?
                .collect()
        })
        .unwrap_or_default();
    let mut listed = Vec::with_capacity(named.len());
    for (name, sql) in named {
        let (kind, without_rowid) = kinds.remove(&name).unwrap_or_else(|| {
            connection
                .prepare_cached("SELECT type, wr FROM pragma_table_list(?1) WHERE schema = 'main'")
                .and_then(|mut statement| {
                    statement.query_row([&name], |row| Ok((row.get(0)?, row.get(1)?)))
                })
                .unwrap_or_else(|_| ("table".to_owned(), false))
        });
        listed.push(Listed {
            name,
            sql,
            kind,
            without_rowid,
        });
    }
    Ok(listed)
}

#[derive(Debug, Clone)]
pub(super) struct TableShape {
    pub(super) name: String,
    pub(super) is_virtual: bool,
    /// An FTS3/4/5 table: its untyped columns want text.
    pub(super) full_text: bool,
    /// The columns an INSERT can name: neither generated nor a virtual table's hidden ones.
    pub(super) columns: Vec<ColumnShape>,
    pub(super) foreign_keys: Vec<ForeignKeyShape>,
    pub(super) checks: Vec<CheckShape>,
}

#[derive(Debug, Clone)]
pub(super) struct ColumnShape {
    pub(super) name: String,
    /// The name as [`words`] spells it, to find the column in expressions and messages.
    pub(super) word: String,
    pub(super) declared_type: String,
    /// An INSERT may give it NULL (an INTEGER PRIMARY KEY may: it then gets a new rowid).
    pub(super) nullable: bool,
    /// The rowid's alias: NULL there is never NULL in the row.
    pub(super) rowid_alias: bool,
    pub(super) has_default: bool,
}

#[derive(Debug, Clone)]
pub(super) struct ForeignKeyShape {
    /// The referenced table as the constraint spells it.
    pub(super) parent: String,
    /// Indexes into the table's `columns`.
    pub(super) columns: Vec<usize>,
    /// Referenced columns; empty means the parent's primary key.
    pub(super) referenced: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct CheckShape {
    /// `CONSTRAINT name CHECK (…)`: SQLite's message names it instead of quoting the expression.
    pub(super) name: Option<String>,
    /// Indexes into the table's `columns` of those the expression mentions.
    pub(super) columns: Vec<usize>,
    pub(super) literals: Literals,
}

impl ForeignKeyShape {
    /// Whether every column of the key may be NULL, which satisfies the constraint.
    pub(super) fn nullable(&self, columns: &[ColumnShape]) -> bool {
        self.columns
            .iter()
            .all(|&c| columns[c].nullable && !columns[c].rowid_alias)
    }
}

/// Reads what seeding `listed` needs.
pub(super) fn read(connection: &Connection, listed: &Listed) -> rusqlite::Result<TableShape> {
    let is_virtual = listed.kind == "virtual";
    // Tokenizing costs more than the PRAGMAs; most tables have nothing for it to find.
    let lower_sql = listed.sql.to_ascii_lowercase();
    let tokens = if is_virtual || lower_sql.contains("check") {
        words(&listed.sql)
    } else {
        Vec::new()
    };
    let full_text = is_virtual
        && tokens
            .windows(2)
            .any(|pair| pair[0] == "using" && pair[1].starts_with("fts"));
    let mut info = connection.prepare_cached(
        "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk, hidden \
         FROM pragma_table_xinfo(?1) ORDER BY cid",
    )?;
    let rows: Vec<(String, String, bool, bool, i64, i64)> = info
        .query_map([&listed.name], |row| {
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
    let key_columns = rows.iter().filter(|row| row.4 > 0).count();
    let columns: Vec<ColumnShape> = rows
        .into_iter()
        .filter(|row| row.5 == 0)
        .map(|(name, declared_type, not_null, has_default, pk, _)| {
            let rowid_alias = !listed.without_rowid
                && !is_virtual
                && pk > 0
                && key_columns == 1
                && declared_type.eq_ignore_ascii_case("INTEGER");
            ColumnShape {
                word: word_of(&name),
                // WITHOUT ROWID keys are NOT NULL whatever they say.
                nullable: !(not_null || (listed.without_rowid && pk > 0)),
                rowid_alias,
                has_default,
                name,
                declared_type,
            }
        })
        .collect();
    let position = |name: &str| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    };

    let mut keys = connection.prepare_cached(
        "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
    )?;
    let key_rows: Vec<(i64, String, String, Option<String>)> = keys
        .query_map([&listed.name], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut foreign_keys: Vec<(i64, ForeignKeyShape)> = Vec::new();
    let mut unusable = Vec::new();
    for (id, parent, from, to) in key_rows {
        let Some(column) = position(&from) else {
            unusable.push(id);
            continue;
        };
        if foreign_keys.last().is_none_or(|(last, _)| *last != id) {
            foreign_keys.push((
                id,
                ForeignKeyShape {
                    parent,
                    columns: Vec::new(),
                    referenced: Vec::new(),
                },
            ));
        }
        if let Some((_, key)) = foreign_keys.last_mut() {
            key.columns.push(column);
            key.referenced.extend(to);
        }
    }
    // A column in two keys gets its value from the first; the second is left to trial.
    let mut claimed = vec![false; columns.len()];
    let foreign_keys = foreign_keys
        .into_iter()
        .filter(|(id, _)| !unusable.contains(id))
        .map(|(_, key)| key)
        .filter(|key| {
            let free = key.columns.iter().all(|&c| !claimed[c]);
            if free {
                key.columns.iter().for_each(|&c| claimed[c] = true);
            }
            free
        })
        .collect();

    let checks = if is_virtual {
        Vec::new()
    } else {
        checks(&tokens, &columns)
    };
    Ok(TableShape {
        name: listed.name.clone(),
        is_virtual,
        full_text,
        columns,
        foreign_keys,
        checks,
    })
}

/// Every `CHECK (…)` of a `CREATE TABLE`, column constraints and table constraints alike.
fn checks(tokens: &[String], columns: &[ColumnShape]) -> Vec<CheckShape> {
    let mut found = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        if token != "check" || tokens.get(index + 1).is_none_or(|t| t != "(") {
            continue;
        }
        let expression = &tokens[index + 2..closing(tokens, index + 1)];
        let name =
            (index >= 2 && tokens[index - 2] == "constraint").then(|| tokens[index - 1].clone());
        found.push(CheckShape {
            name,
            columns: mentioned(expression, columns),
            literals: Literals::of_expression(expression),
        });
    }
    found
}

/// The index of the `)` closing the `(` at `open`, or the end.
fn closing(tokens: &[String], open: usize) -> usize {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "(" => depth += 1,
            ")" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return index;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// Indexes of the columns whose names occur among `tokens`.
pub(super) fn mentioned(tokens: &[String], columns: &[ColumnShape]) -> Vec<usize> {
    (0..columns.len())
        .filter(|&c| tokens.contains(&columns[c].word))
        .collect()
}

/// A name as [`words`] spells an identifier: bare and lower-cased when that is unambiguous.
fn word_of(name: &str) -> String {
    let lower = name.to_lowercase();
    if !lower.is_empty() && lower.chars().all(|c| c.is_alphanumeric() || c == '_') {
        lower
    } else {
        format!("\"{}\"", lower.replace('"', "\"\""))
    }
}

/// The columns a unique index covers, expressions and partial `WHERE` included, for reading a
/// `UNIQUE constraint failed: index 'name'` message.
pub(super) fn index_columns(
    connection: &Connection,
    index: &str,
    columns: &[ColumnShape],
) -> Vec<usize> {
    connection
        .prepare_cached(
            "SELECT coalesce(sql, '') FROM sqlite_master WHERE type = 'index' AND name = ?1 COLLATE NOCASE",
        )
        .and_then(|mut statement| statement.query_row([index], |row| row.get::<_, String>(0)))
        .map(|sql| mentioned(&words(&sql), columns))
        .unwrap_or_default()
}

/// The primary key columns of `table`, which a foreign key naming no columns references.
pub(super) fn primary_key(connection: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    connection
        .prepare_cached("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?
        .query_map([table], |row| row.get(0))?
        .collect()
}
