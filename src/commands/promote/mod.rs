//! `d1ctl plan --to ENV` and `d1ctl promote --to ENV`: bring an env up to the rung below it.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;
use serde::Serialize;

use crate::backend::{BackendKind, RollbackPoint};
use crate::cli::PromoteArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::WriteProgress;
use crate::commands::{
    Context, ExitStatus, Rung, UserError, WriteRequest, actor, display_path, plural, write_failure,
};
use crate::core::apply::Applied;
use crate::core::ledger::Ledgers;
use crate::core::lock;
use crate::core::migrations::MigrationSet;
use crate::core::promote::Plan;
use crate::core::registry::{Environment, Registry};
use crate::core::rehearse::Rehearsal;
use crate::core::write::Outcome;
use crate::core::write::migrate::{MigrateJob, MigratePlan, Source};

mod fleet;
mod steps;

#[derive(Serialize)]
struct RungReport {
    environment: String,
    backend: BackendKind,
    database: String,
    protected: bool,
    simulator: bool,
    plan: Plan,
    /// `up_to_date`, `blocked`, `planned`, `refused`, `promoted`, `failed`.
    outcome: &'static str,
    /// The target's lock as read before planning (`null` when free).
    lock: Option<lock::Lease>,
    /// The rollback point a promotion takes before its first write: `bookmark` or `backup`.
    rollback_point_kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    applied: Vec<Applied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_point: Option<RollbackPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<String>,
    /// With `--rehearse`: the rehearsal behind the `rehearsal` gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    rehearsal: Option<Rehearsal>,
    /// The data steps as planned: what each would do once the migrations are applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<crate::core::steps::plan::PlannedStep>,
    /// The steps run after the migrations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    step_runs: Vec<crate::commands::data_steps::StepReport>,
}

pub(crate) async fn plan(args: PromoteArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    run(&args, context, true).await
}

pub(crate) async fn promote(args: PromoteArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    run(&args, context, args.dry_run).await
}

async fn run(args: &PromoteArgs, context: &Context, dry_run: bool) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    // Read before anything is written: a step's mistake stops the promotion at the start.
    let data_steps = context.steps(&registry, &set)?;
    let target = registry.resolve(&args.to)?;
    let Some(position) = registry
        .project
        .ladder
        .iter()
        .position(|name| *name == target.name)
    else {
        return Err(UserError::new(
            format!("env `{}` is not on the ladder", target.name),
            format!(
                "add it to `ladder` under `[project]` in environments.toml (now: {})",
                registry.project.ladder.join(" → ")
            ),
        )
        .into());
    };
    let rungs: Vec<&Environment> = if args.cascade {
        registry.project.ladder[..=position]
            .iter()
            .filter_map(|name| registry.environments.iter().find(|env| &env.name == name))
            .collect()
    } else {
        vec![target]
    };
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let mut status = ExitStatus::Success;
    for env in rungs {
        if context.is_whole_fleet(env) {
            // A fleet is the last rung (it is the source of nothing).
            let outcome =
                fleet::promote_fleet(args, context, &registry, &set, env, dry_run).await?;
            let pending = outcome.json["outcome"] == "planned";
            if outcome.must_act || (dry_run && args.exit_code && pending) {
                status = ExitStatus::Failure;
            }
            reports.push(outcome.json);
            break;
        }
        let report =
            promote_rung(args, context, &registry, &set, &data_steps, env, dry_run).await?;
        let stop = matches!(report.outcome, "blocked" | "refused" | "failed")
            || report
                .step_runs
                .iter()
                .any(crate::commands::data_steps::StepReport::must_act);
        if stop || report.verified == Some(false) {
            status = ExitStatus::Failure;
        }
        if dry_run && report.outcome == "blocked" {
            status = ExitStatus::Failure;
        }
        if dry_run && args.exit_code && !report.plan.pending.is_empty() {
            status = ExitStatus::Failure;
        }
        reports.push(serde_json::to_value(&report)?);
        if stop {
            break;
        }
    }
    if context.printer.is_json() {
        context
            .printer
            .json(&serde_json::json!({ "dry_run": dry_run, "rungs": reports }))?;
    }
    Ok(status)
}

