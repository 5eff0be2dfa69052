//! The express session: a whole write session in ONE request, for a fleet member whose state
//! is known ahead (it is the state of the members before it). What [`super::run`] does in k + 6
//! requests, one batch does here, in the same order:
//!
//! 1. the state guard: abort unless the member's fingerprint is the expected one (the plan
//!    was made for that state, so it is this member's plan too);
//! 2. take the lock (a free or expired lease) and the lease guard, which aborts when someone
//!    else holds it; record the session;
//! 3. the rollback point: the database's own clock, recorded before anything is written
//!    (Time Travel restores by timestamp, `d1-platform.md` §7: no bookmark request);
//! 4. the pending migrations as one unit, with the row guard and the ledger rows last;
//! 5. release the lock, then read the schema, the ledgers and the point back: the batch's
//!    own results verify it.
//!
//! Whether a `batch` is one transaction is not documented (§8). Laid out in this order, a
//! batch that stopped part way would leave at most a held lease (which expires), a session
//! and point on record, and migrations without their ledger rows, never ledger rows without
//! their migrations; the caller reads a member back after any failure.

use crate::backend::{Backend, BackendError, Rows, Statement};
use crate::core::apply;
use crate::core::fleet::fingerprint;
use crate::core::guard;
use crate::core::ledger::{LedgerState, Ledgers};
use crate::core::lock::{self, Holder};
use crate::core::migrations::Migration;
use crate::core::schema::{self, Snapshot};
use crate::core::write::session;

/// The state a member is expected to be in: what its plan was made from.
#[derive(Debug, Clone)]
pub struct Expected {
    pub fingerprint: String,
    pub state: LedgerState,
    pub snapshot: Snapshot,
}

/// What an express session writes, and as whom.
pub struct ExpressSession<'a> {
    pub ledgers: &'a Ledgers,
    pub expected: &'a Expected,
    pub pending: &'a [&'a Migration],
    pub holder: &'a Holder,
    pub actor: &'a str,
    pub command: &'a str,
}

/// The member after its express session, from the batch's own results.
#[derive(Debug, Clone)]
pub struct ExpressDone {
    pub snapshot: Snapshot,
    pub state: LedgerState,
    /// The rollback point recorded (the database's clock when the session began).
    pub point: Option<String>,
    /// Whether the row guard ran (a reason when it could not).
    pub unguarded: Option<String>,
}

/// The batch, and where its closing reads begin.
pub struct ExpressBatch {
    pub statements: Vec<Statement>,
    reads_at: usize,
    unguarded: Option<String>,
}

impl ExpressSession<'_> {
    /// Lays the session out; `None` when the expected state is too large to guard on.
    pub fn batch(&self) -> Option<ExpressBatch> {
        let names: Vec<&str> = self.pending.iter().map(|m| m.name.as_str()).collect();
        let mut before = lock::create_statements();
        before.push(fingerprint::guard_statement(
            &self.expected.fingerprint,
            &self.expected.state,
            self.ledgers,
        )?);
        before.extend(lock::take_statements(self.holder));
        before.extend(lock::guard_statements(self.holder));
        before.extend(session::start_statements(&self.holder.id, self.command));
        before.extend(session::clock_point_statements(
            &self.holder.id,
            self.actor,
            self.command,
            &names,
        ));
        let unit = self.pending.to_vec();
        let unit_guard = guard::plan(
            &self.expected.snapshot,
            std::slice::from_ref(&unit),
            &self.ledgers.ignored_tables(),
        )
        .into_iter()
        .next()?;
        let apply::UnitBatch { mut statements, .. } = apply::unit_batch(
            before,
            &unit_guard,
            &unit,
            self.ledgers.create_statements(&self.expected.state),
            self.ledgers,
            &self.expected.state,
            self.actor,
        );
        statements.push(lock::release_statement(self.holder));
        let reads_at = statements.len();
        statements.push(schema::snapshot_statement());
        statements.extend(self.ledgers.read_statements_all());
        statements.push(session::point_read_statement(&self.holder.id));
        Some(ExpressBatch {
            statements,
            reads_at,
            unguarded: unit_guard.unguarded.clone(),
        })
    }
}

impl ExpressBatch {
    /// Sends the batch: one request.
    pub async fn send(
        self,
        backend: &dyn Backend,
        ledgers: &Ledgers,
    ) -> Result<ExpressDone, BackendError> {
        let rows = backend.batch(&self.statements).await?;
        Ok(self.parse(&rows, ledgers))
    }

