//! `d1ctl plan --to ENV` and `d1ctl promote --to ENV`: bring an env up to the rung below it.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;
use serde::Serialize;

use crate::backend::{Backend, BackendKind, RollbackPoint, Statement, Value};
use crate::cli::PromoteArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::ApplyProgress;
use crate::commands::{Context, ExitStatus, Rung, UserError, actor, confirm, display_path, plural};
use crate::core::apply::{self, Applied, Extras};
use crate::core::ledger::{self, Ledgers};
use crate::core::lock::{self, Holder, LockError};
use crate::core::migrations::MigrationSet;
use crate::core::promote::{Plan, ROLLBACK_TABLE, View};
use crate::core::registry::{Environment, Registry};
use crate::core::rehearse::Rehearsal;
use crate::core::schema::{self, Schema};

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
    let mut reports = Vec::new();
    let mut status = ExitStatus::Success;
    for env in rungs {
        let report = promote_rung(args, context, &registry, &set, env, dry_run).await?;
        let stop = matches!(report.outcome, "blocked" | "refused" | "failed");
        if stop || report.verified == Some(false) {
            status = ExitStatus::Failure;
        }
        if dry_run && report.outcome == "blocked" {
            status = ExitStatus::Failure;
        }
        reports.push(report);
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

#[expect(
    clippy::too_many_lines,
    reason = "one promotion, step by step, reads best in one place"
)]
async fn promote_rung(
    args: &PromoteArgs,
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    env: &Environment,
    dry_run: bool,
) -> anyhow::Result<RungReport> {
    let printer = &context.printer;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let ignore = ledgers.ignored_tables();
    let Rung {
        backend,
        identity,
        source,
        target,
        plan,
    } = context
        .read_rung(registry, set, &ledgers, env, true)
        .await?;
    let mut report = RungReport {
        environment: env.name.clone(),
        backend: backend.kind(),
        database: identity.label.clone(),
        protected: env.protected,
        simulator: env.is_simulated(),
        plan,
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
    };
    if args.rehearse && !report.plan.pending.is_empty() {
        // Before anything is written: the gate blocks like any other.
        let rehearsal = context
            .rehearse(
                registry,
                set,
                env,
                &identity,
                &target,
                &report.plan,
                args.all_in_one,
            )
            .await?;
        report.plan.gates.push(rehearsal.gate());
        report.rehearsal = Some(rehearsal);
    }
    print_plan(context, &report.plan, env, backend.kind());

    if let Some(lease) = target
        .lock
        .as_ref()
        .filter(|l| l.expired() || l.holder.is_dead_local_process())
        && !dry_run
        && report.plan.pending.is_empty()
    {
        {
            // A promotion killed mid-way leaves its lease; its holder is provably gone.
            backend
                .batch(&[lock::release_statement(&lease.holder)])
                .await
                .with_context(|| format!("could not clear the stale lock of `{}`", env.name))?;
            printer.message(&format!(
                "cleared the stale lock of {} (pid {})",
                lease.holder.id, lease.holder.pid
            ));
        }
    }
    if report.plan.pending.is_empty() {
        report.outcome = if report.plan.blocked() {
            "blocked"
        } else {
            "up_to_date"
        };
        if !report.plan.blocked() {
            printer.message(&format!(
                "`{}` is up to date with `{}`: nothing to do",
                env.name, report.plan.source
            ));
        }
        return Ok(report);
    }
    if report.plan.blocked() {
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
    if dry_run {
        printer.message(&format!(
            "dry run: would take a {} and apply {} to `{}`",
            if backend.kind() == BackendKind::D1 {
                "Time Travel bookmark"
            } else {
                "backup under .d1ctl/backups"
            },
            plural(report.plan.pending.len(), "migration"),
            env.name
        ));
        return Ok(report);
    }
    if env.protected && !confirm(context, env, args.yes)? {
        report.outcome = "refused";
        return Ok(report);
    }
    if !args.no_hooks && !run_hooks(context, registry, env, "before", &env.before)? {
        report.outcome = "refused";
        report
            .messages
            .push("a `before` hook failed; nothing was written".to_owned());
        return Ok(report);
    }

    let me = Holder::for_this_process(&format!("promote --to {}", env.name));
    match lock::acquire(backend.as_ref(), &env.name, &me).await {
        Ok(Some(previous)) => printer.warning(&format!(
            "took over the lock of {} (pid {} on this host, which no longer runs)",
            previous.holder.id, previous.holder.pid
        )),
        Ok(None) => {}
        Err(LockError::Held { env: name, lease }) => {
            printer.error(
                &LockError::Held { env: name, lease }.to_string(),
                Some("wait for it to finish; if its holder died, `d1ctl lock release ENV --id ID` frees it"),
            );
            report.outcome = "refused";
            return Ok(report);
        }
        Err(LockError::Backend(error)) => {
            return Err(
                anyhow::Error::from(error).context(format!("could not lock `{}`", env.name))
            );
        }
    }
    let result = promote_locked(
        context,
        registry,
        set,
        env,
        backend.as_ref(),
        &ledgers,
        &ignore,
        &source,
        &target,
        &me,
        args,
        &mut report,
    )
    .await;
    if result.is_err() || report.outcome == "failed" {
        // The lock must not outlive a failed run; the verify batch releases it on success.
        let _ = backend.batch(&[lock::release_statement(&me)]).await;
    }
    result?;
    if report.outcome == "promoted"
        && !args.no_hooks
        && !run_hooks(context, registry, env, "after", &env.after)?
    {
        report.messages.push("an `after` hook failed".to_owned());
        report.verified = Some(false);
    }
    if let Some(command) = &report.rollback_command {
        printer.message(&format!(
            "{}: {command}",
            printer.paint(Style::Cyan, "rollback")
        ));
    }
    Ok(report)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the state of one locked promotion"
)]
async fn promote_locked(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    env: &Environment,
    backend: &dyn Backend,
    ledgers: &Ledgers,
    ignore: &[&str],
    source: &View,
    target: &View,
    me: &Holder,
    args: &PromoteArgs,
    report: &mut RungReport,
) -> anyhow::Result<()> {
    let printer = &context.printer;
    let backups = registry.root.join(".d1ctl").join("backups");
    let point = backend
        .rollback_point(&backups, &env.name)
        .await
        .with_context(|| {
            format!(
                "could not take a rollback point of `{}`; nothing was written",
                env.name
            )
        })?;
    let rollback_command = format!("d1ctl rollback {} --bookmark {}", env.name, point.point);
    printer.message(&format!("rollback point: {} {}", point.kind, point.point));
    report.rollback_point = Some(point.clone());
    report.rollback_command = Some(rollback_command.clone());

    let pending = report.plan.migrations(set);
    let state = &target.state;
    let extras = Extras {
        every_batch: lock::guard_statements(me),
        first_batch: rollback_record(
            &point,
            &pending.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            &args.to,
        ),
        all_in_one: args.all_in_one,
    };
    let progress = ApplyProgress::new(printer, &env.name);
    let outcome = apply::apply(
        backend,
        ledgers,
        state,
        &target.snapshot,
        &pending,
        &actor(),
        &extras,
        &progress,
    )
    .await;
    context.report_applied(&outcome, &env.name);
    report.applied = outcome.applied;
    if let Some(failure) = outcome.failure {
        report.outcome = "failed";
        let lease_lost = lock::is_lease_lost(&failure.error);
        let message = if lease_lost {
            format!(
                "the lock on `{}` was lost before `{}` ran; it did not run",
                env.name, failure.migration
            )
        } else {
            failure.headline()
        };
        printer.error(&message, None);
        // What the target holds is read back from it, never assumed.
        let state_line = match ledgers.read(backend).await {
            Ok(state) => {
                let applied_now: Vec<String> = ledger::compare(set, &state, set.layout)
                    .into_iter()
                    .filter(ledger::MigrationStatus::is_applied)
                    .map(|s| s.name)
                    .collect();
                format!(
                    "`{}` now has {} applied{}; `{}` {}{}",
                    env.name,
                    plural(applied_now.len(), "migration"),
                    applied_now
                        .last()
                        .map_or_else(String::new, |last| format!(" (the last is `{last}`)")),
                    failure.migration,
                    if applied_now.contains(&failure.migration) {
                        "is recorded as applied (its unit committed)"
                    } else {
                        "did not commit"
                    },
                    if failure.not_attempted.is_empty() {
                        String::new()
                    } else {
                        format!("; not attempted: {}", failure.not_attempted.join(", "))
                    }
                )
            }
            Err(error) => format!(
                "could not re-read the ledgers of `{}` ({error}): its state is unknown; `d1ctl status {}` shows it",
                env.name, env.name
            ),
        };
        printer.message(&state_line);
        printer.message(&format!(
            "\n{}: fix the migration and run `d1ctl promote --to {}` again to continue, or restore the state before this promotion with `{rollback_command}`",
            printer.paint(Style::Cyan, "hint"),
            env.name
        ));
        report.messages.push(message);
        report.messages.push(state_line);
        return Ok(());
    }

    // Release the lock and read the schema back in one request, then compare with the source.
    let rows = backend
        .batch(&[lock::release_statement(me), schema::snapshot_statement()])
        .await
        .with_context(|| format!("could not verify `{}` after applying", env.name))?;
    let after = schema::Snapshot::from_rows(&rows[1]);
    let changes = schema::diff(
        &Schema::build(&source.snapshot, ignore)?,
        &Schema::build(&after, ignore)?,
    );
    report.outcome = "promoted";
    if changes.is_empty() {
        report.verified = Some(true);
        printer.message(&format!(
            "{} `{}` now has the same schema as `{}`",
            printer.paint(Style::Green, "verified:"),
            env.name,
            source.name
        ));
    } else {
        report.verified = Some(false);
        let summary: Vec<String> = changes.iter().map(|c| c.summary.clone()).collect();
        printer.error(
            &format!(
                "`{}` was promoted but its schema differs from `{}`'s:\n  {}",
                env.name,
                source.name,
                summary.join("\n  ")
            ),
            Some(&format!(
                "`d1ctl drift {} {}` shows the full difference",
                source.name, env.name
            )),
        );
        report.messages.extend(summary);
    }
    Ok(())
}

/// The record of the rollback point, written with the first migration.
fn rollback_record(point: &RollbackPoint, migrations: &[&str], command: &str) -> Vec<Statement> {
    vec![
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {ROLLBACK_TABLE} (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  kind TEXT NOT NULL,\n  point TEXT NOT NULL,\n  taken_at TEXT NOT NULL,\n  taken_by TEXT NOT NULL,\n  command TEXT NOT NULL,\n  migrations TEXT NOT NULL\n)"
        )),
        Statement::with_params(
            format!(
                "INSERT INTO {ROLLBACK_TABLE} (kind, point, taken_at, taken_by, command, migrations) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?, ?, ?)"
            ),
            vec![
                Value::from(point.kind),
                Value::from(point.point.as_str()),
                Value::from(actor()),
                Value::from(format!("promote --to {command}")),
                Value::from(migrations.join(",")),
            ],
        ),
    ]
}

fn print_plan(context: &Context, plan: &Plan, env: &Environment, kind: BackendKind) {
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
            .stdout(stderr_stdio()?)
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

fn stderr_stdio() -> anyhow::Result<Stdio> {
    use std::os::fd::AsFd as _;
    Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
}
