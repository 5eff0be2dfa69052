//! Promoting a fleet: every member brought up to the rung below, at about one request each.
//!
//! Members are taken in fleet order, a few at a time. A member is expected to be in the state
//! of the members before it (the *group* state), so it gets the express session
//! ([`crate::core::write::express`]): one batch whose guard aborts it if the member is in any
//! other state. An aborted member is read (one request) and then, as the issue that brought
//! fleets asks, takes the full read-plan-write path of the write engine: laggards are brought
//! up there, and drifted members are refused there by the gates, by name.
//!
//! Nothing here is remembered between runs: every member's own ledger is the truth. A rerun
//! guesses that a member is in the state the one before it was found in, so members a killed
//! run finished cost one read each, and the rest one express batch each.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use serde::Serialize;

use crate::backend::{Backend, BackendError, BackendKind};
use crate::core::fleet::fingerprint;
use crate::core::fleet::survey::Connect;
use crate::core::ledger::{self, EnvironmentRead, Ledgers};
use crate::core::lock::{self, Holder};
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::promote::{self, View};
use crate::core::registry::{Environment, MemberName};
use crate::core::schema::{self, Schema, Snapshot};
use crate::core::write::express::{Expected, ExpressDone, ExpressSession};
use crate::core::write::migrate::{MigrateJob, MigratePlan, Source};
use crate::core::write::{self, Outcome, WriteError};

/// How a rollout runs.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub command: String,
    pub actor: String,
    /// Cumulative member counts after which the rollout pauses (the last is every member).
    pub waves: Vec<usize>,
    /// Stop starting members after this many failures.
    pub max_failures: usize,
    /// Members in flight at once.
    pub concurrency: usize,
}

/// What became of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberOutcome {
    Promoted,
    UpToDate,
    /// Not written: a gate refused it (drift), or another session holds its lock.
    Refused,
    Failed,
    /// The rollout stopped before it (failures, a wave not confirmed, Ctrl-C).
    NotStarted,
}

/// Which way a member went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathTaken {
    /// One batch, no read.
    Express,
    /// A read, then one batch.
    ReadThenExpress,
    /// A read found it finished.
    Read,
    /// The write engine's read-plan-lock-write path.
    Full,
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub name: String,
    pub uuid: Option<String>,
    pub outcome: MemberOutcome,
    pub path: PathTaken,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    /// The rollback point the session recorded on the member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_point: Option<String>,
    /// Why it was refused or failed, or what a verification found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the member holds after a failure, read back from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_after: Option<String>,
}

impl MemberReport {
    fn new(member: &MemberName, outcome: MemberOutcome, path: PathTaken) -> Self {
        Self {
            name: member.name.clone(),
            uuid: member.uuid.clone(),
            outcome,
            path,
            applied: Vec::new(),
            rollback_point: None,
            reason: None,
            state_after: None,
        }
    }

    fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Counts so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub total: usize,
    pub promoted: usize,
    pub up_to_date: usize,
    pub refused: usize,
    pub failed: usize,
}

impl Tally {
    pub fn finished(&self) -> usize {
        self.promoted + self.up_to_date + self.refused + self.failed
    }

    pub fn remaining(&self) -> usize {
        self.total - self.finished()
    }

    fn count(&mut self, outcome: MemberOutcome) {
        match outcome {
            MemberOutcome::Promoted => self.promoted += 1,
            MemberOutcome::UpToDate => self.up_to_date += 1,
            MemberOutcome::Refused => self.refused += 1,
            MemberOutcome::Failed => self.failed += 1,
            MemberOutcome::NotStarted => {}
        }
    }
}

/// Why a rollout stopped before its last member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Stopped {
    Failures { failed: usize },
    WaveNotConfirmed { after: usize },
    Interrupted,
}

pub trait RolloutReporter: Send + Sync {
    fn started(&self, _total: usize) {}
    fn member(&self, _report: &MemberReport, _tally: &Tally) {}
    /// A wave of `done` members finished cleanly; `true` goes on with the next.
    fn wave_done(&self, done: usize, next: usize, tally: &Tally) -> bool;
    fn finished(&self, _tally: &Tally) {}
}

#[derive(Debug, Serialize)]
pub struct RolloutReport {
    pub members: Vec<MemberReport>,
    pub tally: Tally,
    pub stopped: Option<Stopped>,
    /// The migrations the fleet's group state needed (empty when every member was up to date).
    pub pending: Vec<String>,
}

