//! `d1ctl step run NAME --env ENV`: one data step, by hand.

use crate::cli::{StepCommand, StepRunArgs};
use crate::commands::data_steps::StepRun;
use crate::commands::{Context, ExitStatus, UserError};
use crate::core::ledger::Ledgers;
use crate::core::steps::Rerun;

pub(crate) async fn step(command: StepCommand, context: &Context) -> anyhow::Result<ExitStatus> {
    match command {
        StepCommand::Run(args) => run(args, context).await,
    }
}

async fn run(args: StepRunArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let steps = context.steps(&registry, &set)?;
    let Some(step) = steps.iter().find(|s| s.name == args.name) else {
        let known = if steps.is_empty() {
            "environments.toml declares none; add a `[[step]]` table with `name`, `after` and `sql` or `command`".to_owned()
        } else {
            format!(
                "the steps are: {}",
                steps
                    .iter()
                    .map(|s| format!("`{}`", s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(UserError::new(format!("no step `{}`", args.name), known).into());
    };
    let env = registry.resolve(&args.environment)?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let (backend, _identity) = context.open_target(&registry, env, true).await?;
    let below = context.steps_below(&registry, env).await?;
    let source = below.as_ref().map(|(name, records)| {
        (
            name.as_str(),
            records.iter().find(|r| r.name == step.name).cloned(),
        )
    });
    let rerun = if args.force {
        Rerun::Finished
    } else if args.rerun_interrupted {
        Rerun::Interrupted
    } else {
        Rerun::No
    };
    let report = context
        .run_step(StepRun {
            registry: &registry,
            set: &set,
            ledgers: &ledgers,
            env,
            backend: backend.as_ref(),
            step,
            source,
            read: None,
            rerun,
            yes: context.yes,
            dry_run: args.dry_run,
            command: format!("step run {} --env {}", step.name, env.name),
        })
        .await?;
    if context.printer.is_json() {
        context.printer.json(&report)?;
    }
    let waits = report.outcome == "waiting";
    Ok(if report.must_act() || waits {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
