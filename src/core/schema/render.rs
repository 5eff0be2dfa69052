//! Canonical DDL for a schema, for readable unified diffs and change details.

use std::fmt::Write as _;

use super::model::{Column, ForeignKey, Schema, Table};
use super::tokenizer::identifier_text;

impl Schema {
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

pub(super) fn ident(name: &str) -> String {
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

pub(super) fn render_column(column: &Column) -> String {
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

pub(super) fn render_foreign_key(key: &ForeignKey) -> String {
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