/// The group state and what it needs.
#[derive(Clone)]
struct GroupPlan {
    expected: Expected,
    pending: Vec<String>,
}

#[derive(Default)]
struct Known {
    group: Option<GroupPlan>,
    /// The fingerprint of a promoted member, and its schema.
    head: Option<String>,
    head_snapshot: Option<Snapshot>,
    /// The guess for the next member: `true` = it is finished (read it), `false` = it is in
    /// the group state (send the express batch).
    read_first: bool,
    /// The fleet position of the member the guess was last taken from: a member finishing
    /// later but standing earlier in the fleet (started before, answered after) says less
    /// about the next one, and must not flip the guess back.
    guessed_at: usize,
    /// Each member's position in the fleet.
    positions: HashMap<String, usize>,
    /// Held by the member being read while the guess is "finished".
    reading: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// How many members were found in each plannable state: the commonest is the group's.
    seen: HashMap<String, usize>,
}

/// The lock that reads members one at a time (see `Rollout::one`).
fn known_reading(known: &Mutex<Known>) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    std::sync::Arc::clone(
        &known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reading,
    )
}

impl Known {
    /// Takes the guess for the next member from `member`, unless a member further on in the
    /// fleet gave it already.
    fn guess(&mut self, member: &str, read_first: bool) {
        let position = self.positions.get(member).copied().unwrap_or_default();
        if position >= self.guessed_at {
            self.guessed_at = position;
            self.read_first = read_first;
        }
    }
}

pub struct Rollout<'a> {
    pub set: &'a MigrationSet,
    pub ledgers: &'a Ledgers,
    pub env: &'a Environment,
    pub source: &'a View,
    pub members: &'a [MemberName],
    pub connect: &'a Connect<'a>,
    pub options: RolloutOptions,
    pub backups: &'a Path,
    /// Set by Ctrl-C: members in flight finish, no new one starts.
    pub stop: &'a AtomicBool,
}

