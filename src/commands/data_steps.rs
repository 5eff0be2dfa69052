//! What `step run` and `promote` share about data steps: the steps of the project, the rung
//! below's record of them, what a command step is given, and one run through the engine with
//! its report.

use serde::Serialize;

use crate::backend::{Backend, BackendKind, RollbackPoint};
use crate::cli::printer::Style;
use crate::cli::reporter::WriteProgress;
use crate::cli::step_progress::StepProgress;
use crate::commands::{Context, WriteRequest, actor, simulator_mark};
use crate::core::ledger::Ledgers;
use crate::core::ledger::MigrationStatus;
use crate::core::migrations::MigrationSet;
use crate::core::registry::{Environment, Registry, Target};
use crate::core::steps::plan::{Below, PlannedStep};
use crate::core::steps::{self, Body, Decision, Rerun, Step, StepRecord, StepState, StepStatus};
use crate::core::write::step::{CommandEnvironment, StepJob, StepPlan, TOKEN_FOR_COMMAND};
use crate::core::write::{Failure, Outcome};
use crate::d1::client::DEFAULT_BASE_URL;

/// One step on one env, for `--format json` and the exit code.
#[derive(Debug, Serialize)]
pub(crate) struct StepReport {
    pub(crate) step: String,
    pub(crate) environment: String,
    pub(crate) kind: &'static str,
    pub(crate) after: String,
    /// `ran`, `done` (finished before), `waiting`, `blocked`, `planned`, `refused`, `failed`.
    pub(crate) outcome: &'static str,
    /// What the step was on the env before this run.
    pub(crate) state: StepState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hint: Option<String>,
    /// Rows the step will touch (chunked: rows left), counted before it ran.
    pub(crate) estimated_rows: Option<i64>,
    /// The step's record on the env after this run (or as read back after a failure).
    pub(crate) record: Option<StepRecord>,
    /// Requests of the run that committed.
    pub(crate) requests: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rollback_point: Option<RollbackPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rollback_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) verified: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) messages: Vec<String>,
}

impl StepReport {
    /// Whether the user must act (exit 1): a step that was asked for and did not finish.
    pub(crate) fn must_act(&self) -> bool {
        matches!(self.outcome, "blocked" | "refused" | "failed") || self.verified == Some(false)
    }
}

/// One run of one step, as a command asks for it.
pub(crate) struct StepRun<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) set: &'a MigrationSet,
    pub(crate) ledgers: &'a Ledgers,
    pub(crate) env: &'a Environment,
    pub(crate) backend: &'a dyn Backend,
    pub(crate) step: &'a Step,
    /// The rung below and its record of the step (`None`: the env's source is the folder).
    pub(crate) source: Option<(&'a str, Option<StepRecord>)>,
    /// The step's status and estimate when the caller just read them (else read here).
    pub(crate) read: Option<(StepStatus, Option<i64>)>,
    pub(crate) rerun: Rerun,
    pub(crate) yes: bool,
    pub(crate) dry_run: bool,
    /// What the command recorded with the lock: `step run NAME --env ENV`.
    pub(crate) command: String,
}

