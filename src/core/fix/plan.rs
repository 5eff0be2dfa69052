//! Reading the migration: which statements rebuild a table that others reference, what each
//! rebuild's family is, and what goes with it (indexes, triggers, views), or why it cannot be
//! rewritten.

use std::collections::{BTreeMap, BTreeSet};

use super::{FixError, Rebuild, text};
use crate::core::fk;
use crate::core::schema::{self, RawObject, Schema, Snapshot};

/// What a statement does to the schema, as far as the rewrite cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ddl {
    DropTable(String),
    CreateTable(String),
    RenameTable { from: String, to: String },
    AlterTable(String),
    CreateIndex { table: String },
    CreateTrigger { name: String, table: String },
    DropIndex(String),
    DropTrigger(String),
    CreateView(String),
    DropView(String),
    Other,
}

pub(super) fn classify(sql: &str) -> Ddl {
    let words = schema::words(sql);
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    // `main.t` and `t` are the same table.
    let name = |i: usize| {
        if w(i + 1) == "." {
            (w(i + 2).to_owned(), i + 3)
        } else {
            (w(i).to_owned(), i + 1)
        }
    };
    let table_after_on = |from: usize| {
        (from..words.len())
            .find(|&i| w(i) == "on")
            .map_or_else(String::new, |on| name(on + 1).0)
    };
    match (w(0), w(1)) {
        ("drop", kind) => {
            let (target, _) = name(if w(2) == "if" { 4 } else { 2 });
            match kind {
                "table" => Ddl::DropTable(target),
                "index" => Ddl::DropIndex(target),
                "trigger" => Ddl::DropTrigger(target),
                "view" => Ddl::DropView(target),
                _ => Ddl::Other,
            }
        }
        ("alter", "table") => {
            let (table, next) = name(2);
            if w(next) == "rename" && w(next + 1) == "to" {
                Ddl::RenameTable {
                    from: table,
                    to: name(next + 2).0,
                }
            } else {
                Ddl::AlterTable(table)
            }
        }
        ("create", _) => {
            let mut kind = 1;
            while matches!(w(kind), "temp" | "temporary" | "unique" | "virtual") {
                kind += 1;
            }
            // `words` has already dropped `IF NOT EXISTS`.
            let (target, next) = name(kind + 1);
            match w(kind) {
                "table" => Ddl::CreateTable(target),
                "index" => Ddl::CreateIndex {
                    table: table_after_on(next),
                },
                "trigger" => Ddl::CreateTrigger {
                    name: target,
                    table: table_after_on(next),
                },
                "view" => Ddl::CreateView(target),
                _ => Ddl::Other,
            }
        }
        _ => Ddl::Other,
    }
}

/// One statement of the migration, located.
pub(super) struct Parsed<'a> {
    pub(super) sql: &'a str,
    pub(super) line: usize,
    pub(super) ddl: Ddl,
}

/// A referencing table and how it is copied.
pub(super) struct Member {
    /// As `sqlite_master` spells it.
    pub(super) name: String,
    pub(super) copy: String,
    pub(super) create: String,
    pub(super) columns: Vec<String>,
}

/// The rewrite of one rebuild, before it is put into text.
pub(super) struct Plan<'a> {
    pub(super) rebuild: Rebuild,
    pub(super) drop_statement: usize,
    pub(super) rename_statement: usize,
    pub(super) members: Vec<Member>,
    pub(super) dropped: Vec<&'a RawObject>,
    pub(super) recreated: Vec<&'a RawObject>,
}

