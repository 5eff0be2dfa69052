//! The fleet section of a checklist: how the members differ from the one the rest of the
//! checklist is about, and how the rollout over them goes.

use std::fmt::Write as _;

use serde::Serialize;

use crate::core::checklist::Checklist;
use crate::core::fleet::name_list;
use crate::core::fleet::plan::{PlannedGroup, RolloutEstimate};

/// What a checklist for a fleet adds: the sections above are one member's (the first of the
/// largest group), this says how the others differ and how the rollout goes.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSection {
    pub members: usize,
    /// The member the plan, ledgers and lock above are read from.
    pub representative: String,
    /// By what each would get, largest first.
    pub groups: Vec<PlannedGroup>,
    /// Members not in the largest group, in fleet order.
    pub stragglers: Vec<String>,
    pub rollout: RolloutEstimate,
    /// The request budget the estimate is at (`--rate`).
    pub budget: String,
    pub canary_command: String,
    pub promote_command: String,
    pub rollback_command: String,
}

/// A canary wave: enough members to see a migration fail on real data, few enough to look at
/// each by hand before the rest go.
const CANARY: usize = 5;

impl FleetSection {
    /// The section for `env`'s groups; `order` is the fleet's member order (stragglers keep it).
    pub fn new(
        env: &str,
        representative: &str,
        groups: Vec<PlannedGroup>,
        order: &[String],
        rollout: RolloutEstimate,
        budget: String,
    ) -> Self {
        let largest: &[String] = groups.first().map_or(&[], |g| &g.members);
        let stragglers = order
            .iter()
            .filter(|name| !largest.contains(name))
            .cloned()
            .collect();
        Self {
            members: order.len(),
            representative: representative.to_owned(),
            stragglers,
            canary_command: format!(
                "d1ctl promote --to {env} --canary {}",
                CANARY.min(order.len())
            ),
            promote_command: format!("d1ctl promote --to {env}"),
            rollback_command: format!("d1ctl rollback {env} --last"),
            groups,
            rollout,
            budget,
        }
    }
}

impl Checklist {
    /// Adds a fleet's section; a blocked group other than the representative's (whose gates
    /// are already listed) blocks the promotion too, as it does `plan --to FLEET`.
    #[must_use]
    pub fn with_fleet(mut self, fleet: FleetSection) -> Self {
        for group in fleet
            .groups
            .iter()
            .filter(|g| g.is_blocked() && !g.members.contains(&fleet.representative))
        {
            let names: Vec<&str> = group.members.iter().map(String::as_str).collect();
            self.blocking.push(format!(
                "fleet: {} ({}): {}",
                plural(names.len(), "member"),
                name_list(&names, NAMES_SHOWN),
                group.blocked_by.join("; ")
            ));
        }
        self.blocked = !self.blocking.is_empty();
        self.fleet = Some(fleet);
        self
    }
}

/// How many members a line names before `and N more`.
const NAMES_SHOWN: usize = 5;

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `~8 s`, `~4 min`, `~2.5 h`.
#[expect(clippy::cast_precision_loss, reason = "hours to one decimal")]
fn time_words(seconds: u64) -> String {
    if seconds < 90 {
        format!("~{seconds} s")
    } else if seconds < 90 * 60 {
        format!("~{} min", seconds.div_ceil(60))
    } else {
        format!("~{:.1} h", seconds as f64 / 3600.0)
    }
}

pub(super) fn render(out: &mut String, fleet: &FleetSection) {
    let _ = writeln!(
        out,
        "\n### Fleet: {}\n\nThe plan, ledgers and lock above are `{}`'s, the first member of the largest group.\n",
        plural(fleet.members, "member"),
        fleet.representative
    );
    out.push_str("| members | to apply | state |\n|---|---|---|\n");
    for (index, group) in fleet.groups.iter().enumerate() {
        let names: Vec<&str> = group.members.iter().map(String::as_str).collect();
        let pending = if group.pending.is_empty() {
            "nothing".to_owned()
        } else {
            group
                .pending
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let state = if group.is_blocked() {
            format!("**BLOCKED**: {}", group.blocked_by.join("; "))
        } else if group.pending.is_empty() {
            "up to date".to_owned()
        } else if group.pending == fleet.rollout.pending {
            "ready: one request each".to_owned()
        } else {
            "ready: a read, then the full path".to_owned()
        };
        let _ = writeln!(
            out,
            "| {}{} ({}) | {pending} | {} |",
            names.len(),
            if index == 0 {
                ", the largest group"
            } else {
                ""
            },
            name_list(&names, NAMES_SHOWN),
            state.replace('|', "\\|")
        );
    }
    let stragglers: Vec<&str> = fleet.stragglers.iter().map(String::as_str).collect();
    if stragglers.is_empty() {
        out.push_str("\n**Stragglers:** none, every member is in the largest group.\n");
    } else {
        let _ = writeln!(
            out,
            "\n**Stragglers** (not in the largest group): {} — {}",
            stragglers.len(),
            name_list(&stragglers, NAMES_SHOWN)
        );
    }
    let rollout = &fleet.rollout;
    let _ = writeln!(
        out,
        "\n**Rollout** at the `{}` request budget:\n",
        fleet.budget
    );
    let _ = writeln!(
        out,
        "- [ ] {} in one request each (the express path), {} through a read and the full path, {} up to date, {} refused: about {} requests, {}",
        plural(rollout.express, "member"),
        rollout.full_path,
        rollout.up_to_date,
        rollout.refused,
        rollout.requests,
        time_words(rollout.seconds)
    );
    let _ = writeln!(
        out,
        "- [ ] Canary first: `{}` (verified, then it asks before the rest), or `{}` for every member",
        fleet.canary_command, fleet.promote_command
    );
    let _ = writeln!(
        out,
        "- [ ] If a member goes wrong: `{}` rolls back each member the run promoted, to its own point",
        fleet.rollback_command
    );
}
