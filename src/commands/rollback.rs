//! `d1ctl rollback ENV [--bookmark B | --last]`: restore an env to a rollback point.

use crate::cli::RollbackArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::WriteProgress;
use crate::commands::{Context, ExitStatus, WriteRequest, age, plural};
use crate::core::ledger::Ledgers;
use crate::core::write::Outcome;
use crate::core::write::restore::{Choice, RestoreJob, RestorePlan};

pub(crate) async fn rollback(args: RollbackArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let env = registry.resolve(&args.environment)?;
    if context.is_whole_fleet(env) {
        return rollback_fleet(&args, context, &registry, &set, env).await;
    }
    let (backend, _) = context.open_target(&registry, env, true).await?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let job = RestoreJob {
        set: &set,
        ledgers: &ledgers,
        choice: args.bookmark.clone().map_or(Choice::Last, Choice::Given),
    };
    let command = format!("rollback {}", env.name);
    let env_name = env.name.clone();
    let progress = WriteProgress::new(
        printer,
        &env.name,
        format!("d1ctl {command}{}", if args.last { " --last" } else { "" }),
        move |plan: &RestorePlan, _changed| show_plan(context, &env_name, plan),
    );
    let request = WriteRequest {
        registry: &registry,
        env,
        backend: backend.as_ref(),
        command,
        yes: args.yes,
        dry_run: false,
    };
    let report = match context.write(request, &job, &progress).await? {
        Ok(report) => report,
        Err(status) => return Ok(status),
    };
    match report.outcome {
        Outcome::Blocked => return Ok(ExitStatus::Failure),
        Outcome::Refused | Outcome::UpToDate | Outcome::Planned => {
            return Ok(ExitStatus::Failure);
        }
        Outcome::Written | Outcome::Failed => {}
    }
    let undo = report
        .point
        .as_ref()
        .map(|point| format!("d1ctl rollback {} --bookmark {}", env.name, point.point));
    if let Some(failure) = &report.failure {
        printer.error(&failure.unit.headline(), None);
        match &failure.after {
            Ok(applied) => printer.message(&format!(
                "`{}` records {} now",
                env.name,
                plural(applied.len(), "applied migration")
            )),
            Err(error) => printer.message(&format!(
                "could not re-read `{}` ({error}): its state is unknown; `d1ctl status {}` shows it",
                env.name, env.name
            )),
        }
        if let Some(undo) = &undo {
            printer.message(&format!(
                "{}: the state before this rollback is kept: {undo}",
                printer.paint(Style::Cyan, "undo")
            ));
        }
        return Ok(ExitStatus::Failure);
    }
    printer.message(&format!(
        "{} `{}` is back at {}",
        printer.paint(Style::Green, "restored:"),
        env.name,
        report.plan.point.as_deref().unwrap_or_default()
    ));
    match &report.verified {
        Some(Ok(applied)) => printer.message(&format!(
            "`{}` records {}{}",
            env.name,
            plural(applied.len(), "applied migration"),
            applied
                .last()
                .map_or_else(String::new, |last| format!(" (the last is `{last}`)"))
        )),
        Some(Err(error)) => printer.warning(error),
        None => {}
    }
    if let Some(undo) = &undo {
        printer.message(&format!("undo with: {undo}"));
    }
    Ok(ExitStatus::Success)
}

