//! `d1ctl apply ENV`: apply every pending migration, each atomically with its ledger rows.

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::ApplyArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::ApplyProgress;
use crate::commands::{Context, ExitStatus, UserError, actor, display_path, plural, read_ledgers};
use crate::core::apply::{self, Applied, Problem};
use crate::core::ledger::{self, LedgerState, Ledgers, State};
use crate::core::migrations::Migration;
use crate::core::schema::Snapshot;

#[derive(Serialize)]
struct ApplyReport<'a> {
    environment: &'a str,
    backend: String,
    location: String,
    simulator: bool,
    dry_run: bool,
    applied: Vec<Applied>,
    pending: Vec<PendingMigration<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureReport>,
}

#[derive(Serialize)]
struct PendingMigration<'a> {
    name: &'a str,
    statements: usize,
    bytes: usize,
}

#[derive(Serialize)]
struct FailureReport {
    migration: String,
    statement: Option<usize>,
    line: Option<usize>,
    message: String,
    not_attempted: Vec<String>,
}

pub(crate) async fn apply(args: ApplyArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let env = registry.resolve(&args.environment)?;
    if env.protected {
        return Err(UserError::new(
            format!(
                "env `{}` is protected; `apply` does not write to protected environments",
                env.name
            ),
            format!(
                "promote to it with gates and a confirmation: `d1ctl promote --to {}`",
                env.name
            ),
        )
        .into());
    }
    let set = context.migrations(&registry)?;
    let (backend, identity) = context.open_target(&registry, env, true).await?;

    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let (state, snapshot) = if identity.known_empty {
        (LedgerState::default(), Snapshot::default())
    } else {
        let read = ledgers
            .read_with_schema(backend.as_ref(), false)
            .await
            .with_context(|| format!("could not read the ledgers of env `{}`", env.name))?;
        (read.state, read.snapshot)
    };
    let statuses = ledger::compare(&set, &state, set.layout);

    let mut edited = false;
    for status in &statuses {
        match (status.state, status.line_endings_only) {
            (State::ChecksumMismatch, Some(true)) => printer.warning(&format!(
                "`{}` differs from what ran on `{}` only in line endings",
                status.name, env.name
            )),
            (State::ChecksumMismatch, _) => {
                edited = true;
                printer.error(
                    &format!(
                        "`{}` was edited after it ran on `{}` (recorded sha256 {}, file sha256 {})",
                        status.name,
                        env.name,
                        short(status.recorded_sha256.as_deref()),
                        short(status.local_sha256.as_deref())
                    ),
                    None,
                );
            }
            (State::MissingLocally, _) => printer.warning(&format!(
                "`{}` is recorded as applied on `{}` but is not in `{}`",
                status.name,
                env.name,
                display_path(&set.dir)
            )),
            _ => {}
        }
    }
    if edited {
        printer.error(
            "refusing to apply: an applied migration's file no longer matches what ran",
            Some("restore the file from version control and put the change in a new migration (`d1ctl new NAME`)"),
        );
        return Ok(ExitStatus::Failure);
    }

    let pending: Vec<&Migration> = statuses
        .iter()
        .filter(|s| s.state == State::Pending)
        .filter_map(|s| set.get(&s.name))
        .collect();
    let problems = apply::check_pending(&pending, backend.kind());
    if !problems.is_empty() {
        for problem in &problems {
            printer.error(&describe_problem(&set.dir, problem), Some(&problem.hint));
        }
        printer.message("nothing was applied");
        return Ok(ExitStatus::Error);
    }

    let pending_report: Vec<PendingMigration<'_>> = pending
        .iter()
        .map(|m| PendingMigration {
            name: &m.name,
            statements: m.statements.len(),
            bytes: m.size,
        })
        .collect();
    let mut report = ApplyReport {
        environment: &env.name,
        backend: backend.kind().to_string(),
        location: backend.location(),
        simulator: env.is_simulated(),
        dry_run: args.dry_run,
        applied: Vec::new(),
        pending: pending_report,
        failure: None,
    };

    if args.dry_run || pending.is_empty() {
        if printer.is_json() {
            printer.json(&report)?;
        } else if pending.is_empty() {
            printer.message(&format!("`{}` is up to date: nothing to apply", env.name));
        } else {
            let mut out = format!(
                "would apply {} to `{}`:\n",
                plural(pending.len(), "migration"),
                env.name
            );
            for migration in &report.pending {
                out.push_str(&format!(
                    "  {} ({})\n",
                    migration.name,
                    plural(migration.statements, "statement")
                ));
            }
            printer.data(&out)?;
        }
        return Ok(ExitStatus::Success);
    }

    let applied_by = actor();
    // Migrations some other tool applied get their rows in the ledgers that lack them, so
    // wrangler, drizzle and d1ctl agree before anything new runs.
    let sync = apply::sync_statements(
        &set,
        &statuses,
        &ledgers,
        &state,
        &format!("{applied_by} (adopted)"),
    );
    let state = if sync.is_empty() {
        state
    } else {
        backend
            .batch(&sync)
            .await
            .map_err(anyhow::Error::from)
            .map_err(|error| {
                error.context(format!(
                    "could not bring the ledgers of `{}` in step",
                    env.name
                ))
            })?;
        printer.detail("recorded already-applied migrations in the ledgers that lacked them");
        read_ledgers(&ledgers, backend.as_ref(), env).await?
    };

    let progress = ApplyProgress::new(printer, &env.name);
    let outcome = apply::apply(
        backend.as_ref(),
        &ledgers,
        &state,
        &snapshot,
        &pending,
        &applied_by,
        &apply::Extras::default(),
        &progress,
    )
    .await;
    context.report_applied(&outcome, &env.name);
    report.applied = outcome.applied;
    let Some(failure) = outcome.failure else {
        if printer.is_json() {
            printer.json(&report)?;
        } else {
            printer.message(&format!(
                "{} {} applied to `{}`",
                printer.paint(Style::Green, "done:"),
                plural(report.applied.len(), "migration"),
                env.name
            ));
        }
        return Ok(ExitStatus::Success);
    };

    let file = set
        .get(&failure.migration)
        .map_or_else(|| failure.migration.clone(), |m| display_path(&m.path));
    printer.error(&failure.headline(), None);
    if failure.verified_not_committed {
        printer.message(&format!(
            "the response was lost; `{}`'s ledger shows `{}` did not commit, so nothing of it ran",
            env.name, failure.migration
        ));
    }
    printer.message(
        &describe_state_after_failure(&set, &ledgers, backend.as_ref(), env, &failure).await,
    );
    printer.message(&format!(
        "\n{}: fix `{file}` if it is wrong and run `d1ctl apply {}` again; it continues from `{}`",
        printer.paint(Style::Cyan, "hint"),
        env.name,
        failure.migration
    ));
    report.failure = Some(FailureReport {
        migration: failure.migration.clone(),
        statement: failure.statement,
        line: failure.line,
        message: failure.headline(),
        not_attempted: failure.not_attempted.clone(),
    });
    if printer.is_json() {
        printer.json(&report)?;
    }
    Ok(ExitStatus::Failure)
}

