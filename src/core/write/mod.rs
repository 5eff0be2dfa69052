//! The one write engine. Every command that writes (`apply`, `promote`, `baseline`,
//! `rollback`, `pull`, `reset`) runs a [`Job`] through [`run`], which does the same steps in the same
//! order for all of them:
//!
//! 1. read the target and plan; show the plan; stop if there is nothing to do or a gate blocks;
//! 2. ask (a protected env needs its typed name or `--yes`), then the job's `before` step;
//! 3. take the lock, recording the session in the lock's own batch;
//! 4. **read the target again under the lock** and plan again: a plan that changed since it
//!    was shown is shown again and asked again (and refused under `--yes`, which approved
//!    the other plan);
//! 5. take the rollback point;
//! 6. write the job's units: each carries the lease guard, the first records the point, and
//!    ledger rows come last in each;
//! 7. release the lock and read the target back in one batch, and verify it;
//! 8. report. After a failure, what the target holds is read back from it, never assumed.

pub mod baseline;
pub mod express;
pub mod migrate;
pub mod replace;
pub mod restore;
pub mod session;
pub mod step;

use std::path::Path;

use async_trait::async_trait;
use serde::Serialize;

use crate::backend::{Backend, BackendError, RollbackPoint, Statement};
use crate::core::apply::ApplyReporter;
use crate::core::lock::{self, Holder, Lease, LockError};
use crate::core::registry::Environment;

/// The database a session writes to.
pub struct Target<'a> {
    pub backend: &'a dyn Backend,
    pub env: &'a Environment,
    /// Where SQLite rollback points (backup files) go: `.d1ctl/backups`.
    pub backups: &'a Path,
}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// What the session is, as recorded with the lock and the point: `promote --to staging`.
    pub command: String,
    /// Who runs it (`user@host`), recorded in the ledgers and with the point.
    pub actor: String,
    /// A person approved this write ahead (`--yes`).
    pub yes: bool,
    /// Plan only.
    pub dry_run: bool,
    /// The session id to record (the lock holder's id): a fleet's rollout records one id on
    /// every member, so that `rollback FLEET --last` finds the members of one rollout. `None`
    /// draws a fresh one.
    pub session: Option<String>,
}

/// Whether a plan can be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing to write: the target is already there.
    Nothing,
    /// A gate or check refuses it; the reason is in the plan.
    Blocked,
    Ready,
}

/// The engine's view of the person at the terminal: it shows, asks and tells. Implemented by
/// the printer's side for text and JSON.
pub trait WriteReporter<P>: ApplyReporter {
    /// Shows a plan; `changed` when it is a new plan made under the lock.
    fn show_plan(&self, plan: &P, changed: bool);
    /// Asks a person to approve the write; `why` says what needs it (a protected env, a
    /// target whose data is replaced), and whether the plan changed since the last answer.
    fn confirm(&self, env: &Environment, why: &str, yes: bool) -> bool;
    /// What runs after the confirmation and before the lock (promotion hooks); `false` stops.
    fn before_write(&self) -> bool {
        true
    }
    fn took_over(&self, _lease: &Lease) {}
    fn rollback_point(&self, _point: &RollbackPoint) {}
}

/// What a unit of the job is written with.
pub struct Session<'a> {
    pub backend: &'a dyn Backend,
    pub env: &'a Environment,
    pub holder: &'a Holder,
    pub point: &'a RollbackPoint,
    pub options: &'a Options,
    pub backups: &'a Path,
}

impl Session<'_> {
    /// The lease guard: first in every batch written under the lock.
    pub fn guard(&self) -> Vec<Statement> {
        lock::guard_statements(self.holder)
    }

    /// The point's record: in the first unit, atomically with it.
    pub fn point_record(&self, migrations: &[&str]) -> Vec<Statement> {
        session::point_statements(
            &self.holder.id,
            self.point,
            &self.options.actor,
            &self.options.command,
            migrations,
        )
    }
}

/// What the job wrote, and where it stopped when it did not finish.
pub struct Written<D> {
    pub done: D,
    pub failure: Option<UnitFailure>,
}

/// A unit that did not commit (or may not have).
#[derive(Debug)]
pub enum UnitFailure {
    /// A migration's unit, with where it stopped (statement, line, row guard).
    Migration(crate::core::apply::ApplyFailure),
    Other {
        headline: String,
        error: BackendError,
    },
}

