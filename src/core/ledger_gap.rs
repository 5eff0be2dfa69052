//! What it means when one side's ledger lacks migrations the other side's records: either the
//! database already has what they make (it is untracked: schema there, not recorded) or the
//! schema cannot tell (they make no schema, or the schema does not match their replay).

use serde::Serialize;

use crate::backend::Statement;
use crate::core::migrations::MigrationSet;
use crate::core::schema::{self, Schema, SchemaError, Snapshot};

/// The migrations one side's ledger lacks, and what its schema says about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerGap {
    /// Every migration the other side records and this one does not, in folder order (those not
    /// in the folder last).
    pub migrations: Vec<String>,
    /// Those of them whose replay changes the schema.
    pub make_schema: Vec<String>,
    /// Those of them whose replay changes no schema (data only, or nothing at all).
    pub change_no_schema: Vec<String>,
    /// Those of them the folder does not have, so nothing is known of what they make.
    pub not_in_folder: Vec<String>,
    /// The side's schema already has what some of them make: the longest replay of the folder
    /// that covers every migration the side records and equals its schema goes through this
    /// migration, past at least one lacking migration that makes schema. `d1ctl baseline
    /// --through` it records them without running them.
    pub untracked_through: Option<String>,
    /// Lacking migrations of the folder after `untracked_through` (all of them, when not
    /// untracked): the side's schema does not show that they ran.
    pub not_in_schema: Vec<String>,
}

/// How the side whose ledger records `recorded` and whose schema is `actual` lacks `missing`.
///
/// The whole folder is replayed in memory, one migration after the other; a migration of
/// `missing` makes schema when the schema after it differs from the one before, and the side
/// is untracked through the last migration, at or after the last one it records, that makes
/// schema and leaves exactly `actual`. A replay that fails stops there: what comes after is
/// unclassified.
pub fn classify(
    set: &MigrationSet,
    recorded: &[String],
    missing: &[String],
    actual: &Schema,
    ignore: &[&str],
) -> Result<LedgerGap, SchemaError> {
    let in_folder: Vec<&str> = set
        .migrations
        .iter()
        .map(|m| m.name.as_str())
        .filter(|name| missing.iter().any(|m| m == name))
        .collect();
    let not_in_folder: Vec<String> = missing
        .iter()
        .filter(|name| set.get(name).is_none())
        .cloned()
        .collect();
    let last_recorded = set
        .migrations
        .iter()
        .rposition(|m| recorded.contains(&m.name));
    let mut make_schema = Vec::new();
    let mut change_no_schema = Vec::new();
    // The last step (index into the folder) whose replay equals `actual`, and whether a lacking
    // migration that makes schema comes at or before it.
    let mut matches_through: Option<usize> = None;

    // D1's rules judge the replay as they judge every replay of migration text.
    let (mut connection, rules) = crate::local::open_in_memory_with_rules()?;
    let mut before = Schema::build(&Snapshot::read(&connection)?, ignore)?;
    for (index, migration) in set.migrations.iter().enumerate() {
        let statements: Vec<Statement> = migration
            .statements
            .iter()
            .filter(|s| !crate::core::sql::is_transaction_control(&s.sql))
            .map(|s| Statement::new(s.sql.clone()))
            .collect();
        if crate::local::run_skipping_refused(&mut connection, &statements, &rules).is_err() {
            break;
        }
        let after = Schema::build(&Snapshot::read(&connection)?, ignore)?;
        if missing.contains(&migration.name) {
            if schema::diff(&before, &after).is_empty() {
                change_no_schema.push(migration.name.clone());
            } else {
                make_schema.push(migration.name.clone());
            }
        }
        // Through a migration that makes schema (or the last recorded one), never further
        // through one that makes none: its data may be missing, and baseline would skip it.
        let covers_recorded = last_recorded.is_none_or(|last| index >= last);
        let marks = last_recorded == Some(index) || !schema::diff(&before, &after).is_empty();
        if covers_recorded && marks && schema::diff(&after, actual).is_empty() {
            matches_through = Some(index);
        }
        before = after;
    }

    let untracked_through = matches_through.filter(|&through| {
        set.migrations[..=through]
            .iter()
            .any(|m| make_schema.contains(&m.name))
    });
    let not_in_schema = match untracked_through {
        Some(through) => set.migrations[through + 1..]
            .iter()
            .filter(|m| missing.contains(&m.name))
            .map(|m| m.name.clone())
            .collect(),
        None => in_folder.iter().map(|&name| name.to_owned()).collect(),
    };
    let mut migrations: Vec<String> = in_folder.iter().map(|&name| name.to_owned()).collect();
    migrations.extend(not_in_folder.iter().cloned());
    Ok(LedgerGap {
        migrations,
        make_schema,
        change_no_schema,
        not_in_folder,
        untracked_through: untracked_through.map(|through| set.migrations[through].name.clone()),
        not_in_schema,
    })
}

