//! `d1ctl status [ENV...]`: which migrations each environment has applied.

use futures::future::join_all;
use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::StatusArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::Counter;
use crate::commands::{Context, ExitStatus, display_path, read_ledgers};

/// ` (simulator)` after an env served by the bundled simulator.
fn mark(report: &EnvStatus<'_>) -> &'static str {
    if report.simulator { " (simulator)" } else { "" }
}
use crate::core::ledger::{self, Ledgers, MigrationStatus, State};
use crate::core::registry::Environment;

#[derive(Serialize)]
struct StatusReport<'a> {
    layout: String,
    migrations_dir: String,
    environments: Vec<EnvStatus<'a>>,
}

#[derive(Serialize)]
struct EnvStatus<'a> {
    name: &'a str,
    backend: BackendKind,
    location: String,
    protected: bool,
    /// Served by d1ctl's bundled simulator, not Cloudflare.
    simulator: bool,
    migrations: Vec<MigrationStatus>,
}

pub(crate) async fn status(args: StatusArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let mut environments: Vec<&Environment> = Vec::new();
    if args.environments.is_empty() {
        environments = registry.ordered();
    } else {
        for name in &args.environments {
            let env = registry.resolve(name)?;
            if !environments.iter().any(|e| e.name == env.name) {
                environments.push(env);
            }
        }
    }
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    // Every environment is read at once: wall time is one round trip, not one per env.
    let progress = (environments.len() > 1)
        .then(|| Counter::new(&context.printer, "reading environments", environments.len()));
    let reads = join_all(environments.iter().map(|env| async {
        let backend = context.backend(&registry, env)?;
        let state = read_ledgers(&ledgers, backend.as_ref(), env).await?;
        if let Some(progress) = &progress {
            progress.inc();
        }
        anyhow::Ok(EnvStatus {
            name: &env.name,
            backend: backend.kind(),
            location: backend.location(),
            protected: env.protected,
            simulator: env.is_simulated(),
            migrations: ledger::compare(&set, &state, set.layout),
        })
    }))
    .await;
    drop(progress);
    let reports = reads.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let edited = reports
        .iter()
        .flat_map(|r| &r.migrations)
        .any(|m| m.state == State::ChecksumMismatch && m.line_endings_only != Some(true));

    if context.printer.is_json() {
        context.printer.json(&StatusReport {
            layout: set.layout.to_string(),
            migrations_dir: display_path(&set.dir),
            environments: reports,
        })?;
    } else if let [single] = reports.as_slice() {
        print_single(context, single)?;
    } else {
        print_matrix(context, &reports)?;
    }
    Ok(if edited {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn state_word(status: &MigrationStatus) -> &'static str {
    match (status.state, status.line_endings_only) {
        (State::ChecksumMismatch, Some(true)) => "checksum_mismatch (line endings only)",
        (state, _) => state.as_str(),
    }
}

fn state_style(state: State) -> Style {
    match state {
        State::Applied => Style::Green,
        State::Pending => Style::Yellow,
        State::ChecksumMismatch | State::MissingLocally => Style::Red,
    }
}

fn print_single(context: &Context, report: &EnvStatus<'_>) -> anyhow::Result<()> {
    let printer = &context.printer;
    let mut out = format!(
        "{}{} ({}, {})\n",
        printer.paint_out(Style::Bold, report.name),
        mark(report),
        report.backend,
        report.location
    );
    let width = report
        .migrations
        .iter()
        .map(|m| state_word(m).len())
        .max()
        .unwrap_or(0);
    for migration in &report.migrations {
        let word = state_word(migration);
        out.push_str(&format!(
            "  {}{} {}\n",
            printer.paint_out(state_style(migration.state), word),
            " ".repeat(width - word.len()),
            migration.name
        ));
    }
    if report.migrations.is_empty() {
        out.push_str("  no migrations\n");
    }
    out.push_str(&summary(&report.migrations));
    printer.data(&out)?;
    Ok(())
}

fn summary(migrations: &[MigrationStatus]) -> String {
    let count = |state: State| migrations.iter().filter(|m| m.state == state).count();
    let mut parts = vec![
        format!("{} applied", count(State::Applied)),
        format!("{} pending", count(State::Pending)),
    ];
    for (state, label) in [
        (State::ChecksumMismatch, "checksum mismatch"),
        (State::MissingLocally, "missing locally"),
    ] {
        if count(state) > 0 {
            parts.push(format!("{} {label}", count(state)));
        }
    }
    parts.join(", ")
}

/// Migrations down, environments across.
fn print_matrix(context: &Context, reports: &[EnvStatus<'_>]) -> anyhow::Result<()> {
    let printer = &context.printer;
    let mut names: Vec<&str> = Vec::new();
    for report in reports {
        for migration in &report.migrations {
            if !names.contains(&migration.name.as_str()) {
                names.push(&migration.name);
            }
        }
    }
    let cell = |report: &EnvStatus<'_>, name: &str| {
        report
            .migrations
            .iter()
            .find(|m| m.name == name)
            .map_or(("-", None), |m| (state_word(m), Some(m.state)))
    };
    let first = names
        .iter()
        .map(|n| n.len())
        .max()
        .unwrap_or(0)
        .max("migration".len());
    let widths: Vec<usize> = reports
        .iter()
        .map(|report| {
            names
                .iter()
                .map(|name| cell(report, name).0.len())
                .max()
                .unwrap_or(0)
                .max(report.name.len())
        })
        .collect();
    let mut out = format!("{:first$}", "migration");
    for (report, width) in reports.iter().zip(&widths) {
        out.push_str(&format!("  {:width$}", report.name));
    }
    let mut out = printer.paint_out(Style::Bold, out.trim_end()) + "\n";
    for name in &names {
        let mut line = format!("{name:first$}");
        for (report, width) in reports.iter().zip(&widths) {
            let (word, state) = cell(report, name);
            let padded = format!("{word:width$}");
            line.push_str("  ");
            line.push_str(&match state {
                Some(state) => printer.paint_out(state_style(state), &padded),
                None => padded,
            });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for report in reports {
        out.push_str(&format!(
            "\n{}{} ({}, {}): {}",
            report.name,
            mark(report),
            report.backend,
            report.location,
            summary(&report.migrations)
        ));
    }
    printer.data(&out)?;
    Ok(())
}