impl UnitFailure {
    pub fn error(&self) -> &BackendError {
        match self {
            UnitFailure::Migration(failure) => &failure.error,
            UnitFailure::Other { error, .. } => error,
        }
    }

    /// One line: what failed and where.
    pub fn headline(&self) -> String {
        match self {
            UnitFailure::Migration(failure) => failure.headline(),
            UnitFailure::Other { headline, .. } => headline.clone(),
        }
    }
}

/// A job: what one command writes. The engine owns the order; the job owns the content.
#[async_trait]
pub trait Job: Send + Sync {
    type Plan: Send + Sync;
    type Done: Send + Sync;
    type Verified: Send + Sync;
    /// What the target holds, read back after a failure.
    type After: Send + Sync;

    /// Reads the target and plans; `holder` is the session's, once it holds the lock.
    async fn plan(
        &self,
        backend: &dyn Backend,
        holder: Option<&Holder>,
    ) -> Result<Self::Plan, BackendError>;
    fn readiness(&self, plan: &Self::Plan) -> Readiness;
    /// Whether two plans write the same thing.
    fn same(&self, shown: &Self::Plan, now: &Self::Plan) -> bool;
    /// Why this plan needs a person's approval even on an unprotected env.
    fn confirmation(&self, _plan: &Self::Plan) -> Option<String> {
        None
    }
    /// What needs no lock and comes before it (a pull builds its new file here).
    async fn prepare(&self, _plan: &Self::Plan) -> anyhow::Result<()> {
        Ok(())
    }
    /// Takes the rollback point; every job but a restore uses the backend's.
    async fn rollback_point(&self, target: &Target<'_>) -> Result<RollbackPoint, BackendError> {
        target
            .backend
            .rollback_point(target.backups, &target.env.name)
            .await
    }
    /// Writes the plan's units.
    async fn write(
        &self,
        session: &Session<'_>,
        plan: &Self::Plan,
        reporter: &dyn ApplyReporter,
    ) -> Written<Self::Done>;
    /// Releases the lock (`release`, to send first in the same batch) and reads back what
    /// was written.
    async fn verify(
        &self,
        backend: &dyn Backend,
        plan: &Self::Plan,
        done: &Self::Done,
        release: Vec<Statement>,
    ) -> Result<Self::Verified, BackendError>;
    /// Whether `done` holds anything that committed.
    fn wrote(&self, _done: &Self::Done) -> bool {
        true
    }
    /// What the target holds now, after a failure.
    async fn read_back(&self, backend: &dyn Backend) -> Result<Self::After, BackendError>;
}

/// Why nothing, or not all, was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The lease was no longer ours: the unit's guard aborted it, nothing of it ran.
    LeaseLost,
    /// The request certainly did not run (not sent, or refused before executing).
    NotSent,
    /// Sent, and the answer was lost: it may have committed.
    OutcomeUnknown,
    /// The SQL failed (or the row guard stopped it); the unit was rolled back.
    Sql,
    /// Anything else the backend reported.
    Other,
}

impl FailureKind {
    fn of(error: &BackendError) -> Self {
        match error {
            BackendError::Statement { .. } => FailureKind::Sql,
            BackendError::Unavailable { .. } => FailureKind::NotSent,
            BackendError::OutcomeUnknown { .. } => FailureKind::OutcomeUnknown,
            BackendError::Other(_) => FailureKind::Other,
        }
    }
}

/// A failed write, with the target's state as read back from it.
pub struct Failure<A> {
    pub kind: FailureKind,
    pub unit: UnitFailure,
    /// Read after the failure; `Err` says why it could not be read.
    pub after: Result<A, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    UpToDate,
    Blocked,
    Planned,
    Refused,
    Written,
    Failed,
}

/// Everything a session did, for the printer.
pub struct Report<J: Job> {
    pub outcome: Outcome,
    /// The plan the session acted on (the one made under the lock, when it got that far).
    pub plan: J::Plan,
    pub took_over: Option<Lease>,
    pub point: Option<RollbackPoint>,
    pub done: Option<J::Done>,
    pub failure: Option<Failure<J::After>>,
    /// `Err`: the release-and-verify batch failed (the message says how; the write stands).
    pub verified: Option<Result<J::Verified, String>>,
    /// Why the session stopped before writing, when it did (`Refused`).
    pub refusal: Option<String>,
}