/// What the target holds now, read from the target itself: its ledger and its schema.
async fn describe_state_after_failure(
    set: &crate::core::migrations::MigrationSet,
    ledgers: &Ledgers,
    backend: &dyn crate::backend::Backend,
    env: &crate::core::registry::Environment,
    failure: &apply::ApplyFailure,
) -> String {
    let state = match read_ledgers(ledgers, backend, env).await {
        Ok(state) => state,
        Err(error) => return format!("could not re-read the ledgers of `{}`: {error:#}", env.name),
    };
    let statuses = ledger::compare(set, &state, set.layout);
    let applied: Vec<&str> = statuses
        .iter()
        .filter(|s| s.is_applied())
        .map(|s| s.name.as_str())
        .collect();
    let failed_recorded = applied.contains(&failure.migration.as_str());
    let mut text = format!(
        "`{}` now has {} applied{}; `{}` {}",
        env.name,
        plural(applied.len(), "migration"),
        applied
            .last()
            .map_or_else(String::new, |last| format!(" (the last is `{last}`)")),
        failure.migration,
        if failed_recorded {
            "is recorded as applied (its unit committed)"
        } else {
            "was rolled back and left no trace"
        },
    );
    if !failure.not_attempted.is_empty() {
        text.push_str(&format!(
            "; not attempted: {}",
            failure.not_attempted.join(", ")
        ));
    }
    let schema = backend
        .read(&[crate::backend::Statement::new(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND type IN ('table', 'view') ORDER BY name",
        )])
        .await;
    if let Ok(rows) = schema {
        let names: Vec<String> = rows[0]
            .rows
            .iter()
            .filter_map(|row| row.get(1).and_then(crate::backend::Value::to_text))
            .filter(|name| !ledgers.table_names().contains(&name.as_str()))
            .collect();
        text.push_str(&format!(
            "\nits tables and views now: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    text
}

fn describe_problem(dir: &std::path::Path, problem: &Problem) -> String {
    let file = display_path(&dir.join(&problem.migration));
    match (problem.statement, problem.line) {
        (Some(statement), Some(line)) => {
            format!("{file}:{line}: statement {statement} {}", problem.message)
        }
        _ => format!("{file}: {}", problem.message),
    }
}

fn short(hash: Option<&str>) -> &str {
    hash.and_then(|h| h.get(..12)).unwrap_or("?")
}
