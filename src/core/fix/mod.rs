//! `d1ctl lint --fix`: the rewrite of a table rebuild that keeps every row on D1.
//!
//! On D1 foreign keys stay on inside a migration, so the usual rebuild (`CREATE TABLE __new_t`,
//! copy, `DROP TABLE t`, `ALTER TABLE __new_t RENAME TO t`) runs `DELETE FROM t` at the DROP and
//! every table referencing `t` is cascaded, nulled or blocks it (`../shared/reference/
//! d1-platform.md` §10). The rewrite rebuilds the whole family: every table referencing `t`,
//! transitively, is copied into a `_next` table before any DROP, the copies referencing the new
//! tables (`__new_t`, then each other) so that no DROP reaches them; the old tables are dropped
//! children first; after the user's own RENAME the copies are renamed, and SQLite's rename with
//! foreign keys on points their `REFERENCES` at the final names. Indexes and triggers go with
//! the dropped tables and are recreated; views and triggers elsewhere that read a family table
//! would make every RENAME fail ("error in view …"), so they are dropped first and recreated.
//! Nothing of the migration is changed: statements are only inserted between its own.

mod plan;
#[cfg(test)]
mod tests;
mod text;
mod verify;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::core::migrations::Layout;
use crate::core::schema::{self, Schema, SchemaError, Snapshot};
use plan::{Parsed, classify, plan};
use text::Insertion;
use verify::verify;

/// One rebuild rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebuild {
    /// The rebuilt table.
    pub table: String,
    /// The migration's new table that takes its name (`__new_users`).
    pub new_table: String,
    /// Line of the migration's `DROP TABLE`.
    pub line: usize,
    /// Each referencing table and its copy, parents before children.
    pub copies: Vec<(String, String)>,
    /// Indexes, triggers and views recreated after the renames.
    pub recreated: Vec<String>,
}

