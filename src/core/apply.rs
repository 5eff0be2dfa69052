//! Applying pending migrations: each migration and all its ledger rows in one atomic batch.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::{Backend, BackendError, BackendKind, Statement};
use crate::core::guard::{self, Tripped};
use crate::core::ledger::{LedgerPresence, LedgerState, Ledgers, MigrationStatus};
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::schema::Snapshot;
use crate::core::sql::{self, D1_MAX_STATEMENT_BYTES};

/// Progress of an apply, implemented by the terminal layer.
pub trait ApplyReporter: Send + Sync {
    fn on_start(&self, _total: usize) {}
    fn on_migration_start(&self, _name: &str) {}
    fn on_migration_done(&self, _name: &str, _elapsed: Duration) {}
    fn on_finish(&self) {}
    /// Something the user must know that does not stop the apply.
    fn on_warning(&self, _message: &str) {}
}

/// A reporter that shows nothing.
pub struct NoProgress;

impl ApplyReporter for NoProgress {}

/// Something in a pending migration that stops it from being applied at all.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub migration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
    pub hint: String,
}

/// Checks the pending migrations before anything is sent: each needs a statement, none may
/// control transactions (d1ctl runs each migration in its own), and D1 caps statement size.
pub fn check_pending(pending: &[&Migration], kind: BackendKind) -> Vec<Problem> {
    let mut problems = Vec::new();
    for migration in pending {
        if migration.statements.is_empty() {
            problems.push(Problem {
                migration: migration.name.clone(),
                statement: None,
                line: None,
                message: "has no SQL statements".to_owned(),
                hint: "write the migration's SQL into it, or delete the file".to_owned(),
            });
        }
        for (index, statement) in migration.statements.iter().enumerate() {
            if sql::is_transaction_control(&statement.sql) {
                problems.push(Problem {
                    migration: migration.name.clone(),
                    statement: Some(index + 1),
                    line: Some(statement.line),
                    message: format!(
                        "`{}` controls a transaction; D1 refuses BEGIN/COMMIT/SAVEPOINT",
                        sql::leading_keywords(&statement.sql, 2).join(" ")
                    ),
                    hint: "remove it: d1ctl already applies every migration as one atomic unit"
                        .to_owned(),
                });
            }
            if kind == BackendKind::D1 && statement.sql.len() > D1_MAX_STATEMENT_BYTES {
                problems.push(Problem {
                    migration: migration.name.clone(),
                    statement: Some(index + 1),
                    line: Some(statement.line),
                    message: format!(
                        "is {} bytes; D1 refuses statements over {D1_MAX_STATEMENT_BYTES} bytes (SQLITE_TOOBIG)",
                        statement.sql.len()
                    ),
                    hint: "split the statement, e.g. one INSERT per batch of rows".to_owned(),
                });
            }
        }
    }
    problems
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub name: String,
    pub statements: usize,
    pub duration_ms: u64,
}

/// Where and why an apply stopped.
#[derive(Debug)]
pub struct ApplyFailure {
    pub migration: String,
    /// 1-based statement number in the migration, when the backend can tell.
    pub statement: Option<usize>,
    pub line: Option<usize>,
    /// `true` when a ledger write failed rather than the migration's own SQL.
    pub in_ledger: bool,
    pub error: BackendError,
    /// Pending migrations after the failing one, not attempted.
    pub not_attempted: Vec<String>,
    /// The response was lost and the ledger showed the migration did not commit.
    pub verified_not_committed: bool,
    /// The row guard aborted the unit: what it would have lost.
    pub row_guard: Option<Tripped>,
}

impl ApplyFailure {
    /// One line saying what failed and where.
    pub fn headline(&self) -> String {
        if let Some(tripped) = &self.row_guard {
            return format!(
                "the row guard stopped `{}`: {tripped}, which the migration does not name; its unit was rolled back",
                self.migration
            );
        }
        let where_ = match (self.statement, self.line) {
            (Some(statement), Some(line)) => format!(" at statement {statement} (line {line})"),
            _ if self.in_ledger => " while writing its ledger rows".to_owned(),
            _ => String::new(),
        };
        format!(
            "migration `{}` failed{where_}: {}",
            self.migration, self.error
        )
    }
}

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub applied: Vec<Applied>,
    pub failure: Option<ApplyFailure>,
    /// Migrations whose response was lost but which the ledger shows committed.
    pub recovered: Vec<String>,
}

/// Statements that ride along in the batches of an apply.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Prepended to every batch (e.g. the promotion lock's lease guard).
    pub every_batch: Vec<Statement>,
    /// Added to the first batch only (e.g. the rollback point's record).
    pub first_batch: Vec<Statement>,
    /// All pending migrations in one atomic unit instead of one unit each.
    pub all_in_one: bool,
}

