//! The job of a data step (`step run`, and `promote` after its migrations): one run of one
//! step on one env, through the write engine like every write (lock, rollback point, read
//! back).
//!
//! - An SQL step is one request: the run's start, every statement with its row count, and the
//!   finish, so the step is on record exactly when its statements committed.
//! - A chunked step is one request per repetition of its statement: the statement, its rows
//!   added to the record and, in the repetition that changes no row, the finish. A run stopped
//!   between repetitions leaves every committed batch counted, and the next continues.
//! - A command step records its start, runs `sh -c COMMAND` (the lease renewed while it runs),
//!   then records its finish. A crash between the two leaves it started: interrupted.
//!
//! The start is written before the statements and the finish after them, in the same request:
//! whether D1 runs a `batch` atomically is unverified (d1-platform §8), and in this order a
//! partial request can only leave a run that started and did not finish, never a finish
//! without its rows.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::backend::{Backend, BackendError, OtherError, Statement, Value};
use crate::core::apply::ApplyReporter;
use crate::core::ledger::{self, Ledgers};
use crate::core::lock::{self, Holder};
use crate::core::migrations::MigrationSet;
use crate::core::steps::ledger::{self as steps_ledger, StepRecord};
use crate::core::steps::{self, Body, Decision, Rerun, Step, StepStatus, writes_rows};
use crate::core::write::{Job, Readiness, Session, UnitFailure, Written};
use crate::credentials::Secret;

/// Hears about a step as it runs.
pub trait StepReporter: Send + Sync {
    /// A batch committed; `rows` and `batches` are the run's totals so far.
    fn batch_done(&self, _step: &str, _rows: i64, _batches: i64, _estimate: Option<i64>) {}
    fn command_starts(&self, _step: &str, _command: &str) {}
    /// Where a command's standard output goes (stdout is the command line's data).
    fn command_output(&self) -> Stdio {
        Stdio::null()
    }
}

/// What a command step is given: the env's identity in `D1CTL_*` variables, and the token
/// only for a step that says `needs_token`.
pub struct CommandEnvironment {
    pub folder: PathBuf,
    pub variables: Vec<(String, String)>,
    /// Set as `CLOUDFLARE_API_TOKEN` when the step needs it.
    pub token: Option<Secret>,
    /// Variables of d1ctl's own environment the command must not inherit (credentials).
    pub withheld: Vec<String>,
}

/// The variable a `needs_token` command finds the env's token in (wrangler's name).
pub const TOKEN_FOR_COMMAND: &str = "CLOUDFLARE_API_TOKEN";

pub struct StepJob<'a> {
    pub step: &'a Step,
    pub set: &'a MigrationSet,
    pub ledgers: &'a Ledgers,
    pub env: &'a str,
    /// The rung below and its record of the step; `None` when the env's source is the folder
    /// (or the step is run by hand on the first rung).
    pub source: Option<(&'a str, Option<StepRecord>)>,
    pub rerun: Rerun,
    pub actor: &'a str,
    pub command_environment: Option<CommandEnvironment>,
    pub reporter: &'a dyn StepReporter,
    /// The plan the caller already read, used as the engine's first plan.
    pub initial: Mutex<Option<StepPlan>>,
}

/// One step on one env, as planned.
#[derive(Debug, Clone, Serialize)]
pub struct StepPlan {
    pub status: StepStatus,
    #[serde(flatten)]
    pub decision: Decision,
    /// Rows the step will touch (a chunked step: rows left), counted on the env now.
    pub estimate: Option<i64>,
}

/// What a run wrote: the step's record after its last committed request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepDone {
    pub record: Option<StepRecord>,
    /// Requests that committed.
    pub requests: usize,
}

/// The step read back after the run.
#[derive(Debug, Clone, Serialize)]
pub struct StepVerified {
    pub record: Option<StepRecord>,
    /// A chunked step: rows its statement would still take (0 when verified).
    pub remaining: Option<i64>,
    /// What does not hold; empty means verified.
    pub differences: Vec<String>,
}

impl StepJob<'_> {
    /// Plans the step on an env read by the caller.
    pub fn plan_from(&self, status: StepStatus, estimate: Option<i64>) -> StepPlan {
        let source = self
            .source
            .as_ref()
            .map(|(name, record)| (*name, record.as_ref()));
        let decision = steps::decide(&status, self.env, source, &self.step.checksum, self.rerun);
        StepPlan {
            status,
            decision,
            estimate,
        }
    }

    fn command_failure(headline: String, error: std::io::Error) -> UnitFailure {
        UnitFailure::Other {
            headline,
            error: BackendError::Other(OtherError::new(error, None)),
        }
    }
}

