//! The ledgers of an environment: wrangler's `d1_migrations`, drizzle's `__drizzle_migrations`
//! and d1ctl's own `_d1ctl_migrations`, read together and written in step.

use serde::Serialize;

use crate::backend::{Backend, BackendError, Rows, Statement, Value};
use crate::core::migrations::{Layout, Migration, MigrationSet};
use crate::core::schema::{self, Snapshot};
use crate::core::sql::quote_identifier;

/// d1ctl's own ledger: the basis of checksum verification.
pub const D1CTL_TABLE: &str = "_d1ctl_migrations";
/// drizzle's ledger (drizzle-orm's default `migrationsTable`).
pub const DRIZZLE_TABLE: &str = "__drizzle_migrations";
/// d1ctl's other bookkeeping tables, never part of the user's schema.
pub const INTERNAL_TABLES: [&str; 6] = [
    "_d1ctl_unit_state",
    crate::core::steps::STEPS_TABLE,
    "_d1ctl_sessions",
    "_d1ctl_lock",
    "_d1ctl_lease_guard",
    "_d1ctl_rollback_points",
];

/// Everything one read of an environment returns.
#[derive(Debug, Clone)]
pub struct EnvironmentRead {
    pub state: LedgerState,
    pub snapshot: Snapshot,
    pub lock: Option<crate::core::lock::Lease>,
}

/// Which ledger tables exist on an environment and what they hold.
#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    /// wrangler's ledger, `None` when the table does not exist.
    pub wrangler: Option<Vec<WranglerRow>>,
    pub d1ctl: Option<Vec<D1ctlRow>>,
    pub drizzle: Option<DrizzleLedger>,
}

