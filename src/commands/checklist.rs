//! `d1ctl checklist --to ENV`: the release checklist of that promotion, for the release PR.

use crate::backend::BackendKind;
use crate::cli::{ChecklistArgs, Format};
use crate::commands::{Context, ExitStatus, Rung, UserError};
use crate::core::checklist::{self, Hooks, Rollback, Target, TargetFacts};
use crate::core::ledger::Ledgers;
use crate::core::promote;
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
    let ignore = ledgers.ignored_tables();
    let Rung {
        backend,
        identity,
        source,
        target,
        plan,
    } = context
        .read_rung(&registry, &set, &ledgers, env, false)
        .await?;
    let target_drift = promote::drift_gate("target drift", &set, &target, &ignore);
    let names: Vec<String> = set.migrations.iter().map(|m| m.name.clone()).collect();
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
    let rehearsal = record::check(last.as_ref(), &env.name, &plan.migrations(&set));
    let facts = TargetFacts {
        target: Target {
            environment: env.name.clone(),
            backend: backend.kind().to_string(),
            database: identity.label,
            protected: env.protected,
            simulator: env.is_simulated(),
        },
        drift: target_drift,
        rehearsal,
        rollback: Rollback {
            kind: if backend.kind() == BackendKind::D1 {
                "bookmark"
            } else {
                "backup"
            },
            taken: if backend.kind() == BackendKind::D1 {
                "A Time Travel bookmark".to_owned()
            } else {
                "A backup of the database file under `.d1ctl/backups/`".to_owned()
            },
            command: format!("d1ctl rollback {} --last", env.name),
        },
        hooks: Hooks {
            before: env.before.clone(),
            after: env.after.clone(),
        },
    };
    let checklist = checklist::build(&plan, &source, &target, facts, &names);
    if context.printer.format == Format::Json {
        context.printer.json(&checklist)?;
    } else {
        context
            .printer
            .data(&checklist::render_markdown(&checklist))?;
    }
    Ok(if checklist.blocked {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
