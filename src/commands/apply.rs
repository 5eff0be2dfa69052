//! `d1ctl apply ENV`: apply every pending migration, each atomically with its ledger rows.

use serde::Serialize;

use crate::cli::ApplyArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::WriteProgress;
use crate::commands::{
    Context, ExitStatus, UserError, WriteRequest, actor, display_path, plural, write_failure,
};
use crate::core::apply::{Applied, Problem};
use crate::core::ledger::{Ledgers, State};
use crate::core::migrations::MigrationSet;
use crate::core::promote::read_view;
use crate::core::write::migrate::{MigrateJob, MigratePlan, Source};
use crate::core::write::{self, Outcome};

#[derive(Serialize)]
struct ApplyReport<'a> {
    environment: &'a str,
    backend: String,
    location: String,
    simulator: bool,
    dry_run: bool,
    applied: Vec<Applied>,
    /// Applied migrations whose answer was lost and whose commit the ledger's re-read showed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recovered: Vec<String>,
    pending: Vec<PendingMigration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_point: Option<crate::backend::RollbackPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureReport>,
}

#[derive(Serialize)]
struct PendingMigration {
    name: String,
    statements: usize,
    bytes: usize,
}

#[derive(Serialize)]
struct FailureReport {
    migration: String,
    statement: Option<usize>,
    line: Option<usize>,
    kind: write::FailureKind,
    message: String,
    not_attempted: Vec<String>,
}

pub(crate) async fn apply(args: ApplyArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let env = registry.resolve(&args.environment)?;
    if env.protected {
        return Err(UserError::new(
            format!(
                "env `{}` is protected; `apply` does not write to protected environments",
                env.name
            ),
            format!(
                "promote to it with gates and a confirmation: `d1ctl promote --to {}`",
                env.name
            ),
        )
        .into());
    }
    let set = context.migrations(&registry)?;
    let (backend, identity) = context.open_target(&registry, env, true).await?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let view = read_view(
        &ledgers,
        &set,
        backend.as_ref(),
        &env.name,
        identity.known_empty,
    )
    .await?;
    let applied_by = actor();
    let job = MigrateJob {
        set: &set,
        ledgers: &ledgers,
        env: &env.name,
        source: Source::Folder,
        all_in_one: false,
        actor: &applied_by,
        initial: std::sync::Mutex::new(None),
        extra_gates: Vec::new(),
    };
    let first = job.plan_read(view, backend.kind());
    let pending_report = pending_of(&set, &first);
    *job.initial
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(first);

    let env_name = env.name.clone();
    let set_ref = &set;
    let progress = WriteProgress::new(
        printer,
        &env.name,
        format!("d1ctl apply {}", env.name),
        move |plan: &MigratePlan, _changed| show_plan(context, set_ref, &env_name, plan),
    );
    let request = WriteRequest {
        registry: &registry,
        env,
        backend: backend.as_ref(),
        command: format!("apply {}", env.name),
        yes: false,
        dry_run: args.dry_run,
    };
    let report = match context.write(request, &job, &progress).await? {
        Ok(report) => report,
        Err(status) => return Ok(status),
    };
    let mut json = ApplyReport {
        environment: &env.name,
        backend: backend.kind().to_string(),
        location: backend.location(),
        simulator: env.is_simulated(),
        dry_run: args.dry_run,
        applied: Vec::new(),
        recovered: Vec::new(),
        pending: pending_of(&set, &report.plan),
        rollback_point: report.point.clone(),
        failure: None,
    };
    if report.outcome == Outcome::Planned {
        json.pending = pending_report;
    }
    let status = match report.outcome {
        Outcome::Blocked if !report.plan.problems.is_empty() => {
            printer.message("nothing was applied");
            ExitStatus::Error
        }
        Outcome::Blocked => {
            printer.error(
                "refusing to apply: an applied migration's file no longer matches what ran",
                Some("restore the file from version control and put the change in a new migration (`d1ctl new NAME`)"),
            );
            return Ok(ExitStatus::Failure);
        }
        Outcome::UpToDate => {
            if !printer.is_json() {
                printer.message(&format!("`{}` is up to date: nothing to apply", env.name));
            }
            ExitStatus::Success
        }
        Outcome::Planned => {
            if !printer.is_json() {
                let mut out = format!(
                    "would apply {} to `{}`:\n",
                    plural(json.pending.len(), "migration"),
                    env.name
                );
                for migration in &json.pending {
                    out.push_str(&format!(
                        "  {} ({})\n",
                        migration.name,
                        plural(migration.statements, "statement")
                    ));
                }
                printer.data(&out)?;
            }
            ExitStatus::Success
        }
        Outcome::Refused => ExitStatus::Failure,
        Outcome::Written | Outcome::Failed => {
            if let Some(done) = &report.done {
                context.report_applied(done, &env.name);
                json.applied.clone_from(&done.applied);
                json.recovered.clone_from(&done.recovered);
            }
            if let Some(failure) = &report.failure {
                let wrote = report.may_have_written(&job);
                let rollback =
                    report.point.as_ref().filter(|_| wrote).map(|point| {
                        format!("d1ctl rollback {} --bookmark {}", env.name, point.point)
                    });
                let file = match &failure.unit {
                    write::UnitFailure::Migration(detail) => set
                        .get(&detail.migration)
                        .map_or_else(|| detail.migration.clone(), |m| display_path(&m.path)),
                    write::UnitFailure::Other { .. } => display_path(&set.dir),
                };
                write_failure(
                    context,
                    &env.name,
                    failure,
                    &format!(
                        "fix `{file}` if it is wrong and run `d1ctl apply {}` again; it continues where it stopped",
                        env.name
                    ),
                    rollback.as_deref(),
                );
                if let write::UnitFailure::Migration(detail) = &failure.unit {
                    json.failure = Some(FailureReport {
                        migration: detail.migration.clone(),
                        statement: detail.statement,
                        line: detail.line,
                        kind: failure.kind,
                        message: detail.headline(),
                        not_attempted: detail.not_attempted.clone(),
                    });
                }
                ExitStatus::Failure
            } else {
                // Written: the way back is printed whatever the verification says.
                let rollback = report
                    .point
                    .as_ref()
                    .map(|point| format!("d1ctl rollback {} --bookmark {}", env.name, point.point));
                let status = match &report.verified {
                    Some(Ok(verified)) if verified.differences.is_empty() => {
                        if !printer.is_json() {
                            printer.message(&format!(
                                "{} {} applied to `{}`",
                                printer.paint(Style::Green, "done:"),
                                plural(json.applied.len(), "migration"),
                                env.name
                            ));
                        }
                        ExitStatus::Success
                    }
                    Some(Ok(verified)) => {
                        printer.error(
                            &format!(
                                "`{}` was written but does not match {}:\n  {}",
                                env.name,
                                verified.against,
                                verified.differences.join("\n  ")
                            ),
                            Some(&format!("`d1ctl status {}` shows its ledger", env.name)),
                        );
                        ExitStatus::Failure
                    }
                    Some(Err(error)) => {
                        printer.warning(error);
                        printer.message(&format!(
                            "{} {} applied to `{}` (not verified)",
                            printer.paint(Style::Green, "done:"),
                            plural(json.applied.len(), "migration"),
                            env.name
                        ));
                        ExitStatus::Success
                    }
                    None => ExitStatus::Success,
                };
                if let Some(rollback) = &rollback {
                    printer.message(&format!(
                        "{}: {rollback}",
                        printer.paint(Style::Cyan, "rollback")
                    ));
                }
                status
            }
        }
    };
    if printer.is_json() {
        printer.json(&json)?;
    }
    Ok(status)
}

