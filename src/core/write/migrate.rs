//! The job of `apply` and `promote`: pending migrations, each in a guarded unit with its
//! ledger rows.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::backend::{Backend, BackendError, Statement, Value};
use crate::core::apply::{self, Applied, ApplyReporter, Extras, Problem};
use crate::core::ledger::{self, Ledgers, State};
use crate::core::lock::Holder;
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::promote::{self, Gate, View};
use crate::core::schema::{self, Schema, Snapshot};
use crate::core::write::{Job, Readiness, Session, UnitFailure, Written};

/// What the pending migrations are measured against.
pub enum Source<'a> {
    /// `apply`: the migrations folder, with apply's own checks (no gates).
    Folder,
    /// `promote`: the rung below (or the folder, for the first rung), through the gates.
    Rung(&'a View),
}

pub struct MigrateJob<'a> {
    pub set: &'a MigrationSet,
    pub ledgers: &'a Ledgers,
    pub env: &'a str,
    pub source: Source<'a>,
    pub all_in_one: bool,
    pub actor: &'a str,
    /// The plan the command already read and showed, used as the engine's first plan.
    pub initial: Mutex<Option<MigratePlan>>,
    /// Gates the command adds to every plan (the rehearsal's).
    pub extra_gates: Vec<Gate>,
}

/// What would be written, from the target as read.
#[derive(Debug, Clone)]
pub struct MigratePlan {
    pub target: View,
    /// Pending migrations, in folder order.
    pub pending: Vec<String>,
    /// `promote`'s gates and findings.
    pub promotion: Option<promote::Plan>,
    /// `apply`: what stops a pending migration from being sent at all.
    pub problems: Vec<Problem>,
    /// `apply`: applied migrations whose files were edited since.
    pub edited: Vec<String>,
    /// Migrations another tool applied that some ledger lacks: recorded first.
    pub adopted: Vec<String>,
}

impl MigratePlan {
    /// A promotion's plan of `target` (its gates decide; apply's own checks do not apply).
    pub fn promotion(target: View, plan: promote::Plan) -> Self {
        Self {
            pending: plan.pending.iter().map(|p| p.name.clone()).collect(),
            promotion: Some(plan),
            target,
            problems: Vec::new(),
            edited: Vec::new(),
            adopted: Vec::new(),
        }
    }

    pub fn migrations<'s>(&self, set: &'s MigrationSet) -> Vec<&'s Migration> {
        self.pending
            .iter()
            .filter_map(|name| set.get(name))
            .collect()
    }
}

/// What the job wrote.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Migrated {
    pub applied: Vec<Applied>,
    /// Migrations whose answer was lost but which the ledger shows committed.
    pub recovered: Vec<String>,
    pub adopted: Vec<String>,
}

/// The target read back after writing.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// What the schema was compared with: the source env's name, or `migrations`.
    pub against: String,
    /// Differences found; empty means verified.
    pub differences: Vec<String>,
    /// Migrations the target's ledger records now.
    pub recorded: Vec<String>,
}

/// The target's state after a failure, from its own ledger and schema.
#[derive(Debug, Clone, Serialize)]
pub struct AfterFailure {
    pub applied: Vec<String>,
    pub tables: Vec<String>,
}

impl MigrateJob<'_> {
    fn plan_from(
        &self,
        target: View,
        me: Option<&str>,
        kind: crate::backend::BackendKind,
    ) -> MigratePlan {
        match &self.source {
            Source::Rung(source) => {
                let mut plan = promote::plan(
                    self.set,
                    source,
                    &target,
                    kind,
                    &self.ledgers.ignored_tables(),
                    me,
                );
                plan.gates.extend(self.extra_gates.iter().cloned());
                MigratePlan::promotion(target, plan)
            }
            Source::Folder => {
                let edited = target
                    .statuses
                    .iter()
                    .filter(|s| {
                        s.state == State::ChecksumMismatch && s.line_endings_only != Some(true)
                    })
                    .map(|s| s.name.clone())
                    .collect();
                let pending: Vec<&Migration> = target
                    .statuses
                    .iter()
                    .filter(|s| s.state == State::Pending)
                    .filter_map(|s| self.set.get(&s.name))
                    .collect();
                let problems = apply::check_pending(&pending, kind);
                let adopted = adoptions(self.set, self.ledgers, &target);
                MigratePlan {
                    pending: pending.iter().map(|m| m.name.clone()).collect(),
                    target,
                    promotion: None,
                    problems,
                    edited,
                    adopted,
                }
            }
        }
    }

    /// Plans against a target read by the caller (the command shows this plan first).
    pub fn plan_read(&self, target: View, kind: crate::backend::BackendKind) -> MigratePlan {
        self.plan_from(target, None, kind)
    }
}