async fn promote_rung(
    args: &PromoteArgs,
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    data_steps: &[crate::core::steps::Step],
    env: &Environment,
    dry_run: bool,
) -> anyhow::Result<RungReport> {
    let printer = &context.printer;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let Rung {
        backend,
        identity,
        source,
        target,
        mut plan,
    } = context
        .read_rung(registry, set, &ledgers, env, true)
        .await?;
    let mut report = RungReport {
        environment: env.name.clone(),
        backend: backend.kind(),
        database: identity.label.clone(),
        protected: env.protected,
        simulator: env.is_simulated(),
        plan: plan.clone(),
        outcome: "planned",
        lock: target.lock.clone(),
        rollback_point_kind: if backend.kind() == BackendKind::D1 {
            "bookmark"
        } else {
            "backup"
        },
        applied: Vec::new(),
        rollback_point: None,
        rollback_command: None,
        verified: None,
        messages: Vec::new(),
        rehearsal: None,
        steps: Vec::new(),
        step_runs: Vec::new(),
    };
    let mut extra_gates = Vec::new();
    let pending: Vec<String> = plan.pending.iter().map(|p| p.name.clone()).collect();
    let (below, planned_steps) = context
        .plan_steps(
            registry,
            env,
            data_steps,
            backend.as_ref(),
            &target.statuses,
            &pending,
        )
        .await?;
    report.steps = planned_steps;
    // An edited step blocks like an edited migration; an interrupted one is the user's to
    // check, and waits for them without holding the migrations back.
    if let Some(gate) = crate::core::steps::plan::gate(&report.steps) {
        extra_gates.push(gate.clone());
        plan.gates.push(gate);
    }
    if args.rehearse && !plan.pending.is_empty() {
        // Before anything is written: the gate blocks like any other.
        let rehearsal = context
            .rehearse(
                registry,
                set,
                env,
                &identity,
                &target,
                &plan,
                args.all_in_one,
            )
            .await?;
        extra_gates.push(rehearsal.gate());
        plan.gates.push(rehearsal.gate());
        report.rehearsal = Some(rehearsal);
    }
    // A promotion killed mid-way leaves its lease; clear it when its holder is provably gone
    // and there is nothing to promote (with something to promote, taking the lock does it).
    if let Some(lease) = target
        .lock
        .as_ref()
        .filter(|l| l.expired() || l.holder.is_dead_local_process())
        && !dry_run
        && plan.pending.is_empty()
    {
        backend
            .batch(&[lock::release_statement(&lease.holder)])
            .await
            .with_context(|| format!("could not clear the stale lock of `{}`", env.name))?;
        printer.message(&format!(
            "cleared the stale lock of {} (pid {})",
            lease.holder.id, lease.holder.pid
        ));
    }
    let applied_by = actor();
    let job = MigrateJob {
        set,
        ledgers: &ledgers,
        env: &env.name,
        source: Source::Rung(&source),
        all_in_one: args.all_in_one,
        actor: &applied_by,
        initial: std::sync::Mutex::new(Some(MigratePlan::promotion(target, plan))),
        extra_gates,
    };
    let kind = backend.kind();
    let run_steps = |known, yes| {
        steps::run(
            context,
            registry,
            set,
            &ledgers,
            env,
            backend.as_ref(),
            data_steps,
            &below,
            known,
            yes,
        )
    };
    let planned_steps = steps::plan_lines(&report.steps);
    let progress = WriteProgress::new(
        printer,
        &env.name,
        format!("d1ctl promote --to {}", env.name),
        move |plan: &MigratePlan, _changed| {
            if let Some(promotion) = &plan.promotion {
                print_plan(context, promotion, env, kind, &planned_steps);
            }
        },
    )
    .before(|| {
        if args.no_hooks {
            return true;
        }
        run_hooks(context, registry, env, "before", &env.before).unwrap_or_else(|error| {
            printer.error(&format!("{error:#}"), None);
            false
        })
    });
    let request = WriteRequest {
        registry,
        env,
        backend: backend.as_ref(),
        command: format!("promote --to {}", env.name),
        yes: args.yes,
        dry_run,
    };
    let Ok(session) = context.write(request, &job, &progress).await? else {
        report.outcome = "refused";
        return Ok(report);
    };
    if let Some(promotion) = &session.plan.promotion {
        report.plan = promotion.clone();
    }
    let rollback_command = session
        .point
        .as_ref()
        .map(|point| format!("d1ctl rollback {} --bookmark {}", env.name, point.point));
    report.rollback_point.clone_from(&session.point);
    report.rollback_command.clone_from(&rollback_command);
    if let Some(done) = &session.done {
        context.report_applied(done, &env.name);
        report.applied.clone_from(&done.applied);
    }
    match session.outcome {
        Outcome::UpToDate => {
            report.outcome = "up_to_date";
            printer.message(&format!(
                "`{}` is up to date with `{}`: nothing to do",
                env.name, report.plan.source
            ));
            if !dry_run {
                // Nothing was written since the steps were planned: that plan stands.
                let known = report.steps.clone();
                report.step_runs = run_steps(Some(&known), args.yes).await?;
            }
            return Ok(report);
        }
        Outcome::Blocked => {
            report.outcome = "blocked";
            printer.error(
                &format!(
                    "promotion to `{}` is blocked by a gate; nothing was written",
                    env.name
                ),
                Some("fix what the failing gate names, then run `d1ctl plan` again"),
            );
            return Ok(report);
        }
        Outcome::Planned => {
            printer.message(&format!(
                "dry run: would take a {} and apply {} to `{}`",
                if kind == BackendKind::D1 {
                    "Time Travel bookmark"
                } else {
                    "backup under .d1ctl/backups"
                },
                plural(report.plan.pending.len(), "migration"),
                env.name
            ));
            return Ok(report);
        }
        Outcome::Refused => {
            report.outcome = "refused";
            if let Some(refusal) = &session.refusal {
                if refusal == "the plan changed under the lock" {
                    printer.error(
                        &format!("the plan for `{}` changed after `--yes` approved it; nothing was written", env.name),
                        Some(&format!("review the new plan with `d1ctl plan --to {}` and promote again", env.name)),
                    );
                }
                report
                    .messages
                    .push(format!("{refusal}; nothing was written"));
            }
            return Ok(report);
        }
        Outcome::Failed => {
            report.outcome = "failed";
            if let Some(failure) = &session.failure {
                let wrote = session.may_have_written(&job);
                let lines = write_failure(
                    context,
                    &env.name,
                    failure,
                    &format!(
                        "fix the migration and run `d1ctl promote --to {}` again to continue{}",
                        env.name,
                        if wrote {
                            ", or restore the state before this promotion with the rollback command"
                        } else {
                            ""
                        }
                    ),
                    rollback_command.as_deref().filter(|_| wrote),
                );
                report.messages.extend(lines);
            }
            return Ok(report);
        }
        Outcome::Written => {}
    }
    report.outcome = "promoted";
    match &session.verified {
        Some(Ok(verified)) if verified.differences.is_empty() => {
            report.verified = Some(true);
            printer.message(&format!(
                "{} `{}` now has the same schema as `{}`",
                printer.paint(Style::Green, "verified:"),
                env.name,
                source.name
            ));
        }
        Some(Ok(verified)) => {
            report.verified = Some(false);
            printer.error(
                &format!(
                    "`{}` was promoted but its schema differs from `{}`'s:\n  {}",
                    env.name,
                    source.name,
                    verified.differences.join("\n  ")
                ),
                Some(&format!(
                    "`d1ctl drift {} {}` shows the full difference",
                    source.name, env.name
                )),
            );
            report.messages.extend(verified.differences.iter().cloned());
        }
        Some(Err(error)) => {
            report.verified = Some(false);
            printer.error(
                &format!("every migration was applied to `{}`, but {error}", env.name),
                Some(&format!("`d1ctl status {}` shows its state", env.name)),
            );
            report.messages.push(error.clone());
        }
        None => {}
    }
    // Printed before anything else can fail: the migrations' point undoes the steps too.
    if let Some(command) = &report.rollback_command {
        printer.message(&format!(
            "{}: {command}",
            printer.paint(Style::Cyan, "rollback")
        ));
    }
    if report.verified == Some(true) {
        // The promotion's plan listed these steps and its confirmation covered them.
        report.step_runs = run_steps(None, true).await?;
    }
    if !args.no_hooks && !run_hooks(context, registry, env, "after", &env.after)? {
        report.messages.push("an `after` hook failed".to_owned());
        report.verified = Some(false);
    }
    Ok(report)
}

