//! `d1ctl lock status|release`: the promotion lock of an env.

use crate::cli::LockCommand;
use crate::commands::{Context, ExitStatus, UserError, simulator_mark};
use crate::core::lock::{self, Liveness};

pub(crate) async fn lock(command: LockCommand, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    match command {
        LockCommand::Status { environment } => {
            let env = registry.resolve(&environment)?;
            let backend = context.backend(&registry, env)?;
            let lease = lock::status(backend.as_ref()).await?;
            if context.printer.is_json() {
                context
                    .printer
                    .json(&serde_json::json!({ "environment": env.name, "simulator": env.is_simulated(), "lock": lease }))?;
            } else {
                let name = format!("`{}`{}", env.name, simulator_mark(env));
                context.printer.data(&match &lease {
                    None => format!("{name} is not locked"),
                    Some(lease) if lease.expired() => format!(
                        "{name} is not locked (the lease of {} expired {} s ago)",
                        lease.holder.id,
                        lease.now - lease.expires_at
                    ),
                    Some(lease) => format!(
                        "{name} is locked by {}\n  host {} pid {}, boot id {}, pid namespace {}\n  command `{}`\n  held {} s, expires in {} s\n  {}",
                        lease.holder.id,
                        lease.holder.host,
                        lease.holder.pid,
                        lease.holder.boot_id.as_deref().unwrap_or("unknown"),
                        lease.holder.pid_namespace.as_deref().unwrap_or("unknown"),
                        lease.holder.command,
                        lease.now - lease.acquired_at,
                        lease.expires_at - lease.now,
                        match lease.holder.liveness_here() {
                            Liveness::Dead(why) =>
                                format!("its holder no longer runs ({why}): the next promotion takes it over"),
                            Liveness::MaybeAlive(why) =>
                                format!("not taken over before it expires: {why}"),
                        }
                    ),
                })?;
            }
            Ok(ExitStatus::Success)
        }
        LockCommand::Release { environment, id } => {
            let env = registry.resolve(&environment)?;
            let (backend, _) = context.open_target(&registry, env, true).await?;
            if lock::force_release(backend.as_ref(), &id).await? {
                context
                    .printer
                    .message(&format!("released the lock {id} on `{}`", env.name));
                Ok(ExitStatus::Success)
            } else {
                Err(UserError::new(
                    format!("`{}` holds no lock with id {id}", env.name),
                    format!(
                        "`d1ctl lock status {}` shows the current holder's id",
                        env.name
                    ),
                )
                .into())
            }
        }
    }
}