impl Rollout<'_> {
    pub async fn run(&self, reporter: &dyn RolloutReporter) -> RolloutReport {
        let holder = Holder::for_this_process(&self.options.command);
        let known = Mutex::new(Known {
            read_first: true,
            positions: self
                .members
                .iter()
                .enumerate()
                .map(|(index, m)| (m.name.clone(), index))
                .collect(),
            ..Known::default()
        });
        let mut tally = Tally {
            total: self.members.len(),
            ..Tally::default()
        };
        reporter.started(self.members.len());
        let mut reports: Vec<Option<MemberReport>> = vec![None; self.members.len()];
        let mut stopped = None;
        let mut next = 0;
        let waves = self.waves();
        for (wave, end) in waves.iter().enumerate() {
            let mut indices: Vec<usize> = (next..*end).collect();
            next = *end;
            let failures_before = tally.failed;
            if wave == 0 && !indices.is_empty() {
                // The first member goes alone: it tells the group state the others are
                // expected in (members started beside it could only guess and read first).
                let first = indices.remove(0);
                let report = self.one(&self.members[first], &holder, &known).await;
                stopped = self.settle(first, report, &mut tally, &mut reports, reporter);
                if stopped.is_some() {
                    indices.clear();
                }
            }
            let mut in_flight = futures::stream::iter(indices.into_iter().map(|index| {
                let member = &self.members[index];
                let known = &known;
                let holder = &holder;
                async move { (index, self.one(member, holder, known).await) }
            }))
            .buffer_unordered(self.options.concurrency.max(1));
            // `buffer_unordered` starts members only as it is polled, so a stop takes
            // effect before the next one starts.
            while let Some((index, report)) = in_flight.next().await {
                stopped = self.settle(index, report, &mut tally, &mut reports, reporter);
                if stopped.is_some() {
                    break;
                }
            }
            // Members already started run to their end (none is abandoned half way).
            drop(in_flight);
            if stopped.is_some() {
                break;
            }
            if let Some(&following) = waves.get(wave + 1) {
                let clean = tally.failed == failures_before;
                if !clean || !reporter.wave_done(*end, following - end, &tally) {
                    stopped = Some(Stopped::WaveNotConfirmed { after: *end });
                    break;
                }
            }
        }
        reporter.finished(&tally);
        let group = known
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .group;
        RolloutReport {
            members: reports
                .into_iter()
                .zip(self.members)
                .map(|(report, member)| {
                    report.unwrap_or_else(|| {
                        MemberReport::new(member, MemberOutcome::NotStarted, PathTaken::None)
                    })
                })
                .collect(),
            tally,
            stopped,
            pending: group.map(|g| g.pending).unwrap_or_default(),
        }
    }

    /// Counts and reports a member that finished, and says whether the rollout stops here.
    fn settle(
        &self,
        index: usize,
        report: MemberReport,
        tally: &mut Tally,
        reports: &mut [Option<MemberReport>],
        reporter: &dyn RolloutReporter,
    ) -> Option<Stopped> {
        tally.count(report.outcome);
        reporter.member(&report, tally);
        reports[index] = Some(report);
        if tally.failed >= self.options.max_failures {
            Some(Stopped::Failures {
                failed: tally.failed,
            })
        } else if self.stop.load(Ordering::SeqCst) {
            Some(Stopped::Interrupted)
        } else {
            None
        }
    }

    /// Wave ends, increasing, the last one every member.
    fn waves(&self) -> Vec<usize> {
        let total = self.members.len();
        let mut ends: Vec<usize> = self
            .options
            .waves
            .iter()
            .map(|end| (*end).min(total))
            .filter(|end| *end > 0)
            .collect();
        ends.push(total);
        ends.dedup();
        ends
    }

    #[expect(
        clippy::unused_self,
        reason = "read as `self.known(…)` beside the other steps"
    )]
    fn known<'k>(&self, known: &'k Mutex<Known>) -> std::sync::MutexGuard<'k, Known> {
        known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn one(
        &self,
        member: &MemberName,
        holder: &Holder,
        known: &Mutex<Known>,
    ) -> MemberReport {
        // A member that has not started when Ctrl-C comes does not start.
        if self.stop.load(Ordering::SeqCst) {
            return MemberReport::new(member, MemberOutcome::NotStarted, PathTaken::None);
        }
        let backend = match (self.connect)(member) {
            Ok(backend) => backend,
            Err(error) => {
                return MemberReport::new(member, MemberOutcome::Failed, PathTaken::None)
                    .because(format!("{error:#}"));
            }
        };
        let backend = backend.as_ref();
        let guess = || {
            let known = self.known(known);
            (!known.read_first).then(|| known.group.clone()).flatten()
        };
        let mut reading = None;
        if guess().is_none() {
            // Members are read one at a time while the guess is "finished" (a rerun's first
            // stretch): the member that finds where the finished ones end flips the guess
            // before the next is read, instead of every member in flight being read and then
            // written.
            reading = Some(known_reading(known).lock_owned().await);
        }
        if let Some(group) = guess() {
            drop(reading);
            return match self.express(backend, &group, holder).await {
                Ok(done) => self.promoted(member, &group, &done, PathTaken::Express, known),
                Err(error) => {
                    self.after_abort(member, backend, holder, error, known)
                        .await
                }
            };
        }
        let read = match self.ledgers.read_with_schema(backend, true).await {
            Ok(read) => read,
            Err(error) => {
                return MemberReport::new(member, MemberOutcome::Failed, PathTaken::None)
                    .because(format!("could not read it: {error}"));
            }
        };
        let report = self.after_read(member, backend, holder, read, known).await;
        drop(reading);
        report
    }

    async fn express(
        &self,
        backend: &dyn Backend,
        group: &GroupPlan,
        holder: &Holder,
    ) -> Result<ExpressDone, BackendError> {
        let pending: Vec<&Migration> = group
            .pending
            .iter()
            .filter_map(|name| self.set.get(name))
            .collect();
        let session = ExpressSession {
            ledgers: self.ledgers,
            expected: &group.expected,
            pending: &pending,
            holder,
            actor: &self.options.actor,
            command: &self.options.command,
        };
        let Some(batch) = session.batch() else {
            return Err(BackendError::Unavailable {
                message: "the schema is too large to guard in one statement".to_owned(),
                hint: None,
            });
        };
        batch.send(backend, self.ledgers).await
    }

    /// A member whose express batch committed: verified from the batch's own reads.
    fn promoted(
        &self,
        member: &MemberName,
        group: &GroupPlan,
        done: &ExpressDone,
        path: PathTaken,
        known: &Mutex<Known>,
    ) -> MemberReport {
        let mut report = MemberReport::new(member, MemberOutcome::Promoted, path);
        report.applied.clone_from(&group.pending);
        report.rollback_point.clone_from(&done.point);
        let differences = crate::core::write::migrate::verify_promotion(
            self.set,
            self.ledgers,
            self.source,
            &done.snapshot,
            &done.state,
            &group.pending,
        )
        .differences;
        if differences.is_empty() {
            let mut known = self.known(known);
            if known.head.is_none() {
                known.head = Some(fingerprint::of(&done.snapshot, &done.state, self.ledgers));
                known.head_snapshot = Some(done.snapshot.clone());
            }
            known.guess(&member.name, false);
            // Each member found in the group state counts for it against other states.
            *known
                .seen
                .entry(group.expected.fingerprint.clone())
                .or_default() += 1;
        } else {
            report.outcome = MemberOutcome::Failed;
            report.reason = Some(format!(
                "written, but not verified against `{}`: {}",
                self.source.name,
                differences.join("; ")
            ));
        }
        report
    }

    /// The express batch did not commit (or its answer was lost): the member is read back and
    /// what it holds decides.
    async fn after_abort(
        &self,
        member: &MemberName,
        backend: &dyn Backend,
        holder: &Holder,
        error: BackendError,
        known: &Mutex<Known>,
    ) -> MemberReport {
        let read = match self.ledgers.read_with_schema(backend, true).await {
            Ok(read) => read,
            Err(read_error) => {
                return MemberReport::new(member, MemberOutcome::Failed, PathTaken::Express)
                    .because(format!(
                        "{error}; then it could not be read back ({read_error}): run `d1ctl status {} --member {}`",
                        self.env.name, member.name
                    ));
            }
        };
        if read.lock.as_ref().is_some_and(|l| l.holder.id == holder.id) {
            // A batch that stopped part way (were batches ever not atomic) left our lease:
            // it is released now rather than left to expire.
            let _ = backend.batch(&[lock::release_statement(holder)]).await;
        }
        let fingerprint = fingerprint::of(&read.snapshot, &read.state, self.ledgers);
        let (group, head) = {
            let known = self.known(known);
            (known.group.clone(), known.head.clone())
        };
        if head.as_deref() == Some(fingerprint.as_str()) {
            let mut report = MemberReport::new(member, MemberOutcome::UpToDate, PathTaken::Read);
            if matches!(error, BackendError::OutcomeUnknown { .. }) {
                // Its answer was lost, but it committed: the ledger says so.
                report.outcome = MemberOutcome::Promoted;
                report.path = PathTaken::Express;
                report.reason =
                    Some("its answer was lost; the ledger shows it committed".to_owned());
            } else {
                self.known(known).guess(&member.name, true);
            }
            return report;
        }
        if let Some(group) = group.filter(|g| g.expected.fingerprint == fingerprint) {
            // The guard held: the member was in the group state, so the batch failed on its
            // own (the SQL, the row guard, or a lock someone else holds).
            if let Some(lease) = read
                .lock
                .as_ref()
                .filter(|l| l.holder.id != holder.id && !l.expired())
            {
                return MemberReport::new(member, MemberOutcome::Refused, PathTaken::Express)
                    .because(format!(
                        "locked by {} on {} (`{}`)",
                        lease.holder.id, lease.holder.host, lease.holder.command
                    ));
            }
            let mut report = MemberReport::new(member, MemberOutcome::Failed, PathTaken::Express)
                .because(error.to_string());
            report.state_after = Some(format!(
                "as before: {} (nothing of `{}` committed)",
                self.applied_words(&read),
                group.pending.join("`, `")
            ));
            return report;
        }
        self.other_state(member, backend, holder, read, known).await
    }

    /// A member read before writing.
    async fn after_read(
        &self,
        member: &MemberName,
        backend: &dyn Backend,
        holder: &Holder,
        read: EnvironmentRead,
        known: &Mutex<Known>,
    ) -> MemberReport {
        let fingerprint = fingerprint::of(&read.snapshot, &read.state, self.ledgers);
        let (group, head) = {
            let known = self.known(known);
            (known.group.clone(), known.head.clone())
        };
        if head.as_deref() == Some(fingerprint.as_str()) {
            self.known(known).guess(&member.name, true);
            return MemberReport::new(member, MemberOutcome::UpToDate, PathTaken::Read);
        }
        if let Some(group) = group.filter(|g| g.expected.fingerprint == fingerprint) {
            return self
                .read_then_express(member, backend, holder, &group, known)
                .await;
        }
        let plan = self.plan_of(&read);
        if plan.pending.is_empty() && !plan.blocked() {
            let mut known = self.known(known);
            known.head.get_or_insert(fingerprint);
            known.guess(&member.name, true);
            return MemberReport::new(member, MemberOutcome::UpToDate, PathTaken::Read);
        }
        if !plan.blocked() && self.known(known).group.is_none() {
            // The first member found needing work sets the group state.
            let group = GroupPlan {
                expected: Expected {
                    fingerprint: fingerprint.clone(),
                    state: read.state.clone(),
                    snapshot: read.snapshot.clone(),
                },
                pending: plan.pending.iter().map(|p| p.name.clone()).collect(),
            };
            self.known(known).group.get_or_insert(group.clone());
            return self
                .read_then_express(member, backend, holder, &group, known)
                .await;
        }
        self.other_state(member, backend, holder, read, known).await
    }

    async fn read_then_express(
        &self,
        member: &MemberName,
        backend: &dyn Backend,
        holder: &Holder,
        group: &GroupPlan,
        known: &Mutex<Known>,
    ) -> MemberReport {
        match self.express(backend, group, holder).await {
            Ok(done) => self.promoted(member, group, &done, PathTaken::ReadThenExpress, known),
            Err(error) => {
                self.after_abort(member, backend, holder, error, known)
                    .await
            }
        }
    }

    fn plan_of(&self, read: &EnvironmentRead) -> promote::Plan {
        let view = View {
            name: self.env.name.clone(),
            statuses: ledger::compare(self.set, &read.state, self.set.layout),
            state: read.state.clone(),
            snapshot: read.snapshot.clone(),
            lock: read.lock.clone(),
            is_folder: false,
        };
        promote::plan(
            self.set,
            self.source,
            &view,
            BackendKind::D1,
            &self.ledgers.ignored_tables(),
            None,
        )
    }

    fn applied_words(&self, read: &EnvironmentRead) -> String {
        let applied: Vec<String> = ledger::compare(self.set, &read.state, self.set.layout)
            .into_iter()
            .filter(ledger::MigrationStatus::is_applied)
            .map(|s| s.name)
            .collect();
        match applied.last() {
            Some(last) => format!("{} applied, the last `{last}`", applied.len()),
            None => "no migration applied".to_owned(),
        }
    }

    /// A member in a state of its own: it takes the write engine's full path. A state more
    /// common than the group's becomes the group state (the first member may have been the
    /// odd one).
    async fn other_state(
        &self,
        member: &MemberName,
        backend: &dyn Backend,
        holder: &Holder,
        read: EnvironmentRead,
        known: &Mutex<Known>,
    ) -> MemberReport {
        let fingerprint = fingerprint::of(&read.snapshot, &read.state, self.ledgers);
        if let Some(drift) = self.drifted(&fingerprint, &read.snapshot, known) {
            return MemberReport::new(member, MemberOutcome::Refused, PathTaken::Read)
                .because(drift);
        }
        let plan = self.plan_of(&read);
        if !plan.blocked() && !plan.pending.is_empty() {
            let mut known = self.known(known);
            let count = {
                let entry = known.seen.entry(fingerprint.clone()).or_default();
                *entry += 1;
                *entry
            };
            let group_count = known
                .group
                .as_ref()
                .and_then(|g| known.seen.get(&g.expected.fingerprint))
                .copied()
                .unwrap_or(0);
            if count > group_count {
                known.group = Some(GroupPlan {
                    expected: Expected {
                        fingerprint,
                        state: read.state.clone(),
                        snapshot: read.snapshot.clone(),
                    },
                    pending: plan.pending.iter().map(|p| p.name.clone()).collect(),
                });
            }
        }
        self.full_path(member, backend, holder).await
    }

    /// A member whose ledgers record what another state's record, in another schema: its
    /// schema drifted from the other members'. (The promotion gates judge the source, not the
    /// target; on a fleet the other members are what a member is compared with.)
    fn drifted(
        &self,
        fingerprint: &str,
        snapshot: &Snapshot,
        known: &Mutex<Known>,
    ) -> Option<String> {
        let (schema_half, ledger_half) = fingerprint::halves(fingerprint);
        let known = self.known(known);
        let states = known
            .group
            .iter()
            .map(|g| (g.expected.fingerprint.as_str(), &g.expected.snapshot))
            .chain(known.head.as_deref().zip(known.head_snapshot.as_ref()));
        for (other, other_snapshot) in states {
            let (other_schema, other_ledgers) = fingerprint::halves(other);
            if other_ledgers == ledger_half && other_schema != schema_half {
                let ignore = self.ledgers.ignored_tables();
                let differences = match (
                    Schema::build(other_snapshot, &ignore),
                    Schema::build(snapshot, &ignore),
                ) {
                    (Ok(expected), Ok(actual)) => schema::diff(&expected, &actual)
                        .into_iter()
                        .map(|c| c.summary)
                        .collect::<Vec<_>>()
                        .join("; "),
                    _ => "its schema text differs".to_owned(),
                };
                return Some(format!(
                    "drifted: its ledger matches the other members' but its schema does not ({differences}); `d1ctl drift {} --member NAME` shows it",
                    self.env.name
                ));
            }
        }
        None
    }

    async fn full_path(
        &self,
        member: &MemberName,
        backend: &dyn Backend,
        holder: &Holder,
    ) -> MemberReport {
        let job = MigrateJob {
            set: self.set,
            ledgers: self.ledgers,
            env: &self.env.name,
            source: Source::Rung(self.source),
            all_in_one: false,
            actor: &self.options.actor,
            initial: Mutex::new(None),
            extra_gates: Vec::new(),
        };
        let target = write::Target {
            backend,
            env: self.env,
            backups: self.backups,
        };
        let options = write::Options {
            command: self.options.command.clone(),
            actor: self.options.actor.clone(),
            // The fleet was confirmed once, before its first member.
            yes: true,
            dry_run: false,
            session: Some(holder.id.clone()),
        };
        let report = MemberReport::new(member, MemberOutcome::Failed, PathTaken::Full);
        let session = match write::run(&target, &job, &options, &super::Unattended).await {
            Ok(session) => session,
            Err(error @ WriteError::Locked(_)) => {
                return MemberReport {
                    outcome: MemberOutcome::Refused,
                    ..report
                }
                .because(error.to_string());
            }
            Err(error) => return report.because(format!("{error}: {}", error_chain(&error))),
        };
        let blocking = |plan: &MigratePlan| {
            plan.promotion
                .iter()
                .flat_map(|p| p.gates.iter().filter(|g| !g.passed))
                .map(|g| format!("{}: {}", g.name, g.detail))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut report = report;
        report.rollback_point = session.point.as_ref().map(|p| p.point.clone());
        if let Some(done) = &session.done {
            report.applied = done.applied.iter().map(|a| a.name.clone()).collect();
        }
        match session.outcome {
            Outcome::UpToDate => report.outcome = MemberOutcome::UpToDate,
            Outcome::Blocked => {
                report.outcome = MemberOutcome::Refused;
                report.reason = Some(blocking(&session.plan));
            }
            Outcome::Refused | Outcome::Planned => {
                report.outcome = MemberOutcome::Refused;
                report.reason.clone_from(&session.refusal);
            }
            Outcome::Written => match &session.verified {
                Some(Ok(verified)) if verified.differences.is_empty() => {
                    report.outcome = MemberOutcome::Promoted;
                }
                Some(Ok(verified)) => {
                    report.reason = Some(format!(
                        "written, but not verified against `{}`: {}",
                        verified.against,
                        verified.differences.join("; ")
                    ));
                }
                Some(Err(message)) => report.reason = Some(message.clone()),
                None => report.outcome = MemberOutcome::Promoted,
            },
            Outcome::Failed => {
                if let Some(failure) = &session.failure {
                    report.reason = Some(failure.unit.headline());
                    report.state_after = Some(match &failure.after {
                        Ok(after) if after.applied.is_empty() => "no migration applied".to_owned(),
                        Ok(after) => format!(
                            "{} applied, the last `{}`",
                            after.applied.len(),
                            after.applied.last().map_or("", String::as_str)
                        ),
                        Err(error) => format!("unreadable: {error}"),
                    });
                }
            }
        }
        report
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = Vec::new();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push(next.to_string());
        cause = next.source();
    }
    text.join(": ")
}
