//! One row at a time: the slots a row's values come from, and which combination of candidates
//! to try next when SQLite refuses one, read from what its message blames.

use std::collections::HashSet;

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::core::schema::words;
use crate::core::seed::tables::{self, TableShape};
use crate::core::seed::values::Candidate;

/// Attempts per row before a table is given up on. A row usually takes one; a column under a
/// CHECK a few more; a trigger that blames no column up to one per candidate.
pub(super) const MOST_ATTEMPTS_PER_ROW: usize = 128;

/// One or more columns that take their values together.
pub(super) struct Slot {
    pub(super) columns: Vec<usize>,
    pub(super) choices: Choices,
}

pub(super) enum Choices {
    /// A column of its own: candidate values.
    Column(Vec<Candidate>),
    /// A foreign key's columns: tuples the parent holds, rotated by row; NULL last where allowed.
    Parent {
        tuples: Vec<Vec<Value>>,
        nullable: bool,
    },
    /// A foreign key to its own table: NULL where allowed, the row itself (the referenced
    /// columns' values in the same INSERT), then an earlier row.
    Itself {
        nullable: bool,
        /// Where each referenced column is among the table's columns, when it is one.
        referenced: Vec<Option<usize>>,
        names: Vec<String>,
        earlier: Vec<Vec<Value>>,
    },
}

impl Slot {
    pub(super) fn default_choice(&self) -> Option<usize> {
        match &self.choices {
            Choices::Column(candidates) => candidates.iter().position(|c| *c == Candidate::Default),
            Choices::Parent { .. } | Choices::Itself { .. } => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        match &self.choices {
            Choices::Column(candidates) => candidates.len(),
            Choices::Parent { tuples, nullable } => tuples.len() + usize::from(*nullable),
            Choices::Itself {
                nullable, earlier, ..
            } => usize::from(*nullable) + 1 + earlier.len(),
        }
        .max(1)
    }
}

/// The values of one attempt, per column; `None` leaves a column to its default.
pub(super) fn row_values(
    slots: &[Slot],
    choice: &[usize],
    row: usize,
    column_count: usize,
) -> Vec<Option<Value>> {
    let mut values: Vec<Option<Value>> = vec![None; column_count];
    let nulls = |slot: &Slot| vec![Value::Null; slot.columns.len()];
    // Self-references copy other columns of the same row, so they come last.
    for (slot, &pick) in slots.iter().zip(choice) {
        let picked = match &slot.choices {
            Choices::Column(candidates) => {
                vec![candidates.get(pick).and_then(|c| c.value(row))]
            }
            Choices::Parent { tuples, .. } if pick < tuples.len() => tuples
                [(row + pick) % tuples.len()]
            .iter()
            .cloned()
            .map(Some)
            .collect(),
            Choices::Parent { .. } => nulls(slot).into_iter().map(Some).collect(),
            Choices::Itself { .. } => continue,
        };
        for (&column, value) in slot.columns.iter().zip(picked) {
            values[column] = value;
        }
    }
    for (slot, &pick) in slots.iter().zip(choice) {
        let Choices::Itself {
            nullable,
            referenced,
            earlier,
            ..
        } = &slot.choices
        else {
            continue;
        };
        // NULL first where allowed, then the row itself, then the rows before it.
        let itself_or_earlier = if *nullable {
            pick.checked_sub(1)
        } else {
            Some(pick)
        };
        let picked: Vec<Value> = match itself_or_earlier {
            None => nulls(slot),
            Some(0) => referenced
                .iter()
                .map(|c| c.and_then(|c| values[c].clone()).unwrap_or(Value::Null))
                .collect(),
            Some(_) if earlier.is_empty() => nulls(slot),
            Some(k) => earlier[(row + k - 1) % earlier.len()].clone(),
        };
        for (&column, value) in slot.columns.iter().zip(picked) {
            values[column] = Some(value);
        }
    }
    values
}

/// Where the next attempt for a row comes from.
pub(super) struct Search<'a> {
    /// Choices per slot.
    pub(super) sizes: Vec<usize>,
    /// Each slot's "leave it to its default" choice, if it has one.
    pub(super) defaults: &'a [Option<usize>],
    /// The combination the row started from.
    pub(super) start: &'a [usize],
    pub(super) tried: &'a HashSet<Vec<usize>>,
}

