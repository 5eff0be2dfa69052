//! `plan --to FLEET` and `promote --to FLEET`: every member of a fleet env up to the rung
//! below it, summarised rather than printed per database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::cli::PromoteArgs;
use crate::cli::fleet_progress::FleetProgress;
use crate::commands::{Context, actor, plural};
use crate::core::fleet::name_list;
use crate::core::fleet::plan::{self, PlannedGroup};
use crate::core::fleet::rollout::{
    MemberOutcome, MemberReport, PathTaken, Rollout, RolloutOptions, RolloutReport, Stopped,
};
use crate::core::fleet::survey;
use crate::core::ledger::Ledgers;
use crate::core::migrations::MigrationSet;
use crate::core::promote::View;
use crate::core::registry::{Environment, Registry};

/// The fleet rung of `promote`'s JSON.
#[derive(Serialize)]
struct FleetRung<'a> {
    environment: &'a str,
    fleet: bool,
    simulator: bool,
    source: &'a str,
    /// `planned`, `up_to_date`, `promoted`, `refused`, `failed`, `stopped`.
    outcome: &'static str,
    members: usize,
    /// Requests this rung sent (listing and reading included).
    requests: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<&'a RolloutReport>,
    /// `plan` and `--dry-run`: the members grouped by what each would get.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<PlannedGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_command: Option<String>,
}

/// What the fleet rung ended as, for `promote`'s exit status and its JSON.
pub(super) struct FleetOutcome {
    pub(super) json: serde_json::Value,
    /// Something the user must act on (refused, failed or not reached members).
    pub(super) must_act: bool,
}

pub(super) async fn promote_fleet(
    args: &PromoteArgs,
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    env: &Environment,
    dry_run: bool,
) -> anyhow::Result<FleetOutcome> {
    let printer = &context.printer;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let sent_before = context.budget.sent();
    let source = context.read_source(registry, set, &ledgers, env).await?;
    let fleet = context.fleet(registry, env).await?;
    let connect = fleet.connect();
    let mut rung = FleetRung {
        environment: &env.name,
        fleet: true,
        simulator: env.is_simulated(),
        source: &source.name,
        outcome: "planned",
        members: fleet.members.len(),
        requests: 0,
        rollout: None,
        groups: Vec::new(),
        rollback_command: None,
    };
    if dry_run {
        // A plan reads every member: what each would get is its own ledger's business.
        let progress = FleetProgress::new(
            printer,
            "reading",
            &env.name,
            Arc::clone(&context.budget),
            true,
        );
        let reads = survey::read_all(&fleet.members, &connect, &ledgers, &progress).await;
        rung.groups = plan::plan_groups(set, &ledgers, &source, &env.name, &reads);
        print_plan(context, env, &source, &rung.groups);
        let blocked = rung.groups.iter().any(PlannedGroup::is_blocked);
        rung.outcome = if blocked {
            "refused"
        } else if rung.groups.iter().all(|g| g.pending.is_empty()) {
            "up_to_date"
        } else {
            "planned"
        };
        rung.requests = context.budget.sent() - sent_before;
        return Ok(FleetOutcome {
            json: serde_json::to_value(&rung)?,
            must_act: blocked,
        });
    }
    if env.protected {
        let why = format!(
            "`{}` is protected: a fleet of {}",
            env.name,
            plural(fleet.members.len(), "database")
        );
        let rerun = format!("d1ctl promote --to {}", env.name);
        if !crate::cli::prompt::confirm(printer, &env.name, &why, args.yes, &rerun) {
            rung.outcome = "refused";
            return Ok(FleetOutcome {
                json: serde_json::to_value(&rung)?,
                must_act: true,
            });
        }
    }
    if !args.no_hooks && !super::run_hooks(context, registry, env, "before", &env.before)? {
        rung.outcome = "refused";
        return Ok(FleetOutcome {
            json: serde_json::to_value(&rung)?,
            must_act: true,
        });
    }
    let total = fleet.members.len();
    let waves = match (args.canary, args.waves.as_slice()) {
        (Some(canary), _) => vec![canary.min(total)],
        (None, []) => Vec::new(),
        (None, waves) => waves.iter().map(|w| w.of(total)).collect(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let ctrl_c = {
        let stop = Arc::clone(&stop);
        let printer = printer.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
                printer.warning("interrupted: members in flight finish, no new one starts");
            }
        })
    };
    let command = format!("promote --to {}", env.name);
    let rollout = Rollout {
        set,
        ledgers: &ledgers,
        env,
        source: &source,
        members: &fleet.members,
        connect: &connect,
        options: RolloutOptions {
            command,
            actor: actor(),
            waves,
            max_failures: args.max_failures.max(1),
            concurrency: args.concurrency,
        },
        backups: &registry.root.join(".d1ctl").join("backups"),
        stop: &stop,
    };
    let progress = FleetProgress::new(
        printer,
        "promoting",
        &env.name,
        Arc::clone(&context.budget),
        args.yes,
    );
    let report = rollout.run(&progress).await;
    ctrl_c.abort();
    rung.requests = context.budget.sent() - sent_before;
    let must_act = report.tally.refused + report.tally.failed > 0 || report.stopped.is_some();
    print_rollout(context, env, &report, rung.requests);
    rung.outcome = if report.tally.failed > 0 {
        "failed"
    } else if report.stopped.is_some() {
        "stopped"
    } else if report.tally.refused > 0 {
        "refused"
    } else if report.tally.promoted == 0 {
        "up_to_date"
    } else {
        "promoted"
    };
    if report.tally.promoted > 0 {
        let command = format!("d1ctl rollback {} --last", env.name);
        printer.message(&format!(
            "{}: {command}   (each member this run promoted, back to its own point)",
            printer.paint(crate::cli::printer::Style::Cyan, "rollback")
        ));
        rung.rollback_command = Some(command);
    }
    if !must_act
        && !args.no_hooks
        && !super::run_hooks(context, registry, env, "after", &env.after)?
    {
        rung.outcome = "failed";
    }
    rung.rollout = Some(&report);
    Ok(FleetOutcome {
        json: serde_json::to_value(&rung)?,
        must_act: must_act || rung.outcome == "failed",
    })
}

