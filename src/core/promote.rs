//! Promotion: bring an environment up to what the rung below it has run, after gates.
//!
//! The first rung's source is the migrations folder; every other rung's source is the rung
//! before it. Planning is pure: it takes what each side holds and says what would be applied
//! and which gates pass, so `plan`, `promote --dry-run` and `promote` agree by construction.

use serde::Serialize;

use crate::backend::{Backend, BackendError, BackendKind};
use crate::core::ledger::{self, LedgerState, Ledgers, MigrationStatus, State};
use crate::core::lock::{Lease, Liveness};
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::schema::{self, Schema, Snapshot};
use crate::core::{apply, lint};

/// What one side of a promotion holds.
#[derive(Debug, Clone)]
pub struct View {
    /// Env name, or `migrations` for the folder.
    pub name: String,
    pub state: LedgerState,
    pub statuses: Vec<MigrationStatus>,
    pub snapshot: Snapshot,
    pub lock: Option<Lease>,
    /// `true` for the migrations folder (every migration counts as run there).
    pub is_folder: bool,
}

impl View {
    /// The folder as a source: every migration "applied", its schema the full replay. A
    /// migration that cannot be replayed (say, one the lint gate refuses) leaves the snapshot
    /// empty: it is only used to verify a target after a successful apply.
    pub fn folder(set: &MigrationSet) -> Self {
        let all: Vec<&Migration> = set.migrations.iter().collect();
        Self {
            name: crate::core::registry::RESERVED_NAME.to_owned(),
            state: LedgerState::default(),
            statuses: Vec::new(),
            snapshot: schema::replay(&all).unwrap_or_default(),
            lock: None,
            is_folder: true,
        }
    }

    /// Names applied here, in folder order (the folder: all of them).
    pub fn applied<'a>(&'a self, set: &'a MigrationSet) -> Vec<&'a str> {
        if self.is_folder {
            return set.migrations.iter().map(|m| m.name.as_str()).collect();
        }
        self.statuses
            .iter()
            .filter(|s| s.is_applied())
            .map(|s| s.name.as_str())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not read env `{env}`")]
pub struct ReadError {
    pub env: String,
    #[source]
    pub source: BackendError,
}

/// Reads an env as a promotion side: statuses, schema and lock in one request (none when the
/// database is known to be empty).
pub async fn read_view(
    ledgers: &Ledgers,
    set: &MigrationSet,
    backend: &dyn Backend,
    env: &str,
    known_empty: bool,
) -> Result<View, ReadError> {
    if known_empty {
        return Ok(View {
            name: env.to_owned(),
            state: LedgerState::default(),
            statuses: ledger::compare(set, &LedgerState::default(), set.layout),
            snapshot: Snapshot::default(),
            lock: None,
            is_folder: false,
        });
    }
    let read = ledgers
        .read_with_schema(backend, true)
        .await
        .map_err(|source| ReadError {
            env: env.to_owned(),
            source,
        })?;
    Ok(View {
        name: env.to_owned(),
        statuses: ledger::compare(set, &read.state, set.layout),
        state: read.state,
        snapshot: read.snapshot,
        lock: read.lock,
        is_folder: false,
    })
}

/// A check that must pass before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub name: String,
    pub statements: usize,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source: String,
    pub target: String,
    pub pending: Vec<Pending>,
    /// Folder migrations the source has not run yet (so they are not promoted).
    pub not_yet_at_source: Vec<String>,
    pub gates: Vec<Gate>,
    pub findings: Vec<lint::Finding>,
    pub problems: Vec<apply::Problem>,
}

impl Plan {
    pub fn blocked(&self) -> bool {
        self.gates.iter().any(|g| !g.passed)
    }

    /// The pending migrations, in folder order.
    pub fn migrations<'a>(&self, set: &'a MigrationSet) -> Vec<&'a Migration> {
        self.pending
            .iter()
            .filter_map(|p| set.get(&p.name))
            .collect()
    }
}

