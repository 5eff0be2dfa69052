//! `d1ctl status [ENV...]`: which migrations each environment has applied; a fleet env named
//! alone is summarised from a read of every member.

use std::sync::Arc;

use futures::future::join_all;
use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::StatusArgs;
use crate::cli::fleet_progress::FleetProgress;
use crate::cli::printer::Style;
use crate::cli::reporter::Counter;
use crate::commands::{Context, ExitStatus, display_path, plural, read_ledgers};
use crate::core::fleet::summary::{self, FleetLocks, FleetStatus};
use crate::core::fleet::{name_list, survey};

/// ` (simulator)` after an env served by the bundled simulator.
fn mark(report: &EnvStatus<'_>) -> &'static str {
    if report.simulator { " (simulator)" } else { "" }
}
use crate::core::ledger::{self, Ledgers, MigrationStatus, State};
use crate::core::migrations::MigrationSet;
use crate::core::registry::{Environment, Registry};
use crate::core::steps::{self, Step, StepState, StepStatus};

/// How many names a fleet's group shows before `and N more`.
const NAMES_SHOWN: usize = 5;

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
    /// Empty for a fleet: its members' are under `fleet.databases`.
    migrations: Vec<MigrationStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<FleetColumn>,
    /// The data steps on the env (empty when environments.toml declares none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<StepStatus>,
}

/// A fleet env's entry: its members counted (the matrix lists them, one request per 10,000),
/// or, for `status FLEET`, each read and grouped.
#[derive(Serialize)]
struct FleetColumn {
    members: usize,
    /// Whether every member was read (`status FLEET`), not only listed.
    read: bool,
    /// Members by ledger state, largest group first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<survey::Group>,
    /// Every member with what it applied, its group and its live lease.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    databases: Vec<summary::MemberStatus>,
}