impl Context {
    /// The project's `[[step]]`s, their files read and checked against the migrations.
    #[expect(
        clippy::unused_self,
        reason = "beside `registry()` and `migrations()`, where commands load the project"
    )]
    pub(crate) fn steps(
        &self,
        registry: &Registry,
        set: &MigrationSet,
    ) -> anyhow::Result<Vec<Step>> {
        Ok(steps::load(registry, set)?)
    }

    /// The rung below `env` and its `_d1ctl_steps` (one request); `None` for the first rung,
    /// whose source is the migrations folder.
    pub(crate) async fn steps_below(
        &self,
        registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<Option<(String, Vec<StepRecord>)>> {
        let Some(below) = registry.rung_before(&env.name) else {
            return Ok(None);
        };
        let backend = self.backend(registry, below)?;
        let records = steps::ledger::read(backend.as_ref())
            .await
            .map_err(|error| {
                anyhow::Error::from(error).context(format!(
                    "could not read the data steps of `{}`, the rung below `{}`",
                    below.name, env.name
                ))
            })?;
        Ok(Some((below.name.clone(), records)))
    }

    /// What a promotion to `env` would do with each step once `pending` is applied (the
    /// target's `migrations` as read), with the rung below's records; nothing is read when the
    /// project has no step. `plan`, `promote` and `checklist` show it.
    pub(crate) async fn plan_steps(
        &self,
        registry: &Registry,
        env: &Environment,
        steps: &[Step],
        backend: &dyn Backend,
        migrations: &[MigrationStatus],
        pending: &[String],
    ) -> anyhow::Result<(Below, Vec<PlannedStep>)> {
        if steps.is_empty() {
            return Ok((None, Vec::new()));
        }
        let below = self.steps_below(registry, env).await?;
        let planned =
            steps::plan::preview(steps, &env.name, backend, migrations, pending, &below).await?;
        Ok((below, planned))
    }

    /// What a command step gets: the env's identity, and its token only when it needs it.
    fn command_environment(
        &self,
        registry: &Registry,
        env: &Environment,
        step: &Step,
    ) -> anyhow::Result<Option<CommandEnvironment>> {
        let Body::Command { needs_token, .. } = &step.body else {
            return Ok(None);
        };
        let mut variables = vec![
            ("D1CTL_ENV".to_owned(), env.name.clone()),
            ("D1CTL_BACKEND".to_owned(), env.kind().to_string()),
            ("D1CTL_STEP".to_owned(), step.name.clone()),
        ];
        let mut token = None;
        match &env.target {
            Target::Sqlite(target) => {
                let path =
                    std::path::absolute(&target.path).unwrap_or_else(|_| target.path.clone());
                variables.push(("D1CTL_SQLITE_PATH".to_owned(), path.display().to_string()));
            }
            Target::D1(_) => {
                let backend = self.d1_backend(registry, env)?;
                let config = backend.client().config();
                variables.extend([
                    ("D1CTL_ACCOUNT_ID".to_owned(), config.account_id.clone()),
                    ("D1CTL_DATABASE_ID".to_owned(), config.database_id.clone()),
                    (
                        "D1CTL_DATABASE_NAME".to_owned(),
                        config.database_name.clone(),
                    ),
                ]);
                if config.base_url != DEFAULT_BASE_URL {
                    variables.push(("D1CTL_API_BASE_URL".to_owned(), config.base_url.clone()));
                }
                if *needs_token {
                    token = Some(config.token.clone());
                }
            }
        }
        Ok(Some(CommandEnvironment {
            folder: if registry.root.as_os_str().is_empty() {
                std::path::PathBuf::from(".")
            } else {
                registry.root.clone()
            },
            variables,
            token,
            withheld: withheld_variables(env),
        }))
    }

    /// Runs one step on one env through the write engine, and prints what happened.
    pub(crate) async fn run_step(&self, run: StepRun<'_>) -> anyhow::Result<StepReport> {
        let printer = &self.printer;
        let env = run.env;
        let step = run.step;
        let (status, estimate) = match run.read {
            Some(read) => read,
            None => {
                crate::core::write::step::read_status(run.backend, run.set, run.ledgers, step, &[])
                    .await
                    .map_err(|error| {
                        anyhow::Error::from(error)
                            .context(format!("could not read the data steps of `{}`", env.name))
                    })?
            }
        };
        let progress = StepProgress::new(printer, &step.name);
        let run_by = actor();
        let job = StepJob {
            step,
            set: run.set,
            ledgers: run.ledgers,
            env: &env.name,
            source: run.source,
            rerun: run.rerun,
            actor: &run_by,
            command_environment: self.command_environment(run.registry, env, step)?,
            reporter: &progress,
            initial: std::sync::Mutex::new(None),
        };
        let plan = job.plan_from(status, estimate);
        *job.initial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(plan.clone());
        let kind = run.backend.kind();
        let write_progress = WriteProgress::new(
            printer,
            &env.name,
            format!("d1ctl {}", run.command),
            |plan: &StepPlan, _changed| print_plan(self, plan, step, env, kind),
        );
        let mut report = StepReport {
            step: step.name.clone(),
            environment: env.name.clone(),
            kind: step.kind(),
            after: step.after.clone(),
            outcome: "planned",
            state: plan.status.state,
            why: None,
            hint: None,
            estimated_rows: plan.estimate,
            record: plan.status.record.clone(),
            requests: 0,
            rollback_point: None,
            rollback_command: None,
            verified: None,
            messages: Vec::new(),
        };
        let request = WriteRequest {
            registry: run.registry,
            env,
            backend: run.backend,
            command: run.command.clone(),
            yes: run.yes,
            dry_run: run.dry_run,
        };
        let Ok(session) = self.write(request, &job, &write_progress).await? else {
            report.outcome = "refused";
            return Ok(report);
        };
        match &session.plan.decision {
            Decision::Wait { why } => report.why = Some(why.clone()),
            Decision::Blocked { why, hint } => {
                report.why = Some(why.clone());
                report.hint = Some(hint.clone());
            }
            Decision::Run | Decision::Done => {}
        }
        report.rollback_point.clone_from(&session.point);
        let rollback_command = session
            .point
            .as_ref()
            .map(|point| format!("d1ctl rollback {} --bookmark {}", env.name, point.point));
        if let Some(done) = &session.done {
            report.requests = done.requests;
            if done.record.is_some() {
                report.record.clone_from(&done.record);
            }
        }
        match session.outcome {
            Outcome::UpToDate => {
                report.outcome = "done";
                printer.message(&format!(
                    "step `{}` already finished on `{}`{}: nothing to do",
                    step.name,
                    env.name,
                    describe_record(report.record.as_ref())
                ));
            }
            Outcome::Blocked => match &session.plan.decision {
                Decision::Wait { why } => {
                    report.outcome = "waiting";
                    printer.message(&format!(
                        "step `{}` waits on `{}`: {why}",
                        step.name, env.name
                    ));
                }
                Decision::Blocked { why, hint } => {
                    report.outcome = "blocked";
                    printer.error(&format!("{why}; nothing was run"), Some(hint));
                }
                Decision::Run | Decision::Done => report.outcome = "blocked",
            },
            Outcome::Planned => {
                printer.message(&format!(
                    "dry run: would take a {} and run step `{}` on `{}`",
                    if kind == BackendKind::D1 {
                        "Time Travel bookmark"
                    } else {
                        "backup under .d1ctl/backups"
                    },
                    step.name,
                    env.name
                ));
            }
            Outcome::Refused => {
                report.outcome = "refused";
                if let Some(refusal) = &session.refusal {
                    report.messages.push(format!("{refusal}; nothing was run"));
                }
            }
            Outcome::Failed => {
                report.outcome = "failed";
                let wrote = session.may_have_written(&job);
                if let Some(failure) = &session.failure {
                    if let Ok(after) = &failure.after {
                        report.record.clone_from(after);
                    }
                    report
                        .messages
                        .extend(failure_lines(self, env, step, failure));
                }
                if let Some(command) = rollback_command.as_deref().filter(|_| wrote) {
                    report.rollback_command = Some(command.to_owned());
                    printer.message(&format!(
                        "{}: {command}",
                        printer.paint(Style::Cyan, "rollback")
                    ));
                }
            }
            Outcome::Written => {
                report.outcome = "ran";
                report.rollback_command.clone_from(&rollback_command);
                match &session.verified {
                    Some(Ok(verified)) => {
                        if verified.record.is_some() {
                            report.record.clone_from(&verified.record);
                        }
                        report.verified = Some(verified.differences.is_empty());
                        if verified.differences.is_empty() {
                            printer.message(&format!(
                                "{} step `{}` finished on `{}`{}{}",
                                printer.paint(Style::Green, "verified:"),
                                step.name,
                                env.name,
                                describe_record(report.record.as_ref()),
                                match verified.remaining {
                                    Some(0) => "; no row is left for its statement",
                                    _ => "",
                                }
                            ));
                        } else {
                            printer.error(
                                &format!(
                                    "step `{}` ran on `{}`, but:\n  {}",
                                    step.name,
                                    env.name,
                                    verified.differences.join("\n  ")
                                ),
                                Some(&format!("`d1ctl status {}` shows its steps", env.name)),
                            );
                            report.messages.extend(verified.differences.iter().cloned());
                        }
                    }
                    Some(Err(error)) => {
                        report.verified = Some(false);
                        printer.error(
                            &format!("step `{}` ran on `{}`, but {error}", step.name, env.name),
                            Some(&format!("`d1ctl status {}` shows its steps", env.name)),
                        );
                        report.messages.push(error.clone());
                    }
                    None => {}
                }
                if let Some(command) = &rollback_command {
                    printer.message(&format!(
                        "{}: {command}",
                        printer.paint(Style::Cyan, "rollback")
                    ));
                }
            }
        }
        Ok(report)
    }
}

