//! `d1ctl rehearse --to ENV`: the migrations `promote --to ENV` would apply, applied to a copy of
//! ENV's data instead, with what they did to each table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::RehearseArgs;
use crate::cli::printer::{Printer, Style};
use crate::commands::{Context, ExitStatus, Rung, UserError, plural};
use crate::core::ledger::Ledgers;
use crate::core::rehearse::{MigrationOutcome, Rehearsal};

/// `--format json` when nothing is pending: the same keys a rehearsal has, nothing rehearsed.
#[derive(Serialize)]
struct NothingPending<'a> {
    environment: &'a str,
    source: &'a str,
    migrations: [(); 0],
    outcome: &'static str,
    passed: bool,
}

pub(crate) async fn rehearse(args: RehearseArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let env = registry.resolve(&args.to)?;
    if !registry.project.ladder.contains(&env.name) {
        return Err(UserError::new(
            format!("env `{}` is not on the ladder", env.name),
            format!(
                "a rehearsal applies what `promote --to {}` would, which needs the env on `ladder` under `[project]` in environments.toml",
                env.name
            ),
        )
        .into());
    }
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let Rung {
        backend,
        identity,
        target,
        plan,
        ..
    } = context
        .read_rung(&registry, &set, &ledgers, env, false)
        .await?;
    printer.message(&format!(
        "{} `{}` ← `{}`: {} pending, on a copy of `{}`{} ({}, {})",
        printer.paint(Style::Bold, "rehearsal:"),
        env.name,
        plan.source,
        plural(plan.pending.len(), "migration"),
        env.name,
        crate::commands::simulator_mark(env),
        backend.kind(),
        identity.label
    ));
    if plan.pending.is_empty() {
        printer.message(&format!(
            "nothing to rehearse: `{}` has run everything `{}` has",
            env.name, plan.source
        ));
        if printer.is_json() {
            printer.json(&NothingPending {
                environment: &env.name,
                source: &plan.source,
                migrations: [],
                outcome: "up_to_date",
                passed: true,
            })?;
        }
        return Ok(ExitStatus::Success);
    }
    for gate in plan.gates.iter().filter(|gate| !gate.passed) {
        printer.warning(&format!(
            "`promote --to {}` would be blocked by its {} gate ({}); rehearsing anyway",
            env.name, gate.name, gate.detail
        ));
    }

    let rehearsal = context
        .rehearse(
            &registry,
            &set,
            env,
            &identity,
            &target,
            &plan,
            args.all_in_one,
        )
        .await?;
    if printer.is_json() {
        printer.json(&rehearsal)?;
    } else {
        printer.data(&render(&rehearsal, printer))?;
    }
    Ok(if rehearsal.passed {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The report on stdout: each migration, each table's rows before → after (and the columns
/// that lost values), foreign keys, the result and the time taken.
fn render(rehearsal: &Rehearsal, printer: &Printer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rehearsal of {} from `{}` on a copy of `{}`{}",
        plural(rehearsal.migrations.len(), "migration"),
        rehearsal.source,
        rehearsal.environment,
        if rehearsal.all_in_one {
            " (all in one unit)"
        } else {
            ""
        }
    );
    let width = rehearsal
        .migrations
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or_default();
    for migration in &rehearsal.migrations {
        let word = match migration.outcome {
            MigrationOutcome::Applied => printer.paint_out(Style::Green, "applied      "),
            MigrationOutcome::Failed => printer.paint_out(Style::Red, "FAILED       "),
            MigrationOutcome::RolledBack => "rolled back  ".to_owned(),
            MigrationOutcome::NotAttempted => "not attempted".to_owned(),
        };
        let time = migration
            .duration_ms
            .map_or_else(String::new, |ms| format!(", {ms} ms"));
        let _ = writeln!(
            out,
            "  {word} {:<width$}  ({}{time})",
            migration.name,
            plural(migration.statements, "statement")
        );
    }
    if let Some(failure) = &rehearsal.failure {
        let _ = writeln!(out, "  {}", failure.describe());
    }

    out.push_str("tables (rows before → after):\n");
    let width = rehearsal
        .tables
        .iter()
        .flat_map(|t| {
            std::iter::once(t.table.len()).chain(t.lost_values.iter().map(|c| c.column.len() + 2))
        })
        .max()
        .unwrap_or_default();
    let lost = printer.paint_out(Style::Red, "LOST");
    for table in &rehearsal.tables {
        let side = |rows: Option<i64>| rows.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let note = match (table.rows_before, table.rows_after) {
            (Some(before), Some(after)) if after < before => {
                format!("  {lost} {} rows", before - after)
            }
            (Some(_), None) => "  (table dropped)".to_owned(),
            (None, Some(_)) => "  (new table)".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {} → {}{note}",
            table.table,
            side(table.rows_before),
            side(table.rows_after)
        );
        for column in &table.lost_values {
            let _ = writeln!(
                out,
                "    {:<inner$}  {} → {} non-null  {lost} {} values",
                column.column,
                column.before,
                column.after,
                column.before - column.after,
                inner = width.saturating_sub(2)
            );
        }
    }
    if rehearsal.tables.is_empty() {
        out.push_str("  (no tables)\n");
    }

    let keys = &rehearsal.foreign_keys;
    let _ = write!(
        out,
        "foreign keys: {} violating after ({} before)",
        plural(usize::try_from(keys.after).unwrap_or_default(), "row"),
        keys.before
    );
    for violation in &keys.new_violations {
        let _ = write!(
            out,
            "; `{}` → `{}`: {}",
            violation.table, violation.parent, violation.rows
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "result: {} {}",
        if rehearsal.passed {
            printer.paint_out(Style::Green, "pass")
        } else {
            printer.paint_out(Style::Red, "FAIL")
        },
        rehearsal.summary()
    );
    let migrations_ms: u64 = if rehearsal.all_in_one {
        rehearsal
            .migrations
            .first()
            .and_then(|m| m.duration_ms)
            .unwrap_or_default()
    } else {
        rehearsal
            .migrations
            .iter()
            .filter_map(|m| m.duration_ms)
            .sum()
    };
    let _ = writeln!(
        out,
        "time: {} ms in all (copy {} ms, migrations {} ms)",
        rehearsal.duration_ms, rehearsal.copy.duration_ms, migrations_ms
    );
    out
}
