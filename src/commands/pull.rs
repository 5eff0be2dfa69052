//! `d1ctl pull ENV --into LOCAL_ENV`: replace a local SQLite env with a copy of another env's
//! schema and data ("sync from production").
//!
//! The write itself is `core::write::replace`, run by the write engine: dump and build before
//! the lock, then under it keep the target as the session's rollback point and rename the copy over
//! it. The dump carries the ledger tables, so the target's ledgers end up as the source's.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::PullArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::{ExportProgress, WriteProgress};
use crate::commands::{Context, ExitStatus, UserError, WriteRequest, display_path, plural};
use crate::core::registry::{Environment, Target};
use crate::core::temp::tmp_dir;
use crate::core::write::Outcome;
use crate::core::write::replace::{PullJob, PullPlan};
use crate::local::SqliteBackend;

#[derive(Serialize)]
struct PullReport<'a> {
    source: &'a str,
    target: &'a str,
    /// Where the target's previous file was kept; `null` when there was none.
    backup: Option<String>,
    /// Tables in the new file (ledgers included, SQLite's own left out).
    tables: usize,
    /// Size of the dump that was loaded.
    bytes: u64,
}

pub(crate) async fn pull(args: PullArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let source_env = registry.resolve(&args.environment)?;
    let target_env = registry.resolve(&args.into)?;
    let target_path = check_target(source_env, target_env)?;
    printer.message(&context.target_line(
        target_env,
        BackendKind::Sqlite,
        &display_path(&target_path),
    ));

    let source = context.open_source(&registry, source_env).await?;
    printer.message(&format!(
        "{} {}{} ({}, {}{})",
        printer.paint(Style::Bold, "source:"),
        printer.paint(Style::Cyan, &source_env.name),
        crate::commands::simulator_mark(source_env),
        source.kind(),
        source.label,
        if source_env.protected {
            ", protected"
        } else {
            ""
        }
    ));
    let progress = ExportProgress::new(printer);
    let tmp = tmp_dir(&registry)?;
    let job = PullJob::new(
        &source,
        &target_env.name,
        &target_path,
        &registry.project.ledger,
        &tmp,
        &progress,
    );
    let d1_rules = match &target_env.target {
        Target::Sqlite(sqlite) => sqlite.d1_rules,
        Target::D1(_) => true,
    };
    context.local_folder(&registry, target_env, &target_path)?;
    let backend = SqliteBackend::new(&target_path, d1_rules);
    let write_progress = WriteProgress::new(
        printer,
        &target_env.name,
        format!("d1ctl pull {} --into {}", source_env.name, target_env.name),
        |_: &PullPlan, _| {},
    );
    let request = WriteRequest {
        registry: &registry,
        env: target_env,
        backend: &backend,
        command: format!("pull {} --into {}", source_env.name, target_env.name),
        yes: args.yes,
        dry_run: false,
    };
    let report = match context.write(request, &job, &write_progress).await? {
        Ok(report) => report,
        Err(status) => return Ok(status),
    };
    let undo = report.point.as_ref().map(|point| {
        format!(
            "d1ctl rollback {} --bookmark {}",
            target_env.name, point.point
        )
    });
    match report.outcome {
        Outcome::Written => {}
        Outcome::Failed => {
            if let Some(failure) = &report.failure {
                printer.error(&failure.unit.headline(), None);
                printer.message(&match &failure.after {
                    Ok(_) => format!(
                        "`{}` was left as it was (`{}`)",
                        target_env.name,
                        display_path(&target_path)
                    ),
                    Err(error) => format!("could not look at `{}`: {error}", target_env.name),
                });
            }
            if let Some(undo) = &undo {
                printer.message(&format!(
                    "{}: its state before the pull is kept: {undo}",
                    printer.paint(Style::Cyan, "rollback")
                ));
            }
            return Ok(ExitStatus::Failure);
        }
        _ => return Ok(ExitStatus::Failure),
    }
    let done = report.done.unwrap_or_default();
    if done.foreign_key_violations > 0 {
        printer.warning(&format!(
            "{} violate a foreign key in the copy, as in the source",
            plural(
                usize::try_from(done.foreign_key_violations).unwrap_or(usize::MAX),
                "row"
            )
        ));
    }
    let tables = match &report.verified {
        Some(Ok(verified)) => verified.tables,
        Some(Err(error)) => {
            printer.warning(error);
            done.tables
        }
        None => done.tables,
    };
    let json = PullReport {
        source: &source_env.name,
        target: &target_env.name,
        backup: report.point.as_ref().map(|point| point.point.clone()),
        tables,
        bytes: done.bytes,
    };
    if printer.is_json() {
        printer.json(&json)?;
    }
    printer.message(&format!(
        "{} copied `{}` into `{}`: {} ({} bytes of SQL)",
        printer.paint(Style::Green, "done:"),
        source_env.name,
        target_env.name,
        plural(tables, "table"),
        done.bytes,
    ));
    if let Some(undo) = &undo {
        printer.message(&format!("undo with: {undo}"));
    }
    Ok(ExitStatus::Success)
}

/// The target must be a different, unprotected, local env; returns its file.
fn check_target(source: &Environment, target: &Environment) -> anyhow::Result<PathBuf> {
    if source.name == target.name {
        return Err(UserError::new(
            format!("`pull` needs two different envs; both name `{}`", source.name),
            "name the env to copy from first and the local env to copy into with `--into`, e.g. `d1ctl pull prod --into local`",
        )
        .into());
    }
    let Target::Sqlite(sqlite) = &target.target else {
        return Err(UserError::new(
            format!(
                "env `{}` is a d1 env; `pull` writes only into local (`backend = \"sqlite\"`) envs",
                target.name
            ),
            "to copy data into D1, `d1ctl export` it and import the file with `wrangler d1 execute --remote --file`",
        )
        .into());
    };
    if target.protected {
        return Err(UserError::new(
            format!(
                "env `{}` is protected; `pull` does not overwrite protected environments",
                target.name
            ),
            "pull into an unprotected local env, or remove `protected = true` from it in environments.toml",
        )
        .into());
    }
    if let Target::Sqlite(from) = &source.target
        && same_file(&from.path, &sqlite.path)
    {
        return Err(UserError::new(
            format!(
                "envs `{}` and `{}` are the same file `{}`",
                source.name,
                target.name,
                display_path(&sqlite.path)
            ),
            "check their `path` / `wrangler_database_id` in environments.toml",
        )
        .into());
    }
    Ok(sqlite.path.clone())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs_err::canonicalize(a), fs_err::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
