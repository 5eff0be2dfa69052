//! What a promotion would give each member of a fleet, grouped (`plan --to FLEET`, `promote
//! --dry-run`, `checklist --to FLEET`), and what the rollout of those groups would cost.

use serde::Serialize;

use crate::backend::BackendKind;
use crate::core::fleet::survey::MemberRead;
use crate::core::ledger::{self, EnvironmentRead, Ledgers};
use crate::core::migrations::MigrationSet;
use crate::core::promote::{self, Plan, View};

/// Members whose plans write the same migrations and fail the same gates.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedGroup {
    pub pending: Vec<String>,
    /// Failing gates, when the group is blocked.
    pub blocked_by: Vec<String>,
    pub members: Vec<String>,
}

impl PlannedGroup {
    pub fn is_blocked(&self) -> bool {
        !self.blocked_by.is_empty()
    }
}

/// A member as one side of a promotion, from its read.
pub fn member_view(env: &str, set: &MigrationSet, read: &EnvironmentRead) -> View {
    View {
        name: env.to_owned(),
        statuses: ledger::compare(set, &read.state, set.layout),
        state: read.state.clone(),
        snapshot: read.snapshot.clone(),
        lock: read.lock.clone(),
        is_folder: false,
    }
}

/// The plan bringing one member up to `source` (members are always D1 databases).
pub fn member_plan(set: &MigrationSet, ledgers: &Ledgers, source: &View, member: &View) -> Plan {
    promote::plan(
        set,
        source,
        member,
        BackendKind::D1,
        &ledgers.ignored_tables(),
        None,
    )
}

/// Members grouped by what the plan for each would write, largest group first; an unreadable
/// member is blocked by why.
pub fn plan_groups(
    set: &MigrationSet,
    ledgers: &Ledgers,
    source: &View,
    env: &str,
    reads: &[MemberRead],
) -> Vec<PlannedGroup> {
    let mut groups: Vec<PlannedGroup> = Vec::new();
    for read in reads {
        let (pending, blocked_by) = match &read.read {
            Err(error) => (Vec::new(), vec![format!("unreadable: {error}")]),
            Ok(state) => {
                let plan = member_plan(set, ledgers, source, &member_view(env, set, state));
                (
                    plan.pending.iter().map(|p| p.name.clone()).collect(),
                    plan.gates
                        .iter()
                        .filter(|g| !g.passed)
                        .map(|g| format!("{}: {}", g.name, g.detail))
                        .collect(),
                )
            }
        };
        match groups
            .iter_mut()
            .find(|g| g.pending == pending && g.blocked_by == blocked_by)
        {
            Some(group) => group.members.push(read.member.name.clone()),
            None => groups.push(PlannedGroup {
                pending,
                blocked_by,
                members: vec![read.member.name.clone()],
            }),
        }
    }
    // Stable: equal sizes keep their first-seen order.
    groups.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    groups
}

/// Requests a member taking the engine's full path costs beyond its pending migrations: the
/// express batch its guard aborts, the read after it, the lock, the re-read under it, the
/// rollback point, and release-and-verify (see `core::fleet::rollout`).
const FULL_PATH_REQUESTS: usize = 6;

/// What promoting the groups would cost, as `rollout` goes: the commonest state that has
/// something to apply is the group state, whose members get one express batch each (the first
/// one is read before); the others are read, and laggards then take the full path.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutEstimate {
    /// The migrations the group state needs (empty when nothing is pending anywhere).
    pub pending: Vec<String>,
    /// Members in the group state: one express batch each.
    pub express: usize,
    /// Members with other pending migrations: a read, then the full path.
    pub full_path: usize,
    pub up_to_date: usize,
    /// Members the gates refuse (drifted, locked, unreadable): nothing is written to them.
    pub refused: usize,
    /// About how many requests the rollout sends.
    pub requests: usize,
    /// `requests` at the budget's average rate.
    pub seconds: u64,
}

/// Estimates the rollout of `groups` at `per_second` requests a second.
#[expect(
    clippy::cast_precision_loss,
    reason = "a time estimate: request counts stay far below 2^52"
)]
pub fn estimate(groups: &[PlannedGroup], per_second: f64) -> RolloutEstimate {
    let agreeing = groups
        .iter()
        .find(|g| !g.is_blocked() && !g.pending.is_empty());
    let mut estimate = RolloutEstimate {
        pending: agreeing.map(|g| g.pending.clone()).unwrap_or_default(),
        express: 0,
        full_path: 0,
        up_to_date: 0,
        refused: 0,
        requests: 0,
        seconds: 0,
    };
    for group in groups {
        let members = group.members.len();
        if agreeing.is_some_and(|a| std::ptr::eq(a, group)) {
            estimate.express += members;
            // The first member is read before its batch: it tells the group state.
            estimate.requests += members + 1;
        } else if group.is_blocked() {
            estimate.refused += members;
            estimate.requests += 2 * members;
        } else if group.pending.is_empty() {
            estimate.up_to_date += members;
            estimate.requests += members;
        } else {
            estimate.full_path += members;
            estimate.requests += members * (FULL_PATH_REQUESTS + group.pending.len());
        }
    }
    // An unusable rate leaves the time unknown (0) rather than infinite.
    estimate.seconds =
        std::time::Duration::try_from_secs_f64((estimate.requests as f64 / per_second).ceil())
            .map_or(0, |time| time.as_secs());
    estimate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(pending: &[&str], blocked: bool, members: usize) -> PlannedGroup {
        PlannedGroup {
            pending: pending.iter().map(|p| (*p).to_owned()).collect(),
            blocked_by: if blocked {
                vec!["lock: held".to_owned()]
            } else {
                Vec::new()
            },
            members: (0..members).map(|n| format!("tenant-{n}")).collect(),
        }
    }

    #[test]
    fn the_agreeing_group_costs_about_one_request_a_member() {
        let groups = [
            group(&["0004_index.sql"], false, 97),
            group(&["0003_name.sql", "0004_index.sql"], false, 2),
            group(&["0004_index.sql"], true, 1),
        ];
        let estimate = estimate(&groups, 4.0);
        assert_eq!(
            (
                estimate.express,
                estimate.full_path,
                estimate.refused,
                estimate.up_to_date
            ),
            (97, 2, 1, 0)
        );
        assert_eq!(estimate.requests, 98 + 2 * 8 + 2);
        assert_eq!(estimate.seconds, 29);
        assert_eq!(estimate.pending, ["0004_index.sql"]);
    }

    #[test]
    fn an_up_to_date_fleet_costs_a_read_a_member() {
        let estimate = estimate(&[group(&[], false, 10)], 4.0);
        assert_eq!((estimate.up_to_date, estimate.requests), (10, 10));
        assert!(estimate.pending.is_empty());
    }
}