/// Reads one step's status on an env: its migrations, its records and the estimate.
pub async fn read_status(
    backend: &dyn Backend,
    set: &MigrationSet,
    ledgers: &Ledgers,
    step: &Step,
    will_have: &[String],
) -> Result<(StepStatus, Option<i64>), BackendError> {
    let state = ledgers.read(backend).await?;
    let migrations = ledger::compare(set, &state, set.layout);
    let records = steps_ledger::read(backend).await?;
    let status =
        steps::statuses(std::slice::from_ref(step), &migrations, &records, will_have).remove(0);
    let estimate = if matches!(status.state, steps::StepState::Done) {
        None
    } else {
        estimate(backend, step).await
    };
    Ok((status, estimate))
}

/// Counts the rows a step will touch; `None` when no count can be derived or run (its tables
/// may not exist before its migration).
pub async fn estimate(backend: &dyn Backend, step: &Step) -> Option<i64> {
    let query = step.estimate.as_ref()?;
    let rows = backend.read(&[Statement::new(query.clone())]).await.ok()?;
    rows.first()?.rows.first()?.first()?.as_i64()
}

fn record_of(rows: &[crate::backend::Rows]) -> Option<StepRecord> {
    rows.last().and_then(|rows| steps_ledger::parse(rows).pop())
}

