//! The job of `rollback`: replace the whole database with its state at a rollback point.

use async_trait::async_trait;
use serde::Serialize;

use crate::backend::{Backend, BackendError, Statement};
use crate::core::apply::ApplyReporter;
use crate::core::ledger::{self, Ledgers};
use crate::core::lock::{self, Holder};
use crate::core::migrations::MigrationSet;
use crate::core::write::session::{self, History, LastSession};
use crate::core::write::{Job, Readiness, Session, UnitFailure, Written};

/// Which point to restore.
#[derive(Debug, Clone)]
pub enum Choice {
    /// `--bookmark POINT`.
    Given(String),
    /// `--last`: the point of the most recent write session.
    Last,
}

pub struct RestoreJob<'a> {
    pub set: &'a MigrationSet,
    pub ledgers: &'a Ledgers,
    pub choice: Choice,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The point to restore; `None` when `--last` finds none to restore.
    pub point: Option<String>,
    /// With `--last`: the newest session, when it recorded no point (so nothing is restored).
    pub unrecorded: Option<LastSession>,
    pub history: History,
}

#[async_trait]
impl Job for RestoreJob<'_> {
    type Plan = RestorePlan;
    type Done = String;
    type Verified = Vec<String>;
    type After = Vec<String>;

    async fn plan(
        &self,
        backend: &dyn Backend,
        holder: Option<&Holder>,
    ) -> Result<RestorePlan, BackendError> {
        let history = session::read(backend, holder.map(|h| h.id.as_str())).await?;
        let (point, unrecorded) = match &self.choice {
            Choice::Given(point) => (Some(point.clone()), None),
            Choice::Last => match history.last_point() {
                Ok(point) => (point.map(str::to_owned), None),
                Err(session) => (None, Some(session.clone())),
            },
        };
        Ok(RestorePlan {
            point,
            unrecorded,
            history,
        })
    }

    fn readiness(&self, plan: &RestorePlan) -> Readiness {
        if plan.point.is_some() {
            Readiness::Ready
        } else {
            Readiness::Blocked
        }
    }

    fn same(&self, shown: &RestorePlan, now: &RestorePlan) -> bool {
        shown.point == now.point
    }

    async fn write(
        &self,
        session: &Session<'_>,
        plan: &RestorePlan,
        _reporter: &dyn ApplyReporter,
    ) -> Written<String> {
        let Some(point) = &plan.point else {
            return Written {
                done: String::new(),
                failure: None,
            };
        };
        let backend = session.backend;
        let env = &session.env.name;
        if let Err(error) = backend.restore(point).await {
            return Written {
                done: String::new(),
                failure: Some(UnitFailure::Other {
                    headline: format!("could not restore `{env}` to {point}: {error}"),
                    error,
                }),
            };
        }
        // The restored database holds the lock rows and sessions of the time of the point:
        // those leases are stale, and this session (lock and undo point) is recorded afresh.
        // Another writer could take the lock between the restore and this batch; the window
        // is one request, and its lease would be cleared too (it then fails on its guard).
        let mut statements = vec![Statement::new(format!("DELETE FROM {}", lock::LOCK_TABLE))];
        statements.extend(lock::create_statements());
        statements.extend(session::record_statements(
            &session.holder.id,
            session.point,
            &session.options.actor,
            &session.options.command,
        ));
        match backend.batch(&statements).await {
            Ok(_) => Written {
                done: point.clone(),
                failure: None,
            },
            Err(error) => Written {
                done: point.clone(),
                failure: Some(UnitFailure::Other {
                    headline: format!(
                        "`{env}` was restored to {point}, but its stale lock rows could not be cleared: {error}"
                    ),
                    error,
                }),
            },
        }
    }

    async fn verify(
        &self,
        backend: &dyn Backend,
        _plan: &RestorePlan,
        _done: &String,
        release: Vec<Statement>,
    ) -> Result<Vec<String>, BackendError> {
        // The release is a no-op: the restore replaced the lock row; what counts is the read.
        backend.batch(&release).await?;
        self.read_back(backend).await
    }

    async fn read_back(&self, backend: &dyn Backend) -> Result<Vec<String>, BackendError> {
        let state = self.ledgers.read(backend).await?;
        Ok(ledger::compare(self.set, &state, self.set.layout)
            .into_iter()
            .filter(ledger::MigrationStatus::is_applied)
            .map(|s| s.name)
            .collect())
    }
}
