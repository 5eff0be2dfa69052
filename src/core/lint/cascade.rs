//! D1001, D1009, D1010: what each `DROP TABLE` does to the tables that reference it, judged in
//! statement order against the schema as it stands at that statement.
//!
//! On D1 foreign keys are always on and `PRAGMA defer_foreign_keys` defers checks, not actions
//! (`../shared/reference/d1-platform.md` §10). By the child's action:
//! - `CASCADE` / `SET NULL` / `SET DEFAULT` (and a cascade's own children): rows or key values
//!   are lost, deferred or not — D1001;
//! - `NO ACTION`: the `DROP` fails when the child has rows (it passes on an empty database),
//!   unless `defer_foreign_keys = on … off` surrounds it and the table comes back with the keys —
//!   D1009;
//! - `RESTRICT`: fails when the child has rows — D1010. Inside the pair SQLite treats it as
//!   NO ACTION (it skips RESTRICT actions while deferring); the reference says D1 does not, so
//!   that case is a warning.
//!
//! A family rebuild (children copied into `_next` tables that reference the new parent before
//! any `DROP`, old tables dropped leaves first) leaves nothing referencing the parent when it is
//! dropped, so it passes.

use std::collections::BTreeSet;

use rusqlite::Connection;

use super::{Finding, finding};
use crate::core::fk::{self, Action, Effect};
use crate::core::guard;
use crate::core::migrations::Migration;
use crate::core::schema::{self, Schema};

/// One `DROP TABLE` and what it reaches.
struct Dropped {
    table: String,
    line: usize,
    /// Statement index in the migration.
    index: usize,
    /// `defer_foreign_keys` was on when it ran.
    deferred: bool,
    /// The deferral was switched off again later (the `on … off` pair).
    paired: bool,
    effects: Vec<Effect>,
    /// Tables an `INSERT … SELECT` had read before it ran (copied aside).
    copied_before: BTreeSet<String>,
}

/// Collects drops while the migration runs on the shadow, one statement at a time.
#[derive(Default)]
pub(super) struct CascadeWatch {
    deferred: bool,
    dropped: Vec<Dropped>,
    copied: BTreeSet<String>,
}

impl CascadeWatch {
    /// Called before statement `index` runs on `connection` (which holds the schema as it is
    /// at that point).
    pub(super) fn before(
        &mut self,
        connection: &Connection,
        index: usize,
        statement: &crate::core::sql::SqlStatement,
        ignore: &[&str],
    ) {
        let words = schema::words(&statement.sql);
        let w = |i: usize| words.get(i).map_or("", String::as_str);
        if matches!(w(0), "insert" | "replace") && words.iter().any(|w| w == "select") {
            for (i, word) in words.iter().enumerate() {
                if matches!(word.as_str(), "from" | "join") {
                    self.copied.insert(guard::table_at(&words, i + 1));
                }
            }
        }
        // `PRAGMA [schema.]defer_foreign_keys = value`; without a value it only reads.
        let pragma = if w(2) == "." { 3 } else { 1 };
        if w(0) == "pragma" && w(pragma) == "defer_foreign_keys" {
            let value = words
                .iter()
                .skip(pragma + 1)
                .find(|w| !matches!(w.as_str(), "=" | "(" | ")" | ";"));
            if let Some(value) = value {
                let on = matches!(value.trim_matches('\''), "on" | "true" | "yes" | "1");
                if !on && self.deferred {
                    for dropped in self.dropped.iter_mut().filter(|d| d.deferred) {
                        dropped.paired = true;
                    }
                }
                self.deferred = on;
            }
            return;
        }
        let Some(guard::RowChange::Dropped(table)) = guard::row_change(&words) else {
            return;
        };
        let Some(schema) = super::read_schema(connection, ignore) else {
            return;
        };
        if !schema.tables.contains_key(&table) {
            return;
        }
        self.dropped.push(Dropped {
            effects: fk::deletion_effects(&schema, std::slice::from_ref(&table)),
            table,
            line: statement.line,
            index,
            deferred: self.deferred,
            paired: false,
            copied_before: self.copied.clone(),
        });
    }