/// The plan of every rebuild to rewrite, in statement order.
pub(super) fn plan<'a>(
    schema: &Schema,
    before: &'a Snapshot,
    statements: &[Parsed<'_>],
    mut taken: BTreeSet<String>,
    drizzle: bool,
) -> Result<Vec<Plan<'a>>, FixError> {
    let has_family =
        |table: &str| schema.tables.contains_key(table) && !fk::family(schema, table).is_empty();
    for (index, statement) in statements.iter().enumerate() {
        if let Ddl::RenameTable { from, to } = &statement.ddl
            && has_family(from)
            && statements[index + 1..].iter().any(|s| {
                matches!(&s.ddl, Ddl::CreateTable(n) | Ddl::RenameTable { to: n, .. } if n == from)
            })
        {
            return Err(FixError::RenamedAway {
                table: from.clone(),
                to: to.clone(),
                line: statement.line,
            });
        }
    }
    let mut plans: Vec<Plan<'a>> = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for (drop, statement) in statements.iter().enumerate() {
        let Ddl::DropTable(table) = &statement.ddl else {
            continue;
        };
        // A table this migration already created, renamed or dropped is not the one before it.
        let touched_earlier = statements[..drop].iter().any(|s| {
            matches!(&s.ddl, Ddl::CreateTable(n) | Ddl::DropTable(n) if n == table)
                || matches!(&s.ddl, Ddl::RenameTable { from, to } if from == table || to == table)
        });
        if !has_family(table) || touched_earlier {
            continue;
        }
        // Tables the migration dropped before this DROP reference nothing any more; when that
        // is the whole family (a rewrite already made, or children dropped on purpose) there is
        // nothing to fix.
        let mut remaining = schema.clone();
        for earlier in &statements[..drop] {
            if let Ddl::DropTable(gone) = &earlier.ddl {
                remaining.tables.remove(gone);
            }
        }
        let family = fk::family(&remaining, table);
        if family.is_empty() {
            continue;
        }
        let rename = statements[drop + 1..]
            .iter()
            .position(|s| matches!(&s.ddl, Ddl::RenameTable { to, .. } if to == table))
            .map(|i| drop + 1 + i);
        let Some(rename) = rename else {
            if statements[drop + 1..]
                .iter()
                .any(|s| matches!(&s.ddl, Ddl::CreateTable(n) if n == table))
            {
                return Err(FixError::RecreatedInPlace {
                    table: table.clone(),
                    line: statement.line,
                });
            }
            let mut children: Vec<String> = fk::children(schema, table)
                .map(|e| format!("`{}`", e.table))
                .collect();
            children.dedup();
            return Err(FixError::ParentNotRecreated {
                table: table.clone(),
                line: statement.line,
                children,
            });
        };
        let Ddl::RenameTable {
            from: new_table, ..
        } = &statements[rename].ddl
        else {
            continue;
        };
        let Some(created) = statements[..drop]
            .iter()
            .find(|s| matches!(&s.ddl, Ddl::CreateTable(n) if n == new_table))
        else {
            return Err(FixError::NewTableNotCreated {
                table: table.clone(),
                new_table: new_table.clone(),
                line: statements[rename].line,
            });
        };
        if text::referenced_tables(created.sql).contains(table) {
            return Err(FixError::ParentSelfReference {
                table: table.clone(),
                new_table: new_table.clone(),
                line: created.line,
            });
        }
        for member in &family {
            if let Some(first) = claimed.get(member) {
                return Err(FixError::SharedMember {
                    member: member.clone(),
                    first: first.clone(),
                    second: table.clone(),
                });
            }
            if let Some(line) = member_changed(before, statements, member, drop, rename) {
                return Err(FixError::FamilyMemberChanged {
                    member: member.clone(),
                    parent: table.clone(),
                    line,
                });
            }
            claimed.insert(member.clone(), table.clone());
        }
        let order = topological(schema, table, &family)?;
        let mut references: BTreeMap<String, String> =
            BTreeMap::from([(table.clone(), new_table.clone())]);
        let mut copies = Vec::new();
        for member in &order {
            let name = spelling(before, member);
            let mut copy = format!("{name}_next");
            let mut suffix = 2;
            while taken.contains(&copy.to_lowercase()) {
                copy = format!("{name}_next{suffix}");
                suffix += 1;
            }
            taken.insert(copy.to_lowercase());
            references.insert(member.clone(), copy.clone());
            copies.push((member.clone(), name, copy));
        }
        let fallback = if drizzle { b'`' } else { b'"' };
        let mut members = Vec::new();
        for (key, name, copy) in copies {
            let table_sql = before
                .objects
                .iter()
                .find(|o| o.kind == "table" && o.name.eq_ignore_ascii_case(&key))
                .and_then(|o| o.sql.as_deref())
                .unwrap_or_default();
            let create = text::rename_create_table(table_sql, &copy, &references, fallback)
                .ok_or_else(|| FixError::Verification {
                    message: format!("the CREATE TABLE of `{name}` could not be read"),
                })?;
            members.push(Member {
                columns: copied_columns(schema.tables.get(&key)),
                name,
                copy,
                create,
            });
        }
        let (dropped, recreated) = dependents(before, statements, table, &order);
        plans.push(Plan {
            rebuild: Rebuild {
                table: spelling(before, table),
                new_table: new_table.clone(),
                line: statement.line,
                copies: members
                    .iter()
                    .map(|m| (m.name.clone(), m.copy.clone()))
                    .collect(),
                recreated: recreated.iter().map(|o| o.name.clone()).collect(),
            },
            drop_statement: drop,
            rename_statement: rename,
            members,
            dropped,
            recreated,
        });
    }
    Ok(plans)
}

/// The line of a statement that changes `member` (anywhere), or that changes its indexes or
/// triggers, or uses it at all, before the parent's rename puts the family back in place.
fn member_changed(
    before: &Snapshot,
    statements: &[Parsed<'_>],
    member: &str,
    drop: usize,
    rename: usize,
) -> Option<usize> {
    let on_member = |object: &str| {
        before
            .objects
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(object) && o.table.eq_ignore_ascii_case(member))
    };
    statements.iter().enumerate().find_map(|(index, s)| {
        let changes = match &s.ddl {
            Ddl::DropTable(n) | Ddl::CreateTable(n) => n == member,
            Ddl::RenameTable { from, to } => from == member || to == member,
            Ddl::AlterTable(n)
            | Ddl::CreateIndex { table: n }
            | Ddl::CreateTrigger { table: n, .. } => n == member && index < rename,
            Ddl::DropIndex(n) | Ddl::DropTrigger(n) => index < rename && on_member(n),
            _ => false,
        };
        // Between the DROP and the RENAME the member exists only as its copy.
        let used =
            index > drop && index < rename && schema::words(s.sql).iter().any(|w| w == member);
        (changes || used).then_some(s.line)
    })
}