#[derive(Debug, Clone)]
pub struct WranglerRow {
    pub name: String,
    pub applied_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct D1ctlRow {
    pub name: String,
    pub sha256: String,
    pub sha256_lf: String,
    pub applied_at: Option<String>,
    pub applied_by: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DrizzleLedger {
    pub rows: Vec<DrizzleRow>,
    /// drizzle v1 tables carry `name` and `applied_at` columns.
    pub has_name_column: bool,
}

#[derive(Debug, Clone)]
pub struct DrizzleRow {
    pub hash: String,
    pub created_at: Option<i64>,
    pub name: Option<String>,
}

/// The ledger tables of a project: wrangler's (configurable name), d1ctl's and drizzle's.
#[derive(Debug, Clone)]
pub struct Ledgers {
    pub wrangler_table: String,
    pub layout: Layout,
}

impl Ledgers {
    pub fn new(wrangler_table: &str, layout: Layout) -> Self {
        Self {
            wrangler_table: wrangler_table.to_owned(),
            layout,
        }
    }

    /// The three ledger tables.
    pub fn table_names(&self) -> [&str; 3] {
        [&self.wrangler_table, D1CTL_TABLE, DRIZZLE_TABLE]
    }

    /// Every table a schema comparison skips: the ledgers and d1ctl's other bookkeeping.
    pub fn ignored_tables(&self) -> Vec<&str> {
        let mut ignore: Vec<&str> = self.table_names().to_vec();
        ignore.extend(INTERNAL_TABLES);
        ignore
    }

    /// wrangler's `CREATE TABLE` text, byte for byte (workers-sdk `getCreateMigrationsTableQuery`).
    pub fn wrangler_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}(\n\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n\t\tname       TEXT UNIQUE,\n\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n);",
            quote_identifier(&self.wrangler_table)
        )
    }

    pub fn d1ctl_ddl() -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {D1CTL_TABLE} (\n  name TEXT PRIMARY KEY NOT NULL,\n  sha256 TEXT NOT NULL,\n  sha256_lf TEXT NOT NULL,\n  applied_at TEXT NOT NULL,\n  applied_by TEXT NOT NULL,\n  duration_ms INTEGER,\n  statements INTEGER NOT NULL,\n  d1ctl_version TEXT NOT NULL\n)"
        )
    }

    /// drizzle-orm 0.x's D1 migrator text, whitespace included.
    pub fn drizzle_ddl() -> String {
        format!(
            "\n\t\tCREATE TABLE IF NOT EXISTS {} (\n\t\t\tid SERIAL PRIMARY KEY,\n\t\t\thash text NOT NULL,\n\t\t\tcreated_at numeric\n\t\t)\n\t",
            quote_identifier(DRIZZLE_TABLE)
        )
    }

    /// Reads every ledger in one batch; a table that does not exist is left `None`.
    pub async fn read(&self, backend: &dyn Backend) -> Result<LedgerState, BackendError> {
        Ok(self.read_parts(backend, false, false).await?.state)
    }

    /// Reads every ledger, the schema snapshot and (with `lock`) the lock row in one batch: one
    /// request on a tracked database. What `drift` and promotion need of an environment.
    pub async fn read_with_schema(
        &self,
        backend: &dyn Backend,
        lock: bool,
    ) -> Result<EnvironmentRead, BackendError> {
        self.read_parts(backend, true, lock).await
    }

    /// The first batch assumes the tables exist (one request on a tracked database). When one is
    /// missing, the snapshot (or, without `schema`, just the table names) tells which exist,
    /// and a second batch reads those.
    async fn read_parts(
        &self,
        backend: &dyn Backend,
        schema: bool,
        lock: bool,
    ) -> Result<EnvironmentRead, BackendError> {
        let all = self.tables();
        let mut statements = Vec::new();
        if schema {
            statements.push(schema::snapshot_statement());
        }
        let offset = statements.len();
        statements.extend(self.read_statements(all));
        if lock {
            statements.push(crate::core::lock::read_statement());
        }
        match backend.read(&statements).await {
            Ok(rows) => Ok(EnvironmentRead {
                state: Self::parse(all, &rows[offset..offset + all.len()]),
                snapshot: if schema {
                    Snapshot::from_rows(&rows[0])
                } else {
                    Snapshot::default()
                },
                lock: if lock {
                    crate::core::lock::parse(&rows[offset + all.len()])
                } else {
                    None
                },
            }),
            Err(error) if error.is_missing_table().is_some() => {
                let listing = if schema {
                    schema::snapshot_statement()
                } else {
                    let mut names: Vec<Value> =
                        self.table_names().iter().map(|n| Value::from(*n)).collect();
                    names.push(Value::from(crate::core::lock::LOCK_TABLE));
                    Statement::with_params(
                        "SELECT type, name, tbl_name, NULL AS sql FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?, ?)",
                        names,
                    )
                };
                let listed = Snapshot::from_rows(&backend.read(&[listing]).await?[0]);
                let exists = |name: &str| {
                    listed
                        .objects
                        .iter()
                        .any(|o| o.kind == "table" && o.name == name)
                };
                let tables: Vec<LedgerTable> = all
                    .iter()
                    .copied()
                    .filter(|table| exists(self.name_of(*table)))
                    .collect();
                let mut statements = self.read_statements(&tables);
                let read_lock = lock && exists(crate::core::lock::LOCK_TABLE);
                if read_lock {
                    statements.push(crate::core::lock::read_statement());
                }
                let rows = if statements.is_empty() {
                    Vec::new()
                } else {
                    backend.read(&statements).await?
                };
                Ok(EnvironmentRead {
                    state: Self::parse(&tables, &rows[..tables.len().min(rows.len())]),
                    snapshot: if schema { listed } else { Snapshot::default() },
                    lock: if read_lock {
                        crate::core::lock::parse(&rows[tables.len()])
                    } else {
                        None
                    },
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Statements reading every ledger this project keeps, which must all exist (after a
    /// write created them); parsed back by [`Ledgers::parse_read`].
    pub fn read_statements_all(&self) -> Vec<Statement> {
        self.read_statements(self.tables())
    }

    /// Parses the rows of [`Ledgers::read_statements_all`].
    pub fn parse_read(&self, rows: &[Rows]) -> LedgerState {
        Self::parse(self.tables(), rows)
    }

    /// The ledger tables this project reads: drizzle's only in a drizzle layout.
    fn tables(&self) -> &'static [LedgerTable] {
        match self.layout {
            Layout::Drizzle => &[
                LedgerTable::Wrangler,
                LedgerTable::D1ctl,
                LedgerTable::Drizzle,
            ],
            Layout::Wrangler => &[LedgerTable::Wrangler, LedgerTable::D1ctl],
        }
    }

    fn name_of(&self, table: LedgerTable) -> &str {
        match table {
            LedgerTable::Wrangler => &self.wrangler_table,
            LedgerTable::D1ctl => D1CTL_TABLE,
            LedgerTable::Drizzle => DRIZZLE_TABLE,
        }
    }

    fn read_statements(&self, tables: &[LedgerTable]) -> Vec<Statement> {
        tables
            .iter()
            .map(|table| {
                Statement::new(match table {
                    LedgerTable::Wrangler => format!(
                        "SELECT name, applied_at FROM {} ORDER BY id",
                        quote_identifier(&self.wrangler_table)
                    ),
                    LedgerTable::D1ctl => format!(
                        "SELECT name, sha256, sha256_lf, applied_at, applied_by FROM {D1CTL_TABLE} ORDER BY applied_at, name"
                    ),
                    LedgerTable::Drizzle => format!("SELECT * FROM {}", quote_identifier(DRIZZLE_TABLE)),
                })
            })
            .collect()
    }

    fn parse(tables: &[LedgerTable], results: &[Rows]) -> LedgerState {
        let mut state = LedgerState::default();
        for (table, rows) in tables.iter().zip(results) {
            let text = |row: &[Value], column: &str| rows.get(row, column).to_text();
            match table {
                LedgerTable::Wrangler => {
                    state.wrangler = Some(
                        rows.rows
                            .iter()
                            // wrangler's `name` column is nullable; a NULL name names no migration.
                            .filter_map(|row| {
                                Some(WranglerRow {
                                    name: text(row, "name")?,
                                    applied_at: text(row, "applied_at"),
                                })
                            })
                            .collect(),
                    );
                }
                LedgerTable::D1ctl => {
                    state.d1ctl = Some(
                        rows.rows
                            .iter()
                            .map(|row| D1ctlRow {
                                name: text(row, "name").unwrap_or_default(),
                                sha256: text(row, "sha256").unwrap_or_default(),
                                sha256_lf: text(row, "sha256_lf").unwrap_or_default(),
                                applied_at: text(row, "applied_at"),
                                applied_by: text(row, "applied_by"),
                            })
                            .collect(),
                    );
                }
                LedgerTable::Drizzle => {
                    state.drizzle = Some(DrizzleLedger {
                        has_name_column: rows.columns.iter().any(|c| c == "name"),
                        rows: rows
                            .rows
                            .iter()
                            .map(|row| DrizzleRow {
                                hash: text(row, "hash").unwrap_or_default(),
                                created_at: rows.get(row, "created_at").as_i64(),
                                name: text(row, "name"),
                            })
                            .collect(),
                    });
                }
            }
        }
        state
    }

    /// Statements that create the ledger tables this project writes and that do not exist yet.
    pub fn create_statements(&self, state: &LedgerState) -> Vec<Statement> {
        let mut statements = Vec::new();
        if state.wrangler.is_none() {
            statements.push(Statement::new(self.wrangler_ddl()));
        }
        if state.d1ctl.is_none() {
            statements.push(Statement::new(Self::d1ctl_ddl()));
        }
        if self.layout == Layout::Drizzle && state.drizzle.is_none() {
            statements.push(Statement::new(Self::drizzle_ddl()));
        }
        statements
    }

    /// The ledger rows recording `migration` as applied, for every ledger this project keeps.
    /// `missing` limits them to the ledgers that lack the migration (used to bring ledgers in step).
    pub fn record_statements(
        &self,
        migration: &Migration,
        state: &LedgerState,
        applied_by: &str,
        missing: Option<&LedgerPresence>,
    ) -> Vec<Statement> {
        let mut statements = Vec::new();
        if missing.is_none_or(|m| !m.wrangler) {
            statements.push(Statement::with_params(
                format!(
                    "INSERT INTO {} (name) VALUES (?)",
                    quote_identifier(&self.wrangler_table)
                ),
                vec![Value::from(migration.name.as_str())],
            ));
        }
        if missing.is_none_or(|m| !m.d1ctl) {
            statements.push(Statement::with_params(
                format!(
                    "INSERT INTO {D1CTL_TABLE} (name, sha256, sha256_lf, applied_at, applied_by, duration_ms, statements, d1ctl_version) VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, NULL, ?, ?)"
                ),
                vec![
                    Value::from(migration.name.as_str()),
                    Value::from(migration.sha256.as_str()),
                    Value::from(migration.sha256_lf.as_str()),
                    Value::from(applied_by),
                    Value::Integer(i64::try_from(migration.statements.len()).unwrap_or(i64::MAX)),
                    Value::from(env!("CARGO_PKG_VERSION")),
                ],
            ));
        }
        if self.layout == Layout::Drizzle
            && missing.is_none_or(|m| !m.drizzle)
            && let Some(entry) = &migration.drizzle
        {
            let v1 = state.drizzle.as_ref().is_some_and(|d| d.has_name_column);
            statements.push(if v1 {
                Statement::with_params(
                    format!(
                        "INSERT INTO {} (\"hash\", \"created_at\", \"name\", \"applied_at\") VALUES(?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                        quote_identifier(DRIZZLE_TABLE)
                    ),
                    vec![
                        Value::from(migration.sha256.as_str()),
                        Value::Integer(entry.when),
                        Value::from(entry.tag.as_str()),
                    ],
                )
            } else {
                Statement::with_params(
                    format!(
                        "INSERT INTO {} (\"hash\", \"created_at\") VALUES(?, ?)",
                        quote_identifier(DRIZZLE_TABLE)
                    ),
                    vec![Value::from(migration.sha256.as_str()), Value::Integer(entry.when)],
                )
            });
        }
        statements
    }

    /// Sets d1ctl's `duration_ms` from the unit's start time (written first in the unit): the
    /// last statement of a migration's batch, so the database measures it inside the same unit.
    pub fn duration_statement(migration: &Migration) -> Statement {
        Statement::with_params(
            format!(
                "UPDATE {D1CTL_TABLE} SET duration_ms = CAST(round((julianday('now') - coalesce((SELECT value FROM {} WHERE key = 'started'), julianday(applied_at))) * 86400000) AS INTEGER) WHERE name = ?",
                crate::core::guard::UNIT_STATE_TABLE
            ),
            vec![Value::from(migration.name.as_str())],
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum LedgerTable {
    Wrangler,
    D1ctl,
    Drizzle,
}

/// The state of one migration on one environment. The JSON words are a stable contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    ChecksumMismatch,
    MissingLocally,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::ChecksumMismatch => "checksum_mismatch",
            State::MissingLocally => "missing_locally",
        }
    }
}

/// Which ledgers record a migration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerPresence {
    pub wrangler: bool,
    pub d1ctl: bool,
    pub drizzle: bool,
}

impl LedgerPresence {
    pub fn any(self) -> bool {
        self.wrangler || self.d1ctl || self.drizzle
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub name: String,
    pub state: State,
    /// For `checksum_mismatch`: the file differs from what ran only in line endings (or a BOM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_endings_only: Option<bool>,
    /// Whether a recorded checksum confirmed the file (false when only wrangler's ledger knows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
    pub ledgers: LedgerPresence,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_sha256: Option<String>,
}

impl MigrationStatus {
    pub fn is_applied(&self) -> bool {
        matches!(
            self.state,
            State::Applied | State::ChecksumMismatch | State::MissingLocally
        )
    }
}

/// Compares the folder with an environment's ledgers: folder migrations in folder order, then
/// what the ledgers hold that the folder lacks.
pub fn compare(set: &MigrationSet, state: &LedgerState, layout: Layout) -> Vec<MigrationStatus> {
    let drizzle_map = map_drizzle_rows(set, state);
    let mut statuses = Vec::with_capacity(set.migrations.len());
    for (index, migration) in set.migrations.iter().enumerate() {
        let wrangler_row = state
            .wrangler
            .iter()
            .flatten()
            .find(|row| row.name == migration.name);
        let d1ctl_row = state
            .d1ctl
            .iter()
            .flatten()
            .find(|row| row.name == migration.name);
        let drizzle_row = drizzle_map
            .iter()
            .find(|(_, mapped)| *mapped == Some(index))
            .map(|(row, _)| *row);
        let ledgers = LedgerPresence {
            wrangler: wrangler_row.is_some(),
            d1ctl: d1ctl_row.is_some(),
            drizzle: drizzle_row.is_some(),
        };
        let mut status = MigrationStatus {
            name: migration.name.clone(),
            state: State::Pending,
            line_endings_only: None,
            verified: None,
            applied_at: None,
            applied_by: None,
            ledgers,
            recorded_sha256: None,
            local_sha256: None,
        };
        if !ledgers.any() {
            statuses.push(status);
            continue;
        }
        status.applied_at = d1ctl_row
            .and_then(|row| row.applied_at.clone())
            .or_else(|| wrangler_row.and_then(|row| row.applied_at.clone()));
        status.applied_by = d1ctl_row.and_then(|row| row.applied_by.clone());
        // The strongest record wins: d1ctl's checksums, then drizzle's hash of the raw file.
        let recorded = d1ctl_row
            .map(|row| (row.sha256.clone(), Some(row.sha256_lf.clone())))
            .or_else(|| {
                drizzle_row
                    .filter(|row| !row.hash.is_empty())
                    .map(|row| (row.hash.clone(), None))
            });
        if let Some((sha256, sha256_lf)) = recorded {
            if sha256 == migration.sha256 {
                status.state = State::Applied;
                status.verified = Some(true);
            } else {
                // drizzle hashed the raw text it ran; if that equals the LF form of today's
                // file, only line endings changed.
                let line_endings_only =
                    sha256_lf.as_deref().unwrap_or(&sha256) == migration.sha256_lf;
                status.state = State::ChecksumMismatch;
                status.line_endings_only = Some(line_endings_only);
                status.recorded_sha256 = Some(sha256);
                status.local_sha256 = Some(migration.sha256.clone());
            }
        } else {
            status.state = State::Applied;
            status.verified = Some(false);
        }
        statuses.push(status);
    }

    // What the ledgers hold and the folder does not.
    let mut missing: Vec<MigrationStatus> = Vec::new();
    let mut push_missing = |name: String,
                            ledgers: LedgerPresence,
                            applied_at: Option<String>,
                            recorded: Option<String>| {
        if let Some(existing) = missing.iter_mut().find(|m| m.name == name) {
            existing.ledgers.wrangler |= ledgers.wrangler;
            existing.ledgers.d1ctl |= ledgers.d1ctl;
            existing.ledgers.drizzle |= ledgers.drizzle;
            return;
        }
        missing.push(MigrationStatus {
            name,
            state: State::MissingLocally,
            line_endings_only: None,
            verified: None,
            applied_at,
            applied_by: None,
            ledgers,
            recorded_sha256: recorded,
            local_sha256: None,
        });
    };
    for row in state.wrangler.iter().flatten() {
        if set.get(&row.name).is_none() {
            push_missing(
                row.name.clone(),
                LedgerPresence {
                    wrangler: true,
                    ..LedgerPresence::default()
                },
                row.applied_at.clone(),
                None,
            );
        }
    }
    for row in state.d1ctl.iter().flatten() {
        if set.get(&row.name).is_none() {
            push_missing(
                row.name.clone(),
                LedgerPresence {
                    d1ctl: true,
                    ..LedgerPresence::default()
                },
                row.applied_at.clone(),
                Some(row.sha256.clone()),
            );
        }
    }
    if layout == Layout::Drizzle {
        for (row, mapped) in &drizzle_map {
            if mapped.is_none() {
                let name = row.name.as_ref().map_or_else(
                    || {
                        format!(
                            "{DRIZZLE_TABLE}:{}@{}",
                            row.hash.get(..12).unwrap_or(&row.hash),
                            row.created_at
                                .map_or_else(|| "?".to_owned(), |c| c.to_string())
                        )
                    },
                    |name| format!("{name}.sql"),
                );
                push_missing(
                    name,
                    LedgerPresence {
                        drizzle: true,
                        ..LedgerPresence::default()
                    },
                    None,
                    Some(row.hash.clone()),
                );
            }
        }
    }
    statuses.extend(missing);
    statuses
}

/// Maps each drizzle ledger row to the folder migration it records: by v1 `name`, else by
/// `created_at` = the journal's `when` (the hash breaks ties), else by hash alone.
fn map_drizzle_rows<'a>(
    set: &MigrationSet,
    state: &'a LedgerState,
) -> Vec<(&'a DrizzleRow, Option<usize>)> {
    let Some(ledger) = &state.drizzle else {
        return Vec::new();
    };
    let mut taken = vec![false; set.migrations.len()];
    let mut mapped = Vec::with_capacity(ledger.rows.len());
    for row in &ledger.rows {
        let candidates: Vec<usize> = set
            .migrations
            .iter()
            .enumerate()
            .filter(|(index, migration)| {
                !taken[*index]
                    && migration
                        .drizzle
                        .as_ref()
                        .is_some_and(|entry| match &row.name {
                            Some(name) => *name == entry.tag,
                            None => Some(entry.when) == row.created_at,
                        })
            })
            .map(|(index, _)| index)
            .collect();
        let choice = match candidates.as_slice() {
            [only] => Some(*only),
            [] => set
                .migrations
                .iter()
                .enumerate()
                .find(|(index, m)| !taken[*index] && !row.hash.is_empty() && m.sha256 == row.hash)
                .map(|(index, _)| index),
            several => several
                .iter()
                .copied()
                .find(|index| set.migrations[*index].sha256 == row.hash)
                .or(several.first().copied()),
        };
        if let Some(index) = choice {
            taken[index] = true;
        }
        mapped.push((row, choice));
    }
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrangler_ddl_is_byte_exact() {
        let ledgers = Ledgers::new("d1_migrations", Layout::Wrangler);
        assert_eq!(
            ledgers.wrangler_ddl(),
            "CREATE TABLE IF NOT EXISTS \"d1_migrations\"(\n\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,\n\t\tname       TEXT UNIQUE,\n\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n);"
        );
        assert!(
            Ledgers::new("my\"table", Layout::Wrangler)
                .wrangler_ddl()
                .contains("\"my\"\"table\"(")
        );
    }
}