/// ` (10000 rows in 20 batches, by me@host at …)`: what a record says of a run.
pub(crate) fn describe_record(record: Option<&StepRecord>) -> String {
    let Some(record) = record else {
        return String::new();
    };
    let mut parts = Vec::new();
    match (record.rows, record.kind.as_str()) {
        (Some(rows), "chunked") => parts.push(format!(
            "{rows} rows in {}",
            crate::commands::plural(usize::try_from(record.batches).unwrap_or(0), "batch")
        )),
        (Some(rows), _) => parts.push(format!("{rows} rows")),
        (None, _) => {}
    }
    parts.push(format!("by {}", record.run_by));
    parts.push(format!(
        "at {}",
        record.finished_at.as_deref().unwrap_or(&record.started_at)
    ));
    format!(" ({})", parts.join(", "))
}

fn print_plan(
    context: &Context,
    plan: &StepPlan,
    step: &Step,
    env: &Environment,
    kind: BackendKind,
) {
    let what = match &step.body {
        Body::Sql { statements } => format!(
            "SQL, {}",
            crate::commands::plural(statements.len(), "statement")
        ),
        Body::Chunked { chunk, .. } => format!("chunked SQL, {} rows per batch", chunk.limit),
        Body::Command { command, .. } => format!("command `{command}`"),
    };
    let mut out = format!(
        "step `{}` on `{}`{} ({what}; after `{}`): {}{}\n",
        step.name,
        env.name,
        simulator_mark(env),
        step.after,
        plan.status.state.as_str(),
        describe_record(plan.status.record.as_ref())
    );
    if let Some(rows) = plan.estimate {
        out.push_str(&format!(
            "  estimated rows: {rows}{}\n",
            if matches!(step.body, Body::Chunked { .. }) {
                " still to do"
            } else {
                ""
            }
        ));
    }
    match &plan.decision {
        Decision::Run => out.push_str(&format!(
            "  rollback point: {} taken before the first write\n",
            if kind == BackendKind::D1 {
                "a Time Travel bookmark"
            } else {
                "a backup under .d1ctl/backups/"
            }
        )),
        Decision::Wait { why } => out.push_str(&format!("  waits: {why}\n")),
        Decision::Done | Decision::Blocked { .. } => {}
    }
    context.printer.message(out.trim_end());
}