impl<J: Job> Report<J> {
    fn new(outcome: Outcome, plan: J::Plan) -> Self {
        Self {
            outcome,
            plan,
            took_over: None,
            point: None,
            done: None,
            failure: None,
            verified: None,
            refusal: None,
        }
    }

    /// Whether anything may have been written (so the rollback command matters).
    pub fn may_have_written(&self, job: &J) -> bool {
        match self.outcome {
            Outcome::Written => true,
            // The read-back after the failure is the truth; without one, assume the worst.
            Outcome::Failed => {
                self.failure.as_ref().is_some_and(|f| f.after.is_err())
                    || self.done.as_ref().is_some_and(|done| job.wrote(done))
            }
            _ => false,
        }
    }
}

/// Errors that stop a session before its first unit; nothing of the job was written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Locked(LockError),
    #[error("could not read env `{env}`")]
    Read {
        env: String,
        #[source]
        source: BackendError,
    },
    #[error("could not lock env `{env}`; nothing was written")]
    Lock {
        env: String,
        #[source]
        source: BackendError,
    },
    #[error("could not take a rollback point of `{env}`; nothing was written")]
    Point {
        env: String,
        #[source]
        source: BackendError,
    },
    #[error(transparent)]
    Prepare(anyhow::Error),
}

impl WriteError {
    pub fn hint(&self) -> Option<String> {
        match self {
            WriteError::Locked(LockError::Held { env, lease }) => Some(format!(
                "wait for it to finish; if its holder died, `d1ctl lock release {env} --id {}` frees it",
                lease.holder.id
            )),
            WriteError::Locked(LockError::Backend(source))
            | WriteError::Read { source, .. }
            | WriteError::Lock { source, .. }
            | WriteError::Point { source, .. } => source.hint(),
            WriteError::Prepare(_) => None,
        }
    }
}

/// Takes the lock and records the session in one batch. An answer lost on the way is not a
/// failure to guess about: the lock row, read back, says whether this session holds it; when
/// nobody does, the batch certainly did not commit and is sent once more.
async fn take_lock(
    backend: &dyn Backend,
    env: &str,
    holder: &Holder,
    command: &str,
) -> Result<Option<Lease>, WriteError> {
    let start = session::start_statements(&holder.id, command);
    let lock_error = |source| WriteError::Lock {
        env: env.to_owned(),
        source,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        match lock::acquire(backend, env, holder, &start).await {
            Ok(previous) => return Ok(previous),
            Err(LockError::Backend(BackendError::OutcomeUnknown { message })) => {
                match lock::status(backend).await.map_err(lock_error)? {
                    Some(lease) if lease.holder.id == holder.id => return Ok(None),
                    None if attempts < 2 => {}
                    None => {
                        return Err(lock_error(BackendError::OutcomeUnknown { message }));
                    }
                    Some(lease) => {
                        return Err(WriteError::Locked(LockError::Held {
                            env: env.to_owned(),
                            lease,
                        }));
                    }
                }
            }
            Err(LockError::Backend(source)) => return Err(lock_error(source)),
            Err(held) => return Err(WriteError::Locked(held)),
        }
    }
}

