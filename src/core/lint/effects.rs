//! Rules that read what the migration did to the schema: drops, renames, retypes, NOT NULL.

use super::{Finding, finding, not_null_finding};
use crate::core::migrations::Migration;
use crate::core::schema::{self, Schema};

/// What applying the migration to the shadow changed.
pub(super) fn effect_findings(
    migration: &Migration,
    before: &Schema,
    after: &Schema,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut table_renames: Vec<(String, String)> = Vec::new();
    let mut column_renames: Vec<(String, String, String)> = Vec::new();
    let mut dropped_tables: Vec<(String, usize)> = Vec::new();
    for statement in &migration.statements {
        let words = schema::words(&statement.sql);
        let w = |i: usize| words.get(i).map_or("", String::as_str);
        if w(0) == "drop" && w(1) == "table" {
            let name = if w(2) == "if" { w(4) } else { w(2) };
            dropped_tables.push((name.to_owned(), statement.line));
        }
        if w(0) == "alter" && w(1) == "table" {
            let table = w(2).to_owned();
            if w(3) == "rename" && w(4) == "to" {
                table_renames.push((table, w(5).to_owned()));
            } else if w(3) == "rename" {
                let (from, to) = if w(4) == "column" {
                    (w(5), w(7))
                } else {
                    (w(4), w(6))
                };
                column_renames.push((table, from.to_owned(), to.to_owned()));
            }
        }
    }
    let renamed_away = |table: &str| {
        table_renames.iter().any(|(from, to)| {
            from == table && !after.tables.contains_key(from) && after.tables.contains_key(to)
        })
    };

    for change in schema::diff(before, after) {
        match (change.object, change.change) {
            ("table", "removed") => {
                if renamed_away(&change.name) {
                    let to = table_renames.iter().find(|(from, _)| *from == change.name).map_or("", |(_, to)| to.as_str());
                    found.push(finding(
                        "BC101",
                        migration,
                        None,
                        format!("table `{}` renamed to `{to}`: code that still uses the old name breaks", change.name),
                        "deploy code that reads both names first, or keep a view with the old name".to_owned(),
                    ));
                } else {
                    found.push(finding(
                        "DS102",
                        migration,
                        dropped_tables.iter().find(|(t, _)| *t == change.name).map(|(_, l)| *l),
                        format!("table `{}` is dropped with all its rows", change.name),
                        "make sure nothing reads it and its data is not needed (export it first), then waive: `-- d1ctl:allow DS102 <why>`".to_owned(),
                    ));
                }
            }
            ("column", "removed") => {
                let (table, column) = change.name.split_once('.').unwrap_or((&change.name, ""));
                if let Some((_, _, to)) = column_renames.iter().find(|(t, from, _)| t == table && from == column) {
                    found.push(finding(
                        "BC102",
                        migration,
                        None,
                        format!("column `{table}.{column}` renamed to `{to}`: code that still uses the old name breaks"),
                        "deploy code that reads both names first (2-phase rename)".to_owned(),
                    ));
                } else if !renamed_away(table) {
                    found.push(finding(
                        "DS103",
                        migration,
                        None,
                        format!("column `{table}.{column}` is dropped with its data"),
                        "stop reading and writing it first, then drop it in a later release; waive with `-- d1ctl:allow DS103 <why>`".to_owned(),
                    ));
                }
            }
            ("index", "removed") => found.push(finding(
                "DS104",
                migration,
                None,
                format!("index `{}` is dropped: queries that used it may slow down", change.name),
                "check the queries on that table, or create the replacement index in the same migration".to_owned(),
            )),
            ("column", "changed") if change.summary.contains(" type ") => found.push(finding(
                "MF105",
                migration,
                None,
                format!("{}: values are copied through a rebuild and may be converted", change.summary),
                "check the existing values convert as intended".to_owned(),
            )),
            ("column", "added") => found.extend(not_null_finding(migration, &change, before)),
            _ => {}
        }
    }
    found
}
