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
