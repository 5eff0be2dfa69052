//! What `pull` and `reset` share: both replace a local env's whole file through
//! `core::write::replace`, and `reset ENV --from OTHER` is `pull OTHER --into ENV` by this
//! same code. Not a command of its own.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::printer::Style;
use crate::cli::reporter::{ExportProgress, WriteProgress};
use crate::commands::{Context, ExitStatus, UserError, WriteRequest, display_path, plural};
use crate::core::ledger::{self, Ledgers};
use crate::core::migrations::MigrationSet;
use crate::core::registry::{Environment, Registry, Target};
use crate::core::temp::tmp_dir;
use crate::core::write::replace::{Content, ReplaceError, ReplaceJob, ReplacePlan};
use crate::core::write::{Outcome, WriteError};
use crate::local::SqliteBackend;

/// The command that replaces the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Pull,
    Reset,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Pull => "pull",
            Verb::Reset => "reset",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One replacement of a local env's file, as a command asks for it.
pub(crate) struct Replace<'a> {
    /// Named in messages and refusals; `pull`'s output stays what it always was.
    pub(crate) verb: Verb,
    /// The env to copy; `None`: a new file built from the migrations (`reset`).
    pub(crate) source: Option<&'a Environment>,
    pub(crate) target: &'a Environment,
    /// `reset`: the folder, to build from and to count the new file's migrations against.
    pub(crate) set: Option<&'a MigrationSet>,
    /// What the session is recorded as, and the command to rerun with `--yes`.
    pub(crate) command: String,
    pub(crate) yes: bool,
    pub(crate) dry_run: bool,
}

#[derive(Serialize)]
struct ReplaceReport<'a> {
    /// The env copied; `null` for a file built from the migrations.
    source: Option<&'a str>,
    target: &'a str,
    /// Where the target's previous file was kept; `null` when nothing was written.
    backup: Option<String>,
    /// `reset` only (`pull`'s report stays as it was).
    #[serde(flatten)]
    reset: Option<ResetFields>,
    /// Tables in the new file (ledgers included, SQLite's own left out).
    tables: Option<usize>,
    /// Size of the dump that was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

#[derive(Serialize)]
struct ResetFields {
    dry_run: bool,
    /// Migrations of the folder the new file's ledgers record (with `--dry-run`: the new
    /// file would have; `null` for a copy not made yet).
    migrations: Option<usize>,
}

/// The target must be a local env that is not protected; returns its file.
pub(crate) fn local_target(verb: Verb, target: &Environment) -> anyhow::Result<PathBuf> {
    let Target::Sqlite(sqlite) = &target.target else {
        let simulated = if target.is_simulated() {
            " (on d1ctl's simulator)"
        } else {
            ""
        };
        return Err(UserError::new(
            format!(
                "env `{}` is a d1 env{simulated}; `{verb}` writes only into local (`backend = \"sqlite\"`) envs",
                target.name
            ),
            match verb {
                Verb::Pull => "to copy data into D1, `d1ctl export` it and import the file with `wrangler d1 execute --remote --file`".to_owned(),
                Verb::Reset => format!(
                    "a d1 env is changed by its migrations: `d1ctl promote --to {}`; `d1ctl rollback {} --last` undoes its last write",
                    target.name, target.name
                ),
            },
        )
        .into());
    };
    if target.protected {
        return Err(UserError::new(
            format!(
                "env `{}` is protected; `{verb}` does not overwrite protected environments",
                target.name
            ),
            format!(
                "{verb} an unprotected local env, or remove `protected = true` from it in environments.toml"
            ),
        )
        .into());
    }
    Ok(sqlite.path.clone())
}