fn print_plan(context: &Context, env: &Environment, source: &View, groups: &[PlannedGroup]) {
    let mut out = format!(
        "plan: `{}`{} ← `{}`\n",
        env.name,
        crate::commands::simulator_mark(env),
        source.name
    );
    for group in groups {
        let names: Vec<&str> = group.members.iter().map(String::as_str).collect();
        let who = format!(
            "{}: {}",
            plural(names.len(), "member"),
            name_list(&names, 5)
        );
        if group.is_blocked() {
            out.push_str(&format!(
                "  {} {who}\n    {}\n",
                context
                    .printer
                    .paint(crate::cli::printer::Style::Red, "BLOCKED"),
                group.blocked_by.join("\n    ")
            ));
        } else if group.pending.is_empty() {
            out.push_str(&format!("  up to date  {who}\n"));
        } else {
            out.push_str(&format!(
                "  to apply ({}) on {who}\n    {}\n",
                group.pending.len(),
                group.pending.join("\n    ")
            ));
        }
    }
    out.push_str(
        "  rollback point: each member's own clock, recorded in the batch that promotes it (Time Travel restores by it)",
    );
    context.printer.message(&out);
}

fn print_rollout(context: &Context, env: &Environment, report: &RolloutReport, requests: u64) {
    let printer = &context.printer;
    let tally = &report.tally;
    let express = report
        .members
        .iter()
        .filter(|m| m.outcome == MemberOutcome::Promoted && m.path == PathTaken::Express)
        .count();
    let full = report
        .members
        .iter()
        .filter(|m| m.outcome == MemberOutcome::Promoted && m.path == PathTaken::Full)
        .count();
    let mut out = format!(
        "`{}`: {} — {} promoted ({express} in one request each, {full} through the full path), {} up to date, {} refused, {} failed; {} in all",
        env.name,
        plural(tally.total, "member"),
        tally.promoted,
        tally.up_to_date,
        tally.refused,
        tally.failed,
        plural(usize::try_from(requests).unwrap_or(usize::MAX), "request"),
    );
    let names = |outcome: MemberOutcome| -> Vec<&MemberReport> {
        report
            .members
            .iter()
            .filter(|m| m.outcome == outcome)
            .collect()
    };
    for (outcome, word) in [
        (MemberOutcome::Refused, "refused"),
        (MemberOutcome::Failed, "failed"),
    ] {
        for member in names(outcome) {
            out.push_str(&format!(
                "\n  {word}: {} — {}",
                member.name,
                member.reason.as_deref().unwrap_or("no reason given")
            ));
            if let Some(after) = &member.state_after {
                out.push_str(&format!("\n    now: {after}"));
            }
        }
    }
    let not_started: Vec<&str> = names(MemberOutcome::NotStarted)
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    if let Some(stopped) = &report.stopped {
        let why = match stopped {
            Stopped::Failures { failed } => format!("stopped after {}", plural(*failed, "failure")),
            Stopped::WaveNotConfirmed { after } => format!("stopped after the wave of {after}"),
            Stopped::Interrupted => "interrupted".to_owned(),
        };
        out.push_str(&format!(
            "\n  {why}: {} not started ({}); `d1ctl promote --to {}` goes on where this stopped",
            plural(not_started.len(), "member"),
            name_list(&not_started, 5),
            env.name
        ));
    }
    if tally.refused + tally.failed == 0 && report.stopped.is_none() {
        printer.message(&format!(
            "{} {out}",
            printer.paint(crate::cli::printer::Style::Green, "verified:")
        ));
    } else {
        printer.message(&out);
    }
}
