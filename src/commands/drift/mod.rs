//! `d1ctl drift A [B]`: do two environments (or an environment and its migrations) have the same
//! schema?

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::DriftArgs;
use crate::cli::printer::Style;
use crate::commands::{Context, ExitStatus, UserError, plural, simulator_mark};
use crate::core::ledger::{self, Ledgers, State};
use crate::core::ledger_gap::{self, LedgerGap};
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::registry::{Environment, RESERVED_NAME, Registry};
use crate::core::schema::{self, Change, Schema, Snapshot};

mod fleet;

/// One side of a comparison, read and normalised.
struct Side {
    /// The env name, `migrations`, or `replay`.
    name: String,
    /// How the side reads in a sentence.
    label: String,
    kind: &'static str,
    /// An env served by the bundled simulator, not Cloudflare.
    simulator: bool,
    /// Migrations this side has applied (ledger), or all of them for the folder.
    applied: Vec<String>,
    schema: Schema,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct SideReport<'a> {
    name: &'a str,
    kind: &'a str,
    simulator: bool,
    applied: &'a [String],
    objects: String,
}

#[derive(Serialize)]
struct DriftReport<'a> {
    a: SideReport<'a>,
    b: SideReport<'a>,
    /// What the exit code says: the schemas differ, or (with `--ledgers`) the ledgers do.
    drift: bool,
    schemas_differ: bool,
    ledgers_differ: bool,
    ledgers: LedgerDifference<'a>,
    changes: &'a [Change],
}

#[derive(Serialize)]
struct LedgerDifference<'a> {
    only_in_a: &'a [String],
    only_in_b: &'a [String],
    /// Whether ledger differences count as drift (`--ledgers`).
    counted: bool,
    /// One entry per side whose ledger lacks what the other records.
    lacking: Vec<LackingReport<'a>>,
}

#[derive(Serialize)]
struct LackingReport<'a> {
    /// `a` or `b`.
    side: &'static str,
    name: &'a str,
    #[serde(flatten)]
    gap: &'a LedgerGap,
    untracked: bool,
    /// The command that shows or settles it.
    hint: String,
}

/// One side's ledger lacking migrations the other side records.
struct Lacking<'a> {
    letter: &'static str,
    side: &'a Side,
    other: &'a Side,
    gap: LedgerGap,
}

