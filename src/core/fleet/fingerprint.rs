//! A member's state as one text: its schema (every object's stored SQL) and what its ledgers
//! record. Two members with the same fingerprint are in the same state, so one plan fits both.
//!
//! The same text is computed two ways that must agree byte for byte: here, from a read of the
//! member, and by the database itself in [`guard_statement`], which aborts a batch when the
//! member is not in the state its plan was made for. A disagreement can only abort a batch
//! (the member then takes the full path), never let one through.

use crate::backend::{Statement, Value};
use crate::core::ledger::{D1CTL_TABLE, DRIZZLE_TABLE, LedgerState, Ledgers};
use crate::core::lock::LEASE_GUARD_TABLE;
use crate::core::schema::Snapshot;

/// Prefixes of names that are not the user's schema (compared as SQL's `LIKE` does: ASCII
/// case-insensitively).
const INTERNAL_PREFIXES: [&str; 3] = ["sqlite_", "_cf_", "_d1ctl_"];

const SEPARATOR: &str = "\n--\n";

/// The largest fingerprint sent as a guard's parameter. D1 caps a statement at 100,000 bytes;
/// whether bound parameters count towards it is not documented, so a guard stays under it
/// either way (and a schema bigger than that takes the full path on every member).
pub const MAX_GUARD_BYTES: usize = 90_000;

fn is_internal(name: &str, ledgers: &Ledgers) -> bool {
    let lower = name.to_ascii_lowercase();
    INTERNAL_PREFIXES.iter().any(|p| lower.starts_with(p)) || ledgers.table_names().contains(&name)
}