/// The migrations `state` records as applied, in folder order.
fn recorded_in(set: &MigrationSet, state: &ledger::LedgerState) -> Vec<String> {
    ledger::compare(set, state, set.layout)
        .into_iter()
        .filter(ledger::MigrationStatus::is_applied)
        .map(|s| s.name)
        .collect()
}

/// A difference for each planned migration the ledger does not record.
fn unrecorded(pending: &[String], recorded: &[String]) -> Vec<String> {
    pending
        .iter()
        .filter(|name| !recorded.contains(name))
        .map(|name| format!("`{name}` is not recorded in the ledger"))
        .collect()
}

/// Whether two reads of a target hold the same ledgers and schema (d1ctl's own bookkeeping
/// tables, which the lock creates, aside).
fn unchanged(before: &View, after: &View) -> bool {
    let user_objects = |view: &View| -> Vec<(String, Option<String>)> {
        view.snapshot
            .objects
            .iter()
            .filter(|o| !o.name.starts_with("_d1ctl_"))
            .map(|o| (o.name.clone(), o.sql.clone()))
            .collect()
    };
    serde_json::to_value(&before.statuses).ok() == serde_json::to_value(&after.statuses).ok()
        && user_objects(before) == user_objects(after)
}

/// Names of applied migrations some ledger of the target lacks.
fn adoptions(set: &MigrationSet, ledgers: &Ledgers, target: &View) -> Vec<String> {
    let wants_drizzle = ledgers.layout == crate::core::migrations::Layout::Drizzle;
    target
        .statuses
        .iter()
        .filter(|s| s.state == State::Applied && set.get(&s.name).is_some())
        .filter(|s| {
            !(s.ledgers.wrangler && s.ledgers.d1ctl && (s.ledgers.drizzle || !wants_drizzle))
        })
        .map(|s| s.name.clone())
        .collect()
}