    fn parse(&self, rows: &[Rows], ledgers: &Ledgers) -> ExpressDone {
        let reads = &rows[self.reads_at.min(rows.len())..];
        let ledger_count = ledgers.read_statements_all().len();
        let snapshot = reads.first().map(Snapshot::from_rows).unwrap_or_default();
        let state = ledgers.parse_read(reads.get(1..=ledger_count).unwrap_or_default());
        let point = reads.get(1 + ledger_count).and_then(|point| {
            let row = point.rows.first()?;
            point.get(row, "point").to_text()
        });
        ExpressDone {
            snapshot,
            state,
            point,
            unguarded: self.unguarded.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::migrations::{Layout, MigrationSet};

    fn set(dir: &std::path::Path, files: &[(&str, &str)]) -> MigrationSet {
        for (name, sql) in files {
            fs_err::write(dir.join(name), sql).unwrap();
        }
        crate::core::migrations::load(dir, Some(Layout::Wrangler)).unwrap()
    }

    async fn expected_of(backend: &dyn Backend, ledgers: &Ledgers) -> Expected {
        let read = ledgers.read_with_schema(backend, false).await.unwrap();
        Expected {
            fingerprint: fingerprint::of(&read.snapshot, &read.state, ledgers),
            state: read.state,
            snapshot: read.snapshot,
        }
    }

    async fn write(
        backend: &dyn Backend,
        ledgers: &Ledgers,
        holder: &Holder,
        expected: &Expected,
        pending: &[&Migration],
    ) -> Result<ExpressDone, BackendError> {
        let session = ExpressSession {
            ledgers,
            expected,
            pending,
            holder,
            actor: "test@host",
            command: "promote --to tenants",
        };
        session.batch().unwrap().send(backend, ledgers).await
    }

    /// One batch takes the member from the expected state to the new one, with its rows; the
    /// same batch again (the member moved on) aborts and changes nothing.
    #[tokio::test]
    async fn one_batch_writes_the_session_and_refuses_a_member_in_another_state() {
        let dir = tempfile::tempdir().unwrap();
        let migrations = dir.path().join("migrations");
        fs_err::create_dir(&migrations).unwrap();
        let set = set(
            &migrations,
            &[
                (
                    "0001_users.sql",
                    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);",
                ),
                ("0002_email.sql", "ALTER TABLE users ADD COLUMN email TEXT;"),
                ("0003_index.sql", "CREATE INDEX users_name ON users (name);"),
            ],
        );
        let backend = crate::local::SqliteBackend::new(&dir.path().join("member.sqlite"), true);
        let ledgers = Ledgers::new("d1_migrations", Layout::Wrangler);
        let holder = Holder::for_this_process("promote --to tenants");
        let empty = expected_of(&backend, &ledgers).await;
        write(&backend, &ledgers, &holder, &empty, &[&set.migrations[0]])
            .await
            .unwrap();
        backend
            .batch(&[Statement::new(
                "INSERT INTO users (name) VALUES ('ada'), ('grace')",
            )])
            .await
            .unwrap();
        let before = expected_of(&backend, &ledgers).await;
        let done = write(
            &backend,
            &ledgers,
            &holder,
            &before,
            &set.migrations[1..].iter().collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        let recorded: Vec<&str> = done
            .state
            .d1ctl
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            recorded,
            ["0001_users.sql", "0002_email.sql", "0003_index.sql"]
        );
        assert!(done.point.as_deref().is_some_and(|p| p.contains('T')));
        assert!(done.snapshot.objects.iter().any(|o| o.name == "users_name"));
        let rows = backend
            .read(&[Statement::new(
                "SELECT count(*) FROM users WHERE email IS NULL",
            )])
            .await
            .unwrap();
        assert_eq!(rows[0].rows[0][0].as_i64(), Some(2), "the rows stay");
        assert!(
            lock::status(&backend).await.unwrap().is_none(),
            "the lock is released in the same batch"
        );

        // The member is no longer empty: the first session's batch must not run again.
        let again = write(&backend, &ledgers, &holder, &empty, &[&set.migrations[0]]).await;
        assert!(
            matches!(again, Err(BackendError::Statement { .. })),
            "{again:?}"
        );
        let after = ledgers.read(&backend).await.unwrap();
        assert_eq!(after.d1ctl.unwrap().len(), 3, "nothing applied twice");
    }
}