impl LedgerGap {
    pub fn is_untracked(&self) -> bool {
        self.untracked_through.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::migrations::{self, Layout};
    use rusqlite::Connection;

    /// A wrangler folder of `files` and the schema of `sql` run on a fresh database.
    fn folder_and_schema(files: &[(&str, &str)], sql: &str) -> (MigrationSet, Schema) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs_err::write(dir.path().join(name), text).unwrap();
        }
        let set = migrations::load(dir.path(), Some(Layout::Wrangler)).unwrap();
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(sql).unwrap();
        let schema = Schema::build(&Snapshot::read(&connection).unwrap(), &[]).unwrap();
        (set, schema)
    }

    const FILES: [(&str, &str); 4] = [
        (
            "0001_users.sql",
            "CREATE TABLE users (id INTEGER PRIMARY KEY);",
        ),
        ("0002_seed.sql", "INSERT INTO users VALUES (1);"),
        (
            "0003_posts.sql",
            "CREATE TABLE posts (id INTEGER PRIMARY KEY);",
        ),
        ("0004_more_seed.sql", "INSERT INTO users VALUES (2);"),
    ];

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn an_untracked_database_is_untracked_through_its_last_schema_making_migration() {
        let (set, actual) = folder_and_schema(
            &FILES,
            "CREATE TABLE users (id INTEGER PRIMARY KEY); CREATE TABLE posts (id INTEGER PRIMARY KEY);",
        );
        let missing = names(&[
            "0001_users.sql",
            "0002_seed.sql",
            "0003_posts.sql",
            "0004_more_seed.sql",
        ]);
        let gap = classify(&set, &[], &missing, &actual, &[]).unwrap();
        assert_eq!(
            gap.make_schema,
            names(&["0001_users.sql", "0003_posts.sql"])
        );
        assert_eq!(
            gap.change_no_schema,
            names(&["0002_seed.sql", "0004_more_seed.sql"])
        );
        // Not through 0004: nothing in the schema says its rows are there.
        assert_eq!(gap.untracked_through.as_deref(), Some("0003_posts.sql"));
        assert_eq!(gap.not_in_schema, names(&["0004_more_seed.sql"]));
    }

    #[test]
    fn a_database_behind_its_peer_is_not_untracked() {
        let (set, actual) =
            folder_and_schema(&FILES, "CREATE TABLE users (id INTEGER PRIMARY KEY);");
        let recorded = names(&["0001_users.sql", "0002_seed.sql"]);
        let missing = names(&["0003_posts.sql"]);
        let gap = classify(&set, &recorded, &missing, &actual, &[]).unwrap();
        assert_eq!(gap.make_schema, missing);
        assert_eq!(gap.untracked_through, None);
        assert_eq!(gap.not_in_schema, missing);
    }

    #[test]
    fn names_the_folder_does_not_have_are_set_apart() {
        let (set, actual) = folder_and_schema(&FILES, "");
        let missing = names(&["0009_gone.sql"]);
        let gap = classify(&set, &[], &missing, &actual, &[]).unwrap();
        assert_eq!(gap.not_in_folder, missing);
        assert_eq!(gap.migrations, missing);
        assert_eq!(gap.untracked_through, None);
    }
}
