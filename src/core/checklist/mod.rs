//! The release checklist of a promotion: what will run, what is risky, what d1ctl verified,
//! and how to roll back, as a document to paste into the release PR.

use std::fmt::Write as _;

use serde::Serialize;

use crate::core::ledger::State;
use crate::core::lint::{Finding, Severity};
use crate::core::lock::Lease;
use crate::core::promote::{Gate, Plan, View};
use crate::core::rehearse::record::RehearsalCheck;
use crate::core::steps::plan::PlannedStep;
use crate::core::steps::{Decision, StepRecord};

mod fleet;

pub use fleet::FleetSection;

#[derive(Debug, Clone, Serialize)]
pub struct Checklist {
    pub target: Target,
    pub source: String,
    /// Every migration of the folder with its state on source and target.
    pub ledgers: Vec<LedgerLine>,
    pub pending: Vec<PendingItem>,
    pub gates: Vec<Gate>,
    pub target_drift: Gate,
    /// The last rehearsal of this pending set, or the command that makes one.
    pub rehearsal: RehearsalCheck,
    pub lock: Option<Lease>,
    pub rollback: Rollback,
    pub hooks: Hooks,
    /// Boxes for people to tick (protected targets only).
    pub sign_off: Vec<String>,
    pub blocking: Vec<String>,
    pub blocked: bool,
    /// A fleet target: its members grouped by what each would get, and the rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSection>,
    /// The data steps and what the promotion does with each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub environment: String,
    pub backend: String,
    pub database: String,
    pub protected: bool,
    /// Served by d1ctl's bundled simulator, not Cloudflare.
    pub simulator: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerLine {
    pub migration: String,
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingItem {
    pub name: String,
    pub statements: usize,
    pub bytes: usize,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rollback {
    /// `bookmark` or `backup`.
    pub kind: &'static str,
    pub taken: String,
    pub command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hooks {
    pub before: Vec<String>,
    pub after: Vec<String>,
}

fn state_word(view: &View, name: &str) -> String {
    if view.is_folder {
        return "in folder".to_owned();
    }
    view.statuses.iter().find(|s| s.name == name).map_or_else(
        || "-".to_owned(),
        |s| match (s.state, s.line_endings_only) {
            (State::ChecksumMismatch, Some(true)) => "applied (line endings differ)".to_owned(),
            (state, _) => state.as_str().to_owned(),
        },
    )
}

/// What the checklist says about the target beyond the plan.
#[derive(Debug, Clone)]
pub struct TargetFacts {
    pub target: Target,
    pub drift: Gate,
    pub rehearsal: RehearsalCheck,
    pub rollback: Rollback,
    pub hooks: Hooks,
}

/// Assembles the checklist from a plan and what both sides hold.
pub fn build(
    plan: &Plan,
    source: &View,
    target_view: &View,
    facts: TargetFacts,
    migration_names: &[String],
) -> Checklist {
    let TargetFacts {
        target,
        drift: target_drift,
        rehearsal,
        rollback,
        hooks,
    } = facts;
    let ledgers = migration_names
        .iter()
        .map(|name| LedgerLine {
            migration: name.clone(),
            source: state_word(source, name),
            target: state_word(target_view, name),
        })
        .collect();
    let pending = plan
        .pending
        .iter()
        .map(|p| PendingItem {
            name: p.name.clone(),
            statements: p.statements,
            bytes: p.bytes,
            findings: plan
                .findings
                .iter()
                .filter(|f| f.migration == p.name)
                .cloned()
                .collect(),
        })
        .collect();
    let mut blocking: Vec<String> = plan
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| format!("{}: {}", g.name, g.detail))
        .collect();
    if !target_drift.passed {
        blocking.push(format!("target drift: {}", target_drift.detail));
    }
    if rehearsal.blocks() {
        blocking.push(format!("rehearsal: {}", rehearsal.detail));
    }
    let sign_off = if target.protected {
        vec![
            "The migrations above were reviewed".to_owned(),
            "The risky findings above are understood (or waived with a reason)".to_owned(),
            "The rollback command was checked and the Time Travel retention covers the release"
                .to_owned(),
            "Approved to promote to this protected environment by: ______".to_owned(),
        ]
    } else {
        Vec::new()
    };
    Checklist {
        target,
        source: plan.source.clone(),
        ledgers,
        pending,
        gates: plan.gates.clone(),
        target_drift,
        rehearsal,
        lock: target_view.lock.clone(),
        rollback,
        hooks,
        sign_off,
        blocked: !blocking.is_empty(),
        blocking,
        fleet: None,
        steps: Vec::new(),
    }
}

fn check(done: bool) -> &'static str {
    if done { "[x]" } else { "[ ]" }
}

/// The checklist as GitHub-flavoured markdown.
pub fn render_markdown(checklist: &Checklist) -> String {
    let mut out = String::new();
    let target = &checklist.target;
    let _ = writeln!(
        out,
        "## Release checklist: `{}` ← `{}`\n",
        target.environment, checklist.source
    );
    let _ = writeln!(
        out,
        "**Target:** `{}`{} ({}, {}){}\n",
        target.environment,
        if target.simulator {
            " (simulator: d1ctl's bundled D1 simulator, not Cloudflare)"
        } else {
            ""
        },
        target.backend,
        target.database,
        if target.protected {
            " — **protected**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "**Status:** {}\n",
        if checklist.blocked {
            format!("**BLOCKED** ({} blocking)", checklist.blocking.len())
        } else if checklist.pending.is_empty() {
            let steps = checklist
                .steps
                .iter()
                .filter(|s| s.decision == Decision::Run)
                .count();
            if steps == 0 {
                "up to date, nothing to promote".to_owned()
            } else {
                format!(
                    "no migration to apply; {steps} data step{} to run",
                    if steps == 1 { "" } else { "s" }
                )
            }
        } else {
            "ready to promote".to_owned()
        }
    );

    let _ = writeln!(
        out,
        "### Migrations to apply ({})\n",
        checklist.pending.len()
    );
    if checklist.pending.is_empty() {
        out.push_str("None.\n");
    }
    for item in &checklist.pending {
        let blocking = item.findings.iter().any(Finding::blocks);
        let _ = writeln!(
            out,
            "- {} `{}` — {} statement{}, {} bytes{}",
            check(!blocking),
            item.name,
            item.statements,
            if item.statements == 1 { "" } else { "s" },
            item.bytes,
            if item.findings.is_empty() {
                "; lint: clean"
            } else {
                ""
            }
        );
        for finding in &item.findings {
            let level = match (&finding.waived, finding.severity) {
                (Some(_), _) => "waived".to_owned(),
                (None, Severity::Error) => "**error (blocking)**".to_owned(),
                (None, Severity::Warning) => "warning".to_owned(),
            };
            let _ = writeln!(
                out,
                "  - {level} `{}`{}: {}{}",
                finding.code,
                finding
                    .line
                    .map_or_else(String::new, |l| format!(" line {l}")),
                finding.message,
                finding.waived.as_ref().map_or_else(
                    || format!(" — fix: {}", finding.fix),
                    |reason| format!(" — reason: {reason}")
                )
            );
        }
    }

    if !checklist.steps.is_empty() {
        render_steps(&mut out, checklist);
    }

    out.push_str("\n### Verified by d1ctl\n\n");
    for gate in checklist
        .gates
        .iter()
        .chain(std::iter::once(&checklist.target_drift))
    {
        let _ = writeln!(
            out,
            "- {} {}{}: {}",
            check(gate.passed),
            if gate.passed { "" } else { "**BLOCKING** " },
            gate.name,
            gate.detail
        );
    }

    let _ = writeln!(
        out,
        "\n### Rehearsal on a copy of `{}`\n",
        target.environment
    );
    let rehearsal = &checklist.rehearsal;
    match rehearsal.status {
        "nothing_pending" => out.push_str("Nothing to rehearse.\n"),
        "passed" | "failed" => {
            let _ = writeln!(
                out,
                "- {} {}{} (rehearsed {}, {} ms)",
                check(rehearsal.status == "passed"),
                if rehearsal.blocks() {
                    "**BLOCKING** "
                } else {
                    ""
                },
                rehearsal.detail,
                rehearsal.rehearsed_at.as_deref().unwrap_or("-"),
                rehearsal.duration_ms.unwrap_or_default()
            );
        }
        _ => {
            let _ = writeln!(out, "- [ ] {}", rehearsal.detail);
        }
    }

    out.push_str("\n### Ledgers\n\n");
    let _ = writeln!(
        out,
        "| migration | `{}` (source) | `{}` (target) |",
        checklist.source, target.environment
    );
    out.push_str("|---|---|---|\n");
    for line in &checklist.ledgers {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            line.migration, line.source, line.target
        );
    }

    out.push_str("\n### Lock\n\n");
    match &checklist.lock {
        Some(lease) if !lease.expired() => {
            let _ = writeln!(
                out,
                "Held by `{}` on {} (pid {}, `{}`) for {} s more.",
                lease.holder.id,
                lease.holder.host,
                lease.holder.pid,
                lease.holder.command,
                lease.expires_at - lease.now
            );
        }
        _ => out.push_str("Free: `promote` takes it before writing and releases it at the end.\n"),
    }

    if let Some(fleet) = &checklist.fleet {
        fleet::render(&mut out, fleet);
    }

    out.push_str("\n### Rollback\n\n");
    let _ = writeln!(
        out,
        "- {} is taken before the first write.",
        checklist.rollback.taken
    );
    let _ = writeln!(
        out,
        "- To roll back: `{}` (or the exact `--bookmark` command `promote` prints at its end)",
        checklist.rollback.command
    );

    out.push_str("\n### Hooks\n\n");
    if checklist.hooks.before.is_empty() && checklist.hooks.after.is_empty() {
        out.push_str("None.\n");
    }
    for hook in &checklist.hooks.before {
        let _ = writeln!(out, "- before: `{hook}`");
    }
    for hook in &checklist.hooks.after {
        let _ = writeln!(out, "- after: `{hook}`");
    }

    if !checklist.sign_off.is_empty() {
        out.push_str("\n### Sign-off (protected environment)\n\n");
        for item in &checklist.sign_off {
            let _ = writeln!(out, "- [ ] {item}");
        }
    }
    if checklist.blocked {
        out.push_str("\n### Blocking\n\n");
        for item in &checklist.blocking {
            let _ = writeln!(out, "- {item}");
        }
    }
    out
}

/// A step's record as a cell: `done (1200 rows)`, `started, not finished`, `not run`.
fn record_word(record: Option<&StepRecord>) -> String {
    match record {
        None => "not run".to_owned(),
        Some(record) if record.finished() => match record.rows {
            Some(rows) => format!("done ({rows} rows)"),
            None => "done".to_owned(),
        },
        Some(record) => format!(
            "started {}, not finished{}",
            record.started_at,
            record
                .rows
                .map(|rows| format!(" ({rows} rows so far)"))
                .unwrap_or_default()
        ),
    }
}

fn render_steps(out: &mut String, checklist: &Checklist) {
    let _ = writeln!(
        out,
        "\n### Data steps after the migrations ({})\n",
        checklist.steps.len()
    );
    let _ = writeln!(
        out,
        "| step | kind | after | `{}` (source) | `{}` (target) | this promotion |",
        checklist.source, checklist.target.environment
    );
    out.push_str("|---|---|---|---|---|---|\n");
    for step in &checklist.steps {
        let action = match &step.decision {
            Decision::Run => match step.estimated_rows {
                Some(rows) => format!("runs (about {rows} rows)"),
                None => "runs (rows not counted yet)".to_owned(),
            },
            Decision::Done => "nothing (done)".to_owned(),
            Decision::Wait { why } => format!("waits: {why}"),
            Decision::Blocked { why, .. } => format!("**BLOCKED**: {why}"),
        };
        let source = if checklist.source == crate::core::registry::RESERVED_NAME {
            "-".to_owned()
        } else {
            record_word(step.source_record.as_ref())
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {source} | {} | {action} |",
            step.status.name,
            step.status.kind,
            step.status.after,
            step.status.state.as_str(),
        );
    }
}
