//! Rules that read each statement's words: PRAGMAs, transactions, ATTACH, `_cf_` names, size.

use super::{Finding, finding};
use crate::core::migrations::Migration;
use crate::core::schema;
use crate::core::sql::{self, D1_MAX_STATEMENT_BYTES};
use crate::d1::pragma::allowed_pragma;

/// What each statement's words say.
pub(super) fn statement_findings(migration: &Migration) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut defer_open: Option<usize> = None;
    for statement in &migration.statements {
        let words = schema::words(&statement.sql);
        let line = Some(statement.line);
        let first = words.first().map_or("", String::as_str);
        if sql::is_transaction_control(&statement.sql) {
            found.push(finding(
                "D1004",
                migration,
                line,
                format!("`{}` controls a transaction: D1 refuses it remotely, wrangler strips it locally", first.to_uppercase()),
                "remove it: every migration already runs as one atomic unit".to_owned(),
            ));
        }
        if matches!(first, "attach" | "detach") {
            found.push(finding(
                "D1005",
                migration,
                line,
                format!("`{}` is not available on D1", first.to_uppercase()),
                "keep each migration within its own database".to_owned(),
            ));
        }
        if statement.sql.len() > D1_MAX_STATEMENT_BYTES {
            found.push(finding(
                "D1006",
                migration,
                line,
                format!("the statement is {} bytes; D1 refuses statements over {D1_MAX_STATEMENT_BYTES} bytes (SQLITE_TOOBIG)", statement.sql.len()),
                "split it, e.g. one INSERT per few hundred rows".to_owned(),
            ));
        }
        if let Some(name) = words
            .iter()
            .find(|w| w.trim_matches('"').starts_with("_cf_"))
        {
            found.push(finding(
                "D1007",
                migration,
                line,
                format!("`{name}` starts with `_cf_`, which D1 reserves (SQLITE_AUTH)"),
                "rename the object".to_owned(),
            ));
        }
        if first == "pragma" {
            let name = words.get(1).map_or("", String::as_str);
            let value = words
                .iter()
                .skip(2)
                .find(|w| !matches!(w.as_str(), "=" | "(" | ")" | ";"))
                .map(String::as_str);
            match name {
                "foreign_keys" => found.push(finding(
                    "D1002",
                    migration,
                    line,
                    "`PRAGMA foreign_keys` has no effect on D1: foreign keys are always enforced inside a migration".to_owned(),
                    "remove it; if it guards a table rebuild, see D1001: `PRAGMA defer_foreign_keys = on` … `off` keeps children without an ON DELETE action safe, never CASCADE or SET NULL ones".to_owned(),
                )),
                // Without a value the PRAGMA only reads the setting.
                "defer_foreign_keys" if value.is_some() => {
                    let on = value.is_some_and(|v| matches!(v.trim_matches('\''), "on" | "true" | "yes" | "1"));
                    if on {
                        defer_open = Some(statement.line);
                    } else if defer_open.take().is_none() {
                        found.push(finding(
                            "D1003",
                            migration,
                            line,
                            "`PRAGMA defer_foreign_keys = off` without an earlier `= on`".to_owned(),
                            "pair it: `on` as the first statement, `off` as the last".to_owned(),
                        ));
                    }
                }
                other if allowed_pragma(other).is_none() => found.push(finding(
                    "D1008",
                    migration,
                    line,
                    format!("`PRAGMA {other}` is refused by D1 (not authorized: SQLITE_AUTH)"),
                    "remove it; D1 allows only the PRAGMAs of its allow-list".to_owned(),
                )),
                _ => {}
            }
        }
    }
    if let Some(line) = defer_open {
        found.push(finding(
            "D1003",
            migration,
            Some(line),
            "`PRAGMA defer_foreign_keys = on` is never switched `off` in this migration".to_owned(),
            "end the migration with `PRAGMA defer_foreign_keys = off;`".to_owned(),
        ));
    }
    found
}