fn print_plan(
    context: &Context,
    plan: &Plan,
    env: &Environment,
    kind: BackendKind,
    planned_steps: &str,
) {
    let printer = &context.printer;
    let mut out = format!(
        "plan: `{}`{} ← `{}`\n",
        env.name,
        crate::commands::simulator_mark(env),
        plan.source
    );
    for gate in &plan.gates {
        let mark = if gate.passed {
            printer.paint(Style::Green, "pass")
        } else {
            printer.paint(Style::Red, "FAIL")
        };
        out.push_str(&format!("  {mark} {:<13} {}\n", gate.name, gate.detail));
    }
    if plan.pending.is_empty() {
        out.push_str("  nothing to apply\n");
    } else {
        out.push_str(&format!("  to apply ({}):\n", plan.pending.len()));
        for pending in &plan.pending {
            out.push_str(&format!(
                "    {} ({})\n",
                pending.name,
                plural(pending.statements, "statement")
            ));
        }
        out.push_str(&format!(
            "  rollback point: {} taken before the first write\n",
            if kind == BackendKind::D1 {
                "a Time Travel bookmark"
            } else {
                "a backup under .d1ctl/backups/"
            }
        ));
    }
    if !plan.not_yet_at_source.is_empty() {
        out.push_str(&format!(
            "  not yet at `{}`: {}\n",
            plan.source,
            plan.not_yet_at_source.join(", ")
        ));
    }
    out.push_str(planned_steps);
    if !env.before.is_empty() || !env.after.is_empty() {
        out.push_str(&format!(
            "  hooks: before {:?}, after {:?}\n",
            env.before, env.after
        ));
    }
    printer.message(out.trim_end());
}

/// Runs an env's hooks in order with `D1CTL_ENV` set; output goes to stderr so stdout stays data.
/// Returns false when one fails (the rest are not run).
fn run_hooks(
    context: &Context,
    registry: &Registry,
    env: &Environment,
    stage: &str,
    hooks: &[String],
) -> anyhow::Result<bool> {
    for hook in hooks {
        context.printer.message(&format!("{stage} hook: {hook}"));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(hook)
            .current_dir(if registry.root.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &registry.root
            })
            .env("D1CTL_ENV", &env.name)
            .stdin(Stdio::null())
            .stdout(context.printer.stderr_stdio())
            .status()
            .with_context(|| format!("could not run the {stage} hook `{hook}`"))?;
        if !status.success() {
            context.printer.error(
                &format!(
                    "the {stage} hook `{hook}` of `{}` failed ({status})",
                    env.name
                ),
                Some(&format!(
                    "fix it, or skip hooks with `--no-hooks` (from `{}`)",
                    display_path(&registry.path)
                )),
            );
            return Ok(false);
        }
    }
    Ok(true)
}
