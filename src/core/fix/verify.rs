//! The check every rewrite passes before it is shown: on an empty copy of the schema before the
//! migration, with foreign keys on as on D1, it runs, leaves no key dangling, and ends in the
//! schema the migration as written ends in.

use rusqlite::Connection;

use super::FixError;
use crate::backend::Statement;
use crate::core::migrations::Layout;
use crate::core::schema::{self, Schema, SchemaError, Snapshot};
use crate::core::sql;
use crate::d1::authorizer::D1Rules;

/// The statements of `text` as d1ctl applies them.
pub(super) fn applied_statements(text: &str, layout: Layout) -> Vec<Statement> {
    // Leniently: a rewrite of a file that loaded closes everything it opens.
    let split = sql::locate_statements(text, layout == Layout::Drizzle);
    split
        .statements
        .iter()
        .map(|located| &text[located.start..located.end])
        .filter(|statement| !sql::is_transaction_control(statement))
        .map(Statement::new)
        .collect()
}

/// An in-memory database with `before`'s schema, foreign keys on as on D1, and D1's rules
/// installed to judge the migration's statements (not the schema rebuilt here, which is d1ctl's).
pub(super) fn shadow(before: &Snapshot) -> Result<(Connection, D1Rules), FixError> {
    let (connection, rules) = crate::local::open_in_memory_with_rules()?;
    connection.execute_batch("BEGIN")?;
    for object in &before.objects {
        let Some(sql) = &object.sql else { continue };
        let name = object.name.to_ascii_lowercase();
        if name.starts_with("sqlite_") || name.starts_with("_cf_") {
            continue;
        }
        // A virtual table created its shadow tables already.
        let exists: bool = connection.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1 COLLATE NOCASE",
            [&object.name],
            |row| row.get(0),
        )?;
        if exists {
            continue;
        }
        connection
            .execute_batch(sql)
            .map_err(|error| SchemaError::Rebuild {
                name: object.name.clone(),
                message: error.to_string(),
            })?;
    }
    connection.execute_batch("COMMIT")?;
    Ok((connection, rules))
}

/// The rewrite runs where the original runs, ends in the schema the original ends in, and
/// leaves no foreign key dangling.
pub(super) fn verify(
    before: &Snapshot,
    original: &str,
    fixed: &str,
    layout: Layout,
) -> Result<(), FixError> {
    let (mut intended, rules) = shadow(before)?;
    crate::local::run_batch(
        &mut intended,
        &applied_statements(original, layout),
        Some(&rules),
    )
    .map_err(|error| FixError::OriginalFails {
        message: error.to_string(),
    })?;
    let (mut rewritten, rules) = shadow(before)?;
    crate::local::run_batch(
        &mut rewritten,
        &applied_statements(fixed, layout),
        Some(&rules),
    )
    .map_err(|error| FixError::Verification {
        message: format!("it fails: {error}"),
    })?;
    let dangling: i64 =
        rewritten.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })?;
    let (want, got) = (
        Schema::build(&Snapshot::read(&intended)?, &[])?,
        Schema::build(&Snapshot::read(&rewritten)?, &[])?,
    );
    if dangling > 0 || want != got {
        let changes: Vec<String> = schema::diff(&want, &got)
            .into_iter()
            .map(|c| c.summary)
            .collect();
        return Err(FixError::Verification {
            message: format!(
                "{dangling} dangling foreign keys; schema differences: {}",
                changes.join("; ")
            ),
        });
    }
    Ok(())
}
