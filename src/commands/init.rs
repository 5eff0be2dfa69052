//! `d1ctl init`: write `environments.toml` from the wrangler config (and a drizzle config).
//!
//! The work is `core::init`'s; this file turns the arguments into a request, prints the
//! warnings as they come and the summary (or the JSON report) at the end.

use std::path::Path;

use crate::cli::InitArgs;
use crate::cli::printer::Printer;
use crate::commands::{Context, ExitStatus, UserError, display_path, plural};
use crate::core::init::{
    self, InitError, InitReporter, InitRequest, Initialized, Plan, PlannedTarget, Report, Status,
};
use crate::core::registry::DEFAULT_LEDGER;

pub(crate) fn init(args: &InitArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let request = InitRequest {
        config: &context.config,
        wrangler_config: args.wrangler_config.as_deref(),
        force: args.force,
        dry_run: args.dry_run,
    };
    let Initialized {
        report,
        plan,
        changed,
    } = init::run(&request, &InitPrinter(printer)).map_err(into_anyhow)?;
    if printer.is_json() {
        printer.json(&report)?;
    } else {
        if let Some(text) = &report.content {
            printer.data(text)?;
        }
        print_summary(context, &report, &plan, changed);
    }
    Ok(ExitStatus::Success)
}

/// Warnings go to the terminal as `init` finds them; paths are shown as the user would type them.
struct InitPrinter<'a>(&'a Printer);

impl InitReporter for InitPrinter<'_> {
    fn warning(&self, message: &str) {
        self.0.warning(message);
    }

    fn path(&self, path: &Path) -> String {
        display_path(path)
    }
}

/// A mistake of the user's keeps its hint; every other error keeps its cause chain.
fn into_anyhow(error: InitError) -> anyhow::Error {
    match error {
        InitError::User { message, hint } => UserError::new(message, hint).into(),
        InitError::Io(error) => error.into(),
        error => error.into(),
    }
}

/// A path as the user would type it; `.` for the current folder.
fn shown(path: &Path) -> String {
    let text = display_path(path);
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}

fn print_summary(context: &Context, report: &Report, plan: &Plan, changed: bool) {
    let printer = &context.printer;
    printer.message(&if report.created || changed {
        let verb = match (report.created, report.dry_run) {
            (true, false) => "created",
            (true, true) => "would create",
            (false, false) => "updated",
            (false, true) => "would update",
        };
        let count = if report.created {
            format!(" ({})", plural(report.environments.len(), "environment"))
        } else {
            String::new()
        };
        format!(
            "{verb} `{}` from `{}`{count}",
            report.path, report.wrangler_config
        )
    } else {
        format!(
            "nothing to change in `{}` from `{}`",
            report.path, report.wrangler_config
        )
    });
    let width = report
        .environments
        .iter()
        .map(|env| env.name.len())
        .max()
        .unwrap_or(0);
    for env in &report.environments {
        let mut line = format!(
            "  {:width$}  {:6}  {}",
            env.name,
            env.backend,
            env.status.word()
        );
        if !env.changes.is_empty() {
            line.push_str(&format!(" ({})", env.changes.join(", ")));
        }
        if let Some(planned) = plan.envs.iter().find(|p| p.name == env.name) {
            match &planned.target {
                PlannedTarget::Sqlite {
                    wrangler_database_id,
                    ..
                } if report.created => {
                    line.push_str(&format!(
                        "  wrangler's local state for `{wrangler_database_id}`"
                    ));
                }
                PlannedTarget::D1 { database_name, .. } if report.created => {
                    line.push_str(&format!("  {database_name}"));
                }
                _ => {}
            }
        }
        if env.protected && env.status == Status::Added {
            line.push_str(", protected");
        }
        printer.message(&line);
    }
    if !report.project.changes.is_empty() {
        printer.message(&format!(
            "  [project] updated ({})",
            report.project.changes.join(", ")
        ));
    }
    if report.created {
        printer.message(&format!(
            "migrations: `{}`{}",
            report.project.migrations_dir,
            if report.project.ledger == DEFAULT_LEDGER {
                String::new()
            } else {
                format!(", ledger `{}`", report.project.ledger)
            }
        ));
    }
    printer.message(&format!("ladder: {}", report.project.ladder.join(" → ")));
    if report.dry_run {
        printer.message(if report.created || !changed {
            "dry run: nothing was written"
        } else {
            "dry run: nothing was written; `d1ctl init --force` writes it"
        });
    } else if report.written {
        printer.message("next: `d1ctl status` shows where every env stands");
    }
    let migrations_dir = context
        .config
        .parent()
        .unwrap_or(Path::new(""))
        .join(&report.project.migrations_dir);
    if !migrations_dir.is_dir() {
        printer.message(&format!(
            "note: the migrations folder `{}` does not exist yet; `d1ctl new NAME` creates it",
            shown(&migrations_dir)
        ));
    }
}