/// `rollback FLEET --last`: the members of the newest rollout, each to its own point.
async fn rollback_fleet(
    args: &RollbackArgs,
    context: &Context,
    registry: &crate::core::registry::Registry,
    set: &crate::core::migrations::MigrationSet,
    env: &crate::core::registry::Environment,
) -> anyhow::Result<ExitStatus> {
    use crate::core::fleet::rollback::{FleetRollback, RestoreOutcome};
    let printer = &context.printer;
    if args.bookmark.is_some() {
        return Err(crate::commands::UserError::new(
            format!("`--bookmark` names one database's point, and `{}` is a fleet", env.name),
            format!(
                "use `d1ctl rollback {} --last` for the members of the newest rollout, or `--member NAME --bookmark POINT` for one",
                env.name
            ),
        )
        .into());
    }
    let fleet = context.fleet(registry, env).await?;
    let why = format!(
        "this restores every member the newest write session on `{}` wrote (of {}) to its state before it; later writes to them are lost",
        env.name,
        plural(fleet.members.len(), "database")
    );
    let rerun = format!("d1ctl rollback {} --last", env.name);
    if !crate::cli::prompt::confirm(printer, &env.name, &why, args.yes, &rerun) {
        return Ok(ExitStatus::Failure);
    }
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let connect = fleet.connect();
    let rollback = FleetRollback {
        set,
        ledgers: &ledgers,
        env,
        members: &fleet.members,
        connect: &connect,
        backups: &registry.root.join(".d1ctl").join("backups"),
        command: format!("rollback {} --last", env.name),
        actor: crate::commands::actor(),
        concurrency: 8,
    };
    let report = rollback.run().await;
    let count = |outcome: RestoreOutcome| {
        report
            .members
            .iter()
            .filter(|m| m.outcome == outcome)
            .count()
    };
    let mut out = match (&report.command, &report.started_at) {
        (Some(command), Some(started)) => format!(
            "`{}`: undoing `{command}` (session {}, started {started}): {} restored, {} untouched, {} refused, {} failed",
            env.name,
            report.session.as_deref().unwrap_or_default(),
            count(RestoreOutcome::Restored),
            count(RestoreOutcome::Untouched),
            count(RestoreOutcome::Refused),
            count(RestoreOutcome::Failed)
        ),
        _ => format!(
            "`{}`: no write session is recorded on any member; nothing was restored",
            env.name
        ),
    };
    for member in &report.members {
        if matches!(
            member.outcome,
            RestoreOutcome::Refused | RestoreOutcome::Failed
        ) {
            out.push_str(&format!(
                "\n  {}: {}",
                member.name,
                member.reason.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    let failed = count(RestoreOutcome::Refused) + count(RestoreOutcome::Failed) > 0;
    if failed {
        printer.error(
            &out,
            Some(&format!(
                "`d1ctl status {}` shows each member's state",
                env.name
            )),
        );
    } else {
        printer.message(&out);
    }
    if printer.is_json() {
        printer.json(&report)?;
    }
    Ok(if failed || report.session.is_none() {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn show_plan(context: &Context, env: &str, plan: &RestorePlan) {
    let printer = &context.printer;
    if let Some(point) = &plan.point {
        if let Some(recorded) = plan.history.points.iter().find(|p| &p.point == point) {
            printer.message(&format!(
                "the rollback point was taken {} ago ({}) by `{}`",
                age(recorded.age_seconds),
                recorded.taken_at,
                recorded.command
            ));
        }
        printer.warning(&format!(
            "this replaces the whole of `{env}` with its state at the rollback point; later writes are lost"
        ));
        return;
    }
    let mut text = match &plan.unrecorded {
        Some(session) => format!(
            "the last write session on `{env}` (`{}`, {} ago) recorded no rollback point: it failed or was stopped before its first write committed, so `--last` has nothing of it to undo; nothing was restored",
            session.command,
            age(session.age_seconds)
        ),
        None => format!("`{env}` has no recorded rollback point; nothing was restored"),
    };
    if plan.history.points.is_empty() {
        text.push_str("\n  no rollback points are recorded there");
    } else {
        text.push_str(&format!("\n  rollback points on `{env}`, newest first:"));
        for (index, point) in plan.history.points.iter().enumerate() {
            let undone: Vec<String> = plan
                .history
                .undone_by(index)
                .iter()
                .map(|p| {
                    if p.migrations.is_empty() {
                        format!("`{}`", p.command)
                    } else {
                        format!("`{}` ({})", p.command, p.migrations.join(", "))
                    }
                })
                .collect();
            text.push_str(&format!(
                "\n    {} {}, taken {} ago; restoring it undoes {}",
                point.kind,
                point.point,
                age(point.age_seconds),
                undone.join(", ")
            ));
        }
    }
    printer.error(
        &text,
        Some(&format!(
            "pick the point to restore with `d1ctl rollback {env} --bookmark POINT`"
        )),
    );
}