    /// The findings, once the migration ran; `after` is the schema it left.
    pub(super) fn findings(self, migration: &Migration, after: &Schema) -> Vec<Finding> {
        let mut found = Vec::new();
        for dropped in &self.dropped {
            // A table copied aside before this DROP and dropped by the migration itself later
            // is being replaced; its fate is the copy's, which is judged on its own.
            let effects: Vec<&Effect> = dropped
                .effects
                .iter()
                .filter(|e| {
                    !(dropped.copied_before.contains(&e.table)
                        && self
                            .dropped
                            .iter()
                            .any(|d| d.index > dropped.index && d.table == e.table))
                })
                .collect();
            let recreated = after.tables.contains_key(&dropped.table);
            let what = if recreated {
                format!("rebuilding `{}` drops it, and the DROP", dropped.table)
            } else {
                format!("`DROP TABLE {}`", dropped.table)
            };
            let losing: Vec<&&Effect> = effects.iter().filter(|e| e.action.loses_data()).collect();
            if !losing.is_empty() {
                found.push(finding(
                    "D1001",
                    migration,
                    Some(dropped.line),
                    format!(
                        "{what} {}: on D1 foreign keys are always on and `PRAGMA defer_foreign_keys` / `foreign_keys = off` do not stop ON DELETE actions",
                        describe_losses(&losing)
                    ),
                    if recreated {
                        format!(
                            "rebuild the whole family instead: copy {} into `_next` tables that reference the new `{}` before any DROP, drop the old tables children first, then rename them; `d1ctl lint --fix {}` writes it",
                            names(losing.iter().map(|e| e.table.as_str())),
                            dropped.table,
                            migration.path.display()
                        )
                    } else {
                        format!(
                            "delete or move the rows of {} deliberately first (a `DELETE` the migration names), then drop `{}`",
                            names(losing.iter().map(|e| e.table.as_str())),
                            dropped.table
                        )
                    }
                ));
            }
            let blocking: Vec<&&Effect> = effects
                .iter()
                .filter(|e| e.action == Action::NoAction)
                .collect();
            let safe_when_deferred = dropped.deferred && dropped.paired && recreated;
            if !blocking.is_empty() && !safe_when_deferred {
                let (message, fix) = if dropped.deferred && dropped.paired {
                    (
                        format!(
                            "{what} leaves {} pointing at rows that no longer exist: `defer_foreign_keys = off` forgets the violation instead of failing",
                            keys(&blocking)
                        ),
                        format!(
                            "recreate `{}` with the same keys, or remove those rows first",
                            dropped.table
                        ),
                    )
                } else {
                    (
                        format!(
                            "{what} fails on a database where {} hold rows ({}); it passes on an empty one, such as a fresh staging database",
                            names(blocking.iter().map(|e| e.table.as_str())),
                            keys(&blocking)
                        ),
                        if recreated {
                            "surround the rebuild with `PRAGMA defer_foreign_keys = on;` … `PRAGMA defer_foreign_keys = off;` (safe for children without an ON DELETE action, as long as the new table keeps their keys), or rebuild the whole family".to_owned()
                        } else {
                            "delete the child rows first, or rebuild the children without the key"
                                .to_owned()
                        },
                    )
                };
                found.push(finding(
                    "D1009",
                    migration,
                    Some(dropped.line),
                    message,
                    fix,
                ));
            }
            let restricting: Vec<&&Effect> = effects
                .iter()
                .filter(|e| e.action == Action::Restrict)
                .collect();
            // SQLite does not code RESTRICT actions while `defer_foreign_keys` is on
            // (fkey.c), so inside the pair RESTRICT acts as NO ACTION. d1-platform.md §10 says
            // D1 checks it at once even then; unconfirmed, so that case stays a warning.
            if !restricting.is_empty() && safe_when_deferred {
                found.push(Finding {
                    severity: super::Severity::Warning,
                    ..finding(
                        "D1010",
                        migration,
                        Some(dropped.line),
                        format!(
                            "{what} passes on SQLite while {} hold rows ({}) only because SQLite skips RESTRICT while `defer_foreign_keys` is on; D1 is documented to check RESTRICT at once",
                            names(restricting.iter().map(|e| e.table.as_str())),
                            keys(&restricting)
                        ),
                        format!(
                            "rebuild the whole family (the children first into `_next` tables that reference the new `{}`) so the result does not depend on it; `d1ctl lint --fix {}` writes it",
                            dropped.table,
                            migration.path.display()
                        ),
                    )
                });
            } else if !restricting.is_empty() {
                found.push(finding(
                    "D1010",
                    migration,
                    Some(dropped.line),
                    format!(
                        "{what} fails on a database where {} hold rows ({}): RESTRICT is checked at once, deferred or not",
                        names(restricting.iter().map(|e| e.table.as_str())),
                        keys(&restricting)
                    ),
                    if recreated {
                        format!(
                            "rebuild the whole family (the children first into `_next` tables that reference the new `{}`); `d1ctl lint --fix {}` writes it",
                            dropped.table,
                            migration.path.display()
                        )
                    } else {
                        "delete the child rows first".to_owned()
                    },
                ));
            }
        }
        found
    }
}

/// "deletes every row of `posts` (…) and nulls `likes.user_id` (…)".
fn describe_losses(effects: &[&&Effect]) -> String {
    let deleted: Vec<String> = effects
        .iter()
        .filter(|e| e.action == Action::Cascade)
        .map(|e| format!("`{}` ({})", e.table, reason(e)))
        .collect();
    let changed: Vec<String> = effects
        .iter()
        .filter(|e| matches!(e.action, Action::SetNull | Action::SetDefault))
        .map(|e| {
            format!(
                "{} `{}.{}` ({})",
                if e.action == Action::SetNull {
                    "nulls"
                } else {
                    "resets to its default"
                },
                e.table,
                e.columns.join(", "),
                reason(e)
            )
        })
        .collect();
    let mut parts = Vec::new();
    if !deleted.is_empty() {
        parts.push(format!("deletes every row of {}", deleted.join(", ")));
    }
    parts.extend(changed);
    parts.join(" and ")
}

fn reason(effect: &Effect) -> String {
    let through = if effect.depth > 1 {
        format!(", through `{}`", effect.parent)
    } else {
        String::new()
    };
    format!(
        "`{}.{}` {}{through}",
        effect.table,
        effect.columns.join(", "),
        effect.action.sql()
    )
}

fn keys(effects: &[&&Effect]) -> String {
    effects
        .iter()
        .map(|e| {
            format!(
                "`{}.{}` references `{}`",
                e.table,
                e.columns.join(", "),
                e.parent
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn names<'a>(tables: impl Iterator<Item = &'a str>) -> String {
    let mut list: Vec<String> = Vec::new();
    for table in tables {
        let quoted = format!("`{table}`");
        if !list.contains(&quoted) {
            list.push(quoted);
        }
    }
    list.join(", ")
}