fn pending_of(set: &MigrationSet, plan: &MigratePlan) -> Vec<PendingMigration> {
    plan.migrations(set)
        .iter()
        .map(|m| PendingMigration {
            name: m.name.clone(),
            statements: m.statements.len(),
            bytes: m.size,
        })
        .collect()
}

/// The checks apply makes before anything is sent, as the user sees them.
fn show_plan(context: &Context, set: &MigrationSet, env: &str, plan: &MigratePlan) {
    let printer = &context.printer;
    for status in &plan.target.statuses {
        match (status.state, status.line_endings_only) {
            (State::ChecksumMismatch, Some(true)) => printer.warning(&format!(
                "`{}` differs from what ran on `{env}` only in line endings",
                status.name
            )),
            (State::ChecksumMismatch, _) => printer.error(
                &format!(
                    "`{}` was edited after it ran on `{env}` (recorded sha256 {}, file sha256 {})",
                    status.name,
                    short(status.recorded_sha256.as_deref()),
                    short(status.local_sha256.as_deref())
                ),
                None,
            ),
            (State::MissingLocally, _) => printer.warning(&format!(
                "`{}` is recorded as applied on `{env}` but is not in `{}`",
                status.name,
                display_path(&set.dir)
            )),
            _ => {}
        }
    }
    if plan.edited.is_empty() {
        for problem in &plan.problems {
            printer.error(&describe_problem(&set.dir, problem), Some(&problem.hint));
        }
    }
}

fn describe_problem(dir: &std::path::Path, problem: &Problem) -> String {
    let file = display_path(&dir.join(&problem.migration));
    match (problem.statement, problem.line) {
        (Some(statement), Some(line)) => {
            format!("{file}:{line}: statement {statement} {}", problem.message)
        }
        _ => format!("{file}: {}", problem.message),
    }
}

fn short(hash: Option<&str>) -> &str {
    hash.and_then(|h| h.get(..12)).unwrap_or("?")
}