#[async_trait]
impl Job for MigrateJob<'_> {
    type Plan = MigratePlan;
    type Done = Migrated;
    type Verified = Verified;
    type After = AfterFailure;

    async fn plan(
        &self,
        backend: &dyn Backend,
        holder: Option<&Holder>,
    ) -> Result<MigratePlan, BackendError> {
        let initial = || {
            self.initial
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if holder.is_none()
            && let Some(plan) = initial().as_ref()
        {
            return Ok(plan.clone());
        }
        // Under the lock the database exists (it holds the lock row): always read it; the
        // lock row itself is ours and needs no reading.
        let read = self.ledgers.read_with_schema(backend, false).await?;
        let target = View {
            name: self.env.to_owned(),
            statuses: ledger::compare(self.set, &read.state, self.set.layout),
            state: read.state,
            snapshot: read.snapshot,
            lock: None,
            is_folder: false,
        };
        // A target that reads back as it was planned keeps its plan: the gates (lint above
        // all) need not run twice for the same migrations on the same schema.
        let shown = initial().take();
        if let Some(shown) = shown
            && unchanged(&shown.target, &target)
        {
            return Ok(MigratePlan { target, ..shown });
        }
        Ok(self.plan_from(target, holder.map(|h| h.id.as_str()), backend.kind()))
    }

    fn readiness(&self, plan: &MigratePlan) -> Readiness {
        let blocked = match &plan.promotion {
            Some(promotion) => promotion.blocked(),
            None => !plan.edited.is_empty() || !plan.problems.is_empty(),
        };
        if blocked {
            Readiness::Blocked
        } else if plan.pending.is_empty() && plan.adopted.is_empty() {
            Readiness::Nothing
        } else {
            Readiness::Ready
        }
    }

    fn same(&self, shown: &MigratePlan, now: &MigratePlan) -> bool {
        shown.pending == now.pending
            && shown.adopted == now.adopted
            && self.readiness(shown) == self.readiness(now)
    }

    async fn write(
        &self,
        session: &Session<'_>,
        plan: &MigratePlan,
        reporter: &dyn ApplyReporter,
    ) -> Written<Migrated> {
        let backend = session.backend;
        let pending = plan.migrations(self.set);
        let names: Vec<&str> = pending.iter().map(|m| m.name.as_str()).collect();
        let mut done = Migrated::default();
        let mut point_record = session.point_record(&names);
        let mut state = plan.target.state.clone();
        if !plan.adopted.is_empty() {
            // Migrations some other tool applied get their rows in the ledgers that lack them,
            // so wrangler, drizzle and d1ctl agree before anything new runs.
            let sync = apply::sync_statements(
                self.set,
                &plan.target.statuses,
                self.ledgers,
                &plan.target.state,
                &format!("{} (adopted)", self.actor),
            );
            let mut statements = session.guard();
            statements.append(&mut point_record);
            statements.extend(sync);
            if let Err(error) = backend.batch(&statements).await {
                return Written {
                    done,
                    failure: Some(UnitFailure::Other {
                        headline: format!(
                            "could not record the already-applied migrations in the ledgers of `{}`: {error}",
                            self.env
                        ),
                        error,
                    }),
                };
            }
            done.adopted.clone_from(&plan.adopted);
            state = match self.ledgers.read(backend).await {
                Ok(state) => state,
                Err(error) => {
                    return Written {
                        done,
                        failure: Some(UnitFailure::Other {
                            headline: format!(
                                "could not re-read the ledgers of `{}` after recording adopted migrations: {error}",
                                self.env
                            ),
                            error,
                        }),
                    };
                }
            };
        }
        if pending.is_empty() {
            return Written {
                done,
                failure: None,
            };
        }
        let extras = Extras {
            every_batch: session.guard(),
            first_batch: point_record,
            all_in_one: self.all_in_one,
        };
        let outcome = apply::apply(
            backend,
            self.ledgers,
            &state,
            &plan.target.snapshot,
            &pending,
            self.actor,
            &extras,
            reporter,
        )
        .await;
        done.applied = outcome.applied;
        done.recovered = outcome.recovered;
        Written {
            done,
            failure: outcome.failure.map(UnitFailure::Migration),
        }
    }

    async fn verify(
        &self,
        backend: &dyn Backend,
        plan: &MigratePlan,
        _done: &Migrated,
        release: Vec<Statement>,
    ) -> Result<Verified, BackendError> {
        let mut statements = release;
        let offset = statements.len();
        // `apply` verifies what its ledger records; how the schema compares with the replay of
        // every migration is `drift ENV`'s question (it would make every apply replay the whole
        // folder, and fail an apply over a database that drifted before it).
        let Source::Rung(source) = &self.source else {
            statements.extend(self.ledgers.read_statements_all());
            let rows = backend.batch(&statements).await?;
            let recorded = recorded_in(self.set, &self.ledgers.parse_read(&rows[offset..]));
            return Ok(Verified {
                against: "its ledger".to_owned(),
                differences: unrecorded(&plan.pending, &recorded),
                recorded,
            });
        };
        statements.push(schema::snapshot_statement());
        statements.extend(self.ledgers.read_statements_all());
        let rows = backend.batch(&statements).await?;
        let after = Snapshot::from_rows(&rows[offset]);
        let state = self.ledgers.parse_read(&rows[offset + 1..]);
        Ok(verify_promotion(
            self.set,
            self.ledgers,
            source,
            &after,
            &state,
            &plan.pending,
        ))
    }

    fn wrote(&self, done: &Migrated) -> bool {
        !done.applied.is_empty() || !done.adopted.is_empty() || !done.recovered.is_empty()
    }

    async fn read_back(&self, backend: &dyn Backend) -> Result<AfterFailure, BackendError> {
        read_back(self.set, self.ledgers, backend).await
    }
}

/// A promoted target, read back, against its source: the schemas compared, and every planned
/// migration recorded in the ledger.
pub fn verify_promotion(
    set: &MigrationSet,
    ledgers: &Ledgers,
    source: &View,
    after: &Snapshot,
    state: &ledger::LedgerState,
    pending: &[String],
) -> Verified {
    let recorded = recorded_in(set, state);
    let ignore = ledgers.ignored_tables();
    let mut differences: Vec<String> = match (
        Schema::build(&source.snapshot, &ignore),
        Schema::build(after, &ignore),
    ) {
        (Ok(expected), Ok(actual)) => schema::diff(&expected, &actual)
            .into_iter()
            .map(|c| c.summary)
            .collect(),
        (Err(error), _) | (_, Err(error)) => vec![format!("could not compare: {error}")],
    };
    differences.extend(unrecorded(pending, &recorded));
    Verified {
        against: source.name.clone(),
        differences,
        recorded,
    }
}

/// What a target holds after a failed write: its ledger's migrations and its tables.
async fn read_back(
    set: &MigrationSet,
    ledgers: &Ledgers,
    backend: &dyn Backend,
) -> Result<AfterFailure, BackendError> {
    let applied = recorded_in(set, &ledgers.read(backend).await?);
    let rows = backend
        .read(&[Statement::with_params(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' ORDER BY name",
            Vec::<Value>::new(),
        )])
        .await?;
    let ledger_tables = ledgers.table_names();
    let tables = rows[0]
        .rows
        .iter()
        .filter_map(|row| row.first().and_then(Value::to_text))
        .filter(|name| !ledger_tables.contains(&name.as_str()))
        .collect();
    Ok(AfterFailure { applied, tables })
}
