//! How one schema differs from another.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Body, Schema, Table};
use super::render::{ident, render_column, render_foreign_key};

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