/// Plans bringing `target` up to `source`. `ignore` names the tables a schema comparison skips.
pub fn plan(
    set: &MigrationSet,
    source: &View,
    target: &View,
    target_kind: BackendKind,
    ignore: &[&str],
    me: Option<&str>,
) -> Plan {
    let source_applied = source.applied(set);
    let target_applied = target.applied(set);
    let pending_migrations: Vec<&Migration> = set
        .migrations
        .iter()
        .filter(|m| {
            source_applied.contains(&m.name.as_str()) && !target_applied.contains(&m.name.as_str())
        })
        .collect();
    let not_yet_at_source = set
        .migrations
        .iter()
        .filter(|m| {
            !source_applied.contains(&m.name.as_str()) && !target_applied.contains(&m.name.as_str())
        })
        .map(|m| m.name.clone())
        .collect();

    let mut gates = vec![
        checksum_gate(source, target),
        missing_gate(source, target),
        order_gate(set, target, &pending_migrations),
        ancestry_gate(source, target, &source_applied, &target_applied),
        drift_gate("source drift", set, source, ignore),
    ];
    let names: Vec<&str> = pending_migrations.iter().map(|m| m.name.as_str()).collect();
    let findings = lint::lint(&set.migrations, &names, ignore);
    // Lint covers transactions and sizes; a migration without statements is apply's check.
    let problems: Vec<apply::Problem> = apply::check_pending(&pending_migrations, target_kind)
        .into_iter()
        .filter(|p| p.statement.is_none())
        .collect();
    let blocking: Vec<String> = findings
        .iter()
        .filter(|f| f.blocks())
        .map(|f| format!("{} {}: {}", f.code, f.migration, f.message))
        .chain(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.migration, p.message)),
        )
        .collect();
    let waived = findings.iter().filter(|f| f.waived.is_some()).count();
    let warnings = findings
        .iter()
        .filter(|f| !f.blocks() && f.waived.is_none())
        .count();
    gates.push(Gate {
        name: "lint",
        passed: blocking.is_empty(),
        detail: if blocking.is_empty() {
            format!(
                "{} checked: no errors, {warnings} warnings, {waived} waived",
                pending_migrations.len()
            )
        } else {
            blocking.join("; ")
        },
    });
    gates.push(lock_gate(target, me));

    Plan {
        source: source.name.clone(),
        target: target.name.clone(),
        pending: pending_migrations
            .iter()
            .map(|m| Pending {
                name: m.name.clone(),
                statements: m.statements.len(),
                bytes: m.size,
            })
            .collect(),
        not_yet_at_source,
        gates,
        findings,
        problems,
    }
}

fn checksum_gate(source: &View, target: &View) -> Gate {
    let mut edited = Vec::new();
    let mut line_endings = Vec::new();
    for view in [source, target] {
        for status in view
            .statuses
            .iter()
            .filter(|s| s.state == State::ChecksumMismatch)
        {
            let entry = format!("`{}` on `{}`", status.name, view.name);
            if status.line_endings_only == Some(true) {
                line_endings.push(entry);
            } else {
                edited.push(entry);
            }
        }
    }
    Gate {
        name: "checksums",
        passed: edited.is_empty(),
        detail: if !edited.is_empty() {
            format!("edited after they ran: {}", edited.join(", "))
        } else if !line_endings.is_empty() {
            format!(
                "files match; line endings only differ for {}",
                line_endings.join(", ")
            )
        } else {
            "every applied migration matches its file".to_owned()
        },
    }
}

fn missing_gate(source: &View, target: &View) -> Gate {
    let missing: Vec<String> = [source, target]
        .iter()
        .flat_map(|view| {
            view.statuses
                .iter()
                .filter(|s| s.state == State::MissingLocally)
                .map(move |s| format!("`{}` on `{}`", s.name, view.name))
        })
        .collect();
    Gate {
        name: "files",
        passed: missing.is_empty(),
        detail: if missing.is_empty() {
            "every applied migration is in the folder".to_owned()
        } else {
            format!(
                "applied but missing from the folder (squashed or deleted?): {}",
                missing.join(", ")
            )
        },
    }
}

