//! `d1ctl drift FLEET [OTHER]`: the members of a fleet env grouped by schema, each group
//! compared with the other side (by default the rung below the fleet).

use std::sync::Arc;

use serde::Serialize;

use crate::cli::fleet_progress::FleetProgress;
use crate::commands::{Context, ExitStatus, plural};
use crate::core::fleet::fingerprint;
use crate::core::fleet::name_list;
use crate::core::fleet::survey;
use crate::core::ledger::Ledgers;
use crate::core::migrations::MigrationSet;
use crate::core::registry::{Environment, RESERVED_NAME, Registry};
use crate::core::schema::{self, Change, Schema};

#[derive(Serialize)]
struct SchemaGroup {
    members: Vec<String>,
    /// Whether the group's schema is the other side's.
    same: bool,
    changes: Vec<Change>,
    /// Why the members could not be compared (unreadable, or a schema d1ctl cannot parse).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct FleetDrift<'a> {
    environment: &'a str,
    fleet: bool,
    against: &'a str,
    members: usize,
    drift: bool,
    groups: &'a [SchemaGroup],
}

pub(super) async fn drift_fleet(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    env: &Environment,
    other: Option<&str>,
) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let ignore = ledgers.ignored_tables();
    let other = match other {
        Some(other) => other.to_owned(),
        None => registry
            .rung_before(&env.name)
            .map_or_else(|| RESERVED_NAME.to_owned(), |rung| rung.name.clone()),
    };
    let against = super::read_side(context, registry, set, ledgers, &other).await?;
    let fleet = context.fleet(registry, env).await?;
    let progress = FleetProgress::new(
        printer,
        "reading",
        &env.name,
        Arc::clone(&context.budget),
        true,
    );
    let reads = survey::read_all(&fleet.members, &fleet.connect(), ledgers, &progress).await;
    // Members grouped by their schema alone (the first half of the fingerprint): how far each
    // ledger got is `status`'s question.
    let mut groups: Vec<(String, SchemaGroup)> = Vec::new();
    for read in &reads {
        let (key, group) = match &read.read {
            Err(error) => (
                format!("unreadable: {error}"),
                SchemaGroup {
                    members: Vec::new(),
                    same: false,
                    changes: Vec::new(),
                    error: Some(format!("unreadable: {error}")),
                },
            ),
            Ok(state) => {
                let print = fingerprint::of(&state.snapshot, &state.state, ledgers);
                let key = fingerprint::halves(&print).0.to_owned();
                let group = match Schema::build(&state.snapshot, &ignore) {
                    Ok(schema) => {
                        let changes = schema::diff(&against.schema, &schema);
                        SchemaGroup {
                            members: Vec::new(),
                            same: changes.is_empty(),
                            changes,
                            error: None,
                        }
                    }
                    Err(error) => SchemaGroup {
                        members: Vec::new(),
                        same: false,
                        changes: Vec::new(),
                        error: Some(format!("could not read its schema: {error}")),
                    },
                };
                (key, group)
            }
        };
        if let Some((_, existing)) = groups.iter_mut().find(|(k, _)| *k == key) {
            existing.members.push(read.member.name.clone());
        } else {
            let mut group = group;
            group.members.push(read.member.name.clone());
            groups.push((key, group));
        }
    }
    let mut groups: Vec<SchemaGroup> = groups.into_iter().map(|(_, g)| g).collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    let drifted = groups.iter().any(|g| !g.same);
    let unreadable = groups.iter().any(|g| g.error.is_some());
    let mut out = format!(
        "`{}`{}: {} in {}, compared with {}",
        env.name,
        crate::commands::simulator_mark(env),
        plural(fleet.members.len(), "member"),
        plural(groups.len(), "schema"),
        against.label
    );
    for group in &groups {
        let names: Vec<&str> = group.members.iter().map(String::as_str).collect();
        let who = format!(
            "{} ({})",
            plural(names.len(), "member"),
            name_list(&names, 5)
        );
        if let Some(error) = &group.error {
            out.push_str(&format!("\n  {who}: {error}"));
        } else if group.same {
            out.push_str(&format!("\n  {who}: the same schema"));
        } else {
            out.push_str(&format!(
                "\n  {who}: {}\n    {}",
                printer.paint(crate::cli::printer::Style::Red, "differ"),
                group
                    .changes
                    .iter()
                    .map(|c| c.summary.clone())
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
    }
    if drifted {
        printer.error(
            &out,
            Some(&format!(
                "`d1ctl drift {} {other} --member NAME` shows one member's full difference",
                env.name
            )),
        );
    } else {
        printer.message(&out);
    }
    if printer.is_json() {
        printer.json(&FleetDrift {
            environment: &env.name,
            fleet: true,
            against: &against.name,
            members: fleet.members.len(),
            drift: drifted,
            groups: &groups,
        })?;
    }
    Ok(if unreadable {
        ExitStatus::Error
    } else if drifted {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
