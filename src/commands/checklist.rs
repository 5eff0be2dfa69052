//! `d1ctl checklist --to ENV`: the release checklist of that promotion, for the release PR; for
//! a whole fleet, one member's checklist with a section on the fleet and its rollout.

use std::sync::Arc;

use crate::backend::BackendKind;
use crate::cli::fleet_progress::FleetProgress;
use crate::cli::{ChecklistArgs, Format};
use crate::commands::{Context, ExitStatus, Rung, UserError, plural};
use crate::core::checklist::{self, Checklist, FleetSection, Hooks, Rollback, Target, TargetFacts};
use crate::core::fleet::{plan, survey};
use crate::core::ledger::Ledgers;
use crate::core::migrations::MigrationSet;
use crate::core::promote::{self, Plan, View};
use crate::core::registry::{Environment, Registry};
use crate::core::rehearse::record;

pub(crate) async fn checklist(
    args: ChecklistArgs,
    context: &Context,
) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let env = registry.resolve(&args.to)?;
    if !registry.project.ladder.contains(&env.name) {
        return Err(UserError::new(
            format!("env `{}` is not on the ladder", env.name),
            "add it to `ladder` under `[project]` in environments.toml",
        )
        .into());
    }
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    if context.is_whole_fleet(env) {
        let checklist = fleet_checklist(context, &registry, &set, &ledgers, env).await?;
        return print(context, &checklist);
    }
    let data_steps = context.steps(&registry, &set)?;
    let Rung {
        backend,
        identity,
        source,
        target,
        mut plan,
    } = context
        .read_rung(&registry, &set, &ledgers, env, false)
        .await?;
    let pending: Vec<String> = plan.pending.iter().map(|p| p.name.clone()).collect();
    let (_, planned_steps) = context
        .plan_steps(
            &registry,
            env,
            &data_steps,
            backend.as_ref(),
            &target.statuses,
            &pending,
        )
        .await?;
    plan.gates
        .extend(crate::core::steps::plan::gate(&planned_steps));
    let facts = facts(
        context,
        &registry,
        (&set, &ledgers),
        env,
        &plan,
        &target,
        Target {
            environment: env.name.clone(),
            backend: backend.kind().to_string(),
            database: identity.label,
            protected: env.protected,
            simulator: env.is_simulated(),
        },
        rollback(backend.kind(), env),
    );
    let names: Vec<String> = set.migrations.iter().map(|m| m.name.clone()).collect();
    let mut checklist = checklist::build(&plan, &source, &target, facts, &names);
    checklist.steps = planned_steps;
    print(context, &checklist)
}

fn print(context: &Context, checklist: &Checklist) -> anyhow::Result<ExitStatus> {
    if context.printer.format == Format::Json {
        context.printer.json(checklist)?;
    } else {
        context
            .printer
            .data(&checklist::render_markdown(checklist))?;
    }
    Ok(if checklist.blocked {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn rollback(kind: BackendKind, env: &Environment) -> Rollback {
    Rollback {
        kind: if kind == BackendKind::D1 {
            "bookmark"
        } else {
            "backup"
        },
        taken: if env.fleet().is_some() {
            "A Time Travel bookmark of each member, recorded in the batch that promotes it,"
                .to_owned()
        } else if kind == BackendKind::D1 {
            "A Time Travel bookmark".to_owned()
        } else {
            "A backup of the database file under `.d1ctl/backups/`".to_owned()
        },
        command: format!("d1ctl rollback {} --last", env.name),
    }
}

/// What the checklist says of the target beyond its plan: its drift, the last rehearsal of
/// this pending set, the rollback and the hooks.
#[expect(
    clippy::too_many_arguments,
    reason = "one target's facts, stated in full"
)]
fn facts(
    context: &Context,
    registry: &Registry,
    (set, ledgers): (&MigrationSet, &Ledgers),
    env: &Environment,
    plan: &Plan,
    target_view: &View,
    target: Target,
    rollback: Rollback,
) -> TargetFacts {
    let drift = promote::drift_gate("target drift", set, target_view, &ledgers.ignored_tables());
    let last = match record::load(&registry.root, &env.name) {
        Ok(last) => last,
        Err(error) => {
            // A damaged record only loses the rehearsal line; the checklist still stands.
            context
                .printer
                .warning(&format!("{error}; showing `{}` as not rehearsed", env.name));
            None
        }
    };
    TargetFacts {
        target,
        drift,
        rehearsal: record::check(last.as_ref(), &env.name, &plan.migrations(set)),
        rollback,
        hooks: Hooks {
            before: env.before.clone(),
            after: env.after.clone(),
        },
    }
}

/// Every member read once; the checklist is the first readable member of the largest group's,
/// with the fleet's groups, stragglers and rollout added.
async fn fleet_checklist(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    env: &Environment,
) -> anyhow::Result<Checklist> {
    let source = context.read_source(registry, set, ledgers, env).await?;
    let fleet = context.fleet(registry, env).await?;
    let progress = FleetProgress::new(
        &context.printer,
        "reading",
        &env.name,
        Arc::clone(&context.budget),
        true,
    );
    let reads = survey::read_all(&fleet.members, &fleet.connect(), ledgers, &progress).await;
    let groups = plan::plan_groups(set, ledgers, &source, &env.name, &reads);
    let representative = groups.iter().flat_map(|g| &g.members).find_map(|name| {
        reads
            .iter()
            .find(|r| &r.member.name == name)
            .and_then(|r| r.read.as_ref().ok().map(|read| (name, read)))
    });
    let Some((representative, read)) = representative else {
        let why = reads
            .iter()
            .find_map(|r| r.read.as_ref().err())
            .cloned()
            .unwrap_or_default();
        return Err(UserError::new(
            format!(
                "no member of `{}` could be read ({}); the first said: {why}",
                env.name,
                plural(fleet.members.len(), "member")
            ),
            format!("`d1ctl status {}` shows each member's state", env.name),
        )
        .into());
    };
    let target_view = plan::member_view(&env.name, set, read);
    let member_plan = plan::member_plan(set, ledgers, &source, &target_view);
    let facts = facts(
        context,
        registry,
        (set, ledgers),
        env,
        &member_plan,
        &target_view,
        Target {
            environment: env.name.clone(),
            backend: BackendKind::D1.to_string(),
            database: format!("fleet: {}", plural(fleet.members.len(), "member")),
            protected: env.protected,
            simulator: env.is_simulated(),
        },
        rollback(BackendKind::D1, env),
    );
    let names: Vec<String> = set.migrations.iter().map(|m| m.name.clone()).collect();
    let rate = context.budget.rate();
    let order: Vec<String> = fleet.members.iter().map(|m| m.name.clone()).collect();
    let section = FleetSection::new(
        &env.name,
        representative,
        groups.clone(),
        &order,
        plan::estimate(&groups, rate.per_second()),
        rate.to_string(),
    );
    Ok(checklist::build(&member_plan, &source, &target_view, facts, &names).with_fleet(section))
}