/// `family` ordered so that each table comes after every family table it references.
fn topological(schema: &Schema, root: &str, family: &[String]) -> Result<Vec<String>, FixError> {
    let mut placed: Vec<String> = Vec::new();
    let mut remaining: Vec<String> = family.to_vec();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|member| {
            schema.tables.get(member).is_none_or(|table| {
                table.foreign_keys.iter().all(|key| {
                    key.references == *member
                        || key.references == root
                        || placed.contains(&key.references)
                        || !family.contains(&key.references)
                })
            })
        });
        let Some(ready) = ready else {
            return Err(FixError::Cycle {
                table: root.to_owned(),
                tables: remaining,
            });
        };
        placed.push(remaining.remove(ready));
    }
    Ok(placed)
}

/// The name as `sqlite_master` spells it.
fn spelling(before: &Snapshot, key: &str) -> String {
    before
        .objects
        .iter()
        .find(|o| o.kind == "table" && o.name.eq_ignore_ascii_case(key))
        .map_or_else(|| key.to_owned(), |o| o.name.clone())
}

/// The columns a copy takes: every stored one, and the rowid when it is not a column's, so
/// that what refers to rowids (FTS content tables, the application) still finds its rows.
fn copied_columns(table: Option<&schema::Table>) -> Vec<String> {
    let Some(table) = table else {
        return Vec::new();
    };
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .filter(|c| c.generated.is_none())
        .map(|c| c.name.clone())
        .collect();
    let aliased = matches!(table.primary_key.as_slice(), [key] if table.columns.iter().any(|c| &c.name == key && c.declared_type == "INTEGER"));
    let shadowed = table
        .columns
        .iter()
        .any(|c| matches!(c.name.as_str(), "rowid" | "oid" | "_rowid_"));
    if !table.without_rowid && !aliased && !shadowed {
        columns.insert(0, "rowid".to_owned());
    }
    columns
}

/// What goes with the family: views and triggers elsewhere that read a family table (dropped
/// first, in an order their dependencies allow), and everything recreated after the renames
/// (the family's indexes and triggers, those views and triggers), in creation order.
fn dependents<'a>(
    before: &'a Snapshot,
    statements: &[Parsed<'_>],
    root: &str,
    members: &[String],
) -> (Vec<&'a RawObject>, Vec<&'a RawObject>) {
    let handled_by_migration: BTreeSet<&str> = statements
        .iter()
        .filter_map(|s| match &s.ddl {
            Ddl::DropView(n) | Ddl::CreateView(n) | Ddl::DropTrigger(n) => Some(n.as_str()),
            Ddl::CreateTrigger { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let lower = |o: &RawObject| (o.name.to_lowercase(), o.table.to_lowercase());
    let mut reading: BTreeSet<String> = members.iter().cloned().collect();
    let mut views: BTreeSet<String> = BTreeSet::new();
    // Views over views: repeat until nothing more reads what is being replaced.
    loop {
        let before_count = views.len();
        for object in before.objects.iter().filter(|o| o.kind == "view") {
            let (name, _) = lower(object);
            if views.contains(&name) || handled_by_migration.contains(name.as_str()) {
                continue;
            }
            let sql = object.sql.as_deref().unwrap_or_default();
            if schema::words(sql).iter().any(|w| reading.contains(w)) {
                views.insert(name.clone());
                reading.insert(name);
            }
        }
        if views.len() == before_count {
            break;
        }
    }
    let is_member = |table: &str| members.iter().any(|m| m == table);
    let mut dropped_triggers = Vec::new();
    let mut recreated = Vec::new();
    for object in &before.objects {
        let (name, table) = lower(object);
        let sql = object.sql.as_deref().unwrap_or_default();
        let keep = match object.kind.as_str() {
            "index" => object.sql.is_some() && is_member(&table),
            "view" => views.contains(&name),
            "trigger" if is_member(&table) || views.contains(&table) => true,
            "trigger" => {
                let reads = table != root
                    && !handled_by_migration.contains(name.as_str())
                    && schema::words(sql).iter().any(|w| reading.contains(w));
                if reads {
                    dropped_triggers.push(object);
                }
                reads
            }
            _ => false,
        };
        if keep {
            recreated.push(object);
        }
    }
    let mut dropped = dropped_triggers;
    dropped.extend(
        before
            .objects
            .iter()
            .rev()
            .filter(|o| o.kind == "view" && views.contains(&o.name.to_lowercase())),
    );
    (dropped, recreated)
}
