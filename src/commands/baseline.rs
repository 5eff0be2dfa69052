//! `d1ctl baseline ENV [--through NAME]`: adopt a database created before it was tracked.

use crate::cli::BaselineArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::WriteProgress;
use crate::commands::{Context, ExitStatus, UserError, WriteRequest, actor, plural};
use crate::core::ledger::Ledgers;
use crate::core::migrations::Migration;
use crate::core::write::Outcome;
use crate::core::write::baseline::{BaselineJob, BaselinePlan};

pub(crate) async fn baseline(args: BaselineArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let env = registry.resolve(&args.environment)?;
    let through = match &args.through {
        Some(name) => set.position(name).ok_or_else(|| {
            UserError::new(
                format!("`{name}` is not a migration of the folder"),
                "name a file of the migrations folder, e.g. `--through 0007_tags.sql`",
            )
        })?,
        None => set.migrations.len().saturating_sub(1),
    };
    let chosen: Vec<&Migration> = set.migrations.iter().take(through + 1).collect();
    let last = chosen.last().map_or("", |m| m.name.as_str()).to_owned();
    let count = chosen.len();
    let (backend, _) = context.open_target(&registry, env, true).await?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let job = BaselineJob {
        set: &set,
        ledgers: &ledgers,
        chosen,
        env: &env.name,
        by: format!("{} (baseline)", actor()),
    };
    let env_name = env.name.clone();
    let progress = WriteProgress::new(
        printer,
        &env.name,
        format!("d1ctl baseline {}", env.name),
        move |plan: &BaselinePlan, _changed| show_plan(context, &env_name, plan, count, &last),
    );
    let request = WriteRequest {
        registry: &registry,
        env,
        backend: backend.as_ref(),
        command: format!("baseline {}", env.name),
        yes: args.yes,
        dry_run: false,
    };
    let report = match context.write(request, &job, &progress).await? {
        Ok(report) => report,
        Err(status) => return Ok(status),
    };
    match report.outcome {
        Outcome::UpToDate => {
            printer.message(&format!(
                "`{}` already records these {}: nothing to do",
                env.name,
                plural(count, "migration")
            ));
            return Ok(ExitStatus::Success);
        }
        Outcome::Blocked | Outcome::Refused | Outcome::Planned => {
            return Ok(ExitStatus::Failure);
        }
        Outcome::Written | Outcome::Failed => {}
    }
    if let Some(failure) = &report.failure {
        printer.error(&failure.unit.headline(), None);
        printer.message(&match &failure.after {
            Ok(recorded) => format!(
                "`{}` records {} now",
                env.name,
                plural(recorded.len(), "applied migration")
            ),
            Err(error) => format!(
                "could not re-read `{}` ({error}): its state is unknown; `d1ctl status {}` shows it",
                env.name, env.name
            ),
        });
        return Ok(ExitStatus::Failure);
    }
    printer.message(&format!(
        "{} the schema of `{}` matches; recorded {} as applied: {}",
        printer.paint(Style::Green, "baselined:"),
        env.name,
        plural(report.plan.record.len(), "migration"),
        report.plan.record.join(", ")
    ));
    if let Some(Err(error)) = &report.verified {
        printer.warning(error);
    }
    if let Some(point) = &report.point {
        printer.message(&format!(
            "{}: d1ctl rollback {} --bookmark {}",
            printer.paint(Style::Cyan, "rollback"),
            env.name,
            point.point
        ));
    }
    Ok(ExitStatus::Success)
}

fn show_plan(context: &Context, env: &str, plan: &BaselinePlan, count: usize, last: &str) {
    let printer = &context.printer;
    if !plan.differences.is_empty() {
        let mut text = format!(
            "`{env}` does not match the replay of {} (through `{last}`); nothing was recorded\n  going from the replay to `{env}`:",
            plural(count, "migration"),
        );
        for difference in &plan.differences {
            text.push_str(&format!("\n    {difference}"));
        }
        printer.error(
            &text,
            Some("baseline through the migration the database really matches (`--through NAME`), or fix the schema first; `d1ctl drift` shows details"),
        );
    } else if !plan.mismatched.is_empty() {
        printer.error(
            &format!(
                "{} recorded on `{env}` with another checksum: {}; nothing was recorded",
                if plan.mismatched.len() == 1 {
                    "a migration is"
                } else {
                    "migrations are"
                },
                plan.mismatched.join(", ")
            ),
            Some("restore the file as it ran; baseline only records what is missing"),
        );
    } else if !plan.record.is_empty() {
        printer.message(&format!(
            "will record {} as applied on `{env}`: {}",
            plural(plan.record.len(), "migration"),
            plan.record.join(", ")
        ));
    }
}