/// Runs a write session; see the module's documentation for the steps.
pub async fn run<J: Job>(
    target: &Target<'_>,
    job: &J,
    options: &Options,
    reporter: &dyn WriteReporter<J::Plan>,
) -> Result<Report<J>, WriteError> {
    let env = target.env;
    let backend = target.backend;
    let read_error = |source| WriteError::Read {
        env: env.name.clone(),
        source,
    };
    let shown = job.plan(backend, None).await.map_err(read_error)?;
    reporter.show_plan(&shown, false);
    match job.readiness(&shown) {
        Readiness::Nothing => return Ok(Report::new(Outcome::UpToDate, shown)),
        Readiness::Blocked => return Ok(Report::new(Outcome::Blocked, shown)),
        Readiness::Ready => {}
    }
    if options.dry_run {
        return Ok(Report::new(Outcome::Planned, shown));
    }
    // Asked before the lock: nobody waits on a lock while a person reads the plan.
    let why = |plan: &J::Plan| {
        job.confirmation(plan).or_else(|| {
            env.protected
                .then(|| format!("`{}` is protected", env.name))
        })
    };
    let asked = why(&shown);
    if let Some(why) = &asked
        && !reporter.confirm(env, why, options.yes)
    {
        let mut report = Report::new(Outcome::Refused, shown);
        report.refusal = Some("not confirmed".to_owned());
        return Ok(report);
    }
    if !reporter.before_write() {
        let mut report = Report::new(Outcome::Refused, shown);
        report.refusal = Some("a `before` hook failed".to_owned());
        return Ok(report);
    }
    job.prepare(&shown).await.map_err(WriteError::Prepare)?;

    let mut holder = Holder::for_this_process(&options.command);
    if let Some(session) = &options.session {
        holder.id.clone_from(session);
    }
    let took_over = take_lock(backend, &env.name, &holder, &options.command).await?;
    if let Some(previous) = &took_over {
        reporter.took_over(previous);
    }
    // From here on every way out releases the lock.
    let release_unwritten = || {
        vec![
            lock::release_statement(&holder),
            session::forget_statement(&holder.id),
        ]
    };
    let release_quietly = |statements: Vec<Statement>| async move {
        // Best effort: a lease left behind expires on its own.
        let _ = backend.batch(&statements).await;
    };

    let plan = match job.plan(backend, Some(&holder)).await {
        Ok(plan) => plan,
        Err(source) => {
            release_quietly(release_unwritten()).await;
            return Err(read_error(source));
        }
    };
    if !job.same(&shown, &plan) {
        reporter.show_plan(&plan, true);
        let refusal = match job.readiness(&plan) {
            Readiness::Nothing => Some(Outcome::UpToDate),
            Readiness::Blocked => Some(Outcome::Blocked),
            Readiness::Ready => match why(&plan) {
                // `--yes` approved the plan shown before, not this one.
                Some(_) if options.yes => Some(Outcome::Refused),
                Some(why)
                    if !reporter.confirm(env, &format!("{why}, and the plan changed"), false) =>
                {
                    Some(Outcome::Refused)
                }
                _ => None,
            },
        };
        if let Some(outcome) = refusal {
            release_quietly(release_unwritten()).await;
            let mut report = Report::new(outcome, plan);
            report.took_over = took_over;
            if outcome == Outcome::Refused {
                report.refusal = Some("the plan changed under the lock".to_owned());
            }
            return Ok(report);
        }
    }

    let point = match job.rollback_point(target).await {
        Ok(point) => point,
        Err(source) => {
            release_quietly(release_unwritten()).await;
            return Err(WriteError::Point {
                env: env.name.clone(),
                source,
            });
        }
    };
    reporter.rollback_point(&point);
    let session = Session {
        backend,
        env,
        holder: &holder,
        point: &point,
        options,
        backups: target.backups,
    };
    let written = job.write(&session, &plan, reporter).await;
    let mut report = Report::new(Outcome::Written, plan);
    report.took_over = took_over;
    report.point = Some(point);
    if let Some(unit) = written.failure {
        report.outcome = Outcome::Failed;
        // The truth comes from the target: whose lease it holds, and what its ledger says.
        let lease = lock::status(backend).await;
        let kind = match (unit.error(), &lease) {
            (BackendError::Statement { .. }, Ok(lease))
                if lease.as_ref().is_none_or(|l| l.holder.id != holder.id) =>
            {
                FailureKind::LeaseLost
            }
            (error, _) => FailureKind::of(error),
        };
        let after = job
            .read_back(backend)
            .await
            .map_err(|error| error.to_string());
        // The lock must not outlive a failed session; a lost lease is not ours to release.
        release_quietly(vec![lock::release_statement(&holder)]).await;
        report.done = Some(written.done);
        report.failure = Some(Failure { kind, unit, after });
        return Ok(report);
    }
    let verified = job
        .verify(
            backend,
            &report.plan,
            &written.done,
            vec![lock::release_statement(&holder)],
        )
        .await;
    if let Err(error) = &verified
        && !matches!(error, BackendError::OutcomeUnknown { .. })
    {
        release_quietly(vec![lock::release_statement(&holder)]).await;
    }
    report.verified = Some(verified.map_err(|error| match error {
        BackendError::OutcomeUnknown { message } => format!(
            "the answer to the release-and-verify request was lost ({message}); the lock is released by it or expires within {} s",
            lock::LEASE_SECONDS
        ),
        other => {
            format!(
                "could not release the lock and read the target back: {other}; the lease expires within {} s",
                lock::LEASE_SECONDS
            )
        }
    }));
    report.done = Some(written.done);
    Ok(report)
}
