//! `d1ctl rollback ENV [--bookmark B | --last]`: restore an env to a rollback point.

use anyhow::Context as _;

use crate::backend::{Backend, Statement};
use crate::cli::printer::Style;
use crate::cli::{RollbackArgs, StatusArgs};
use crate::commands::{Context, ExitStatus, UserError, confirm, status};
use crate::core::lock;
use crate::core::promote::ROLLBACK_TABLE;

pub(crate) async fn rollback(args: RollbackArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let env = registry.resolve(&args.environment)?;
    let (backend, _) = context.open_target(&registry, env, true).await?;
    let point = if let Some(point) = args.bookmark {
        point
    } else {
        last_point(context, backend.as_ref(), &env.name).await?
    };
    printer.warning(&format!(
        "this replaces the whole of `{}` with its state at the rollback point; later writes are lost",
        env.name
    ));
    if env.protected && !confirm(context, env, args.yes)? {
        return Ok(ExitStatus::Failure);
    }
    // No promotion may run while the database is replaced.
    let me = lock::Holder::for_this_process(&format!("rollback {}", env.name));
    match lock::acquire(backend.as_ref(), &env.name, &me).await {
        Ok(_) => {}
        Err(error @ lock::LockError::Held { .. }) => {
            printer.error(
                &error.to_string(),
                Some("wait for the promotion to finish, then roll back"),
            );
            return Ok(ExitStatus::Failure);
        }
        Err(lock::LockError::Backend(error)) => return Err(error.into()),
    }
    let backups = registry.root.join(".d1ctl").join("backups");
    let restored = backend.restore(&point, &backups, &env.name).await;
    // The restored state may hold the lock row of the promotion that took the point (or ours,
    // if the restore failed): both are stale now.
    let _ = backend
        .batch(&[Statement::new(format!("DELETE FROM {}", lock::LOCK_TABLE))])
        .await;
    let undo = restored.with_context(|| format!("could not restore `{}`", env.name))?;
    printer.message(&format!(
        "{} `{}` is back at {point}\nundo with: d1ctl rollback {} --bookmark {}",
        printer.paint(Style::Green, "restored:"),
        env.name,
        env.name,
        undo.point
    ));
    status::status(
        StatusArgs {
            environments: vec![env.name.clone()],
        },
        context,
    )
    .await
}

/// The newest rollback point recorded on the env by `promote`.
async fn last_point(context: &Context, backend: &dyn Backend, env: &str) -> anyhow::Result<String> {
    let rows = backend
        .read(&[Statement::new(format!(
            "SELECT kind, point, taken_at, command FROM {ROLLBACK_TABLE} ORDER BY id DESC LIMIT 1"
        ))])
        .await;
    let last = rows.ok().and_then(|rows| {
        let table = rows.into_iter().next()?;
        let row = table.rows.first()?;
        Some((
            table.get(row, "point").to_text()?,
            table.get(row, "taken_at").to_text().unwrap_or_default(),
            table.get(row, "command").to_text().unwrap_or_default(),
        ))
    });
    let Some((point, taken_at, command)) = last else {
        return Err(UserError::new(
            format!("`{env}` has no recorded rollback point"),
            "rollback points are recorded by `d1ctl promote`; pass one with `--bookmark`",
        )
        .into());
    };
    context.printer.message(&format!(
        "the last rollback point was taken at {taken_at} by `{command}`"
    ));
    Ok(point)
}