pub(crate) async fn status(args: StatusArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let data_steps = context.steps(&registry, &set)?;
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
    if let [env] = environments.as_slice()
        && context.is_whole_fleet(env)
    {
        return fleet_status(context, &registry, &set, &ledgers, env).await;
    }
    // Every environment is read at once: wall time is one round trip, not one per env.
    let progress = (environments.len() > 1)
        .then(|| Counter::new(&context.printer, "reading environments", environments.len()));
    let reads = join_all(environments.iter().map(|env| async {
        if context.is_whole_fleet(env) {
            // Listed, not read: a matrix must not read 50,000 databases unasked.
            let fleet = context.fleet(&registry, env).await?;
            if let Some(progress) = &progress {
                progress.inc();
            }
            return anyhow::Ok(EnvStatus {
                name: &env.name,
                backend: BackendKind::D1,
                location: format!("fleet: {}", plural(fleet.members.len(), "member")),
                protected: env.protected,
                simulator: env.is_simulated(),
                migrations: Vec::new(),
                fleet: Some(FleetColumn {
                    members: fleet.members.len(),
                    read: false,
                    groups: Vec::new(),
                    databases: Vec::new(),
                }),
                steps: Vec::new(),
            });
        }
        let backend = context.backend(&registry, env)?;
        let state = read_ledgers(&ledgers, backend.as_ref(), env).await?;
        let migrations = ledger::compare(&set, &state, set.layout);
        // No `[[step]]`, no request for them.
        let steps = if data_steps.is_empty() {
            Vec::new()
        } else {
            let records = steps::ledger::read(backend.as_ref())
                .await
                .map_err(|error| {
                    anyhow::Error::from(error)
                        .context(format!("could not read the data steps of `{}`", env.name))
                })?;
            steps::statuses(&data_steps, &migrations, &records, &[])
        };
        if let Some(progress) = &progress {
            progress.inc();
        }
        anyhow::Ok(EnvStatus {
            name: &env.name,
            backend: backend.kind(),
            location: backend.location(),
            protected: env.protected,
            simulator: env.is_simulated(),
            migrations,
            fleet: None,
            steps,
        })
    }))
    .await;
    drop(progress);
    let reports = reads.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let edited = reports
        .iter()
        .flat_map(|r| &r.migrations)
        .any(|m| m.state == State::ChecksumMismatch && m.line_endings_only != Some(true));
    // A step edited after it ran, or one that did not finish, is the user's to look at.
    let steps_to_check = reports
        .iter()
        .flat_map(|r| &r.steps)
        .any(|s| s.edited || s.state == StepState::Interrupted);

    let fleets: Vec<&EnvStatus<'_>> = reports.iter().filter(|r| r.fleet.is_some()).collect();
    for fleet in &fleets {
        context.printer.message(&format!(
            "`{}` is a fleet: its members were listed, not read; `d1ctl status {}` reads each of them (about one request each)",
            fleet.name, fleet.name
        ));
    }
    if context.printer.is_json() {
        context.printer.json(&StatusReport {
            layout: set.layout.to_string(),
            migrations_dir: display_path(&set.dir),
            environments: reports,
        })?;
    } else if let [single] = reports.as_slice()
        && single.fleet.is_none()
    {
        print_single(context, single, &data_steps)?;
    } else {
        print_matrix(context, &reports, &data_steps)?;
    }
    Ok(if edited || steps_to_check {
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

fn print_single(
    context: &Context,
    report: &EnvStatus<'_>,
    data_steps: &[Step],
) -> anyhow::Result<()> {
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
    if !report.steps.is_empty() {
        out.push_str("  data steps:\n");
        let width = report
            .steps
            .iter()
            .map(|s| step_word(s).len())
            .max()
            .unwrap_or(0);
        for (status, step) in report.steps.iter().zip(data_steps) {
            let word = step_word(status);
            out.push_str(&format!(
                "  {}{} {} ({}, after {}){}\n",
                printer.paint_out(step_style(status), word),
                " ".repeat(width - word.len()),
                status.name,
                step.kind(),
                status.after,
                crate::commands::data_steps::describe_record(status.record.as_ref())
            ));
        }
    }
    out.push_str(&summary(&report.migrations));
    if !report.steps.is_empty() {
        out.push_str(&format!("; {}", step_summary(&report.steps)));
    }
    printer.data(&out)?;
    Ok(())
}

/// A step's state as `status` words it: an edit outranks the state.
fn step_word(status: &StepStatus) -> &'static str {
    if status.edited {
        "edited"
    } else {
        status.state.as_str()
    }
}

fn step_style(status: &StepStatus) -> Style {
    match status.state {
        _ if status.edited => Style::Red,
        StepState::Done => Style::Green,
        StepState::Pending | StepState::Partial => Style::Yellow,
        StepState::Waiting => Style::Bold,
        StepState::Interrupted => Style::Red,
    }
}

fn step_summary(steps: &[StepStatus]) -> String {
    let mut parts = Vec::new();
    for state in [
        StepState::Done,
        StepState::Pending,
        StepState::Partial,
        StepState::Interrupted,
        StepState::Waiting,
    ] {
        let count = steps.iter().filter(|s| s.state == state).count();
        if count > 0 {
            parts.push(format!("{count} {}", state.as_str()));
        }
    }
    let edited = steps.iter().filter(|s| s.edited).count();
    if edited > 0 {
        parts.push(format!("{edited} edited"));
    }
    format!("steps: {}", parts.join(", "))
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

/// Migrations down, environments across (and the data steps below them, the same way).
fn print_matrix(
    context: &Context,
    reports: &[EnvStatus<'_>],
    data_steps: &[Step],
) -> anyhow::Result<()> {
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
        if report.fleet.is_some() {
            // Not read: `-` would say its ledger lacks the migration.
            return ("", None);
        }
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
    if !data_steps.is_empty() {
        out.push_str(&steps_matrix(context, reports, data_steps, first, &widths));
    }
    for report in reports {
        out.push_str(&format!(
            "\n{}{} ({}, {}): {}",
            report.name,
            mark(report),
            report.backend,
            report.location,
            if report.fleet.is_some() {
                "members not read".to_owned()
            } else if report.steps.is_empty() {
                summary(&report.migrations)
            } else {
                format!(
                    "{}; {}",
                    summary(&report.migrations),
                    step_summary(&report.steps)
                )
            }
        ));
    }
    printer.data(&out)?;
    Ok(())
}

/// `status FLEET`: every member read once (about one request each), grouped by ledger state.
/// Exits 1 when a member's file was edited after it ran there, or a member could not be read.
async fn fleet_status(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    env: &Environment,
) -> anyhow::Result<ExitStatus> {
    let fleet = context.fleet(registry, env).await?;
    let connect = fleet.connect();
    let progress = FleetProgress::new(
        &context.printer,
        "reading",
        &env.name,
        Arc::clone(&context.budget),
        true,
    );
    let reads = survey::read_all(&fleet.members, &connect, ledgers, &progress).await;
    let status = summary::status(set, &reads);
    let locks = summary::locks(&reads);
    let must_act = status.edited().next().is_some() || status.unreadable().next().is_some();
    if context.printer.is_json() {
        context.printer.json(&StatusReport {
            layout: set.layout.to_string(),
            migrations_dir: display_path(&set.dir),
            environments: vec![EnvStatus {
                name: &env.name,
                backend: BackendKind::D1,
                location: format!("fleet: {}", plural(fleet.members.len(), "member")),
                protected: env.protected,
                simulator: env.is_simulated(),
                migrations: Vec::new(),
                fleet: Some(FleetColumn {
                    members: fleet.members.len(),
                    read: true,
                    groups: status.groups,
                    databases: status.members,
                }),
                steps: Vec::new(),
            }],
        })?;
    } else {
        print_fleet(context, env, set, &status, &locks)?;
    }
    Ok(if must_act {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// The groups, largest first; the largest is the rest, so only the others are named.
fn print_fleet(
    context: &Context,
    env: &Environment,
    set: &MigrationSet,
    status: &FleetStatus,
    locks: &FleetLocks,
) -> anyhow::Result<()> {
    let printer = &context.printer;
    let total = status.members.len();
    let mut out = format!(
        "{}{} (d1, fleet: {})\n",
        printer.paint_out(Style::Bold, &env.name),
        crate::commands::simulator_mark(env),
        plural(total, "member")
    );
    for (index, group) in status.groups.iter().enumerate() {
        let names: Vec<&str> = group.members.iter().map(String::as_str).collect();
        let who = match (index, status.groups.len()) {
            (_, 1) => ": every member".to_owned(),
            (0, _) => String::new(),
            _ => format!(": {}", name_list(&names, NAMES_SHOWN)),
        };
        out.push_str(&format!("  {} {}{who}\n", names.len(), group.label));
    }
    for holder in &locks.holders {
        let names: Vec<&str> = holder.members.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "  locked: {} by {} on {} (`{}`, held {} s, {} s left): {}\n",
            plural(names.len(), "member"),
            holder.holder.id,
            holder.holder.host,
            holder.holder.command,
            holder.held_seconds,
            holder.expires_in_seconds,
            name_list(&names, NAMES_SHOWN)
        ));
    }
    let edited: Vec<&str> = status.edited().map(|m| m.name.as_str()).collect();
    if !edited.is_empty() {
        out.push_str(&format!(
            "  {} (a file changed after it ran there) on {}: {}\n",
            printer.paint_out(Style::Red, "checksum mismatch"),
            plural(edited.len(), "member"),
            name_list(&edited, NAMES_SHOWN)
        ));
    }
    let complete = status
        .members
        .iter()
        .filter(|m| m.error.is_none() && set.migrations.iter().all(|f| m.applied.contains(&f.name)))
        .count();
    out.push_str(&format!(
        "{complete} of {} applied every migration of the folder ({})",
        plural(total, "member"),
        set.migrations.len()
    ));
    printer.data(&out)?;
    Ok(())
}

/// The steps' rows of the matrix, in the migrations' columns (widened where a word needs it).
fn steps_matrix(
    context: &Context,
    reports: &[EnvStatus<'_>],
    data_steps: &[Step],
    first: usize,
    widths: &[usize],
) -> String {
    let printer = &context.printer;
    let first = data_steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(first)
        .max("data step".len());
    let mut out = format!("\n{}\n", printer.paint_out(Style::Bold, "data step"));
    for step in data_steps {
        let mut line = format!("{:first$}", step.name);
        for (report, width) in reports.iter().zip(widths) {
            let status = report.steps.iter().find(|s| s.name == step.name);
            let word = status.map_or("", step_word);
            let padded = format!("{word:width$}");
            line.push_str("  ");
            line.push_str(&match status {
                Some(status) => printer.paint_out(step_style(status), &padded),
                None => padded,
            });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