impl Search<'_> {
    /// The next combination after `choice` failed. Blamed slots advance like an odometer. When
    /// nothing is blamed (a trigger's `RAISE`, malformed JSON inside a trigger), one slot at a
    /// time changes from where the row started, defaults first: a default is what the schema's
    /// author thought valid. When those are used up, every slot advances like an odometer.
    /// `None` when nothing new is left within the bound.
    pub(super) fn next(&self, choice: &[usize], blamed: Option<&[usize]>) -> Option<Vec<usize>> {
        let mut next = choice.to_vec();
        if let Some(blamed) = blamed {
            self.advance(&mut next, blamed.iter().copied());
            if !self.tried.contains(&next) {
                return Some(next);
            }
        } else {
            let defaults = (0..self.sizes.len()).filter_map(|s| self.defaults[s].map(|d| (s, d)));
            let others = (0..self.sizes.len()).flat_map(|s| {
                (1..self.sizes[s]).map(move |step| (s, (self.start[s] + step) % self.sizes[s]))
            });
            for (slot, pick) in defaults.chain(others) {
                let mut neighbour = self.start.to_vec();
                neighbour[slot] = pick;
                if !self.tried.contains(&neighbour) {
                    return Some(neighbour);
                }
            }
        }
        for _ in 0..MOST_ATTEMPTS_PER_ROW * 4 {
            self.advance(&mut next, 0..self.sizes.len());
            if !self.tried.contains(&next) {
                return Some(next);
            }
        }
        None
    }

    fn advance(&self, choice: &mut [usize], slots: impl Iterator<Item = usize>) {
        for slot in slots {
            choice[slot] += 1;
            if choice[slot] < self.sizes[slot] {
                return;
            }
            choice[slot] = 0;
        }
    }
}

/// What a failed INSERT's message says about its columns.
pub(super) enum Blame {
    Columns(Vec<usize>),
    /// It names none (a trigger's `RAISE`, a type error).
    Unknown,
    /// A CHECK that mentions no column (`CHECK (0)`): no value helps.
    Hopeless,
}

/// The columns a failed INSERT's message blames.
pub(super) fn culprits(connection: &Connection, table: &TableShape, message: &str) -> Blame {
    let lower = message.to_ascii_lowercase();
    let columns = &table.columns;
    let found = if let Some(rest) = lower.strip_prefix("check constraint failed: ") {
        let tokens = words(rest);
        let named = table
            .checks
            .iter()
            .find(|check| check.name.as_ref().is_some_and(|n| tokens == [n.clone()]));
        let mut blamed = match named {
            Some(check) => check.columns.clone(),
            None => tables::mentioned(&tokens, columns),
        };
        if blamed.is_empty() {
            // SQLite quotes the expression as written, which may not tokenize (`[c"d]`).
            blamed = (0..columns.len())
                .filter(|&c| rest.contains(&columns[c].name.to_ascii_lowercase()))
                .collect();
        }
        if blamed.is_empty() {
            return Blame::Hopeless;
        }
        blamed
    } else if let Some(rest) = lower.split("constraint failed: index '").nth(1) {
        let index = rest.split('\'').next().unwrap_or_default();
        tables::index_columns(connection, index, columns)
    } else if lower.starts_with("foreign key constraint failed") {
        table
            .foreign_keys
            .iter()
            .flat_map(|key| key.columns.iter().copied())
            .collect()
    } else {
        // `NOT NULL constraint failed: t.c`, `UNIQUE constraint failed: t.a, t.b`,
        // `cannot store TEXT value in INTEGER column t.c`.
        let prefix = format!("{}.", table.name.to_ascii_lowercase());
        (0..columns.len())
            .filter(|&c| {
                names_column(
                    &lower,
                    &format!("{prefix}{}", columns[c].name.to_ascii_lowercase()),
                )
            })
            .collect()
    };
    if found.is_empty() {
        Blame::Unknown
    } else {
        Blame::Columns(found)
    }
}

/// Whether `message` holds `qualified` as a whole name (`t.a` is not in `t.ab`).
fn names_column(message: &str, qualified: &str) -> bool {
    message.match_indices(qualified).any(|(at, _)| {
        message[at + qualified.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}