#[async_trait]
impl Job for StepJob<'_> {
    type Plan = StepPlan;
    type Done = StepDone;
    type Verified = StepVerified;
    type After = Option<StepRecord>;

    async fn plan(
        &self,
        backend: &dyn Backend,
        holder: Option<&Holder>,
    ) -> Result<StepPlan, BackendError> {
        if holder.is_none()
            && let Some(plan) = self
                .initial
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        {
            return Ok(plan);
        }
        let (status, estimate) =
            read_status(backend, self.set, self.ledgers, self.step, &[]).await?;
        Ok(self.plan_from(status, estimate))
    }

    fn readiness(&self, plan: &StepPlan) -> Readiness {
        match plan.decision {
            Decision::Run => Readiness::Ready,
            Decision::Done => Readiness::Nothing,
            Decision::Wait { .. } | Decision::Blocked { .. } => Readiness::Blocked,
        }
    }

    fn same(&self, shown: &StepPlan, now: &StepPlan) -> bool {
        shown.decision == now.decision
            && shown.status.state == now.status.state
            && shown.status.record == now.status.record
    }

    fn confirmation(&self, plan: &StepPlan) -> Option<String> {
        let record = plan.status.record.as_ref()?;
        let rows = record
            .rows
            .map(|rows| format!(", {rows} rows"))
            .unwrap_or_default();
        if record.finished() {
            Some(format!(
                "step `{}` finished on `{}` at {} (by {}{rows}); running it again repeats all of its work there",
                self.step.name,
                self.env,
                record.finished_at.as_deref().unwrap_or_default(),
                record.run_by
            ))
        } else if plan.status.state == steps::StepState::Interrupted {
            Some(format!(
                "step `{}` started on `{}` at {} (by {}{rows}) and did not finish; running it again repeats whatever part of its work it did",
                self.step.name, self.env, record.started_at, record.run_by
            ))
        } else {
            None
        }
    }

    async fn write(
        &self,
        session: &Session<'_>,
        plan: &StepPlan,
        _reporter: &dyn ApplyReporter,
    ) -> Written<StepDone> {
        let step = self.step;
        let label = format!("step {}", step.name);
        let mut first = session.guard();
        first.extend(session.point_record(&[label.as_str()]));
        let continues = plan.status.state == steps::StepState::Partial
            && self.rerun != Rerun::Finished
            && !plan.status.edited;
        if !continues {
            first.extend(steps_ledger::start_statements(
                &step.name,
                step.kind(),
                &step.checksum,
                self.actor,
            ));
        }
        let mut done = StepDone::default();
        let fail = |done: StepDone, headline: String, error: BackendError| Written {
            done,
            failure: Some(UnitFailure::Other { headline, error }),
        };
        match &step.body {
            Body::Sql { statements } => {
                let mut batch = first;
                for statement in statements {
                    batch.push(Statement::new(statement.sql.clone()));
                    if writes_rows(&statement.sql) {
                        batch.push(steps_ledger::count_statement(&step.name));
                    }
                }
                batch.push(steps_ledger::finish_statement(&step.name));
                batch.push(steps_ledger::read_one_statement(&step.name));
                match session.backend.batch(&batch).await {
                    Ok(rows) => {
                        done.requests = 1;
                        done.record = record_of(&rows);
                        let record = done.record.as_ref();
                        self.reporter.batch_done(
                            &step.name,
                            record.and_then(|r| r.rows).unwrap_or(0),
                            1,
                            plan.estimate,
                        );
                        Written {
                            done,
                            failure: None,
                        }
                    }
                    Err(error) => fail(
                        done,
                        format!("step `{}` failed on `{}`: {error}", step.name, self.env),
                        error,
                    ),
                }
            }
            Body::Chunked { statement, chunk } => {
                let mut next = Some(first);
                // A statement that keeps changing rows would never end: stop well past what
                // the count said was left (with no count, the user's statement is trusted).
                let ceiling = plan
                    .estimate
                    .map(|left| 2 * (left.max(0).unsigned_abs() / chunk.limit) + 100);
                let mut sent: u64 = 0;
                loop {
                    let mut batch = next.take().unwrap_or_else(|| session.guard());
                    batch.push(Statement::new(statement.sql.clone()));
                    batch.push(steps_ledger::chunk_statement(&step.name));
                    batch.push(steps_ledger::read_one_statement(&step.name));
                    sent += 1;
                    match session.backend.batch(&batch).await {
                        Ok(rows) => {
                            done.requests += 1;
                            done.record = record_of(&rows);
                        }
                        Err(error) => {
                            return fail(
                                done,
                                format!(
                                    "batch {sent} of step `{}` failed on `{}`: {error}",
                                    step.name, self.env
                                ),
                                error,
                            );
                        }
                    }
                    let Some(record) = &done.record else {
                        return fail(
                            done,
                            format!(
                                "step `{}`'s record on `{}` was not found after batch {sent}",
                                step.name, self.env
                            ),
                            BackendError::Statement {
                                index: None,
                                message: "the step's row is missing".to_owned(),
                                missing_table: None,
                            },
                        );
                    };
                    self.reporter.batch_done(
                        &step.name,
                        record.rows.unwrap_or(0),
                        record.batches,
                        plan.estimate,
                    );
                    if record.finished() {
                        break;
                    }
                    if ceiling.is_some_and(|ceiling| sent >= ceiling) {
                        let message = format!(
                            "stopped after {sent} batches: the statement keeps changing rows, far more than the {} rows counted before it ran; it must skip rows it already did",
                            plan.estimate.unwrap_or_default()
                        );
                        return fail(
                            done,
                            format!("step `{}` on `{}`: {message}", step.name, self.env),
                            BackendError::Statement {
                                index: None,
                                message,
                                missing_table: None,
                            },
                        );
                    }
                }
                Written {
                    done,
                    failure: None,
                }
            }
            Body::Command { command, .. } => self.run_command(session, command, first, done).await,
        }
    }

    async fn verify(
        &self,
        backend: &dyn Backend,
        _plan: &StepPlan,
        _done: &StepDone,
        release: Vec<Statement>,
    ) -> Result<StepVerified, BackendError> {
        let mut statements = release;
        statements.push(steps_ledger::read_one_statement(&self.step.name));
        let remaining_query = match &self.step.body {
            Body::Chunked { chunk, .. } => chunk.remaining.clone(),
            _ => None,
        };
        if let Some(query) = &remaining_query {
            statements.push(Statement::new(query.clone()));
        }
        let rows = backend.batch(&statements).await?;
        let (record, remaining) = if remaining_query.is_some() {
            let count = rows
                .last()
                .and_then(|r| r.rows.first())
                .and_then(|row| row.first())
                .and_then(Value::as_i64);
            (record_of(&rows[..rows.len() - 1]), count)
        } else {
            (record_of(&rows), None)
        };
        let mut differences = Vec::new();
        if !record.as_ref().is_some_and(StepRecord::finished) {
            differences.push(format!(
                "`_d1ctl_steps` does not record step `{}` as finished",
                self.step.name
            ));
        }
        if let Some(left) = remaining.filter(|left| *left > 0) {
            differences.push(format!(
                "{left} rows still match the statement's query (written while it ran, or the statement does not reach them)"
            ));
        }
        Ok(StepVerified {
            record,
            remaining,
            differences,
        })
    }

    fn wrote(&self, done: &StepDone) -> bool {
        done.requests > 0
    }

    async fn read_back(&self, backend: &dyn Backend) -> Result<Option<StepRecord>, BackendError> {
        let records = steps_ledger::read(backend).await?;
        Ok(records.into_iter().find(|r| r.name == self.step.name))
    }
}