/// The migration's text after the rewrite; unchanged when `rebuilds` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub text: String,
    pub rebuilds: Vec<Rebuild>,
}

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error(
        "line {line}: `{table}` is dropped and never recreated while {}: there is no rebuild to rewrite",
        referencing(children)
    )]
    ParentNotRecreated {
        table: String,
        line: usize,
        children: Vec<String>,
    },
    #[error(
        "line {line}: `{table}` is dropped and then created again under its own name, so copies of the tables that reference it have no new table to point at before the DROP"
    )]
    RecreatedInPlace { table: String, line: usize },
    #[error(
        "line {line}: `{table}` is renamed to `{to}` and created again: with foreign keys on, the rename points every table that references `{table}` at `{to}`"
    )]
    RenamedAway {
        table: String,
        to: String,
        line: usize,
    },
    #[error(
        "line {line}: `{new_table}` is renamed to `{table}`, but this migration does not create it before dropping `{table}`"
    )]
    NewTableNotCreated {
        table: String,
        new_table: String,
        line: usize,
    },
    #[error(
        "line {line}: `{new_table}` references `{table}`, the table it replaces: dropping `{table}` reaches its own copied rows"
    )]
    ParentSelfReference {
        table: String,
        new_table: String,
        line: usize,
    },
    #[error(
        "line {line}: `{member}` references `{parent}`, so the fix rebuilds it with `{parent}`, but this statement changes it or uses it while `{parent}` is rebuilt"
    )]
    FamilyMemberChanged {
        member: String,
        parent: String,
        line: usize,
    },
    #[error(
        "`{member}` references both `{first}` and `{second}`, which this migration both rebuilds"
    )]
    SharedMember {
        member: String,
        first: String,
        second: String,
    },
    #[error(
        "the tables that reference `{table}` reference each other in a cycle ({})",
        tables.join(", ")
    )]
    Cycle { table: String, tables: Vec<String> },
    #[error("the migration fails on the schema before it: {message}")]
    OriginalFails { message: String },
    #[error("the rewrite does not check out on an empty copy of the schema: {message}")]
    Verification { message: String },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("SQLite error while checking the rewrite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// "`posts` references it", "`posts`, `likes` reference it".
fn referencing(children: &[String]) -> String {
    let verb = if children.len() == 1 {
        "references"
    } else {
        "reference"
    };
    format!("{} {verb} it", children.join(", "))
}

const DRIZZLE_FORM: &str = "write the rebuild as `CREATE TABLE __new_t (…); INSERT INTO __new_t SELECT … FROM t; DROP TABLE t; ALTER TABLE __new_t RENAME TO t;` (drizzle-kit's form) and run `d1ctl lint --fix` again";

impl FixError {
    pub fn hint(&self) -> String {
        match self {
            FixError::ParentNotRecreated { .. } => "if dropping it is intended, drop the tables that reference it first (their rows go too), or keep it".to_owned(),
            FixError::RecreatedInPlace { .. } | FixError::RenamedAway { .. } | FixError::NewTableNotCreated { .. } => DRIZZLE_FORM.to_owned(),
            FixError::ParentSelfReference { table, new_table, .. } => format!("make `{new_table}` reference itself (`REFERENCES {new_table}`): its rename to `{table}` points the reference back at `{table}`"),
            FixError::FamilyMemberChanged { member, .. } => format!("move the change of `{member}` into a migration of its own after this one, then run `d1ctl lint --fix` again"),
            FixError::SharedMember { first, second, .. } => format!("rebuild `{first}` and `{second}` in separate migrations"),
            FixError::Cycle { .. } => "rewrite this rebuild by hand: copy every table of the cycle before the first DROP".to_owned(),
            FixError::OriginalFails { .. } => "fix the SQL first: `d1ctl lint` reports it as LT001".to_owned(),
            FixError::Verification { .. } | FixError::Schema(_) | FixError::Sqlite(_) => "nothing was written; this is a limit of `d1ctl lint --fix`: rewrite the rebuild by hand".to_owned(),
        }
    }
}

/// Rewrites each rebuild of `migration_text` whose table others reference, given the snapshot
/// of the schema before the migration. The rewrite is checked on an empty copy of that schema:
/// it must run and end in the very schema the migration as written ends in.
pub fn family_rebuild(
    before: &Snapshot,
    migration_text: &str,
    layout: Layout,
) -> Result<Fixed, FixError> {
    let drizzle = layout == Layout::Drizzle;
    let schema = Schema::build(before, &[])?;
    let spans = text::statement_spans(migration_text, drizzle);
    let statements: Vec<Parsed<'_>> = spans
        .iter()
        .map(|span| {
            let sql = &migration_text[span.start..span.end];
            Parsed {
                sql,
                line: 1 + migration_text[..span.start].matches('\n').count(),
                ddl: classify(sql),
            }
        })
        .collect();
    let taken: BTreeSet<String> = before
        .objects
        .iter()
        .map(|o| o.name.to_lowercase())
        .chain(schema::words(migration_text))
        .collect();
    let plans = plan(&schema, before, &statements, taken, drizzle)?;
    if plans.is_empty() {
        return Ok(Fixed {
            text: migration_text.to_owned(),
            rebuilds: Vec::new(),
        });
    }
    let quote_mark = if drizzle { b'`' } else { b'"' };
    let quote = |name: &str| text::quote(name, quote_mark);
    let mut insertions = Vec::new();
    for plan in &plans {
        let mut before_drop: Vec<String> = plan
            .dropped
            .iter()
            .map(|object| {
                let kind = if object.kind == "trigger" {
                    "TRIGGER"
                } else {
                    "VIEW"
                };
                format!("DROP {kind} {}", quote(&object.name))
            })
            .collect();
        for member in &plan.members {
            let columns = member
                .columns
                .iter()
                // `rowid` bare: it is the table's row id, not a column.
                .map(|c| if c == "rowid" { c.clone() } else { quote(c) })
                .collect::<Vec<_>>()
                .join(", ");
            before_drop.push(member.create.clone());
            before_drop.push(format!(
                "INSERT INTO {} ({columns}) SELECT {columns} FROM {}",
                quote(&member.copy),
                quote(&member.name)
            ));
        }
        for member in plan.members.iter().rev() {
            before_drop.push(format!("DROP TABLE {}", quote(&member.name)));
        }
        let mut after_rename: Vec<String> = plan
            .members
            .iter()
            .map(|m| {
                format!(
                    "ALTER TABLE {} RENAME TO {}",
                    quote(&m.copy),
                    quote(&m.name)
                )
            })
            .collect();
        after_rename.extend(
            plan.recreated
                .iter()
                .filter_map(|object| object.sql.clone()),
        );
        let names: Vec<&str> = plan.members.iter().map(|m| m.name.as_str()).collect();
        insertions.push(Insertion {
            gap: plan.drop_statement,
            comment: format!(
                "d1ctl lint --fix: copy the tables that reference `{}` ({}) first: D1 keeps foreign keys on, so its DROP would reach their rows",
                plan.rebuild.table,
                names.join(", ")
            ),
            statements: before_drop,
        });
        insertions.push(Insertion {
            gap: plan.rename_statement + 1,
            comment: "d1ctl lint --fix: the copies take the place of the originals, with their indexes, triggers and views".to_owned(),
            statements: after_rename,
        });
    }
    let fixed = text::insert(migration_text, &spans, &insertions, drizzle);
    verify(before, migration_text, &fixed, layout)?;
    Ok(Fixed {
        text: fixed,
        rebuilds: plans.into_iter().map(|p| p.rebuild).collect(),
    })
}
