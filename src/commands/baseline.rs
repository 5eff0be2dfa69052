//! `d1ctl baseline ENV [--through NAME]`: adopt a database created before it was tracked.

use anyhow::Context as _;

use crate::backend::Statement;
use crate::cli::BaselineArgs;
use crate::cli::printer::Style;
use crate::commands::{Context, ExitStatus, UserError, actor, confirm, plural};
use crate::core::ledger::{self, LedgerPresence, Ledgers, State};
use crate::core::migrations::Migration;
use crate::core::schema::{self, Schema};

pub(crate) async fn baseline(args: BaselineArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let env = registry.resolve(&args.environment)?;
    let through = match &args.through {
        Some(name) => set.position(name).ok_or_else(|| {
            UserError::new(
                format!("`{name}` is not a migration of the folder"),
                "name a file of the migrations folder, e.g. `--through 0007_tags.sql`",
            )
        })?,
        None => set.migrations.len().saturating_sub(1),
    };
    let chosen: Vec<&Migration> = set.migrations.iter().take(through + 1).collect();
    let (backend, _) = context.open_target(&registry, env, true).await?;

    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let read = ledgers
        .read_with_schema(backend.as_ref(), false)
        .await
        .with_context(|| format!("could not read env `{}`", env.name))?;
    let ignore = ledgers.ignored_tables();
    let actual = Schema::build(&read.snapshot, &ignore)?;
    let expected = Schema::build(&schema::replay(&chosen)?, &ignore)?;
    let changes = schema::diff(&expected, &actual);
    if !changes.is_empty() {
        let mut text = format!(
            "`{}` does not match the replay of {} (through `{}`); nothing was recorded\n  going from the replay to `{}`:",
            env.name,
            plural(chosen.len(), "migration"),
            chosen.last().map_or("", |m| m.name.as_str()),
            env.name
        );
        for change in &changes {
            text.push_str(&format!("\n    {}", change.summary));
        }
        printer.error(
            &text,
            Some("baseline through the migration the database really matches (`--through NAME`), or fix the schema first; `d1ctl drift` shows details"),
        );
        return Ok(ExitStatus::Failure);
    }

    let statuses = ledger::compare(&set, &read.state, set.layout);
    let mut statements: Vec<Statement> = Vec::new();
    let mut recorded = Vec::new();
    let by = format!("{} (baseline)", actor());
    for migration in &chosen {
        let status = statuses.iter().find(|s| s.name == migration.name);
        let present = status.map_or_else(LedgerPresence::default, |s| s.ledgers);
        if status.is_some_and(|s| s.state == State::ChecksumMismatch) {
            return Err(UserError::new(
                format!(
                    "`{}` is recorded on `{}` with another checksum",
                    migration.name, env.name
                ),
                "restore the file as it ran; baseline only records what is missing",
            )
            .into());
        }
        let wants_drizzle = ledgers.layout == crate::core::migrations::Layout::Drizzle;
        if present.wrangler && present.d1ctl && (present.drizzle || !wants_drizzle) {
            continue;
        }
        statements.extend(ledgers.record_statements(
            migration,
            &read.state,
            &by,
            Some(&LedgerPresence {
                drizzle: present.drizzle || !wants_drizzle,
                ..present
            }),
        ));
        recorded.push(migration.name.clone());
    }
    if recorded.is_empty() {
        printer.message(&format!(
            "`{}` already records these {}: nothing to do",
            env.name,
            plural(chosen.len(), "migration")
        ));
        return Ok(ExitStatus::Success);
    }
    if env.protected && !confirm(context, env, args.yes)? {
        return Ok(ExitStatus::Failure);
    }
    let mut batch = ledgers.create_statements(&read.state);
    batch.extend(statements);
    backend
        .batch(&batch)
        .await
        .with_context(|| format!("could not write the ledgers of `{}`", env.name))?;
    printer.message(&format!(
        "{} the schema of `{}` matches; recorded {} as applied: {}",
        printer.paint(Style::Green, "baselined:"),
        env.name,
        plural(recorded.len(), "migration"),
        recorded.join(", ")
    ));
    Ok(ExitStatus::Success)
}