/// The source must be another env, and not the target's file under another name.
fn check_source(verb: Verb, source: &Environment, target: &Environment) -> anyhow::Result<()> {
    if source.name == target.name {
        return Err(UserError::new(
            format!("`{verb}` needs two different envs; both name `{}`", source.name),
            match verb {
                Verb::Pull => "name the env to copy from first and the local env to copy into with `--into`, e.g. `d1ctl pull prod --into local`".to_owned(),
                Verb::Reset => format!("`--from` names the env to copy, e.g. `d1ctl {verb} {} --from prod`", target.name),
            },
        )
        .into());
    }
    if let (Target::Sqlite(from), Target::Sqlite(into)) = (&source.target, &target.target)
        && same_file(&from.path, &into.path)
    {
        return Err(UserError::new(
            format!(
                "envs `{}` and `{}` are the same file `{}`",
                source.name,
                target.name,
                display_path(&into.path)
            ),
            "check their `path` / `wrangler_database_id` in environments.toml",
        )
        .into());
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs_err::canonicalize(a), fs_err::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Runs one replacement through the write engine and reports it.
pub(crate) async fn replace(
    context: &Context,
    registry: &Registry,
    request: Replace<'_>,
) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let Replace {
        verb,
        source: source_env,
        target: target_env,
        set,
        command,
        yes,
        dry_run,
    } = request;
    let target_path = local_target(verb, target_env)?;
    if let Some(source_env) = source_env {
        check_source(verb, source_env, target_env)?;
    }
    printer.message(&context.target_line(
        target_env,
        BackendKind::Sqlite,
        &display_path(&target_path),
    ));
    let ledgers = Ledgers::new(
        &registry.project.ledger,
        set.map_or(crate::core::migrations::Layout::Wrangler, |set| set.layout),
    );
    let source = match source_env {
        Some(env) => Some(context.open_source(registry, env).await?),
        None => None,
    };
    match (&source, set) {
        (Some(source), _) => printer.message(&format!(
            "{} {}{} ({}, {}{})",
            printer.paint(Style::Bold, "source:"),
            printer.paint(Style::Cyan, &source.env.name),
            crate::commands::simulator_mark(source.env),
            source.kind(),
            source.label,
            if source.env.protected {
                ", protected"
            } else {
                ""
            }
        )),
        (None, Some(set)) => printer.message(&format!(
            "{} {} (`{}`, {}, applied to a new file)",
            printer.paint(Style::Bold, "source:"),
            printer.paint(Style::Cyan, "migrations"),
            display_path(&set.dir),
            plural(set.migrations.len(), "migration"),
        )),
        (None, None) => {}
    }
    let d1_rules = match &target_env.target {
        Target::Sqlite(sqlite) => sqlite.d1_rules,
        Target::D1(_) => true,
    };
    let target_name = target_env.name.clone();
    let shown_path = display_path(&target_path);
    let write_progress = WriteProgress::new(
        printer,
        &target_env.name,
        format!("d1ctl {command}"),
        move |plan: &ReplacePlan, changed| {
            show_plan(context, &target_name, &shown_path, plan, changed);
        },
    );
    let export_progress = ExportProgress::new(printer);
    let applied_by = crate::commands::actor();
    let tmp;
    let made_of = match (&source, set) {
        (Some(source), _) => {
            tmp = tmp_dir(registry)?;
            Content::Copy {
                source,
                tmp_dir: &tmp,
                reporter: &export_progress,
            }
        }
        (None, Some(set)) => Content::Migrations {
            set,
            ledgers: &ledgers,
            actor: &applied_by,
            d1_rules,
            reporter: &write_progress,
        },
        (None, None) => anyhow::bail!("`{verb}` was given neither a source nor migrations"),
    };
    let job = ReplaceJob::new(
        made_of,
        verb.as_str(),
        &target_env.name,
        &target_path,
        &registry.project.ledger,
    );
    context.local_folder(registry, target_env, &target_path)?;
    let backend = SqliteBackend::new(&target_path, d1_rules);
    let write = WriteRequest {
        registry,
        env: target_env,
        backend: &backend,
        command: command.clone(),
        yes,
        dry_run,
    };
    // Read before the lock, which creates the file it locks.
    let existed = target_path.exists();
    let report = match context.write(write, &job, &write_progress).await {
        Ok(Ok(report)) => report,
        Ok(Err(status)) => return Ok(status),
        Err(error) => return migration_failed(context, &error, &command).ok_or(error),
    };
    let mut json = ReplaceReport {
        source: source_env.map(|env| env.name.as_str()),
        target: &target_env.name,
        reset: (verb == Verb::Reset).then_some(ResetFields {
            dry_run,
            migrations: None,
        }),
        backup: report.point.as_ref().map(|point| point.point.clone()),
        tables: None,
        bytes: None,
    };
    let undo = report.point.as_ref().map(|point| {
        format!(
            "d1ctl rollback {} --bookmark {}",
            target_env.name, point.point
        )
    });
    match report.outcome {
        Outcome::Written => {}
        Outcome::Planned => {
            if let Some(reset) = &mut json.reset {
                reset.migrations = source.is_none().then_some(report.plan.migrations.len());
            }
            if printer.is_json() {
                printer.json(&json)?;
            } else {
                printer.data(&would_do(
                    source_env,
                    target_env,
                    &target_path,
                    &report.plan,
                ))?;
            }
            return Ok(ExitStatus::Success);
        }
        Outcome::Blocked => {
            printer.message("nothing was written");
            return Ok(ExitStatus::Error);
        }
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
                    "{}: its state before the {verb} is kept: {undo}",
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
    json.tables = Some(tables);
    if source.is_some() {
        json.bytes = Some(done.bytes);
    }
    if let Some(set) = set {
        let state = crate::commands::read_ledgers(&ledgers, &backend, target_env).await?;
        let recorded = ledger::compare(set, &state, set.layout)
            .iter()
            .filter(|status| status.is_applied())
            .count();
        if let Some(reset) = &mut json.reset {
            reset.migrations = Some(recorded);
        }
    }
    if printer.is_json() {
        printer.json(&json)?;
    }
    let migrated = crate::core::write::migrate::Migrated {
        applied: done.applied.clone(),
        ..Default::default()
    };
    context.report_applied(&migrated, &target_env.name);
    let counted = json
        .reset
        .as_ref()
        .and_then(|reset| reset.migrations)
        .map(|count| format!("{}, ", plural(count, "migration")))
        .unwrap_or_default();
    match source_env {
        Some(source_env) => printer.message(&format!(
            "{} copied `{}` into `{}`: {counted}{} ({} bytes of SQL)",
            printer.paint(Style::Green, "done:"),
            source_env.name,
            target_env.name,
            plural(tables, "table"),
            done.bytes,
        )),
        None => printer.message(&format!(
            "{} `{}` is a new file with {counted}{} and no rows",
            printer.paint(Style::Green, "done:"),
            target_env.name,
            plural(tables, "table"),
        )),
    }
    if let Some(undo) = &undo {
        if verb == Verb::Pull {
            printer.message(&format!("undo with: {undo}"));
        } else if let Some(backup) = &json.backup {
            printer.message(&if existed {
                format!("the previous file is kept as `{backup}`; restore it with: {undo}")
            } else {
                format!(
                    "there was no file before; `{backup}` is the empty database the lock made; restore it with: {undo}"
                )
            });
        }
    }
    Ok(ExitStatus::Success)
}

/// How the engine's plan is shown: a missing file is said once, `reset`'s problems always.
fn show_plan(context: &Context, env: &str, path: &str, plan: &ReplacePlan, changed: bool) {
    let printer = &context.printer;
    if !plan.exists && !changed {
        printer.message(&format!(
            "`{env}` has no file yet (`{path}`): there is nothing of it to back up (its rollback point is the empty database its lock creates)"
        ));
    }
    for problem in &plan.problems {
        let at = match (problem.statement, problem.line) {
            (Some(statement), Some(line)) => format!(" (statement {statement}, line {line})"),
            _ => String::new(),
        };
        printer.error(
            &format!("`{}`{at} {}", problem.migration, problem.message),
            Some(&problem.hint),
        );
    }
}

/// What `--dry-run` says would happen.
fn would_do(
    source: Option<&Environment>,
    target: &Environment,
    path: &Path,
    plan: &ReplacePlan,
) -> String {
    let mut out = if let Some(source) = source {
        format!(
            "would replace `{}` (`{}`) with a copy of `{}`'s schema and data\n",
            target.name,
            display_path(path),
            source.name
        )
    } else {
        let mut out = format!(
            "would replace `{}` (`{}`) with a new file holding {} and no rows:\n",
            target.name,
            display_path(path),
            plural(plan.migrations.len(), "migration")
        );
        for name in &plan.migrations {
            out.push_str(&format!("  {name}\n"));
        }
        out
    };
    out.push_str(&match (plan.exists, plan.with_data.is_empty()) {
        (false, _) => "it has no file yet: nothing to back up\n".to_owned(),
        (true, true) => "its current file holds no rows; it would be kept under `.d1ctl/backups/`\n"
            .to_owned(),
        (true, false) => format!(
            "its current file holds rows in {} ({}); it would be kept under `.d1ctl/backups/`, after you confirm\n",
            plural(plan.with_data.len(), "table"),
            plan.with_data
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    out
}

/// A migration that failed on the new file stopped the session before the lock: the target
/// was not touched. The user must fix the migration (exit 1), as after a failed `apply`.
fn migration_failed(context: &Context, error: &anyhow::Error, command: &str) -> Option<ExitStatus> {
    let failure = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(WriteError::Prepare(inner)) => inner.downcast_ref::<ReplaceError>(),
        _ => cause.downcast_ref::<ReplaceError>(),
    })?;
    let ReplaceError::Migration { .. } = failure else {
        return None;
    };
    context.printer.error(
        &failure.to_string(),
        Some(&format!(
            "fix the migration and run `d1ctl {command}` again"
        )),
    );
    Some(ExitStatus::Failure)
}
