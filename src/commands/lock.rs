//! `d1ctl lock status|release`: the promotion lock of an env; for a whole fleet, every
//! member's, grouped by holder.

use std::sync::Arc;

use serde::Serialize;

use crate::cli::LockCommand;
use crate::cli::fleet_progress::FleetProgress;
use crate::commands::fleet::Fleet;
use crate::commands::{Context, ExitStatus, UserError, plural, simulator_mark};
use crate::core::fleet::summary::{self, HolderGroup, MemberLock};
use crate::core::fleet::{name_list, survey};
use crate::core::ledger::Ledgers;
use crate::core::lock::{self, Liveness};
use crate::core::registry::{Environment, MemberName, Registry};

/// How many members a line names before `and N more`.
const NAMES_SHOWN: usize = 5;

/// `lock status FLEET --format json`.
#[derive(Serialize)]
struct FleetLockReport<'a> {
    environment: &'a str,
    simulator: bool,
    fleet: bool,
    members: usize,
    /// Members with a live lease.
    locked: usize,
    /// Holders with a live lease, most members first.
    holders: &'a [HolderGroup],
    /// Every member's lease (`null` when free).
    databases: &'a [MemberLock],
}

pub(crate) async fn lock(command: LockCommand, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    match command {
        LockCommand::Status { environment } => {
            let env = registry.resolve(&environment)?;
            if context.is_whole_fleet(env) {
                return fleet_status(context, &registry, env).await;
            }
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
            if context.is_whole_fleet(env) {
                return fleet_release(context, &registry, env, &id).await;
            }
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

/// Every member read once (its lock comes with its ledgers, one request on a tracked database).
async fn read_fleet(
    context: &Context,
    registry: &Registry,
    env: &Environment,
) -> anyhow::Result<(Fleet, Vec<survey::MemberRead>)> {
    let set = context.migrations(registry)?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let fleet = context.fleet(registry, env).await?;
    let progress = FleetProgress::new(
        &context.printer,
        "reading",
        &env.name,
        Arc::clone(&context.budget),
        true,
    );
    let reads = survey::read_all(&fleet.members, &fleet.connect(), &ledgers, &progress).await;
    Ok((fleet, reads))
}

/// `lock status FLEET`: how many members are locked, by whom. Exits 1 when a member could not
/// be read (its lock is unknown).
async fn fleet_status(
    context: &Context,
    registry: &Registry,
    env: &Environment,
) -> anyhow::Result<ExitStatus> {
    let (fleet, reads) = read_fleet(context, registry, env).await?;
    let locks = summary::locks(&reads);
    let unreadable: Vec<&MemberLock> = locks.unreadable().collect();
    if context.printer.is_json() {
        context.printer.json(&FleetLockReport {
            environment: &env.name,
            simulator: env.is_simulated(),
            fleet: true,
            members: fleet.members.len(),
            locked: locks.locked(),
            holders: &locks.holders,
            databases: &locks.members,
        })?;
    } else {
        let mut out = format!(
            "`{}`{}: {} of {} locked",
            env.name,
            simulator_mark(env),
            locks.locked(),
            plural(fleet.members.len(), "member")
        );
        for group in &locks.holders {
            let names: Vec<&str> = group.members.iter().map(String::as_str).collect();
            out.push_str(&format!(
                "\n  {} by {} on {} (pid {}, `{}`), held {} s, expires in {} s: {}\n    released with `d1ctl lock release {} --id {}`",
                plural(names.len(), "member"),
                group.holder.id,
                group.holder.host,
                group.holder.pid,
                group.holder.command,
                group.held_seconds,
                group.expires_in_seconds,
                name_list(&names, NAMES_SHOWN),
                env.name,
                group.holder.id
            ));
        }
        for member in &unreadable {
            out.push_str(&format!(
                "\n  unknown: {} could not be read: {}",
                member.name,
                member.error.as_deref().unwrap_or_default()
            ));
        }
        context.printer.data(&out)?;
    }
    Ok(if unreadable.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// `lock release FLEET --id ID`: that holder's lease released on every member that has it
/// (expired ones included, as on one database), one batch each.
async fn fleet_release(
    context: &Context,
    registry: &Registry,
    env: &Environment,
    id: &str,
) -> anyhow::Result<ExitStatus> {
    let (fleet, reads) = read_fleet(context, registry, env).await?;
    let holding: Vec<&MemberName> = reads
        .iter()
        .filter(|read| {
            read.read
                .as_ref()
                .is_ok_and(|r| r.lock.as_ref().is_some_and(|l| l.holder.id == id))
        })
        .map(|read| &read.member)
        .collect();
    if holding.is_empty() {
        return Err(UserError::new(
            format!(
                "no member of `{}` holds a lock with id {id} ({} read)",
                env.name,
                plural(fleet.members.len(), "member")
            ),
            format!("`d1ctl lock status {}` shows the holders' ids", env.name),
        )
        .into());
    }
    let released = summary::release(&holding, &fleet.connect(), id).await;
    context.printer.message(&format!(
        "released the lock {id} on {} of `{}` ({} in all)",
        plural(released.released.len(), "member"),
        env.name,
        plural(fleet.members.len(), "member")
    ));
    for (name, error) in &released.failed {
        context.printer.warning(&format!(
            "{name}: the lock {id} could not be released: {error}"
        ));
    }
    Ok(if released.failed.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
