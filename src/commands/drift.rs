//! `d1ctl drift A [B]`: do two environments (or an environment and its migrations) have the same
//! schema?

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::DriftArgs;
use crate::cli::printer::Style;
use crate::commands::{Context, ExitStatus, UserError, plural};
use crate::core::ledger::{self, Ledgers, State};
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::registry::{Environment, RESERVED_NAME, Registry};
use crate::core::schema::{self, Change, Schema, Snapshot};

/// One side of a comparison, read and normalised.
struct Side {
    /// The env name, `migrations`, or `replay`.
    name: String,
    /// How the side reads in a sentence.
    label: String,
    kind: &'static str,
    /// Migrations this side has applied (ledger), or all of them for the folder.
    applied: Vec<String>,
    schema: Schema,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct SideReport<'a> {
    name: &'a str,
    kind: &'a str,
    applied: &'a [String],
    objects: String,
}

#[derive(Serialize)]
struct DriftReport<'a> {
    a: SideReport<'a>,
    b: SideReport<'a>,
    drift: bool,
    ledgers: LedgerDifference,
    changes: &'a [Change],
}

#[derive(Serialize)]
struct LedgerDifference {
    only_in_a: Vec<String>,
    only_in_b: Vec<String>,
}

pub(crate) async fn drift(args: DriftArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let ignore = ledgers.ignored_tables();

    let (a, b) = if let Some(second) = &args.second {
        let (a, b) = tokio::join!(
            read_side(context, &registry, &set, &ledgers, &args.first),
            read_side(context, &registry, &set, &ledgers, second)
        );
        (a?, b?)
    } else {
        against_ledger_replay(context, &registry, &set, &ledgers, &args.first, &ignore).await?
    };

    let changes = schema::diff(&a.schema, &b.schema);
    let only_in_a: Vec<String> = a
        .applied
        .iter()
        .filter(|m| !b.applied.contains(m))
        .cloned()
        .collect();
    let only_in_b: Vec<String> = b
        .applied
        .iter()
        .filter(|m| !a.applied.contains(m))
        .cloned()
        .collect();
    let drifted = !changes.is_empty() || !only_in_a.is_empty() || !only_in_b.is_empty();
    for note in a.notes.iter().chain(&b.notes) {
        printer.warning(note);
    }

    if printer.is_json() {
        printer.json(&DriftReport {
            a: SideReport {
                name: &a.name,
                kind: a.kind,
                applied: &a.applied,
                objects: a.schema.summary(),
            },
            b: SideReport {
                name: &b.name,
                kind: b.kind,
                applied: &b.applied,
                objects: b.schema.summary(),
            },
            drift: drifted,
            ledgers: LedgerDifference {
                only_in_a,
                only_in_b,
            },
            changes: &changes,
        })?;
    } else if !drifted {
        printer.data(&format!(
            "no drift: {} and {} have the same schema ({})",
            a.label,
            b.label,
            a.schema.summary()
        ))?;
    } else {
        let mut out = format!(
            "{} between {} (A) and {} (B)\n",
            printer.paint_out(Style::Bold, "drift"),
            a.label,
            b.label
        );
        if !only_in_a.is_empty() || !only_in_b.is_empty() {
            out.push_str("\nledgers:\n");
            if !only_in_a.is_empty() {
                out.push_str(&format!("  only in A: {}\n", only_in_a.join(", ")));
            }
            if !only_in_b.is_empty() {
                out.push_str(&format!("  only in B: {}\n", only_in_b.join(", ")));
            }
        }
        if changes.is_empty() {
            out.push_str("\nschema: the same (the ledgers differ only by migrations that change no schema)\n");
        } else {
            out.push_str("\nschema, going from A to B:\n");
            for change in &changes {
                out.push_str(&format!("  {}\n", change.summary));
            }
            out.push('\n');
            out.push_str(&unified_diff(context, &a, &b));
        }
        printer.data(out.trim_end())?;
    }
    Ok(if drifted {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn env_label(env: &Environment) -> String {
    format!("`{}`", env.name)
}

async fn read_env(
    context: &Context,
    registry: &Registry,
    ledgers: &Ledgers,
    env: &Environment,
) -> anyhow::Result<(ledger::LedgerState, Snapshot)> {
    let backend = context.backend(registry, env)?;
    let read = ledgers
        .read_with_schema(backend.as_ref(), false)
        .await
        .with_context(|| format!("could not read the schema of env `{}`", env.name))?;
    Ok((read.state, read.snapshot))
}

async fn read_side(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    name: &str,
) -> anyhow::Result<Side> {
    let ignore = ledgers.ignored_tables();
    if name == RESERVED_NAME {
        let all: Vec<&Migration> = set.migrations.iter().collect();
        let snapshot = schema::replay(&all)?;
        return Ok(Side {
            name: RESERVED_NAME.to_owned(),
            label: format!("the {} of the folder", plural(all.len(), "migration")),
            kind: "migrations",
            applied: all.iter().map(|m| m.name.clone()).collect(),
            schema: Schema::build(&snapshot, &ignore)?,
            notes: Vec::new(),
        });
    }
    let env = registry.resolve(name)?;
    let (state, snapshot) = read_env(context, registry, ledgers, env).await?;
    let applied = ledger::compare(set, &state, set.layout)
        .into_iter()
        .filter(ledger::MigrationStatus::is_applied)
        .map(|s| s.name)
        .collect();
    Ok(Side {
        name: env.name.clone(),
        label: env_label(env),
        kind: "environment",
        applied,
        schema: Schema::build(&snapshot, &ignore)
            .with_context(|| format!("could not read the schema of `{}`", env.name))?,
        notes: Vec::new(),
    })
}

/// The unified diff of both schemas' canonical DDL, coloured when stdout allows it.
fn unified_diff(context: &Context, a: &Side, b: &Side) -> String {
    crate::commands::unified_diff(
        &context.printer,
        (&format!("A {}", a.label), &a.schema.render()),
        (&format!("B {}", b.label), &b.schema.render()),
    )
}

/// An env (A) against the replay of the migrations its ledger says it ran (B).
async fn against_ledger_replay(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    name: &str,
    ignore: &[&str],
) -> anyhow::Result<(Side, Side)> {
    if name == RESERVED_NAME {
        return Err(UserError::new(
            "`drift migrations` needs a second side",
            "compare the folder with an env: `d1ctl drift migrations ENV`",
        )
        .into());
    }
    let env = registry.resolve(name)?;
    let (state, snapshot) = read_env(context, registry, ledgers, env).await?;
    let statuses = ledger::compare(set, &state, set.layout);
    let mut notes = Vec::new();
    let mut replayed: Vec<&Migration> = Vec::new();
    for status in statuses.iter().filter(|s| s.is_applied()) {
        match (status.state, set.get(&status.name)) {
            (State::MissingLocally, _) | (_, None) => notes.push(format!(
                "`{}` is in the ledger of `{}` but not in the folder, so the replay lacks it",
                status.name, env.name
            )),
            (State::ChecksumMismatch, Some(migration)) => {
                notes.push(format!(
                    "`{}` changed since it ran on `{}`; the replay uses today's file",
                    status.name, env.name
                ));
                replayed.push(migration);
            }
            (_, Some(migration)) => replayed.push(migration),
        }
    }
    let applied: Vec<String> = replayed.iter().map(|m| m.name.clone()).collect();
    let replay = schema::replay(&replayed)?;
    let a = Side {
        name: env.name.clone(),
        label: env_label(env),
        kind: "environment",
        applied: applied.clone(),
        schema: Schema::build(&snapshot, ignore)
            .with_context(|| format!("could not read the schema of `{}`", env.name))?,
        notes: Vec::new(),
    };
    let b = Side {
        name: "replay".to_owned(),
        label: format!(
            "the replay of the {} `{}` has applied",
            plural(applied.len(), "migration"),
            env.name
        ),
        kind: "replay",
        applied,
        schema: Schema::build(&replay, ignore)?,
        notes,
    };
    Ok((a, b))
}