/// A target that has a later migration but lacks an earlier one has a hole: applying the
/// earlier one now would run it out of order.
fn order_gate(set: &MigrationSet, target: &View, pending: &[&Migration]) -> Gate {
    let last_applied = target
        .statuses
        .iter()
        .filter(|s| s.is_applied())
        .filter_map(|s| set.position(&s.name))
        .max();
    let holes: Vec<&str> = match last_applied {
        Some(last) => pending
            .iter()
            .filter(|m| set.position(&m.name).is_some_and(|p| p < last))
            .map(|m| m.name.as_str())
            .collect(),
        None => Vec::new(),
    };
    Gate {
        name: "order",
        passed: holes.is_empty(),
        detail: if holes.is_empty() {
            "pending migrations all come after what the target has".to_owned()
        } else {
            format!(
                "`{}` has later migrations but lacks {}",
                target.name,
                holes
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    }
}

fn ancestry_gate(
    source: &View,
    target: &View,
    source_applied: &[&str],
    target_applied: &[&str],
) -> Gate {
    let ahead: Vec<&str> = target_applied
        .iter()
        .filter(|name| !source_applied.contains(name))
        .copied()
        .collect();
    Gate {
        name: "ancestry",
        passed: ahead.is_empty(),
        detail: if ahead.is_empty() {
            format!("`{}` has nothing that `{}` lacks", target.name, source.name)
        } else {
            format!(
                "`{}` is ahead of or diverged from `{}`: it has {}",
                target.name,
                source.name,
                ahead
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    }
}

/// An env's schema must be what its migrations make (the folder trivially is).
pub fn drift_gate(name: &'static str, set: &MigrationSet, source: &View, ignore: &[&str]) -> Gate {
    if source.is_folder {
        return Gate {
            name,
            passed: true,
            detail: "the source is the migrations folder".to_owned(),
        };
    }
    // A replay of missing or edited files proves nothing; those gates block on their own.
    let unreplayable = source.statuses.iter().any(|s| {
        s.state == State::MissingLocally
            || (s.state == State::ChecksumMismatch && s.line_endings_only != Some(true))
    });
    if unreplayable {
        return Gate {
            name,
            passed: true,
            detail: format!(
                "not checked: `{}` has applied migrations whose files are missing or edited",
                source.name
            ),
        };
    }
    let applied: Vec<&Migration> = source
        .statuses
        .iter()
        .filter(|s| s.is_applied())
        .filter_map(|s| set.get(&s.name))
        .collect();
    let compared = schema::replay(&applied).and_then(|replay| {
        Ok((
            Schema::build(&source.snapshot, ignore)?,
            Schema::build(&replay, ignore)?,
        ))
    });
    match compared {
        Ok((actual, expected)) => {
            let changes = schema::diff(&expected, &actual);
            Gate {
                name,
                passed: changes.is_empty(),
                detail: if changes.is_empty() {
                    format!(
                        "`{}` matches the replay of its {} migrations",
                        source.name,
                        applied.len()
                    )
                } else {
                    format!(
                        "`{}` differs from its migrations: {}",
                        source.name,
                        changes
                            .iter()
                            .map(|c| c.summary.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                },
            }
        }
        Err(error) => Gate {
            name,
            passed: false,
            detail: format!(
                "could not compare `{}` with its migrations: {error}",
                source.name
            ),
        },
    }
}

fn lock_gate(target: &View, me: Option<&str>) -> Gate {
    match &target.lock {
        Some(lease) if Some(lease.holder.id.as_str()) != me && !lease.expired() => {
            match lease.holder.liveness_here() {
                Liveness::Dead(why) => Gate {
                    name: "lock",
                    passed: true,
                    detail: format!(
                        "held by {} (pid {}), a process of this machine that no longer runs ({why}): it will be taken over",
                        lease.holder.id, lease.holder.pid
                    ),
                },
                Liveness::MaybeAlive(why) => Gate {
                    name: "lock",
                    passed: false,
                    detail: format!(
                        "held by {} on {} (pid {}, `{}`) for {} s more; not taken over: {why}",
                        lease.holder.id,
                        lease.holder.host,
                        lease.holder.pid,
                        lease.holder.command,
                        lease.expires_at - lease.now
                    ),
                },
            }
        }
        Some(lease) if lease.expired() => Gate {
            name: "lock",
            passed: true,
            detail: format!("free (the lease of {} expired)", lease.holder.id),
        },
        _ => Gate {
            name: "lock",
            passed: true,
            detail: "free".to_owned(),
        },
    }
}
