//! The job of `baseline`: record migrations as applied on a database whose schema already
//! is what they make (a database created before it was tracked).

use async_trait::async_trait;
use serde::Serialize;

use crate::backend::{Backend, BackendError, Statement};
use crate::core::apply::ApplyReporter;
use crate::core::ledger::{self, LedgerPresence, LedgerState, Ledgers, State};
use crate::core::lock::Holder;
use crate::core::migrations::{Layout, Migration, MigrationSet};
use crate::core::schema::{self, Schema};
use crate::core::write::{Job, Readiness, Session, UnitFailure, Written};

pub struct BaselineJob<'a> {
    pub set: &'a MigrationSet,
    pub ledgers: &'a Ledgers,
    /// The migrations the database is said to match, in folder order.
    pub chosen: Vec<&'a Migration>,
    pub env: &'a str,
    /// Recorded as `applied_by`.
    pub by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselinePlan {
    /// How the database differs from the replay of the chosen migrations; empty when it matches.
    pub differences: Vec<String>,
    /// Chosen migrations recorded with another checksum.
    pub mismatched: Vec<String>,
    /// Migrations some ledger lacks: what will be recorded.
    pub record: Vec<String>,
    #[serde(skip)]
    state: LedgerState,
    #[serde(skip)]
    statuses: Vec<ledger::MigrationStatus>,
}

#[async_trait]
impl Job for BaselineJob<'_> {
    type Plan = BaselinePlan;
    type Done = Vec<String>;
    type Verified = Vec<String>;
    type After = Vec<String>;

    async fn plan(
        &self,
        backend: &dyn Backend,
        _holder: Option<&Holder>,
    ) -> Result<BaselinePlan, BackendError> {
        let read = self.ledgers.read_with_schema(backend, false).await?;
        let ignore = self.ledgers.ignored_tables();
        let differences = match schema::replay(&self.chosen).and_then(|replay| {
            Ok((
                Schema::build(&replay, &ignore)?,
                Schema::build(&read.snapshot, &ignore)?,
            ))
        }) {
            Ok((expected, actual)) => schema::diff(&expected, &actual)
                .into_iter()
                .map(|c| c.summary)
                .collect(),
            Err(error) => vec![format!("could not compare: {error}")],
        };
        let statuses = ledger::compare(self.set, &read.state, self.set.layout);
        let wants_drizzle = self.ledgers.layout == Layout::Drizzle;
        let mut mismatched = Vec::new();
        let mut record = Vec::new();
        for migration in &self.chosen {
            let status = statuses.iter().find(|s| s.name == migration.name);
            if status.is_some_and(|s| s.state == State::ChecksumMismatch) {
                mismatched.push(migration.name.clone());
                continue;
            }
            let present = status.map_or_else(LedgerPresence::default, |s| s.ledgers);
            if !(present.wrangler && present.d1ctl && (present.drizzle || !wants_drizzle)) {
                record.push(migration.name.clone());
            }
        }
        Ok(BaselinePlan {
            differences,
            mismatched,
            record,
            state: read.state,
            statuses,
        })
    }

    fn readiness(&self, plan: &BaselinePlan) -> Readiness {
        if !plan.differences.is_empty() || !plan.mismatched.is_empty() {
            Readiness::Blocked
        } else if plan.record.is_empty() {
            Readiness::Nothing
        } else {
            Readiness::Ready
        }
    }

    fn same(&self, shown: &BaselinePlan, now: &BaselinePlan) -> bool {
        shown.record == now.record
            && shown.differences == now.differences
            && shown.mismatched == now.mismatched
    }

    async fn write(
        &self,
        session: &Session<'_>,
        plan: &BaselinePlan,
        _reporter: &dyn ApplyReporter,
    ) -> Written<Vec<String>> {
        let wants_drizzle = self.ledgers.layout == Layout::Drizzle;
        let mut statements = session.guard();
        statements.extend(session.point_record(&[]));
        statements.extend(self.ledgers.create_statements(&plan.state));
        for name in &plan.record {
            let Some(migration) = self.set.get(name) else {
                continue;
            };
            let present = plan
                .statuses
                .iter()
                .find(|s| &s.name == name)
                .map_or_else(LedgerPresence::default, |s| s.ledgers);
            statements.extend(self.ledgers.record_statements(
                migration,
                &plan.state,
                &self.by,
                Some(&LedgerPresence {
                    drizzle: present.drizzle || !wants_drizzle,
                    ..present
                }),
            ));
        }
        match session.backend.batch(&statements).await {
            Ok(_) => Written {
                done: plan.record.clone(),
                failure: None,
            },
            Err(error) => Written {
                done: Vec::new(),
                failure: Some(UnitFailure::Other {
                    headline: format!("could not write the ledgers of `{}`: {error}", self.env),
                    error,
                }),
            },
        }
    }

    async fn verify(
        &self,
        backend: &dyn Backend,
        _plan: &BaselinePlan,
        _done: &Vec<String>,
        release: Vec<Statement>,
    ) -> Result<Vec<String>, BackendError> {
        let mut statements = release;
        let offset = statements.len();
        statements.extend(self.ledgers.read_statements_all());
        let rows = backend.batch(&statements).await?;
        let state = self.ledgers.parse_read(&rows[offset..]);
        Ok(recorded(self.set, &state))
    }

    async fn read_back(&self, backend: &dyn Backend) -> Result<Vec<String>, BackendError> {
        Ok(recorded(self.set, &self.ledgers.read(backend).await?))
    }
}

fn recorded(set: &MigrationSet, state: &LedgerState) -> Vec<String> {
    ledger::compare(set, state, set.layout)
        .into_iter()
        .filter(ledger::MigrationStatus::is_applied)
        .map(|s| s.name)
        .collect()
}
