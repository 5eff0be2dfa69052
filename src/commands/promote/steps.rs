//! The data steps of a rung: listed with its plan, and run after its migrations, each as its
//! own write session (`Context::run_step`), in the order environments.toml declares them.

use crate::backend::Backend;
use crate::cli::printer::Style;
use crate::commands::Context;
use crate::commands::data_steps::{StepReport, StepRun};
use crate::core::ledger::Ledgers;
use crate::core::migrations::MigrationSet;
use crate::core::registry::{Environment, Registry};
use crate::core::steps::plan::{Below, PlannedStep, preview, source_of};
use crate::core::steps::{Decision, Rerun, Step};

/// The plan's lines for the steps.
pub(super) fn plan_lines(planned: &[PlannedStep]) -> String {
    if planned.is_empty() {
        return String::new();
    }
    let mut out = format!("  data steps after the migrations ({}):\n", planned.len());
    for step in planned {
        let what = match &step.decision {
            Decision::Run => match step.estimated_rows {
                Some(rows) => format!("runs, about {rows} rows"),
                None => "runs".to_owned(),
            },
            Decision::Done => "done".to_owned(),
            Decision::Wait { why } => format!("waits: {why}"),
            Decision::Blocked { why, .. } => format!("BLOCKED: {why}"),
        };
        out.push_str(&format!(
            "    {} ({}, after {}): {what}\n",
            step.status.name, step.status.kind, step.status.after
        ));
    }
    out
}

/// Runs the rung's steps after its migrations, in order; stops at the first that the user
/// must act on. `yes` carries the promotion's approval to the steps its plan listed; `known`
/// is the plan of the steps when the target was not written since it was read.
#[expect(
    clippy::too_many_arguments,
    reason = "the rung as the promotion read it, passed on to each step's session"
)]
pub(super) async fn run(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    env: &Environment,
    backend: &dyn Backend,
    steps: &[Step],
    below: &Below,
    known: Option<&[PlannedStep]>,
    yes: bool,
) -> anyhow::Result<Vec<StepReport>> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let printer = &context.printer;
    let planned = if let Some(known) = known {
        known.to_vec()
    } else {
        let state = ledgers.read(backend).await?;
        let migrations = crate::core::ledger::compare(set, &state, set.layout);
        preview(steps, &env.name, backend, &migrations, &[], below).await?
    };
    let mut reports = Vec::new();
    for (step, plan) in steps.iter().zip(planned) {
        match &plan.decision {
            Decision::Done => continue,
            Decision::Wait { why } => {
                printer.message(&format!(
                    "step `{}` waits on `{}`: {why}",
                    step.name, env.name
                ));
                continue;
            }
            Decision::Blocked { why, hint } => {
                printer.error(&format!("{why}; it was not run"), Some(hint));
                reports.push(blocked_report(step, env, &plan, why, hint));
                break;
            }
            Decision::Run => {}
        }
        let report = context
            .run_step(StepRun {
                registry,
                set,
                ledgers,
                env,
                backend,
                step,
                source: source_of(below, step),
                read: Some((plan.status.clone(), plan.estimated_rows)),
                rerun: Rerun::No,
                yes,
                dry_run: false,
                command: format!("promote --to {} (step {})", env.name, step.name),
            })
            .await?;
        let stop = report.must_act();
        reports.push(report);
        if stop {
            break;
        }
    }
    let ran: Vec<&StepReport> = reports.iter().filter(|r| r.outcome == "ran").collect();
    if !ran.is_empty() {
        printer.message(&format!(
            "{} {} on `{}`: {}",
            printer.paint(Style::Green, "data steps:"),
            crate::commands::plural(ran.len(), "step"),
            env.name,
            ran.iter()
                .map(|r| match r.record.as_ref().and_then(|record| record.rows) {
                    Some(rows) => format!("{} ({rows} rows)", r.step),
                    None => r.step.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(reports)
}

fn blocked_report(
    step: &Step,
    env: &Environment,
    plan: &PlannedStep,
    why: &str,
    hint: &str,
) -> StepReport {
    StepReport {
        step: step.name.clone(),
        environment: env.name.clone(),
        kind: step.kind(),
        after: step.after.clone(),
        outcome: "blocked",
        state: plan.status.state,
        why: Some(why.to_owned()),
        hint: Some(hint.to_owned()),
        estimated_rows: plan.estimated_rows,
        record: None,
        requests: 0,
        rollback_point: None,
        rollback_command: None,
        verified: None,
        messages: Vec::new(),
    }
}