fn failure_lines(
    context: &Context,
    env: &Environment,
    step: &Step,
    failure: &Failure<Option<StepRecord>>,
) -> Vec<String> {
    let printer = &context.printer;
    let headline = failure.unit.headline();
    let state = match &failure.after {
        Ok(None) => format!(
            "`{}` has no record of step `{}`: nothing of it committed",
            env.name, step.name
        ),
        Ok(Some(record)) if record.finished() => format!(
            "`{}` records step `{}` as finished{}",
            env.name,
            step.name,
            describe_record(Some(record))
        ),
        Ok(Some(record)) if record.kind == "chunked" => format!(
            "`{}` records step `{}` as partial: {} rows in {} committed; `d1ctl step run {} --env {}` continues it",
            env.name,
            step.name,
            record.rows.unwrap_or(0),
            crate::commands::plural(usize::try_from(record.batches).unwrap_or(0), "batch"),
            step.name,
            env.name
        ),
        Ok(Some(record)) => format!(
            "`{}` records step `{}` as started at {} and not finished: interrupted{}",
            env.name,
            step.name,
            record.started_at,
            record
                .ended
                .as_ref()
                .map(|how| format!(" ({how})"))
                .unwrap_or_default()
        ),
        Err(error) => format!(
            "could not read `{}` back after the failure ({error}); `d1ctl status {}` shows its steps",
            env.name, env.name
        ),
    };
    let hint = match &step.body {
        Body::Command { .. } => format!(
            "check what the command did to `{}`, then `d1ctl step run {} --env {} --rerun-interrupted`",
            env.name, step.name, env.name
        ),
        _ => format!(
            "fix the step and run `d1ctl step run {} --env {}` again",
            step.name, env.name
        ),
    };
    printer.error(&format!("{headline}\n{state}"), Some(&hint));
    vec![headline, state]
}

/// Credential variables of d1ctl's own environment a command step does not inherit: the
/// token goes to it only as `CLOUDFLARE_API_TOKEN`, and only when the step says so.
fn withheld_variables(env: &Environment) -> Vec<String> {
    let custom = match &env.target {
        Target::D1(target) => target.token_env.clone(),
        Target::Sqlite(_) => None,
    };
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name == TOKEN_FOR_COMMAND
                || name.starts_with(crate::credentials::TOKEN_VARIABLE)
                || name == "CLOUDFLARE_API_KEY"
                || custom.as_deref() == Some(name.as_str())
        })
        .collect();
    names.sort();
    names
}
