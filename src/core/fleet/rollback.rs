//! `rollback FLEET --last`: every member the newest rollout wrote, back to the point that
//! rollout recorded on it (its own clock: Time Travel restores by timestamp).
//!
//! A rollout records one session id on every member it writes, so "the newest rollout" is the
//! newest session among the members' last sessions; members whose last session is another
//! one (the rollout stopped before them, or a later session wrote them) are left alone and
//! named. Each restore is the write engine's restore job (lock, re-read, undo point, restore,
//! verify), which refuses a member whose newest session changed meanwhile.

use std::path::Path;

use futures::StreamExt as _;
use serde::Serialize;

use crate::core::fleet::survey::Connect;
use crate::core::ledger::Ledgers;
use crate::core::migrations::MigrationSet;
use crate::core::registry::{Environment, MemberName};
use crate::core::write::restore::{Choice, RestoreJob};
use crate::core::write::session::{self, History};
use crate::core::write::{self, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    Restored,
    /// Its last session is not the rollout being undone.
    Untouched,
    Refused,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRestore {
    pub name: String,
    pub outcome: RestoreOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    /// The rollback point of this rollback itself (to undo it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_point: Option<String>,
    /// What the member's ledger records after the restore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FleetRestore {
    /// The session undone, and what it was.
    pub session: Option<String>,
    pub command: Option<String>,
    pub started_at: Option<String>,
    pub members: Vec<MemberRestore>,
}

pub struct FleetRollback<'a> {
    pub set: &'a MigrationSet,
    pub ledgers: &'a Ledgers,
    pub env: &'a Environment,
    pub members: &'a [MemberName],
    pub connect: &'a Connect<'a>,
    pub backups: &'a Path,
    pub command: String,
    pub actor: String,
    pub concurrency: usize,
}

impl FleetRollback<'_> {
    pub async fn run(&self) -> FleetRestore {
        let histories: Vec<(MemberName, Result<History, String>)> =
            futures::stream::iter(self.members.iter().map(|member| async move {
                let history = match (self.connect)(member) {
                    Ok(backend) => session::read(backend.as_ref(), None)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(error) => Err(format!("{error:#}")),
                };
                (member.clone(), history)
            }))
            .buffered(self.concurrency.max(1))
            .collect()
            .await;
        // The newest session any member recorded (ISO timestamps sort as text).
        let newest = histories
            .iter()
            .filter_map(|(_, h)| h.as_ref().ok()?.last_session.as_ref())
            .max_by(|a, b| a.started_at.cmp(&b.started_at))
            .cloned();
        let Some(newest) = newest else {
            return FleetRestore {
                session: None,
                command: None,
                started_at: None,
                members: histories
                    .into_iter()
                    .map(|(member, history)| MemberRestore {
                        name: member.name,
                        outcome: if history.is_ok() {
                            RestoreOutcome::Untouched
                        } else {
                            RestoreOutcome::Failed
                        },
                        point: None,
                        undo_point: None,
                        applied: Vec::new(),
                        reason: Some(
                            history
                                .err()
                                .unwrap_or_else(|| "no write session is recorded on it".to_owned()),
                        ),
                    })
                    .collect(),
            };
        };
        let members = futures::stream::iter(histories.into_iter().map(|(member, history)| {
            let newest = &newest;
            async move {
                let blank = MemberRestore {
                    name: member.name.clone(),
                    outcome: RestoreOutcome::Untouched,
                    point: None,
                    undo_point: None,
                    applied: Vec::new(),
                    reason: None,
                };
                let history = match history {
                    Ok(history) => history,
                    Err(error) => {
                        return MemberRestore {
                            outcome: RestoreOutcome::Failed,
                            reason: Some(format!("could not read its sessions: {error}")),
                            ..blank
                        };
                    }
                };
                match history.last_session {
                    Some(last) if last.holder == newest.holder => {
                        self.restore(&member, last.point, blank).await
                    }
                    Some(last) => MemberRestore {
                        reason: Some(format!(
                            "its last session is another one (`{}`, {})",
                            last.command, last.started_at
                        )),
                        ..blank
                    },
                    None => MemberRestore {
                        reason: Some("no write session is recorded on it".to_owned()),
                        ..blank
                    },
                }
            }
        }))
        .buffered(self.concurrency.max(1))
        .collect()
        .await;
        FleetRestore {
            session: Some(newest.holder.clone()),
            command: Some(newest.command.clone()),
            started_at: Some(newest.started_at.clone()),
            members,
        }
    }

    async fn restore(
        &self,
        member: &MemberName,
        point: Option<String>,
        blank: MemberRestore,
    ) -> MemberRestore {
        let Some(point) = point else {
            return MemberRestore {
                outcome: RestoreOutcome::Refused,
                reason: Some(
                    "the session recorded no rollback point on it: nothing of it committed there"
                        .to_owned(),
                ),
                ..blank
            };
        };
        let backend = match (self.connect)(member) {
            Ok(backend) => backend,
            Err(error) => {
                return MemberRestore {
                    outcome: RestoreOutcome::Failed,
                    reason: Some(format!("{error:#}")),
                    ..blank
                };
            }
        };
        let job = RestoreJob {
            set: self.set,
            ledgers: self.ledgers,
            // Re-read under the lock: a member written since is refused, not restored.
            choice: Choice::Last,
        };
        let target = write::Target {
            backend: backend.as_ref(),
            env: self.env,
            backups: self.backups,
        };
        let options = write::Options {
            command: self.command.clone(),
            actor: self.actor.clone(),
            yes: true,
            dry_run: false,
            session: None,
        };
        let mut report = MemberRestore {
            point: Some(point.clone()),
            ..blank
        };
        match write::run(&target, &job, &options, &super::Unattended).await {
            Err(error) => {
                report.outcome = RestoreOutcome::Failed;
                report.reason = Some(error.to_string());
            }
            Ok(session) => {
                report.undo_point = session.point.as_ref().map(|p| p.point.clone());
                match session.outcome {
                    Outcome::Written => match session.verified {
                        Some(Ok(applied)) => {
                            report.outcome = RestoreOutcome::Restored;
                            report.applied = applied;
                        }
                        Some(Err(error)) => {
                            report.outcome = RestoreOutcome::Restored;
                            report.reason = Some(error);
                        }
                        None => report.outcome = RestoreOutcome::Restored,
                    },
                    Outcome::Failed => {
                        report.outcome = RestoreOutcome::Failed;
                        report.reason = session.failure.map(|f| f.unit.headline());
                    }
                    _ => {
                        report.outcome = RestoreOutcome::Refused;
                        report.reason = Some(
                            session
                                .refusal
                                .unwrap_or_else(|| "its sessions changed meanwhile".to_owned()),
                        );
                    }
                }
            }
        }
        report
    }
}