/// Applies `pending` in order, each in one batch with its ledger rows (or all in one batch);
/// stops at the first failure. `snapshot` is the target's schema before, from which each
/// unit's row guard is planned.
///
/// A unit is laid out so that no prefix of it, were a batch ever not atomic, records a
/// migration without its effects: lease guard, rollback record, the guard's counts, the
/// migrations' statements, the guard's comparisons, and the ledger rows last.
#[expect(clippy::too_many_arguments, reason = "one apply, stated in full")]
pub async fn apply(
    backend: &dyn Backend,
    ledgers: &Ledgers,
    state: &LedgerState,
    snapshot: &Snapshot,
    pending: &[&Migration],
    applied_by: &str,
    extras: &Extras,
    reporter: &dyn ApplyReporter,
) -> ApplyOutcome {
    let mut outcome = ApplyOutcome::default();
    reporter.on_start(pending.len());
    let units: Vec<Vec<&Migration>> = if extras.all_in_one {
        vec![pending.to_vec()]
    } else {
        pending.iter().map(|m| vec![*m]).collect()
    };
    let guards = guard::plan(snapshot, &units, &ledgers.ignored_tables());
    // Ledger tables are created inside the first unit's batch, so a failure leaves no trace.
    let mut first_ledgers = ledgers.create_statements(state);
    let mut first = extras.first_batch.clone();
    let mut done = 0;
    for (unit, unit_guard) in units.iter().zip(&guards) {
        let Some(head) = unit.first() else {
            continue;
        };
        for migration in unit {
            reporter.on_migration_start(&migration.name);
        }
        if let Some(reason) = &unit_guard.unguarded {
            reporter.on_warning(&format!(
                "`{}` is applied without the row guard: {reason}",
                head.name
            ));
        }
        let started = Instant::now();
        let mut before: Vec<Statement> = extras.every_batch.clone();
        before.append(&mut first);
        let UnitBatch {
            statements,
            ranges,
            ledger_start,
        } = unit_batch(
            before,
            unit_guard,
            unit,
            std::mem::take(&mut first_ledgers),
            ledgers,
            state,
            applied_by,
        );
        let mut result = backend.batch(&statements).await.map(|_| ());
        let mut verified_not_committed = false;
        if let Err(BackendError::OutcomeUnknown { .. }) = &result {
            // Never re-send blindly: the ledger rows are in the same atomic unit as the
            // migrations, so the ledger says whether it committed.
            match ledgers.read(backend).await {
                Ok(now) if is_recorded(&now, head) => {
                    outcome
                        .recovered
                        .extend(unit.iter().map(|m| m.name.clone()));
                    result = Ok(());
                }
                Ok(_) => verified_not_committed = true,
                Err(_) => {}
            }
        }
        match result {
            Ok(()) => {
                let elapsed = started.elapsed();
                for migration in unit {
                    reporter.on_migration_done(&migration.name, elapsed);
                    outcome.applied.push(Applied {
                        name: migration.name.clone(),
                        statements: migration.statements.len(),
                        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                done += unit.len();
            }
            Err(error) => {
                let index = match &error {
                    BackendError::Statement { index, .. } => *index,
                    _ => None,
                };
                let located = index
                    .and_then(|i| {
                        ranges.iter().find_map(|(start, migration)| {
                            (i >= *start && i < start + migration.statements.len())
                                .then_some((*migration, i - start))
                        })
                    })
                    .or_else(|| match &error {
                        BackendError::Statement {
                            index: None,
                            message,
                            ..
                        } => locate_in_shadow(snapshot, unit, message),
                        _ => None,
                    });
                let row_guard = unit_guard.tripped(&error);
                let located = located.filter(|_| row_guard.is_none());
                let failed = located.map_or(*head, |(migration, _)| migration);
                let failed_at = pending
                    .iter()
                    .position(|m| m.name == failed.name)
                    .unwrap_or(done);
                outcome.failure = Some(ApplyFailure {
                    migration: failed.name.clone(),
                    statement: located.map(|(_, i)| i + 1),
                    line: located.map(|(migration, i)| migration.statements[i].line),
                    in_ledger: index.is_some_and(|i| i >= ledger_start) && row_guard.is_none(),
                    error,
                    not_attempted: pending[failed_at + 1..]
                        .iter()
                        .map(|m| m.name.clone())
                        .collect(),
                    verified_not_committed,
                    row_guard,
                });
                break;
            }
        }
    }
    reporter.on_finish();
    outcome
}

/// One unit's batch, and where its parts sit in it.
pub struct UnitBatch<'m> {
    pub statements: Vec<Statement>,
    /// Where each migration's own statements begin.
    pub ranges: Vec<(usize, &'m Migration)>,
    /// Where the ledger rows begin.
    pub ledger_start: usize,
}

/// Lays out one unit: `before` (lease guard, rollback record), the row guard's counts, the
/// migrations' statements, the guard's comparisons, `create_ledgers` and the ledger rows last,
/// so no prefix of it records a migration without its effects.
pub fn unit_batch<'m>(
    before: Vec<Statement>,
    unit_guard: &guard::UnitGuard,
    unit: &[&'m Migration],
    create_ledgers: Vec<Statement>,
    ledgers: &Ledgers,
    state: &LedgerState,
    applied_by: &str,
) -> UnitBatch<'m> {
    let mut statements = before;
    statements.extend(unit_guard.opening());
    let mut ranges = Vec::with_capacity(unit.len());
    for migration in unit {
        ranges.push((statements.len(), *migration));
        statements.extend(
            migration
                .statements
                .iter()
                .map(|s| Statement::new(s.sql.clone())),
        );
    }
    statements.extend(unit_guard.closing());
    let ledger_start = statements.len();
    statements.extend(create_ledgers);
    for migration in unit {
        statements.extend(ledgers.record_statements(migration, state, applied_by, None));
        statements.push(Ledgers::duration_statement(migration));
    }
    statements.push(guard::UnitGuard::cleanup());
    UnitBatch {
        statements,
        ranges,
        ledger_start,
    }
}

/// Which of `unit`'s statements failed, when the backend said only how (D1's code 7500 carries
/// SQLite's message and no batch index: `d1-platform.md` §3, §4.1). d1ctl sends nothing more to
/// D1 to find out (a bisection would be extra writes to the target); instead the unit's own
/// statements run one by one, under D1's rules, on an empty in-memory shadow of the target's
/// schema before the unit, and the first to fail is the one if it fails with the message D1
/// gave. A failure that depends on the target's rows (a UNIQUE violation, NOT NULL over existing
/// rows) does not happen on the empty shadow, and one that fails there differently proves
/// nothing: both stay unplaced rather than guessed.
fn locate_in_shadow<'m>(
    snapshot: &Snapshot,
    unit: &[&'m Migration],
    message: &str,
) -> Option<(&'m Migration, usize)> {
    let mut connection = crate::core::schema::shadow(snapshot).ok()?;
    let rules = crate::d1::authorizer::D1Rules::install(&mut connection).ok()?;
    let wanted = sqlite_words(message);
    for migration in unit {
        for (index, statement) in migration.statements.iter().enumerate() {
            let statement = Statement::new(statement.sql.clone());
            if let Err(error) = crate::local::run_judged(&connection, &statement, Some(&rules)) {
                let found = crate::local::judged_message(&error, Some(&rules));
                return (sqlite_words(&found) == wanted).then_some((*migration, index));
            }
        }
    }
    None
}

/// SQLite's message without the `: SQLITE_<CODE>` (and extended code) suffix D1 adds.
fn sqlite_words(message: &str) -> &str {
    message
        .split_once(": SQLITE_")
        .map_or(message, |(words, _)| words)
        .trim()
}

fn is_recorded(state: &LedgerState, migration: &Migration) -> bool {
    state
        .d1ctl
        .iter()
        .flatten()
        .any(|row| row.name == migration.name)
}

/// Rows that bring the ledgers in step: migrations applied per one ledger but absent from
/// another (e.g. applied by plain wrangler, so d1ctl's and drizzle's ledgers lack them).
pub fn sync_statements(
    set: &MigrationSet,
    statuses: &[MigrationStatus],
    ledgers: &Ledgers,
    state: &LedgerState,
    applied_by: &str,
) -> Vec<Statement> {
    let wants_drizzle = ledgers.layout == crate::core::migrations::Layout::Drizzle;
    let mut statements = Vec::new();
    for status in statuses
        .iter()
        .filter(|s| s.state == crate::core::ledger::State::Applied)
    {
        let Some(migration) = set.get(&status.name) else {
            continue;
        };
        let complete = LedgerPresence {
            wrangler: true,
            d1ctl: true,
            drizzle: wants_drizzle,
        };
        if status.ledgers.wrangler
            && status.ledgers.d1ctl
            && (status.ledgers.drizzle || !complete.drizzle)
        {
            continue;
        }
        statements.extend(ledgers.record_statements(
            migration,
            state,
            applied_by,
            Some(&LedgerPresence {
                drizzle: status.ledgers.drizzle || !wants_drizzle,
                ..status.ledgers
            }),
        ));
    }
    if !statements.is_empty() {
        let mut all = ledgers.create_statements(state);
        all.append(&mut statements);
        return all;
    }
    statements
}