impl StepJob<'_> {
    async fn run_command(
        &self,
        session: &Session<'_>,
        command: &str,
        mut first: Vec<Statement>,
        mut done: StepDone,
    ) -> Written<StepDone> {
        let step = self.step;
        let backend = session.backend;
        first.push(steps_ledger::read_one_statement(&step.name));
        match backend.batch(&first).await {
            Ok(rows) => {
                done.requests = 1;
                done.record = record_of(&rows);
            }
            Err(error) => {
                return Written {
                    done,
                    failure: Some(UnitFailure::Other {
                        headline: format!(
                            "could not record the start of step `{}` on `{}`: {error}",
                            step.name, self.env
                        ),
                        error,
                    }),
                };
            }
        }
        // The command opens the database itself (a local file): let go of ours.
        backend.release_files();
        self.reporter.command_starts(&step.name, command);
        let mut child = std::process::Command::new("sh");
        child
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(self.reporter.command_output());
        if let Some(environment) = &self.command_environment {
            child.current_dir(&environment.folder);
            for name in &environment.withheld {
                child.env_remove(name);
            }
            child.envs(environment.variables.iter().map(|(k, v)| (k, v)));
            if let Some(token) = &environment.token {
                child.env(TOKEN_FOR_COMMAND, token.expose());
            }
        }
        let spawned = match child.spawn() {
            Ok(spawned) => spawned,
            Err(error) => {
                let ended = format!("could not start: {}", error.kind());
                let _ = backend
                    .batch(&[steps_ledger::ended_statement(&step.name, &ended)])
                    .await;
                return Written {
                    done,
                    failure: Some(Self::command_failure(
                        format!(
                            "could not start the command of step `{}` (`{command}`): {error}; the step is recorded as started, and interrupted",
                            step.name
                        ),
                        error,
                    )),
                };
            }
        };
        let status = self.wait_renewing(session, spawned).await;
        let ended = match &status {
            Ok(status) if status.success() => None,
            Ok(status) => Some(match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            }),
            Err(error) => Some(format!("lost: {}", error.kind())),
        };
        let mut last = session.guard();
        match &ended {
            None => last.push(steps_ledger::finish_statement(&step.name)),
            Some(how) => last.push(steps_ledger::ended_statement(&step.name, how)),
        }
        last.push(steps_ledger::read_one_statement(&step.name));
        let recorded = backend.batch(&last).await;
        if let Ok(rows) = &recorded {
            done.requests += 1;
            done.record = record_of(rows);
        }
        match (ended, recorded) {
            (None, Ok(_)) => Written {
                done,
                failure: None,
            },
            (None, Err(error)) => Written {
                done,
                failure: Some(UnitFailure::Other {
                    headline: format!(
                        "the command of step `{}` finished, but its finish could not be recorded on `{}`: {error}; the step shows as interrupted",
                        step.name, self.env
                    ),
                    error,
                }),
            },
            (Some(how), _) => Written {
                done,
                failure: Some(Self::command_failure(
                    format!(
                        "the command of step `{}` ended with {how} on `{}`; the step is recorded as interrupted",
                        step.name, self.env
                    ),
                    std::io::Error::other(how.clone()),
                )),
            },
        }
    }

    /// Waits for the command, renewing the lease while it runs so nobody takes the env over
    /// a long backfill.
    async fn wait_renewing(
        &self,
        session: &Session<'_>,
        mut child: std::process::Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = sender.send(child.wait());
        });
        let period = std::time::Duration::from_secs(lock::LEASE_SECONDS.unsigned_abs() / 4);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                status = &mut receiver => {
                    return status.unwrap_or_else(|_| Err(std::io::Error::other("the wait ended")));
                }
                _ = renew.tick() => {
                    // A renewal that fails is found by the guard of the finish request.
                    let _ = session.backend.batch(&session.guard()).await;
                }
            }
        }
    }
}
