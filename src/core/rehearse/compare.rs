//! What a rehearsal compares: counts per table before and after, and foreign key violations.

use std::collections::BTreeMap;

use crate::core::rehearse::{ColumnDelta, ForeignKeys, TableDelta, Violation};
use crate::core::rows::{Counts, Loss};

pub(super) fn foreign_keys(
    before: &BTreeMap<(String, String), i64>,
    after: &BTreeMap<(String, String), i64>,
) -> ForeignKeys {
    ForeignKeys {
        before: before.values().sum(),
        after: after.values().sum(),
        new_violations: after
            .iter()
            .filter(|(key, rows)| **rows > before.get(*key).copied().unwrap_or(0))
            .map(|((table, parent), rows)| Violation {
                table: table.clone(),
                parent: parent.clone(),
                rows: *rows,
            })
            .collect(),
    }
}

pub(super) fn table_deltas(before: &Counts, after: &Counts, losses: &[Loss]) -> Vec<TableDelta> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|table| TableDelta {
            table: table.clone(),
            rows_before: before.get(table).map(|c| c.rows),
            rows_after: after.get(table).map(|c| c.rows),
            lost_values: losses
                .iter()
                .filter(|loss| &loss.table == table)
                .filter_map(|loss| {
                    Some(ColumnDelta {
                        column: loss.column.clone()?,
                        before: loss.before,
                        after: loss.after,
                    })
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::core::rows;

    #[test]
    fn only_violations_beyond_those_already_in_the_data_count() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "PRAGMA foreign_keys = OFF;
                 CREATE TABLE p (id INTEGER PRIMARY KEY);
                 CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));
                 CREATE TABLE d (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));
                 INSERT INTO c VALUES (1, 7);",
            )
            .unwrap();
        let before = rows::foreign_key_violations(&connection).unwrap();
        connection
            .execute_batch("INSERT INTO d VALUES (1, 8), (2, 9);")
            .unwrap();
        let after = rows::foreign_key_violations(&connection).unwrap();
        let keys = foreign_keys(&before, &after);
        assert_eq!((keys.before, keys.after), (1, 3));
        assert_eq!(
            keys.new_violations,
            [Violation {
                table: "d".to_owned(),
                parent: "p".to_owned(),
                rows: 2
            }]
        );
    }

    #[test]
    fn deltas_name_created_and_dropped_tables_and_lost_values() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE kept (id INTEGER PRIMARY KEY, note TEXT);
                 CREATE TABLE gone (id INTEGER PRIMARY KEY);
                 INSERT INTO kept VALUES (1, 'a'), (2, 'b');",
            )
            .unwrap();
        let before = crate::core::rows::count_all(&connection, &[]).unwrap();
        connection
            .execute_batch(
                "UPDATE kept SET note = NULL WHERE id = 2; DROP TABLE gone; CREATE TABLE fresh (x);",
            )
            .unwrap();
        let after = crate::core::rows::count_all(&connection, &[]).unwrap();
        let losses = crate::core::rows::losses(&before, &after);
        let deltas = table_deltas(&before, &after, &losses);
        let shown: Vec<(&str, Option<i64>, Option<i64>, usize)> = deltas
            .iter()
            .map(|d| {
                (
                    d.table.as_str(),
                    d.rows_before,
                    d.rows_after,
                    d.lost_values.len(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("fresh", None, Some(0), 0),
                ("gone", Some(0), None, 0),
                ("kept", Some(2), Some(2), 1)
            ]
        );
        assert_eq!(
            deltas[2].lost_values,
            [ColumnDelta {
                column: "note".to_owned(),
                before: 2,
                after: 1
            }]
        );
    }
}