pub(crate) async fn drift(args: DriftArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let ignore = ledgers.ignored_tables();

    // A whole fleet on either side: its members grouped by schema, each group compared.
    for (side, other) in [
        (Some(&args.first), args.second.as_ref()),
        (args.second.as_ref(), Some(&args.first)),
    ] {
        if let Some(name) = side.filter(|name| name.as_str() != RESERVED_NAME)
            && let Ok(env) = registry.resolve(name)
            && context.is_whole_fleet(env)
        {
            let other = other.filter(|o| *o != name).map(String::as_str);
            return fleet::drift_fleet(context, &registry, &set, &ledgers, env, other).await;
        }
    }

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
    let only_in_a = only_in(&a, &b);
    let only_in_b = only_in(&b, &a);
    let mut lacking = Vec::new();
    for (letter, side, other, missing) in [("a", &a, &b, &only_in_b), ("b", &b, &a, &only_in_a)] {
        if !missing.is_empty() {
            let gap = ledger_gap::classify(&set, &side.applied, missing, &side.schema, &ignore)
                .with_context(|| {
                    format!("could not replay the migrations `{}` lacks", side.name)
                })?;
            lacking.push(Lacking {
                letter,
                side,
                other,
                gap,
            });
        }
    }
    let schemas_differ = !changes.is_empty();
    let ledgers_differ = !lacking.is_empty();
    let drifted = schemas_differ || (args.ledgers && ledgers_differ);
    for note in a.notes.iter().chain(&b.notes) {
        printer.warning(note);
    }

    if printer.is_json() {
        printer.json(&DriftReport {
            a: side_report(&a),
            b: side_report(&b),
            drift: drifted,
            schemas_differ,
            ledgers_differ,
            ledgers: LedgerDifference {
                only_in_a: &only_in_a,
                only_in_b: &only_in_b,
                counted: args.ledgers,
                lacking: lacking
                    .iter()
                    .map(|l| LackingReport {
                        side: l.letter,
                        name: &l.side.name,
                        gap: &l.gap,
                        untracked: l.gap.is_untracked(),
                        hint: hint_command(&set, l),
                    })
                    .collect(),
            },
            changes: &changes,
        })?;
        return Ok(exit_status(drifted));
    }

    let mut out = if drifted {
        format!(
            "{} between {} (A) and {} (B)\n",
            printer.paint_out(Style::Bold, "drift"),
            a.label,
            b.label
        )
    } else if ledgers_differ {
        format!(
            "no schema drift: {} (A) and {} (B) have the same schema ({}); their ledgers differ\n",
            a.label,
            b.label,
            a.schema.summary()
        )
    } else {
        format!(
            "no drift: {} and {} have the same schema ({})\n",
            a.label,
            b.label,
            a.schema.summary()
        )
    };
    if ledgers_differ {
        out.push_str("\nledgers:\n");
        for (letter, names) in [("A", &only_in_a), ("B", &only_in_b)] {
            if !names.is_empty() {
                out.push_str(&format!("  only in {letter}: {}\n", names.join(", ")));
            }
        }
        for lacking in &lacking {
            for line in explain(lacking) {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    if drifted {
        if changes.is_empty() {
            out.push_str(&format!("\nschema: the same ({})\n", a.schema.summary()));
        } else {
            out.push_str("\nschema, going from A to B:\n");
            for change in &changes {
                out.push_str(&format!("  {}\n", change.summary));
            }
            out.push('\n');
            out.push_str(&unified_diff(context, &a, &b));
        }
    }
    printer.data(out.trim_end())?;
    // One hint per command: both sides lacking something can point at the same env.
    let mut hinted: Vec<String> = Vec::new();
    for lacking in &lacking {
        let command = hint_command(&set, lacking);
        if hinted.contains(&command) {
            continue;
        }
        printer.message(&format!(
            "\n{}: {}",
            printer.paint(Style::Cyan, "hint"),
            hint_sentence(&set, lacking)
        ));
        hinted.push(command);
    }
    Ok(exit_status(drifted))
}

fn exit_status(drifted: bool) -> ExitStatus {
    if drifted {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}

fn side_report(side: &Side) -> SideReport<'_> {
    SideReport {
        name: &side.name,
        kind: side.kind,
        simulator: side.simulator,
        applied: &side.applied,
        objects: side.schema.summary(),
    }
}

/// What `side` records and `other` does not.
fn only_in(side: &Side, other: &Side) -> Vec<String> {
    side.applied
        .iter()
        .filter(|m| !other.applied.contains(m))
        .cloned()
        .collect()
}

/// `a`, `b` and `c` (or `a` alone).
fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// `it` or `they`, `makes` or `make`: the words for one name or several.
fn number(names: &[String]) -> (&'static str, &'static str, &'static str) {
    if names.len() == 1 {
        ("it", "makes", "changes")
    } else {
        ("they", "make", "change")
    }
}

/// The sentences that say what a side's missing ledger rows mean.
fn explain(lacking: &Lacking<'_>) -> Vec<String> {
    let Lacking {
        side, other, gap, ..
    } = lacking;
    if side.kind == "migrations" {
        return vec![format!(
            "the folder has no file for {}: only the ledger of {} records {}",
            list(&gap.not_in_folder),
            other.label,
            if gap.not_in_folder.len() == 1 {
                "it"
            } else {
                "them"
            }
        )];
    }
    let them = if gap.migrations.len() == 1 {
        "it"
    } else {
        "them"
    };
    let later: Vec<String> = gap
        .make_schema
        .iter()
        .filter(|name| gap.not_in_schema.contains(name))
        .cloned()
        .collect();
    let covered: Vec<String> = gap
        .make_schema
        .iter()
        .filter(|name| !gap.not_in_schema.contains(name))
        .cloned()
        .collect();
    let mut head = format!("{} lacks {them} in its ledger", side.label);
    let mut lines = Vec::new();
    if let Some(through) = &gap.untracked_through {
        let what = if covered.len() == gap.migrations.len() {
            format!(
                "what {} make",
                if covered.len() == 1 { "it" } else { "they" }
            )
        } else {
            format!("what {} {}", list(&covered), number(&covered).1)
        };
        let until = if later.is_empty() && gap.not_in_schema.is_empty() {
            String::new()
        } else {
            format!(" through {through}")
        };
        head.push_str(&format!(
            ", but its schema already has {what}: it is untracked{until} (schema there, not recorded)"
        ));
    } else if !gap.make_schema.is_empty() {
        head.push_str(&format!(
            ", and its schema does not have what {} {}",
            list(&gap.make_schema),
            number(&gap.make_schema).1
        ));
    }
    if gap.change_no_schema.len() == gap.migrations.len() {
        let (pronoun, _, changes) = number(&gap.change_no_schema);
        head.push_str(&format!(
            "; {pronoun} {changes} no schema, so the schema cannot tell whether {pronoun} ran on {}",
            side.label
        ));
        lines.push(head);
        return lines;
    }
    lines.push(head);
    if !later.is_empty() {
        lines.push(format!(
            "what {} {} is not in its schema yet",
            list(&later),
            number(&later).1
        ));
    }
    if !gap.change_no_schema.is_empty() {
        let (pronoun, _, changes) = number(&gap.change_no_schema);
        lines.push(format!(
            "{} {changes} no schema: the schema cannot tell whether {pronoun} ran on {}",
            list(&gap.change_no_schema),
            side.label
        ));
    }
    if !gap.not_in_folder.is_empty() {
        let (pronoun, makes, _) = number(&gap.not_in_folder);
        lines.push(format!(
            "{} {} not in the folder: what {pronoun} {makes} is unknown",
            list(&gap.not_in_folder),
            if gap.not_in_folder.len() == 1 {
                "is"
            } else {
                "are"
            }
        ));
    }
    lines
}

/// The command that settles or shows a side's missing ledger rows.
fn hint_command(set: &MigrationSet, lacking: &Lacking<'_>) -> String {
    if lacking.side.kind == "migrations" {
        return format!("d1ctl status {}", lacking.other.name);
    }
    match &lacking.gap.untracked_through {
        Some(through) if set.migrations.last().is_some_and(|m| &m.name == through) => {
            format!("d1ctl baseline {}", lacking.side.name)
        }
        Some(through) => format!("d1ctl baseline {} --through {through}", lacking.side.name),
        None => format!("d1ctl status {}", lacking.side.name),
    }
}

fn hint_sentence(set: &MigrationSet, lacking: &Lacking<'_>) -> String {
    let command = hint_command(set, lacking);
    let gap = &lacking.gap;
    if gap.is_untracked() {
        let unchecked: Vec<String> = gap
            .change_no_schema
            .iter()
            .filter(|name| !gap.not_in_schema.contains(name))
            .cloned()
            .collect();
        let mut text = format!(
            "record what {} already has without running it: `{command}`",
            lacking.side.label
        );
        if !unchecked.is_empty() {
            text.push_str(&format!(
                " (it records {} too: check first that {} data is there)",
                list(&unchecked),
                if unchecked.len() == 1 { "its" } else { "their" }
            ));
        }
        text
    } else if lacking.side.kind == "migrations" {
        format!(
            "see what {} has applied and which of it the folder lacks: `{command}`",
            lacking.other.label
        )
    } else {
        format!(
            "see what {} has applied and what is pending: `{command}`",
            lacking.side.label
        )
    }
}

fn env_label(env: &Environment) -> String {
    format!("`{}`{}", env.name, simulator_mark(env))
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
            simulator: false,
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
        simulator: env.is_simulated(),
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
        // A real env of this project in the example, not a placeholder.
        let example = registry
            .project
            .ladder
            .first()
            .map_or("ENV", String::as_str);
        return Err(UserError::new(
            "`drift migrations` needs a second side",
            format!("compare the folder with an env: `d1ctl drift migrations {example}`"),
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
        simulator: env.is_simulated(),
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
        simulator: false,
        applied,
        schema: Schema::build(&replay, ignore)?,
        notes,
    };
    Ok((a, b))
}