/// The fingerprint of a member as read (its snapshot and ledgers).
pub fn of(snapshot: &Snapshot, state: &LedgerState, ledgers: &Ledgers) -> String {
    let mut objects: Vec<(&str, &str, &str)> = snapshot
        .objects
        .iter()
        .filter(|o| !is_internal(&o.name, ledgers))
        .map(|o| {
            (
                o.kind.as_str(),
                o.name.as_str(),
                o.sql.as_deref().unwrap_or(""),
            )
        })
        .collect();
    objects.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut text = objects
        .iter()
        .map(|(kind, name, sql)| format!("{kind} {name} {sql}"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut part = |rows: Option<Vec<String>>| {
        text.push_str(SEPARATOR);
        match rows {
            Some(mut rows) => {
                rows.sort();
                text.push_str(&rows.join("\n"));
            }
            None => text.push_str("absent"),
        }
    };
    part(
        state
            .wrangler
            .as_ref()
            .map(|rows| rows.iter().map(|r| r.name.clone()).collect()),
    );
    part(state.d1ctl.as_ref().map(|rows| {
        rows.iter()
            .map(|r| format!("{} {}", r.name, r.sha256))
            .collect()
    }));
    if ledgers.layout == crate::core::migrations::Layout::Drizzle {
        part(
            state
                .drizzle
                .as_ref()
                .map(|d| d.rows.iter().map(|r| r.hash.clone()).collect()),
        );
    }
    text
}

/// A fingerprint's two halves: the schema, and what the ledgers record.
pub fn halves(fingerprint: &str) -> (&str, &str) {
    fingerprint
        .split_once(SEPARATOR)
        .unwrap_or((fingerprint, ""))
}

/// The SQL expression computing [`of`] on the database, for a member whose ledgers are
/// present or absent as in `state` (a ledger read from a table that is absent would fail the
/// statement, which aborts the batch: the member is not in that state anyway).
fn expression(state: &LedgerState, ledgers: &Ledgers) -> (String, Vec<Value>) {
    let mut params: Vec<Value> = Vec::new();
    let mut excluded = String::new();
    for prefix in INTERNAL_PREFIXES {
        excluded.push_str(&format!(
            " AND name NOT LIKE '{}%' ESCAPE '\\'",
            prefix.replace('_', "\\_")
        ));
    }
    for table in ledgers.table_names() {
        excluded.push_str(" AND name IS NOT ?");
        params.push(Value::from(table));
    }
    let mut parts = vec![format!(
        "(SELECT ifnull(group_concat(entry, char(10)), '') FROM (SELECT type || ' ' || name || ' ' || ifnull(sql, '') AS entry FROM sqlite_master WHERE 1{excluded} ORDER BY type, name))"
    )];
    let mut rows = |present: bool, table: &str, entry: &str| {
        if present {
            parts.push(format!(
                "(SELECT ifnull(group_concat(entry, char(10)), '') FROM (SELECT {entry} AS entry FROM {} ORDER BY entry))",
                crate::core::sql::quote_identifier(table)
            ));
        } else {
            params.push(Value::from(table));
            parts.push(
                "(CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?) THEN 'present' ELSE 'absent' END)".to_owned(),
            );
        }
    };
    rows(state.wrangler.is_some(), ledgers.table_names()[0], "name");
    rows(state.d1ctl.is_some(), D1CTL_TABLE, "name || ' ' || sha256");
    if ledgers.layout == crate::core::migrations::Layout::Drizzle {
        rows(state.drizzle.is_some(), DRIZZLE_TABLE, "ifnull(hash, '')");
    }
    let separator = SEPARATOR.replace('\n', "' || char(10) || '");
    (parts.join(&format!(" || '{separator}' || ")), params)
}

/// A statement that aborts its batch (the lease guard table's CHECK) unless the database's
/// fingerprint is `expected`; `state` says which ledger tables the expected state has. `None`
/// when the fingerprint is too long to send as a guard.
pub fn guard_statement(
    expected: &str,
    state: &LedgerState,
    ledgers: &Ledgers,
) -> Option<Statement> {
    if expected.len() > MAX_GUARD_BYTES {
        return None;
    }
    let (expression, mut params) = expression(state, ledgers);
    params.push(Value::from(expected));
    Some(Statement::with_params(
        format!(
            "INSERT INTO {LEASE_GUARD_TABLE} (lease_lost) SELECT 1 WHERE ({expression}) IS NOT ?"
        ),
        params,
    ))
}

/// A statement that reads the database's fingerprint (tests compare it with [`of`]).
pub fn read_statement(state: &LedgerState, ledgers: &Ledgers) -> Statement {
    let (expression, params) = expression(state, ledgers);
    Statement::with_params(format!("SELECT {expression} AS fingerprint"), params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::core::migrations::Layout;

    async fn computed_both_ways(layout: Layout, setup: &str) -> (String, String) {
        let backend = crate::local::SqliteBackend::new(std::path::Path::new(":memory:"), false);
        let statements: Vec<Statement> = setup
            .split(";\n")
            .filter(|s| !s.trim().is_empty())
            .map(Statement::new)
            .collect();
        backend.batch(&statements).await.unwrap();
        let ledgers = Ledgers::new("d1_migrations", layout);
        let read = ledgers.read_with_schema(&backend, false).await.unwrap();
        let here = of(&read.snapshot, &read.state, &ledgers);
        let rows = backend
            .read(&[read_statement(&read.state, &ledgers)])
            .await
            .unwrap();
        let there = rows[0].rows[0][0].to_text().unwrap();
        (here, there)
    }

    #[tokio::test]
    async fn the_database_computes_the_same_text() {
        let setup = format!(
            "{};\n{};\nINSERT INTO d1_migrations (name) VALUES ('0002_b.sql');\nINSERT INTO d1_migrations (name) VALUES ('0001_a.sql');\nINSERT INTO _d1ctl_migrations VALUES ('0001_a.sql', 'aa', 'aa', 'now', 'me', 1, 1, 'v');\nCREATE TABLE users (id INTEGER PRIMARY KEY, \"e-mail\" TEXT UNIQUE);\nCREATE INDEX users_email ON users (\"e-mail\");\nCREATE VIEW v AS SELECT 1;\nCREATE TABLE _d1ctl_lock (id INTEGER);\nCREATE TABLE _cf_KV (k TEXT)",
            Ledgers::new("d1_migrations", Layout::Wrangler)
                .wrangler_ddl()
                .trim_end_matches(';'),
            Ledgers::d1ctl_ddl()
        );
        let (here, there) = computed_both_ways(Layout::Wrangler, &setup).await;
        assert_eq!(here, there);
        assert!(here.contains("table users CREATE TABLE users"), "{here}");
        assert!(
            !here.contains("_d1ctl_lock") && !here.contains("_cf_KV"),
            "{here}"
        );
        assert!(here.ends_with("0001_a.sql aa"), "{here}");
    }

    #[tokio::test]
    async fn absent_ledgers_and_an_empty_database_agree() {
        let (here, there) = computed_both_ways(Layout::Drizzle, "SELECT 1").await;
        assert_eq!(here, there);
        assert_eq!(here, "\n--\nabsent\n--\nabsent\n--\nabsent");
    }
}
